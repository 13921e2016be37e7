"""storefence_warehouse_setup: create the canonical warehouse schema and report what it holds.

Run it once after pointing the ``storefence_warehouse`` connection at a new warehouse (or any
time: it only creates what is missing). Parsing this file imports nothing heavy: the hook,
SQLAlchemy and the drivers are imported inside the tasks.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from threshold_operators.warehouse import WAREHOUSE_CONN_ID, WAREHOUSE_POOL


@dag(
    dag_id="storefence_warehouse_setup",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["storefence", "warehouse"],
    params={"warehouse_conn_id": Param(WAREHOUSE_CONN_ID, type="string", description="Airflow connection of the warehouse")},
    doc_md=__doc__,
    default_args={"owner": "data-engineering", "retries": 2, "retry_delay": pendulum.duration(seconds=30)},
)
def storefence_warehouse_setup():
    @task(pool=WAREHOUSE_POOL)
    def create_schema(params=None) -> list[str]:
        from threshold_operators.warehouse.hook import WarehouseHook
        from threshold_operators.warehouse.schema import create_schema as create

        hook = WarehouseHook(warehouse_conn_id=params["warehouse_conn_id"])
        try:
            created = create(hook.engine)
        finally:
            hook.engine.dispose()
        print(f"{hook.describe()}: created {created or 'nothing, the schema was complete'}")
        return created

    @task(pool=WAREHOUSE_POOL)
    def report(created: list[str], params=None) -> dict[str, int]:
        from threshold_operators.warehouse.hook import WarehouseHook
        from threshold_operators.warehouse.summary import render, table_stats

        hook = WarehouseHook(warehouse_conn_id=params["warehouse_conn_id"])
        stats = table_stats(hook)
        print(render(stats, target=hook.describe()))
        return {r["table"]: r["rows"] for r in stats}

    report(create_schema())


storefence_warehouse_setup()
