"""Replay a rule over history, as the live DAG would have evaluated it.

``replay`` runs the rule's compiled SQL (the same statement, persistence, tiers, guards and
baselines as the check task) over ``[start, end)``, reading the raw facts (``source="query"``:
no rollup is needed, and the answer is the rollups' own, ``tests/engine/test_rolling.py``). A
rule over a series of buckets is evaluated in week-long windows: the engine's state walk starts
every window with its lead-in (persistence and the recovery hold), so a window gives exactly
what the hourly cycles gave, bucket for bucket; a rolling rule (``window:``) too, each 5-minute
bucket's window summed from the slices before it, so a week is its 2,016 five-minute cycles
(``tests/analysis`` checks both). A current-state rule (stock now, parcels in transit now)
has no history of its own and is evaluated cycle by cycle, every ``every``; each cycle resumes
from what the one before left pending or firing (``Evaluation.carry``), as the live check
resumes from ``rule_results``, so an entity no longer returned resolves and its episode ends.

``--series FILE.csv`` runs the same rule on a metric CSV with no warehouse (``analysis.series``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from threshold_operators.analysis.episodes import Episode, episodes, summary

CHUNK = timedelta(days=7)


@dataclass
class Backtest:
    rule: object
    start: datetime
    end: datetime
    results: list = field(repr=False)
    episodes: list[Episode]
    summary: dict
    overrides: list[str] = field(default_factory=list)
    source: str = "warehouse"

    def as_json(self) -> dict:
        """The documented, stable JSON of ``storefence backtest --json`` (docs/analysis.md)."""
        return {"rule": self.rule.id, "mode": self.rule.mode, "source": self.source, "start": self.start.isoformat(),
                "end": self.end.isoformat(), "overrides": list(self.overrides),
                "episodes": [e.as_json() for e in self.episodes], "summary": self.summary}


def windows(loaded, start: datetime, end: datetime, stepwise: bool | None = None) -> list[tuple[datetime, datetime]]:
    """The evaluation windows of a replay: the live cycles for a current-state rule, else weeks."""
    stepwise = loaded.current_state if stepwise is None else stepwise
    step = loaded.rule.every if stepwise else CHUNK
    out, t = [], start
    while t < end:
        out.append((t, min(t + step, end)))
        t += step
    return out


def replay(loaded, lookup, query, start: datetime, end: datetime, stepwise: bool | None = None) -> list:
    """Every bucket result (pending, firing, resolved) of the rule over ``[start, end)``.
    ``stepwise``: cycle by cycle (default: for current-state rules only)."""
    from threshold_operators.engine.compile import compile_rule
    from threshold_operators.engine.evaluate import evaluate_cycles

    compiled = compile_rule(loaded, lookup, source="query")  # the raw facts: a replay never needs a rollup
    return [r for ev in evaluate_cycles(compiled, query, windows(loaded, start, end, stepwise)) for r in ev.results]


def backtest(loaded, lookup, query, start: datetime, end: datetime, overrides=(), source="warehouse",
             stepwise: bool | None = None) -> Backtest:
    results = replay(loaded, lookup, query, start, end, stepwise)
    eps = episodes(loaded.rule, results)
    return Backtest(loaded.rule, start, end, results, eps, summary(eps, start, end), list(overrides), source)


def render_text(bt: Backtest, limit: int = 50) -> str:
    s = bt.summary
    per = s["alerts_per_week_by_severity"]
    lines = [f"{bt.rule.id} ({bt.rule.mode}) over {bt.start:%Y-%m-%d %H:%M} .. {bt.end:%Y-%m-%d %H:%M} UTC"
             + (f" with {', '.join(bt.overrides)}" if bt.overrides else "") + f" [{bt.source}]",
             f"{s['alerts']} alert episode(s) on {s['entities']} entities: {s['alerts_per_week']:.2f} a week "
             f"(red {per['red']:.2f}, yellow {per['yellow']:.2f}, blue {per['blue']:.2f}); "
             f"{s['hours_in_alert']:.0f} hours in alert", ""]
    if bt.episodes:
        lines.append(f"{'entity':<34} {'severity':<8} {'start (UTC)':<16} {'end':<16} {'peak':>10} {'baseline':>10} "
                     f"{'threshold':>9}")
    for e in bt.episodes[:limit]:
        end = f"{e.end:%m-%d %H:%M}" if e.end else "(firing)"
        lines.append(f"{e.entity_key[-34:]:<34} {e.severity:<8} {e.start:%m-%d %H:%M}      {end:<16} "
                     f"{_g(e.peak_value):>10} {_g(e.baseline):>10} {_g(e.threshold):>9}")
    if len(bt.episodes) > limit:
        lines.append(f"... and {len(bt.episodes) - limit} more (--json for all)")
    return "\n".join(lines)


def _g(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def backtest_series(loaded, lookup, rows: list[dict], start: datetime | None = None, end: datetime | None = None,
                    overrides=(), source: str = "series") -> Backtest:
    """The rule on series rows (``analysis.series``). The range defaults to the series' own, less the
    history the rule's baselines need at its start (its warm-up: 14 days for a 2-week baseline)."""
    from threshold_operators.analysis.series import warehouse_for

    wh, rule, look = warehouse_for(loaded, lookup, rows)
    try:
        first = min(r["bucket"] for r in rows)
        start = start or first + warm_up(loaded.rule)
        end = end or max(r["bucket"] for r in rows) + loaded.rule.grain_delta
        if start >= end:
            from threshold_operators.analysis.series import SeriesError

            raise SeriesError(f"the series ({first:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}) is shorter than the "
                              f"history {loaded.rule.id} needs before its first evaluation ({warm_up(loaded.rule)})")
        return backtest(rule, look, wh.query, start, end, overrides, source, stepwise=False)
    finally:
        wh.dispose()


def warm_up(rule) -> timedelta:
    """History a rule needs before its first evaluated bucket: its baselines' reach, the window
    (a rolling rule) or lookback its own value reads, and the lead-in."""
    from threshold_operators.engine.windows import history_offsets, lead_in, reach_back, trailing_reach

    return max([timedelta(0), *history_offsets(rule), trailing_reach(rule)]) + reach_back(rule) + lead_in(rule)
