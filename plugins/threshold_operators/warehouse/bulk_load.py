"""Bulk loading of Arrow tables into the warehouse, the fastest way each dialect offers.

- DuckDB: the Arrow table is scanned in place (zero copy) by ``INSERT ... SELECT``.
- PostgreSQL: ``COPY ... FROM STDIN (FORMAT csv)``, the CSV written by Arrow's C++ writer.
- anything else: SQLAlchemy ``executemany`` (correct, slower).

A loader keeps one connection for its whole life (a load is one job in one process). Rows are
committed when the caller calls ``commit()`` and when the loader closes without error; on an
error, what was not committed is rolled back.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from threshold_operators.warehouse.schema import table_spec

if TYPE_CHECKING:
    import pyarrow as pa

    from threshold_operators.warehouse.hook import WarehouseHook


class BulkLoader:
    """Append Arrow tables to warehouse tables. Use as a context manager."""

    def __init__(self, hook: WarehouseHook):
        self.hook = hook
        self.rows_written: dict[str, int] = {}

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.rollback()
        self.close()
        return False

    def append(self, table: str, data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        columns = table_spec(table).columns
        missing = [c for c in columns if c not in data.column_names]
        if missing:
            raise ValueError(f"{table}: the batch lacks columns {missing}")
        self._append(table, data.select(list(columns)))
        self.rows_written[table] = self.rows_written.get(table, 0) + data.num_rows

    # dialect hooks
    def open(self) -> None: ...
    def _append(self, table: str, data: pa.Table) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


class DuckDBBulkLoader(BulkLoader):
    def open(self) -> None:
        self.con = self.hook.get_conn()
        self.con.execute("BEGIN TRANSACTION")

    def _append(self, table: str, data: pa.Table) -> None:
        cols = ", ".join(data.column_names)
        self.con.register("_storefence_batch", data)
        try:
            self.con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _storefence_batch")
        finally:
            self.con.unregister("_storefence_batch")

    def commit(self) -> None:
        self.con.execute("COMMIT")
        self.con.execute("BEGIN TRANSACTION")

    def rollback(self) -> None:
        self.con.execute("ROLLBACK")

    def close(self) -> None:
        self.con.close()


class PostgresBulkLoader(BulkLoader):
    def open(self) -> None:
        self.con = self.hook.get_conn()

    def _append(self, table: str, data: pa.Table) -> None:
        import pyarrow.csv as pcsv

        buf = io.BytesIO()
        # one chunk: pyarrow 26 writes garbage for columns made of many tiny chunks
        pcsv.write_csv(data.combine_chunks(), buf, pcsv.WriteOptions(include_header=False))
        buf.seek(0)
        cols = ", ".join(data.column_names)
        with self.con.cursor() as cur:
            cur.copy_expert(f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv)", buf)

    def commit(self) -> None:
        self.con.commit()

    def rollback(self) -> None:
        self.con.rollback()

    def close(self) -> None:
        self.con.close()


class SQLAlchemyBulkLoader(BulkLoader):
    def open(self) -> None:
        self.con = self.hook.engine.connect()
        self.tx = self.con.begin()

    def _append(self, table: str, data: pa.Table) -> None:
        from threshold_operators.warehouse.schema import metadata

        self.con.execute(metadata.tables[table].insert(), data.to_pylist())

    def commit(self) -> None:
        self.tx.commit()
        self.tx = self.con.begin()

    def rollback(self) -> None:
        self.tx.rollback()

    def close(self) -> None:
        self.con.close()


def bulk_loader(hook: WarehouseHook) -> BulkLoader:
    """The fastest loader for the hook's warehouse."""
    if hook.is_duckdb:
        return DuckDBBulkLoader(hook)
    if hook.dialect_name == "postgresql" and hook.sqlalchemy_url.get_driver_name() == "psycopg2":
        return PostgresBulkLoader(hook)
    return SQLAlchemyBulkLoader(hook)
