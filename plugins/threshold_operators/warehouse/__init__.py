"""The warehouse: canonical schema, connection, hook and bulk loading."""

WAREHOUSE_CONN_ID = "storefence_warehouse"
#: Airflow pool that serialises warehouse work; one slot on DuckDB (one process at a time).
WAREHOUSE_POOL = "storefence_warehouse"
