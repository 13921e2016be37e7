"""A failing extract gate as an alert of its own: the data engineers hear once, not every run.

The gates (``engine.gates``) are judged on every check of every rule that reads a table, every
few minutes. Told as plain messages, one persisting failure reached the data engineers on nearly
every extract run. Instead each failing (table, kind) is an alert of the built-in rule
``quality.<table>.<kind>`` (entity ``table=<table>``) in the same state store and lifecycle as the
business alerts (``alerting.lifecycle``):

- **fires once**: the first check that sees the gate fail fires it and queues one ``data_gate``
  message to the ``data_engineering`` team, naming the rules it holds back and the ones it marks
  "data incomplete"; later checks, from any rule or domain, only update it (data time = the
  event's ``observed_at``, so a late task never re-opens what a newer one decided);
- **repeats** while it fires unacknowledged, every ``escalation.repeat`` of ``routing.yaml``
  (the escalation cycle; gate alerts are repeated, not escalated up the ladder);
- **resolves** when a check finds the table passing again (the tables a check judged are in its
  evaluation, ``gates_checked``), with one ``data_gate_resolved`` message;
- can be acknowledged (``storefence ack``), which stops the repeats.

Pure decisions plus the writes of ``pipeline._queue_once``'s one transaction; no clock read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from threshold_operators.alerting.lifecycle import (
    Alert,
    Event,
    Observation,
    escalate,
    fingerprint,
    transition,
)

DOMAIN = "quality"
SEVERITY = "yellow"


def gate_rule_id(table: str, kind: str) -> str:
    return f"{DOMAIN}.{table}.{kind}"


def entity(table: str) -> str:
    return f"table={table}"


def is_gate(rule_id: str) -> bool:
    return rule_id.startswith(f"{DOMAIN}.")


def table_of(alert: Alert) -> str:
    return alert.entity_key.split("=", 1)[1]


@dataclass(frozen=True)
class GateNews:
    alert: Alert  # the alert as it must be written
    event: Event  # FIRED, RESOLVED or NONE (an update, nothing to tell)
    table: str
    gate: dict  # {"kind", "detail", "observed_at", "held": [...], "incomplete": [...]}


def decide(known: dict[str, Alert], active: list[Alert], checked, failing: dict[str, dict], held: list[str],
           incomplete: list[str], checked_at: datetime, now: datetime) -> list[GateNews]:
    """The gate alerts after one check: ``failing`` table -> gate of the tables it judged failing,
    ``checked`` the tables it judged; ``held`` / ``incomplete``: the rules this check held back or
    marked "data incomplete" because of them. ``known``: fingerprint -> stored alert."""
    out = []
    for table, gate in sorted(failing.items()):
        rule_id = gate_rule_id(table, gate["kind"])
        fp = fingerprint(rule_id, entity(table))
        before = known.get(fp)
        names = (before.detail if before is not None and before.active else {}) or {}
        detail = {"table": table, **gate,
                  "held": sorted({*names.get("held", []), *held}),
                  "incomplete": sorted({*names.get("incomplete", []), *incomplete})}
        obs = Observation(rule_id, entity(table), "firing", SEVERITY, datetime.fromisoformat(gate["observed_at"]),
                          now, detail)
        t = transition(before, obs, now)
        alert = t.alert
        if alert is None:
            continue
        if t.event == Event.NONE:
            if alert is before:  # older data than the alert has seen: only the rules' names may be news
                detail = {**(before.detail or {}), "held": detail["held"], "incomplete": detail["incomplete"]}
            if before.detail == detail and alert.last_bucket == before.last_bucket:
                continue  # nothing new: no write
            alert = replace(alert, detail=detail)
        elif t.event == Event.FIRED:
            alert = replace(escalate(alert, 1, now), notified_at=now)
        out.append(GateNews(alert, t.event, table, detail))
    still = {(t, g["kind"]) for t, g in failing.items()}
    for a in active:
        if not is_gate(a.rule_id) or table_of(a) not in checked:
            continue
        table, kind = table_of(a), a.rule_id.rsplit(".", 1)[1]
        if (table, kind) in still:
            continue
        t = transition(a, Observation(a.rule_id, a.entity_key, "resolved", None, checked_at, now), now)
        if t.event == Event.RESOLVED:
            out.append(GateNews(t.alert, t.event, table, a.detail or {}))
    return out
