"""Planned events on DuckDB and PostgreSQL: during a promotion the spike and drop rules compare
against the baseline times the plan (docs/rules.md, "Planned events").

The shop: 50 simulated days up to 13 November 2025, Singles' Day included (the simulator writes
the promotions it planned into planned_events, with their factors: x1.15 pre-sale, x4 on the
11th, x1.5 on the 12th), and one infant-formula SKU selling three times its plan for three hours
on the evening of the 11th, with five hours of stock left (``over_plan``).
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from threshold_operators.engine.compile import compile_rule, scored_sql
from threshold_operators.engine.evaluate import evaluate, warehouse_query
from threshold_operators.rules.catalogue import load_catalogue
from threshold_operators.warehouse.planned_events import replace_planned_events
from threshold_operators.warehouse.schema import as_utc

H = timedelta(hours=1)
END = datetime(2025, 11, 13, tzinfo=UTC)
SINGLES_DAY = (datetime(2025, 11, 10, 16, tzinfo=UTC), datetime(2025, 11, 11, 16, tzinfo=UTC))  # local day, UTC
OVER_PLAN = datetime(2025, 11, 11, 12, tzinfo=UTC)  # 20:00 in Shanghai, for 3 hours
QUIET_DAY = datetime(2025, 10, 15, 2, tzinfo=UTC)  # a Wednesday, 10:00 in Shanghai: no promotion, no incident


def _spec():
    from threshold_operators.simulator.incidents import IncidentSpec
    from threshold_operators.simulator.run import SimulationSpec

    over_plan = IncidentSpec.model_validate({
        "id": "over_plan", "kind": "demand_spike", "start": OVER_PLAN.isoformat(), "hours": 3,
        "target": {"shop": 1, "category": "infant_formula", "top": 1},
        "params": {"multiplier": 3.0, "single_line": True, "stock_hours_left": 5},
        "expect": ["sales.order_spike", "inventory.stock_cover", "compound.spike_low_stock"]})
    return SimulationSpec(shops=1, skus=60, days=50, orders_per_day=2500, seed=11, end=END, incidents=[over_plan])


def _shop(hook, tmp_path):
    from threshold_operators.simulator.run import simulate

    result = simulate(_spec(), hook, labels_out=tmp_path / "labels.yaml")
    return hook, result.labels


@pytest.fixture(scope="module")
def plan_shop_duckdb(tmp_path_factory):
    from threshold_operators.warehouse.hook import WarehouseHook

    folder = tmp_path_factory.mktemp("plan-shop")
    hook = WarehouseHook(url=f"duckdb:///{folder / 'shop.duckdb'}")
    yield _shop(hook, folder)
    hook.engine.dispose()


@pytest.fixture(scope="module")
def plan_shop_postgres(pg_server, pg_admin_url, tmp_path_factory):
    from threshold_operators.warehouse.hook import WarehouseHook

    schema = f"sf_plans_{os.getpid()}_{secrets.token_hex(3)}"
    with pg_server.begin() as con:
        con.execute(sa.text(f"CREATE SCHEMA {schema}"))
    hook = WarehouseHook(url=pg_admin_url, search_path=schema)
    try:
        yield _shop(hook, tmp_path_factory.mktemp("plan-shop-pg"))
    finally:
        hook.engine.dispose()
        with pg_server.begin() as con:
            con.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


def _replace(hook, rows) -> None:
    """Write the test's planned events: DuckDB opens a file read-only (rules) or read-write, not
    both at once, so each engine lets go of it around the write."""
    hook.evaluation_engine.dispose()
    replace_planned_events(hook.engine, "test", rows)
    hook.engine.dispose()


@pytest.fixture(params=["duckdb", "postgres"])
def plan_shop(request):
    hook, labels = request.getfixturevalue(f"plan_shop_{request.param}")
    yield hook, labels
    _replace(hook, [])  # what a test declared goes with it


@pytest.fixture(scope="module")
def catalogue():
    cat = load_catalogue()
    assert not cat.all_problems()
    return cat


def _without_plans(loaded):
    import dataclasses

    return dataclasses.replace(loaded, rule=loaded.rule.model_copy(update={"plans": "ignore"}))


def _firing(catalogue, hook, rule_id, start, end, *, plans=True):
    """Entity keys and severities firing over [start, end): window rules in one window,
    current-state rules hour by hour, each cycle resuming from the one before (as live)."""
    loaded = catalogue.get(rule_id) if plans else _without_plans(catalogue.get(rule_id))
    compiled = compile_rule(loaded, catalogue.get)
    query = warehouse_query(hook)
    if not loaded.current_state:
        return [r for r in evaluate(compiled, query, start, end, now=end).firing]
    out, prior, t = [], {}, start
    while t < end:
        ev = evaluate(compiled, query, t, t + H, now=t + H, prior=prior)
        out += ev.firing
        prior, t = ev.carry, t + H
    return out


def _over_plan_sku(labels) -> str:
    inc = next(i for i in labels["incidents"] if i["id"] == "over_plan")
    return inc["skus"][0]


def test_the_simulator_writes_what_it_planned(plan_shop):
    hook, labels = plan_shop
    rows = warehouse_query(hook)("SELECT event_id, scope, scope_value, uplift, starts_at, ends_at FROM planned_events "
                                 "WHERE source = 'simulator' ORDER BY starts_at", {})
    assert [(r["event_id"], r["scope"], r["scope_value"], float(r["uplift"])) for r in rows] == [
        ("singles_day_pre_sale_20251101", "shop", "", 1.15),
        ("singles_day_20251111", "shop", "", 4.0),
        ("singles_day_tail_20251112", "shop", "", 1.5)]
    assert (as_utc(rows[1]["starts_at"]), as_utc(rows[1]["ends_at"])) == SINGLES_DAY
    assert [e["name"] for e in labels["planned_events"]] == ["Singles' Day pre-sale", "Singles' Day", "Singles' Day tail"]


def test_a_promotion_that_goes_as_planned_raises_nothing(catalogue, plan_shop):
    """Singles' Day at four times the usual orders, as planned: the only spike is the SKU that sold
    three times its plan. Without the plan, the day is a wall of red."""
    hook, labels = plan_shop
    sku = _over_plan_sku(labels)
    planned = _firing(catalogue, hook, "sales.order_spike", *SINGLES_DAY)
    assert {r.entity["sku"] for r in planned} == {sku}
    # the rolling hour of sales.order_spike holds the surge until an hour after it ends
    assert all(OVER_PLAN <= r.bucket < OVER_PLAN + 4 * H for r in planned)
    unplanned = _firing(catalogue, hook, "sales.order_spike", *SINGLES_DAY, plans=False)
    assert len({r.entity["sku"] for r in unplanned}) >= 5, "the test shop's Singles' Day should spike without plans"
    assert "red" in {r.severity for r in unplanned}
    assert not _firing(catalogue, hook, "sales.order_drop", *SINGLES_DAY)
    assert {r.entity["sku"] for r in _firing(catalogue, hook, "sales.order_spike_7d", *SINGLES_DAY)} <= {sku}


def test_a_sku_selling_three_times_its_plan_still_fires(catalogue, plan_shop):
    hook, labels = plan_shop
    sku = _over_plan_sku(labels)
    firing = [r for r in _firing(catalogue, hook, "sales.order_spike", OVER_PLAN - H, OVER_PLAN + 4 * H)
              if r.entity["sku"] == sku]
    first = min(firing, key=lambda r: r.bucket)
    assert OVER_PLAN <= first.bucket < OVER_PLAN + H  # within the hour it starts (5-minute cycles)
    assert first.row["plan_factor_0"] == pytest.approx(4.0)  # the shop's Singles' Day factor, in the alert's metrics
    peak = max(firing, key=lambda r: r.row["v_0"])
    assert peak.row["v_0"] == pytest.approx(3.0, rel=0.35)  # three times the planned orders, the hour all surge
    assert {r.severity for r in firing} <= {"yellow", "red"}


def test_stock_rules_keep_working(catalogue, plan_shop):
    """Stock cover has no baseline (plans do not touch it); the double alert judges the spike without
    plans (compound.spike_low_stock: plans: ignore), so a SKU that will run out within hours during
    a promotion still reaches the director, and it fires for the SKU over its plan either way."""
    hook, labels = plan_shop
    sku = _over_plan_sku(labels)
    cover = compile_rule(catalogue.get("inventory.stock_cover"), catalogue.get)
    assert "planned_events" not in cover.sql
    compound = compile_rule(catalogue.get("compound.spike_low_stock"), catalogue.get)
    assert "planned_events" not in compound.sql
    window = (OVER_PLAN, OVER_PLAN + 3 * H)
    stock = _firing(catalogue, hook, "inventory.stock_cover", *window)
    assert "red" in {r.severity for r in stock if r.entity["sku"] == sku}
    double = _firing(catalogue, hook, "compound.spike_low_stock", *window)
    assert sku in {r.entity["sku"] for r in double}
    # With the spike judged against the plan (a compound rule left to its references' setting), the
    # SKU over its plan still reaches the director, and only it.
    import dataclasses

    loaded = catalogue.get("compound.spike_low_stock")
    scaling = dataclasses.replace(loaded, rule=loaded.rule.model_copy(update={"plans": "scale_baseline"}))
    assert "planned_events" in compile_rule(scaling, catalogue.get).sql
    compiled, query, prior, hits, t = compile_rule(scaling, catalogue.get), warehouse_query(hook), {}, set(), window[0]
    while t < window[1]:
        ev = evaluate(compiled, query, t, t + H, now=t + H, prior=prior)
        hits |= {r.entity["sku"] for r in ev.firing}
        prior, t = ev.carry, t + H
    assert hits == {sku}


def _declare(hook, *events):
    """Planned events of the source "test": (event_id, scope, scope_value, factor, start, end)."""
    now = datetime(2025, 10, 1, tzinfo=UTC)
    _replace(hook, [{"event_id": e, "name": e, "shop_id": "shop-01", "scope": s, "scope_value": v, "uplift": f,
                     "starts_at": a, "ends_at": b, "updated_at": now} for e, s, v, f, a, b in events])


def _scored(catalogue, hook, rule_id, start, end):
    compiled = compile_rule(catalogue.get(rule_id), catalogue.get)
    return [r for r in warehouse_query(hook)(scored_sql(compiled), compiled.params(start, end))
            if start <= as_utc(r["bucket"]) < end]


def test_the_most_specific_plan_wins_and_overlapping_plans_take_the_largest(catalogue, plan_shop):
    hook, _ = plan_shop
    t = QUIET_DAY
    sold = warehouse_query(hook)(
        "SELECT p.sku, p.category, COUNT(*) AS n FROM order_items i JOIN products p ON p.shop_id = i.shop_id "
        "AND p.sku = i.sku WHERE i.created_at >= :a AND i.created_at < :b GROUP BY p.sku, p.category "
        "ORDER BY n DESC, p.sku", {"a": t, "b": t + H})
    formula = [r["sku"] for r in sold if r["category"] == "infant_formula"]
    other = [r["sku"] for r in sold if r["category"] != "infant_formula"]
    _declare(hook,
             ("shop_wide", "shop", "", 2.0, t, t + H),
             ("shop_wide_bigger", "shop", "", 2.5, t - H, t + 2 * H),  # overlaps: the largest counts
             ("formula_week", "category", "infant_formula", 3.0, t, t + H),
             ("one_sku", "sku", formula[0], 5.0, t, t + H),
             ("half_hour_stream", "sku", other[0], 7.0, t + H / 2, t + 2 * H))  # half the bucket: 1 + 6 x 0.5
    # sales.order_spike is rolling (an hour every 5 minutes): its value at t + 55 min is the hour [t, t + 1 h)
    last = t + H - timedelta(minutes=5)
    rows = {r["sku"]: r for r in _scored(catalogue, hook, "sales.order_spike", t, t + H) if as_utc(r["bucket"]) == last}
    factor = {s: rows[s]["plan_factor_0"] for s in (formula[0], formula[1], other[0], other[1])}
    assert factor == pytest.approx({formula[0]: 5.0, formula[1]: 3.0, other[0]: 4.0, other[1]: 2.5})
    for s, f in factor.items():  # the baseline itself is scaled, in every condition
        assert rows[s]["base_0"] == pytest.approx(f * _plain_baseline(catalogue, hook, s, t, last))
        assert rows[s]["base_1"] == pytest.approx(rows[s]["base_0"])
    shop = _scored(catalogue, hook, "sales.order_drop", t, t + H)
    assert [r["plan_factor_0"] for r in shop] == pytest.approx([2.5])  # a shop rule: the shop's plans only
    outside = _scored(catalogue, hook, "sales.order_spike", t + 3 * H, t + 4 * H)
    assert outside and all(r["plan_factor_0"] is None for r in outside)


def _plain_baseline(catalogue, hook, sku, t, bucket):
    compiled = compile_rule(_without_plans(catalogue.get("sales.order_spike")), catalogue.get)
    rows = warehouse_query(hook)(scored_sql(compiled), compiled.params(t, t + H))
    return next(r["base_0"] for r in rows if r["sku"] == sku and as_utc(r["bucket"]) == bucket)


def test_a_promotion_that_sells_a_third_of_its_plan_is_an_order_drop(catalogue, plan_shop):
    hook, _ = plan_shop
    t = QUIET_DAY
    assert not _firing(catalogue, hook, "sales.order_drop", t, t + 6 * H)
    _declare(hook, ("flop", "shop", "", 3.0, t, t + 6 * H))
    firing = _firing(catalogue, hook, "sales.order_drop", t, t + 6 * H)
    assert {r.entity_key for r in firing} == {"shop_id=shop-01"}
    assert min(r.bucket for r in firing) == t + 2 * H  # for: 3
    assert not _firing(catalogue, hook, "sales.order_drop", t, t + 6 * H, plans=False)


def test_evaluate_labels_still_counts_alerts_in_planned_events_apart(catalogue, plan_shop_duckdb):
    """`storefence evaluate --labels` (analysis.scoring): the incident over its plan is caught; what
    is left in the planned events is counted apart, never as false alerts; without plans the
    Singles' Day alerts land there. On DuckDB: the scoring is the same on either warehouse, and two
    backtests of weeks of 5-minute cycles on PostgreSQL took minutes (the window sums' range join)."""
    from threshold_operators.analysis.backtest import backtest
    from threshold_operators.analysis.scoring import score

    hook, labels = plan_shop_duckdb
    start, end = datetime(2025, 11, 9, tzinfo=UTC), END
    query = warehouse_query(hook)
    loaded = catalogue.get("sales.order_spike")
    planned = score(loaded.rule, backtest(loaded, catalogue.get, query, start, end).episodes, labels, start, end)
    assert planned.caught == ["over_plan"] and planned.false_alerts == 0 and planned.planned == 0
    unplanned = score(loaded.rule, backtest(_without_plans(loaded), catalogue.get, query, start, end).episodes,
                      labels, start, end)
    assert unplanned.caught == ["over_plan"] and unplanned.false_alerts == 0 and unplanned.planned >= 5
