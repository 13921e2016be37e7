"""CeleryExecutor with two workers, each on a "host" of its own (tests/harness/celery_stack.py):
its own Airflow home, log folder, loopback address and queue, sharing the PostgreSQL metadata DB,
a Redis broker (a database of the test's own, flushed afterwards) and the API server.

Tasks are routed by a ``task_policy`` (``airflow_local_settings.py``): ``fetch_*`` to the
``fetch`` worker, everything else to ``load``. So the fetch and the load of one table run on
different hosts, and whatever the fetch leaves for the load must be in storage both reach: the
warehouse and the state store on PostgreSQL, staging in a folder both workers are given
(``[storefence] storage_url``), as a shared mount would be.

The scheduler runs on the real clock; the shop's data are placed relative to now (as in
test_real_scheduler.py), so the test is the same at any hour. Timeouts are generous; nothing
here is timed. A task that goes up for retry fails the test at once with its log: in this clean
set-up a retry is a fault, and the DAG's retry delays would only add minutes before the same
message.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import IN_CI, PG_ADMIN_URL
from tests.deploy.test_real_scheduler import afternoon_timezone
from tests.harness.celery_stack import (
    CeleryDeployment,
    flush_redis,
    free_redis_db,
    redis_unavailable,
    running_celery,
)

pytestmark = [pytest.mark.real_airflow, pytest.mark.postgres, pytest.mark.slow]

EXTRACT = "storefence_extract_shop_api"


@pytest.fixture
def redis_broker() -> str:
    """``redis://127.0.0.1:6379/<n>``, a database no one else uses now; flushed afterwards.
    Redis absent: the test skips, except under CI=true, where it fails."""
    problem = redis_unavailable()
    if problem:
        if IN_CI:
            pytest.fail(f"Redis is required under CI=true: 127.0.0.1:6379 {problem}")
        pytest.skip(f"Redis at 127.0.0.1:6379 unreachable ({problem})")
    url = f"redis://127.0.0.1:6379/{free_redis_db()}"
    yield url
    flush_redis(url)


@pytest.fixture
def pg_stores(pg_server):
    """(warehouse schema, state store schema) on the test database, dropped afterwards."""
    import sqlalchemy as sa

    tag = f"{os.getpid()}_{secrets.token_hex(3)}"
    names = (f"sf_celery_{tag}", f"sf_celery_state_{tag}")
    with pg_server.begin() as con:
        for name in names:
            con.execute(sa.text(f"CREATE SCHEMA {name}"))
    yield names
    with pg_server.begin() as con:
        for name in names:
            con.execute(sa.text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))


@pytest.fixture
def small_shop(tmp_path):
    """(platform file, end of its data): one shop, 30 SKUs, 10 days up to the start of this hour."""
    from threshold_operators.simulator.run import SimulationSpec, simulate
    from threshold_operators.warehouse.hook import WarehouseHook

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    path = tmp_path / "shop.duckdb"
    hook = WarehouseHook(url=f"duckdb:///{path}")
    simulate(SimulationSpec(shops=1, skus=30, days=10, orders_per_day=800, incidents="none", end=end, seed=5,
                            timezone=afternoon_timezone(end)), hook)
    hook.engine.dispose()
    return path, end


def postgres_stores(warehouse_schema: str, state_schema: str, server_url: str = PG_ADMIN_URL) -> dict[str, dict]:
    """The ``storefence_warehouse`` and ``storefence_state`` connections on the PostgreSQL server,
    each in a schema of its own (their ``search_path`` extra, set per transaction)."""
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    server = {"conn_type": "postgres", "host": url.host, "port": url.port or 5432, "login": url.username,
              "password": url.password, "schema": url.database}
    return {"storefence_warehouse": {**server, "extra": {"search_path": warehouse_schema}},
            "storefence_state": {**server, "extra": {"search_path": state_schema}}}


def shared_storage(folder) -> tuple[dict, dict]:
    """(extra_config, extra_env) naming ``folder`` as the storage every worker reaches, for staging
    and GX results: ``[storefence] storage_url``."""
    return {("storefence", "storage_url"): f"file://{folder}"}, {}


def wait_ended_or_retrying(client, dag_id: str, run_id: str, timeout: float = 600) -> tuple[str, str]:
    """Poll until the run ends, or a task of any running run of the DAG is up for retry (the
    scheduled run that unpausing made may go first: ``max_active_runs=1``): (the run's state, or
    ``up_for_retry``; the run to report on)."""
    deadline = time.monotonic() + timeout
    while True:
        state = client.dag_run(dag_id, run_id)["state"]
        if state in ("success", "failed"):
            return state, run_id
        for run in client.dag_runs(dag_id, state=["running"]):
            if any(t["state"] == "up_for_retry" for t in client.task_instances(dag_id, run["dag_run_id"])):
                return "up_for_retry", run["dag_run_id"]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dag_id} {run_id} still {state} after {timeout:.0f} s\n{client.run_report(dag_id, run_id)}")
        time.sleep(2)


def placement(af: CeleryDeployment, tis: list[dict]) -> dict[str, tuple[str, str, str]]:
    """task id -> (queue, hostname, the worker of that hostname) of each task instance that ran."""
    return {t["task_id"]: (t.get("queue"), t.get("hostname"), getattr(af.worker_of(t.get("hostname")), "queue", None))
            for t in tis if t.get("hostname")}


def test_fetch_and_load_of_a_table_run_on_their_own_workers(pg_server, redis_broker, pg_stores, small_shop, tmp_path):
    import sqlalchemy as sa

    from threshold_operators.demo import seed_history
    from threshold_operators.shop_api.server import ShopApiServer
    from threshold_operators.warehouse.hook import WarehouseHook

    source, end = small_shop
    warehouse_schema, state_schema = pg_stores
    storage = tmp_path / "shared-storage"
    storage.mkdir()
    config, env = shared_storage(storage)

    def seed(stack):  # after the set-up made the warehouse's tables
        warehouse = WarehouseHook(url=PG_ADMIN_URL, search_path=warehouse_schema)
        seed_history(source, warehouse, end - timedelta(hours=2))
        warehouse.engine.dispose()

    t0 = time.monotonic()
    with ShopApiServer(source) as api:
        host, port = api.url.removeprefix("http://").rsplit(":", 1)
        connections = {**postgres_stores(warehouse_schema, state_schema),
                       "shop_api_default": {"conn_type": "http", "host": host, "port": int(port)}}
        with running_celery(tmp_path / "airflow", PG_ADMIN_URL, redis_broker, workers=("fetch", "load"),
                            connections=connections, extra_config=config, extra_env=env, prepare=seed) as af:
            started = time.monotonic() - t0
            c = af.client
            run_id = c.trigger(EXTRACT)["dag_run_id"]
            c.unpause(EXTRACT)  # also schedules its latest interval; max_active_runs=1 runs them one by one
            state, reported = wait_ended_or_retrying(c, EXTRACT, run_id)
            report = f"{reported}: {state}\n{c.run_report(EXTRACT, reported)}" if state != "success" else ""
            where = placement(af, c.task_instances(EXTRACT, reported))
            if state == "success":
                loads = {t: c.xcom(EXTRACT, run_id, t) for t in where if t.startswith("load_")}
                # each log read by the API server from the log server of the worker that ran the task
                logs = {t: c.task_log(EXTRACT, run_id, t) for t in ("fetch_orders", "load_orders")}

    print(f"\nstack start {af.seconds_to_start:.0f} s (set-up and start {started:.0f} s); run {state}; "
          f"test {time.monotonic() - t0:.0f} s")
    for task_id, (queue, hostname, worker) in where.items():
        wanted = af.queue_for(task_id)
        assert (queue, worker) == (wanted, wanted), \
            f"{task_id} ran from queue {queue} on {hostname} (worker {worker}), not on the {wanted} worker " \
            f"({af.workers[wanted].hostname}); placement: {json.dumps(where, indent=1)}"
    assert state == "success", f"{EXTRACT} {report}"
    fetched = {t.removeprefix("fetch_") for t in where if t.startswith("fetch_")}
    loaded = {t.removeprefix("load_") for t in where if t.startswith("load_")}
    assert fetched and loaded == fetched, f"tables fetched {sorted(fetched)}, loaded {sorted(loaded)}"
    assert any(r["loaded"] > 0 for r in loads.values()), loads  # the two hours after the seeded history
    for task_id, text in logs.items():
        host = af.workers[af.queue_for(task_id)].hostname
        assert f"http://{host}:" in text and "shop_api.orders:" in text, f"{task_id}'s log:\n{text[-3000:]}"
    with pg_server.connect() as con:  # the state store is the connection's schema, not a file per host
        state_tables = set(con.execute(sa.text("SELECT table_name FROM information_schema.tables "
                                               "WHERE table_schema = :s"), {"s": state_schema}).scalars())
    assert {"alerts", "notifications"} <= state_tables, state_tables


# --- for the fuller end-to-end test (alert DAGs -> strict DingTalk robots, two deliverers, an
# acknowledgement through the plugin's API on one host stops the escalation) -----------------------
DELIVERY_ROUTES = {"fetch_": "fetch", "notify": "deliver-a"}  # + default_queue="deliver-b": two deliverers
DELIVERY_WORKERS = ("fetch", "deliver-a", "deliver-b")


def dingtalk_connections(robots: dict) -> dict[str, dict]:
    """conn_id -> connection for each ``tests.alerting.dingtalk_receiver.DingTalkReceiver`` (entered),
    keyed by the channel's connection id; the robot's name is its token's prefix."""
    out = {}
    for conn_id, robot in robots.items():
        out[conn_id] = {"conn_type": "http", "host": robot.url, "password": robot.token,
                        "extra": {"secret": robot.secret}}
    return out


def acknowledge(af: CeleryDeployment, fingerprint: str) -> dict:
    """Acknowledge an alert through the Storefence plugin's API on the API server (one host, the
    main home's), as the admin; the alert as the API returns it."""
    return af.client.request("POST", f"/storefence/api/alerts/{fingerprint}/ack")
