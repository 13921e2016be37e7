"""``storefence tune``: sweep one rule parameter over history; "start loose, then tighten".

Each value is a backtest of the rule with ``--set KEY=VALUE`` (``analysis.overrides``): alerts
per week, and with a labels file the incidents caught, missed and the median detection delay.
The recommendation walks the values from the loosest (most alerts) to the tightest and stops at
the first that keeps within ``max_alerts_per_week`` without missing an incident the loosest
value caught: the most sensitive setting the team can live with. None when no value qualifies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta


@dataclass
class TunePoint:
    value: object
    alerts_per_week: float
    alerts: int
    caught: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    median_delay_h: float | None = None
    false_per_week: float | None = None

    def as_json(self) -> dict:
        return {"value": self.value, "alerts_per_week": self.alerts_per_week, "alerts": self.alerts,
                "caught": self.caught, "missed": self.missed, "median_delay_hours": self.median_delay_h,
                "false_alerts_per_week": self.false_per_week}


@dataclass
class TuneResult:
    rule_id: str
    param: str
    points: list[TunePoint]
    max_alerts_per_week: float
    recommended: object | None

    def as_json(self) -> dict:
        return {"rule": self.rule_id, "param": self.param, "max_alerts_per_week": self.max_alerts_per_week,
                "recommended": self.recommended, "points": [p.as_json() for p in self.points]}


def sweep(loaded, lookup, run, param: str, values: list[str], labels: dict | None, start, end,
          max_alerts_per_week: float) -> TuneResult:
    """``run(loaded_with_override) -> Backtest``: how a value is backtested (warehouse or series)."""
    from threshold_operators.analysis.overrides import apply_overrides, parse_setting
    from threshold_operators.analysis.scoring import score

    points = []
    for raw in values:
        setting = f"{param}={raw}"
        variant = apply_overrides(loaded, [setting])
        bt = run(variant, [setting])
        p = TunePoint(parse_setting(setting)[1], bt.summary["alerts_per_week"], bt.summary["alerts"])
        if labels is not None:
            s = score(variant.rule, bt.episodes, labels, bt.start, bt.end)
            p.caught, p.missed = s.caught, s.missed
            p.median_delay_h, p.false_per_week = s.median_delay_h, round(s.false_per_week, 3)
        points.append(p)
    return TuneResult(loaded.rule.id, param, points, max_alerts_per_week, recommend(points, max_alerts_per_week))


def recommend(points: list[TunePoint], max_alerts_per_week: float):
    loosest_first = sorted(points, key=lambda p: -p.alerts_per_week)
    must_catch = set(loosest_first[0].caught) if loosest_first else set()
    for p in loosest_first:
        if p.alerts_per_week <= max_alerts_per_week and must_catch <= set(p.caught):
            return p.value
    return None


def render(result: TuneResult) -> str:
    from threshold_operators.analysis.scoring import format_delay

    lines = [f"{result.rule_id}: sweeping {result.param} (budget {result.max_alerts_per_week:g} alerts a week)",
             f"{'value':>12} {'alerts/wk':>9} {'alerts':>6} {'caught':>7} {'missed':<30} {'false/wk':>8} {'delay':>8}"]
    for p in result.points:
        mark = "  <- recommended" if p.value == result.recommended else ""
        caught = f"{len(p.caught)}" if p.false_per_week is not None else "-"
        false = f"{p.false_per_week:.2f}" if p.false_per_week is not None else "-"
        delay = format_delay(None if p.median_delay_h is None else timedelta(hours=p.median_delay_h))
        lines.append(f"{str(p.value):>12} {p.alerts_per_week:>9.2f} {p.alerts:>6} {caught:>7} "
                     f"{', '.join(p.missed)[:30]:<30} {false:>8} {delay:>8}{mark}")
    if result.recommended is None:
        lines.append("No value keeps within the budget without missing an incident: widen the sweep.")
    return "\n".join(lines)
