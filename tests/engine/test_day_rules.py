"""The day and event-count rules on rolling windows, every 5 minutes (issue 13), on DuckDB and
PostgreSQL: each fires in its simulated incident within the detection delay docs/rules.md states
for it, and the live path (rollups maintained from the loads, one cycle every 5 minutes) gives
what one evaluation of the raw facts over the whole span gives.

Detection delay is data time from the incident's start to the end of the first firing bucket
(a rolling rule's bucket is a 5-minute slice: the alert is raised in the cycle that lands it).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from threshold_operators.engine.compile import compile_rule
from threshold_operators.engine.evaluate import evaluate, evaluate_cycles, warehouse_query
from threshold_operators.engine.rollups import maintain_for
from threshold_operators.rules.catalogue import load_catalogue
from threshold_operators.rules.model import SLICE

H = timedelta(hours=1)

# rule -> (incident, the delay docs/rules.md states, the severity of the first alert)
STATED = {
    "finance.refund_rate": ("refund_surge", 11 * H, "yellow"),
    "finance.refund_rate_fast": ("refund_surge", 3 * H, "yellow"),
    "finance.complaint_spike": ("clothing_batch_quality", 4 * H, "red"),
    "finance.payment_failure": ("payment_gateway_degraded", 60 * timedelta(minutes=1), "yellow"),
    "customer.negative_review": ("negative_review_burst", 30 * timedelta(minutes=1), "blue"),
    "customer.negative_review_burst": ("negative_review_burst", 3 * H, "yellow"),
}


@pytest.fixture(scope="module")
def catalogue():
    cat = load_catalogue()
    assert not cat.all_problems()
    return cat


def _incident(labels, incident_id: str) -> dict:
    return next(i for i in labels["incidents"] if i["id"] == incident_id)


def _on_target(inc: dict, result) -> bool:
    column = {"sku": "sku", "batch": "batch_id", "gateway": "gateway", "shop": "shop_id"}[inc["entity_type"]]
    return result.entity.get("shop_id") == inc["shop_id"] and result.entity.get(column) == inc["entity"]


def _ts(v: str) -> datetime:
    return datetime.fromisoformat(v)


@pytest.mark.parametrize("rule_id", sorted(STATED))
def test_fires_in_its_incident_within_the_stated_delay(catalogue, incident_shop, rule_id):
    hook, labels = incident_shop
    incident_id, delay, severity = STATED[rule_id]
    inc = _incident(labels, incident_id)
    start = _ts(inc["start"])
    loaded = catalogue.get(rule_id)
    assert loaded.rule.rolling and loaded.rule.every == SLICE
    ev = evaluate(compile_rule(loaded, catalogue.get), warehouse_query(hook), start, start + delay, now=start + delay)
    firing = sorted((r for r in ev.firing if _on_target(inc, r)), key=lambda r: r.bucket)
    assert firing, f"{rule_id} did not fire within {delay} of {incident_id}"
    first = firing[0]
    assert first.bucket + SLICE - start <= delay
    assert first.severity == severity
    assert not [r for r in ev.firing if not _on_target(inc, r) and r.severity != "blue"]


def test_a_negative_review_fires_in_the_cycle_that_lands_it(catalogue, incident_shop):
    """An event rule: the first 1-3 star review of the incident's SKU raises the alert in the cycle
    whose newest slice holds it."""
    hook, labels = incident_shop
    inc = _incident(labels, "negative_review_burst")
    start = _ts(inc["start"])
    with hook.engine.connect() as con:
        landed = con.execute(sa.text("SELECT MIN(created_at) FROM reviews WHERE shop_id = :s AND sku = :k "
                                     "AND rating <= 3 AND created_at >= :t"),
                             {"s": inc["shop_id"], "k": inc["entity"], "t": start}).scalar()
    landed = landed if landed.tzinfo else landed.replace(tzinfo=start.tzinfo)
    slice_start = start + ((landed - start) // SLICE) * SLICE
    loaded = catalogue.get("customer.negative_review")
    ev = evaluate(compile_rule(loaded, catalogue.get), warehouse_query(hook), start, start + H, now=start + H)
    first = min(r.bucket for r in ev.firing if _on_target(inc, r))
    assert first == slice_start


@pytest.mark.parametrize(("rule_id", "span"), [
    ("finance.refund_rate", 24 * H),  # the whole day of the surge
    ("finance.refund_rate_fast", 6 * H),
    ("finance.complaint_spike", 6 * H),
    ("finance.payment_failure", 3 * H),
    ("customer.negative_review", 3 * H),
    ("customer.negative_review_burst", 6 * H),
])
def test_five_minute_cycles_on_the_rollups_equal_one_evaluation_of_the_raw_facts(catalogue, incident_shop,
                                                                                 rule_id, span):
    hook, labels = incident_shop
    inc = _incident(labels, STATED[rule_id][0])
    start = _ts(inc["start"])
    end = start + span
    loaded = catalogue.get(rule_id)
    maintain_for(hook, loaded, catalogue, start, end, end)
    query = warehouse_query(hook)
    once = evaluate(compile_rule(loaded, catalogue.get, source="query"), query, start, end, now=end)
    rolled = compile_rule(loaded, catalogue.get, source="rollup")
    assert "rollup_" in rolled.sql
    windows = [(start + k * SLICE, start + (k + 1) * SLICE) for k in range(int(span / SLICE))]
    cycles = [r for ev in evaluate_cycles(rolled, query, windows) for r in ev.results]

    def walk(results):  # the cycles come bucket by bucket, one evaluation entity by entity
        return sorted((r.bucket, r.entity_key, str(r.state), r.severity) for r in results)

    assert walk(cycles) == walk(once.results)
    assert any(str(r.state) == "firing" and _on_target(inc, r) for r in once.results)
