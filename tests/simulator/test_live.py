"""The live shop: its clock, the versions the simulator keeps, ``prepare_live_shop`` and the
served platform, on a small shop (real DuckDB files, the real API on loopback, a pinned clock)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
import requests

from threshold_operators.simulator.live import (
    LABELS_FILE,
    PLATFORM_FILE,
    STATE_FILE,
    LiveClock,
    LiveShop,
    LiveShopServer,
    prepare_live_shop,
)
from threshold_operators.simulator.run import SimulationError, SimulationSpec, simulate
from threshold_operators.warehouse.hook import WarehouseHook

W0 = datetime(2026, 10, 1, 4, 27, 13, tzinfo=UTC)  # the pinned wall time the live clock starts at
KEYS = {"orders": "order_id", "shipments": "shipment_id", "traffic": "shop_id, channel, source, hour",
        "ad_spend": "shop_id, channel, campaign_id, hour"}
SMALL = {"skus": 24, "days": 52, "orders_per_day": 400, "hours_ahead": timedelta(hours=6)}


# --- the clock ---------------------------------------------------------------------------------
def test_an_hour_behind_at_6x_catches_up_in_12_minutes_then_runs_at_real_time():
    c = LiveClock(W0, W0 - timedelta(hours=1), 6)
    assert c.data_time(W0) == W0 - timedelta(hours=1)
    assert c.data_time(W0 + timedelta(minutes=1)) == W0 - timedelta(minutes=54)
    assert c.data_time(W0 + timedelta(minutes=10)) == W0  # an hour of data in 10 minutes
    assert c.caught_up_at == W0 + timedelta(minutes=12)
    assert c.data_time(W0 + timedelta(minutes=12)) == W0 + timedelta(minutes=12)
    later = W0 + timedelta(hours=3, seconds=7)
    assert c.data_time(later) == later  # never ahead of the wall clock
    assert c.data_time(W0 - timedelta(minutes=1)) == W0 - timedelta(hours=1, minutes=6)


def test_wall_time_is_the_inverse_of_data_time():
    c = LiveClock(W0, W0 - timedelta(hours=1), 6)
    for seconds in range(-600, 4 * 3600, 97):
        wall = W0 + timedelta(seconds=seconds)
        assert c.wall_time(c.data_time(wall)) == wall
    assert c.wall_time(W0 - timedelta(minutes=55)) == W0 + timedelta(seconds=50)
    assert c.wall_time(W0 + timedelta(hours=1)) == W0 + timedelta(hours=1)


def test_speed_1_behind_0_is_real_time_and_speed_1_behind_stays_behind():
    real = LiveClock(W0, W0, 1)
    assert real.data_time(W0 + timedelta(minutes=7)) == W0 + timedelta(minutes=7)
    assert real.caught_up_at == W0
    lagging = LiveClock(W0, W0 - timedelta(minutes=30), 1)
    assert lagging.data_time(W0 + timedelta(hours=5)) == W0 + timedelta(hours=4, minutes=30)
    assert lagging.caught_up_at is None
    assert lagging.wall_time(W0) == W0 + timedelta(minutes=30)


def test_now_reads_the_injected_wall_clock():
    wall = [W0]
    c = LiveClock(W0, W0 - timedelta(hours=1), 6, wall=lambda: wall[0])
    assert c.now() == W0 - timedelta(hours=1)
    wall[0] += timedelta(minutes=5)
    assert c.now() == W0 - timedelta(minutes=30)


@pytest.mark.parametrize("kwargs", [{"speed": 0}, {"speed": -2}, {"d0": W0 + timedelta(seconds=1)}])
def test_a_clock_that_cannot_be_is_refused(kwargs):
    with pytest.raises(ValueError):
        LiveClock(**({"w0": W0, "d0": W0, "speed": 1} | kwargs))


# --- the versions the simulator keeps ------------------------------------------------------------
@pytest.fixture(scope="module")
def versioned_shop(tmp_path_factory):
    path = tmp_path_factory.mktemp("versioned") / "shop.duckdb"
    end = datetime(2026, 10, 1, tzinfo=UTC)
    simulate(SimulationSpec(skus=24, days=20, orders_per_day=500, end=end, incidents="none",
                            history_from=end - timedelta(days=2)), WarehouseHook(url=f"duckdb:///{path}"))
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    yield con
    con.close()


@pytest.mark.parametrize("table", list(KEYS))
def test_the_last_version_of_each_row_is_the_row_the_table_holds(versioned_shop, table):
    con, keys = versioned_shop, KEYS[table]
    updated = "hour" if table in ("traffic", "ad_spend") else "updated_at"
    last = (f"SELECT * EXCLUDE (valid_from) FROM {table}__versions "
            f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY valid_from DESC) = 1")
    recent = (f"SELECT * FROM {table} WHERE {updated} >= "
              f"(SELECT history_from FROM platform_history WHERE table_name = '{table}')")
    assert con.execute(f"SELECT count(*) FROM {table}__versions").fetchone()[0] > 0
    assert con.execute(f"SELECT count(*) FROM ({last} EXCEPT ALL {recent})").fetchone()[0] == 0
    assert con.execute(f"SELECT count(*) FROM ({recent} EXCEPT ALL {last})").fetchone()[0] == 0


def test_versions_follow_each_row_life(versioned_shop):
    con = versioned_shop
    # an order's statuses only move forward, its updated_at is its version's start
    steps = dict(con.execute(
        "SELECT prev || '>' || status, count(*) FROM (SELECT status, updated_at, valid_from, "
        "lag(status) OVER (PARTITION BY order_id ORDER BY valid_from) AS prev FROM orders__versions) "
        "WHERE prev IS NOT NULL GROUP BY 1").fetchall())
    assert set(steps) <= {"pending>pending", "pending>paid", "pending>cancelled", "paid>shipped",
                          "shipped>completed", "completed>refunded", "refunded>refunded"}
    assert {"pending>paid", "pending>cancelled", "paid>shipped", "shipped>completed"} <= set(steps)
    assert con.execute("SELECT count(*) FROM orders__versions WHERE updated_at <> valid_from "
                       "OR (status = 'pending') <> (paid_at IS NULL AND status = 'pending')").fetchone()[0] == 0
    # a parcel's tracking time moves on until it is delivered; an hour is published at its end
    assert con.execute("SELECT count(*) FROM shipments__versions WHERE last_tracking_at <> valid_from "
                       "OR (status = 'delivered') <> (delivered_at IS NOT NULL)").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM traffic__versions WHERE valid_from <> hour + INTERVAL 1 HOUR").fetchone()[0] == 0


def test_history_needs_a_duckdb_platform_file():
    hook = WarehouseHook(url="postgresql+psycopg2://nobody@127.0.0.1:1/none")
    with pytest.raises(SimulationError, match="DuckDB"):
        simulate(SimulationSpec(skus=24, days=2, history_from=datetime(2026, 1, 1, tzinfo=UTC)), hook)


# --- prepare and serve -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def live(tmp_path_factory):
    home = tmp_path_factory.mktemp("live-home")
    warehouse = WarehouseHook(url=f"duckdb:///{home / 'warehouse.duckdb'}")
    shop = prepare_live_shop(home, now=W0, warehouse=warehouse, **SMALL)
    return home, shop


def test_prepare_writes_the_state_file(live):
    home, shop = live
    doc = json.loads((home / STATE_FILE).read_text())
    assert doc["platform"] == str(home / PLATFORM_FILE) and (home / PLATFORM_FILE).exists()
    assert doc["labels"] == str(home / LABELS_FILE) and (home / LABELS_FILE).exists()
    assert (doc["w0"], doc["d0"], doc["speed"]) == ("2026-10-01T04:27:13Z", "2026-10-01T03:27:13Z", 6.0)
    assert doc["url"] is None
    incident = doc["incident"]
    assert incident["id"] == "live_formula_spike" and incident["shop_id"] == "shop-01"
    assert incident["sku"].startswith("SKU-INF-") and incident["skus"] == [incident["sku"]]
    assert datetime.fromisoformat(incident["start"]) == datetime(2026, 10, 1, 3, 32, 13, tzinfo=UTC)  # d0 + 5 min
    assert doc["window"]["end"] == "2026-10-01T11:00:00+00:00"  # 6 hours ahead, to the next hour
    assert LiveShop.read(home / STATE_FILE) == shop


def test_prepare_seeds_the_warehouse_as_the_platform_was_at_d0(live):
    home, shop = live
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)  # closed by prepare: we may open it
    con.execute("SET TimeZone = 'UTC'")
    try:
        first, last, n = con.execute("SELECT min(created_at), max(updated_at), count(*) FROM orders").fetchone()
        assert n > 0 and last < shop.d0 and first <= shop.d0 - timedelta(days=50)
        assert con.execute("SELECT max(updated_at) FROM shipments").fetchone()[0] < shop.d0
        # orders placed just before d0 are there as they were then, not as they end up
        con.execute(f"ATTACH '{shop.platform}' AS platform (READ_ONLY)")
        changed_later = con.execute(
            "SELECT count(*) FROM orders w JOIN platform.orders p USING (order_id) "
            "WHERE p.updated_at >= ? AND w.status <> p.status", [shop.d0]).fetchone()[0]
        assert changed_later > 0
    finally:
        con.close()


def _all(url: str, table: str, params: dict) -> list[dict]:
    rows, params = [], dict(params)
    while True:
        page = requests.get(f"{url}/v1/{table}", params=params | {"limit": 5000}, timeout=10).json()
        rows += page["data"]
        if not page["has_more"]:
            return rows
        params["cursor"] = page["next_cursor"]


def test_the_served_shop_follows_the_clock_and_the_incident_lands_in_its_window(live):
    home, shop = live
    wall = [shop.w0]
    start = datetime.fromisoformat(shop.incident["start"])
    end = datetime.fromisoformat(shop.incident["end"])
    sku = shop.incident["sku"]
    since = (shop.d0 - timedelta(hours=1)).isoformat()
    with LiveShopServer(home, wall=lambda: wall[0]) as server:
        assert json.loads((home / STATE_FILE).read_text())["url"] == server.url
        clock = requests.get(server.url + "/v1/_admin/clock", timeout=5).json()
        assert clock["as_of"] == "2026-10-01T03:27:13Z" and clock["live"] is True

        lines = _all(server.url, "order_items", {"updated_since": since})
        assert lines and max(r["created_at"] for r in lines) <= "2026-10-01T03:27:13Z"
        assert not [r for r in lines if r["sku"] == sku and r["created_at"] >= start.isoformat()]

        wall[0] = shop.w0 + timedelta(minutes=11)  # data time d0 + 66 min
        now = shop.clock(lambda: wall[0]).now()
        lines = _all(server.url, "order_items", {"updated_since": since})
        assert max(r["created_at"] for r in lines) <= now.isoformat().replace("+00:00", "Z")
        spike = [r for r in lines if r["sku"] == sku and r["created_at"] >= start.isoformat().replace("+00:00", "Z")]
        before = [r for r in lines if r["sku"] == sku and r["created_at"] < start.isoformat().replace("+00:00", "Z")]
        assert len(spike) >= 10 * max(1, len(before))  # orders of the formula SKU at many times their rate
        assert all(r["created_at"] < end.isoformat().replace("+00:00", "Z") for r in spike)
        orders = _all(server.url, "orders", {"updated_since": since})
        assert max(r["updated_at"] for r in orders) <= now.isoformat().replace("+00:00", "Z")
        assert {r["status"] for r in orders} >= {"pending", "paid"}


def test_prepare_refuses_too_short_a_history(tmp_path):
    warehouse = WarehouseHook(url=f"duckdb:///{tmp_path / 'w.duckdb'}")
    with pytest.raises(SimulationError, match="--days"):
        prepare_live_shop(tmp_path, now=W0, warehouse=warehouse, skus=24, days=30)


def test_the_cli_prepares_and_reports(tmp_path, monkeypatch, capsys):
    from threshold_operators.cli import main

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_WAREHOUSE",
                       json.dumps({"conn_type": "duckdb", "host": str(tmp_path / "w.duckdb")}))
    code = main(["live-shop", "prepare", "--now", "2026-10-01T04:27:13Z", "--skus", "24", "--days", "52",
                 "--hours-ahead", "2h", "--behind", "0", "--speed", "1"])
    assert code == 0
    doc = json.loads((tmp_path / STATE_FILE).read_text())
    assert doc["d0"] == doc["w0"] == "2026-10-01T04:27:13Z" and doc["speed"] == 1.0
    out = capsys.readouterr().out
    assert "Live shop ready" in out and "live_formula_spike" in out


def test_serve_runs_in_the_foreground_records_its_url_and_stops_on_sigterm(live):
    import os
    import signal
    import subprocess
    import sys
    import time

    home, _ = live
    proc = subprocess.Popen([sys.executable, "-m", "threshold_operators.cli", "live-shop", "serve",
                             "--state-file", str(home / STATE_FILE)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        url = proc.stdout.readline().strip()  # printed once healthy
        assert url.startswith("http://127.0.0.1:")
        assert json.loads((home / STATE_FILE).read_text())["url"] == url
        assert requests.get(url + "/healthz", timeout=5).json() == {"status": "ok"}
        assert requests.get(url + "/v1/_admin/clock", timeout=5).json()["live"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read()


def test_an_incident_placed_at_a_moment_starts_at_that_minute(tmp_path):
    from threshold_operators.simulator.incidents import IncidentError, load_incidents

    path = tmp_path / "incidents.yaml"
    path.write_text("""incidents:
  - id: at_a_moment
    kind: demand_spike
    start: "2026-09-30T02:17:00Z"
    hours: 1
    target: {category: infant_formula, top: 1}
    params: {multiplier: 80}
""")
    shop = tmp_path / "shop.duckdb"
    result = simulate(SimulationSpec(skus=24, days=3, orders_per_day=400, end=datetime(2026, 10, 1, tzinfo=UTC),
                                     incidents=str(path)), WarehouseHook(url=f"duckdb:///{shop}"))
    landed = result.labels["incidents"][0]
    assert (landed["start"], landed["end"]) == ("2026-09-30T02:17:00+00:00", "2026-09-30T03:17:00+00:00")
    con = duckdb.connect(str(shop), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    count = "SELECT count(*) FROM order_items WHERE sku = ? AND created_at >= ? AND created_at < ?"
    sku = landed["skus"][0]
    before = con.execute(count, [sku, "2026-09-30 02:00:00+00", "2026-09-30 02:17:00+00"]).fetchone()[0]
    during = con.execute(count, [sku, "2026-09-30 02:17:00+00", "2026-09-30 03:17:00+00"]).fetchone()[0]
    after = con.execute(count, [sku, "2026-09-30 03:17:00+00", "2026-09-30 04:00:00+00"]).fetchone()[0]
    con.close()
    assert during >= 20 and before <= 3 and after <= 3

    path.write_text(path.read_text().replace("    hours: 1", "    day: 2\n    hours: 1"))
    with pytest.raises(IncidentError, match="either day"):
        load_incidents(str(path))
