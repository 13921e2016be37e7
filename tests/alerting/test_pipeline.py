"""record -> group -> route -> dedup: a check's outcome becomes a few outbox rows, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threshold_operators.alerting.pipeline import queue_notifications
from threshold_operators.alerting.routing import load_routing
from threshold_operators.rules.catalogue import load_catalogue

H = timedelta(hours=1)
T = datetime(2026, 8, 16, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def routing():
    return load_routing()


@pytest.fixture(scope="module")
def spike():
    return load_catalogue().get("sales.order_spike").rule


def evaluation(end, breaches=(), resolved=(), outcome="breach"):
    return {"rule_id": "sales.order_spike", "mode": "live", "outcome": outcome, "window_start": (end - H).isoformat(),
            "window_end": end.isoformat(), "firing": len(breaches), "resolved_entities": list(resolved),
            "breaches": [{"entity_key": k, "severity": s, "bucket": (end - H).isoformat(), "metric": "orders",
                          "value": 5.0, "baseline": 4.0, "threshold": 3.0, "entity": {}} for k, s in breaches]}


def test_a_red_spike_reaches_the_supervisor_on_the_red_channels_once(store, routing, spike):
    ev = evaluation(T, [("shop_id=s1/sku=A", "red"), ("shop_id=s1/sku=B", "red")])
    report = queue_notifications(spike, ev, store, routing, T)
    assert report.events == {"fired": 2} and report.queued == 2  # ops_dingtalk + sms, one message each
    rows = store.notifications()
    assert sorted(r["route"] for r in rows) == ["ops_dingtalk", "sms"]
    assert rows[0]["payload"]["mentions"] == ["13800000002"] and rows[0]["level"] == 2  # red starts at the supervisor
    assert "2 个 SKU" in rows[0]["payload"]["text"] and "李伟" in rows[0]["payload"]["text"]
    assert "2 SKUs" in rows[0]["payload"]["text_en"] and "08-16 15:00" in rows[0]["payload"]["text"]  # Beijing time
    assert {a.escalation_level for a in store.list()} == {2}
    again = queue_notifications(spike, ev, store, routing, T + timedelta(minutes=5))  # a retried task
    assert again.queued == 0 and len(store.notifications()) == 2


def test_worse_then_resolved(store, routing, spike):
    queue_notifications(spike, evaluation(T, [("shop_id=s1/sku=A", "yellow")]), store, routing, T)
    worse = queue_notifications(spike, evaluation(T + H, [("shop_id=s1/sku=A", "red")]), store, routing, T + H)
    assert worse.events == {"worsened": 1}
    steady = queue_notifications(spike, evaluation(T + 2 * H, [("shop_id=s1/sku=A", "red")]), store, routing, T + 2 * H)
    assert steady.events == {} and steady.queued == 0  # still firing: no news (repeats are escalation's)
    done = queue_notifications(spike, evaluation(T + 3 * H, resolved=["shop_id=s1/sku=A"], outcome="ok"),
                               store, routing, T + 3 * H)
    assert done.events == {"resolved": 1}
    events = [r["event"] for r in store.notifications()]
    assert events == ["fired", "worsened", "worsened", "resolved", "resolved"]  # per channel of each severity


def test_ten_thousand_entities_are_one_message_per_channel(store, routing, spike):
    ev = evaluation(T, [(f"shop_id=s1/sku={i:05d}", "yellow") for i in range(10_000)])
    report = queue_notifications(spike, ev, store, routing, T)
    assert report.events == {"fired": 10_000} and report.queued == 1  # yellow: ops_dingtalk only
    text = store.notifications()[0]["payload"]["text"]
    assert "10000 个 SKU" in text and "另有 9990 个" in text


def test_an_evaluation_error_goes_to_the_data_engineers_not_the_owner(store, routing, spike):
    ev = {"rule_id": "sales.order_spike", "mode": "live", "outcome": "error",
          "error": {"kind": "infrastructure", "message": "IO Error: Cannot open file"}}
    queue_notifications(spike, ev, store, routing, T)
    queue_notifications(spike, ev, store, routing, T + timedelta(minutes=20))  # the same hour: once
    rows = store.notifications()
    assert sorted(r["route"] for r in rows) == ["data_webhook", "email"]
    assert "not evaluated" in rows[0]["payload"]["title_en"] and "infrastructure" in rows[0]["payload"]["text_en"]


def test_shadow_rules_and_quiet_cycles_queue_nothing(store, routing):
    shadow = load_catalogue().get("sales.order_spike_7d").rule
    assert queue_notifications(shadow, evaluation(T, [("shop_id=s1/sku=A", "red")]), store, routing, T).queued == 0
    assert store.notifications() == [] and store.list() == []


def test_messages_carry_signed_acknowledge_links_when_the_connection_is_set(store, routing, spike, monkeypatch):
    import json

    from threshold_operators.alerting.ack_link import read_token
    from threshold_operators.alerting.pipeline import _link_settings

    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_ACK", json.dumps(
        {"conn_type": "http", "host": "https://airflow.example.com", "password": "ack-secret"}))
    _link_settings.cache_clear()
    try:
        queue_notifications(spike, evaluation(T, [("shop_id=s1/sku=A", "red")]), store, routing, T)
    finally:
        _link_settings.cache_clear()
    payload = store.notifications()[0]["payload"]
    [(label, url)] = payload["links"]
    assert url.startswith("https://airflow.example.com/storefence/ack/") and url in payload["text"]
    link = read_token(url.rsplit("/", 1)[1], "ack-secret", 3600, now=T)  # signed at the task's clock
    assert link.fingerprint == store.list()[0].fingerprint and link.level == 2  # red: told at the supervisor's level
    assert link.firing_of(store.list()[0])  # bound to this firing
    assert "storefence ack" not in payload["text"]  # the link replaces the command


@pytest.mark.parametrize("rule_id", sorted(load_catalogue().rules))
def test_a_message_carries_the_runbook_of_its_language_only(rule_id):
    """Every catalogue rule: the Chinese text holds the zh runbook and not the en one, the English
    text the reverse, and a channel of each language sends the one it is set to."""
    from threshold_operators.alerting.delivery import message_of
    from threshold_operators.alerting.messages import alert_message

    rule = load_catalogue().get(rule_id).rule
    zh, en = rule.runbook_in("zh"), rule.runbook_in("en")
    breach = {"entity_key": "shop_id=s1", "severity": "yellow", "metric": "m", "value": 5.0, "baseline": 2.0,
              "threshold": 4.0, "fingerprint": "f" * 40}
    text = alert_message(rule, "fired", "yellow", [breach], ((T - H).isoformat(), T.isoformat()), 1, ["李伟"])
    assert zh in text.text and en not in text.text
    assert en in text.text_en and zh not in text.text_en
    for language, own, other in (("zh", zh, en), ("en", en, zh)):
        sent = message_of(text.payload(), language).text
        assert own in sent and other not in sent
