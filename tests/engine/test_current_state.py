"""Rules over a current state resolve (issue 11, part 3): inventory.stock_cover on a hand-made shop,
cycle by cycle as the check task runs them (``engine.record.live_evaluation``: resume from
``rule_states``, record), on DuckDB and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.engine.stock_shop import (
    LOW,
    OK,
    T0,
    H,
    extract_ran,
    fail_gate,
    load_stock_shop,
    replenish,
    stock_cover_cycle,
)
from threshold_operators.engine.record import previous_states, window_results
from threshold_operators.rules.catalogue import load_catalogue

RULE = "inventory.stock_cover"
LAST = H - timedelta(minutes=5)  # the rule's grain is 5 minutes: a cycle's bucket is its last 5 minutes


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


def _states(ev) -> list[tuple]:
    return [(r.entity_key, r.bucket, str(r.state), r.severity) for r in ev.results]


def test_a_replenished_sku_resolves_in_the_next_cycle_and_only_once(catalogue, warehouse):
    load_stock_shop(warehouse)
    replenish(warehouse, T0 + 2 * H + timedelta(minutes=30), 600)  # 50 days of cover from 19:30
    got = [_states(stock_cover_cycle(warehouse, catalogue, k)) for k in range(5)]
    assert got == [
        [(LOW, T0 + LAST, "firing", "yellow")],  # 60 units, 12 a day: 5 days
        [(LOW, T0 + H + LAST, "firing", "yellow")],
        [(LOW, T0 + 2 * H + LAST, "resolved", None)],  # no longer returned by the query: recovered
        [],  # and nothing more: resolved once
        [],
    ]
    breaches, resolved = window_results(warehouse, catalogue.get(RULE).rule, T0 + 3 * H)
    assert breaches == [] and resolved == {LOW: (T0 + 2 * H + LAST).isoformat()}
    assert OK not in previous_states(warehouse, catalogue.get(RULE).rule, T0 + 10 * H)


def test_a_retried_cycle_gives_the_same_answer(catalogue, warehouse):
    load_stock_shop(warehouse)
    replenish(warehouse, T0 + H + timedelta(minutes=30), 600)
    stock_cover_cycle(warehouse, catalogue, 0)
    first = _states(stock_cover_cycle(warehouse, catalogue, 1))
    assert first == [(LOW, T0 + H + LAST, "resolved", None)]
    assert _states(stock_cover_cycle(warehouse, catalogue, 1)) == first  # its own rows are not its prior


def test_a_cycle_under_a_failing_data_gate_resolves_nothing(catalogue, warehouse):
    load_stock_shop(warehouse)
    replenish(warehouse, T0 + H + timedelta(minutes=30), 600)
    stock_cover_cycle(warehouse, catalogue, 0)
    fail_gate(warehouse, "order_items", T0 + 2 * H + timedelta(minutes=5))
    gated = stock_cover_cycle(warehouse, catalogue, 1)
    assert _states(gated) == [] and not gated.complete and "nothing resolved" in gated.detail
    assert set(previous_states(warehouse, catalogue.get(RULE).rule, T0 + 2 * H)) == {LOW}  # still firing
    fail_gate(warehouse, "order_items", T0 + 3 * H)  # the next extract fails too
    assert _states(stock_cover_cycle(warehouse, catalogue, 2)) == []
    extract_ran(warehouse, "order_items", T0 + 4 * H)  # then one passes its gates
    assert _states(stock_cover_cycle(warehouse, catalogue, 3)) == [(LOW, T0 + 3 * H + LAST, "resolved", None)]


def test_held_between_recover_and_breach_stays_firing_then_resolves(catalogue, warehouse):
    load_stock_shop(warehouse)
    replenish(warehouse, T0 + H + timedelta(minutes=30), 186)  # 15.5 days: above 15, below recover (16)
    replenish(warehouse, T0 + 3 * H + timedelta(minutes=30), 300)  # 25 days: recovered
    got = [_states(stock_cover_cycle(warehouse, catalogue, k)) for k in range(4)]
    assert got == [
        [(LOW, T0 + LAST, "firing", "yellow")],
        [(LOW, T0 + H + LAST, "firing", "yellow")],  # held: the recovery hold (hold_for 48h) keeps it firing
        [(LOW, T0 + 2 * H + LAST, "firing", "yellow")],
        [(LOW, T0 + 3 * H + LAST, "resolved", None)],
    ]
