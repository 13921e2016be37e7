"""simulate(): deterministic, identical on DuckDB and PostgreSQL, careful with existing data."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest
import sqlalchemy as sa

from threshold_operators.simulator.incidents import IncidentError, load_incidents
from threshold_operators.simulator.run import SimulationError, SimulationSpec, simulate
from threshold_operators.warehouse.hook import WarehouseHook
from threshold_operators.warehouse.schema import TABLE_NAMES, metadata, table_spec

END = datetime(2026, 9, 30, tzinfo=UTC)
SMALL = dict(shops=2, skus=48, days=50, orders_per_day=150, end=END)


def fingerprint(hook) -> dict[str, tuple]:
    """Per table: row count and an order-independent digest of every value."""
    out = {}
    with hook.engine.connect() as con:
        for t in TABLE_NAMES:
            spec = table_spec(t)
            key = " || '|' || ".join(f"CAST({k} AS VARCHAR)" if k not in spec.timestamp_columns
                                     else f"CAST(EXTRACT(EPOCH FROM {k}) AS BIGINT)" for k in spec.key)
            n, keys = con.execute(sa.text(f"SELECT COUNT(*), COUNT(DISTINCT {key}) FROM {t}")).one()
            sums = []
            for col in metadata.tables[t].columns:
                c = col.name
                if c in spec.timestamp_columns:
                    sums.append(f"SUM(CAST(EXTRACT(EPOCH FROM {c}) AS BIGINT))")
                elif isinstance(col.type, sa.String | sa.Text):
                    sums.append(f"SUM(LENGTH({c}))")
                else:
                    sums.append(f"SUM({c})")
            values = con.execute(sa.text(f"SELECT {', '.join(sums)} FROM {t}")).one()
            out[t] = (n, keys, tuple(float(v) if v is not None else None for v in values))
    hook.engine.dispose()
    return out


def test_same_seed_same_shop_other_seed_other_shop(tmp_path):
    hooks = [WarehouseHook(url=f"duckdb:///{tmp_path / f'{i}.duckdb'}") for i in range(3)]
    simulate(SimulationSpec(seed=5, incidents="none", **SMALL), hooks[0])
    simulate(SimulationSpec(seed=5, incidents="none", **SMALL), hooks[1])
    simulate(SimulationSpec(seed=6, incidents="none", **SMALL), hooks[2])
    a, b, c = (fingerprint(h) for h in hooks)
    assert a == b
    assert a["orders"] != c["orders"]
    assert all(n == keys for n, keys, _ in a.values())  # every key unique


def test_duckdb_and_postgres_get_the_same_rows(tmp_path, pg_schema, pg_admin_url):
    duck = WarehouseHook(url=f"duckdb:///{tmp_path / 'w.duckdb'}")
    pg = WarehouseHook(url=pg_admin_url, search_path=pg_schema)
    spec = dict(seed=3, incidents="default", **{**SMALL, "days": 60, "shops": 1})
    r1 = simulate(SimulationSpec(**spec), duck)
    r2 = simulate(SimulationSpec(**spec), pg)
    assert r1.rows == r2.rows and r1.order_lines > 5000
    f1, f2 = fingerprint(duck), fingerprint(pg)
    for t in TABLE_NAMES:
        assert f1[t][:2] == f2[t][:2], t
        assert f1[t][2] == pytest.approx(f2[t][2], rel=1e-9), t


def test_refuses_to_mix_with_existing_rows_unless_replace(tmp_path):
    hook = WarehouseHook(url=f"duckdb:///{tmp_path / 'w.duckdb'}")
    spec = SimulationSpec(seed=1, incidents="none", **SMALL)
    first = simulate(spec, hook)
    with pytest.raises(SimulationError, match=r"already holds rows \(shops=2, products=96"):
        simulate(spec, hook)
    again = simulate(spec, hook, replace=True)
    assert again.rows == first.rows
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    assert con.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == first.rows["orders"]
    con.close()


def test_bad_arguments_are_named():
    with pytest.raises(SimulationError, match="--skus must be at least 24.*--timezone 'Mars/Olympus'"):
        SimulationSpec(skus=3, timezone="Mars/Olympus").validate()


def test_an_incident_outside_the_window_is_refused(tmp_path):
    hook = WarehouseHook(url=f"duckdb:///{tmp_path / 'w.duckdb'}")
    with pytest.raises(IncidentError, match="formula_spike_low_stock: day 45 .* outside the 20-day window"):
        simulate(SimulationSpec(**{**SMALL, "days": 20}), hook)


def test_a_bad_incident_file_names_the_file_incident_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "incidents:\n"
        "  - id: x\n    kind: demand_spike\n    day: 3\n    hours: 2\n    target: {category: spaceships}\n"
        "  - id: y\n    kind: teleport\n    day: 3\n    hours: 2\n    colour: red\n",
        encoding="utf-8",
    )
    with pytest.raises(IncidentError) as err:
        load_incidents(bad)
    msg = str(err.value)
    assert str(bad) in msg
    assert "incidents.0.target.category" in msg and "spaceships" in msg
    assert "incidents.1.kind" in msg and "incidents.1.colour" in msg


def test_missing_incident_file():
    with pytest.raises(IncidentError, match="no such incident file"):
        load_incidents("/nonexistent/incidents.yaml")


def test_incidents_move_off_singles_day_together(tmp_path):
    """With the window ending just after Singles' Day, the schedule moves earlier by whole weeks."""
    from datetime import timedelta

    hook = WarehouseHook(url=f"duckdb:///{tmp_path / 'w.duckdb'}")
    end = datetime(2026, 11, 25, tzinfo=UTC)
    result = simulate(SimulationSpec(shops=1, skus=48, days=80, orders_per_day=50, end=end), hook)
    incidents = {i["id"]: i for i in result.labels["incidents"]}
    promo = (datetime(2026, 10, 30, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC))
    for i in incidents.values():
        if i["id"] == "warehouse_tracking_stall":
            continue
        assert not (promo[0] <= datetime.fromisoformat(i["start"]) < promo[1]), i["id"]
    spike = datetime.fromisoformat(incidents["formula_spike_low_stock"]["start"])
    refund = datetime.fromisoformat(incidents["refund_surge"]["start"])
    assert (refund - spike) % timedelta(days=1) == timedelta(hours=8, minutes=30)  # order and spacing kept
    assert incidents["warehouse_tracking_stall"]["start_local"].startswith("2026-11-22")  # anchored to the end
    assert [e["name"] for e in result.labels["planned_events"]] == ["Singles' Day pre-sale", "Singles' Day", "Singles' Day tail"]


def test_a_run_that_fails_half_way_leaves_no_half_shop(tmp_path, monkeypatch):
    from threshold_operators.simulator import shop_day

    hook = WarehouseHook(url=f"duckdb:///{tmp_path / 'w.duckdb'}")
    real = shop_day.ShopDay.generate

    def generate(self, h0):
        if h0 >= 30 * 24:
            raise RuntimeError("disk full")
        return real(self, h0)

    monkeypatch.setattr(shop_day.ShopDay, "generate", generate)
    with pytest.raises(RuntimeError, match="disk full"):
        simulate(SimulationSpec(seed=1, incidents="none", **SMALL), hook, flush_rows=5_000)  # many commits first
    assert all(n == 0 for n in fingerprint(hook).values() for n in n[:1])


def test_dry_run_counts_the_same_rows_without_a_warehouse(tmp_path):
    spec = dict(seed=2, incidents="none", **SMALL)
    counted = simulate(SimulationSpec(**spec), None)
    loaded = simulate(SimulationSpec(**spec), WarehouseHook(url=f"duckdb:///{tmp_path / 'w.duckdb'}"))
    assert counted.rows == loaded.rows


def test_stock_snapshots_follow_every_change_and_the_monthly_stocktake(tmp_path):
    path = tmp_path / "w.duckdb"
    simulate(SimulationSpec(seed=4, incidents="none", **SMALL), WarehouseHook(url=f"duckdb:///{path}"))
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    n_skus = con.execute("SELECT COUNT(*) FROM products").fetchone()[0]
    full = con.execute(
        "SELECT snapshot_at AT TIME ZONE 'Asia/Shanghai', COUNT(*) FROM inventory_snapshots GROUP BY 1 HAVING COUNT(*) = ? ORDER BY 1",
        [n_skus]).fetchall()
    # the window start and 1 September 00:00 local (the stocktake), every SKU of both shops
    assert [(ts.month, ts.day, ts.hour) for ts, _ in full][-1] == (9, 1, 0)
    # an hour in which a SKU sold has its snapshot at the end of that hour
    missing = con.execute(
        "SELECT COUNT(*) FROM (SELECT DISTINCT shop_id, sku, date_trunc('hour', created_at) + INTERVAL 1 HOUR AS at FROM order_items) s "
        "ANTI JOIN inventory_snapshots i ON i.shop_id = s.shop_id AND i.sku = s.sku AND i.snapshot_at = s.at").fetchone()[0]
    con.close()
    assert missing == 0
