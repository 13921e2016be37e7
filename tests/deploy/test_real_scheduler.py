"""Through Airflow's own scheduler: the harness starts api-server, scheduler and dag-processor
(LocalExecutor, a PostgreSQL metadata DB of the test's own) and the test drives them over the
REST API, as a user's deployment runs.

The shop is simulated up to the start of the current hour and served on loopback; the
warehouse holds its history up to two hours before that. The real scheduler runs on the real
clock (it cannot be pinned), so the data is placed relative to now: the test is the same at any
hour. Timeouts are generous (a slow CI machine); nothing here is timed.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from tests.conftest import PG_ADMIN_URL
from tests.harness.airflow_stack import running_airflow
from tests.harness.rest import wait_for_new_run

pytestmark = [pytest.mark.real_airflow, pytest.mark.postgres, pytest.mark.slow]

EXTRACT = "storefence_extract_shop_api"
ALERTS = "storefence_alerts_inventory"  # one rule; reads inventory_snapshots and order_items
FILE_DROP = "storefence_extract_shop_exports"  # order_items also come from dropped files: an empty folder


def _wait_until_ended(client, dag_id: str, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = client.dag_run(dag_id, run_id)
        if run["state"] in ("success", "failed"):
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dag_id} {run_id} still {run['state']}\n{client.run_report(dag_id, run_id)}")
        time.sleep(2)


def test_an_extract_through_the_scheduler_triggers_its_alert_dag(pg_server, small_shop, tmp_path):
    from threshold_operators.demo import seed_history
    from threshold_operators.shop_api.server import ShopApiServer
    from threshold_operators.warehouse.hook import WarehouseHook

    source, end = small_shop

    def seed(stack):
        warehouse = WarehouseHook(url=f"duckdb:///{stack.home / 'storefence.duckdb'}")
        seed_history(source, warehouse, end - timedelta(hours=2))
        warehouse.engine.dispose()

    t0 = time.monotonic()
    with ShopApiServer(source) as api, running_airflow(tmp_path / "airflow", PG_ADMIN_URL, prepare=seed) as af:
        started = time.monotonic() - t0
        c = af.client
        host, port = api.url.removeprefix("http://").rsplit(":", 1)
        c.put_connection({"connection_id": "shop_api_default", "conn_type": "http", "host": host, "port": int(port)})

        setup = c.trigger("storefence_warehouse_setup")
        c.unpause("storefence_warehouse_setup")
        c.wait_for_run("storefence_warehouse_setup", setup["dag_run_id"], timeout=300)
        assert c.xcom("storefence_warehouse_setup", setup["dag_run_id"], "report")["orders"] > 0  # the seeded history

        c.unpause(ALERTS)
        before = {r["dag_run_id"] for r in c.dag_runs(ALERTS)}
        extract = c.trigger(EXTRACT)
        c.unpause(EXTRACT)
        c.unpause(FILE_DROP)  # the alert DAG waits for a cycle of every source of its tables (AssetAll)
        c.wait_for_run(EXTRACT, extract["dag_run_id"], timeout=600)
        # unpausing also scheduled a run (every 5 minutes): whichever ran first loaded the last two hours
        runs = [r["dag_run_id"] for r in c.dag_runs(EXTRACT, state="success")]
        for table in ("order_items", "inventory_snapshots"):  # the alert DAG's tables
            loads = [c.xcom(EXTRACT, run_id, f"load_{table}") for run_id in runs]
            assert any(x["loaded"] > 0 and x["advanced"] for x in loads), loads

        alert = wait_for_new_run(c, ALERTS, before, run_type="asset_triggered", timeout=300)
        run = _wait_until_ended(c, ALERTS, alert["dag_run_id"], timeout=600)
        tis = {t["task_id"]: t["state"] for t in c.task_instances(ALERTS, alert["dag_run_id"])}
        assert tis.get("evaluate") == "success", c.run_report(ALERTS, alert["dag_run_id"])
        evaluations = c.xcom(ALERTS, alert["dag_run_id"], "evaluate", key="evaluations")
        assert evaluations and all(e["outcome"] in ("ok", "breach", "up_to_date") for e in evaluations.values()), \
            evaluations  # every rule of the domain was evaluated
        print(f"\nstack start {af.seconds_to_start:.0f} s (set-up and start {started:.0f} s); "
              f"alert run {run['state']}; test {time.monotonic() - t0:.0f} s")
