"""``rule_states``: each rule and entity's newest result, kept with the results in one transaction,
so a live cycle resumes from it without grouping the whole ``rule_results`` history; a window
evaluated again still resumes from the history before it. On DuckDB and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.engine.stock_shop import LOW, T0, H, load_stock_shop, replenish, stock_cover_cycle
from threshold_operators.engine.record import history_states, previous_states
from threshold_operators.rules.catalogue import load_catalogue
from threshold_operators.warehouse.schema import create_schema

RULE = "inventory.stock_cover"
COLUMNS = "rule_id, entity_key, bucket, state, severity, value, baseline, threshold, entity, metrics, mode, window_end"


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


def _rows(hook, sql: str) -> list[tuple]:
    with hook.engine.connect() as con:
        return sorted(tuple(r) for r in con.execute(sa.text(sql)))


def _newest_results(hook) -> list[tuple]:
    """What rule_states must hold: each rule and entity's rule_results row of the newest bucket."""
    return _rows(hook, f"SELECT {COLUMNS} FROM rule_results r WHERE bucket = (SELECT MAX(bucket) FROM rule_results x "
                       "WHERE x.rule_id = r.rule_id AND x.entity_key = r.entity_key)")


def _firing_then_resolved(hook, catalogue) -> None:
    load_stock_shop(hook)
    replenish(hook, T0 + 3 * H + timedelta(minutes=30), 600)  # firing for three cycles, resolved in the fourth
    for k in range(5):
        stock_cover_cycle(hook, catalogue, k)


def test_the_states_are_each_entitys_newest_result(catalogue, warehouse):
    _firing_then_resolved(warehouse, catalogue)
    states = _rows(warehouse, f"SELECT {COLUMNS} FROM rule_states")
    assert [(r[1], r[3]) for r in states] == [(LOW, "resolved")]
    assert states == _newest_results(warehouse)
    stock_cover_cycle(warehouse, catalogue, 1)  # an older window evaluated again leaves the newest state as it is
    assert _rows(warehouse, f"SELECT {COLUMNS} FROM rule_states") == states


def test_a_live_cycle_resumes_from_the_states_not_the_history(catalogue, warehouse):
    load_stock_shop(warehouse)
    for k in range(3):  # firing, every cycle
        stock_cover_cycle(warehouse, catalogue, k)
    rule = catalogue.get(RULE).rule
    live = previous_states(warehouse, rule, T0 + 3 * H)
    assert set(live) == {LOW} and live[LOW].bucket == T0 + 3 * H - timedelta(minutes=5)
    assert live == history_states(warehouse, rule, T0 + 3 * H)  # the same answer as grouping the history
    with warehouse.engine.begin() as con:  # the history gone: the live cycle's prior does not need it
        con.execute(sa.text("DELETE FROM rule_results"))
    assert previous_states(warehouse, rule, T0 + 3 * H) == live


def test_a_window_evaluated_again_resumes_from_the_history_before_it(catalogue, warehouse):
    _firing_then_resolved(warehouse, catalogue)
    rule = catalogue.get(RULE).rule
    # before the fourth cycle LOW was firing (its third cycle's row); the states say resolved since
    again = previous_states(warehouse, rule, T0 + 3 * H)
    assert set(again) == {LOW} and str(again[LOW].state) == "firing"
    assert again[LOW].bucket == T0 + 3 * H - timedelta(minutes=5)
    assert again == history_states(warehouse, rule, T0 + 3 * H)
    assert previous_states(warehouse, rule, T0 + 10 * H) == {}  # and after it: resolved


def test_an_upgraded_warehouse_fills_the_states_from_its_results(catalogue, warehouse):
    _firing_then_resolved(warehouse, catalogue)
    expected = _newest_results(warehouse)
    with warehouse.engine.begin() as con:  # a warehouse of the version before rule_states
        con.execute(sa.text("DROP TABLE rule_states"))
    assert "rule_states" in create_schema(warehouse.engine)
    assert _rows(warehouse, f"SELECT {COLUMNS} FROM rule_states") == expected
