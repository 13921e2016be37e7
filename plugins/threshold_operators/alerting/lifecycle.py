"""An alert's life, as one pure transition function with the clock passed in.

An alert is one rule breaching for one entity, keyed by its fingerprint (rule, entity). The rule
engine observes entities bucket by bucket (pending, firing, resolved: ``engine.states``); this
module turns those observations into the alert people deal with:

    (none) --pending--> PENDING --firing--> FIRING --resolved--> RESOLVED
                                               |  ^
                                     ack       v  | worse (severity up)
                                           ACKNOWLEDGED --resolved--> RESOLVED

plus SILENCED, set and lifted by silences (the mute stage). Each transition says what happened
(``Event``): the delivery pipeline notifies on FIRED, WORSENED and RESOLVED, never on a repeat of
what it already knows. Observations are taken in data time: one older than what the alert has
seen (a backfill, a retried task) changes nothing, so re-running a window never fires twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from hashlib import sha256

SEVERITY_ORDER = {"blue": 1, "yellow": 2, "red": 3}


class AlertStatus(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    SILENCED = "silenced"
    RESOLVED = "resolved"


class Event(StrEnum):
    NONE = "none"  # nothing new to tell anyone
    OPENED = "opened"  # pending: breaching, not yet for long enough
    FIRED = "fired"
    WORSENED = "worsened"  # a higher severity while firing or acknowledged
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"
    DROPPED = "dropped"  # a pending alert that never fired


def fingerprint(rule_id: str, entity_key: str) -> str:
    return sha256(f"{rule_id}\x1f{entity_key}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Observation:
    """What one evaluation said of one entity at its latest bucket."""

    rule_id: str
    entity_key: str
    state: str  # pending, firing, resolved (engine.states.State)
    severity: str | None
    bucket: datetime  # data time
    window_end: datetime
    detail: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Alert:
    fingerprint: str
    rule_id: str
    entity_key: str
    status: AlertStatus
    severity: str | None
    first_bucket: datetime  # data time the breach began
    last_bucket: datetime  # latest data time observed
    opened_at: datetime  # wall clock
    updated_at: datetime
    escalation_level: int = 0  # 0: nobody told yet; 1 executor, 2 supervisor, 3 director
    escalated_at: datetime | None = None  # when the current level was told
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    detail: dict = field(default_factory=dict, compare=False)
    notified_at: datetime | None = None  # when people were last told of it
    muted: str | None = None  # why it is held back, while it is
    version: int = field(default=0, compare=False)  # the stored row's version when read (0: not stored)

    @property
    def active(self) -> bool:
        return self.status in (AlertStatus.FIRING, AlertStatus.ACKNOWLEDGED, AlertStatus.SILENCED)


@dataclass(frozen=True)
class Transition:
    alert: Alert | None
    event: Event


def _worse(new: str | None, old: str | None) -> bool:
    return SEVERITY_ORDER.get(new or "", 0) > SEVERITY_ORDER.get(old or "", 0)


def transition(alert: Alert | None, obs: Observation, now: datetime) -> Transition:
    """The alert after ``obs`` (pure: the clock is ``now``, nothing is read or written)."""
    if alert is not None and (obs.bucket < alert.last_bucket
                              or (obs.state == "resolved" and obs.bucket <= alert.last_bucket)):
        return Transition(alert, Event.NONE)  # older data (backfill, retry): already accounted for
    if alert is None or alert.status == AlertStatus.RESOLVED:
        if obs.state == "resolved":
            return Transition(alert, Event.NONE)
        status = AlertStatus.FIRING if obs.state == "firing" else AlertStatus.PENDING
        new = Alert(fingerprint(obs.rule_id, obs.entity_key), obs.rule_id, obs.entity_key, status, obs.severity,
                    obs.bucket, obs.bucket, now, now, detail=obs.detail,
                    version=alert.version if alert is not None else 0)  # a firing again replaces the stored row
        return Transition(new, Event.FIRED if status == AlertStatus.FIRING else Event.OPENED)
    seen = replace(alert, last_bucket=obs.bucket, updated_at=now, detail=obs.detail or alert.detail)
    if obs.state == "resolved":
        if alert.status == AlertStatus.PENDING:
            return Transition(replace(seen, status=AlertStatus.RESOLVED, resolved_at=now), Event.DROPPED)
        return Transition(replace(seen, status=AlertStatus.RESOLVED, resolved_at=now), Event.RESOLVED)
    if obs.state == "pending":
        if alert.status == AlertStatus.PENDING:
            return Transition(replace(seen, severity=obs.severity), Event.NONE)
        return Transition(seen, Event.NONE)  # firing alerts are not demoted by a pending bucket
    # firing
    if alert.status == AlertStatus.PENDING:
        return Transition(replace(seen, status=AlertStatus.FIRING, severity=obs.severity), Event.FIRED)
    if _worse(obs.severity, alert.severity):
        status = AlertStatus.SILENCED if alert.status == AlertStatus.SILENCED else AlertStatus.FIRING
        return Transition(replace(seen, status=status, severity=obs.severity, acknowledged_by=None,
                                  acknowledged_at=None), Event.WORSENED)
    return Transition(replace(seen, severity=alert.severity), Event.NONE)


def acknowledge(alert: Alert, who: str, now: datetime) -> Transition:
    """Someone took the alert: escalation stops until it gets worse."""
    if alert.status not in (AlertStatus.FIRING, AlertStatus.SILENCED):
        return Transition(alert, Event.NONE)
    return Transition(replace(alert, status=AlertStatus.ACKNOWLEDGED, acknowledged_by=who, acknowledged_at=now,
                              updated_at=now), Event.ACKNOWLEDGED)


def escalate(alert: Alert, level: int, now: datetime) -> Alert:
    """The alert as notified at ``level`` (never lowered; the clock restarts when the level rises)."""
    if level <= alert.escalation_level:
        return alert
    return replace(alert, escalation_level=level, escalated_at=now, updated_at=now)


def next_escalation(alert: Alert, sla, now: datetime, top: int = 3) -> int | None:
    """The level to tell now, if the alert has waited unacknowledged longer than ``sla`` at its
    current level (None: nothing to do). Acknowledged, silenced, resolved alerts never escalate."""
    if alert.status != AlertStatus.FIRING or not 0 < alert.escalation_level < top:
        return None
    since = alert.escalated_at or alert.opened_at
    return alert.escalation_level + 1 if now - since >= sla else None


def notification_key(alert: Alert, event: Event, level: int, window_end: datetime) -> str:
    """The idempotency key of a notification: the same alert, event, level and data window are
    told once, however many times the task that decides it runs."""
    return sha256(f"{alert.fingerprint}|{event}|{level}|{window_end.isoformat()}".encode()).hexdigest()[:32]
