"""Empty warehouses for one benchmark run: a new DuckDB file, or a new PostgreSQL schema."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@contextmanager
def fresh_warehouse(target: str, pg_url: str = PG_URL):
    """Yield a WarehouseHook on an empty ``duckdb`` or ``postgres`` warehouse, removed afterwards."""
    from threshold_operators.warehouse.hook import WarehouseHook

    if target == "duckdb":
        folder = Path(tempfile.mkdtemp(prefix="sf-bench-"))
        try:
            yield WarehouseHook(url=f"duckdb:///{folder / 'w.duckdb'}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    import sqlalchemy as sa

    schema = f"sf_bench_{os.getpid()}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as con:
        con.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))
    try:
        yield WarehouseHook(url=pg_url, search_path=schema)
    finally:
        with admin.begin() as con:
            con.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()
