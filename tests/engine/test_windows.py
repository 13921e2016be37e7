"""Windows and scan ranges: what a cycle evaluates and which history it reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.engine.rules_in_memory import rule
from threshold_operators.engine.record import next_window
from threshold_operators.engine.windows import YEAR, plan_cycle

H = timedelta(hours=1)
D = timedelta(days=1)
T0 = datetime(2026, 9, 10, tzinfo=UTC)


def test_offset_baselines_read_only_their_hours():
    r = rule(conditions=[{"metric": "orders", "baseline": {"kind": "same_weekday_hour", "periods": 2},
                          "compare": "ratio", "above": 2}])
    plan = plan_cycle(r, T0, T0 + H)
    # the window's hour, the hour before (a lead-in bucket: an alert that stops breaching resolves in
    # the window's first hour) and the one before that (the candidates start after it)
    assert plan.scans == ((T0 - 2 * H, T0 + H), (T0 - 2 * H - 7 * D, T0 + H - 7 * D),
                          (T0 - 2 * H - 14 * D, T0 + H - 14 * D))


def test_year_over_year_and_lookback_widen_every_range():
    r = rule(lookback="24h", conditions=[{"metric": "x", "baseline": {"kind": "year_over_year"},
                                          "compare": "pct_change", "above": 50}])
    plan = plan_cycle(r, T0, T0 + H)
    assert plan.scans == ((T0 - 26 * H, T0 + H), (T0 - 26 * H - YEAR, T0 + H - YEAR))


def test_persistence_and_recovery_hold_extend_the_lead_in():
    r = rule(**{"for": 3, "hold_for": "6h"}, conditions=[{"metric": "x", "above": 5, "recover": 3}])
    assert plan_cycle(r, T0, T0 + H).candidates_from == T0 - H - 3 * H - 6 * H


def test_the_scan_does_not_depend_on_history():
    r = rule(conditions=[{"metric": "x", "baseline": {"kind": "trailing", "window": "7d"}, "compare": "ratio",
                          "below": 0.5}])
    plan = plan_cycle(r, T0, T0 + H)
    assert plan.scans == ((T0 - 2 * H - 7 * D, T0 + H),)


def test_next_window_starts_where_the_last_ended():
    r = rule()
    assert next_window(r, T0, T0 + 3 * H + timedelta(minutes=20), 48 * H) == (T0, T0 + 3 * H, None)


def test_next_window_waits_for_a_complete_hour_and_for_every():
    assert next_window(rule(), T0, T0 + timedelta(minutes=50), 48 * H)[:2] == (T0, T0)
    assert next_window(rule(every="6h"), T0, T0 + 5 * H, 48 * H)[:2] == (T0, T0)


def test_first_evaluation_and_catch_up_limit():
    assert next_window(rule(), None, T0, 48 * H)[:2] == (T0 - H, T0)
    start, end, note = next_window(rule(), T0 - 10 * D, T0, 48 * H)
    assert (start, end) == (T0 - 48 * H, T0) and "backfill" in note


@pytest.mark.parametrize("bad, message", [
    ({"above": {"yellow": 3, "red": 2}}, "must rise"),
    ({"below": {"yellow": 3, "red": 4}}, "must fall"),
    ({"above": 5, "below": 3}, "exactly one of above or below"),
    ({"above": 5, "recover": 6}, "recover (6.0) must be below"),
    ({"above": 5, "compare": "ratio"}, "needs a baseline"),
])
def test_condition_validation(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rule(conditions=[{"metric": "x", **bad}])
