"""Score rules against labelled incidents (the simulator's labels format, ``docs/simulator.md``).

For each rule, from its backtest episodes:

- **caught**: a labelled incident that names the rule in ``expect`` and that an episode of the
  rule touched: the incident's entity (the SKU, every SKU of a brand, the batch, gateway, channel,
  warehouse or shop), overlapping the incident from its start to its end plus one bucket (of a
  rolling rule, its window: the windows that still hold some of the incident) and two hours (a
  day-grain rule sees a day once it is complete);
- **missed**: an expected incident no episode touched;
- **detection delay**: from the incident's start to the end of the first alerting bucket (when the
  data that shows it is complete: the end of the hour, of the day, or of the 5-minute slice that
  closes a rolling rule's window), exact to the second (``detection_delay_minutes``; the hours
  rounded to 0.0001); it is **on time** when that is at most one bucket and one evaluation
  interval (the bucket the incident began in must complete, then one cycle: 2 hours for an
  hourly rule, 25 hours for a daily one, 10 minutes for a current state every 5 minutes); for a
  rolling rule one window and one interval (the window must fill with the incident, then one
  cycle: 65 minutes for a 1-hour window evaluated every 5 minutes);
- **false alerts**: episodes that touch no labelled incident of that entity at all (an episode
  caused by an incident labelled for another rule is not false: something did happen), per week;
  episodes during a labelled *planned* event (a sale like Singles' Day, ``planned_events``) are
  counted apart as ``planned``: expected, and what silences and maintenance windows are for.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

SLACK = timedelta(hours=2)
ENTITY_COLUMN = {"sku": "sku", "batch": "batch_id", "gateway": "gateway", "channel": "channel",
                 "warehouse": "warehouse_id", "shop": "shop_id"}


class LabelsError(ValueError):
    pass


def load_labels(path) -> dict:
    from pathlib import Path

    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise LabelsError(f"{path}: cannot read the labels file ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("incidents"), list):
        raise LabelsError(f"{path}: not a labels file (no incidents list; storefence simulate --labels-out writes one)")
    for i, inc in enumerate(doc["incidents"]):
        for key in ("id", "start", "end", "entity_type", "shop_id"):
            if key not in inc:
                raise LabelsError(f"{path}: incidents.{i}: no {key}")
    return doc


def _ts(v) -> datetime:
    t = v if isinstance(v, datetime) else datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def touches(inc: dict, entity: dict) -> bool:
    """Does an alert on ``entity`` concern the incident's entity?"""
    if str(entity.get("shop_id")) != str(inc["shop_id"]):
        return False
    kind = inc["entity_type"]
    if kind == "brand":
        return str(entity.get("sku")) in set(map(str, inc.get("skus") or []))
    column = ENTITY_COLUMN.get(kind)
    if column is None or column not in entity:
        return kind == "shop"
    return str(entity[column]) == str(inc["entity"])


def _window(inc: dict, rule) -> tuple[datetime, datetime]:
    """When an episode of ``rule`` may be the incident's: from one bucket before its start to one
    bucket, the rule's reach back (a rolling window still holding the incident's last slice) and
    the slack after its end."""
    from threshold_operators.engine.windows import reach_back

    return _ts(inc["start"]) - rule.grain_delta, _ts(inc["end"]) + rule.grain_delta + reach_back(rule) + SLACK


def _overlaps(ep, a: datetime, b: datetime, until: datetime) -> bool:
    return ep.start < b and (ep.end or until) > a


def on_time_within(rule) -> timedelta:
    """The longest on-time detection delay: the bucket (a rolling rule: its window) the incident
    began in must complete, then one evaluation interval."""
    return (rule.window if rule.rolling else rule.grain_delta) + rule.every


@dataclass
class RuleScore:
    rule_id: str
    mode: str
    expected: list[str] = field(default_factory=list)
    caught: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    delays: dict[str, timedelta] = field(default_factory=dict)  # incident -> from its start to the evidence
    on_time: dict[str, bool] = field(default_factory=dict)
    alerts: int = 0
    false_alerts: int = 0
    planned: int = 0
    weeks: float = 0.0

    @property
    def false_per_week(self) -> float:
        return self.false_alerts / self.weeks if self.weeks else 0.0

    @property
    def delays_h(self) -> dict[str, float]:
        return {k: round(d / timedelta(hours=1), 4) for k, d in self.delays.items()}

    @property
    def median_delay(self) -> timedelta | None:
        return statistics.median(sorted(self.delays.values())) if self.delays else None

    @property
    def median_delay_h(self) -> float | None:
        m = self.median_delay
        return None if m is None else round(m / timedelta(hours=1), 4)

    def as_json(self) -> dict:
        return {"rule": self.rule_id, "mode": self.mode, "expected": self.expected, "caught": self.caught,
                "missed": self.missed, "detection_delay_hours": self.delays_h,
                "detection_delay_minutes": {k: round(d / timedelta(minutes=1), 2) for k, d in self.delays.items()},
                "on_time": self.on_time,
                "median_delay_hours": self.median_delay_h, "alerts": self.alerts, "false_alerts": self.false_alerts,
                "false_alerts_per_week": round(self.false_per_week, 3), "planned_event_alerts": self.planned,
                "weeks": round(self.weeks, 3)}


def score(rule, episodes, labels: dict, start: datetime, end: datetime) -> RuleScore:
    incidents = [i for i in labels["incidents"] if _ts(i["start"]) < end and _ts(i["end"]) + SLACK > start]
    s = RuleScore(rule.id, rule.mode, alerts=len(episodes), weeks=(end - start) / timedelta(days=7))
    for inc in incidents:
        if rule.id not in (inc.get("expect") or []):
            continue
        s.expected.append(inc["id"])
        a, b = _window(inc, rule)
        hits = [e for e in episodes if touches(inc, e.entity) and _overlaps(e, a, b, end)]
        if not hits:
            s.missed.append(inc["id"])
            continue
        s.caught.append(inc["id"])
        first = min(e.start for e in hits)
        seen = first + rule.grain_delta  # the end of the first alerting bucket: its data is complete
        s.delays[inc["id"]] = seen - _ts(inc["start"])
        s.on_time[inc["id"]] = s.delays[inc["id"]] <= on_time_within(rule)
    planned = [(_ts(p["start"]), _ts(p["end"])) for p in labels.get("planned_events") or []]
    for e in episodes:
        related = any(touches(inc, e.entity) and _overlaps(e, *_window(inc, rule), end) for inc in incidents)
        if related:
            continue
        if any(_overlaps(e, a - rule.grain_delta, b + SLACK, end) for a, b in planned):
            s.planned += 1
        else:
            s.false_alerts += 1
    return s


def incident_free_weeks(labels: dict, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Monday-to-Monday weeks of ``[start, end)`` that no incident and no planned event touches."""
    t = (start + timedelta(days=(7 - start.weekday()) % 7)).replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    while t + timedelta(days=7) <= end:
        w = (t, t + timedelta(days=7))
        events = [*labels["incidents"], *(labels.get("planned_events") or [])]
        if not any(_ts(i["start"]) < w[1] + timedelta(days=1) and _ts(i["end"]) + timedelta(days=1) > w[0]
                   for i in events):
            out.append(w)
        t += timedelta(days=7)
    return out


def render_scores(scores: list[RuleScore], quiet_rates: dict[str, float] | None = None) -> str:
    lines = [f"{'rule':<32} {'mode':<6} {'caught':>7} {'missed':<28} {'false/wk':>8} {'quiet wk':>8} "
             f"{'planned':>7} {'median delay':>12}  on time"]
    for s in scores:
        caught = f"{len(s.caught)}/{len(s.expected)}" if s.expected else "-"
        delay = format_delay(s.median_delay)
        quiet = f"{quiet_rates[s.rule_id]:.2f}" if quiet_rates and s.rule_id in quiet_rates else "-"
        on_time = f"{sum(s.on_time.values())}/{len(s.on_time)}" if s.on_time else "-"
        lines.append(f"{s.rule_id:<32} {s.mode:<6} {caught:>7} {', '.join(s.missed)[:28]:<28} "
                     f"{s.false_per_week:>8.2f} {quiet:>8} {s.planned:>7} {delay:>12}  {on_time}")
    return "\n".join(lines)


def format_delay(d: timedelta | None) -> str:
    """A detection delay as people read it: minutes under two hours (5-minute rules), else hours."""
    if d is None:
        return "-"
    if abs(d) < timedelta(hours=2):
        return f"{d / timedelta(minutes=1):.0f} min"
    return f"{d / timedelta(hours=1):.1f} h"
