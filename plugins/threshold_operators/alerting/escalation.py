"""The escalation cycle: what happens to alerts while no new data arrives.

``run_cycle`` is what the ``storefence_escalation`` DAG does every few minutes, in this order:

1. **release**: an alert held back by a silence, or by a red or compound alert, whose mute has
   ended is told now (if it still fires). Alerts held back by a failing data gate are released by
   their rule's next evaluation, which sees the gate;
   **tell the untold**: a firing, unmuted alert nobody was told of (``notified_at`` unset) is
   queued now, once (``tell_untold``);
2. **escalate**: a firing alert nobody acknowledged within its SLA (the rule's own in
   ``routing.yaml`` escalation.rules, or the default) is told to the next level: executor (1),
   supervisor (2), director (3). Acknowledging (CLI, API, signed link) stops the ladder until the
   alert gets worse;
3. **repeat**: a firing, unacknowledged alert is told again every ``repeat`` (the rule's
   ``notify.repeat``, or ``escalation.repeat``) at its current level. A failing data gate
   (``alerting.data_gates``, rule ``quality.<table>.<kind>``) is repeated to the data engineers
   this way, never escalated up the ladder;
4. **deliver**: the outbox (``alerting.delivery``), with retries and fallbacks.

Steps 1-3 group like the notify task: one message per rule, level and severity, whatever the
number of entities. Each message and the alerts' new level are written in one transaction, the
alerts by compare-and-set (a version), so running the cycle again (a retry, two schedulers) never
repeats a step, and an acknowledgement made while the cycle runs is never overwritten: the cycle
re-reads the alert and decides again (an acknowledged alert is not escalated). Quiet hours defer
non-red messages to the morning. Pass ``now``; nothing here reads a clock.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from threshold_operators.alerting import faults
from threshold_operators.alerting.data_gates import is_gate, table_of
from threshold_operators.alerting.lifecycle import (
    Alert,
    AlertStatus,
    Event,
    acknowledge,
    escalate,
    fingerprint,
    next_escalation,
)
from threshold_operators.alerting.pipeline import (
    QueueReport,
    _key,
    enqueue_message,
    links_for,
    list_url_for,
    mute_stage,
)


@dataclass
class CycleReport:
    released: list[str] = field(default_factory=list)  # fingerprints
    escalated: list[tuple[str, int]] = field(default_factory=list)  # (fingerprint, new level)
    repeated: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)  # firing alerts nobody was told of, told now
    queued: int = 0
    delivery: object | None = None

    def summary(self) -> str:
        d = self.delivery
        sent = f"; delivered {len(d.sent)}, retrying {len(d.retrying)}, failed {len(d.failed)}, " \
               f"held back {d.held_back}, throttled {d.throttled}" if d is not None else ""
        return (f"released {len(self.released)}, re-queued {len(self.requeued)}, escalated {len(self.escalated)}, "
                f"repeated {len(self.repeated)}, queued {self.queued}{sent}")


def _components(rules) -> dict[str, list[str]]:
    return {r.id: list(r.references) for r in rules.values() if r.references}


def _tell(store, routing, rule, event: str, level: int, alerts: list[Alert], now: datetime, report: CycleReport,
          stage, update, still, attempts: int = 5) -> list[Alert]:
    """One grouped message for ``alerts`` of ``rule`` at ``level``, and each alert's new state
    (``update``), in one transaction, the alerts by compare-and-set. When one changed since it
    was read (acknowledged, told by a late notify task), the group is re-read and re-decided:
    only the alerts for which ``still(alert)`` holds are told. Returns the alerts told."""
    from threshold_operators.alerting.store import StaleAlerts

    for _ in range(attempts):
        if not alerts:
            return []
        q = QueueReport()
        text, key, data, defer = _message(routing, rule, event, level, alerts, now, stage)
        rule_id = alerts[0].rule_id
        faults.point("cycle.decided")
        try:
            with store.transaction() as con:
                enqueue_message(store, routing, routing.team_of(rule.owner if rule else None), level, text, key,
                                fingerprint(rule_id, f"({event}:L{level})"), event, now, q, not_before=defer,
                                con=con, data=data)
                faults.point("cycle.told")
                store.cas_many([update(a) for a in alerts], con)
        except StaleAlerts:
            fresh = store.get_many([a.fingerprint for a in alerts])
            alerts = [fresh[a.fingerprint] for a in alerts if a.fingerprint in fresh and still(fresh[a.fingerprint])]
            continue
        report.queued += q.queued
        return alerts
    raise RuntimeError(f"{rule_id}: alerts kept changing while being told ({attempts} attempts)")


def data_window(alerts: list[Alert], rule=None) -> tuple[str, str]:
    """The data window a message about ``alerts`` shows: from the earliest to the latest end of the
    windows of the evaluations that fired them (``detail["fired_window"]``). An alert stored
    before that was recorded: its first bucket to the end of its last (a bucket is the rule's
    grain long), never a zero-length window. Pure."""
    starts, ends = [], []
    for a in alerts:
        fired = (a.detail or {}).get("fired_window")
        if fired and fired[1]:
            starts.append(datetime.fromisoformat(fired[0]) if fired[0] else a.first_bucket)
            ends.append(datetime.fromisoformat(fired[1]))
        else:
            starts.append(a.first_bucket)
            ends.append(a.last_bucket + (timedelta(days=1) if getattr(rule, "grain", "hour") == "day"
                                         else timedelta(hours=1)))
    return min(starts).isoformat(), max(ends).isoformat()


def _message(routing, rule, event: str, level: int, alerts: list[Alert], now: datetime, stage):
    """The text, idempotency key, data and deferral of the message telling ``alerts``."""
    from threshold_operators.alerting import messages

    team = routing.team_of(rule.owner if rule else None)
    severity = max((a.severity for a in alerts), key=lambda s: {"blue": 1, "yellow": 2, "red": 3}.get(s or "", 0))
    defer = None
    for a in alerts:
        m = stage.check(a, team, now)
        if m is not None and m.until:
            defer = max(defer or m.until, m.until)
    people = [p.name for p in routing.recipients(team, level)]
    breaches = messages.top_first(rule, [{**(a.detail or {}), "entity_key": a.entity_key, "severity": a.severity,
                                          "fingerprint": a.fingerprint} for a in alerts])
    first = {b["fingerprint"] for b in breaches[:messages.TOP]}
    alerts = sorted(alerts, key=lambda a: a.fingerprint not in first)  # the top ones get the links
    window = data_window(alerts, rule)
    if rule is not None:
        waiting = now - min(a.opened_at for a in alerts) if event in ("escalated", "repeat") else None
        text = messages.alert_message(rule, event, severity, breaches, window, level, people,
                                      links_for(alerts[:messages.TOP], level, now), tz=routing.timezone,
                                      unacknowledged=waiting, list_url=list_url_for(rule.id))
    elif is_gate(alerts[0].rule_id):  # a failing data gate, still failing
        gate = alerts[0].detail or {}
        text = messages.data_gate_message(table_of(alerts[0]), {"kind": gate.get("kind", "?"), **gate},
                                          gate.get("held", []), gate.get("incomplete", []), event=event)
    else:  # an alert of a rule no longer in the catalogue: still escalated, plainly
        text = messages.Text(f"[{event}] {alerts[0].rule_id}", f"【{event}】{alerts[0].rule_id}: {len(alerts)}",
                             f"[{event}] {alerts[0].rule_id}", f"[{event}] {alerts[0].rule_id}: {len(alerts)}", severity)
    rule_id = alerts[0].rule_id
    key = _key(rule_id, event, level, severity, *sorted(f"{a.fingerprint}@{a.escalated_at}@{a.notified_at}"
                                                        for a in alerts))
    data = {"rule_id": rule_id, "event": event, "severity": severity, "level": level,
            "entities": [a.entity_key for a in alerts], "fingerprints": [a.fingerprint for a in alerts]}
    return text, key, data, defer


def _set(store, alert: Alert, update, still, attempts: int = 5) -> Alert | None:
    """Write ``update(alert)`` by compare-and-set; re-read and re-decide (``still``) when it changed
    meanwhile. The alert written, or None when it no longer needs it."""
    from threshold_operators.alerting.store import StaleAlerts

    for _ in range(attempts):
        if alert is None or not still(alert):
            return None
        new = update(alert)
        try:
            with store.transaction() as con:
                store.cas_many([new], con)
            return new
        except StaleAlerts:
            alert = store.get(alert.fingerprint)
    raise RuntimeError(f"alert {alert.fingerprint} kept changing ({attempts} attempts)")


def _releasable(a: Alert, stage, routing, rules, now: datetime) -> bool:
    if a.status != AlertStatus.SILENCED or (a.muted or "").startswith("inhibited: the data"):
        return False
    mute = stage.check(a, routing.team_of(rules[a.rule_id].owner) if a.rule_id in rules else None, now)
    return mute is None or mute.until is not None


def release_mutes(store, routing, rules, now: datetime, report: CycleReport, stage=None, active=None) -> None:
    report, active, stage = _sweep(store, routing, rules, now, report, stage, active)
    groups: dict[tuple[str, int], list[Alert]] = defaultdict(list)
    for a in active:
        if not _releasable(a, stage, routing, rules, now):
            continue
        if a.notified_at is not None:  # told before the silence: back to firing, its ladder resumes
            done = _set(store, a, lambda x: replace(x, status=AlertStatus.FIRING, muted=None, updated_at=now),
                        lambda x: _releasable(x, stage, routing, rules, now) and x.notified_at is not None)
            if done is not None:
                report.released.append(a.fingerprint)
            continue
        level = routing.start_level(a.severity, a.rule_id)
        groups[(a.rule_id, level)].append(a)
    for (rule_id, level), alerts in sorted(groups.items()):
        told = _tell(store, routing, rules.get(rule_id), "fired", level, alerts, now, report, stage,
                     lambda a, lv=level: replace(escalate(a, lv, now), status=AlertStatus.FIRING, muted=None,
                                                 notified_at=now),
                     lambda a, lv=level: _releasable(a, stage, routing, rules, now) and a.notified_at is None
                     and routing.start_level(a.severity, a.rule_id) == lv)
        report.released += [a.fingerprint for a in told]


def _untold(a: Alert) -> bool:
    return a.status == AlertStatus.FIRING and a.notified_at is None and not a.muted


def tell_untold(store, routing, rules, now: datetime, report: CycleReport | None = None, stage=None,
                active=None) -> CycleReport:
    """Queue the first message of every firing, unmuted alert nobody was told of (``notified_at``
    unset: its notify stage failed before it queued anything, in a store older than the one
    transaction of record and enqueue). Compare-and-set: a late notify task that tells it first
    wins, and this step then tells nothing."""
    report, active, stage = _sweep(store, routing, rules, now, report, stage, active)
    groups: dict[tuple[str, int], list[Alert]] = defaultdict(list)
    for a in active:
        if _untold(a):
            groups[(a.rule_id, routing.start_level(a.severity, a.rule_id))].append(a)
    for (rule_id, level), alerts in sorted(groups.items()):
        told = _tell(store, routing, rules.get(rule_id), "fired", level, alerts, now, report, stage,
                     lambda a, lv=level: replace(escalate(a, lv, now), notified_at=now),
                     lambda a, lv=level: _untold(a) and routing.start_level(a.severity, a.rule_id) == lv)
        report.requeued += [a.fingerprint for a in told]
    return report


def _sweep(store, routing, rules, now, report, stage, active):
    """What a step of the cycle starts from: its report, the active alerts, the mute stage."""
    active = store.list(active_only=True) if active is None else active
    stage = stage or mute_stage(store, routing, now, components=_components(rules), active=active)
    return report or CycleReport(), active, stage


def escalate_due(store, routing, rules, now: datetime, report: CycleReport | None = None, stage=None,
                 active=None) -> CycleReport:
    """Tell the next level of every firing alert whose SLA ran out, up to its severity's ceiling
    (``Routing.ceiling``: a blue alert stays with the people who act). ``rules``: rule id -> Rule."""
    report, active, stage = _sweep(store, routing, rules, now, report, stage, active)

    def due(a: Alert) -> int | None:  # by time, up to its severity's ceiling
        if is_gate(a.rule_id):
            return None
        return next_escalation(a, routing.sla_of(a.rule_id), now, top=routing.ceiling(a.severity, a.rule_id))

    groups: dict[tuple[str, int, str], list[Alert]] = defaultdict(list)
    for a in active:  # one message per rule, level and severity: it lists exactly what it escalates
        level = due(a)
        if level is not None:
            groups[(a.rule_id, level, a.severity or "")].append(a)
    for (rule_id, level, severity), alerts in sorted(groups.items()):
        told = _tell(store, routing, rules.get(rule_id), "escalated", level, alerts, now, report, stage,
                     lambda a, lv=level: replace(escalate(a, lv, now), notified_at=now),
                     lambda a, lv=level, sev=severity: due(a) == lv and (a.severity or "") == sev)
        report.escalated += [(a.fingerprint, level) for a in told]
    return report


def _repeat_level(a: Alert, rules, routing, now: datetime) -> int | None:
    if a.status != AlertStatus.FIRING or a.notified_at is None:
        return None
    rule = rules.get(a.rule_id)
    every = (rule.notify.repeat if rule is not None and rule.notify.repeat else None) or routing.escalation.repeat
    return (a.escalation_level or 1) if now - a.notified_at >= every else None


def repeat_due(store, routing, rules, now: datetime, report: CycleReport | None = None, stage=None,
               active=None) -> CycleReport:
    """Tell again, at its level, every firing alert nobody acknowledged for the repeat interval."""
    report, active, stage = _sweep(store, routing, rules, now, report, stage, active)
    groups: dict[tuple[str, int, str], list[Alert]] = defaultdict(list)
    for a in active:  # one message per rule, level and severity, as the escalations
        level = _repeat_level(a, rules, routing, now)
        if level is not None:
            groups[(a.rule_id, level, a.severity or "")].append(a)
    for (rule_id, level, severity), alerts in sorted(groups.items()):
        told = _tell(store, routing, rules.get(rule_id), "repeat", level, alerts, now, report, stage,
                     lambda a: replace(a, notified_at=now, updated_at=now),
                     lambda a, lv=level, sev=severity: _repeat_level(a, rules, routing, now) == lv
                     and (a.severity or "") == sev)
        report.repeated += [a.fingerprint for a in told]
    return report


def run_cycle(store, routing, rules, now: datetime, *, senders=None, policy=None, log=None,
              clock=None) -> CycleReport:
    """Release, tell the untold, escalate, repeat, deliver: one pass of the ``storefence_escalation``
    DAG. ``now``: the time the cycle decides at; ``clock``: delivery's clock (default: ``now``
    pinned; the DAG passes the real one). ``senders``: route -> sender (default: built from the
    Airflow connections)."""
    from threshold_operators.alerting.delivery import RetryPolicy, deliver

    report = CycleReport()
    active = store.list(active_only=True)
    stage = mute_stage(store, routing, now, components=_components(rules), active=active)
    release_mutes(store, routing, rules, now, report, stage, active)
    if report.released:
        active = store.list(active_only=True)
    tell_untold(store, routing, rules, now, report, stage, active)
    if report.requeued:
        active = store.list(active_only=True)
    escalate_due(store, routing, rules, now, report, stage, active)
    if report.escalated:
        active = store.list(active_only=True)
    repeat_due(store, routing, rules, now, report, stage, active)
    report.delivery = deliver(store, routing, None if clock else now, clock=clock, rules=list(rules.values()),
                              senders=senders, policy=policy or RetryPolicy(), log=log)
    return report


def acknowledge_alert(store, prefix: str, who: str, now: datetime) -> Alert:
    """Acknowledge by fingerprint (or an unambiguous prefix); raises LookupError otherwise. Written
    by compare-and-set: an acknowledgement racing the cycle or a notify task is re-applied on the
    alert's newest state, never lost."""
    alert = store.find(prefix)
    if alert is None:
        raise LookupError(f"no single alert has a fingerprint starting with {prefix!r}")
    done = _set(store, alert, lambda a: acknowledge(a, who, now).alert,
                lambda a: acknowledge(a, who, now).event == Event.ACKNOWLEDGED)
    return done if done is not None else store.get(alert.fingerprint)


def apply_silence(store, silence, now: datetime) -> list[Alert]:
    """Hold back at once the firing alerts an active ``silence`` matches (status ``silenced``, with
    its reason), as the next notify task or cycle would: a silence made from the alerts page shows
    its alerts silenced right away, and nothing is told of them meanwhile. Compare-and-set, as an
    acknowledgement. The silence's end is the cycle's to apply (``release_mutes``)."""
    from threshold_operators.alerting.mute import Silences

    if not silence.active(now):
        return []
    muter = Silences((silence,))

    def still(a: Alert) -> bool:
        return a.status == AlertStatus.FIRING and muter.mutes(a, None, now) is not None

    done = []
    for a in store.list(active_only=True):
        if still(a):
            new = _set(store, a, lambda x: replace(x, status=AlertStatus.SILENCED, updated_at=now,
                                                   muted=muter.mutes(x, None, now).reason), still)
            if new is not None:
                done.append(new)
    return done
