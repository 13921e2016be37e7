"""Rolling rules (``window:``) on DuckDB and PostgreSQL: the rollup path equals the raw query, a
5-minute cycle equals one evaluation of the whole day, late and updated rows reach the rollup.

Rows are written through the bulk loader, as the extract's load writes them, so the dirty
slices are noted the way they are in production (``warehouse.rollup_tables``).
"""

from __future__ import annotations

import math
import shutil
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from threshold_operators.engine.compile import compile_rule
from threshold_operators.engine.evaluate import evaluate, evaluate_cycles, warehouse_query
from threshold_operators.engine.rollups import catalogue_rollups, coalesce, maintain, maintain_for
from threshold_operators.rules.catalogue import load_catalogue
from threshold_operators.warehouse.bulk_load import bulk_loader
from threshold_operators.warehouse.schema import arrow_table, create_schema

DATA = Path(__file__).parent / "testdata_rolling"
REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("sales/orders_by_sku_slice.sql",)  # the catalogue's own query, never a copy that could drift
M5 = timedelta(minutes=5)
H = timedelta(hours=1)
T0 = datetime(2026, 9, 10, 2, tzinfo=UTC)
NOW = datetime(2026, 9, 11, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    sql = tmp_path_factory.mktemp("rolling_sql")
    shutil.copytree(DATA / "sql", sql, dirs_exist_ok=True)
    for path in SHIPPED:
        (sql / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "include" / "sql" / path, sql / path)
    cat = load_catalogue(DATA / "rules", sql)
    assert not cat.all_problems(), cat.all_problems()
    return cat


def _items(times: list[datetime], sku: str = "A", first: int = 0) -> list[dict]:
    return [{"order_id": f"o-{sku}-{first + n}", "line_no": 1, "shop_id": "s1", "sku": sku, "quantity": 1,
             "unit_price": 10, "created_at": t} for n, t in enumerate(times)]


def _load(hook, rows: list[dict]) -> None:
    create_schema(hook.engine)
    cols = ("order_id", "line_no", "shop_id", "sku", "quantity", "unit_price", "created_at")
    with bulk_loader(hook) as loader:
        loader.upsert("order_items", arrow_table("order_items", {c: [r[c] for r in rows] for c in cols}))


def _spread(start: datetime, per_5m: list[int]) -> list[datetime]:
    """Order times: ``per_5m[k]`` orders in the k-th 5-minute slice from ``start``."""
    return [start + k * M5 + timedelta(seconds=10 + 20 * j) for k, n in enumerate(per_5m) for j in range(n)]


def _walk(ev) -> list[tuple]:
    return [(r.entity_key, r.bucket, str(r.state), r.severity, round(float(r.row.get("v_0") or 0), 6))
            for r in ev.results]


def _cycles(compiled, hook, start, end, step=M5):
    windows = [(start + k * step, start + (k + 1) * step) for k in range(int((end - start) / step))]
    return [r for ev in evaluate_cycles(compiled, warehouse_query(hook), windows) for r in _walk(ev)]


def _maintain(hook, catalogue, rule_id, start):
    return maintain_for(hook, catalogue.get(rule_id), catalogue, start, start + H, NOW)


def test_rollup_equals_the_raw_query_and_cycles_equal_one_evaluation(catalogue, warehouse):
    # a burst of 3 orders a slice for 40 minutes in the second hour, 1 a slice otherwise
    per = [1] * 12 + [3] * 8 + [1] * 16
    _load(warehouse, _items(_spread(T0, per)))
    loaded = catalogue.get("sales.rolling_count")
    done = _maintain(warehouse, catalogue, "sales.rolling_count", T0)
    assert done[0].rebuilt and done[0].rows > 0
    start, end = T0, T0 + 3 * H
    rolled = compile_rule(loaded, catalogue.get, source="rollup")
    raw = compile_rule(loaded, catalogue.get, source="query")
    assert "rollup_sales_orders_by_sku_slice" in rolled.sql and "rollup_" not in raw.sql
    once = _walk(evaluate(rolled, warehouse_query(warehouse), start, end, now=end))
    assert once == _walk(evaluate(raw, warehouse_query(warehouse), start, end, now=end))
    assert once == _cycles(rolled, warehouse, start, end)  # every 5 minutes == the whole span at once
    firing = [(b, v) for _, b, s, _, v in once if s == "firing"]
    # 30 minutes of the burst: 6 slices x 3 = 18; first above 8: 4 quiet slices and 2 of the burst
    assert firing[0] == (T0 + H + M5, 6 + 4.0)
    assert max(v for _, v in firing) == 18.0


def test_late_and_updated_rows_reach_the_rollup(catalogue, warehouse):
    _load(warehouse, _items(_spread(T0, [1] * 12)))
    loaded = catalogue.get("sales.rolling_count")
    compiled = compile_rule(loaded, catalogue.get, source="rollup")
    _maintain(warehouse, catalogue, "sales.rolling_count", T0)
    start, end = T0 + 30 * M5 / 5, T0 + H
    assert [r for r in _walk(evaluate(compiled, warehouse_query(warehouse), start, end, now=end))] == []
    # late rows for an old slice: five more orders placed at T0 + 20 min, loaded now
    _load(warehouse, _items([T0 + 20 * timedelta(minutes=1) + timedelta(seconds=s) for s in range(5)], first=100))
    again = _maintain(warehouse, catalogue, "sales.rolling_count", T0)
    assert not again[0].rebuilt and again[0].ranges == [(T0 + 20 * timedelta(minutes=1), T0 + 25 * timedelta(minutes=1))]
    after = _walk(evaluate(compiled, warehouse_query(warehouse), start, end, now=end))
    assert after and after[0][2] == "firing"
    raw = compile_rule(loaded, catalogue.get, source="query")
    assert after == _walk(evaluate(raw, warehouse_query(warehouse), start, end, now=end))
    # the same rows delivered again (the extract's overlap) change nothing a rollup reads: no mark
    _load(warehouse, _items([T0 + 20 * timedelta(minutes=1)], first=100))
    assert _maintain(warehouse, catalogue, "sales.rolling_count", T0)[0].ranges == []
    # an update of a loaded row (same key) in a column the rollup reads re-marks its slice
    changed = _items([T0 + 20 * timedelta(minutes=1)], first=100)
    changed[0]["quantity"] = 3
    _load(warehouse, changed)
    third = _maintain(warehouse, catalogue, "sales.rolling_count", T0)
    assert third[0].ranges == [(T0 + 20 * timedelta(minutes=1), T0 + 25 * timedelta(minutes=1))]
    assert _walk(evaluate(compiled, warehouse_query(warehouse), start, end, now=end)) == \
        _walk(evaluate(raw, warehouse_query(warehouse), start, end, now=end))
    # one the rollup does not read (the price) marks nothing
    changed[0]["unit_price"] = 12
    _load(warehouse, changed)
    assert _maintain(warehouse, catalogue, "sales.rolling_count", T0)[0].ranges == []


def test_a_row_whose_event_time_moves_leaves_its_old_slice(catalogue, warehouse):
    # three orders at T0 + 20 min; a correction moves two of them to T0 + 50 min (same keys)
    old, new = T0 + 20 * timedelta(minutes=1), T0 + 50 * timedelta(minutes=1)
    _load(warehouse, _items([old, old + timedelta(seconds=30), old + timedelta(seconds=40)]))
    loaded = catalogue.get("sales.rolling_count")
    _maintain(warehouse, catalogue, "sales.rolling_count", T0)
    _load(warehouse, _items([new, new + timedelta(seconds=5)]))
    done = _maintain(warehouse, catalogue, "sales.rolling_count", T0)
    # both the slice the rows left and the one they entered are recomputed (one merged range)
    assert done[0].ranges == [(old, new + M5)]
    with warehouse.engine.connect() as con:
        rolled = {b.astimezone(UTC): n for b, n in con.execute(sa.text(
            "SELECT bucket, orders FROM rollup_sales_orders_by_sku_slice WHERE orders > 0 ORDER BY bucket"))}
    assert rolled == {old: 1, new: 2}
    start, end = T0, T0 + 2 * H
    rolled_ev = _walk(evaluate(compile_rule(loaded, catalogue.get, source="rollup"), warehouse_query(warehouse), start, end, now=end))
    assert rolled_ev == _walk(evaluate(compile_rule(loaded, catalogue.get, source="query"), warehouse_query(warehouse), start, end, now=end))


def test_rows_of_a_sliced_table_are_not_deleted(warehouse):
    from threshold_operators.warehouse.rollup_tables import is_sliced

    create_schema(warehouse.engine)
    assert is_sliced("order_items") and not is_sliced("held_rows") and not is_sliced("products")
    with pytest.raises(ValueError, match="order_items: rows of a sliced fact table are replaced"), bulk_loader(warehouse) as loader:
        loader.delete_keys("order_items", [("o-A-0", 1)])


def test_rollup_extends_backwards_for_an_older_window(catalogue, warehouse):
    _load(warehouse, _items(_spread(T0 - 24 * H, [2] * 12) + _spread(T0, [2] * 12)))
    first = _maintain(warehouse, catalogue, "sales.rolling_count", T0)
    assert first[0].rebuilt
    older = maintain_for(warehouse, catalogue.get("sales.rolling_count"), catalogue, T0 - 24 * H, T0 - 23 * H, NOW)
    assert older[0].extended_to is not None and not older[0].rebuilt
    loaded = catalogue.get("sales.rolling_count")
    rolled, raw = compile_rule(loaded, catalogue.get, source="rollup"), compile_rule(loaded, catalogue.get, source="query")
    a, b = T0 - 24 * H, T0 - 22 * H
    assert _walk(evaluate(rolled, warehouse_query(warehouse), a, b, now=b)) == \
        _walk(evaluate(raw, warehouse_query(warehouse), a, b, now=b)) != []


def test_same_hour_baseline_poisson_tail_and_for_as_a_duration(catalogue, warehouse):
    # 2 days of one order every 15 minutes, then 3 a slice from T0 + 1 h on
    quiet = [1, 0, 0] * 4
    _load(warehouse, _items(_spread(T0 - 48 * H, quiet * 24 * 2)
                            + _spread(T0, quiet + [3] * 12)))
    _maintain(warehouse, catalogue, "sales.rolling_tail", T0)
    loaded = catalogue.get("sales.rolling_tail")
    assert loaded.rule.for_ == 2  # for: 10m of 5-minute buckets
    compiled = compile_rule(loaded, catalogue.get, source="rollup")
    start, end = T0 + H, T0 + 2 * H
    once = evaluate(compiled, warehouse_query(warehouse), start, end, now=end)
    states = [(r.bucket, str(r.state)) for r in once.results]
    assert states[0][1] == "pending" and states[1][1] == "firing"
    assert once.results == [r for ev in evaluate_cycles(compiled, warehouse_query(warehouse),
                                                         [(start + k * M5, start + (k + 1) * M5) for k in range(12)])
                            for r in ev.results]
    raw = compile_rule(loaded, catalogue.get, source="query")
    assert _walk(once) == _walk(evaluate(raw, warehouse_query(warehouse), start, end, now=end))
    # the value is the Wilson-Hilferty quantile of the exact Poisson tail at the first breach
    row = once.results[0].row
    x, b = float(row["orders"]), float(row["base_0"])
    assert b == pytest.approx(4.0) and row["v_0"] == pytest.approx(_exact_z(x, b + 0.5 / 2), abs=0.1)


def test_trailing_baseline_of_a_rolling_rule(catalogue, warehouse):
    _load(warehouse, _items(_spread(T0, [1] * 24 + [3] * 6)))
    _maintain(warehouse, catalogue, "sales.rolling_trailing", T0)
    loaded = catalogue.get("sales.rolling_trailing")
    start, end = T0 + 2 * H, T0 + 2 * H + 30 * timedelta(minutes=1)
    ev = evaluate(compile_rule(loaded, catalogue.get, source="rollup"), warehouse_query(warehouse), start, end, now=end)
    last = max(ev.results, key=lambda r: r.bucket)
    # 18 orders in the last 30 minutes against 24 in the 2 hours before, scaled to 30 minutes: 6
    assert (float(last.row["orders"]), float(last.row["base_0"]), str(last.state)) == (18.0, 6.0, "firing")
    raw = compile_rule(loaded, catalogue.get, source="query")
    assert _walk(ev) == _walk(evaluate(raw, warehouse_query(warehouse), start, end, now=end))


def _exact_z(x: float, b: float) -> float:
    """The normal quantile of P(X >= x) for X ~ Poisson(b), summed in log space."""
    tail = sum(math.exp(-b + k * math.log(b) - math.lgamma(k + 1)) for k in range(int(x), int(x) + 2000))
    return statistics.NormalDist().inv_cdf(1.0 - tail)


@pytest.mark.parametrize(("x", "b"), [(1, 0.2), (3, 0.5), (6, 1.9), (10, 2.4), (15, 3.75), (40, 12.0), (200, 120.0)])
def test_poisson_tail_is_close_to_the_exact_quantile(x, b):
    import duckdb

    from threshold_operators.engine.compile import _poisson_tail

    z = duckdb.sql(f"SELECT {_poisson_tail(f'CAST({x} AS DOUBLE)', f'CAST({b} AS DOUBLE)')}").fetchall()[0][0]
    assert z == pytest.approx(_exact_z(x, b), abs=0.12)


def test_coalesce_merges_slices_less_than_an_hour_apart():
    s = [T0, T0 + M5, T0 + 30 * timedelta(minutes=1), T0 + 3 * H]
    assert coalesce(s) == [(T0, T0 + 35 * timedelta(minutes=1)), (T0 + 3 * H, T0 + 3 * H + M5)]


def test_catalogue_rollups_share_one_table_per_query(catalogue):
    rollups = catalogue_rollups(catalogue)
    assert list(rollups) == ["rollup_sales_orders_by_sku_slice"]
    r = rollups["rollup_sales_orders_by_sku_slice"]
    assert r.keys == ("shop_id", "sku") and r.metrics == ("orders", "units") and r.tables == ("order_items",)
    assert set(r.rules) == {"sales.rolling_count", "sales.rolling_tail", "sales.rolling_trailing", "sales.rolling_long", "compound.either"}


def test_a_load_notes_its_slices_in_its_own_transaction(catalogue, warehouse):
    create_schema(warehouse.engine)
    _maintain(warehouse, catalogue, "sales.rolling_count", T0)  # a rollup reads order_items from now on
    with pytest.raises(RuntimeError), bulk_loader(warehouse) as loader:
        loader.upsert("order_items", arrow_table("order_items", {
            c: [v] for c, v in _items([T0 + timedelta(minutes=7)])[0].items()}))
        raise RuntimeError("the load fails after its upsert")
    with warehouse.engine.connect() as con:
        assert con.execute(sa.text("SELECT COUNT(*) FROM rollup_dirty")).scalar() == 0
    _load(warehouse, _items([T0 + timedelta(minutes=7), T0 + timedelta(minutes=8), T0 + timedelta(minutes=12)]))
    with warehouse.engine.connect() as con:
        rows = con.execute(sa.text("SELECT table_name, slice FROM rollup_dirty ORDER BY slice")).all()
    assert [(t, s.astimezone(UTC)) for t, s in rows] == [("order_items", T0 + M5), ("order_items", T0 + 2 * M5)]


def test_loads_mark_only_what_a_rollup_reads(catalogue, warehouse):
    """The registry (rollup_reads): nothing is marked before any rollup reads the table, nor for a
    table no rollup reads; a rollup kept by an earlier version (no registry row) makes every load
    mark every row again."""
    def marks() -> list:
        with warehouse.engine.connect() as con:
            return [r[0] for r in con.execute(sa.text("SELECT table_name FROM rollup_dirty ORDER BY seq"))]

    _load(warehouse, _items([T0 + timedelta(minutes=7)]))
    assert marks() == []  # no rollup yet: its build reads the facts themselves
    rollup = catalogue_rollups(catalogue)["rollup_sales_orders_by_sku_slice"]
    assert rollup.reads == {"order_items": ("created_at", "order_id", "quantity", "shop_id", "sku")}
    maintain(warehouse, rollup, T0, NOW)
    _load(warehouse, _items([T0 + timedelta(minutes=8)], first=1))
    with bulk_loader(warehouse) as loader:  # payments: no rollup of this catalogue reads them
        loader.upsert("payments", arrow_table("payments", {
            "payment_id": ["p1"], "order_id": ["o-A-1"], "shop_id": ["s1"], "gateway": ["alipay"], "status": ["failed"],
            "failure_code": ["timeout"], "attempted_at": [T0 + timedelta(minutes=8)]}))
    assert marks() == ["order_items"]
    # the registry row of the rollup gone (as after an upgrade from a version without it): every row
    with warehouse.engine.begin() as con:
        con.execute(sa.text("DELETE FROM rollup_reads"))
        con.execute(sa.text("DELETE FROM rollup_dirty"))
    _load(warehouse, _items([T0 + timedelta(minutes=8)], first=1))  # the same row again
    assert marks() == ["order_items"]
    maintain(warehouse, rollup, T0, NOW)  # registers again, without a rebuild
    with warehouse.engine.connect() as con:
        assert con.execute(sa.text("SELECT COUNT(*) FROM rollup_reads")).scalar() == 1


def test_a_changed_query_rebuilds_the_rollup(catalogue, warehouse):
    _load(warehouse, _items(_spread(T0, [1] * 12)))
    rollup = catalogue_rollups(catalogue)["rollup_sales_orders_by_sku_slice"]
    assert maintain(warehouse, rollup, T0, NOW).rebuilt
    assert not maintain(warehouse, rollup, T0, NOW).rebuilt
    from dataclasses import replace

    changed = replace(rollup, template=rollup.template.replace("COUNT(DISTINCT i.order_id)", "COUNT(*)"))
    assert maintain(warehouse, changed, T0, NOW).rebuilt


def test_a_compound_rule_on_any_of_two_rolling_rules_and_a_rollup_read(catalogue, warehouse):
    """compound.either: sales.rolling_count (30 min > 8) or sales.rolling_long (3 h > 20), and units sold
    in the last hour read through rollup(): the rollup path, the raw path and 5-minute cycles agree."""
    # SKU A: a short burst (30 min > 8, 3 h not > 20); SKU B: a long steady trickle (3 h > 20 only)
    _load(warehouse, _items(_spread(T0, [0] * 6 + [2] * 6 + [0] * 24), sku="A")
          + _items(_spread(T0, [1] * 36), sku="B"))
    loaded = catalogue.get("compound.either")
    done = maintain_for(warehouse, loaded, catalogue, T0, T0 + 3 * H, NOW)
    assert [d.rollup for d in done] == ["rollup_sales_orders_by_sku_slice"]
    rolled = compile_rule(loaded, catalogue.get, source="rollup")
    raw = compile_rule(loaded, catalogue.get, source="query")
    start, end = T0, T0 + 3 * H
    cycles = _cycles(rolled, warehouse, start, end)
    assert cycles == _cycles(raw, warehouse, start, end)
    fired = {(k.split("sku=")[1], s) for k, _, s, _, _ in cycles}
    assert ("A", "firing") in fired and ("B", "firing") in fired
    first_b = min(b for k, b, s, _, _ in cycles if k.endswith("sku=B") and s == "firing")
    assert first_b == T0 + 20 * M5  # the 21st order of B is in slice 20: 3 h > 20 from then on


def _scored(monkeypatch, warehouse, rule_id: str, running: bool, a: datetime, b: datetime) -> list[dict]:
    """Every evaluated row of the shipped rule over ``[a, b)`` (its ``scored`` step), by running
    sums or by the join of slices and buckets, rounded, in entity and bucket order."""
    from threshold_operators.engine import compile as compiling
    from threshold_operators.engine.compile import scored_sql

    monkeypatch.setattr(compiling, "RUNNING_SUMS", running)
    catalogue = load_catalogue()
    loaded = catalogue.get(rule_id)
    compiled = compile_rule(loaded, catalogue.get, source="query")
    assert ("dl AS" in compiled.sql) is running  # the path asked for is the path compiled
    out = warehouse_query(warehouse)(scored_sql(compiled), compiled.params(a, b))
    return sorted(({k: (round(float(v), 9) if isinstance(v, (float, int)) and not isinstance(v, bool) else v)
                    for k, v in r.items()} for r in out),
                  key=lambda r: (*(str(r[k]) for k in loaded.rule.keys), r["bucket"]))


@pytest.mark.parametrize("rule_id", ["sales.order_spike", "sales.order_spike_sustained", "sales.order_spike_early"])
def test_running_sums_equal_the_join_of_slices_and_buckets(warehouse, monkeypatch, rule_id):
    """A rolling rule's count baselines by running sums (``rolling_by_differences``) give every
    evaluated row of the join of slices and buckets, value for value: the shipped spike rules over
    7 weeks of irregular orders of three SKUs (one silent for days, one with a burst), a whole
    day at once and a 5-minute cycle."""
    import random

    from threshold_operators.engine import compile as compiling

    rng = random.Random(13)
    start = T0 - timedelta(weeks=7)
    times: dict[str, list[datetime]] = {"A": [], "B": [], "C": []}
    t = start
    while t < T0 + 24 * H:
        for sku, rate in (("A", 0.5), ("B", 0.05), ("C", 2.0)):
            n = sum(1 for _ in range(8) if rng.random() < rate / 8)
            if sku == "B" and start + timedelta(days=20) <= t < start + timedelta(days=26):
                n = 0  # silent for six days: its baseline windows hold nothing
            if sku == "A" and T0 + 10 * H <= t < T0 + 12 * H:
                n += rng.randint(2, 4)  # a burst
            times[sku] += [t + timedelta(seconds=rng.randint(0, 299)) for _ in range(n)]
        t += M5
    _load(warehouse, [item for sku, ts in times.items() for item in _items(ts, sku)])
    for a, b in ((T0, T0 + 24 * H), (T0 + 11 * H, T0 + 11 * H + M5)):
        joined = _scored(monkeypatch, warehouse, rule_id, False, a, b)
        assert joined and _scored(monkeypatch, warehouse, rule_id, True, a, b) == joined
    catalogue = load_catalogue()
    loaded = catalogue.get(rule_id)
    query = warehouse_query(warehouse)
    monkeypatch.setattr(compiling, "RUNNING_SUMS", True)
    compiled = compile_rule(loaded, catalogue.get, source="query")
    once = _walk(evaluate(compiled, query, T0, T0 + 24 * H, now=T0 + 24 * H))
    assert any(s == "firing" for _, _, s, _, _ in once)  # the burst is seen
    assert once == _cycles(compiled, warehouse, T0, T0 + 24 * H, step=H)


def test_trailing_ratio_baseline_by_running_sums_equals_the_join(warehouse, monkeypatch):
    """``finance.refund_rate``'s trailing 30-day ratio (its refunds over its orders, the window's
    sums at an offset) by running sums gives every evaluated row of the join, value for value:
    two shops over 33 days of irregular orders and refunds (one shop silent for days, one with a
    surge), a 6-hour stretch at once and a 5-minute cycle."""
    import random


    rng = random.Random(29)
    start = T0 - timedelta(days=32)
    orders, refunds = [], []
    t = start
    while t < T0 + 24 * H:
        for shop, rate in (("s1", 6.0), ("s2", 0.8)):
            if shop == "s2" and start + timedelta(days=9) <= t < start + timedelta(days=13):
                continue  # silent for four days
            for _ in range(rng.randint(0, int(2 * rate))):
                orders.append({"order_id": f"o{len(orders)}", "shop_id": shop, "created_at": t + timedelta(seconds=rng.randint(0, 299))})
            surge = 4 if shop == "s1" and T0 - 6 * H <= t < T0 + 9 * H else 1
            for _ in range(sum(rng.random() < 0.03 * rate * surge for _ in range(3))):
                refunds.append({"refund_id": f"r{len(refunds)}", "shop_id": shop,
                                "requested_at": t + timedelta(seconds=rng.randint(0, 299))})
        t += M5
    create_schema(warehouse.engine)
    with bulk_loader(warehouse) as loader:
        loader.upsert("orders", arrow_table("orders", {
            "order_id": [o["order_id"] for o in orders], "shop_id": [o["shop_id"] for o in orders],
            "channel": ["tmall"] * len(orders), "customer_id": ["c1"] * len(orders), "status": ["paid"] * len(orders),
            "amount": [10.0] * len(orders), "currency": ["CNY"] * len(orders),
            "created_at": [o["created_at"] for o in orders], "paid_at": [o["created_at"] for o in orders],
            "updated_at": [o["created_at"] for o in orders]}))
        loader.upsert("refunds", arrow_table("refunds", {
            "refund_id": [r["refund_id"] for r in refunds], "order_id": ["o0"] * len(refunds),
            "shop_id": [r["shop_id"] for r in refunds], "sku": ["A"] * len(refunds), "amount": [10.0] * len(refunds),
            "reason": ["quality"] * len(refunds), "requested_at": [r["requested_at"] for r in refunds]}))
    for a, b in ((T0 + 2 * H, T0 + 8 * H), (T0 + 6 * H, T0 + 6 * H + M5)):
        joined = _scored(monkeypatch, warehouse, "finance.refund_rate", False, a, b)
        assert joined and _scored(monkeypatch, warehouse, "finance.refund_rate", True, a, b) == joined
    assert any(r["level"] for r in joined)  # the surge breaches


def test_a_rollup_registering_waits_for_a_load_that_read_the_registry_before(catalogue, pg_schema):
    """PostgreSQL: a load holds ROW EXCLUSIVE on rollup_dirty from its registry read to its commit,
    so a rollup's first build (which registers under SHARE) waits for it and then reads its rows:
    a load that marked nothing, because no rollup read the table yet, is never missed."""
    import threading

    from tests.conftest import PG_ADMIN_URL
    from threshold_operators.warehouse.hook import WarehouseHook

    hook = WarehouseHook(url=PG_ADMIN_URL, search_path=pg_schema)
    create_schema(hook.engine)
    rollup = catalogue_rollups(catalogue)["rollup_sales_orders_by_sku_slice"]
    loader = bulk_loader(hook)
    loader.open()
    rows = _items([T0 + timedelta(minutes=7)])
    loader.upsert("order_items", arrow_table("order_items", {c: [r[c] for r in rows] for c in rows[0]}))
    assert loader._registry().columns("order_items") is None  # nothing reads order_items: no mark
    done: list = []

    def build():
        try:
            done.append(maintain(hook, rollup, T0, NOW))
        except Exception as exc:  # noqa: BLE001 - told by the assertion below
            done.append(exc)

    builder = threading.Thread(target=build)
    builder.start()
    try:
        waiting: list = []  # the build is waiting for the load's lock, not done
        for _ in range(600):  # (30 s at most: a busy machine)
            # a transaction per look: PostgreSQL reads pg_stat_activity once per transaction
            with hook.engine.begin() as con:
                waiting = con.execute(sa.text(
                    "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'LOCK TABLE rollup_dirty IN SHARE MODE%' AND datname = current_database()")).all()
            if waiting or done:
                break
            builder.join(0.05)
        assert len(waiting) >= 1 and not done, done
    finally:
        loader.commit()
        loader.close()
        builder.join(30)
    assert done and done[0].rebuilt and done[0].rows == 1  # the build saw the load's row
    with hook.engine.connect() as con:
        assert con.execute(sa.text("SELECT SUM(orders) FROM rollup_sales_orders_by_sku_slice")).scalar() == 1
    hook.engine.dispose()


def test_a_duckdb_session_maintains_a_rollup_once_until_it_writes_what_the_rollup_reads(catalogue, tmp_path):
    """In a DuckDB session the file is the process's alone: a rollup brought up to date by one rule
    is not asked again by the next, until a load in the same session marks a slice."""
    from threshold_operators.warehouse.hook import WarehouseHook

    hook = WarehouseHook(url=f"duckdb:///{tmp_path / 'w.duckdb'}")
    _load(hook, _items(_spread(T0, [1] * 12)))
    rollup = catalogue_rollups(catalogue)["rollup_sales_orders_by_sku_slice"]
    with hook.session():
        assert maintain(hook, rollup, T0, NOW).rebuilt
        assert maintain(hook, rollup, T0, NOW).earlier  # the next rule: nothing asked
        assert not maintain(hook, rollup, T0 - H, NOW).earlier  # more history than it holds: asked
        _load(hook, _items([T0 + 20 * timedelta(minutes=1)], first=100))  # a new row, in the session
        again = maintain(hook, rollup, T0, NOW)
        assert not again.earlier and again.ranges == [(T0 + 20 * timedelta(minutes=1), T0 + 25 * timedelta(minutes=1))]
    assert hook.session_memo is None
    assert not maintain(hook, rollup, T0, NOW).earlier  # outside a session: always asked
    hook.engine.dispose()


def test_the_refund_rate_rollup_sees_new_refunds_not_order_status_changes(warehouse):
    """The shipped refund-rate rollup reads orders (shop, time) and refunds (shop, time): an order
    paid, shipped and completed hours after it was placed marks nothing; a refund and a late order
    mark their slices; the rollup stays the raw query's answer."""
    from threshold_operators.rules.catalogue import load_catalogue

    rollup = catalogue_rollups(load_catalogue())["rollup_finance_refund_rate_by_shop_slice"]
    assert rollup.reads == {"orders": ("created_at", "shop_id"), "refunds": ("requested_at", "shop_id")}
    create_schema(warehouse.engine)
    seen = [0]

    def order(n, status, updated):
        return {"order_id": f"o{n}", "shop_id": "s1", "channel": "app", "customer_id": "c", "status": status,
                "amount": 10, "currency": "CNY", "created_at": T0 + n * M5, "paid_at": None, "updated_at": updated}

    def land(table, rows):
        with bulk_loader(warehouse) as loader:
            loader.upsert(table, arrow_table(table, {c: [r[c] for r in rows] for c in rows[0]}))

    def new_marks():
        with warehouse.engine.connect() as con:
            rows = con.execute(sa.text("SELECT seq, table_name, slice FROM rollup_dirty WHERE seq > :s ORDER BY seq"),
                               {"s": seen[0]}).all()
        seen[0] = max([seen[0], *(r[0] for r in rows)])
        return [(t, s.astimezone(UTC)) for _, t, s in rows]

    land("orders", [order(n, "pending", T0 + n * M5) for n in range(6)])
    assert maintain(warehouse, rollup, T0, NOW).rebuilt  # built from the facts, and registered
    new_marks()
    land("orders", [order(n, "completed", T0 + 3 * H) for n in range(6)])  # status changes only
    assert new_marks() == []
    land("refunds", [{"refund_id": "r1", "order_id": "o2", "shop_id": "s1", "sku": "A", "amount": 10,
                      "reason": "quality", "requested_at": T0 + 2 * M5 + timedelta(seconds=30)}])
    land("orders", [order(6, "pending", T0 + 3 * H)])  # a late order
    assert new_marks() == [("refunds", T0 + 2 * M5), ("orders", T0 + 6 * M5)]
    assert maintain(warehouse, rollup, T0, NOW).ranges == [(T0 + 2 * M5, T0 + 7 * M5)]
    with warehouse.engine.connect() as con:
        rolled = sorted((r[0], r[1].astimezone(UTC), r[2], r[3]) for r in con.execute(sa.text(
            f"SELECT shop_id, bucket, orders, refunds FROM {rollup.name}")))
        raw = sorted((r.shop_id, r.bucket.astimezone(UTC), r.orders, r.refunds) for r in con.execute(
            sa.text(rollup.sql), rollup.bind(T0, T0 + 2 * H)))
    assert rolled == raw and sum(r[2] for r in raw) == 7 and sum(r[3] for r in raw) == 1


def test_once_every_mark_is_applied_the_newest_stays(catalogue, warehouse):
    """The marks every rollup has applied are deleted but the newest, so the newest seq is known
    with nothing pending: a rollup with nothing new writes nothing and keeps its mark (with an
    empty table the newest was taken for 0, and the mark moved back to it in a write each cycle)."""
    hook = warehouse
    rollup = catalogue_rollups(catalogue)["rollup_sales_orders_by_sku_slice"]

    def marks():
        with hook.engine.connect() as con:
            return (con.execute(sa.text("SELECT COUNT(*), MAX(seq) FROM rollup_dirty")).one(),
                    con.execute(sa.text("SELECT through_seq FROM rollup_state")).scalar_one())

    _load(hook, _items(_spread(T0, [1] * 12)))
    assert maintain(hook, rollup, T0, NOW).rebuilt
    for n in range(3):  # a load, the rollup applies it; the load before is pruned, the newest kept
        _load(hook, _items([T0 + (20 + n) * M5], first=100 + n))
        applied = maintain(hook, rollup, T0, NOW)
        assert applied.ranges == [(T0 + (20 + n) * M5, T0 + (21 + n) * M5)] and applied.rows == 1
        (count, newest), through = marks()
        assert count == 1 and through == newest == applied.through_seq
        idle = maintain(hook, rollup, T0, NOW)  # nothing new: no write, the mark where it was
        assert not idle.ranges and marks() == ((1, newest), newest)
    with hook.engine.connect() as con:
        assert con.execute(sa.text("SELECT SUM(orders) FROM rollup_sales_orders_by_sku_slice")).scalar() == 15
    hook.engine.dispose()


def test_a_domain_maintains_its_rollups_in_one_write_and_a_lost_claim_is_planned_again(warehouse, monkeypatch):
    """``maintain_many`` (a domain's cycle, before its rules): every rollup in one write transaction
    (one commit, not one a rollup); a rollup that another maintainer moved between the plan and
    the write is left out of that write and planned again, the others written; each rollup equals
    its raw query afterwards."""
    from threshold_operators.engine import rollups as rollups_mod
    from threshold_operators.warehouse import bulk_load

    every = catalogue_rollups(load_catalogue())
    refunds = every["rollup_finance_refund_rate_by_shop_slice"]
    payments = every["rollup_finance_payment_failures_by_gateway_slice"]
    create_schema(warehouse.engine)

    def land(first: int, n: int) -> None:
        times = [T0 + (first + k) * M5 + timedelta(seconds=30) for k in range(n)]
        ids = [f"x{first + k}" for k in range(n)]
        with bulk_loader(warehouse) as loader:
            loader.upsert("orders", arrow_table("orders", {
                "order_id": ids, "shop_id": ["s1"] * n, "channel": ["app"] * n, "customer_id": ["c"] * n,
                "status": ["paid"] * n, "amount": [10.0] * n, "currency": ["CNY"] * n, "created_at": times,
                "paid_at": times, "updated_at": times}))
            loader.upsert("refunds", arrow_table("refunds", {
                "refund_id": ids, "order_id": ids, "shop_id": ["s1"] * n, "sku": ["A"] * n, "amount": [10.0] * n,
                "reason": ["quality"] * n, "requested_at": times}))
            loader.upsert("payments", arrow_table("payments", {
                "payment_id": ids, "order_id": ids, "shop_id": ["s1"] * n, "gateway": ["alipay"] * n,
                "status": ["failed" if k % 2 else "succeeded" for k in range(n)], "failure_code": [None] * n,
                "attempted_at": times}))

    writes = [0]
    real_loader = bulk_load.bulk_loader

    def counted(hook):
        writes[0] += 1
        return real_loader(hook)

    monkeypatch.setattr(bulk_load, "bulk_loader", counted)
    land(0, 6)
    built = rollups_mod.maintain_many(warehouse, [(refunds, T0), (payments, T0)], NOW)
    assert [m.rebuilt for m in built] == [True, True] and writes[0] == 1  # both in one write

    land(6, 3)  # new slices for both rollups; another maintainer takes the payments' rollup meanwhile
    real_read = rollups_mod._read

    def read_then_race(hook, rollup, ranges):
        if rollup.name == payments.name and not raced:
            raced.append(None)  # (the other maintainer's own read comes here too)
            raced[0] = rollups_mod.maintain(hook, payments, T0, NOW)
        return real_read(hook, rollup, ranges)

    raced: list = []
    monkeypatch.setattr(rollups_mod, "_read", read_then_race)
    writes[0] = 0
    done = {m.rollup: m for m in rollups_mod.maintain_many(warehouse, [(refunds, T0), (payments, T0)], NOW)}
    assert raced and raced[0].ranges == [(T0 + 6 * M5, T0 + 9 * M5)]  # the other maintainer applied it
    assert done[refunds.name].ranges == [(T0 + 6 * M5, T0 + 9 * M5)] and done[refunds.name].attempts == 1
    # the claim on the payments' rollup failed: planned again, found up to date, not written twice
    assert done[payments.name].attempts == 2 and done[payments.name].ranges == []
    for rollup, cols in ((refunds, "orders, refunds"), (payments, "attempts, failures")):
        with warehouse.engine.connect() as con:
            rolled = sorted(tuple(r) for r in con.execute(sa.text(f"SELECT {cols} FROM {rollup.name} ORDER BY bucket")))
            raw = sorted(tuple(r) for r in con.execute(sa.text(f"SELECT {cols} FROM ({rollup.sql}) q ORDER BY bucket"),
                                                       rollup.bind(T0, T0 + 2 * H)))
        assert rolled == raw and len(raw) == 9, rollup.name
