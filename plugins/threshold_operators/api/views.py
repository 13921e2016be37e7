"""What the alerts page shows, from the state store's alerts: pure functions, no I/O.

The page (``plugins/threshold_operators/ui``) asks the API for one *view*: a status tab, filters
(shop, domain, rule, severities, entity text) and a limit. ``alert_view`` answers with the counts
by state (every tab, same filters) and by severity (this tab), the facets to filter on, and the
rows, red first, then the newest. ``AlertRow`` is one alert as the page draws it: the entity's
key columns, its shop, the value against baseline and threshold of the latest observation, who
holds it now (the acknowledger, or the people of its escalation level, ``{"zh", "en"}`` as rule
names are: the page shows its own language) and why it is muted.

Alertmanager and Karma are the models: filters are data in the URL, the server counts, the page
groups (by domain and rule) and never sees more rows than it can draw (``truncated``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from threshold_operators.alerting.lifecycle import SEVERITY_ORDER, Alert, AlertStatus
from threshold_operators.alerting.messages import names_of

TABS: dict[str, AlertStatus] = {"firing": AlertStatus.FIRING, "acknowledged": AlertStatus.ACKNOWLEDGED,
                                "muted": AlertStatus.SILENCED, "resolved": AlertStatus.RESOLVED}
TAB_OF: dict[AlertStatus, str] = {status: tab for tab, status in TABS.items()}
SEVERITIES = ("red", "yellow", "blue")
LANGUAGES = ("zh", "en")
# the escalation ladder's roles ("一级警报只通知执行人员……三级警报才惊动总监"), for a level naming nobody
LEVEL_ROLES = {1: {"zh": "执行人员", "en": "executor"}, 2: {"zh": "主管", "en": "supervisor"},
               3: {"zh": "总监", "en": "director"}}


@dataclass(frozen=True)
class AlertFilter:
    """A view of the alerts: ``tab`` (None: every active alert) and filters (None or empty: any)."""

    tab: str | None = None
    shop: str | None = None
    domain: str | None = None
    rule: str | None = None
    severities: tuple[str, ...] = ()
    text: str | None = None  # a case-insensitive substring of the entity key or the rule id
    resolved: bool = False  # no tab: the resolved alerts too

    def matches(self, a: Alert, *, any_tab: bool = False) -> bool:
        if not any_tab and self.tab is not None and a.status != TABS[self.tab]:
            return False
        if self.shop and shop_of(a.entity_key) != self.shop:
            return False
        if self.domain and domain_of(a.rule_id) != self.domain:
            return False
        if self.rule and a.rule_id != self.rule:
            return False
        if self.severities and (a.severity or "") not in self.severities:
            return False
        return not self.text or self.text.lower() in f"{a.rule_id} {a.entity_key}".lower()


def entity_of(entity_key: str) -> dict[str, str]:
    """``shop_id=S1/sku=SKU-1`` as ``{"shop_id": "S1", "sku": "SKU-1"}`` (a part without ``=`` is kept
    under its position). Pure."""
    out = {}
    for i, part in enumerate(entity_key.split("/")):
        name, eq, value = part.partition("=")
        out[name if eq else str(i)] = value if eq else part
    return out


def shop_of(entity_key: str) -> str | None:
    return entity_of(entity_key).get("shop_id")


def domain_of(rule_id: str) -> str:
    return rule_id.split(".", 1)[0]


def order_key(a: Alert) -> tuple:
    """Red first, then yellow, blue, none; within a severity the newest first."""
    return (-SEVERITY_ORDER.get(a.severity or "", 0), -a.opened_at.timestamp(), a.rule_id, a.entity_key)


def alert_row(a: Alert, names: Callable[[str], dict | None], held_by: Callable[[Alert], dict[str, str] | None],
              why_muted: Callable[[Alert], str | None] | None = None) -> dict:
    """One alert as the page draws it (``names``: rule id -> ``{"zh", "en"}`` or None; ``held_by``:
    alert -> ``{"zh", "en"}`` or None; ``why_muted``: why it is held back or its messages wait,
    default its stored reason)."""
    d = a.detail or {}
    rule_names = names(a.rule_id) or {"zh": a.rule_id, "en": a.rule_id}
    entity = d.get("entity") if isinstance(d.get("entity"), dict) else entity_of(a.entity_key)
    return {
        "fingerprint": a.fingerprint, "rule_id": a.rule_id, "rule_name": rule_names["zh"], "rule_names": rule_names,
        "domain": domain_of(a.rule_id), "entity_key": a.entity_key, "entity": entity,
        "shop": shop_of(a.entity_key), "entity_names": d.get("names") if isinstance(d.get("names"), dict) else None,
        "status": str(a.status), "severity": a.severity,
        "metric": d.get("metric"), "value": d.get("value"), "baseline": d.get("baseline"),
        "threshold": d.get("threshold"), "first_bucket": a.first_bucket, "last_bucket": a.last_bucket,
        "opened_at": a.opened_at, "updated_at": a.updated_at, "escalation_level": a.escalation_level,
        "held_by": held_by(a), "acknowledged_by": a.acknowledged_by, "acknowledged_at": a.acknowledged_at,
        "resolved_at": a.resolved_at, "muted": why_muted(a) if why_muted else a.muted,
        "data_incomplete": d.get("data_incomplete"),
    }


def alert_view(alerts: Iterable[Alert], view: AlertFilter, limit: int, names, held_by, why_muted=None) -> dict:
    """The page's answer for ``view``: counts, facets, and the first ``limit`` rows in order."""
    alerts = list(alerts)
    by_state: Counter = Counter({tab: 0 for tab in TABS})
    by_severity: Counter = Counter({s: 0 for s in SEVERITIES})
    shown = []
    for a in alerts:
        if not view.matches(a, any_tab=True):
            continue
        by_state[TAB_OF[a.status]] += 1
        if view.tab is None and a.status == AlertStatus.RESOLVED and not view.resolved:
            continue  # no tab: the active alerts
        if view.matches(a):
            shown.append(a)
            if a.severity:
                by_severity[a.severity] += 1
    shown.sort(key=order_key)
    return {
        "tab": view.tab, "total": len(shown), "truncated": len(shown) > limit,
        "counts": {"by_state": dict(by_state), "by_severity": dict(by_severity)},
        "facets": {"shops": sorted({s for a in alerts if (s := shop_of(a.entity_key))}),
                   "domains": sorted({domain_of(a.rule_id) for a in alerts}),
                   "rules": sorted({a.rule_id for a in alerts})},
        "alerts": [alert_row(a, names, held_by, why_muted) for a in shown[:limit]],
    }


def held_by(a: Alert, recipients: Callable[[str, int], list]) -> dict[str, str] | None:
    """Who has the alert now, ``{"zh": ..., "en": ...}``: its acknowledger (the same text in both);
    else the people told at its escalation level (``recipients(rule_id, level)``: their routing.yaml
    names, ``rules.model.Localized``, each language named as messages name them), or the level's
    role when it names nobody; None before anybody was told."""
    if a.status == AlertStatus.ACKNOWLEDGED and a.acknowledged_by:
        return {lang: a.acknowledged_by for lang in LANGUAGES}
    if a.status == AlertStatus.RESOLVED or a.escalation_level < 1:
        return None
    people = recipients(a.rule_id, a.escalation_level)
    if people:
        return {lang: names_of(people, lang) for lang in LANGUAGES}
    role = LEVEL_ROLES.get(a.escalation_level, {})
    return {lang: f"L{a.escalation_level} ({role.get(lang, '?')})" for lang in LANGUAGES}


def chart_since(a: Alert, days: int = 14) -> datetime:
    """Where an alert's chart starts: ``days`` before its latest data, or its first breach if earlier."""
    from datetime import timedelta

    return min(a.first_bucket, a.last_bucket - timedelta(days=days))
