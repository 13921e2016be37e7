"""From a check's outcome to the outbox, in small stages (as Alertmanager's notify pipeline):

    record -> mute (inhibit, silence, quiet hours) -> group -> route -> dedup (enqueue) -> actions

``queue_notifications(rule, evaluation, store, routing, now)`` is what a rule's notify task does:

1. **record**: each entity's observation goes through ``lifecycle.transition``; the alert is
   saved, with the observation as a point of its chart (``StateStore.save_points``); FIRED,
   WORSENED and RESOLVED are news;
2. **mute** (``alerting.mute``): a silence or an inhibition holds the alert back (status
   ``silenced``, with the reason; told later if it still fires when the mute ends); quiet hours
   only defer the message to the morning. A table the rule reads that failed its extract gate
   holds back a rule that fires on low values (``Rule.fires_on``: missing data can explain a
   drop); a rule that fires on high values still fires, its alerts and message marked "data
   incomplete" (missing data never explains a spike). Either way the data engineers hear of
   the gate once per failure (``alerting.data_gates``: an alert of its own);
3. **group**: the news of one rule in one cycle is one message per event and severity, with the
   count and the top entities (10,000 low-stock SKUs are one message, not 10,000);
4. **route**: the owner team's channels for that severity, its people at the level the rule or
   severity starts at (``escalation.start_at`` / ``start_level``) @-mentioned;
5. **dedup**: each message is stored in the outbox under an idempotency key (rule, event,
   severity, level, data window, channel): a retried task, a re-run or a backfill adds nothing;
6. **actions**: the rule's ``actions:`` for the alerts that fired (``alerting.actions``), in the
   same outbox under keys of their own.

Delivery (``alerting.delivery``) sends the outbox; the escalation cycle (``alerting.escalation``)
escalates, repeats, releases muted alerts and re-queues any firing alert nobody was told of.
Stages 1-6 of one evaluation are written in ONE transaction, the alerts by compare-and-set
(``StateStore.cas_many``): all or nothing, never over a newer state. Nothing here reads a clock
or opens a warehouse.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from datetime import datetime
from hashlib import sha256

from threshold_operators.alerting import faults
from threshold_operators.alerting.lifecycle import (
    SEVERITY_ORDER,
    Alert,
    AlertStatus,
    Event,
    Observation,
    escalate,
    fingerprint,
    transition,
)
from threshold_operators.alerting.mute import Inhibition, Mute, MuteStage, QuietHours, Silences

NEWS = (Event.FIRED, Event.WORSENED, Event.RESOLVED)


@dataclass
class QueueReport:
    events: dict[str, int] = field(default_factory=dict)  # event -> entities
    queued: int = 0  # new outbox rows
    duplicates: int = 0  # already queued (a re-run): nothing added
    muted: dict[str, int] = field(default_factory=dict)  # mute kind -> entities held back or deferred
    actions: int = 0  # new action rows

    def count(self, bucket: dict, key: str, n: int = 1) -> None:
        bucket[key] = bucket.get(key, 0) + n


def _ts(value) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _key(*parts) -> str:
    return sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


def observations(rule_id: str, evaluation: dict) -> list[Observation]:
    """The check's outcome as observations: firing entities at their latest bucket, resolved ones at the
    bucket they resolved at (``resolved_at``; the window's end when it does not say)."""
    end = _ts(evaluation["window_end"])
    by = {"evaluated_by": evaluation["evaluated_by"]} if evaluation.get("evaluated_by") else {}
    out = [Observation(rule_id, b["entity_key"], "firing", b["severity"], _ts(b["bucket"]), end, {**b, **by})
           for b in evaluation.get("breaches", [])]
    at = evaluation.get("resolved_at") or {}
    out += [Observation(rule_id, key, "resolved", None, _ts(at[key]) if key in at else end, end)
            for key in evaluation.get("resolved_entities", [])]
    return out


def chart_point(obs: Observation) -> dict:
    """An observation as a point of the alerts page's chart (``StateStore.save_points``). Pure."""
    d = obs.detail or {}
    return {"rule_id": obs.rule_id, "entity_key": obs.entity_key, "bucket": obs.bucket, "state": obs.state,
            "severity": obs.severity, "value": d.get("value"), "baseline": d.get("baseline"),
            "threshold": d.get("threshold")}


def with_fired_window(alert: Alert, before: Alert | None, event: Event, window: tuple[str, str]) -> Alert:
    """The alert with ``detail["fired_window"]``: the data window of the evaluation that fired it,
    kept while it fires (later observations replace the rest of its detail), so the escalation
    and repeat messages show the data the alert is about. Pure."""
    if event == Event.FIRED:
        fired = [w.isoformat() if isinstance(w, datetime) else w for w in window]
    elif before is not None and (before.detail or {}).get("fired_window") and before.status != AlertStatus.RESOLVED:
        fired = before.detail["fired_window"]
    else:
        return alert
    if (alert.detail or {}).get("fired_window") == fired:
        return alert
    return replace(alert, detail={**(alert.detail or {}), "fired_window": fired})


def mute_stage(store, routing, now: datetime, *, failing_tables=None, rule_tables=None, components=None,
               active: list[Alert] | None = None, low_rules=None) -> MuteStage:
    """The muters in their order: inhibition, silences, quiet hours."""
    return MuteStage((
        Inhibition(failing_tables or {}, rule_tables or {}, store.list(active_only=True) if active is None else active,
                   components or {}, low_rules),
        Silences(tuple(store.silences(now))),
        QuietHours(routing.quiet_hours(), routing.timezone),
    ))


@functools.lru_cache(maxsize=1)
def _link_settings():
    """The ``storefence_ack`` connection, looked up once per process (a task, a CLI call)."""
    try:
        from threshold_operators.alerting.ack_link import link_settings

        return link_settings()
    except Exception:  # noqa: BLE001 - no links: messages carry the CLI command instead
        return None


def links_for(alerts, level: int, now: datetime | None = None) -> dict[str, str]:
    """Fingerprint -> signed acknowledge link of each alert's current firing (its ``opened_at``), when
    the ``storefence_ack`` connection is set up (else none)."""
    from threshold_operators.alerting.ack_link import ack_url

    settings = _link_settings()
    if settings is None:
        return {}
    return {a.fingerprint: ack_url(settings, a.fingerprint, level, now, opened_at=a.opened_at) for a in alerts}


def list_url_for(rule_id: str) -> str | None:
    """The rule's firing alerts on the alerts page (a message's "+N more" link), when the
    ``storefence_ack`` connection names the Airflow API server's public URL (else None)."""
    import urllib.parse

    settings = _link_settings()
    if settings is None:
        return None
    return f"{settings.base_url}/plugin/storefence?{urllib.parse.urlencode({'rule': rule_id})}"


def enqueue_message(store, routing, team: str, level: int, text, key: str, fp: str, event: str, now: datetime,
                    report: QueueReport, *, not_before: datetime | None = None, data: dict | None = None,
                    con=None) -> None:
    """Route one message: the team's channels for its severity, its people at ``level``."""
    people = routing.recipients(team, level)
    payload = text.payload(mentions=[p.mobile for p in people if p.mobile],
                           emails=[p.email for p in people if p.email], data=data)
    for channel in routing.channels_for(team, text.severity):
        if event == "resolved" and routing.channels[channel].kind == "voice":
            continue  # good news is not worth a phone call: the other channels tell it
        added = store.enqueue(key=f"{key}:{channel}", fingerprint=fp, event=event, level=level, route=channel,
                              payload=payload, now=now, not_before=not_before, con=con)
        if added:
            report.queued += 1
        else:
            report.duplicates += 1


def queue_notifications(rule, evaluation: dict | None, store, routing, now: datetime, *,
                        components: dict[str, list[str]] | None = None, attempts: int = 5) -> QueueReport:
    """Record the check's outcome and queue what people must hear, in one transaction: the alerts'
    new states, their messages (resolved included) and the actions' rows are written together or
    not at all, so a failure anywhere (a locked file, a killed worker, a message that cannot be
    built) leaves nothing half-done and the task's retry does it all. The alerts are written by
    compare-and-set: when one changed since it was read (an acknowledgement, the escalation cycle),
    the whole evaluation is re-read and re-decided (up to ``attempts`` times).
    ``components``: compound rule id -> the rules it refers to (for the compound inhibition)."""
    from threshold_operators.alerting.store import StaleAlerts

    for attempt in range(1, attempts + 1):
        try:
            return _queue_once(rule, evaluation, store, routing, now, components)
        except StaleAlerts:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _queue_once(rule, evaluation: dict | None, store, routing, now: datetime,
                components: dict[str, list[str]] | None) -> QueueReport:
    from threshold_operators.alerting import messages

    report = QueueReport()
    if evaluation is None or evaluation.get("outcome") == "error":
        hour = now.replace(minute=0, second=0, microsecond=0)
        text = messages.evaluation_error_message(rule.id, evaluation)
        with store.transaction() as con:
            enqueue_message(store, routing, routing.team_of("data_engineering"), 1, text,
                            _key(rule.id, "evaluation_error", hour), fingerprint(rule.id, "(evaluation)"), "error",
                            now, report, con=con)
        return report
    failing = evaluation.get("failing_tables") or {}
    low = rule.fires_on == "low"
    active = store.list(active_only=True)
    gates = _gate_news(store, active, evaluation, failing, rule, now)
    if rule.mode == "shadow" or evaluation.get("outcome") in (None, "up_to_date"):
        with store.transaction() as con:
            _queue_gates(store, routing, gates, now, report, con)
        return report
    if failing and not low:  # a high value stands whatever is missing: told, marked "data incomplete"
        note = "; ".join(f"{t} failed its {g['kind']} gate ({g['detail']})" for t, g in sorted(failing.items()))
        evaluation = {**evaluation, "breaches": [{**b, "data_incomplete": note} for b in evaluation.get("breaches", [])]}

    # 1. record
    stage = mute_stage(store, routing, now, failing_tables=failing, rule_tables={rule.id: list(failing)},
                       components=components, active=active, low_rules={rule.id} if low else set())
    team = routing.team_of(rule.owner)
    news: dict[tuple[Event, str | None], list[tuple[Alert, Observation, Mute | None]]] = {}
    resolved: list[Alert] = []
    window = (evaluation.get("window_start") or "", evaluation["window_end"])
    seen = observations(rule.id, evaluation)
    points = [chart_point(o) for o in seen]
    known = store.get_many({fingerprint(rule.id, o.entity_key) for o in seen})
    final: dict[str, Alert] = {}  # each changed alert's last state, written with its messages
    told_now: set[str] = set()  # fingerprints with news in this evaluation
    for obs in seen:
        fp = fingerprint(rule.id, obs.entity_key)
        before = known.get(fp)
        t = transition(before, obs, now)
        alert, event = t.alert, t.event
        if alert is None:
            continue
        alert = with_fired_window(alert, before, event, window)
        known[fp] = alert  # an entity may fire and resolve within one window (a backfill)
        if event == Event.RESOLVED:
            told = before is not None and (before.notified_at is not None or fp in told_now)
            if told and rule.notify.resolved:
                resolved.append(before)
            report.count(report.events, str(event))
            final[fp] = known[fp] = replace(alert, muted=None)
            continue
        # 2. mute: news, and alerts held back whose mute may have ended
        if event in (Event.FIRED, Event.WORSENED) or (event == Event.NONE and alert.status == AlertStatus.SILENCED):
            mute = stage.check(alert, team, now)
            if mute is not None and mute.until is None:  # held back: silenced, told when the mute ends
                report.count(report.muted, mute.kind)
                alert = replace(alert, status=AlertStatus.SILENCED, muted=mute.reason)
                final[fp] = known[fp] = alert
                continue
            if alert.status == AlertStatus.SILENCED:  # released: news now, if nobody was told yet
                alert = replace(alert, status=AlertStatus.FIRING, muted=None)
                if event == Event.NONE:
                    event = Event.FIRED if alert.notified_at is None else Event.NONE
            if mute is not None:
                report.count(report.muted, mute.kind)
            if event in (Event.FIRED, Event.WORSENED):
                report.count(report.events, str(event))
                news.setdefault((event, obs.severity), []).append((alert, obs, mute))
                told_now.add(fp)
        known[fp] = alert
        if alert != before:
            final[fp] = alert

    # 3-5. group, route (the messages are built before anything is written)
    tell = []
    for (event, severity), items in sorted(news.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        level = routing.start_level(severity, rule.id)
        people = [p.name for p in routing.recipients(team, level)]
        items.sort(key=lambda it: -messages.past_threshold(rule, it[1].detail))  # the top ones get the links
        breaches = [{**o.detail, "fingerprint": a.fingerprint} for a, o, _ in items]
        text = messages.alert_message(rule, str(event), severity, breaches, window, level, people,
                                      links_for([a for a, _, _ in items[:messages.TOP]], level, now),
                                      tz=routing.timezone, list_url=list_url_for(rule.id))
        defer = max((m.until for _, _, m in items if m is not None and m.until), default=None)
        tell.append((level, text, _key(rule.id, event, severity, level, window[1]),
                     fingerprint(rule.id, f"({event}:{severity})"), str(event), defer,
                     {"rule_id": rule.id, "event": str(event), "severity": severity,
                      "entities": [o.entity_key for _, o, _ in items],
                      "fingerprints": [a.fingerprint for a, _, _ in items]}))
        for a, _, _ in items:  # each alert's latest state (it may have resolved since), told at its level
            final[a.fingerprint] = replace(escalate(known.get(a.fingerprint, a), level, now), notified_at=now)
    if resolved:
        # told at the level it reached; one told and resolved in this evaluation (a backfill) at its start
        level = max(a.escalation_level or (routing.start_level(a.severity, rule.id) if a.fingerprint in told_now
                                           else 0) for a in resolved) or 1
        people = [p.name for p in routing.recipients(team, level)]
        text = messages.resolved_message(rule, [a.entity_key for a in resolved], window[1], level, people,
                                           routing.timezone, max((a.severity for a in resolved),
                                                                 key=lambda s: SEVERITY_ORDER.get(s or "", 0)),
                                           {a.entity_key: (a.detail or {}).get("names") for a in resolved})
        tell.append((level, text, _key(rule.id, "resolved", level, window[1]), fingerprint(rule.id, "(resolved)"),
                     "resolved", None, {"rule_id": rule.id, "event": "resolved",
                                        "entities": [a.entity_key for a in resolved]}))
    fired = [{**o.detail, "fingerprint": a.fingerprint} for (event, _), items in news.items() if event == Event.FIRED
             for a, o, _ in items]  # a worsening alert does not order the same purchase again
    faults.point("notify.decided")

    # 5. dedup: the alerts, their messages and the actions, in one transaction (compare-and-set)
    with store.transaction() as con:
        _queue_gates(store, routing, gates, now, report, con)
        store.cas_many(list(final.values()), con)
        store.save_points(points, now, con)
        faults.point("notify.recorded")
        for level, text, key, fp, event, defer, data in tell:
            enqueue_message(store, routing, team, level, text, key, fp, event, now, report, not_before=defer,
                            con=con, data=data)
        faults.point("notify.queued")
        # 6. actions
        if fired:
            report.actions = queue_actions(rule, fired, window[1], store, routing, now, report, con=con)
    faults.point("notify.committed")
    return report


def _gate_news(store, active: list[Alert], evaluation: dict, failing: dict, rule, now: datetime):
    """The gate alerts this check changes (``alerting.data_gates``), decided before anything is written."""
    from threshold_operators.alerting import data_gates

    checked = evaluation.get("gates_checked") or []
    at = evaluation.get("gates_checked_at")
    known = store.get_many({fingerprint(data_gates.gate_rule_id(t, g["kind"]), data_gates.entity(t))
                            for t, g in failing.items()})
    held = [rule.id] if failing and rule.fires_on == "low" and rule.mode == "live" else []
    incomplete = [rule.id] if failing and not held and rule.mode == "live" else []
    return data_gates.decide(known, active, checked, failing, held, incomplete, _ts(at) if at else now, now)


def _queue_gates(store, routing, gates, now: datetime, report: QueueReport, con) -> None:
    """The gate alerts' new states and, when one fired or resolved, its one message to the data
    engineers, whichever rule's check saw it first; written with the check's own alerts."""
    from threshold_operators.alerting import messages

    if not gates:
        return
    store.cas_many([g.alert for g in gates], con)
    for g in gates:
        if g.event == Event.FIRED:
            text = messages.data_gate_message(g.table, g.gate, g.gate.get("held", []), g.gate.get("incomplete", []))
        elif g.event == Event.RESOLVED and g.alert.notified_at is not None:
            text = messages.data_gate_resolved_message(g.table, g.gate)
        else:
            continue
        a = g.alert
        enqueue_message(store, routing, routing.team_of("data_engineering"), 1, text,
                        _key("gate", a.fingerprint, g.event, a.opened_at.isoformat()), a.fingerprint,
                        "data_gate" if g.event == Event.FIRED else "data_gate_resolved", now, report,
                        data={"table": g.table, "rule_id": a.rule_id, **g.gate}, con=con)


def queue_actions(rule, breaches: list[dict], window_end: str, store, routing, now: datetime,
                  report: QueueReport, con=None) -> int:
    from threshold_operators.alerting import messages
    from threshold_operators.alerting.actions import action_requests, route_of

    added = 0
    sla_hours = routing.sla_of(rule.id).total_seconds() / 3600
    for action in rule.actions:
        requests = action_requests(rule, action, breaches, window_end, sla_hours)
        for r in requests:
            if store.enqueue(key=f"action:{r['key']}", fingerprint=r["fingerprint"] or fingerprint(rule.id, "(action)"),
                             event=f"action:{action.kind}", level=0, route=route_of(action),
                             payload={"title": action.kind, "text": "", "dry_run": r["dry_run"],
                                      "data": {"endpoint": r["endpoint"], "body": r["body"], "kind": r["kind"]}},
                             now=now, con=con):
                added += 1
        if requests and requests[0]["dry_run"]:  # a dry run is announced to the rule's team instead
            lines = [{"entity": r["body"].get("entity"), "would": action.kind} for r in requests]
            text = messages.action_message(rule, action, lines, dry_run=True)
            enqueue_message(store, routing, routing.team_of(rule.owner), 1, text,
                            _key(rule.id, "dry_run", action.kind, window_end), fingerprint(rule.id, "(action)"),
                            "action", now, report, con=con)
    return added
