"""What the notification task makes of a check's outcome: a message for people, or nothing.

Three cases, never confused: a live rule breached (the alert: what, where, how bad, what to
do); the rule could not be evaluated (an operational problem of Storefence, for the data
engineers: not a breach); nothing to say (no breach, a shadow rule, nothing new). Delivery,
deduplication and escalation of these messages are the alerting pipeline's (issue 5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SEVERITY_ZH = {"blue": "蓝色", "yellow": "黄色", "red": "红色"}


@dataclass
class Notification:
    kind: str  # "breach" or "evaluation_error"
    rule_id: str
    severity: str | None
    title: str
    text: str
    owner: str
    audience: list[str] = field(default_factory=list)
    breaches: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def compose(rule, evaluation: dict | None) -> Notification | None:
    """The notification for ``evaluation`` (the check task's XCom; None: the task left none)."""
    if evaluation is None:
        return Notification("evaluation_error", rule.id, None, f"[Storefence] {rule.id}: not evaluated",
                            "The check task ended without a result (killed or crashed before it could report). "
                            "See its log.", "data_engineering", ["data_engineering"])
    if evaluation.get("outcome") == "error":
        err = evaluation.get("error", {})
        return Notification("evaluation_error", rule.id, None,
                            f"[Storefence] {rule.id}: could not be evaluated ({err.get('kind')})",
                            err.get("message", ""), "data_engineering", ["data_engineering"])
    if evaluation.get("outcome") != "breach" or evaluation.get("mode") == "shadow":
        return None
    breaches = evaluation.get("breaches", [])
    order = {"red": 3, "yellow": 2, "blue": 1}
    top = max((b["severity"] for b in breaches), key=lambda s: order.get(s, 0), default=None)
    lines = [f"【{SEVERITY_ZH.get(top, top)}预警】{rule.name.zh} / {rule.name.en}",
             f"{evaluation.get('firing', len(breaches))} entities ({rule.entity}), "
             f"data {evaluation.get('window_start')} .. {evaluation.get('window_end')}:"]
    for b in breaches[:10]:
        base = f", baseline {b['baseline']:.4g}" if b.get("baseline") is not None else ""
        value = f"{b['value']:.4g}" if b.get("value") is not None else "n/a"
        thr = f", threshold {b['threshold']:g}" if b.get("threshold") is not None else ""
        lines.append(f"- [{b['severity']}] {b['entity_key']} @ {b['bucket']}: {b.get('metric')} {value}{base}{thr}")
    if len(breaches) > 10:
        lines.append(f"- ... and {len(breaches) - 10} more")
    lines += ["", f"What to do: {rule.runbook}"]
    return Notification("breach", rule.id, top, f"[{top}] {rule.name.zh} / {rule.name.en}", "\n".join(lines),
                        rule.owner, list(rule.audience), breaches)
