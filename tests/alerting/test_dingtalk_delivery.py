"""DingTalk delivery through the outbox, against a strict robot on loopback: signatures, vendor
error codes, an outage, the rate limit. Nothing lost, nothing sent twice, in order."""

from __future__ import annotations

import json
from datetime import timedelta

from tests.alerting.conftest import START
from tests.alerting.dingtalk_receiver import DingTalkReceiver
from threshold_operators.alerting.channels.base import Message
from threshold_operators.alerting.channels.dingtalk import DingTalkSender, signature
from threshold_operators.alerting.delivery import RetryPolicy, deliver_due


def _sender(receiver, clock, secret="SEC-robot-secret", monkeypatch=None):
    import requests

    return DingTalkSender(requests.Session(), receiver.url, "robot-token", secret, name="ops_dingtalk", clock=clock)


def _enqueue(store, n, now, route="ops_dingtalk"):
    for i in range(n):
        store.enqueue(key=f"k{i}", fingerprint=f"f{i}", event="fired", level=1, route=route,
                      payload={"title": f"[red] 爆单且库存告急 #{i}", "text": f"SKU-{i}: 库存仅够 5 小时", "mentions": ["13800000000"]},
                      now=now)


def test_the_signature_is_dingtalks():
    # DingTalk's documented construction: base64(HMAC-SHA256(secret, "timestamp\nsecret"))
    assert signature("SEC-x", 1700000000000) == "7vrvaBWyxepp65eVRc1Rd/KWUW/1goDo9jEqVqv8q2E="


def test_a_signed_markdown_message_with_mentions_arrives(clock):
    with DingTalkReceiver(clock=clock) as robot:
        result = _sender(robot, clock).send(Message("标题", "**红色预警**", ("13800000000",)))
    assert result.ok, result.error
    sent = robot.received[0]
    assert sent["msgtype"] == "markdown" and sent["markdown"]["title"] == "标题"
    assert sent["at"]["atMobiles"] == ["13800000000"] and "@13800000000" in sent["markdown"]["text"]


def test_a_vendor_error_in_a_200_reply_is_a_failure_and_a_bad_secret_is_not_retried(clock):
    with DingTalkReceiver(clock=clock) as robot:
        result = _sender(robot, clock, secret="SEC-wrong").send(Message("t", "x"))
    assert not result.ok and not result.retryable and "310000" in result.error
    assert "SEC-wrong" not in result.error and "robot-token" not in result.error  # no secret in messages


def test_an_outage_of_thirty_minutes_then_everything_once_in_order(store, clock):
    _enqueue(store, 5, clock.now)
    with DingTalkReceiver(clock=clock) as robot:
        sender = _sender(robot, clock)
        robot.down = True
        passes = 0
        while clock.now < START + timedelta(minutes=30):
            report = deliver_due(store, {"ops_dingtalk": sender}, clock.now)
            assert report.sent == [] and report.failed == []
            passes += 1
            clock.advance(minutes=1)
        robot.down = False
        for _ in range(30):  # the back-off may push the next attempt up to 10 minutes on
            deliver_due(store, {"ops_dingtalk": sender}, clock.now)
            clock.advance(minutes=1)
    titles = [m["markdown"]["title"] for m in robot.received]
    assert titles == [f"[red] 爆单且库存告急 #{i}" for i in range(5)]  # each once, in order
    assert {n["status"] for n in store.notifications()} == {"sent"}
    assert passes == 30


def test_the_rate_limit_delays_but_loses_nothing(store, clock):
    _enqueue(store, 45, clock.now)
    with DingTalkReceiver(clock=clock) as robot:
        sender = _sender(robot, clock)
        first = deliver_due(store, {"ops_dingtalk": sender}, clock.now)
        assert len(first.sent) == 20 and len(first.retrying) == 1 and first.held_back == 24
        for _ in range(10):
            clock.advance(minutes=1)
            deliver_due(store, {"ops_dingtalk": sender}, clock.now)
    assert len(robot.received) == 45 and robot.refused.count(130101) >= 1
    assert [m["markdown"]["title"] for m in robot.received] == [f"[red] 爆单且库存告急 #{i}" for i in range(45)]


def test_a_final_failure_goes_to_the_fallback_route(store, clock):
    _enqueue(store, 1, clock.now)
    with DingTalkReceiver(clock=clock) as robot:
        bad = _sender(robot, clock, secret="SEC-wrong")
        report = deliver_due(store, {"ops_dingtalk": bad}, clock.now, fallbacks={"ops_dingtalk": "ops_email"})
    assert report.failed and report.rerouted
    rows = store.notifications()
    assert [(r["route"], r["status"]) for r in rows] == [("ops_dingtalk", "failed"), ("ops_email", "pending")]
    assert "310000" in rows[0]["last_error"]


def test_the_retry_policy_backs_off_and_gives_up():
    p = RetryPolicy(first_delay=timedelta(seconds=30), factor=2, max_delay=timedelta(minutes=10), max_attempts=4)
    now = START
    assert [p.next_attempt(k, now) - now for k in (1, 2, 3)] == [timedelta(seconds=30), timedelta(minutes=1),
                                                                   timedelta(minutes=2)]
    assert p.next_attempt(4, now) is None
    assert RetryPolicy().next_attempt(11, now) - now == timedelta(minutes=10)


def test_a_sender_built_from_an_airflow_connection(monkeypatch, clock):
    with DingTalkReceiver(clock=clock) as robot:
        monkeypatch.setenv("AIRFLOW_CONN_OPS_DINGTALK", json.dumps(
            {"conn_type": "http", "host": robot.url, "password": "robot-token", "extra": {"secret": "SEC-robot-secret"}}))
        sender = DingTalkSender.from_connection("ops_dingtalk", clock=clock)
        assert sender.send(Message("t", "x")).ok


def test_the_robot_secret_never_travels_as_a_header(monkeypatch, clock):
    import requests

    seen = {}
    original = requests.Session.send

    def spy(self, request, **kw):
        seen.update(request.headers)
        return original(self, request, **kw)

    monkeypatch.setattr(requests.Session, "send", spy)
    with DingTalkReceiver(clock=clock) as robot:
        monkeypatch.setenv("AIRFLOW_CONN_OPS_DINGTALK", json.dumps(
            {"conn_type": "http", "host": robot.url, "login": "someone", "password": "robot-token",
             "extra": {"secret": "SEC-robot-secret"}}))
        assert DingTalkSender.from_connection("ops_dingtalk", clock=clock).send(Message("t", "x")).ok
    assert seen and "secret" not in {k.lower() for k in seen} and "Authorization" not in seen
    assert "SEC-robot-secret" not in " ".join(seen.values())


def test_an_action_sender_from_a_connection_authenticates_with_its_bearer_token_only(monkeypatch):
    from tests.alerting.action_endpoint import ActionEndpoint
    from threshold_operators.alerting.actions import ActionSender

    with ActionEndpoint() as api:
        monkeypatch.setenv("AIRFLOW_CONN_PROCUREMENT_API", json.dumps(
            {"conn_type": "http", "host": api.url, "login": "shop", "password": "api-key"}))
        sender = ActionSender.from_connection("procurement_api")
        body = {"idempotency_key": "k1", "schema": "storefence.purchase_suggestion/v1"}
        assert sender.send(Message("a", "", data={"endpoint": "/po", "body": body})).ok
    assert len(api.accepted) == 1  # the endpoint checks "Bearer api-key": no basic auth replaced it
