"""Each channel lays out a message that lists alerts in its own form and within its vendor's limits
(``channels.layout``): the top entities that fit and a "+N more" line linking the alerts page on
DingTalk and WeCom, a row of fields per entity on a Feishu card, a table in an email, one segment
of facts in an SMS, one sentence in a call. Every form is checked by the strict receivers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import requests

from tests.alerting.dingtalk_receiver import DingTalkReceiver
from tests.alerting.receivers import FeishuReceiver, SmsProviderReceiver, SmtpServer, WeComReceiver
from threshold_operators.alerting.channels.dingtalk import DingTalkSender
from threshold_operators.alerting.channels.email import EmailSender
from threshold_operators.alerting.channels.feishu import FeishuSender
from threshold_operators.alerting.channels.layout import fit_markdown, sms_segments
from threshold_operators.alerting.channels.sms import SmsSender, VoiceSender, sms_text, voice_text
from threshold_operators.alerting.channels.wecom import WeComSender
from threshold_operators.alerting.delivery import batch_message, message_of
from threshold_operators.alerting.messages import TOP, alert_message
from threshold_operators.rules.catalogue import load_catalogue

T = datetime(2026, 8, 16, 8, tzinfo=UTC)
WINDOW = ((T - timedelta(hours=1)).isoformat(), T.isoformat())
ALL = "https://airflow.example.com/plugin/storefence?rule=sales.order_spike"
MOBILES = ["13800000001", "13800000002"]


def _breaches(n: int, long_names: bool = False) -> list[dict]:
    out = []
    for i in range(n):
        name = ("婴儿配方奶粉 1段 800g 超长的商品标题用于测试字节预算" * (4 if long_names else 1)) + f" {i:03d}"
        out.append({"entity_key": f"shop_id=shop-01/sku=SKU-{i:04d}", "severity": "red" if i < 3 else "yellow",
                    "metric": "orders", "value": 4.0 + i / 100, "baseline": 12.0, "threshold": 3.0,
                    "metrics": {"orders": 48 + i}, "fingerprint": f"{i:040d}",
                    "names": {"entity": name, "about": "Brand A · infant_formula", "shop": "旗舰店"}})
    return out


def _message(n: int, lang: str = "zh", long_names: bool = False, links: bool = True):
    rule = load_catalogue().get("sales.order_spike").rule
    breaches = _breaches(n, long_names)
    ack = {b["fingerprint"]: f"https://airflow.example.com/storefence/ack/{'t' * 120}{i}"
           for i, b in enumerate(breaches[:TOP])} if links else {}
    text = alert_message(rule, "fired", "red", breaches, WINDOW, 2, ["李伟 (运营主管)"], ack, list_url=ALL)
    payload = text.payload(mentions=MOBILES, emails=["li.wei@example.com"], data={"rule_id": rule.id})
    return message_of(json.loads(json.dumps(payload)), lang)  # as the outbox stores it


def _items(text: str) -> list[str]:
    return [x for x in text.split("\n") if x.startswith("- [")]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_wecom_shows_the_top_entities_that_fit_then_more_with_a_link(clock, lang):
    message = _message(300, lang, long_names=True)
    with WeComReceiver(clock=clock) as robot:
        assert WeComSender(requests.Session(), robot.url, "wecom-key", clock=clock).send(message).ok
    content = robot.received[0]["markdown"]["content"]
    assert len(content.encode()) <= 4096 and not robot.refused
    shown = _items(content)
    assert 1 <= len(shown) < TOP and "SKU-0002" in shown[0]  # the worst first: red, furthest past
    more = next(x for x in content.split("\n") if x.startswith(("- ……另有", "- ... and")))
    assert str(300 - len(shown)) in more and f"({ALL})" in more
    assert content.endswith("@13800000001\n@13800000002")


def test_dingtalk_keeps_the_top_ten_within_its_budget_and_cuts_nothing(clock):
    message = _message(300)
    with DingTalkReceiver(secret=None, clock=clock) as robot:
        assert DingTalkSender(requests.Session(), robot.url, "robot-token", clock=clock).send(message).ok
    text = robot.received[0]["markdown"]["text"]
    assert len(_items(text)) == TOP and f"另有 {300 - TOP} 个，[查看全部]({ALL})" in text
    assert "…" not in text.replace("……另有", "")


def test_dingtalk_lowers_the_count_shown_when_the_body_would_pass_20000_bytes(clock):
    message = _message(300, long_names=True)
    big = batch_message([message] * 6)  # a digest of six long messages
    with DingTalkReceiver(secret=None, clock=clock) as robot:
        assert DingTalkSender(requests.Session(), robot.url, "robot-token", clock=clock).send(big).ok
    assert not robot.refused
    body = json.dumps(robot.received[0], ensure_ascii=False).encode()
    assert len(body) <= 20_000 and 1 <= len(_items(robot.received[0]["markdown"]["text"])) < 6 * TOP


def test_fit_cuts_only_a_message_that_does_not_fit_with_no_entity():
    message = _message(3)
    assert fit_markdown(message, lambda t: len(t.encode()), 10**6) == message.text
    tiny = fit_markdown(message, lambda t: len(t.encode()), 200)
    assert len(tiny.encode()) <= 200 and tiny.endswith("…") and not _items(tiny)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_feishu_card_has_a_row_of_fields_per_entity(clock, lang):
    message = _message(12, lang)
    with FeishuReceiver(clock=clock) as bot:
        assert FeishuSender(requests.Session(), bot.url, "feishu-token", "feishu-secret", clock=clock).send(message).ok
    card = bot.received[0]["card"]
    rows = [e for e in card["elements"] if e["tag"] == "div"]
    assert len(rows) == TOP and all(len(r["fields"]) == 2 and all(f["is_short"] for f in r["fields"]) for r in rows)
    who, what = (f["text"]["content"] for f in rows[0]["fields"])
    assert "SKU-0002" in who and "婴儿配方奶粉" in who and ("订单" if lang == "zh" else "orders") in what
    assert "storefence/ack/" in what  # its acknowledge link
    texts = [e.get("content", "") for e in card["elements"]]
    assert any(ALL in t and "2" in t for t in texts)  # "+2 more" with the link
    assert card["elements"][-1]["tag"] == "action" and card["header"]["template"] == "red"


def test_a_feishu_card_stays_within_20_kb(clock):
    message = batch_message([_message(50, long_names=True)] * 4)
    with FeishuReceiver(clock=clock) as bot:
        assert FeishuSender(requests.Session(), bot.url, "feishu-token", "feishu-secret", clock=clock).send(message).ok
    assert not bot.refused


def test_an_email_has_a_table_of_every_entity_the_message_keeps():
    message = _message(60)
    with SmtpServer(login=None, password=None) as smtp:
        import smtplib

        sender = EmailSender(lambda: smtplib.SMTP("127.0.0.1", smtp.port), "alerts@example.com")
        assert sender.send(message).ok
    mail = smtp.received[0]
    html = mail.get_body(("html",)).get_content()
    assert html.count("<tr style=\"background:") == 50 and "另有 10 个" in html and ALL.replace("&", "&amp;") in html
    assert "<th" in html and "级别" in html and "storefence/ack/" in html
    text = mail.get_body(("plain",)).get_content()
    assert len(_items(text)) == 50


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_an_sms_says_what_happened_in_one_segment_then_the_link(clock, lang):
    message = _message(3, lang)
    text = sms_text(message)
    facts, link = text.rsplit("\n", 1)
    assert sms_segments(facts) == 1 and link.startswith("https://airflow.example.com/storefence/ack/")
    assert ("婴儿配方奶粉" in facts and "等 3 个 SKU" in facts) if lang == "zh" else "and 2 more" in facts
    assert sms_text(message, max_segments=1) == facts  # the link would take more segments: left out
    with SmsProviderReceiver(clock=clock) as provider:
        template = {"endpoint": "/sms/send", "headers": {"Authorization": "Bearer {{ api_key }}"},
                    "body": {"to": "{{ to }}", "text": "{{ text }}"}, "ok": {"field": "code", "equals": 0}}
        assert SmsSender(requests.Session(), provider.url, "sms-api-key", template, clock=clock).send(message).ok
    assert not provider.refused and provider.received[0]["text"] == text


def test_a_call_reads_one_sentence_with_the_entity_and_its_number(clock):
    message = _message(3)
    sentence = voice_text(message)
    assert sentence.endswith("请尽快处理。") and sentence.count("。") == 1 and len(sentence) <= 100
    assert "订单激增" in sentence and "婴儿配方奶粉" in sentence and not re.search(r"[\[\]【】()（）]", sentence)
    assert voice_text(_message(3, "en")).endswith(". Please respond.")
    with SmsProviderReceiver(clock=clock) as provider:
        template = {"endpoint": "/voice/call", "headers": {"Authorization": "Bearer {{ api_key }}"},
                    "body": {"to": "{{ to }}", "text": "{{ text }}"}, "ok": {"field": "code", "equals": 0}}
        assert VoiceSender(requests.Session(), provider.url, "sms-api-key", template, clock=clock).send(message).ok
    assert not provider.refused
