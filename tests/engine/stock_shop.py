"""A hand-made shop for the current-state rule inventory.stock_cover: two SKUs selling 12 units a
day (one every two hours) for 15 days before ``T0``; SKU-LOW has 60 units on hand (5 days of
cover: yellow), SKU-OK 10,000. ``replenish(hook, at, units)`` lands a new stock snapshot of SKU-LOW."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from threshold_operators.warehouse.schema import create_schema

T0 = datetime(2026, 10, 4, 17, tzinfo=UTC)  # 01:00 in Asia/Shanghai
H = timedelta(hours=1)
SHOP = "shop-01"
LOW, OK = f"shop_id={SHOP}/sku=SKU-LOW", f"shop_id={SHOP}/sku=SKU-OK"


def load_stock_shop(hook, hours_after: int = 72) -> None:
    create_schema(hook.engine)
    items = []
    t, n = T0 - timedelta(days=15), 0
    while t < T0 + hours_after * H:
        for sku in ("SKU-LOW", "SKU-OK"):
            n += 1
            items.append({"order_id": f"o{n}", "line_no": 1, "shop_id": SHOP, "sku": sku, "quantity": 1,
                          "unit_price": 10, "created_at": t + timedelta(minutes=7)})
        t += 2 * H
    with hook.engine.begin() as con:
        con.execute(sa.text("INSERT INTO shops VALUES (:s, 'Shop', 'Asia/Shanghai', 'CNY')"), {"s": SHOP})
        for sku in ("SKU-LOW", "SKU-OK"):
            con.execute(sa.text("INSERT INTO products (shop_id, sku, name, brand, category, batch_id, unit_cost, "
                                "lead_time_days, supplier_id, updated_at) VALUES (:shop, :sku, :sku, 'B', 'beauty', "
                                "'b1', 5, 7, 'SUP-1', :t)"), {"shop": SHOP, "sku": sku, "t": T0 - timedelta(days=30)})
        con.execute(sa.text("INSERT INTO order_items (order_id, line_no, shop_id, sku, quantity, unit_price, created_at) "
                            "VALUES (:order_id, :line_no, :shop_id, :sku, :quantity, :unit_price, :created_at)"), items)
    replenish(hook, T0 - timedelta(days=2), 60, sku="SKU-LOW")
    replenish(hook, T0 - timedelta(days=2), 10_000, sku="SKU-OK")


def replenish(hook, at: datetime, units: int, sku: str = "SKU-LOW") -> None:
    """A stock position landed as the extract lands it (the loader keeps ``inventory_latest``)."""
    from threshold_operators.warehouse.bulk_load import bulk_loader
    from threshold_operators.warehouse.schema import arrow_table

    with bulk_loader(hook) as loader:
        loader.upsert("inventory_snapshots", arrow_table("inventory_snapshots", {
            "shop_id": [SHOP], "sku": [sku], "warehouse_id": ["wh1"], "on_hand": [units], "reserved": [0],
            "in_transit": [0], "snapshot_at": [at]}))


def extract_ran(hook, table: str, at: datetime) -> None:
    """An extract run of ``table`` finished at ``at`` (the gates judge the latest run)."""
    with hook.engine.begin() as con:
        con.execute(sa.text("INSERT INTO extract_runs (run_id, source, table_name, updated_since, updated_before, "
                            "rows_fetched, rows_loaded, rows_quarantined, high_water_mark, finished_at) VALUES "
                            "(:r, 'shop_api', :t, :a, :a, 0, 0, 0, :a, :a)"), {"r": f"run-{at.isoformat()}", "t": table, "a": at})


def fail_gate(hook, table: str, at: datetime) -> None:
    """The latest extract of ``table`` failed its freshness gate at ``at`` (engine.gates)."""
    extract_ran(hook, table, at)
    with hook.engine.begin() as con:
        con.execute(sa.text("INSERT INTO data_quality_events (event_id, source, table_name, kind, detail, observed_at) "
                            "VALUES (:e, 'shop_api', :t, 'freshness', 'nothing new', :a)"),
                    {"e": f"ev-{at.isoformat()}", "t": table, "a": at})


def stock_cover_cycle(hook, catalogue, k: int, rule_id: str = "inventory.stock_cover"):
    """The live cycle over [T0 + k h, T0 + (k+1) h), recorded as the check task records it
    (``engine.record.live_evaluation``: resume from the states the cycles before left, then record)."""
    from threshold_operators.engine.compile import compile_rule
    from threshold_operators.engine.gates import failing_tables
    from threshold_operators.engine.record import live_evaluation, record

    loaded = catalogue.get(rule_id)
    start, end = T0 + k * H, T0 + (k + 1) * H
    ev = live_evaluation(hook, compile_rule(loaded, catalogue.get), start, end, end + timedelta(minutes=10),
                         failing_tables(hook, loaded.tables))
    record(hook, ev, loaded.rule, f"cycle-{k}")
    return ev
