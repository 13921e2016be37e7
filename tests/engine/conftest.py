"""A simulated shop with the default incidents, on DuckDB and on PostgreSQL, for the catalogue tests.

One shop, 60 SKUs, 400 days (a year of history for the year-over-year rule), 2,500 orders a
day; the same seed gives the same rows on both warehouses. Built once per session.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime

import pytest
import yaml

INCIDENT_SHOP_END = datetime(2026, 9, 30, tzinfo=UTC)
SPEC = dict(shops=1, skus=60, days=400, orders_per_day=2500, incidents="default", end=INCIDENT_SHOP_END, seed=7)


def _simulate(hook, labels_path):
    from threshold_operators.simulator.run import SimulationSpec, simulate

    simulate(SimulationSpec(**SPEC), hook, labels_out=str(labels_path))
    return yaml.safe_load(labels_path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def incident_shop_duckdb(tmp_path_factory):
    from threshold_operators.warehouse.hook import WarehouseHook

    folder = tmp_path_factory.mktemp("incident-shop")
    hook = WarehouseHook(url=f"duckdb:///{folder / 'shop.duckdb'}")
    labels = _simulate(hook, folder / "labels.yaml")
    yield hook, labels
    hook.engine.dispose()


@pytest.fixture(scope="session")
def incident_shop_postgres(pg_server, pg_admin_url, tmp_path_factory):
    import sqlalchemy as sa

    from threshold_operators.warehouse.hook import WarehouseHook

    schema = f"sf_incidents_{os.getpid()}_{secrets.token_hex(3)}"
    with pg_server.begin() as con:
        con.execute(sa.text(f"CREATE SCHEMA {schema}"))
    hook = WarehouseHook(url=pg_admin_url, search_path=schema)
    try:
        labels = _simulate(hook, tmp_path_factory.mktemp("incident-shop-pg") / "labels.yaml")
        yield hook, labels
    finally:
        hook.engine.dispose()
        with pg_server.begin() as con:
            con.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


@pytest.fixture(params=["duckdb", "postgres"])
def incident_shop(request):
    """(WarehouseHook, labels) of the simulated shop on each warehouse."""
    return request.getfixturevalue(f"incident_shop_{request.param}")
