"""Which buckets a cycle evaluates and which time ranges of the fact tables it must read.

A cycle evaluates the data window ``[start, end)``: every bucket that *completes* in it, that
is ``start < bucket + grain <= end``. Each bucket is therefore evaluated by exactly one cycle,
whatever the schedule, and a backfill of a window gives the answer a live run gave.

To decide whether an entity is firing, the engine also looks at the buckets just before the
window (``for`` and ``hold_for``: persistence and the recovery hold), and the baselines read the
same entity's history at fixed offsets (a week ago, a year ago) or over a trailing window. The
scan ranges are exactly those times: the cost of a cycle depends on the window and the rule,
never on how much history the warehouse holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from threshold_operators.rules.model import Baseline, Rule

YEAR = timedelta(days=364)  # 52 weeks: the same weekday a year earlier
HOUR = timedelta(hours=1)


def baseline_offsets(baseline: Baseline, grain: timedelta) -> list[timedelta]:
    """How far back each history point of an offset baseline lies ([] for trailing). Neighbours are
    the buckets either side, of an hourly rule; of a rolling rule (5-minute grain), the windows
    whole hours either side."""
    if baseline.kind in ("same_hour", "same_weekday_hour"):
        period = timedelta(days=1) if baseline.kind == "same_hour" else timedelta(weeks=1)
        spread = range(-baseline.neighbours, baseline.neighbours + 1)
        step = max(grain, HOUR)
        return [period * k + step * j for k in range(1, baseline.periods + 1) for j in spread]
    if baseline.kind == "previous_period":
        return [baseline.window * k for k in range(1, baseline.periods + 1)]
    if baseline.kind == "year_over_year":
        return [YEAR * k for k in range(1, baseline.periods + 1)]
    return []


def lead_in(rule: Rule) -> timedelta:
    """History before the first evaluated bucket that persistence and the recovery hold need, and one
    bucket more: an entity that fired in the bucket before the window and stops breaching in its first
    bucket resolves there (without it, an hourly cycle would never see the alert end)."""
    hold = rule.hold_for if any(c.recover is not None for c in rule.conditions) else timedelta(0)
    return rule.grain_delta * rule.for_ + hold


def history_offsets(rule: Rule) -> list[timedelta]:
    """Distinct offsets of every offset baseline of the rule, ascending."""
    offsets = {o for c in rule.conditions if c.baseline for o in baseline_offsets(c.baseline, rule.grain_delta)}
    return sorted(offsets)


def trailing_reach(rule: Rule) -> timedelta:
    windows = [c.baseline.window for c in rule.conditions if c.baseline and c.baseline.kind == "trailing"]
    return max(windows, default=timedelta(0))


def reach_back(rule: Rule) -> timedelta:
    """History before each evaluated bucket the rule's own value needs: a rolling rule's window
    (less its last slice, the bucket itself), or the query's ``lookback``."""
    return rule.window - rule.grain_delta if rule.rolling else rule.lookback


def history_needed(rule: Rule) -> timedelta:
    """How far before a window's first bucket a cycle reads (lead-in, window, baselines): what a
    rolling rule's rollup must hold."""
    return rule.grain_delta + lead_in(rule) + reach_back(rule) + trailing_reach(rule) + \
        max(history_offsets(rule), default=timedelta(0))


def scan_range_count(rule: Rule) -> int:
    return 1 + len(history_offsets(rule))


@dataclass(frozen=True)
class CyclePlan:
    """The bound time parameters of one cycle of one rule."""

    window_start: datetime
    window_end: datetime
    first_bucket: datetime  # first bucket evaluated (hour grain; day grain: a lower bound)
    last_bucket: datetime  # last bucket evaluated (an upper bound for day grain)
    candidates_from: datetime  # buckets after this (exclusive) are computed: lead-in included
    scans: tuple[tuple[datetime, datetime], ...]

    def params(self) -> dict:
        out = {
            "window_start": self.window_start,
            "window_end": self.window_end,
            "first_bucket": self.first_bucket,
            "last_bucket": self.last_bucket,
            "candidates_from": self.candidates_from,
        }
        for i, (lo, hi) in enumerate(self.scans):
            out[f"scan_{i}_start"] = lo
            out[f"scan_{i}_end"] = hi
        return out


def plan_cycle(rule: Rule, start: datetime, end: datetime, *, resume: bool = False) -> CyclePlan:
    """The plan for evaluating ``rule`` over the data window ``[start, end)``. ``resume``: the window
    continues the one evaluated last, whose recorded states (streak, firing, last breach) the walk
    resumes from, so no lead-in is read: only the window's own buckets are computed."""
    if end <= start:
        raise ValueError(f"empty window: {start} .. {end}")
    g = rule.grain_delta
    candidates_from = start - g - (timedelta(0) if resume else lead_in(rule))
    reach = candidates_from - reach_back(rule)
    current = (reach - trailing_reach(rule), end)
    history = tuple((reach - o, end - o) for o in history_offsets(rule))
    return CyclePlan(
        window_start=start,
        window_end=end,
        first_bucket=start if rule.grain != "day" else start - g,
        last_bucket=end - g,
        candidates_from=candidates_from,
        scans=(current, *history),
    )
