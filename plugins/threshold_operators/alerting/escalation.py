"""The escalation cycle: what happens to alerts while no new data arrives.

``run_cycle`` is what the ``storefence_escalation`` DAG does every few minutes, in this order:

1. **release**: an alert held back by a silence, or by a red or compound alert, whose mute has
   ended is told now (if it still fires). Alerts held back by a failing data gate are released by
   their rule's next evaluation, which sees the gate;
2. **escalate**: a firing alert nobody acknowledged within its SLA (the rule's own in
   ``routing.yaml`` escalation.rules, or the default) is told to the next level: executor (1),
   supervisor (2), director (3). Acknowledging (CLI, API, signed link) stops the ladder until the
   alert gets worse;
3. **repeat**: a firing, unacknowledged alert is told again every ``repeat`` (the rule's
   ``notify.repeat``, or ``escalation.repeat``) at its current level;
4. **deliver**: the outbox (``alerting.delivery``), with retries and fallbacks.

Steps 1-3 group like the notify task: one message per rule, level and severity, whatever the
number of entities. Each message and the alerts' new level are written in one transaction, so
running the cycle again (a retry, two schedulers) never repeats a step. Quiet hours defer
non-red messages to the morning. Pass ``now``; nothing here reads a clock.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime

from threshold_operators.alerting.lifecycle import (
    Alert,
    AlertStatus,
    acknowledge,
    escalate,
    fingerprint,
    next_escalation,
)
from threshold_operators.alerting.pipeline import QueueReport, _key, enqueue_message, links_for, mute_stage


@dataclass
class CycleReport:
    released: list[str] = field(default_factory=list)  # fingerprints
    escalated: list[tuple[str, int]] = field(default_factory=list)  # (fingerprint, new level)
    repeated: list[str] = field(default_factory=list)
    queued: int = 0
    delivery: object | None = None

    def summary(self) -> str:
        d = self.delivery
        sent = f"; delivered {len(d.sent)}, retrying {len(d.retrying)}, failed {len(d.failed)}, " \
               f"held back {d.held_back}, throttled {d.throttled}" if d is not None else ""
        return (f"released {len(self.released)}, escalated {len(self.escalated)}, repeated {len(self.repeated)}, "
                f"queued {self.queued}{sent}")


def _components(rules) -> dict[str, list[str]]:
    return {r.id: list(r.references) for r in rules.values() if r.references}


def _tell(store, routing, rule, event: str, level: int, alerts: list[Alert], now: datetime, report: CycleReport,
          stage, update) -> None:
    """One grouped message for ``alerts`` of ``rule`` at ``level``, and each alert's new state, atomically."""
    from threshold_operators.alerting import messages

    team = routing.team_of(rule.owner if rule else None)
    severity = max((a.severity for a in alerts), key=lambda s: {"blue": 1, "yellow": 2, "red": 3}.get(s or "", 0))
    defer = None
    for a in alerts:
        m = stage.check(a, team, now)
        if m is not None and m.until:
            defer = max(defer or m.until, m.until)
    people = [p.name for p in routing.recipients(team, level)]
    breaches = [{**(a.detail or {}), "entity_key": a.entity_key, "severity": a.severity, "fingerprint": a.fingerprint}
                for a in alerts]
    window = (min(a.first_bucket for a in alerts).isoformat(), max(a.last_bucket for a in alerts).isoformat())
    if rule is not None:
        text = messages.alert_message(rule, event, severity, breaches, window, level, people,
                                      links_for(alerts[:messages.TOP], level), tz=routing.timezone)
    else:  # an alert of a rule no longer in the catalogue: still escalated, plainly
        text = messages.Text(f"[{event}] {alerts[0].rule_id}", f"【{event}】{alerts[0].rule_id}: {len(alerts)}",
                             f"[{event}] {alerts[0].rule_id}", f"[{event}] {alerts[0].rule_id}: {len(alerts)}", severity)
    q = QueueReport()
    rule_id = alerts[0].rule_id
    key = _key(rule_id, event, level, severity, *sorted(f"{a.fingerprint}@{a.escalated_at}@{a.notified_at}"
                                                        for a in alerts))
    with store.engine.begin() as con:
        enqueue_message(store, routing, team, level, text, key, fingerprint(rule_id, f"({event}:L{level})"), event,
                        now, q, not_before=defer, con=con,
                        data={"rule_id": rule_id, "event": event, "severity": severity, "level": level,
                              "entities": [a.entity_key for a in alerts],
                              "fingerprints": [a.fingerprint for a in alerts]})
        store.save_many([update(a) for a in alerts], con)
    report.queued += q.queued


def release_mutes(store, routing, rules, now: datetime, report: CycleReport, stage=None, active=None) -> None:
    report, active, stage = _sweep(store, routing, rules, now, report, stage, active)
    groups: dict[tuple[str, int], list[Alert]] = defaultdict(list)
    for a in active:
        if a.status != AlertStatus.SILENCED or (a.muted or "").startswith("inhibited: the data"):
            continue
        mute = stage.check(a, routing.team_of(rules[a.rule_id].owner) if a.rule_id in rules else None, now)
        if mute is not None and mute.until is None:
            continue
        if a.notified_at is not None:  # told before the silence: back to firing, its ladder resumes
            store.save(replace(a, status=AlertStatus.FIRING, muted=None, updated_at=now))
            report.released.append(a.fingerprint)
            continue
        level = routing.start_level(a.severity, a.rule_id)
        groups[(a.rule_id, level)].append(a)
    for (rule_id, level), alerts in sorted(groups.items()):
        _tell(store, routing, rules.get(rule_id), "fired", level, alerts, now, report, stage,
              lambda a, lv=level: replace(escalate(a, lv, now), status=AlertStatus.FIRING, muted=None, notified_at=now))
        report.released += [a.fingerprint for a in alerts]


def _sweep(store, routing, rules, now, report, stage, active):
    """What a step of the cycle starts from: its report, the active alerts, the mute stage."""
    active = store.list(active_only=True) if active is None else active
    stage = stage or mute_stage(store, routing, now, components=_components(rules), active=active)
    return report or CycleReport(), active, stage


def escalate_due(store, routing, rules, now: datetime, report: CycleReport | None = None, stage=None,
                 active=None) -> CycleReport:
    """Tell the next level of every firing alert whose SLA ran out. ``rules``: rule id -> Rule."""
    report, active, stage = _sweep(store, routing, rules, now, report, stage, active)
    groups: dict[tuple[str, int], list[Alert]] = defaultdict(list)
    for a in active:
        level = next_escalation(a, routing.sla_of(a.rule_id), now)
        if level is not None:
            groups[(a.rule_id, level)].append(a)
    for (rule_id, level), alerts in sorted(groups.items()):
        _tell(store, routing, rules.get(rule_id), "escalated", level, alerts, now, report, stage,
              lambda a, lv=level: replace(escalate(a, lv, now), notified_at=now))
        report.escalated += [(a.fingerprint, level) for a in alerts]
    return report


def repeat_due(store, routing, rules, now: datetime, report: CycleReport | None = None, stage=None,
               active=None) -> CycleReport:
    """Tell again, at its level, every firing alert nobody acknowledged for the repeat interval."""
    report, active, stage = _sweep(store, routing, rules, now, report, stage, active)
    groups: dict[tuple[str, int], list[Alert]] = defaultdict(list)
    for a in active:
        if a.status != AlertStatus.FIRING or a.notified_at is None:
            continue
        rule = rules.get(a.rule_id)
        every = (rule.notify.repeat if rule is not None and rule.notify.repeat else None) or routing.escalation.repeat
        if now - a.notified_at >= every:
            groups[(a.rule_id, a.escalation_level or 1)].append(a)
    for (rule_id, level), alerts in sorted(groups.items()):
        _tell(store, routing, rules.get(rule_id), "repeat", level, alerts, now, report, stage,
              lambda a: replace(a, notified_at=now, updated_at=now))
        report.repeated += [a.fingerprint for a in alerts]
    return report


def run_cycle(store, routing, rules, now: datetime, *, senders=None, policy=None, log=None) -> CycleReport:
    """Release, escalate, repeat, deliver: one pass of the ``storefence_escalation`` DAG.
    ``senders``: route -> sender (default: built from the Airflow connections)."""
    from threshold_operators.alerting.delivery import RetryPolicy, deliver

    report = CycleReport()
    active = store.list(active_only=True)
    stage = mute_stage(store, routing, now, components=_components(rules), active=active)
    release_mutes(store, routing, rules, now, report, stage, active)
    if report.released:
        active = store.list(active_only=True)
    escalate_due(store, routing, rules, now, report, stage, active)
    if report.escalated:
        active = store.list(active_only=True)
    repeat_due(store, routing, rules, now, report, stage, active)
    report.delivery = deliver(store, routing, now, rules=list(rules.values()), senders=senders,
                              policy=policy or RetryPolicy(), log=log)
    return report


def acknowledge_alert(store, prefix: str, who: str, now: datetime) -> Alert:
    """Acknowledge by fingerprint (or an unambiguous prefix); raises LookupError otherwise."""
    alert = store.find(prefix)
    if alert is None:
        raise LookupError(f"no single alert has a fingerprint starting with {prefix!r}")
    t = acknowledge(alert, who, now)
    store.save(t.alert)
    return t.alert
