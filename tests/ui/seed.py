"""A realistic state store for the alerts page: 13 alerts of two shops across the five business
domains, written through the real ``StateStore`` API as the notify tasks would leave them.

``seed_state_store(store, now)`` builds every alert with ``lifecycle.transition`` (fired from an
observation whose ``detail`` is what the engine's breach carries: entity, metric, value, baseline,
threshold, bucket, metrics), escalates, acknowledges (``lifecycle.acknowledge``), silences (a
``mute.Silence`` stored with ``add_silence``, the alert held back with the reason the mute stage
gives) or resolves them, queues their notifications in the outbox (``enqueue``; most ``mark_sent``,
one still pending) and, when the store has them (``save_points``), the chart's points: one per
bucket, the metric drifting from its normal level into the breach.

Every time is relative to ``now`` (the tests pass a fixed ``T0``), so the same seed gives the same
rows whatever the date. The API reads the real clock; the only time that must hold against it is
the silence's: it started before ``now`` and ends ``SILENCE_LENGTH`` (ten years) later, so it is
active at any real date until then.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from threshold_operators.alerting.lifecycle import (
    Alert,
    AlertStatus,
    Event,
    Observation,
    acknowledge,
    escalate,
    notification_key,
    transition,
)
from threshold_operators.alerting.mute import Silence, Silences

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Shanghai: the instant the seed describes
SILENCE_LENGTH = timedelta(days=3650)
SHOPS = ("shop-01", "shop-02")


@dataclass(frozen=True)
class Spec:
    """One alert of the seed."""

    name: str  # what the tests call it
    rule_id: str
    entity: dict
    severity: str
    status: str  # firing, acknowledged, silenced, resolved
    metric: str
    value: float
    baseline: float | None
    threshold: float | None
    normal: float  # the metric's level before the breach (the chart's start)
    opened_hours: float  # fired this long before ``now``
    grain: timedelta = timedelta(hours=1)
    level: int = 1  # escalation level reached (people told)
    route: str = "ops_dingtalk"
    acknowledged_by: str | None = None
    metrics: dict = field(default_factory=dict)
    attributes: dict = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return self.rule_id.split(".", 1)[0]

    @property
    def shop(self) -> str:
        return self.entity["shop_id"]

    @property
    def entity_key(self) -> str:
        return "/".join(f"{k}={v}" for k, v in self.entity.items())


SPECS: tuple[Spec, ...] = (
    # inventory: the seed's story, a best-selling SKU running out of stock while it sells at 100x
    Spec("stock_cover_red", "inventory.stock_cover", {"shop_id": "shop-01", "sku": "SKU-BEA-000050"}, "red", "firing",
         "cover_days", 2.1, None, 3.0, 26.0, 3, grain=timedelta(minutes=5), level=2, route="purchasing_dingtalk",
         metrics={"stock": 420.0, "in_transit": 0.0, "daily_forecast": 200.0, "avg_14d": 16.0},
         attributes={"stock": 420, "in_transit": 0, "daily_forecast": 200.0, "supplier_id": "SUP-017"}),
    Spec("stock_cover_yellow", "inventory.stock_cover", {"shop_id": "shop-02", "sku": "SKU-HOM-000112"}, "yellow",
         "firing", "cover_days", 5.4, None, 7.0, 18.0, 9, grain=timedelta(minutes=5), route="purchasing_dingtalk",
         metrics={"stock": 162.0, "in_transit": 40.0, "daily_forecast": 30.0, "avg_14d": 28.5},
         attributes={"stock": 162, "in_transit": 40, "daily_forecast": 30.0, "supplier_id": "SUP-004"}),
    Spec("stock_cover_blue_acked", "inventory.stock_cover", {"shop_id": "shop-01", "sku": "SKU-TOY-000031"}, "blue",
         "acknowledged", "cover_days", 11.5, None, 15.0, 24.0, 20, grain=timedelta(minutes=5), route="email",
         acknowledged_by="chen.jie",
         metrics={"stock": 92.0, "in_transit": 0.0, "daily_forecast": 8.0, "avg_14d": 7.6},
         attributes={"stock": 92, "in_transit": 0, "daily_forecast": 8.0, "supplier_id": "SUP-009"}),
    # sales
    Spec("order_spike_red", "sales.order_spike", {"shop_id": "shop-01", "sku": "SKU-BEA-000050"}, "red", "firing",
         "orders", 96.0, 4.0, 3.0, 4.0, 2, level=1, metrics={"orders": 96.0, "ratio": 24.0}),
    Spec("order_drop_yellow", "sales.order_drop", {"shop_id": "shop-02"}, "yellow", "firing",
         "orders", 61.0, 148.0, 0.5, 150.0, 4, metrics={"orders": 61.0, "ratio": 0.41}),
    Spec("order_surge_blue", "sales.order_spike_sustained", {"shop_id": "shop-02", "sku": "SKU-ELE-000007"}, "blue",
         "firing", "orders", 14.0, 3.5, 3.0, 3.5, 5, route="email", metrics={"orders": 14.0, "ratio": 4.0}),
    # customer
    Spec("parcels_stale_red_acked", "customer.logistics_stale", {"shop_id": "shop-01", "warehouse_id": "WH-SH-01"},
         "red", "acknowledged", "stale_share", 0.27, None, 0.20, 0.01, 7, grain=timedelta(minutes=5), level=2,
         route="cs_dingtalk", acknowledged_by="wang.fang",
         metrics={"stale_parcels": 81.0, "parcels": 300.0}),
    Spec("review_burst_silenced", "customer.negative_review_burst", {"shop_id": "shop-02", "sku": "SKU-BAB-000019"},
         "yellow", "silenced", "negative_reviews", 9.0, 1.2, 4.75, 1.0, 6, route="cs_dingtalk",
         metrics={"negative_reviews": 9.0, "negative_share": 0.64}),
    # finance
    Spec("refund_rate_yellow", "finance.refund_rate", {"shop_id": "shop-01"}, "yellow", "firing",
         "refund_rate", 0.072, 0.031, 2.0, 0.03, 11, metrics={"refund_rate": 0.072, "orders": 1840.0}),
    Spec("payment_failure_red", "finance.payment_failure", {"shop_id": "shop-02", "gateway": "alipay"}, "red",
         "firing", "failure_rate", 0.38, None, 0.30, 0.04, 1, grain=timedelta(minutes=5), route="tech_dingtalk",
         metrics={"failures": 46.0, "attempts": 121.0}),
    Spec("complaint_spike_resolved", "finance.complaint_spike", {"shop_id": "shop-01", "batch_id": "B-2026-1107"},
         "red", "resolved", "complaints", 17.0, 2.0, 4.0, 2.0, 30, metrics={"complaints": 17.0}),
    # traffic
    Spec("conversion_drop_resolved", "traffic.conversion_drop", {"shop_id": "shop-01"}, "blue", "resolved",
         "conversion", 0.012, 0.029, 0.5, 0.029, 26, route="email", metrics={"conversion": 0.012, "visitors": 5200.0}),
    Spec("paid_quality_resolved", "traffic.paid_cost_quality", {"shop_id": "shop-02", "channel": "douyin"}, "yellow",
         "resolved", "cost_change_pct", 82.0, None, 50.0, 5.0, 40, metrics={"cost_change_pct": 82.0,
                                                                             "conversion_change_pct": -12.0}),
)

SILENCE_AUTHOR = "li.wei"
SILENCE_REASON = "双12预热差评集中，客服已逐单跟进 / Double 12 warm-up review burst, CS following up"
SEVERITY_ORDER = {"red": 3, "yellow": 2, "blue": 1}


@dataclass
class Seeded:
    """What the seed wrote: the alerts by name, the silence, the instant, for the tests to assert on."""

    now: datetime
    alerts: dict[str, Alert]
    specs: dict[str, Spec]
    silence: Silence
    notifications: int = 0
    points: int = 0

    def fp(self, name: str) -> str:
        return self.alerts[name].fingerprint

    def with_status(self, *statuses: str) -> dict[str, Alert]:
        return {n: a for n, a in self.alerts.items() if str(a.status) in statuses}


PRODUCTS = {"BEA": ("玻尿酸保湿精华 30ml", "Brand B · beauty"), "BAB": ("婴儿配方奶粉 1段 800g", "Brand A · infant_formula"),
            "FRE": ("冷链鲜牛奶 950ml", "Brand F · fresh_food")}  # by the SKU's category prefix
SHOPS = {"shop-01": "Storefence 旗舰店", "shop-02": "Storefence 母婴专营店"}


def _names(entity: dict) -> dict:
    """What the evaluate task finds in products and shops (``engine.names``) for the seed's entities."""
    names = {"shop": SHOPS[entity["shop_id"]]} if entity.get("shop_id") in SHOPS else {}
    product = PRODUCTS.get(str(entity.get("sku", ""))[4:7])
    if product:
        names |= {"entity": product[0], "about": product[1]}
    return names


def _detail(spec: Spec, bucket: datetime, index: int) -> dict:
    """What the engine's breach carries (``engine.evaluate.describe``) and the notify task adds."""
    return {"rule_id": spec.rule_id, "names": _names(spec.entity), "entity": dict(spec.entity), "entity_key": spec.entity_key,
            "bucket": bucket.isoformat(), "state": "firing", "severity": spec.severity, "metric": spec.metric,
            "value": spec.value, "baseline": spec.baseline, "threshold": spec.threshold,
            "metrics": {spec.metric: spec.value, **spec.metrics}, "attributes": dict(spec.attributes),
            "evaluated_by": {"dag_id": f"storefence_alerts_{spec.domain}",
                             "run_id": f"asset_triggered__{bucket:%Y-%m-%dT%H:%M:%S}+00:00",
                             "task_id": "evaluate", "notify_map_index": index}}


def _series(spec: Spec, first: datetime, last: datetime, resolved: datetime | None) -> list[dict]:
    """The chart's points, one per grain: 48 at the metric's ``normal`` level (a small, fixed
    wobble), drifting towards the breach over the last 12 of them, at ``value`` from the firing
    (``first``) to ``last``, back to normal after a resolution."""
    points = []
    before = 48
    for n in range(before + int((last - first) / spec.grain) + 1):
        t = first + (n - before) * spec.grain
        wobble = 1 + 0.04 * math.sin(n * 1.7)
        if t < first:
            drift = max(0.0, (n - (before - 12)) / 12)  # 0 until 12 buckets before the firing, then to ~1
            v, state = (spec.normal + (spec.value - spec.normal) * 0.8 * drift) * wobble, "resolved"
        elif resolved is not None and t >= resolved:
            v, state = spec.normal * wobble, "resolved"
        else:
            v, state = (spec.value if t == last else spec.value * wobble), "firing"
        points.append({"rule_id": spec.rule_id, "entity_key": spec.entity_key, "bucket": t, "state": state,
                       "severity": spec.severity if state == "firing" else None, "value": round(v, 6),
                       "baseline": spec.baseline, "threshold": spec.threshold})
    return points


@functools.cache
def _rule_names() -> dict[str, dict]:
    """Rule id -> its name {zh, en}, from the catalogue's files (include/rules/<domain>.yaml)."""
    import yaml

    names = {}
    for path in sorted((Path(__file__).resolve().parents[2] / "include" / "rules").glob("*.yaml")):
        for rule in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("rules") or []:
            if isinstance(rule, dict) and "id" in rule:
                names[rule["id"]] = rule.get("name") or {}
    return names


def _payload(spec: Spec, alert: Alert, event: Event, level: int) -> dict:
    """A message as ``alerting.messages`` words it (the titles the page's notifications table shows)."""
    name = _rule_names().get(spec.rule_id) or {}
    zh, en = name.get("zh", spec.rule_id), name.get("en", spec.rule_id)
    sev_zh = {"red": "红色", "yellow": "黄色", "blue": "蓝色"}[spec.severity]
    line = f"{spec.entity_key}: {spec.metric} {spec.value:.4g}"
    if event == Event.RESOLVED:
        title, title_en = f"[已恢复] {zh}", f"[resolved] {en}"
        text, text_en = f"【已恢复】{zh}：{line}", f"[resolved] {en}: {line}"
    else:
        title, title_en = f"【{sev_zh}预警】{zh}", f"[{spec.severity} alert] {en}"
        text, text_en = f"{title}\n- [{sev_zh}] {line}", f"{title_en}\n- [{spec.severity}] {line}"
    return {"title": title, "text": text, "title_en": title_en, "text_en": text_en, "severity": spec.severity,
            "links": [], "mentions": [], "emails": [],
            "data": {"fingerprint": alert.fingerprint, "event": str(event), "level": level}}


def seed_state_store(store, now: datetime = T0) -> Seeded:
    """Write the seed's alerts, silence, notifications and (if the store keeps them) chart points
    into ``store`` (a created ``StateStore``); what was written."""
    alerts: dict[str, Alert] = {}
    silence = Silence(SILENCE_AUTHOR, SILENCE_REASON, now - timedelta(hours=5), now + SILENCE_LENGTH,
                      rule="customer.negative_review_burst", entity="*sku=SKU-BAB-000019*", shop="shop-02",
                      id="5f1e0c0ffee1")
    silence = store.add_silence(silence, now - timedelta(hours=5))
    outbox, points = [], []
    for index, spec in enumerate(SPECS):
        fired_at = now - timedelta(hours=spec.opened_hours)
        first = fired_at.replace(minute=fired_at.minute - fired_at.minute % 5, second=0, microsecond=0)
        last = now - spec.grain if spec.status != "resolved" else now - timedelta(hours=spec.opened_hours / 2)
        obs = Observation(spec.rule_id, spec.entity_key, "firing", spec.severity, first, first + spec.grain,
                          _detail(spec, first, index))
        alert = transition(None, obs, fired_at).alert
        window_end = first + spec.grain
        outbox.append((alert, Event.FIRED, 1, window_end, fired_at))
        alert = replace(escalate(alert, 1, fired_at), notified_at=fired_at)
        for level in range(2, spec.level + 1):
            at = fired_at + timedelta(minutes=30 * (level - 1))
            alert = replace(escalate(alert, level, at), notified_at=at)
            outbox.append((alert, Event.FIRED, level, window_end, at))
        if spec.status == "acknowledged":  # someone took it soon after it fired
            alert = acknowledge(alert, spec.acknowledged_by, fired_at + timedelta(minutes=18)).alert
        elif spec.status == "silenced":  # held back by the mute stage once the silence began
            mute = Silences((silence,)).mutes(alert, None, now)
            assert mute is not None, "the seed's silence must match its alert"
            alert = replace(alert, status=AlertStatus.SILENCED, muted=mute.reason, updated_at=silence.starts_at)
        # the latest evaluation: still breaching (the status stays what it was)
        alert = transition(alert, Observation(spec.rule_id, spec.entity_key, "firing", spec.severity, last,
                                              last + spec.grain, _detail(spec, last, index)), last + spec.grain).alert
        resolved_at = None
        if spec.status == "resolved":
            resolved_at = last + spec.grain
            alert = transition(alert, Observation(spec.rule_id, spec.entity_key, "resolved", None, resolved_at,
                                                  resolved_at), resolved_at).alert
            outbox.append((alert, Event.RESOLVED, alert.escalation_level, resolved_at, resolved_at))
        assert str(alert.status) == spec.status, (spec.name, alert.status)
        alerts[spec.name] = alert
        points += _series(spec, first, resolved_at or last, resolved_at)

    store.save_many(alerts.values())
    names = {a.fingerprint: n for n, a in alerts.items()}
    written = 0
    for alert, event, level, window_end, at in outbox:
        spec = next(s for s in SPECS if s.name == names[alert.fingerprint])
        key = notification_key(alert, event, level, window_end)
        payload = _payload(spec, alert, event, level)
        if store.enqueue(key=f"{key}:{spec.route}", fingerprint=alert.fingerprint, event=str(event), level=level,
                         route=spec.route, payload=payload, now=at):
            written += 1
    # every notification was delivered, except the newest red alert's (it fired an hour ago: still queued)
    for row in store.notifications():
        if names[row["fingerprint"]] != "payment_failure_red":
            store.mark_sent(row["id"], row["created_at"] + timedelta(seconds=4))
    store.save_points(points, now)  # the chart's history (what the notify tasks record)
    return Seeded(now, alerts, {s.name: s for s in SPECS}, silence, written, len(points))


def clear_state_store(store) -> None:
    """Empty every table of the store (alerts, outbox, silences, points...), in one transaction."""
    from threshold_operators.alerting import store as store_module

    with store.transaction() as con:
        for table in reversed(store_module.metadata.sorted_tables):
            con.execute(table.delete())


def severity_rank(severity: str | None) -> int:
    return SEVERITY_ORDER.get(severity or "", 0)


if __name__ == "__main__":  # python -m tests.ui.seed <sqlite file>: a store to look at by hand
    import sys

    from threshold_operators.alerting.store import StateStore

    target = StateStore(url=f"sqlite:///{sys.argv[1]}")
    target.create()
    clear_state_store(target)
    done = seed_state_store(target)
    print(f"{len(done.alerts)} alerts, {done.notifications} notifications, {done.points} points in {sys.argv[1]}")
