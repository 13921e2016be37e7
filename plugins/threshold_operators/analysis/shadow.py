"""``storefence report --shadow``: what the shadow rules would have sent.

A rule in ``mode: shadow`` is evaluated and recorded by the live DAG (``rule_results``, mode
``shadow``) but never notifies. This replays its recorded results through the same alert
lifecycle the live rules go through (``alerting.lifecycle.transition``, in memory): only news is
a message (fired, worse, resolved), grouped per cycle as the notify task groups them. Put beside
the live rule it would replace, it tells an analyst whether to promote it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class WouldSend:
    rule_id: str
    window_end: datetime
    event: str
    severity: str | None
    entities: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"rule": self.rule_id, "window_end": self.window_end.isoformat(), "event": self.event,
                "severity": self.severity, "entities": self.entities}


def recorded(hook, since: datetime | None, until: datetime | None) -> list[dict]:
    from sqlalchemy import text

    from threshold_operators.warehouse.schema import as_utc

    sql = ("SELECT rule_id, entity_key, bucket, state, severity, window_end FROM rule_results "
           "WHERE mode = 'shadow'")
    params = {}
    if since is not None:
        sql += " AND window_end > :since"
        params["since"] = since
    if until is not None:
        sql += " AND window_end <= :until"
        params["until"] = until
    with hook.engine.connect() as con:
        rows = [dict(r._mapping) for r in con.execute(text(sql + " ORDER BY rule_id, window_end, bucket"), params)]
    for r in rows:
        r["bucket"], r["window_end"] = as_utc(r["bucket"]), as_utc(r["window_end"])
    return rows


def would_send(rows: list[dict]) -> list[WouldSend]:
    from threshold_operators.alerting.lifecycle import Event, Observation, fingerprint, transition

    alerts: dict[str, object] = {}
    out: dict[tuple, WouldSend] = {}
    for r in sorted(rows, key=lambda r: (r["window_end"], r["bucket"], r["rule_id"], r["entity_key"])):
        fp = fingerprint(r["rule_id"], r["entity_key"])
        obs = Observation(r["rule_id"], r["entity_key"], r["state"], r["severity"], r["bucket"], r["window_end"])
        before = alerts.get(fp)
        t = transition(before, obs, r["window_end"])
        if t.alert is not None:
            alerts[fp] = t.alert
        if t.event in (Event.FIRED, Event.WORSENED, Event.RESOLVED):
            sev = r["severity"] if t.event != Event.RESOLVED else getattr(before, "severity", None)
            key = (r["rule_id"], r["window_end"], str(t.event), sev)
            out.setdefault(key, WouldSend(r["rule_id"], r["window_end"], str(t.event), sev)).entities.append(
                r["entity_key"])
    return sorted(out.values(), key=lambda w: (w.rule_id, w.window_end, w.event))


def render(messages: list[WouldSend]) -> str:
    if not messages:
        return "No shadow rule would have sent anything in that range."
    per_rule = defaultdict(list)
    for m in messages:
        per_rule[m.rule_id].append(m)
    lines = []
    for rule_id, ms in sorted(per_rule.items()):
        fired = sum(1 for m in ms if m.event == "fired")
        lines.append(f"{rule_id}: {len(ms)} message(s) would have gone out ({fired} fired)")
        for m in ms[:20]:
            shown = ", ".join(m.entities[:3]) + (f" (+{len(m.entities) - 3} more)" if len(m.entities) > 3 else "")
            lines.append(f"  {m.window_end:%Y-%m-%d %H:%M} UTC  {m.event:<9} {m.severity or '':<6} {shown}")
        if len(ms) > 20:
            lines.append(f"  ... and {len(ms) - 20} more (--json for all)")
    return "\n".join(lines)
