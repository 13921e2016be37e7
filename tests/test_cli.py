"""The `storefence` command, run as users run it: a real process, real files, real servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

STOREFENCE = [str(Path(sys.executable).with_name("storefence"))]
SMALL = ["--shops", "1", "--skus", "48", "--days", "60", "--orders-per-day", "120", "--end", "2026-09-30T00:00:00Z"]


def run(*args, env=None, timeout=300):
    return subprocess.run(STOREFENCE + list(args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_simulate_then_summary(tmp_path):
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    labels = tmp_path / "labels.yaml"
    out = run("simulate", "--warehouse", url, *SMALL, "--labels-out", str(labels))
    assert out.returncode == 0, out.stderr
    assert "Wrote" in out.stdout and "rows/s" in out.stdout
    doc = yaml.safe_load(labels.read_text(encoding="utf-8"))
    assert len(doc["incidents"]) == 11 and doc["window"]["end"] == "2026-09-30T00:00:00+00:00"
    summary = run("warehouse", "summary", "--warehouse", url, "--labels", str(labels))
    assert summary.returncode == 0, summary.stderr
    assert "order_items" in summary.stdout and "formula_spike_low_stock" in summary.stdout
    orders_line = next(line for line in summary.stdout.splitlines() if line.startswith("orders "))
    assert int(orders_line.split()[1].replace(",", "")) > 1000


def test_user_errors_are_one_line_and_exit_2(tmp_path):
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    assert run("simulate", "--warehouse", url, *SMALL, "--incidents", "none").returncode == 0
    again = run("simulate", "--warehouse", url, *SMALL, "--incidents", "none")
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "--replace" in again.stderr
    bad = run("simulate", "--warehouse", url, *SMALL, "--incidents", str(tmp_path / "nope.yaml"), "--replace")
    assert bad.returncode == 2 and "no such incident file" in bad.stderr
    no_conn = run("warehouse", "summary", "--conn-id", "sf_missing", env={"AIRFLOW_HOME": str(tmp_path / "home")})
    assert no_conn.returncode == 2 and no_conn.stderr.count("\n") == 1
    assert "connection 'sf_missing' is not defined" in no_conn.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shop_api_serves_the_simulated_shop(tmp_path):
    path = tmp_path / "shop.duckdb"
    assert run("simulate", "--warehouse", f"duckdb:///{path}", *SMALL).returncode == 0
    port = _free_port()
    proc = subprocess.Popen(STOREFENCE + ["shop-api", "--source", str(path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
            time.sleep(0.2)
        seen, cursor = [], None
        while True:
            params = {"limit": 5000, "updated_since": "2026-09-01T00:00:00Z"} | ({"cursor": cursor} if cursor else {})
            page = requests.get(f"{base}/v1/orders", params=params, timeout=10).json()
            seen += [row["order_id"] for row in page["data"]]
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]
        import duckdb

        proc.terminate()
        proc.wait(timeout=20)
        con = duckdb.connect(str(path), read_only=True)
        expected = con.execute("SELECT COUNT(*) FROM orders WHERE updated_at >= TIMESTAMPTZ '2026-09-01 00:00:00+00'").fetchone()[0]
        con.close()
        assert len(seen) == len(set(seen)) == expected > 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# The demo is the whole pipeline in one process (400 days simulated and loaded, the DAGs run): it
# takes its turn with the tests that start a real Airflow (a stack's processes on the other worker
# kept it running past 15 minutes on two cores; alone it takes about 4). Its timeout only stops a
# hang: how fast the demo runs is the README's figure, not this test's.
@pytest.mark.xdist_group("real_airflow")
def test_demo_on_a_fresh_airflow_home(tmp_path):
    """What `make demo` runs: set-up (twice: idempotent), then the demo shop and its summary."""
    home = tmp_path / "home"
    env = {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    setup = run("airflow-setup", env=env)
    assert setup.returncode == 0, setup.stderr[-2000:]
    assert "created (DuckDB" in setup.stdout
    again = run("airflow-setup", env=env)
    assert again.returncode == 0 and "kept" in again.stdout
    # the whole demo (simulate 400 days with tracking scans, extract, alert DAGs) next to another worker
    demo = run("demo", "--end", "2026-09-30T00:00:00Z", env=env, timeout=2700)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert (home / "storefence.duckdb").exists() and (home / "storefence-labels.yaml").exists()
    assert "Incidents (11)" in demo.stdout and "formula_spike_low_stock" in demo.stdout
    assert "storefence_extract_shop_api: success, storefence_extract_ads_api: success, storefence_extract_reviews_api: success" in demo.stdout
    # the three malformed records the demo adds are refused by the gate, with their reasons
    for reason in ("between(on_hand, 0.0, None)", "references(order_id -> orders)", "between(rating, 1.0, 5.0)"):
        assert reason in demo.stdout
    assert "STALE" in demo.stdout  # --end is two months before the clock: nothing is fresh
    rows = {line.split()[0]: line.split()[1] for line in demo.stdout.splitlines() if line[:1].isalpha() and len(line.split()) >= 2}
    assert int(rows["order_items"].replace(",", "")) > 1_000_000
    # the alert DAGs ran on the hour that landed: the ongoing tracking stall is a red breach
    assert "storefence_alerts_customer" in demo.stdout and "ERROR" not in demo.stdout
    assert "customer.logistics_stale         BREACH: shop_id=shop-01/warehouse_id=shop-01-wh2 red" in demo.stdout
    # and every incident of the seed made its rules fire when replayed
    replay = demo.stdout.split("7/7", 1)[1]
    assert "did not fire" not in replay
    assert replay.count(" UTC bucket, complete ") == 16  # each expected rule of the eleven incidents (the refund surge: two)
    # --end lies two months back, so every extract is stale: the failing freshness gates hold back the
    # rules that fire on low values (low stock cover: missing rows could make it), while those that fire
    # on high values (the red tracking stall, the negative reviews) still go out, marked "data
    # incomplete"; the data engineers hear once per table and gate, in the demo's local inbox
    outbox = demo.stdout.split("6/7", 1)[0].split("the outbox holds", 1)[1]
    assert "data_gate" in outbox and "fired" in outbox and "pending" not in outbox
    assert "[数据问题]" in demo.stdout and "数据工程值班 (data.oncall)" in demo.stdout
    assert "[红色] 物流停滞" in demo.stdout and "库存" not in demo.stdout.split("Who got what", 1)[1].split("7/7")[0]
    # the order line whose order never came is held for its parent, not refused
    assert "ORDER-NOT-SENT|1" in demo.stdout.split("Held for a late parent", 1)[1]
