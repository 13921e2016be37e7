"""Every channel sender against a strict receiver on loopback (a real SMTP server for email): the
message arrives intact, a vendor's error code in a 200 reply is a failure with the right retry
decision, an outage is retried, a sender is built from a real Airflow connection, no secret ever
appears in a result, and the outbox delivers through each one."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from tests.alerting.receivers import (
    FeishuReceiver,
    SlackReceiver,
    SmsProviderReceiver,
    SmtpServer,
    WebhookReceiver,
    WeComReceiver,
)
from threshold_operators.alerting.channels import SENDERS, sender_class, sender_for, senders_for
from threshold_operators.alerting.channels.base import Message
from threshold_operators.alerting.channels.email import EmailSender
from threshold_operators.alerting.channels.feishu import FeishuSender, signature
from threshold_operators.alerting.channels.layout import sms_segments
from threshold_operators.alerting.channels.markdown import plain, slack_mrkdwn, to_html
from threshold_operators.alerting.channels.slack import SlackSender
from threshold_operators.alerting.channels.sms import SmsSender, VoiceSender, sms_text, voice_text
from threshold_operators.alerting.channels.webhook import WebhookSender
from threshold_operators.alerting.channels.wecom import WeComSender
from threshold_operators.alerting.delivery import deliver_due

ACK = ("确认 / Acknowledge", "https://ack.shop.example/ack?t=abc&f=1")
RUNBOOK = ("Runbook", "https://wiki.shop.example/runbooks/stock-cover")
MSG = Message("[红色] 爆单且库存告急", "**SKU-1**：库存仅够 5 小时\n- 仓库：华东一仓\n- 日销 1,200 件\n\n处理：联系供应商补货",
              ("13800000000", "13900000000"), {"rule": "inventory.stock_cover", "value": 5.0, "entity": "SKU-1"},
              ("ops@shop.example", "buyer@shop.example"), "red", (ACK, RUNBOOK))




def _conn(monkeypatch, conn_id: str, **conn):
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def _enqueue(store, route: str, n: int, now, **payload):
    for i in range(n):
        store.enqueue(key=f"{route}-k{i}", fingerprint=f"f{i}", event="fired", level=1, route=route,
                      payload={"title": f"[红色] 爆单且库存告急 #{i}", "text": f"SKU-{i}：库存仅够 5 小时",
                               "title_en": f"[red] stock out soon #{i}", "text_en": f"SKU-{i}: 5 hours of stock",
                               "severity": "red", "links": [list(ACK)], "data": {"sku": f"SKU-{i}"},
                               **payload}, now=now)


def _deliver_through_an_outage(store, route, sender, receiver, clock):
    """Down for 10 minutes, then back: every notification once, in order, all marked sent."""
    receiver.down = True
    for _ in range(10):
        report = deliver_due(store, {route: sender}, clock.now)
        assert report.sent == [] and report.failed == []
        clock.advance(minutes=1)
    receiver.down = False
    for _ in range(15):
        deliver_due(store, {route: sender}, clock.now)
        clock.advance(minutes=1)
    assert {n["status"] for n in store.notifications()} == {"sent"}


# --- WeCom -------------------------------------------------------------------------------------

def _wecom(robot, clock, key="wecom-key"):
    return WeComSender(requests.Session(), robot.url, key, name="ops_wecom", clock=clock)


def test_wecom_a_markdown_message_with_links_and_mentions_arrives(clock):
    with WeComReceiver(clock=clock) as robot:
        result = _wecom(robot, clock).send(MSG)
    assert result.ok, result.error
    content = robot.received[0]["markdown"]["content"]
    assert content.startswith("### [红色] 爆单且库存告急\n**SKU-1**：库存仅够 5 小时")
    assert f"[{ACK[0]}]({ACK[1]})" in content and f"[Runbook]({RUNBOOK[1]})" in content
    assert "@13800000000" in content and "@13900000000" in content


def test_wecom_a_long_message_is_cut_to_4096_bytes_and_keeps_its_links(clock):
    long = Message("长消息", "库存告急 " * 2000, ("13800000000",), links=(ACK,))
    with WeComReceiver(clock=clock) as robot:
        assert _wecom(robot, clock).send(long).ok
    content = robot.received[0]["markdown"]["content"]
    assert len(content.encode()) <= 4096 and ACK[1] in content and content.endswith("@13800000000")


def test_wecom_vendor_errors_in_a_200_reply(clock):
    with WeComReceiver(clock=clock) as robot:
        bad = _wecom(robot, clock, key="wrong-key").send(MSG)
        robot.busy = True
        busy = _wecom(robot, clock).send(MSG)
        robot.busy = False
        sender = _wecom(robot, clock)
        results = [sender.send(MSG) for _ in range(21)]
    assert not bad.ok and not bad.retryable and "93000" in bad.error and "wrong-key" not in bad.error
    assert not busy.ok and busy.retryable and "errcode -1" in busy.error
    assert all(r.ok for r in results[:20])
    assert not results[20].ok and results[20].retryable and "45009" in results[20].error


def test_wecom_an_outage_is_retried(clock):
    with WeComReceiver(clock=clock) as robot:
        robot.down = True
        down = _wecom(robot, clock).send(MSG)
    gone = _wecom(robot, clock).send(MSG)  # the server is closed: connection refused
    assert not down.ok and down.retryable and "503" in down.error
    assert not gone.ok and gone.retryable and gone.error == "ConnectionError"


def test_wecom_from_an_airflow_connection(monkeypatch, clock):
    with WeComReceiver(clock=clock) as robot:
        _conn(monkeypatch, "ops_wecom", conn_type="http", host=robot.url, password="wecom-key")
        sender = WeComSender.from_connection("ops_wecom", clock=clock)
        assert sender.name == "ops_wecom" and sender.send(MSG).ok


def test_wecom_outbox_delivery(store, clock):
    _enqueue(store, "ops_wecom", 3, clock.now, mentions=["13800000000"])
    with WeComReceiver(clock=clock) as robot:
        _deliver_through_an_outage(store, "ops_wecom", _wecom(robot, clock), robot, clock)
    assert [m["markdown"]["content"].splitlines()[0] for m in robot.received] == \
        [f"### [红色] 爆单且库存告急 #{i}" for i in range(3)]


# --- Feishu ------------------------------------------------------------------------------------

def _feishu(bot, clock, secret="feishu-secret", token="feishu-token"):
    return FeishuSender(requests.Session(), bot.url, token, secret, name="ops_feishu", clock=clock)


def test_feishu_signature_is_the_documented_construction():
    # base64(HMAC-SHA256(key="timestamp\nsecret", msg=b"")), timestamp in seconds
    import base64
    import hashlib
    import hmac

    expected = base64.b64encode(hmac.new(b"1700000000\nSEC", b"", hashlib.sha256).digest()).decode()
    assert signature("SEC", 1700000000) == expected


def test_feishu_a_signed_card_with_buttons_arrives(clock):
    with FeishuReceiver(clock=clock) as bot:
        result = _feishu(bot, clock).send(MSG)
    assert result.ok, result.error
    sent = bot.received[0]
    assert sent["timestamp"] == str(int(clock())) and sent["msg_type"] == "interactive"
    card = sent["card"]
    assert card["header"]["title"]["content"] == "[红色] 爆单且库存告急" and card["header"]["template"] == "red"
    text = card["elements"][0]["content"]
    assert "库存仅够 5 小时" in text and "@13800000000 @13900000000" in text
    buttons = card["elements"][1]["actions"]
    assert [(b["text"]["content"], b["url"]) for b in buttons] == [ACK, RUNBOOK]
    assert not any(k.lower() == "secret" for k in bot.headers[0])


def test_feishu_an_unsigned_bot_and_the_legacy_reply(clock):
    with FeishuReceiver(secret=None, clock=clock, legacy=True) as bot:
        assert _feishu(bot, clock, secret=None).send(MSG).ok
    assert "sign" not in bot.received[0]


def test_feishu_vendor_errors_in_a_200_reply(clock):
    with FeishuReceiver(clock=clock, per_minute=2) as bot:
        wrong = _feishu(bot, clock, secret="wrong-secret").send(MSG)
        late = FeishuSender(requests.Session(), bot.url, "feishu-token", "feishu-secret",
                            clock=lambda: clock() - 7200).send(MSG)
        token = _feishu(bot, clock, token="bad-token").send(MSG)
        sender = _feishu(bot, clock)
        results = [sender.send(MSG) for _ in range(3)]
    assert not wrong.ok and not wrong.retryable and "19021" in wrong.error and "wrong-secret" not in wrong.error
    assert not late.ok and not late.retryable and "19021" in late.error
    assert not token.ok and not token.retryable and "19001" in token.error and "bad-token" not in token.error
    assert [r.ok for r in results] == [True, True, False]
    assert results[2].retryable and "11232" in results[2].error


def test_feishu_an_outage_is_retried(clock):
    with FeishuReceiver(clock=clock) as bot:
        bot.down = True
        result = _feishu(bot, clock).send(MSG)
    assert not result.ok and result.retryable and "503" in result.error


def test_feishu_from_an_airflow_connection(monkeypatch, clock):
    with FeishuReceiver(clock=clock) as bot:
        _conn(monkeypatch, "ops_feishu", conn_type="http", host=bot.url, password="feishu-token",
              extra={"secret": "feishu-secret"})
        assert FeishuSender.from_connection("ops_feishu", clock=clock).send(MSG).ok
    assert all("feishu-secret" not in v for h in bot.headers for v in h.values())  # not sent as a header


def test_feishu_outbox_delivery(store, clock):
    _enqueue(store, "ops_feishu", 3, clock.now)
    with FeishuReceiver(clock=clock) as bot:
        _deliver_through_an_outage(store, "ops_feishu", _feishu(bot, clock), bot, clock)
    assert [m["card"]["header"]["title"]["content"] for m in bot.received] == \
        [f"[红色] 爆单且库存告急 #{i}" for i in range(3)]


# --- Slack -------------------------------------------------------------------------------------

def _slack(hook, clock, path="T0001/B0001/slack-secret"):
    return SlackSender(requests.Session(), f"{hook.url}/services", path, name="ops_slack", clock=clock)


def test_slack_a_header_and_mrkdwn_sections_arrive(clock):
    with SlackReceiver(clock=clock) as hook:
        result = _slack(hook, clock).send(MSG)
    assert result.ok, result.error
    sent = hook.received[0]
    assert sent["text"] == MSG.title and sent["blocks"][0]["text"]["text"] == MSG.title
    body = sent["blocks"][1]["text"]["text"]
    assert body.startswith("*SKU-1*：库存仅够 5 小时") and sent["blocks"][1]["text"]["type"] == "mrkdwn"
    links = sent["blocks"][2]["text"]["text"]
    assert "<https://ack.shop.example/ack?t=abc&amp;f=1|确认 / Acknowledge>" in links
    assert sent["blocks"][3]["elements"][0]["text"] == "@13800000000 @13900000000"


def test_slack_a_long_text_is_split_within_slacks_limits(clock):
    long = Message("x" * 300, "库存告急。" * 2000)
    with SlackReceiver(clock=clock) as hook:
        assert _slack(hook, clock).send(long).ok
    sections = [b for b in hook.received[0]["blocks"] if b["type"] == "section"]
    assert len(sections) == 4 and "".join(s["text"]["text"] for s in sections) == "库存告急。" * 2000


def test_slack_errors(clock):
    with SlackReceiver(clock=clock, per_minute=1) as hook:
        gone = _slack(hook, clock, path="T0001/B0001/wrong-path").send(MSG)
        assert _slack(hook, clock).send(MSG).ok
        limited = _slack(hook, clock).send(MSG)
        hook.archived = True
        archived = _slack(hook, clock).send(MSG)
    assert not gone.ok and not gone.retryable and "no_service" in gone.error and "wrong-path" not in gone.error
    assert not limited.ok and limited.retryable and "429" in limited.error
    assert not archived.ok and not archived.retryable and "channel_is_archived" in archived.error


def test_slack_an_outage_is_retried(clock):
    with SlackReceiver(clock=clock) as hook:
        hook.down = True
        result = _slack(hook, clock).send(MSG)
    assert not result.ok and result.retryable and "503" in result.error


def test_slack_from_an_airflow_connection(monkeypatch, clock):
    with SlackReceiver(clock=clock) as hook:
        _conn(monkeypatch, "ops_slack", conn_type="http", host=f"{hook.url}/services",
              password="T0001/B0001/slack-secret")
        assert SlackSender.from_connection("ops_slack", clock=clock).send(MSG).ok


def test_slack_outbox_delivery(store, clock):
    _enqueue(store, "ops_slack", 3, clock.now)
    with SlackReceiver(clock=clock) as hook:
        _deliver_through_an_outage(store, "ops_slack", _slack(hook, clock), hook, clock)
    assert [m["text"] for m in hook.received] == [f"[红色] 爆单且库存告急 #{i}" for i in range(3)]


# --- Email -------------------------------------------------------------------------------------

@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


def _email_conn(monkeypatch, server, password="smtp-password", conn_id="ops_email"):
    _conn(monkeypatch, conn_id, conn_type="smtp", host=server.host, port=server.port, login="alerts",
          password=password, extra={"from_email": "storefence@shop.example", "disable_ssl": True,
                                    "disable_tls": True, "retry_limit": 0, "timeout": 5})
    return EmailSender.from_connection(conn_id)


def test_email_html_and_plain_text_arrive(monkeypatch, smtp):
    message = Message(MSG.title, MSG.text + "\n<script>alert(1)</script> & 1 < 2", MSG.mentions, MSG.data,
                      MSG.emails, "red", MSG.links)
    result = _email_conn(monkeypatch, smtp).send(message)
    assert result.ok, result.error
    mail = smtp.received[0]
    assert smtp.envelopes[0] == ("storefence@shop.example", ["ops@shop.example", "buyer@shop.example"])
    assert mail["Subject"] == "[红色] 爆单且库存告急" and mail["To"] == "ops@shop.example, buyer@shop.example"
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",)).get_content()
    html_part = mail.get_body(("html",)).get_content()
    assert "库存仅够 5 小时" in text and f"{ACK[0]} {ACK[1]}" in text and "@13800000000" in text
    assert "<strong>SKU-1</strong>" in html_part and "<li>仓库：华东一仓</li>" in html_part
    assert '<a href="https://ack.shop.example/ack?t=abc&amp;f=1">确认 / Acknowledge</a>' in html_part
    assert "<script>" not in html_part and "&amp; 1 &lt; 2" in html_part


def test_email_without_recipients_is_a_final_failure(monkeypatch, smtp):
    result = _email_conn(monkeypatch, smtp).send(Message("t", "x"))
    assert not result.ok and not result.retryable and "no email recipients" in result.error
    assert smtp.received == []


def test_email_smtp_replies_decide_the_retry(monkeypatch, smtp):
    sender = _email_conn(monkeypatch, smtp)
    smtp.refuse = {"ops@shop.example": "550 5.1.1 no such user", "buyer@shop.example": "550 5.1.1 no such user"}
    unknown = sender.send(MSG)
    smtp.refuse = {"ops@shop.example": "450 4.2.1 mailbox busy", "buyer@shop.example": "550 5.1.1 no such user"}
    busy = sender.send(MSG)
    smtp.refuse = {"buyer@shop.example": "550 5.1.1 no such user"}
    partly = sender.send(MSG)
    smtp.refuse, smtp.data_reply = {}, "451 4.3.0 try again later"
    later = sender.send(MSG)
    smtp.data_reply = "554 5.7.1 message refused as spam"
    spam = sender.send(MSG)
    assert not unknown.ok and not unknown.retryable and "550" in unknown.error
    assert not busy.ok and busy.retryable
    assert partly.ok and "buyer@shop.example" in partly.error and smtp.envelopes[-1][1] == ["ops@shop.example"]
    assert not later.ok and later.retryable and "451" in later.error
    assert not spam.ok and not spam.retryable and "554" in spam.error


def test_email_a_wrong_password_is_final_and_not_in_the_error(monkeypatch, smtp):
    result = _email_conn(monkeypatch, smtp, password="wrong-smtp-password").send(MSG)
    assert not result.ok and not result.retryable and "535" in result.error
    assert "wrong-smtp-password" not in result.error


def test_email_an_outage_is_retried(monkeypatch, smtp):
    sender = _email_conn(monkeypatch, smtp)
    smtp.stop()
    result = sender.send(MSG)
    assert not result.ok and result.retryable and "cannot reach" in result.error


def test_email_outbox_delivery(monkeypatch, store, clock, smtp):
    sender = _email_conn(monkeypatch, smtp)
    _enqueue(store, "ops_email", 3, clock.now, emails=["ops@shop.example"])
    smtp.stop()
    first = deliver_due(store, {"ops_email": sender}, clock.now)
    assert len(first.retrying) == 1 and first.held_back == 2
    smtp.start()
    for _ in range(5):
        clock.advance(minutes=1)
        deliver_due(store, {"ops_email": sender}, clock.now)
    assert [m["Subject"] for m in smtp.received] == [f"[红色] 爆单且库存告急 #{i}" for i in range(3)]
    assert {n["status"] for n in store.notifications()} == {"sent"}


# --- SMS and voice -----------------------------------------------------------------------------

TEMPLATE = {"endpoint": "/sms/send", "method": "POST", "headers": {"Authorization": "Bearer {{ api_key }}"},
            "body": {"to": "{{ to }}", "text": "{{ text }}", "sign_name": "店铺预警"},
            "ok": {"field": "code", "equals": 0}, "retryable_values": [1029], "message_field": "message"}
VOICE = {**TEMPLATE, "endpoint": "/voice/call", "body": {"to": "{{ to }}", "text": "{{ text }}", "repeat": 2}}


def _sms(provider, clock, key="sms-api-key", template=TEMPLATE, cls=SmsSender):
    return cls(requests.Session(), provider.url, key, template, name=f"ops_{cls.kind}", clock=clock)


def test_sms_one_text_per_mobile_with_title_first_lines_and_the_ack_link(clock):
    with SmsProviderReceiver(clock=clock) as provider:
        result = _sms(provider, clock).send(MSG)
    assert result.ok, result.error
    assert [m["to"] for m in provider.received] == ["13800000000", "13900000000"]
    text = provider.received[0]["text"]
    assert text.startswith("[红色] 爆单且库存告急\nSKU-1：库存仅够 5 小时\n- 仓库：华东一仓")
    assert text.endswith(f"\n{ACK[1]}") and provider.received[0]["sign_name"] == "店铺预警"


def test_a_long_text_only_sms_is_cut_to_one_segment_then_keeps_the_link():
    text = sms_text(Message("标题", "库存告急\n" * 200, links=(ACK,)))
    facts, link = text.rsplit("\n", 1)
    assert link == ACK[1] and sms_segments(facts) == 1 and "…" in facts and sms_segments(text) <= 4
    assert sms_text(Message("标题", "库存告急\n" * 200, links=(ACK,)), max_segments=1) == facts


def test_voice_calls_with_one_short_sentence(clock):
    with SmsProviderReceiver(clock=clock) as provider:
        assert _sms(provider, clock, template=VOICE, cls=VoiceSender).send(MSG).ok
    call = provider.received[0]
    assert call["path"] == "/voice/call" and call["repeat"] == 2
    assert call["text"] == "红色 爆单且库存告急，请尽快处理。"
    assert voice_text(Message("[red] stock out", "x")) == "red stock out. Please respond."


def test_sms_vendor_errors_in_a_200_reply(clock):
    with SmsProviderReceiver(clock=clock, per_minute=2) as provider:
        bad_key = _sms(provider, clock, key="wrong-api-key").send(MSG)
        sender = _sms(provider, clock)
        assert sender.send(MSG).ok
        limited = sender.send(Message("again", "x", ("13800000000",)))
    assert not bad_key.ok and not bad_key.retryable and "code=1001" in bad_key.error
    assert "wrong-api-key" not in bad_key.error and "138****0000" in bad_key.error
    assert "13800000000" not in bad_key.error  # mobiles are masked
    assert not limited.ok and limited.retryable and "1029" in limited.error


def test_sms_a_retry_skips_the_mobiles_already_reached_and_a_bad_number_is_named(clock):
    with SmsProviderReceiver(clock=clock, per_minute=1) as provider:
        sender = _sms(provider, clock)
        first = sender.send(MSG)
        clock.advance(minutes=1)
        second = sender.send(MSG)
        mixed = sender.send(Message("t", "x", ("12345", "13900000000")))
    assert not first.ok and first.retryable
    assert second.ok and [m["to"] for m in provider.received] == ["13800000000", "13900000000"]
    assert not mixed.ok and mixed.retryable  # 139… is over the minute's limit; 12345 is refused for good
    with SmsProviderReceiver(clock=clock) as provider:
        partly = _sms(provider, clock).send(Message("t", "x", ("12345", "13900000000")))
    assert partly.ok and "1002" in partly.error and [m["to"] for m in provider.received] == ["13900000000"]


def test_sms_without_mobiles_and_with_a_bad_template(clock):
    with SmsProviderReceiver(clock=clock) as provider:
        none = _sms(provider, clock).send(Message("t", "x"))
        escape = _sms(provider, clock, template={**TEMPLATE, "body": {"to": "{{ to.__class__.__mro__ }}"}}).send(MSG)
    assert not none.ok and not none.retryable and "no mobile numbers" in none.error
    assert not escape.ok and not escape.retryable and "template error" in escape.error  # the sandbox holds
    with pytest.raises(ValueError, match="extra.endpoint: required"):
        SmsSender(requests.Session(), "http://x", "k", {"body": {}})


def test_sms_an_outage_is_retried(clock):
    with SmsProviderReceiver(clock=clock) as provider:
        provider.down = True
        result = _sms(provider, clock).send(MSG)
    assert not result.ok and result.retryable and "503" in result.error


def test_sms_and_voice_from_airflow_connections(monkeypatch, clock):
    with SmsProviderReceiver(clock=clock) as provider:
        _conn(monkeypatch, "ops_sms", conn_type="http", host=provider.url, password="sms-api-key", extra=TEMPLATE)
        _conn(monkeypatch, "ops_voice", conn_type="http", host=provider.url, password="sms-api-key", extra=VOICE)
        assert SmsSender.from_connection("ops_sms", clock=clock).send(MSG).ok
        assert VoiceSender.from_connection("ops_voice", clock=clock).send(MSG).ok
    assert [m["path"] for m in provider.received] == ["/sms/send"] * 2 + ["/voice/call"] * 2
    assert all("body" not in h and "endpoint" not in h for h in provider.headers)  # extra is not sent as headers


@pytest.mark.parametrize("kind", ["sms", "voice"])
def test_sms_and_voice_outbox_delivery(store, clock, kind):
    route = f"ops_{kind}"
    _enqueue(store, route, 3, clock.now, mentions=["13800000000"])
    with SmsProviderReceiver(clock=clock) as provider:
        sender = _sms(provider, clock, template=TEMPLATE if kind == "sms" else VOICE,
                      cls=SmsSender if kind == "sms" else VoiceSender)
        _deliver_through_an_outage(store, route, sender, provider, clock)
    assert [m["text"].split("\n")[0] for m in provider.received] == (
        [f"[红色] 爆单且库存告急 #{i}" for i in range(3)] if kind == "sms"
        else [f"红色 爆单且库存告急 {i}，请尽快处理。" for i in range(3)])


# --- Generic webhook ---------------------------------------------------------------------------

def _webhook(receiver, clock, secret="hook-secret"):
    return WebhookSender(requests.Session(), f"{receiver.url}/alerts", secret, name="ops_webhook", clock=clock)


def test_webhook_a_signed_v1_payload_arrives(clock):
    with WebhookReceiver(clock=clock) as receiver:
        result = _webhook(receiver, clock).send(MSG)
    assert result.ok, result.error
    got = receiver.received[0]
    assert got["path"] == "/alerts" and got["schema"] == "storefence.alert/v1"
    assert got["title"] == MSG.title and got["text"] == MSG.text and got["severity"] == "red"
    assert got["links"] == [{"label": ACK[0], "url": ACK[1]}, {"label": "Runbook", "url": RUNBOOK[1]}]
    assert got["alert"] == MSG.data and got["sent_at"] == "2026-08-16T07:31:00+00:00"
    assert got["mentions"] == list(MSG.mentions) and got["emails"] == list(MSG.emails)
    assert "爆单" in receiver.raw[0].decode()  # UTF-8, not \\u escapes


def test_webhook_errors(clock):
    with WebhookReceiver(clock=clock) as receiver:
        wrong = _webhook(receiver, clock, secret="wrong-hook-secret").send(MSG)
        unsigned = _webhook(receiver, clock, secret=None).send(MSG)
        receiver.status = 500
        server_error = _webhook(receiver, clock).send(MSG)
        receiver.status = 429
        limited = _webhook(receiver, clock).send(MSG)
        receiver.status = 400
        bad = _webhook(receiver, clock).send(MSG)
    assert not wrong.ok and not wrong.retryable and "401" in wrong.error and "hook-secret" not in wrong.error
    assert not unsigned.ok and "401" in unsigned.error
    assert server_error.retryable and limited.retryable and not bad.retryable


def test_webhook_an_outage_is_retried(clock):
    with WebhookReceiver(clock=clock) as receiver:
        receiver.down = True
        result = _webhook(receiver, clock).send(MSG)
    assert not result.ok and result.retryable and "503" in result.error


def test_webhook_from_an_airflow_connection(monkeypatch, clock):
    with WebhookReceiver(clock=clock) as receiver:
        _conn(monkeypatch, "ops_webhook", conn_type="http", host=receiver.url, password="hook-secret",
              extra={"endpoint": "/hooks/storefence"})
        assert WebhookSender.from_connection("ops_webhook", clock=clock).send(MSG).ok
    assert receiver.received[0]["path"] == "/hooks/storefence"


def test_webhook_outbox_delivery(store, clock):
    _enqueue(store, "ops_webhook", 3, clock.now)
    with WebhookReceiver(clock=clock) as receiver:
        _deliver_through_an_outage(store, "ops_webhook", _webhook(receiver, clock), receiver, clock)
    assert [m["alert"] for m in receiver.received] == [{"sku": f"SKU-{i}"} for i in range(3)]


# --- The registry ------------------------------------------------------------------------------

def test_the_registry_knows_every_kind_and_imports_lazily():
    assert set(SENDERS) == {"dingtalk", "wecom", "feishu", "slack", "email", "sms", "voice", "webhook"}
    assert SENDERS["voice"] is VoiceSender and sender_class("slack") is SlackSender
    with pytest.raises(ValueError, match="unknown channel kind"):
        sender_class("pigeon")
    code = ("import sys, threshold_operators.alerting.channels as c; "
            "assert not [m for m in sys.modules if m.startswith('threshold_operators.alerting.channels.')], "
            "sorted(sys.modules); assert 'requests' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_senders_for_a_routing_builds_each_channel_and_reports_missing_connections(monkeypatch, clock):
    from threshold_operators.alerting.routing import Routing

    routing = Routing(
        channels={"oncall_wecom": {"kind": "wecom", "conn_id": "sf_wecom"},
                  "oncall_feishu": {"kind": "feishu", "conn_id": "sf_feishu"},
                  "oncall_voice": {"kind": "voice", "conn_id": "sf_voice"},
                  "oncall_dingtalk": {"kind": "dingtalk", "conn_id": "sf_dingtalk"},
                  "oncall_slack": {"kind": "slack", "conn_id": "sf_slack_missing"}},
        people={"ann": {"name": "Ann", "mobile": "13800000000"}},
        teams={"ops": {"levels": {1: ["ann"]}, "channels": {"red": ["oncall_wecom"]}}})
    with WeComReceiver(clock=clock) as robot, SmsProviderReceiver(clock=clock) as provider:
        _conn(monkeypatch, "sf_wecom", conn_type="http", host=robot.url, password="wecom-key")
        _conn(monkeypatch, "sf_feishu", conn_type="http", host="http://127.0.0.1:9", password="t")
        _conn(monkeypatch, "sf_voice", conn_type="http", host=provider.url, password="sms-api-key", extra=VOICE)
        _conn(monkeypatch, "sf_dingtalk", conn_type="http", host="http://127.0.0.1:9", password="t")
        senders, problems = senders_for(routing)
        assert senders["oncall_wecom"].send(MSG).ok and senders["oncall_voice"].send(MSG).ok
    assert set(senders) == {"oncall_wecom", "oncall_feishu", "oncall_voice", "oncall_dingtalk"}
    assert {name: s.name for name, s in senders.items()} == {n: n for n in senders}
    assert isinstance(senders["oncall_voice"], VoiceSender) and isinstance(senders["oncall_feishu"], FeishuSender)
    assert len(problems) == 1 and problems[0].startswith("oncall_slack: connection 'sf_slack_missing' (slack)")
    single = sender_for("x", routing.channels["oncall_wecom"])
    assert isinstance(single, WeComSender) and single.name == "x"


# --- Markdown forms ----------------------------------------------------------------------------

def test_markdown_forms():
    text = "# 标题\n**粗体** `code` [确认](https://a.example/?x=1&y=2)\n- 一\n- 二\n---\n<font color=red>红</font>"
    assert plain(text) == "标题\n粗体 code 确认 https://a.example/?x=1&y=2\n- 一\n- 二\n\n红"
    assert slack_mrkdwn("**a** < b & [l](https://x.example/?a=1&b=2)") == \
        "*a* &lt; b &amp; <https://x.example/?a=1&amp;b=2|l>"
    html = to_html(text + "\n[bad](javascript:alert(1))")
    assert "<h1>标题</h1>" in html and '<a href="https://a.example/?x=1&amp;y=2">确认</a>' in html
    assert "<ul>\n<li>一</li>\n<li>二</li>\n</ul>" in html and "<hr>" in html and 'href="javascript' not in html
