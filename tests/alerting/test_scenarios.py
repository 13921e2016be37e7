"""The issue's scenarios, end to end, on the SQLite and the PostgreSQL state store: real rules, real
evaluations, the pipeline, the escalation cycle and delivery to strict receivers on loopback
(DingTalk robots, the procurement and customer-service APIs), over simulated time.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
import requests

from tests.alerting.action_endpoint import ActionEndpoint
from tests.alerting.conftest import Clock
from tests.alerting.dingtalk_receiver import DingTalkReceiver
from threshold_operators.alerting.actions import ActionSender
from threshold_operators.alerting.channels.dingtalk import DingTalkSender
from threshold_operators.alerting.escalation import acknowledge_alert, run_cycle
from threshold_operators.alerting.lifecycle import fingerprint
from threshold_operators.alerting.pipeline import queue_notifications
from threshold_operators.alerting.routing import load_routing
from threshold_operators.engine.compile import compile_rule
from threshold_operators.engine.evaluate import evaluate, warehouse_query
from threshold_operators.operators.threshold_check import ThresholdCheckOperator
from threshold_operators.rules.catalogue import load_catalogue

H = timedelta(hours=1)
DIRECTOR, CS_SUPERVISOR, CS_AGENT = "13800000003", "13800000007", "13800000006"



class Pack:
    """The alerting side of the pack: routing.yaml, the catalogue, a store, receivers, a clock."""

    ROBOTS = ("ops_dingtalk", "purchasing_dingtalk", "cs_dingtalk", "tech_dingtalk")
    APIS = ("procurement_api", "cs_tasks", "ads_api")

    def __init__(self, store, clock: Clock, stack: contextlib.ExitStack):
        self.store, self.clock = store, clock
        self.routing = load_routing()
        self.catalogue = load_catalogue()
        self.rules = {rid: r.rule for rid, r in self.catalogue.rules.items()}
        self.components = {r.id: list(r.references) for r in self.rules.values() if r.references}
        self.robots = {n: stack.enter_context(DingTalkReceiver(clock=clock)) for n in self.ROBOTS}
        self.apis = {n: stack.enter_context(ActionEndpoint()) for n in self.APIS}
        self.senders = {n: DingTalkSender(requests.Session(), r.url, "robot-token", "SEC-robot-secret", name=n,
                                          clock=clock) for n, r in self.robots.items()}
        self.senders |= {f"action:{n}": ActionSender(requests.Session(), e.url, "api-key", name=f"action:{n}")
                         for n, e in self.apis.items()}

    def notify(self, rule_id: str, evaluation: dict):
        report = queue_notifications(self.rules[rule_id], evaluation, self.store, self.routing, self.clock.now,
                                     components=self.components)
        self.cycle()
        return report

    def cycle(self):
        return run_cycle(self.store, self.routing, self.rules, self.clock.now, senders=self.senders)

    def texts(self, robot: str) -> list[str]:
        return [m["markdown"]["text"] for m in self.robots[robot].received]

    def outbox(self) -> list[tuple]:
        return [(r["idempotency_key"], r["status"]) for r in self.store.notifications()]


@pytest.fixture
def pack(state_store):
    with contextlib.ExitStack() as stack:
        yield Pack(state_store, Clock(datetime(2026, 9, 7, 2, 5, tzinfo=UTC)), stack)  # 10:05 in Shanghai


def _evaluation(rule_id, end, breaches, *, outcome="breach", failing=None, checked=()):
    return {"rule_id": rule_id, "mode": "live", "outcome": outcome, "window_start": (end - H).isoformat(),
            "window_end": end.isoformat(), "firing": len(breaches), "resolved_entities": [],
            "failing_tables": failing or {}, "gates_checked": list(checked),
            "breaches": [{"entity_key": k, "entity": e, "severity": s, "bucket": (end - H).isoformat(),
                          "metric": "m", "value": 1.0, "baseline": None, "threshold": 1.0, "attributes": a}
                         for k, e, s, a in breaches]}


# --- the seed's mother-and-baby timeline ---------------------------------------------------------
def _replay(pack, hook, catalogue, start, hours, rules):
    """Hourly cycles as the DAGs run them: each rule evaluated, then its notify task, 10 minutes after
    the hour; the escalation cycle in between."""
    query = warehouse_query(hook)
    compiled = {rid: compile_rule(catalogue.get(rid), catalogue.get) for rid in rules}
    first_cycle = {}
    for k in range(hours):
        t = start + k * H
        pack.clock.now = t + H + timedelta(minutes=10)
        for rid in rules:
            ev = evaluate(compiled[rid], query, t, t + H, now=pack.clock.now)
            summary = ThresholdCheckOperator._summary(ev, catalogue.get(rid).rule) | {"failing_tables": {}}
            if summary["firing"]:
                first_cycle.setdefault(rid, t)
            pack.notify(rid, summary)
    return first_cycle


def test_mother_and_baby_spike_reaches_the_director_in_its_cycle_and_orders_once(pack, incident_shop_duckdb):
    hook, labels = incident_shop_duckdb
    inc = next(i for i in labels["incidents"] if i["id"] == "formula_spike_low_stock")
    start = datetime.fromisoformat(inc["start"]).replace(minute=0)
    rules = ("sales.order_spike", "inventory.stock_cover", "compound.spike_low_stock")
    first = _replay(pack, hook, pack.catalogue, start, 8, rules)

    assert first["compound.spike_low_stock"] == first["sales.order_spike"]  # the same evaluation cycle
    compound = [r for r in pack.store.notifications() if r["payload"]["data"].get("rule_id") == "compound.spike_low_stock"
                and r["event"] == "fired"]
    assert compound and all(r["level"] == 3 and DIRECTOR in r["payload"]["mentions"] for r in compound)
    assert compound[0]["status"] == "sent"  # delivered in the cycle that decided it
    told = [t for t in pack.texts("ops_dingtalk") if "爆单且库存告急" in t]
    assert told and any(sku in told[0] for sku in inc["skus"]) and f"@{DIRECTOR}" in told[0]

    suggested = [line for a in pack.apis["procurement_api"].accepted for line in a["body"]["lines"]]
    ordered = [x["sku"] for x in suggested if x["sku"] in inc["skus"]]
    assert ordered and len(ordered) == len(set(ordered))  # the brand's spiking SKUs: one suggestion each
    line = next(x for x in suggested if x["sku"] == ordered[0])
    assert line["quantity"] == pytest.approx(30 * line["daily_forecast"] - line["stock"] - line["in_transit"], abs=1)
    body = pack.apis["procurement_api"].accepted[0]["body"]
    assert body["schema"] == "storefence.purchase_suggestion/v1" and body["supplier_id"]

    # the same DAG runs cleared and re-run, then a backfill of the day: nothing new is queued or sent
    before = pack.outbox()
    received = {n: len(r.received) for n, r in pack.robots.items()}
    posted = len(pack.apis["procurement_api"].accepted)
    _replay(pack, hook, pack.catalogue, start, 8, rules)
    query = warehouse_query(hook)
    for rid in rules:
        loaded = pack.catalogue.get(rid)
        if loaded.current_state:
            continue  # a current-state metric has no history to backfill (docs/rules.md)
        ev = evaluate(compile_rule(loaded, pack.catalogue.get), query, start - 8 * H, start + 8 * H, now=pack.clock.now)
        pack.notify(rid, ThresholdCheckOperator._summary(ev, loaded.rule) | {"failing_tables": {}})
    new = [(r["event"], r["route"], r["payload"]["title_en"], r["payload"]["data"].get("entities"))
           for r in pack.store.notifications() if r["idempotency_key"] not in {k for k, _ in before}]
    assert not new, new
    assert {n: len(r.received) for n, r in pack.robots.items()} == received
    assert len(pack.apis["procurement_api"].accepted) == posted and pack.apis["procurement_api"].duplicates == 0


# --- a channel outage -------------------------------------------------------------------------------
def test_dingtalk_down_for_thirty_minutes_then_everything_once_in_order(pack):
    robot = pack.robots["ops_dingtalk"]
    robot.down = True
    sent_order = []
    for k in range(6):  # six rules' alerts while the robot is down, one every 5 minutes
        rid = ("sales.order_spike", "sales.order_drop")[k % 2]  # operations and marketing: both on ops_dingtalk
        end = pack.clock.now.replace(minute=0) - H * (6 - k)
        report = pack.notify(rid, _evaluation(rid, end, [(f"shop_id=shop-01/sku=SKU-{k}", {"sku": f"SKU-{k}"},
                                                          "yellow", {})]))
        assert report.queued >= 1
        sent_order.append(f"SKU-{k}")
        pack.clock.advance(minutes=5)
    while pack.clock.now < datetime(2026, 9, 7, 2, 35, tzinfo=UTC):
        pack.cycle()
        pack.clock.advance(minutes=2)
    assert robot.received == []
    robot.down = False
    for _ in range(10):  # the escalation DAG every two minutes; back-off is at most 10 minutes
        pack.clock.advance(minutes=2)
        pack.cycle()
    fired = [t for t in pack.texts("ops_dingtalk") if "预警" in t and "升级" not in t]
    assert [next(s for s in sent_order if f"sku={s}" in t) for t in fired] == sent_order  # once each, in order
    ops = [r for r in pack.store.notifications() if r["route"] == "ops_dingtalk"]
    assert {r["status"] for r in ops} == {"sent"} and all(r["attempts"] >= 2 for r in ops[:1])


# --- 10,000 SKUs at once ---------------------------------------------------------------------------
def test_ten_thousand_skus_under_cover_are_a_few_messages_within_the_rate_limit(pack):
    end = pack.clock.now.replace(minute=0)
    breaches = [(f"shop_id=shop-{i % 20:02d}/sku=SKU-{i:05d}", {"shop_id": f"shop-{i % 20:02d}", "sku": f"SKU-{i:05d}"},
                 "yellow", {"stock": 10, "in_transit": 0, "daily_forecast": 2.0, "supplier_id": f"SUP-{i % 7}"})
                for i in range(10_000)]
    report = pack.notify("inventory.stock_cover", _evaluation("inventory.stock_cover", end, breaches))
    assert report.events == {"fired": 10_000} and len(pack.store.list(active_only=True)) == 10_000  # none lost
    robot = pack.robots["purchasing_dingtalk"]
    assert len(robot.received) == 1 and "10000 个 SKU" in pack.texts("purchasing_dingtalk")[0]
    lines = [x for a in pack.apis["procurement_api"].accepted for x in a["body"]["lines"]]
    assert len(pack.apis["procurement_api"].accepted) == 7 and len(lines) == 10_000  # one order per supplier
    assert {x["quantity"] for x in lines} == {50}  # 30 days x 2 a day - 10 on hand
    for _ in range(24):  # two hours of escalation cycles: one grouped message per step, never refused
        pack.clock.advance(minutes=5)
        pack.cycle()
    assert robot.refused == [] and 2 <= len(robot.received) <= 4  # fired, L2 at 30 min, then yellow's ceiling
    assert {a.escalation_level for a in pack.store.list(active_only=True)} == {2}  # the director is not told of yellow


# --- an extract freshness failure: missing data explains a drop, never a spike ----------------------
def test_a_stale_extract_holds_back_the_drop_not_the_spikes_and_tells_the_data_engineers(pack):
    end = pack.clock.now.replace(minute=0)
    gate = {"kind": "freshness", "detail": "nothing newer than 2026-09-07T00:00; max_lag is 2:00:00",
            "observed_at": end.isoformat()}
    shop = [("shop_id=shop-01", {"shop_id": "shop-01"}, "red", {})]
    report = pack.notify("sales.order_drop", _evaluation("sales.order_drop", end, shop, failing={"orders": gate},
                                                         checked=["orders"]))
    assert report.muted == {"inhibition": 1} and report.events == {}
    held = pack.store.get(fingerprint("sales.order_drop", "shop_id=shop-01"))
    assert held.status == "silenced" and "orders" in held.muted and "missing data" in held.muted  # why, recorded
    assert pack.texts("ops_dingtalk") == []  # no "sales dropped 100%"
    for rid in ("sales.order_spike", "finance.refund_rate"):  # high values: missing rows cannot make them
        report = pack.notify(rid, _evaluation(rid, end, shop, failing={"orders": gate}, checked=["orders"]))
        assert report.muted == {} and report.events == {"fired": 1}
        alert = pack.store.get(fingerprint(rid, "shop_id=shop-01"))
        assert alert.status == "firing" and "orders failed its freshness gate" in alert.detail["data_incomplete"]
    told = [t for robot in pack.ROBOTS for t in pack.texts(robot)]
    assert len(told) == 2 and all("数据不完整" in t and "orders" in t for t in told)
    data = [r for r in pack.store.notifications() if r["event"] == "data_gate"]
    assert sorted(r["route"] for r in data) == ["data_webhook", "email"]  # once, to the data engineers
    assert "orders" in data[0]["payload"]["text"] and "sales.order_drop" in data[0]["payload"]["text_en"]
    # the extract recovers, the drop is real after all: told now; the data engineers hear it passes, once
    report = pack.notify("sales.order_drop", _evaluation("sales.order_drop", end + H, shop, checked=["orders"]))
    drops = [t for t in pack.texts("ops_dingtalk") if "订单骤降" in t]
    assert report.events == {"fired": 1} and len(drops) == 1 and "数据不完整" not in drops[0]
    pack.notify("sales.order_spike", _evaluation("sales.order_spike", end + H, shop, checked=["orders"]))
    passed = [r for r in pack.store.notifications() if r["event"] == "data_gate_resolved"]
    assert sorted(r["route"] for r in passed) == ["data_webhook", "email"]


def test_a_persisting_gate_failure_is_told_once_repeated_per_interval_and_resolved_once(pack):
    """Ten failing extract runs in a row, each seen by the checks of two rules: one message to the data
    engineers, a repeat every escalation.repeat (4h) while nobody acknowledges, one when it passes."""
    shop = [("shop_id=shop-01", {"shop_id": "shop-01"}, "red", {})]

    def check(rid, failing):
        end = pack.clock.now.replace(minute=0, second=0)
        return pack.notify(rid, _evaluation(rid, end, shop, failing=failing, checked=["order_items"]))

    for run in range(10):
        pack.clock.advance(minutes=5)
        gate = {"kind": "quality", "detail": f"40 of 300 rows refused into quarantine (run {run})",
                "observed_at": pack.clock.now.isoformat()}
        check("sales.order_spike", {"order_items": gate})
        check("inventory.stock_cover", {"order_items": gate})

    def told(event):
        return [r for r in pack.store.notifications() if r["event"] == event and r["route"] == "data_webhook"]

    assert len(told("data_gate")) == 1
    text = told("data_gate")[0]["payload"]["text_en"]
    assert "order_items" in text and "sales.order_spike" in text
    gate_fp = told("data_gate")[0]["fingerprint"]
    assert pack.store.get(gate_fp).rule_id == "quality.order_items.quality"
    assert pack.store.get(gate_fp).detail["held"] == ["inventory.stock_cover"]
    for _ in range(9):  # 4.5 hours more of failing runs, every 30 minutes
        pack.clock.advance(minutes=30)
        gate = {"kind": "quality", "detail": "still refusing", "observed_at": pack.clock.now.isoformat()}
        check("sales.order_spike", {"order_items": gate})
    repeats = [r for r in told("repeat") if r["payload"]["data"]["rule_id"] == "quality.order_items.quality"]
    assert len(repeats) == 1 and "still failing" in repeats[0]["payload"]["text_en"]
    assert pack.store.get(gate_fp).escalation_level == 1  # repeated, never escalated up the ladder
    pack.clock.advance(minutes=5)
    check("sales.order_spike", {})  # the table passes
    check("inventory.stock_cover", {})
    assert len(told("data_gate_resolved")) == 1 and pack.store.get(gate_fp).status == "resolved"
    assert len(told("data_gate")) == 1


# --- an unanswered negative review -----------------------------------------------------------------
def test_an_unanswered_negative_review_climbs_every_two_hours_until_acknowledged(pack):
    end = pack.clock.now.replace(minute=0)
    rid = "customer.negative_review"
    review = [("shop_id=shop-01/sku=SKU-BEA-000050", {"shop_id": "shop-01", "sku": "SKU-BEA-000050"}, "blue", {}),
              ("shop_id=shop-01/sku=SKU-BEA-000051", {"shop_id": "shop-01", "sku": "SKU-BEA-000051"}, "blue", {})]
    pack.notify(rid, _evaluation(rid, end, review))
    started = pack.clock.now
    acked = fingerprint(rid, review[1][0])
    steps = []
    while pack.clock.now < started + 7 * H:
        pack.clock.advance(minutes=10)
        if pack.clock.now - started == H:
            acknowledge_alert(pack.store, acked[:8], "liu.yang", pack.clock.now)
        steps += [(pack.clock.now - started, lv) for _, lv in pack.cycle().escalated]
    # the SLA is 2 hours; the acknowledged review never climbs; the seed has the customer-service
    # supervisor act, not the director (routing.yaml: rule_ceiling 2 for this blue rule)
    assert steps == [(2 * H, 2)]
    texts = pack.texts("cs_dingtalk")
    assert f"@{CS_AGENT}" in texts[0] and f"@{CS_SUPERVISOR}" in texts[1]
    assert not any(f"@{DIRECTOR}" in t for t in texts)  # only the supervisor's repeat after 4 hours follows
    assert all(f"@{CS_SUPERVISOR}" in t for t in texts[2:])
    assert "000050" in texts[1] and "000051" not in texts[1]
    tasks = pack.apis["cs_tasks"].accepted
    assert len(tasks) == 2 and tasks[0]["body"]["schema"] == "storefence.cs_task/v1"  # one task per review
    assert tasks[0]["body"]["due_within_hours"] == 2


# --- a SKU replenished: resolved once, no more escalation (issue 11, part 3) ----------------------
def test_a_replenished_sku_is_told_resolved_once_and_stops_escalating(pack, tmp_path):
    from tests.engine.stock_shop import T0, load_stock_shop, replenish
    from threshold_operators.engine.gates import failing_tables
    from threshold_operators.engine.record import live_evaluation, record
    from threshold_operators.warehouse.hook import WarehouseHook

    hook = WarehouseHook(url=f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    load_stock_shop(hook)
    replenish(hook, T0 + 2 * H + timedelta(minutes=30), 600)  # 50 days of cover from the third hour
    rid = "inventory.stock_cover"
    loaded = pack.catalogue.get(rid)
    compiled = compile_rule(loaded, pack.catalogue.get)
    fp = fingerprint(rid, "shop_id=shop-01/sku=SKU-LOW")
    levels = []
    for k in range(6):  # the hourly check + notify tasks, the escalation DAG every 10 minutes in between
        start = T0 + k * H
        pack.clock.now = start + H + timedelta(minutes=10)
        ev = live_evaluation(hook, compiled, start, start + H, pack.clock.now, failing_tables(hook, loaded.tables))
        record(hook, ev, loaded.rule, f"cycle-{k}")
        pack.notify(rid, ThresholdCheckOperator._summary(ev, loaded.rule) | {"failing_tables": {}})
        for _ in range(5):
            pack.clock.advance(minutes=10)
            pack.cycle()
        levels.append((pack.store.get(fp).status, pack.store.get(fp).escalation_level))
    hook.engine.dispose()
    assert [s for s, _ in levels] == ["firing", "firing", "resolved", "resolved", "resolved", "resolved"]
    level = levels[1][1]
    assert level >= 2 and all(lv == level for _, lv in levels[2:])  # escalated while firing, never after
    for _ in range(4 * 24):  # a day of escalation cycles: no repeat, no escalation of a resolved alert
        pack.clock.advance(minutes=15)
        pack.cycle()
    texts = pack.texts("purchasing_dingtalk")
    assert sum("已恢复" in t for t in texts) == 1  # told "resolved" once
    resolved_at = next(i for i, t in enumerate(texts) if "已恢复" in t)
    assert resolved_at == len(texts) - 1  # and nothing about it after
    assert pack.store.get(fp).status == "resolved" and pack.store.get(fp).escalation_level == level
