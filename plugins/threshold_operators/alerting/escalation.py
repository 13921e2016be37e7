"""Escalation: an alert nobody acknowledged within its SLA is told to the next level.

Level 1 is the executor (the person on duty), 2 the supervisor, 3 the director (``routing.yaml``).
The SLA is the rule's own (``escalation.rules``, e.g. a negative review: 2 hours) or the default;
acknowledging (``storefence ack``) stops the ladder until the alert gets worse. Each step is one
outbox notification under the key (alert, "escalated", level): run it as often as you like, every
step is told once. Pass ``now``; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from threshold_operators.alerting.lifecycle import (
    Alert,
    acknowledge,
    escalate,
    next_escalation,
    notification_key,
)


@dataclass
class EscalationReport:
    escalated: list[tuple[str, int]] = field(default_factory=list)  # (fingerprint, new level)
    queued: int = 0


def escalate_due(store, routing, owners: dict[str, str], names: dict[str, str], now: datetime) -> EscalationReport:
    """Tell the next level of every firing alert whose SLA ran out. ``owners``: rule id -> team;
    ``names``: rule id -> display name."""
    report = EscalationReport()
    for alert in store.list(active_only=True):
        level = next_escalation(alert, routing.sla_of(alert.rule_id), now)
        if level is None:
            continue
        team = owners.get(alert.rule_id, "data_engineering")
        team = team if team in routing.teams else "data_engineering"
        people = routing.recipients(team, level)
        waited = int((now - (alert.escalated_at or alert.opened_at)).total_seconds() // 60)
        title = f"[升级 L{level}] {names.get(alert.rule_id, alert.rule_id)}"
        text = (f"【升级至第 {level} 级 / escalated to level {level}】{names.get(alert.rule_id, alert.rule_id)}\n"
                f"{alert.entity_key}: {alert.severity}, 已 {waited} 分钟无人确认 / unacknowledged for {waited} min.\n"
                f"确认 / acknowledge: `storefence ack {alert.fingerprint[:10]}`\n"
                f"通知 / To: {', '.join(p.name for p in people)} (L{level})")
        key = notification_key(alert, "escalated", level, alert.last_bucket)  # type: ignore[arg-type]
        for channel in routing.channels_for(team, alert.severity):
            if store.enqueue(key=f"{key}:{channel}", fingerprint=alert.fingerprint, event="escalated", level=level,
                             route=channel, payload={"title": title, "text": text,
                                                     "mentions": [p.mobile for p in people if p.mobile],
                                                     "data": {"fingerprint": alert.fingerprint, "level": level}},
                             now=now):
                report.queued += 1
        store.save(escalate(alert, level, now))
        report.escalated.append((alert.fingerprint, level))
    return report


def acknowledge_alert(store, prefix: str, who: str, now: datetime) -> Alert:
    """Acknowledge by fingerprint (or an unambiguous prefix); raises LookupError otherwise."""
    alert = store.find(prefix)
    if alert is None:
        raise LookupError(f"no single alert has a fingerprint starting with {prefix!r}")
    t = acknowledge(alert, who, now)
    store.save(t.alert)
    return t.alert
