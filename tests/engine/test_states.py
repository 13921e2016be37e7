"""The state walk and the cycle on values in memory: no database, the query and the clock injected."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from tests.engine.rules_in_memory import rule
from threshold_operators.engine.compile import CompiledRule
from threshold_operators.engine.evaluate import Outcome, evaluate
from threshold_operators.engine.states import State, entity_states

H = timedelta(hours=1)
T0 = datetime(2026, 9, 10, tzinfo=UTC)


def rows(*levels, hold=(), shop="s1", start=T0):
    """Candidate rows as the SQL returns them: one per bucket that breaches (level) or is held."""
    out = []
    for i, level in enumerate(levels):
        if level is None:
            continue  # a quiet bucket: the SQL returns nothing for it
        out.append({"shop_id": shop, "bucket": start + i * H, "level": level, "hold": 1 if i in hold else 0})
    return out


def states(results):
    return [((r.bucket - T0) // H, str(r.state), r.severity) for r in results]


def test_for_counts_consecutive_buckets_then_fires():
    r = rule(**{"for": 3})
    got = entity_states(r, rows(2, 2, 2, 3, None), T0, T0 + 5 * H)
    assert states(got) == [(0, "pending", "yellow"), (1, "pending", "yellow"), (2, "firing", "yellow"),
                           (3, "firing", "red"), (4, "resolved", None)]


def test_a_gap_restarts_the_streak():
    got = entity_states(rule(**{"for": 2}), rows(2, None, 2, 2), T0, T0 + 4 * H)
    assert states(got) == [(0, "pending", "yellow"), (2, "pending", "yellow"), (3, "firing", "yellow")]


def test_hold_keeps_firing_until_hold_for_then_resolves():
    r = rule(conditions=[{"metric": "orders", "above": 5, "recover": 3}], hold_for="2h")
    got = entity_states(r, rows(2, 0, 0, 0, hold={1, 2, 3}), T0, T0 + 4 * H)
    assert states(got) == [(0, "firing", "yellow"), (1, "firing", "yellow"), (2, "firing", "yellow"),
                           (3, "resolved", None)]


def test_held_without_a_prior_breach_is_nothing():
    got = entity_states(rule(), rows(0, 0, hold={0, 1}), T0, T0 + 2 * H)
    assert got == []


def test_lead_in_buckets_inform_but_are_not_reported():
    """Buckets before the window decide the state at its start; only the window's are returned."""
    r = rule(**{"for": 2})
    got = entity_states(r, rows(2, 2, 2, start=T0 - 2 * H), T0, T0 + H)
    assert states(got) == [(0, "firing", "yellow")]


def test_resolution_just_after_the_window_start_is_reported():
    got = entity_states(rule(), rows(2, None, start=T0 - H), T0, T0 + H)
    assert states(got) == [(0, "resolved", None)]


def test_entities_are_walked_separately():
    got = entity_states(rule(), rows(2, None, shop="a") + rows(None, 3, shop="b"), T0, T0 + 2 * H)
    assert [(r.entity_key, str(r.state)) for r in got] == [("shop_id=a", "firing"), ("shop_id=a", "resolved"),
                                                          ("shop_id=b", "firing")]


def test_evaluate_takes_the_query_and_the_clock_as_arguments():
    seen = {}

    def query(sql, params):
        seen.update(params)
        return rows(3)

    ticks = iter([10.0, 10.25])
    now = datetime(2030, 1, 1, tzinfo=UTC)
    compiled = CompiledRule(rule(), "SELECT 1", {"c0_yellow": 5})
    ev = evaluate(compiled, query, T0, T0 + H, now=now, clock=lambda: next(ticks))
    assert ev.outcome == Outcome.BREACH and ev.evaluated_at == now and ev.duration_ms == 250
    assert seen["window_start"] == T0 and seen["window_end"] == T0 + H and seen["c0_yellow"] == 5
    assert [str(r.state) for r in ev.results] == [State.FIRING]


# --- a rule over a current state: one observation per cycle, resumed from the prior ----------------
def cycles(r, observations, complete=()):
    """Hourly current-state cycles: each observation is one cycle's rows (a level, None: not returned),
    carried from cycle to cycle as the live check and the replay carry them. ``complete``: the
    indexes of incomplete cycles (a failing gate)."""
    from threshold_operators.engine.states import carry

    prior, out = {}, []
    for k, level in enumerate(observations):
        start = T0 + k * H
        got = entity_states(r, rows(level, start=start) if level is not None else [], start, start + H, prior,
                            current_state=True, complete=k not in complete)
        out += got
        prior = carry(prior, got, k not in complete)
    return states(out)


def test_current_state_an_entity_no_longer_returned_resolves_once():
    assert cycles(rule(), [2, 3, None, None, 2]) == [(0, "firing", "yellow"), (1, "firing", "red"),
                                                      (2, "resolved", None), (4, "firing", "yellow")]


def test_current_state_persistence_counts_across_cycles():
    assert cycles(rule(**{"for": 2}), [2, 2, None, 2]) == [(0, "pending", "yellow"), (1, "firing", "yellow"),
                                                            (2, "resolved", None), (3, "pending", "yellow")]


def test_current_state_incomplete_cycles_resolve_nothing():
    assert cycles(rule(), [2, None, None, None], complete={1, 2}) == [(0, "firing", "yellow"), (3, "resolved", None)]


def test_current_state_hold_counts_from_the_last_breach_across_cycles():
    r = rule(conditions=[{"metric": "orders", "above": 5, "recover": 3}], hold_for="2h")
    prior, out = {}, []
    from threshold_operators.engine.states import carry

    for k, (level, hold) in enumerate([(2, 0), (0, 1), (0, 1), (0, 1)]):
        start = T0 + k * H
        got = entity_states(r, [{"shop_id": "s1", "bucket": start, "level": level, "hold": hold}], start, start + H,
                            prior, current_state=True)
        out += got
        prior = carry(prior, got)
    assert states(out) == [(0, "firing", "yellow"), (1, "firing", "yellow"), (2, "firing", "yellow"),
                           (3, "resolved", None)]


def test_a_series_alert_its_lead_in_no_longer_sees_resolves():
    """A rule over a series: an alert left firing (e.g. its resolving cycle was incomplete) that the
    window neither shows firing nor resolving resolves; one the window shows firing goes on."""
    from threshold_operators.engine.states import Prior

    firing = {"shop_id=s1": Prior({"shop_id": "s1"}, T0 - 10 * H, State.FIRING, "yellow", 1, T0 - 10 * H)}
    assert states(entity_states(rule(), [], T0, T0 + 2 * H, firing)) == [(1, "resolved", None)]
    assert states(entity_states(rule(), rows(2, 2), T0, T0 + 2 * H, firing)) == [(0, "firing", "yellow"),
                                                                                 (1, "firing", "yellow")]
    assert entity_states(rule(), [], T0, T0 + 2 * H, firing, complete=False) == []


# --- a window that continues the last one: resumed from the prior, no lead-in ------------------------
def resumed(r, levels, hold=()):
    """Hourly cycles of a rule over a series, each given its own bucket's row only (``resume``: the
    query reads no lead-in) and the carry of the cycle before, as the live check resumes them."""
    from threshold_operators.engine.states import carry

    prior, out = {}, []
    for k in range(len(levels)):
        start = T0 + k * H
        mine = [x for x in rows(*levels, hold=hold) if x["bucket"] == start]
        got = entity_states(r, mine, start, start + H, prior, resume=k > 0)
        out += got
        prior = carry(prior, got)
    return states(out)


@pytest.mark.parametrize("seed", range(40))
def test_resumed_cycles_equal_one_walk_of_the_whole_span(seed):
    """Streaks (``for``), holds between recover and breach, their ``hold_for`` and gaps: a walk that
    resumes from the carry, bucket by bucket, says what one walk of every bucket says."""
    rnd = random.Random(seed)
    n = 30
    levels = [rnd.choice([None, None, 0, 2, 3]) for _ in range(n)]
    hold = {i for i, lv in enumerate(levels) if lv == 0 or (lv is not None and rnd.random() < 0.2)}
    levels = [None if lv == 0 and i not in hold else lv for i, lv in enumerate(levels)]
    r = rule(conditions=[{"metric": "orders", "above": 5, "recover": 3}], hold_for=f"{rnd.choice([1, 2, 3])}h",
             **{"for": rnd.choice([1, 2, 3])})
    whole = states(entity_states(r, rows(*levels, hold=hold), T0, T0 + n * H))
    assert resumed(r, levels, hold) == whole


def test_a_resumed_window_of_several_buckets_resolves_where_the_lead_in_would():
    """A firing prior with no row in a resumed window of three buckets resolves at its first
    bucket (the bucket after the prior's), not at its last."""
    from threshold_operators.engine.states import Prior

    r = rule()
    prior = {"shop_id=s1": Prior({"shop_id": "s1"}, T0 - H, State.FIRING, "yellow", 1, T0 - H)}
    got = entity_states(r, [], T0, T0 + 3 * H, prior, resume=True)
    assert states(got) == [(0, "resolved", None)]
    assert states(entity_states(r, rows(2, start=T0 - H), T0, T0 + 3 * H)) == states(got)


def test_a_replay_resumes_each_window_that_continues_the_one_before():
    """``evaluate_cycles``: the first window and one after a gap read the lead-in; a window that
    starts where the one before ended reads its own buckets only."""
    from threshold_operators.engine.evaluate import evaluate_cycles
    from threshold_operators.engine.windows import lead_in

    seen = []

    def query(sql, params):
        seen.append(params["candidates_from"])
        return []

    r = rule(**{"for": 3})
    windows = [(T0, T0 + H), (T0 + H, T0 + 2 * H), (T0 + 3 * H, T0 + 4 * H)]
    list(evaluate_cycles(CompiledRule(r, "SELECT 1", {}), query, windows))
    assert lead_in(r) >= 3 * H
    assert seen == [T0 - H - lead_in(r), T0, T0 + 2 * H - lead_in(r)]
