"""From a check's outcome to the outbox: record -> group -> route -> dedup (enqueue).

``queue_notifications(rule, evaluation, store, routing, now)`` is what a rule's notify task does:

1. **record**: each entity's observation goes through ``lifecycle.transition``; the alert is
   saved; only FIRED, WORSENED and RESOLVED are news;
2. **group**: the news of one rule in one cycle is one message per event and severity, with the
   count and the top entities (10,000 low-stock SKUs are one message, not 10,000);
3. **route**: the owner team's channels for that severity, its people at the level the severity
   starts at (``escalation.start_level``) @-mentioned;
4. **dedup**: each message is stored in the outbox under an idempotency key (rule, event,
   severity, level, data window, channel): a retried task, a re-run or a backfill adds nothing.

Delivery (``alerting.delivery``) sends the outbox. Escalation, silences, inhibition and quiet
hours are the stages still to come (issue 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha256

from threshold_operators.alerting.lifecycle import Event, Observation, escalate, fingerprint, transition

NEWS = (Event.FIRED, Event.WORSENED, Event.RESOLVED)
TOP = 10


@dataclass
class QueueReport:
    events: dict[str, int] = field(default_factory=dict)  # event -> entities
    queued: int = 0  # new outbox rows
    duplicates: int = 0  # already queued (a re-run): nothing added


def _ts(value) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def observations(rule_id: str, evaluation: dict) -> list[Observation]:
    """The check's XCom as observations: firing entities at their latest bucket, resolved ones at the window's end."""
    end = _ts(evaluation["window_end"])
    out = [Observation(rule_id, b["entity_key"], "firing", b["severity"], _ts(b["bucket"]), end, b)
           for b in evaluation.get("breaches", [])]
    out += [Observation(rule_id, key, "resolved", None, end, end) for key in evaluation.get("resolved_entities", [])]
    return out


def _key(*parts) -> str:
    return sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


def queue_notifications(rule, evaluation: dict | None, store, routing, now: datetime) -> QueueReport:
    from threshold_operators.alerts.notification import compose

    report = QueueReport()
    if evaluation is None or evaluation.get("outcome") == "error":
        note = compose(rule, evaluation)
        hour = now.replace(minute=0, second=0, microsecond=0)
        _enqueue(store, routing, "data_engineering", "yellow", 1, note.title, note.text,
                 _key(rule.id, "evaluation_error", hour), fingerprint(rule.id, "(evaluation)"), "error", now, report)
        return report
    if rule.mode == "shadow" or evaluation.get("outcome") in (None, "up_to_date"):
        return report
    news: dict[tuple[Event, str | None], list[tuple]] = {}
    for obs in observations(rule.id, evaluation):
        before = store.get(fingerprint(rule.id, obs.entity_key))
        t = transition(before, obs, now)
        if t.alert is not None and t.alert != before:
            store.save(t.alert)
        if t.event in NEWS:
            sev = obs.severity if t.event != Event.RESOLVED else (before.severity if before else None)
            news.setdefault((t.event, sev), []).append((t.alert, obs))
            report.events[str(t.event)] = report.events.get(str(t.event), 0) + 1
    window = evaluation["window_end"]
    for (event, severity), items in sorted(news.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        level = routing.start_level(severity) if event != Event.RESOLVED else max(
            (a.escalation_level for a, _ in items), default=1) or 1
        title, text = _message(rule, evaluation, event, severity, items)
        _enqueue(store, routing, rule.owner, severity, level, title, text,
                 _key(rule.id, event, severity, level, window), fingerprint(rule.id, f"({event}:{severity})"),
                 str(event), now, report, data={"rule_id": rule.id, "event": str(event), "severity": severity,
                                                "entities": [o.entity_key for _, o in items]})
        if event != Event.RESOLVED:
            for alert, _ in items:
                store.save(escalate(alert, level, now))
    return report


def _message(rule, evaluation, event: Event, severity, items) -> tuple[str, str]:
    from threshold_operators.alerts.notification import SEVERITY_ZH, compose

    if event == Event.RESOLVED:
        keys = [o.entity_key for _, o in items]
        shown = "\n".join(f"- {k}" for k in keys[:TOP]) + (f"\n- ... 另 {len(keys) - TOP} 个" if len(keys) > TOP else "")
        return (f"[已恢复] {rule.name.zh} / {rule.name.en}",
                f"【已恢复】{rule.name.zh}：{len(keys)} 个对象恢复正常 / {len(keys)} resolved\n{shown}")
    breaches = [o.detail for _, o in items]
    note = compose(rule, {**evaluation, "breaches": breaches, "firing": len(breaches)})
    prefix = "【升级】" if event == Event.WORSENED else ""
    return (f"[{severity}] {rule.name.zh} / {rule.name.en}" + (" (worse)" if event == Event.WORSENED else ""),
            prefix + note.text.replace(f"【{SEVERITY_ZH.get(note.severity, note.severity)}预警】",
                                       f"【{SEVERITY_ZH.get(severity, severity)}预警】", 1))


def _enqueue(store, routing, team: str, severity, level: int, title: str, text: str, key: str, fp: str,
             event: str, now: datetime, report: QueueReport, data: dict | None = None) -> None:
    if team not in routing.teams:
        team = "data_engineering" if "data_engineering" in routing.teams else next(iter(routing.teams))
    mentions = [p.mobile for p in routing.recipients(team, level) if p.mobile]
    names = ", ".join(p.name for p in routing.recipients(team, level))
    body = f"{text}\n\n通知 / To: {names} (L{level})"
    for channel in routing.channels_for(team, severity):
        added = store.enqueue(key=f"{key}:{channel}", fingerprint=fp, event=event, level=level, route=channel,
                              payload={"title": title, "text": body, "mentions": mentions, "data": data or {}}, now=now)
        if added:
            report.queued += 1
        else:
            report.duplicates += 1
