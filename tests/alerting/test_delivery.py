"""Delivery stages alone, against the strict DingTalk robot and the action endpoint on loopback:
throttle and batch, claims between two deliverers, the channel's language, dry runs, actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import requests

from tests.alerting.action_endpoint import ActionEndpoint
from tests.alerting.conftest import Clock
from tests.alerting.dingtalk_receiver import DingTalkReceiver
from threshold_operators.alerting.actions import ActionSender, action_requests, purchase_lines
from threshold_operators.alerting.channels.dingtalk import DingTalkSender
from threshold_operators.alerting.delivery import deliver_due
from threshold_operators.alerting.messages import Text
from threshold_operators.rules.catalogue import load_catalogue

NOW = datetime(2026, 8, 16, 7, 31, tzinfo=UTC)


def _queue(store, n, route="ops_dingtalk", **payload):
    for i in range(n):
        text = Text(f"[yellow] 订单激增 #{i}", f"SKU-{i}: 订单激增", f"[yellow] Order spike #{i}", f"SKU-{i}: order spike",
                    "yellow")
        store.enqueue(key=f"k{i}", fingerprint=f"f{i}", event="fired", level=1, route=route,
                      payload=text.payload(mentions=["13800000001"]) | payload, now=NOW)


def _robot_sender(robot, clock):
    return DingTalkSender(requests.Session(), robot.url, "robot-token", "SEC-robot-secret", name="ops_dingtalk",
                          clock=clock)


def test_the_throttle_batches_a_burst_within_the_robots_limit_in_order(store):
    clock = Clock()
    _queue(store, 45)
    with DingTalkReceiver(clock=clock) as robot:
        report = deliver_due(store, {"ops_dingtalk": _robot_sender(robot, clock)}, clock.now,
                             rate_limits={"ops_dingtalk": 20})
    assert robot.refused == [] and report.requests == len(robot.received) <= 20  # never over the limit
    assert len(report.sent) == 45 and report.throttled == 0
    texts = "\n".join(m["markdown"]["text"] for m in robot.received)
    assert [texts.index(f"SKU-{i}:") for i in range(45)] == sorted(texts.index(f"SKU-{i}:") for i in range(45))
    assert "条汇总" in robot.received[0]["markdown"]["title"]


def test_without_batching_the_throttle_holds_the_rest_for_the_next_minute(store):
    clock = Clock()
    _queue(store, 45)
    with DingTalkReceiver(clock=clock) as robot:
        sender = {"ops_dingtalk": _robot_sender(robot, clock)}
        first = deliver_due(store, sender, clock.now, rate_limits={"ops_dingtalk": 20}, batch=False)
        assert len(first.sent) == 20 and first.throttled == 25
        again = deliver_due(store, sender, clock.now + timedelta(seconds=30), rate_limits={"ops_dingtalk": 20},
                            batch=False)
        assert again.sent == [] and again.throttled == 25  # the same minute: nothing more
        clock.now += timedelta(seconds=61)
        later = deliver_due(store, sender, clock.now, rate_limits={"ops_dingtalk": 20}, batch=False)
    assert len(later.sent) == 20 and robot.refused == []


def test_a_claimed_notification_is_left_to_its_deliverer(store):
    _queue(store, 1)
    row = store.pending()[0]
    assert store.claim(row["id"], NOW) and not store.claim(row["id"], NOW + timedelta(seconds=10))
    clock = Clock()
    with DingTalkReceiver(clock=clock) as robot:
        busy = deliver_due(store, {"ops_dingtalk": _robot_sender(robot, clock)}, NOW + timedelta(seconds=10))
        assert busy.sent == [] and robot.received == []  # another deliverer holds it
        late = deliver_due(store, {"ops_dingtalk": _robot_sender(robot, clock)}, NOW + timedelta(minutes=3))
    assert len(late.sent) == 1 and len(robot.received) == 1  # its lease ran out (the deliverer died): sent once


def test_a_channel_set_to_english_gets_the_english_text(store):
    clock = Clock()
    _queue(store, 1)
    with DingTalkReceiver(clock=clock) as robot:
        deliver_due(store, {"ops_dingtalk": _robot_sender(robot, clock)}, NOW, languages={"ops_dingtalk": "en"})
    assert robot.received[0]["markdown"]["title"] == "[yellow] Order spike #0"


def test_a_dry_run_is_recorded_and_never_sent(store):
    _queue(store, 1, route="action:ads_api", dry_run=True)
    report = deliver_due(store, {}, NOW)
    assert report.dry_run and store.notifications()[0]["status"] == "dry_run"


def test_purchase_quantity_is_target_cover_times_forecast_less_stock_and_in_transit():
    breaches = [{"entity": {"shop_id": "s1", "sku": "A"}, "severity": "red", "fingerprint": "fa",
                 "attributes": {"stock": 12, "in_transit": 20, "daily_forecast": 6.5, "supplier_id": "SUP-1"}},
                {"entity": {"shop_id": "s1", "sku": "B"}, "severity": "blue", "fingerprint": "fb",
                 "attributes": {"stock": 500, "in_transit": 0, "daily_forecast": 1, "supplier_id": "SUP-1"}}]
    lines = purchase_lines(breaches, 30)
    assert [(x["sku"], x["quantity"]) for x in lines["SUP-1"]] == [("A", 163)]  # ceil(195 - 12 - 20); B has enough


def test_actions_post_once_with_their_idempotency_key():
    cat = load_catalogue()
    paid = cat.get("traffic.paid_cost_quality").rule
    ads = action_requests(paid, paid.actions[0], [{"entity": {"shop_id": "s1", "channel": "feed"}, "severity": "yellow",
                                                   "fingerprint": "fp", "entity_key": "shop_id=s1/channel=feed"}],
                          "2026-09-07T02:00:00+00:00", 0.5)
    assert ads[0]["dry_run"] and ads[0]["body"]["dry_run"] and ads[0]["body"]["channel"] == "feed"
    assert ads[0]["body"]["reason"] == f"{paid.name.en}: {paid.description_in('en')}"  # the English of the reason
    review = cat.get("customer.negative_review").rule
    [task] = action_requests(review, review.actions[0], [{"entity": {"sku": "X"}, "severity": "blue",
                                                          "fingerprint": "fx", "entity_key": "sku=X"}],
                             "2026-09-07T02:00:00+00:00", 2)
    assert task["body"]["description"] == review.runbook_in("zh")  # Chinese, like the task's title
    with ActionEndpoint() as api:
        sender = ActionSender(requests.Session(), api.url, "api-key")
        from threshold_operators.alerting.channels.base import Message

        msg = Message("cs_task", "", data={"endpoint": "/tasks", "body": task["body"]})
        assert sender.send(msg).ok and sender.send(msg).ok  # the second: 409 from the API, done already
        bad = ActionSender(requests.Session(), api.url, "wrong-key").send(msg)
    assert len(api.accepted) == 1 and api.duplicates == 1 and api.accepted[0]["path"] == "/tasks"
    assert api.accepted[0]["key"] == task["key"] and not bad.ok and not bad.retryable and "wrong-key" not in bad.error
