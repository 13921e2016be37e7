"""How soon a rule raises its alert for a labelled incident: its live cycles replayed.

``first_alert(catalogue, query, rule_id, incident)`` replays the rule's cycles as the check task
runs them (windows of the rule's ``every``: an hour, or 5 minutes; each resuming from what the
one before left pending or firing) from a few hours before the incident to two days after its
end, and returns the end of the first cycle in which the rule fires on the incident's entity:
the data time at which the alert is raised (scheduling and delivery come on top). Used by
``bench/detection_delay.py`` and the catalogue's tests, which hold each rule to the delay
docs/rules.md states for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

LEAD = timedelta(hours=6)
TAIL = timedelta(days=2)
SEVERITIES = ("blue", "yellow", "red")


@dataclass
class Detection:
    rule_id: str
    incident: str
    fired: bool
    delay: timedelta | None = None  # data time from the incident's start to the end of the first firing cycle
    severity: str | None = None  # the worst severity on the incident's entity in that cycle
    every: timedelta | None = None
    cycles: int = 0

    def describe(self) -> str:
        if not self.fired:
            return "did not fire"
        minutes = self.delay / timedelta(minutes=1)
        when = f"+{minutes:.0f} min" if minutes < 120 else f"+{minutes / 60:.1f} h"
        return f"{when} ({self.severity}, every {self.every / timedelta(minutes=1):.0f} min)"


def incident_entities(incident: dict) -> set[str]:
    """The key values an alert on the incident carries (its SKUs, batch, gateway, channel, ...)."""
    return {str(x) for x in (incident.get("skus") or [])} | {str(incident.get("entity"))}


def first_alert(catalogue, query, rule_id: str, incident: dict, lead: timedelta = LEAD,
                tail: timedelta = TAIL) -> Detection:
    from threshold_operators.engine.compile import compile_rule
    from threshold_operators.engine.evaluate import evaluate_cycles
    from threshold_operators.warehouse.schema import as_utc

    rule = catalogue.get(rule_id).rule
    start, end = as_utc(incident["start"]), as_utc(incident["end"])
    step = rule.every
    t = start - lead
    t = t.replace(minute=(t.minute // 5) * 5 if step < timedelta(hours=1) else 0, second=0, microsecond=0)
    windows = []
    while t < end + tail:
        windows.append((t, t + step))
        t += step
    wanted, shop = incident_entities(incident), incident.get("shop_id")
    compiled = compile_rule(catalogue.get(rule_id), catalogue.get, source="query")
    for ev in evaluate_cycles(compiled, query, windows):
        hits = [r for r in ev.firing if set(map(str, r.entity.values())) & wanted
                and (shop is None or str(r.entity.get("shop_id", shop)) == str(shop))]
        if hits and ev.window_end > start:
            worst = max((r.severity for r in hits), key=SEVERITIES.index)
            return Detection(rule_id, incident["id"], True, ev.window_end - start, worst, step, len(windows))
    return Detection(rule_id, incident["id"], False, every=step, cycles=len(windows))
