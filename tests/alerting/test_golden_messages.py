"""Golden messages: what a person receives from every catalogue rule, on every channel, in both languages.

Each rule of the catalogue (shadow ones as they will read once live) is evaluated over the simulated
shop's incident that makes it fire (``incident_shop_duckdb``; a current-state rule cycle by cycle,
its first cycle that fires on the incident's entity), its breaches named and, for the double alert,
given their evidence as the evaluate task does, and the notify task's pipeline queues its messages
into a SQLite state store with the shipped routing, at a pinned ``now`` (the window's end) and with
signed acknowledge links. Every message in the outbox is then:

- rendered as each channel kind sends it (``preview.channel_form``), in Chinese and English, and
  compared with ``tests/alerting/golden/<rule_id>.md`` (the chat robots' request bodies as YAML,
  so their texts read as the person sees them). A difference fails with a diff;
  ``STOREFENCE_UPDATE_GOLDEN=1`` rewrites the files instead: read the diff before committing it;
- sent through the real senders to the strict loopback receivers (DingTalk, WeCom, Feishu, Slack,
  SMTP, the SMS and voice provider), which must accept every one;
- read for what an operations person must never see: a raw column of the rule in a Chinese
  message, a number with more decimals than its metric's format, a first entity line that is not
  the incident's entity.

A breach list far larger than a chat message holds is laid out within each robot's limit, with a
"+N more" line that links the alerts page.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import smtplib
from datetime import datetime
from pathlib import Path

import pytest
import requests
import yaml

from tests.alerting.dingtalk_receiver import DingTalkReceiver
from tests.alerting.receivers import (
    FeishuReceiver,
    SlackReceiver,
    SmsProviderReceiver,
    SmtpServer,
    WeComReceiver,
)
from tests.engine.test_catalogue_incidents import ORDER, _hits, _window
from threshold_operators.alerting import pipeline
from threshold_operators.alerting.channels.dingtalk import DingTalkSender
from threshold_operators.alerting.channels.email import EmailSender
from threshold_operators.alerting.channels.feishu import FeishuSender
from threshold_operators.alerting.channels.slack import SlackSender
from threshold_operators.alerting.channels.sms import SmsSender, VoiceSender
from threshold_operators.alerting.channels.wecom import WeComSender
from threshold_operators.alerting.delivery import message_of
from threshold_operators.alerting.messages import DIGITS, TOP
from threshold_operators.alerting.preview import channel_form
from threshold_operators.alerting.routing import load_routing
from threshold_operators.rules.catalogue import load_catalogue

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("STOREFENCE_UPDATE_GOLDEN") == "1"
KINDS = ("dingtalk", "wecom", "feishu", "slack", "email", "sms", "voice")
LANGUAGES = ("zh", "en")
JSON_KINDS = {"dingtalk", "wecom", "feishu", "slack"}
ACK_HOST = "https://airflow.example.com"
ALERTS_PAGE = f"{ACK_HOST}/plugin/storefence?rule="

# The incident that makes each rule fire (tests/engine/test_catalogue_incidents.py); the shadow
# rules on the incident their live sibling fires on.
INCIDENT = {
    "compound.spike_low_stock": "formula_spike_low_stock",
    "customer.logistics_stale": "warehouse_tracking_stall",
    "customer.negative_review": "negative_review_burst",
    "customer.negative_review_burst": "negative_review_burst",
    "finance.complaint_spike": "clothing_batch_quality",
    "finance.payment_failure": "payment_gateway_degraded",
    "finance.refund_rate": "refund_surge",
    "finance.refund_rate_fast": "refund_surge",
    "inventory.stock_cover": "formula_spike_low_stock",
    "sales.order_drop": "slow_sales_decline",
    "sales.order_drop_daily_avg": "slow_sales_decline",
    "sales.order_spike": "formula_spike_low_stock",
    "sales.order_spike_7d": "formula_spike_low_stock",
    "sales.order_spike_early": "formula_spike_low_stock",
    "sales.order_spike_sustained": "small_sku_surge",
    "traffic.conversion_drop": "site_slowdown",
    "traffic.paid_cost_quality": "paid_channel_quality",
}
RULES = sorted(load_catalogue().rules)

# Rules whose message does not list the incident's entity first, and why (what the golden files
# show, not a wish): for them the entity must be among the lines shown, and the test fails once it
# comes first, so that the entry is dropped.
NOT_FIRST = {
    "customer.negative_review": "every 1-3 star review of the day fires blue; a breach carries its latest "
                                "5-minute bucket (one review), so the burst's SKU ties with 39 others",
    "sales.order_spike_early": "ranked by the multiple of a baseline under one order, a SKU with 3 orders "
                               "(×27) comes before the incident's 13 (×5.1)",
}

SMS = {"endpoint": "/sms/send", "headers": {"Authorization": "Bearer {{ api_key }}"},
       "body": {"to": "{{ to }}", "text": "{{ text }}"}, "ok": {"field": "code", "equals": 0}}
VOICE = {**SMS, "endpoint": "/voice/call"}


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


@pytest.fixture(scope="module")
def routing():
    return load_routing()


@pytest.fixture
def ack_links(monkeypatch):
    """The ``storefence_ack`` connection, so messages carry signed links and the alerts page's link."""
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_ACK", json.dumps(
        {"conn_type": "http", "host": ACK_HOST, "password": "golden-ack-secret"}))
    pipeline._link_settings.cache_clear()
    yield
    pipeline._link_settings.cache_clear()


# --- the rule's messages, as the notify task queues them -----------------------------------------

def firing_evaluation(hook, loaded, catalogue, inc: dict):
    """The evaluation that fires the rule on ``inc``: one over the incident's window, or for a
    current state the first cycle that fires on the incident's entity."""
    from threshold_operators.engine.compile import compile_rule
    from threshold_operators.engine.evaluate import evaluate, warehouse_query

    start, end = _window(inc, loaded.rule.id, catalogue)
    compiled, query = compile_rule(loaded, catalogue.get), warehouse_query(hook)
    if not loaded.current_state:
        return evaluate(compiled, query, start, end, now=end)
    hit, t, every = _hits(inc), start, loaded.rule.every
    while t < end:
        ev = evaluate(compiled, query, t, t + every, now=t + every)
        if any(hit(r) for r in ev.firing):
            return ev
        t += every
    raise AssertionError(f"{loaded.rule.id} never fired on {inc['entity']} in {start} .. {end}")


def queued_messages(hook, loaded, catalogue, inc: dict, store, routing) -> tuple[list[dict], dict]:
    """The rule's outbox messages (one payload per message, with its routes) and the evaluation,
    built as the evaluate and notify tasks build them; a shadow rule as it reads once live."""
    from threshold_operators.engine.evidence import with_evidence
    from threshold_operators.engine.names import with_names
    from threshold_operators.operators.threshold_check import ThresholdCheckOperator

    rule = loaded.rule.model_copy(update={"mode": "live"})
    ev = firing_evaluation(hook, loaded, catalogue, inc)
    now = ev.window_end
    evaluation = ThresholdCheckOperator._summary(ev, rule) | {
        "failing_tables": {}, "gates_checked": sorted(loaded.tables), "gates_checked_at": now.isoformat()}
    evaluation["breaches"] = with_names(hook, evaluation["breaches"])
    if rule.references:
        evaluation["breaches"] = with_evidence(hook, loaded, catalogue, evaluation["breaches"], ev.window_start,
                                               ev.window_end, now)
    pipeline.queue_notifications(rule, evaluation, store, routing, now)
    messages: dict[str, dict] = {}
    for row in store.notifications():
        if row["route"] not in routing.channels:
            continue  # an action's request, not a message
        key, _, route = row["idempotency_key"].rpartition(":")
        messages.setdefault(key, {"event": row["event"], "level": row["level"], "routes": [],
                                  "payload": row["payload"]})["routes"].append(route)
    return list(messages.values()), evaluation


# --- the golden file ------------------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper, value: str):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def readable(kind: str, form: str) -> str:
    """A channel's form as a reviewer reads it: a JSON body as YAML, its texts as blocks of lines."""
    if kind not in JSON_KINDS:
        return form
    return yaml.dump(json.loads(form), Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=10**6).rstrip()


def golden_text(loaded, inc: dict, evaluation: dict, queued: list[dict]) -> str:
    rule = loaded.rule
    out = [f"# {rule.id}: {rule.name.zh} / {rule.name.en}", "",
           f"What people receive when the rule fires on the simulated shop's incident `{inc['id']}` "
           f"({inc['entity_type']} `{inc['entity']}`): data {evaluation['window_start']} .. "
           f"{evaluation['window_end']}, notified at the window's end."
           + (" A shadow rule: the messages it will send once live." if rule.mode == "shadow" else ""),
           "Written by tests/alerting/test_golden_messages.py; `STOREFENCE_UPDATE_GOLDEN=1` rewrites it."]
    for i, m in enumerate(queued, 1):
        payload = m["payload"]
        out += ["", f"## Message {i}: {m['event']}, {payload.get('severity') or 'no severity'}, level {m['level']} "
                    f"(routes: {', '.join(m['routes'])})"]
        for kind in KINDS:
            for lang in LANGUAGES:
                form = readable(kind, channel_form(kind, message_of(payload, lang)))
                out += ["", f"### {kind} · {lang}", "", "~~~" + ("yaml" if kind in JSON_KINDS else "text"), form, "~~~"]
    return "\n".join(out) + "\n"


def compare_with_golden(name: str, actual: str) -> None:
    path = GOLDEN / f"{name}.md"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"{path} is missing: run with STOREFENCE_UPDATE_GOLDEN=1 to write it, then read it")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                    f"golden/{name}.md", "now")
        pytest.fail(f"the messages of {name} changed (STOREFENCE_UPDATE_GOLDEN=1 rewrites the file once the "
                    f"change is meant):\n{''.join(diff)}", pytrace=False)


# --- through the real senders to the strict receivers ---------------------------------------------

class Receivers:
    """Every vendor's strict receiver on loopback and a sender of each kind pointed at it."""

    def __enter__(self):
        self.dingtalk = DingTalkReceiver(per_minute=None).__enter__()
        self.wecom = WeComReceiver(per_minute=None).__enter__()
        self.feishu = FeishuReceiver(per_minute=None).__enter__()
        self.slack = SlackReceiver(per_minute=None).__enter__()
        self.provider = SmsProviderReceiver().__enter__()
        self.smtp = SmtpServer(login=None, password=None).__enter__()
        smtp = self.smtp
        self.senders = {
            "dingtalk": DingTalkSender(requests.Session(), self.dingtalk.url, "robot-token", "SEC-robot-secret"),
            "wecom": WeComSender(requests.Session(), self.wecom.url, "wecom-key"),
            "feishu": FeishuSender(requests.Session(), self.feishu.url, "feishu-token", "feishu-secret"),
            "slack": SlackSender(requests.Session(), f"{self.slack.url}/services", "T0001/B0001/slack-secret"),
            "email": EmailSender(lambda: smtplib.SMTP(smtp.host, smtp.port, timeout=5), "storefence@example.com"),
            "sms": SmsSender(requests.Session(), self.provider.url, "sms-api-key", SMS),
            "voice": VoiceSender(requests.Session(), self.provider.url, "sms-api-key", VOICE),
        }
        return self

    def __exit__(self, *exc):
        for r in (self.dingtalk, self.wecom, self.feishu, self.slack, self.provider, self.smtp):
            r.__exit__(*exc)

    def refused(self) -> dict[str, list]:
        return {name: r.refused for name, r in (("dingtalk", self.dingtalk), ("wecom", self.wecom),
                                                ("feishu", self.feishu), ("slack", self.slack),
                                                ("sms/voice", self.provider)) if r.refused}


def send_everywhere(payloads: list[dict]) -> list[str]:
    """Each payload in each language through every kind's sender: the failures, empty when every
    receiver accepted every message."""
    problems = []
    with Receivers() as r:
        for i, payload in enumerate(payloads, 1):
            for lang in LANGUAGES:
                message = message_of(payload, lang)
                for kind, sender in r.senders.items():
                    result = sender.send(message)
                    if not result.ok or result.error:
                        problems.append(f"message {i} {kind} {lang}: {result.error}")
        if r.refused():
            problems.append(f"refused: {r.refused()}")
    return problems


# --- what must never reach a person ---------------------------------------------------------------

URL = re.compile(r"https?://[^\s)\"'|>]+")
NUMBER = re.compile(r"(×?)\d[\d,]*(?:\.(\d+))?")


def raw_columns(rule, text: str) -> list[str]:
    """The rule's columns (measures, ratios, attributes, labelled metrics) that ``text`` names, its
    links aside."""
    words = URL.sub("", text)
    columns = {*rule.measures, *rule.ratios, *rule.attributes, *rule.metric_labels}
    return sorted(c for c in columns if re.search(rf"\b{re.escape(c)}\b", words))


def decimals_allowed(rule, catalogue) -> int:
    """The most decimals a number of the rule's entity lines may have: its metrics' formats (and
    those of the rules whose breaches it quotes)."""
    rules = [rule, *(catalogue.get(r).rule for r in rule.references)]
    return max(DIGITS.get(spec.format, 1) for r in rules for spec in r.metric_labels.values())


USUAL = re.compile(r"(平时|usually) \d+\.\d(?!\d)")  # a count's baseline under 10 is an average: one decimal


def too_precise(line: str, allowed: int) -> list[str]:
    line = USUAL.sub(r"\1", line)
    return [m.group(0) for m in NUMBER.finditer(line) if len(m.group(2) or "") > (2 if m.group(1) else allowed)]


def entity_of(who: str) -> str:
    """The last part of an entity line's small key: SKU-BEA-000419, shop-01, alipay."""
    return who.split("/")[-1].split("=")[-1].split(" ")[-1]


def reading_problems(rule, catalogue, inc: dict, queued: list[dict]) -> list[str]:
    problems = []
    allowed = decimals_allowed(rule, catalogue)
    for i, m in enumerate(queued, 1):
        payload = m["payload"]
        for kind in KINDS:
            found = raw_columns(rule, channel_form(kind, message_of(payload, "zh")))
            if found:
                problems.append(f"message {i} {kind} zh names raw columns {found}")
        for lang, form in (payload.get("forms") or {}).items():
            for it in form["items"]:
                for part in (it["said"], it["facts"] or ""):
                    if too_precise(part, allowed):
                        problems.append(f"message {i} {lang}: {too_precise(part, allowed)} in {part!r}")
            if not all(it["said"] and it["who"] for it in form["items"]):
                problems.append(f"message {i} {lang}: an entity line without its entity or numbers")
    fired = [m for m in queued if m["payload"].get("forms")]
    if not fired:
        return [*problems, "no alert message was queued"]
    worst = max(fired, key=lambda m: ORDER.get(m["payload"]["severity"], 0))
    targets = set(inc.get("skus") or ()) if inc["entity_type"] == "brand" else {inc["entity"]}
    for lang, form in worst["payload"]["forms"].items():
        first = form["items"][0]["who"]
        if rule.id not in NOT_FIRST and entity_of(first) not in targets:
            problems.append(f"{lang}: the first entity line is {first!r}, not the incident's {sorted(targets)[:3]}")
        elif rule.id in NOT_FIRST and (entity_of(first) in targets or not any(
                entity_of(it["who"]) in targets for it in form["items"][:TOP])):
            problems.append(f"{lang}: NOT_FIRST[{rule.id!r}] no longer holds (first line {first!r})")
    return problems


# --- the tests ------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("rule_id", RULES)
def test_golden_messages_of_each_rule_on_its_incident(rule_id, incident_shop_duckdb, catalogue, routing, store,
                                                      ack_links):
    hook, labels = incident_shop_duckdb
    assert rule_id in INCIDENT, f"{rule_id}: name the incident that makes it fire in INCIDENT"
    inc = next(i for i in labels["incidents"] if i["id"] == INCIDENT[rule_id])
    loaded = catalogue.get(rule_id)
    queued, evaluation = queued_messages(hook, loaded, catalogue, inc, store, routing)
    assert queued, f"{rule_id} queued no message on {inc['id']}"
    compare_with_golden(rule_id, golden_text(loaded, inc, evaluation, queued))
    problems = reading_problems(loaded.rule, catalogue, inc, queued)
    assert not problems, "\n".join(problems)
    refused = send_everywhere([m["payload"] for m in queued])
    assert not refused, "\n".join(refused)


def test_every_golden_file_is_a_catalogue_rules():
    assert {p.stem for p in GOLDEN.glob("*.md")} <= set(RULES)


def test_a_list_larger_than_a_message_is_laid_out_within_each_robots_limit(catalogue, routing, store, ack_links):
    """300 order spikes with long names: WeCom and DingTalk show the top entities that fit and a
    "+N more" line linking the alerts page; the Feishu card stays within 20 KB; all accepted."""
    from threshold_operators.engine.compile import threshold_of

    rule = catalogue.get("sales.order_spike").rule
    now = datetime.fromisoformat("2026-08-16T08:00:00+00:00")
    name = "超长商品名称：" + "婴儿配方奶粉一段八百克罐装进口奶源" * 25  # 400 characters
    about = "Brand A · " + "母婴用品" * 50
    breaches = [{"rule_id": rule.id, "entity": {"shop_id": "shop-01", "sku": f"SKU-{i:04d}"},
                 "entity_key": f"shop_id=shop-01/sku=SKU-{i:04d}", "bucket": "2026-08-16T07:55:00+00:00",
                 "state": "firing", "severity": "red", "metric": "orders", "value": 3.0 + i / 100, "baseline": 10.0,
                 "threshold": threshold_of(rule, "red"), "metrics": {"orders": 30.0 + i / 10}, "attributes": {},
                 "names": {"entity": f"{name} {i}", "about": about, "shop": "Storefence 旗舰店"}} for i in range(300)]
    evaluation = {"rule_id": rule.id, "mode": "live", "outcome": "breach", "window_start": "2026-08-16T07:55:00+00:00",
                  "window_end": now.isoformat(), "firing": 300, "breaches": breaches, "failing_tables": {}}
    pipeline.queue_notifications(rule, evaluation, store, routing, now)
    payload = next(n["payload"] for n in store.notifications() if n["route"] == "ops_dingtalk")
    with Receivers() as r:
        for lang, more in (("zh", "……另有 {n} 个，[查看全部]({url})"), ("en", "... and {n} more ([see all]({url}))")):
            message = message_of(payload, lang)
            for kind in ("dingtalk", "wecom", "feishu", "slack", "email", "sms", "voice"):
                result = r.senders[kind].send(message)
                assert result.ok and not result.error, (kind, lang, result.error)
            wecom = r.wecom.received[-1]["markdown"]["content"]
            dingtalk = r.dingtalk.received[-1]["markdown"]["text"]
            card = json.dumps(r.feishu.received[-1], ensure_ascii=False)
            for text, limit in ((wecom, 4096), (dingtalk, 20_000)):
                shown = [x for x in text.splitlines() if x.startswith("- [")]
                assert 0 < len(shown) < TOP and len(text.encode()) <= limit, (lang, len(shown), len(text.encode()))
                assert shown[0].split(": ")[0].endswith("SKU-0299"), shown[0]  # the furthest past first
                assert f"- {more.format(n=300 - len(shown), url=ALERTS_PAGE + rule.id)}" in text.splitlines()
            assert len(card.encode()) <= 20 * 1024 and f"{ALERTS_PAGE}{rule.id}" in card
        assert not r.refused()
