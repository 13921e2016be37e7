"""What each channel would send for a rule's latest evaluation: ``storefence preview RULE``.

An analyst sees the message before a rule goes live, or after tuning its ``metrics:`` and
runbook. The latest evaluation is the state store's: the rule's active alerts (their latest
observation, as the notify task recorded it), else its most recently resolved ones. The message
is built by the same code as the notify task's (``messages.alert_message``, at the level the
severity starts at, to the people of that level), then put in each channel's own form by the
channel's sender (``payload``: the request body it would post; email: the plain text part; SMS
and voice: the text the provider reads), in the channel's language or the one asked for. No
connection is needed and nothing is sent: the senders are built with placeholder endpoints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from threshold_operators.alerting.lifecycle import SEVERITY_ORDER, Alert, AlertStatus

PLACEHOLDER = "https://preview.invalid"


@dataclass(frozen=True)
class Rendered:
    channel: str  # the routing channel's name
    kind: str
    language: str
    title: str
    body: str  # what the channel gets, in its form


def latest_alerts(store, rule_id: str) -> list[Alert]:
    """The rule's alerts of its latest evaluation: the active ones, else the last resolved."""
    alerts = [a for a in store.list() if a.rule_id == rule_id]
    active = [a for a in alerts if a.active]
    if active:
        return active
    if not alerts:
        return []
    last = max(a.resolved_at or a.updated_at for a in alerts)
    return [a for a in alerts if (a.resolved_at or a.updated_at) == last]


def _sender(kind: str):
    """A sender of ``kind`` with placeholder endpoints: only its ``payload`` is used."""
    from threshold_operators.alerting.channels import sender_class

    cls = sender_class(kind)
    if kind in ("dingtalk", "feishu"):
        return cls(None, PLACEHOLDER, "token")
    if kind == "wecom":
        return cls(None, PLACEHOLDER, "key")
    if kind == "slack":
        return cls(None, PLACEHOLDER, "services/T/B/X")
    if kind == "webhook":
        return cls(None, PLACEHOLDER + "/hook")
    if kind == "email":
        return cls(lambda: None, "storefence@example.com")
    return None


def channel_form(kind: str, message) -> str:
    """``message`` as channel ``kind`` carries it."""
    if kind == "sms":
        from threshold_operators.alerting.channels.sms import sms_text

        return sms_text(message)
    if kind == "voice":
        from threshold_operators.alerting.channels.sms import voice_text

        return voice_text(message)
    sender = _sender(kind)
    if kind == "email":
        mail = sender.payload(message)
        return f"Subject: {mail['Subject']}\n\n{mail.get_body(('plain',)).get_content().rstrip()}"
    return json.dumps(sender.payload(message), ensure_ascii=False, indent=1)


def breaches_of(alerts: list[Alert]) -> list[dict]:
    """Stored alerts as the breaches a message lists: each one's latest observation, as the notify
    task recorded it (its ``detail``), with its key, severity and fingerprint."""
    return [{**(a.detail or {}), "entity_key": a.entity_key, "severity": a.severity, "fingerprint": a.fingerprint}
            for a in alerts]


def _worst(severities) -> str | None:
    return max(severities, key=lambda s: SEVERITY_ORDER.get(s or "", 0))


def preview(rule, alerts: list[Alert], routing, *, kind: str | None = None, language: str | None = None,
            links: dict[str, str] | None = None) -> list[Rendered]:
    """What each channel of the rule's team would send for ``alerts`` of the state store (one
    message, as the notify task groups them: fired, or resolved when all have), in the channel's
    language or ``language``; only channels of ``kind`` if given."""
    from threshold_operators.alerting import messages
    from threshold_operators.alerting.escalation import data_window

    if not alerts:
        return []
    window = data_window(alerts, rule)
    if any(a.status != AlertStatus.RESOLVED for a in alerts):
        return preview_breaches(rule, breaches_of(alerts), window, routing, kind=kind, language=language, links=links)
    severity = _worst(a.severity for a in alerts)
    team, level, people = _audience(rule, severity, routing)
    text = messages.resolved_message(rule, [a.entity_key for a in alerts], window[1], level, [p.name for p in people],
                                     routing.timezone, severity)
    return _in_channels(text, rule, "resolved", severity, team, people, routing, kind, language)


def preview_breaches(rule, breaches: list[dict], window: tuple[str, str], routing, *, kind: str | None = None,
                     language: str | None = None, links: dict[str, str] | None = None) -> list[Rendered]:
    """What each channel of the rule's team would send when ``breaches`` fire: one "fired" message,
    as the notify task builds it from the check's breaches (``engine.evaluate.describe``, with
    ``names``, ``fired_window`` and ``fingerprint``) over the data ``window``; a backtest's episode
    (``analysis.episodes.first_firing``) or stored alerts (``breaches_of``)."""
    from threshold_operators.alerting import messages

    if not breaches:
        return []
    severity = _worst(b.get("severity") for b in breaches)
    team, level, people = _audience(rule, severity, routing)
    text = messages.alert_message(rule, "fired", severity, breaches, window, level, [p.name for p in people],
                                  links or {}, tz=routing.timezone)
    return _in_channels(text, rule, "fired", severity, team, people, routing, kind, language)


def _audience(rule, severity: str | None, routing) -> tuple:
    """(team, level, people): the rule's team, the level ``severity`` starts at, its people there."""
    team = routing.team_of(rule.owner)
    level = routing.start_level(severity, rule.id)
    return team, level, routing.recipients(team, level)


def _in_channels(text, rule, event: str, severity: str | None, team, people, routing, kind: str | None,
                 language: str | None) -> list[Rendered]:
    """``text`` in each channel of ``team`` for ``severity`` (of ``kind`` if given), in its form."""
    from threshold_operators.alerting.delivery import message_of

    payload = text.payload(mentions=[p.mobile for p in people if p.mobile], emails=[p.email for p in people if p.email],
                           data={"rule_id": rule.id, "event": event, "severity": severity})
    out = []
    for name in routing.channels_for(team, severity):
        channel = routing.channels[name]
        if kind is not None and channel.kind != kind:
            continue
        lang = language or channel.language
        message = message_of(payload, lang)
        out.append(Rendered(name, channel.kind, lang, message.title, channel_form(channel.kind, message)))
    return out


def as_text(shown: list[Rendered]) -> str:
    """What ``storefence preview`` prints: each channel's name, kind, language and title, then its body."""
    return "\n".join(f"=== {r.channel} ({r.kind}, {r.language}): {r.title}\n{r.body}\n" for r in shown)
