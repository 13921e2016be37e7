"""The shipped catalogue against the simulator's incidents, on DuckDB and PostgreSQL.

Each default incident (include/simulator/incidents/default.yaml, the seed's stories) must make
its rules fire for the entity it hit, at the expected severity, inside its window; incident-free
weeks, weekends included, must stay quiet (nothing yellow or red from a live rule); the compound
rule must fire in the cycle of the first spike sign it combines (stock was already short).

Which warehouse: that each rule fires on its incident is held on DuckDB and PostgreSQL (here and,
with the stated delays, in test_detection_delays.py); the compound rule's first cycle, the quiet
weeks and the seed's literal drop rule are held on DuckDB: the two warehouses give the same
results for the same statements (test_engine_sql.py, test_rolling.py), and on PostgreSQL these
replays (96 five-minute cycles of four rules, two weeks of every rule) took most of the suite's time.

Window rules are evaluated in one window over the incident (the engine gives the same answer as
their live cycles: test_engine_sql.py and test_rolling.py prove it); current-state rules (stock,
parcels) cycle by cycle at their cadence (every 5 minutes or every hour), each as of its cycle's
end (the stock snapshots and the tracking history).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import pytest

from threshold_operators.engine.compile import compile_rule
from threshold_operators.engine.evaluate import evaluate, warehouse_query
from threshold_operators.rules.catalogue import load_catalogue

H = timedelta(hours=1)
ORDER = {None: 0, "blue": 1, "yellow": 2, "red": 3}

EXPECTED_SEVERITY = {
    ("formula_spike_low_stock", "sales.order_spike"): "red",
    ("formula_spike_low_stock", "inventory.stock_cover"): "red",
    ("formula_spike_low_stock", "compound.spike_low_stock"): "red",
    ("influencer_fresh_food", "sales.order_spike"): "red",
    ("small_sku_surge", "sales.order_spike_sustained"): "yellow",
    ("small_sku_surge", "compound.spike_low_stock"): "red",
    ("clothing_batch_quality", "finance.complaint_spike"): "red",
    # 30 minutes of the 22% incident read 32-37% in the 5-minute cycles (red at 70 min); one
    # evaluation over the whole incident window reads it yellow: either is the rule working
    ("payment_gateway_degraded", "finance.payment_failure"): ("yellow", "red"),
    ("paid_channel_quality", "traffic.paid_cost_quality"): "yellow",
    ("site_slowdown", "traffic.conversion_drop"): "red",
    ("negative_review_burst", "customer.negative_review"): "blue",
    ("negative_review_burst", "customer.negative_review_burst"): "red",
    ("refund_surge", "finance.refund_rate"): "red",
    ("refund_surge", "finance.refund_rate_fast"): "yellow",
    ("slow_sales_decline", "sales.order_drop"): "yellow",
    ("warehouse_tracking_stall", "customer.logistics_stale"): "red",
}

# Two incident-free weeks, Monday to Monday: one with a year of history behind it (the paid-channel
# rule compares year over year), one in early summer (it falls back to the previous 4 weeks).
QUIET_WEEKS = [datetime.fromisoformat("2026-09-14T00:00:00+00:00"), datetime.fromisoformat("2026-07-06T00:00:00+00:00")]


@pytest.fixture(scope="module")
def catalogue():
    cat = load_catalogue()
    assert not cat.all_problems()
    return cat


def _hits(inc: dict):
    kind, entity = inc["entity_type"], inc["entity"]
    column = {"sku": "sku", "batch": "batch_id", "gateway": "gateway", "channel": "channel",
              "warehouse": "warehouse_id", "shop": "shop_id"}

    def hit(result) -> bool:
        if result.entity.get("shop_id") != inc["shop_id"]:
            return False
        if kind == "brand":
            return result.entity.get("sku") in inc["skus"]
        if column[kind] not in result.entity:
            return kind == "shop"
        return result.entity[column[kind]] == entity

    return hit


def _evaluate(catalogue, hook, rule_id, start, end, step=None):
    loaded = catalogue.get(rule_id)
    compiled = compile_rule(loaded, catalogue.get)
    query = warehouse_query(hook)
    if not loaded.current_state:
        return evaluate(compiled, query, start, end, now=end).results
    results, t, every = [], start, loaded.rule.every  # a current state: one cycle of the rule's cadence
    while t < end:
        results += evaluate(compiled, query, t, t + every, now=t + every).results
        t += step or every
    return results


def _window(inc: dict, rule_id: str, catalogue) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(inc["start"]).replace(minute=0)
    end = datetime.fromisoformat(inc["end"])
    if catalogue.get(rule_id).rule.grain == "day":
        end += timedelta(days=1, hours=1)  # the local day must complete
    elif inc["id"] == "warehouse_tracking_stall":
        # 48 h without a scan: stale parcels from 48 h after the stall began, red by about 60 h
        # (told from the tracking history, far from the data's end)
        start, end = start + 46 * H, start + 62 * H
    else:
        end += 2 * H
    return start, end


def test_every_incident_fires_its_rules_for_its_entity(catalogue, incident_shop):
    hook, labels = incident_shop
    checked = set()
    problems = []
    for inc in labels["incidents"]:
        hit = _hits(inc)
        for rule_id in inc["expect"]:
            start, end = _window(inc, rule_id, catalogue)
            firing = [r for r in _evaluate(catalogue, hook, rule_id, start, end) if str(r.state) == "firing"]
            on_target = [r for r in firing if hit(r)]
            worst = max((r.severity for r in on_target), key=ORDER.get, default=None)
            expected = EXPECTED_SEVERITY[(inc["id"], rule_id)]
            if worst not in (expected if isinstance(expected, tuple) else (expected,)):
                problems.append(f"{inc['id']} / {rule_id}: expected {expected} on {inc['entity']}, got {worst} "
                                f"(firing elsewhere: {sorted({r.entity_key for r in firing if not hit(r)})[:5]})")
            checked.add((inc["id"], rule_id))
    assert not problems, "\n".join(problems)
    assert checked == set(EXPECTED_SEVERITY)


def test_compound_fires_in_the_cycle_of_the_first_spike_sign(catalogue, incident_shop_duckdb):
    hook, labels = incident_shop_duckdb
    inc = next(i for i in labels["incidents"] if i["id"] == "formula_spike_low_stock")
    start = datetime.fromisoformat(inc["start"]).replace(minute=0)
    first: dict[str, dict[str, datetime]] = defaultdict(dict)
    query = warehouse_query(hook)
    signs = catalogue.get("compound.spike_low_stock").rule.references  # the spike rules it takes
    compiled = {rid: compile_rule(catalogue.get(rid), catalogue.get) for rid in (*signs, "compound.spike_low_stock")}
    m5 = timedelta(minutes=5)
    for k in range(8 * 12):  # live: one cycle every 5 minutes
        t = start + k * m5
        for rid, c in compiled.items():
            for r in evaluate(c, query, t, t + m5, now=t + m5).firing:
                first[rid].setdefault(r.entity_key, t)
    assert first["compound.spike_low_stock"], "the double alert never fired"
    for entity, cycle in first["compound.spike_low_stock"].items():  # stock was already short: the first sign
        assert min(first[rid][entity] for rid in signs if entity in first[rid]) == cycle, entity


@pytest.mark.parametrize("week", QUIET_WEEKS, ids=lambda w: w.date().isoformat())
def test_incident_free_weeks_stay_quiet(catalogue, incident_shop_duckdb, week):
    hook, _ = incident_shop_duckdb
    loud = {}
    for rule_id, loaded in sorted(catalogue.rules.items()):
        if loaded.rule.mode != "live":
            continue
        results = _evaluate(catalogue, hook, rule_id, week, week + timedelta(days=7), step=4 * H)
        paging = [r for r in results if str(r.state) == "firing" and ORDER[r.severity] >= ORDER["yellow"]]
        if paging:
            loud[rule_id] = sorted({(r.entity_key, r.severity) for r in paging})[:5]
    assert not loud, loud


def test_the_seeds_literal_order_drop_fires_every_night(catalogue, incident_shop_duckdb):
    """The reason sales.order_drop uses a same-hour baseline (docs/rules.md)."""
    hook, _ = incident_shop_duckdb
    week = QUIET_WEEKS[0]
    literal = _evaluate(catalogue, hook, "sales.order_drop_daily_avg", week, week + timedelta(days=7))
    shipped = _evaluate(catalogue, hook, "sales.order_drop", week, week + timedelta(days=7))
    nights = {(r.bucket + timedelta(hours=8)).date() for r in literal if str(r.state) == "firing"}
    assert len(nights) >= 6
    assert not [r for r in shipped if str(r.state) == "firing"]
