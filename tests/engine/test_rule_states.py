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


def test_prune_deletes_history_before_the_cutoff_but_each_rules_newest_and_the_states(warehouse):
    """``record.prune``: the rules' rule_results of earlier buckets and rule_evaluations that ended
    earlier go, but each rule's newest evaluation (where its next cycle continues) and rule_states
    (every entity's newest state) stay; other rules are not touched. On DuckDB and PostgreSQL."""
    from datetime import UTC, datetime

    from threshold_operators.engine.record import prune
    from threshold_operators.warehouse.bulk_load import bulk_loader
    from threshold_operators.warehouse.schema import arrow_table

    day = timedelta(days=1)
    d0 = datetime(2026, 6, 1, tzinfo=UTC)
    create_schema(warehouse.engine)
    ends = {"a": [d0 + k * day for k in range(1, 6)], "b": [d0 + day], "c": [d0 + day, d0 + 2 * day]}
    cycles = [(rule, end) for rule, days in ends.items() for end in days]
    results = [(rule, f"sku={n}", end - H) for rule, end in cycles for n in range(2)]
    with bulk_loader(warehouse) as loader:
        loader.upsert("rule_evaluations", arrow_table("rule_evaluations", {
            "rule_id": [r for r, _ in cycles], "window_start": [e - day for _, e in cycles],
            "window_end": [e for _, e in cycles], "mode": ["live"] * len(cycles), "outcome": ["breach"] * len(cycles),
            "firing": [2] * len(cycles), "pending": [0] * len(cycles), "resolved": [0] * len(cycles),
            "candidates": [2] * len(cycles), "detail": [None] * len(cycles), "duration_ms": [1] * len(cycles),
            "run_id": ["r"] * len(cycles), "evaluated_at": [e for _, e in cycles], "definition": ["d"] * len(cycles)}))
        loader.upsert("rule_results", arrow_table("rule_results", {
            "rule_id": [r for r, _, _ in results], "entity_key": [k for _, k, _ in results],
            "bucket": [b for _, _, b in results], "state": ["firing"] * len(results), "severity": ["red"] * len(results),
            "value": [1.0] * len(results), "baseline": [None] * len(results), "threshold": [None] * len(results),
            "entity": ["{}"] * len(results), "metrics": ["{}"] * len(results), "mode": ["live"] * len(results),
            "window_end": [b + H for _, _, b in results], "evaluated_at": [b + H for _, _, b in results]}))
    states = _rows(warehouse, "SELECT rule_id, entity_key, bucket FROM rule_states")
    cutoff = d0 + 4 * day  # evaluations: a's of days 1-3 go (4 and 5 stay); b's one is its newest
    # results (two entities a bucket, an hour before each end): a's of days 1-4 and b's go
    assert prune(warehouse, ["a", "b"], cutoff) == (2 * 4 + 2, 3)
    assert [(r, e.astimezone(cutoff.tzinfo)) for r, e in
            _rows(warehouse, "SELECT rule_id, window_end FROM rule_evaluations")] == \
        [("a", d0 + 4 * day), ("a", d0 + 5 * day), ("b", d0 + day), ("c", d0 + day), ("c", d0 + 2 * day)]
    kept = _rows(warehouse, "SELECT rule_id, COUNT(*), MIN(bucket) FROM rule_results GROUP BY rule_id")
    assert [(r, n, b.astimezone(cutoff.tzinfo)) for r, n, b in kept] == [("a", 2, d0 + 5 * day - H), ("c", 4, d0 + day - H)]
    assert _rows(warehouse, "SELECT rule_id, entity_key, bucket FROM rule_states") == states  # untouched
    assert prune(warehouse, ["a", "b"], cutoff) == (0, 0)  # idempotent
