"""Test harness: a private Airflow home with a migrated SQLite metadata DB, and the warehouses.

- ``AIRFLOW_HOME`` is a temporary folder made before Airflow is imported; the metadata DB is
  migrated once per session (``airflow_db``).
- ``pg_url``: a schema of its own on the PostgreSQL server at 127.0.0.1:5432 (database
  ``test``), dropped at the end. Unreachable: the test skips with the reason, except under
  ``CI=true``, where it fails.
- ``warehouse``: a WarehouseHook on a fresh DuckDB file, and (second parameter) on PostgreSQL.
- ``STOREFENCE_TEST_CLOCK=2026-12-02T16:05:00Z``: the whole session runs at that instant, the clock
  ticking from there (time-machine: ``datetime.now``, ``time.time``, Airflow's and pendulum's
  clocks). ``tests/test_clocks.py`` runs the tests marked ``clock_sensitive`` under several clocks.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_HOME = tempfile.mkdtemp(prefix="storefence-airflow-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
os.environ.pop("AIRFLOW_CONN_STOREFENCE_WAREHOUSE", None)
if str(REPO / "plugins") not in sys.path:
    sys.path.insert(0, str(REPO / "plugins"))

CLOCK = os.environ.get("STOREFENCE_TEST_CLOCK")
if CLOCK:  # before Airflow or anything else reads the time
    import time_machine

    time_machine.travel(datetime.fromisoformat(CLOCK.replace("Z", "+00:00")), tick=True).start()


# The instant a test that reaches a clock-reading edge (a DAG run, the CLI) runs at when no
# STOREFENCE_TEST_CLOCK is set: a Thursday, 12:00 in Shanghai.
DEFAULT_TEST_NOW = datetime(2026, 10, 1, 4, 0, tzinfo=UTC)


@pytest.fixture
def pinned_now(time_machine) -> datetime:
    """Travel to STOREFENCE_TEST_CLOCK (tests/test_clocks.py), else DEFAULT_TEST_NOW, the clock
    ticking from there; the instant, for the test to build its data from."""
    at = datetime.fromisoformat(CLOCK.replace("Z", "+00:00")) if CLOCK else DEFAULT_TEST_NOW
    time_machine.move_to(at, tick=True)
    return at


def pytest_report_header(config):
    return f"clock: {CLOCK} (STOREFENCE_TEST_CLOCK), ticking" if CLOCK else None


# `make test` runs the suite on two pytest-xdist workers (`--dist loadgroup`). The tests that share
# a built incident shop go to one worker per warehouse (each shop is built once), and the tests
# that start a real Airflow take turns on one worker (two stacks at once on two cores would only
# slow each other down).
def _group_of(item) -> str | None:
    if item.get_closest_marker("real_airflow"):
        return "real_airflow"
    names = set(getattr(item, "fixturenames", ()))
    if "incident_shop" in names:  # parametrized: the shop of its warehouse
        callspec = getattr(item, "callspec", None)
        return f"incident_shop_{callspec.params['incident_shop']}" if callspec else None
    for name in ("incident_shop_duckdb", "incident_shop_postgres"):
        if name in names:
            return name
    return None


def pytest_collection_modifyitems(config, items):
    if not CLOCK:  # a check of the travel itself: deselected, not skipped, when no clock is pinned
        kept, dropped = [], []
        for item in items:
            (dropped if item.get_closest_marker("pinned_clock_only") else kept).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept
    for item in items:
        group = None if item.get_closest_marker("xdist_group") else _group_of(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    if getattr(config.option, "loadgroup", False):  # on an xdist worker, --dist loadgroup
        _group_node_ids(items)


def _group_node_ids(items) -> None:
    """What xdist's loadgroup does on a worker: ``<node id>@<group>``, the id its scheduler splits
    on. xdist 3.8 writes it to ``item._nodeid``, which pytest 9 no longer reads (the id is
    ``item._id``), so without this every grouped test would be scheduled on its own."""
    from _pytest.nodeid import coerce_node_id

    for item in items:
        groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                         for m in item.iter_markers("xdist_group")})
        if groups and "@" not in item.nodeid:
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(groups)}")


PG_ADMIN_URL = os.environ.get("STOREFENCE_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    return Path(_HOME)


@pytest.fixture(scope="session")
def airflow_db(airflow_home):
    """Migrate the metadata DB once and create the warehouse pool."""
    from airflow.models.pool import Pool
    from airflow.utils.db import upgradedb
    from airflow.utils.session import create_session

    from threshold_operators.warehouse import WAREHOUSE_POOL

    upgradedb()
    with create_session() as session:
        Pool.create_or_update_pool(WAREHOUSE_POOL, 1, "tests", include_deferred=False, session=session)
    return airflow_home


def _pg_unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}")
    pytest.skip(f"PostgreSQL at 127.0.0.1:5432 unreachable ({reason})")


@pytest.fixture(scope="session")
def pg_server():
    """Admin engine on the shared server; skips (or fails in CI) when it cannot be reached."""
    import sqlalchemy as sa

    engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as con:
            con.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "unreachable"
        engine.dispose()
        _pg_unavailable(str(exc).splitlines()[0])
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def pg_admin_url(pg_server) -> str:
    return PG_ADMIN_URL


@contextmanager
def fresh_schemas(pg_server, *prefixes: str):
    """PostgreSQL schemas of the caller's own (``<prefix>_<pid>_<random>`` each), dropped at the
    end: the server is shared between tests and workers."""
    import sqlalchemy as sa

    tag = f"{os.getpid()}_{secrets.token_hex(4)}"
    names = [f"{prefix}_{tag}" for prefix in prefixes]
    with pg_server.begin() as con:
        for name in names:
            con.execute(sa.text(f"CREATE SCHEMA {name}"))
    try:
        yield names
    finally:
        with pg_server.begin() as con:
            for name in names:
                con.execute(sa.text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))


@pytest.fixture
def pg_schema(pg_server):
    """A PostgreSQL schema of this test's own, dropped afterwards: the server is shared."""
    with fresh_schemas(pg_server, "sf_test") as (name,):
        yield name


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request, tmp_path):
    """A WarehouseHook on an empty warehouse of each supported kind."""
    from threshold_operators.warehouse.hook import WarehouseHook

    if request.param == "duckdb":
        hook = WarehouseHook(url=f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    else:
        schema = request.getfixturevalue("pg_schema")
        hook = WarehouseHook(url=PG_ADMIN_URL, search_path=schema)
    yield hook
    hook.engine.dispose()


# --- A simulated shop in a DuckDB file of its own: the source the extract tests read through
# the shop API. Tests that change the source work on a copy (shop_copy).
SHOP_END = datetime(2026, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="session")
def shop_file(tmp_path_factory):
    """A 20-day, one-shop simulation (no incidents)."""
    from threshold_operators.simulator.run import SimulationSpec, simulate
    from threshold_operators.warehouse.hook import WarehouseHook

    path = tmp_path_factory.mktemp("shop") / "shop.duckdb"
    simulate(SimulationSpec(shops=1, skus=48, days=20, orders_per_day=300, incidents="none", end=SHOP_END, seed=21),
             WarehouseHook(url=f"duckdb:///{path}"))
    return path


@pytest.fixture
def shop_copy(shop_file, tmp_path):
    path = tmp_path / "shop.duckdb"
    shutil.copy(shop_file, path)
    return path




# --- a simulated shop with the default incidents (the rule and alerting scenario tests) -------
# One shop, 60 SKUs, 400 days (a year of history for the year-over-year rule), 2,500 orders a
# day; the same seed gives the same rows on both warehouses. Built once per session.
INCIDENT_SHOP_END = datetime(2026, 9, 30, tzinfo=UTC)
SPEC = dict(shops=1, skus=60, days=400, orders_per_day=2500, incidents="default", end=INCIDENT_SHOP_END, seed=7)


def _simulate(hook, labels_path):
    import yaml

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
