"""Late parents are not bad data: order lines whose order is not loaded yet are held, loaded when
the order lands (once), quarantined when it never does. DuckDB and PostgreSQL, real loads."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from tests.extract.conftest import NOW
from threshold_operators.engine.gates import failing_tables
from threshold_operators.extract import staging
from threshold_operators.extract.load import load_staged

M = timedelta(minutes=1)


def order(order_id: str, at) -> dict:
    return {"order_id": order_id, "shop_id": "shop-01", "channel": "app", "customer_id": "c1", "status": "paid", "amount": "19.80",
            "currency": "CNY", "created_at": at.isoformat(), "paid_at": at.isoformat(), "updated_at": at.isoformat()}


def line(order_id: str, at, quantity: int = 1) -> dict:
    return {"order_id": order_id, "line_no": 1, "shop_id": "shop-01", "sku": "SKU-1", "quantity": quantity,
            "unit_price": "9.90", "created_at": at.isoformat()}


def load(source, warehouse, table: str, records: list[dict], run_id: str, now):
    """Stage ``records`` as a fetch would, then load them the way the DAG's load task does."""
    ts = next(t for t in source.tables if t.table == table)
    folder = staging.staging_dir(run_id, source.source, table)
    manifest = staging.write(folder, [records], {"source": source.source, "table": table, "run_id": run_id,
                                                 "updated_since": None, "updated_before": None})
    staging.complete(folder, manifest)
    return load_staged(source, ts, warehouse=warehouse, run_id=run_id, now=now)


def rows(hook, sql: str) -> list:
    with hook.engine.connect() as con:
        out = [tuple(r) for r in con.execute(sa.text(sql)).all()]
    hook.engine.dispose()
    return out


def test_lines_of_orders_not_loaded_yet_are_held_then_loaded_once_or_quarantined(warehouse, sources):
    shop = sources["shop_api"]
    at = NOW - 10 * M
    load(shop, warehouse, "orders", [order(f"o{i}", at) for i in range(7)], "run-1", NOW)
    lines = [line(f"o{i}", at) for i in range(10)]  # 30% of the lines: orders o7-o9 not loaded yet
    first = load(shop, warehouse, "order_items", lines, "run-1", NOW)
    assert (first.loaded, first.quarantined, first.held) == (7, 0, 3) and first.quality_ok
    assert failing_tables(warehouse, ["order_items"]) == {}  # nothing refused: the table is not failing
    assert rows(warehouse, "SELECT COUNT(*) FROM data_quality_events") == [(0,)]
    held = rows(warehouse, "SELECT record_key, reason FROM held_rows ORDER BY record_key")
    assert held == [(f"o{i}|1", "references(order_id -> orders)") for i in (7, 8, 9)]

    # a newer version of a held line arrives before its order: it replaces the held one
    assert load(shop, warehouse, "order_items", [line("o8", at + M, quantity=5)], "run-2", NOW + 5 * M).held == 1
    # the orders land; the next load of order_items loads the waiting lines, once
    load(shop, warehouse, "orders", [order("o7", at), order("o8", at)], "run-3", NOW + 10 * M)
    third = load(shop, warehouse, "order_items", [], "run-3", NOW + 10 * M)
    assert (third.released, third.loaded, third.quarantined) == (2, 2, 0)
    again = load(shop, warehouse, "order_items", [], "run-4", NOW + 15 * M)
    assert (again.released, again.loaded) == (0, 0)
    assert rows(warehouse, "SELECT COUNT(*) FROM order_items") == [(9,)]
    assert rows(warehouse, "SELECT quantity FROM order_items WHERE order_id = 'o8'") == [(5,)]  # the newer version

    # o9's order never comes: after the wait (30 minutes from its first sighting) it is quarantined
    assert load(shop, warehouse, "order_items", [], "run-5", NOW + 29 * M).expired == 0
    last = load(shop, warehouse, "order_items", [], "run-6", NOW + 30 * M)
    assert (last.expired, last.quarantined, last.released) == (1, 1, 0)
    assert rows(warehouse, "SELECT record_key, failed_checks FROM quarantine") == [
        ("o9|1", "references(order_id -> orders): parent never arrived within 30m")]
    assert rows(warehouse, "SELECT COUNT(*) FROM held_rows") == [(0,)]
    assert rows(warehouse, "SELECT COUNT(*) FROM order_items") == [(9,)]


def test_a_line_that_is_also_bad_otherwise_is_refused_at_once(warehouse, sources):
    shop = sources["shop_api"]
    at = NOW - 10 * M
    result = load(shop, warehouse, "order_items", [line("o1", at, quantity=-1), line("o2", at)], "run-1", NOW)
    assert (result.held, result.quarantined) == (1, 1)
    assert rows(warehouse, "SELECT failed_checks FROM quarantine") == [
        ("between(quantity, 0.0, None); references(order_id -> orders)",)]


# --- a gate's verdict needs enough rows (engine.gates) ---------------------------------------------
def test_the_quarantine_share_is_pooled_until_it_covers_min_rows():
    from threshold_operators.engine.gates import quality_verdict

    assert quality_verdict([(70, 4)]) == (False, 70, 4, 1)  # 6% of 70 rows: no verdict
    assert quality_verdict([(70, 4), (70, 4), (70, 4), (500, 0)]) == (True, 210, 12, 3)  # newest first
    assert quality_verdict([(70, 0), (70, 4), (70, 4)]) == (False, 210, 8, 3)  # 3.8%: passing
    assert quality_verdict([(250, 20)], min_rows=200, share=0.1) == (False, 250, 20, 1)


def test_a_few_bad_rows_in_a_small_batch_are_quarantined_but_fail_nothing(warehouse, sources):
    shop = sources["shop_api"]
    at = NOW - 60 * M
    load(shop, warehouse, "orders", [order(f"o{i}", at) for i in range(300)], "orders", NOW)

    def batch(run: int, bad: int):
        lines = [line(f"o{run * 70 + i}", at, quantity=-1 if i < bad else 1) for i in range(70)]
        return load(shop, warehouse, "order_items", lines, f"run-{run}", NOW + run * 5 * M)

    assert batch(0, 4).quarantined == 4
    assert failing_tables(warehouse, ["order_items"]) == {}  # 70 rows: too few for a verdict
    assert rows(warehouse, "SELECT COUNT(*) FROM quarantine") == [(4,)]  # still quarantined, visible
    assert rows(warehouse, "SELECT kind FROM data_quality_events") == [("quality",)]
    batch(1, 4)
    assert failing_tables(warehouse, ["order_items"]) == {}  # 140 rows
    batch(2, 4)
    gate = failing_tables(warehouse, ["order_items"])["order_items"]  # 12 of 210 rows: failing
    assert gate["kind"] == "quality" and "12 of the last 210 rows refused (3 runs)" in gate["detail"]
    batch(3, 0)
    assert failing_tables(warehouse, ["order_items"]) == {}  # the latest run refused nothing
