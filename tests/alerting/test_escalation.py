"""The escalation ladder over simulated time: executor, supervisor after the SLA, director after
the next, nothing after an acknowledgement. The seed's unanswered negative review (SLA 2 hours)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from threshold_operators.alerting.escalation import acknowledge_alert, escalate_due
from threshold_operators.alerting.pipeline import queue_notifications
from threshold_operators.alerting.routing import load_routing
from threshold_operators.alerting.store import StateStore
from threshold_operators.rules.catalogue import load_catalogue

REPO = Path(__file__).resolve().parents[2]
T = datetime(2026, 9, 6, 2, tzinfo=UTC)
RULE = "customer.negative_review_burst"


@pytest.fixture
def setting(tmp_path):
    store = StateStore(url=f"sqlite:///{tmp_path / 'state.sqlite'}")
    store.create()
    catalogue = load_catalogue()
    rules = {rid: r.rule for rid, r in catalogue.rules.items()}
    yield store, load_routing(), rules
    store.engine.dispose()


def _fire(store, routing, rule, severity="yellow"):
    ev = {"rule_id": rule.id, "mode": "live", "outcome": "breach", "window_start": (T - timedelta(hours=1)).isoformat(),
          "window_end": T.isoformat(), "firing": 1, "resolved_entities": [],
          "breaches": [{"entity_key": "shop_id=shop-01/sku=SKU-BEA-000050", "severity": severity,
                        "bucket": (T - timedelta(hours=1)).isoformat(), "metric": "negative_24h", "value": 60.0,
                        "baseline": 1.0, "threshold": 12.0, "entity": {}}]}
    return queue_notifications(rule, ev, store, routing, T)


def _ladder(store, routing, rules, until: timedelta, step=timedelta(minutes=10)):
    steps, t = [], T
    while t <= T + until:
        steps += [(t - T, level) for _, level in escalate_due(store, routing, rules, t).escalated]
        t += step
    return steps


def test_unacknowledged_it_climbs_to_the_director_each_sla(setting):
    store, routing, rules = setting
    routing = routing.model_copy(update={"escalation": routing.escalation.model_copy(
        update={"rules": {RULE: timedelta(hours=2)}, "start_level": {"blue": 1, "yellow": 1, "red": 1}})})
    _fire(store, routing, rules[RULE], "red")
    steps = _ladder(store, routing, rules, timedelta(hours=6))
    assert steps == [(timedelta(hours=2), 2), (timedelta(hours=4), 3)]  # then nobody above the director
    rows = [r for r in store.notifications() if r["event"] == "escalated" and r["route"] == "cs_dingtalk"]
    assert [(r["level"], r["payload"]["mentions"]) for r in rows] == [(2, ["13800000007"]), (3, ["13800000003"])]
    assert "storefence ack" in rows[0]["payload"]["text"]
    # run the escalation again over the same hours: every step was told once
    assert _ladder(store, routing, rules, timedelta(hours=6)) == []


@pytest.mark.parametrize("severity, start, ceiling", [("blue", 1, 1), ("yellow", 1, 2), ("red", 2, 3)])
def test_each_severity_climbs_to_its_ceiling_and_no_further(setting, severity, start, ceiling):
    """The seed's ladder: "一级警报只通知执行人员，二级警报通知主管，三级警报才惊动总监" (routing.yaml:
    escalation.ceiling, blue 1, yellow 2, red 3): nobody acknowledges for 6 hours."""
    store, routing, rules = setting
    _fire(store, routing, rules[RULE], severity)
    assert store.list()[0].escalation_level == start
    steps = _ladder(store, routing, rules, timedelta(hours=6))
    assert [level for _, level in steps] == list(range(start + 1, ceiling + 1))
    assert store.list()[0].escalation_level == ceiling


def test_a_rule_that_starts_at_the_director_is_told_there_whatever_its_severity(setting):
    """``start_at`` (the double alert) is above its severity's ceiling: it starts there and stays."""
    store, routing, rules = setting
    rule = rules["compound.spike_low_stock"]
    assert routing.ceiling("yellow", rule.id) == 3 and routing.ceiling("yellow") == 2
    _fire(store, routing, rule, "yellow")
    assert store.list()[0].escalation_level == 3
    assert _ladder(store, routing, rules, timedelta(hours=3)) == []


def test_a_ceiling_below_the_start_is_refused_with_its_line(tmp_path):
    from threshold_operators import located_yaml

    text = (REPO / "include" / "rules" / "routing.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "routing.yaml"
    bad.write_text(text.replace("ceiling: {blue: 1, yellow: 2, red: 3}", "ceiling: {blue: 1, yellow: 2, red: 1}"),
                   encoding="utf-8")
    with pytest.raises(located_yaml.ConfigFileError) as caught:
        load_routing(bad)
    assert "ceiling.red: 1 is below start_level.red (2)" in str(caught.value)


def test_an_acknowledgement_stops_the_ladder(setting):
    store, routing, rules = setting
    _fire(store, routing, rules[RULE])
    alert = store.list()[0]
    acknowledge_alert(store, alert.fingerprint[:8], "sun.li", T + timedelta(minutes=20))
    assert _ladder(store, routing, rules, timedelta(hours=6)) == []
    assert store.get(alert.fingerprint).acknowledged_by == "sun.li"


def test_red_starts_at_the_supervisor(setting):
    store, routing, rules = setting
    _fire(store, routing, rules[RULE], "red")
    assert store.list()[0].escalation_level == 2
    assert _ladder(store, routing, rules, timedelta(minutes=40)) == [(timedelta(minutes=30), 3)]  # default SLA 30m


def test_storefence_ack_from_the_command_line(setting, tmp_path):
    store, routing, rules = setting
    _fire(store, routing, rules[RULE])
    fp = store.list()[0].fingerprint
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    listed = subprocess.run([sys.executable, "-m", "threshold_operators.cli", "alerts", "--state", url],
                            capture_output=True, text=True, env=env)
    assert fp[:10] in listed.stdout and "firing" in listed.stdout
    ack = subprocess.run([sys.executable, "-m", "threshold_operators.cli", "ack", fp[:8], "--by", "liu.yang",
                          "--state", url], capture_output=True, text=True, env=env)
    assert ack.returncode == 0 and "acknowledged by liu.yang" in ack.stdout
    missing = subprocess.run([sys.executable, "-m", "threshold_operators.cli", "ack", "zzzz", "--state", url],
                             capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "no single alert" in missing.stderr


def test_escalation_shows_the_data_window_of_the_evaluation_that_fired_the_alert(setting):
    """Not the zero-length window of the alert's first and last bucket ("09-06 09:00 至 09-06 09:00"),
    nor a later evaluation's that found it still firing."""
    from dataclasses import replace

    from threshold_operators.alerting.escalation import data_window

    store, routing, rules = setting
    _fire(store, routing, rules[RULE])  # the evaluation of 09:00-10:00 Shanghai fires on the bucket of 09:00
    assert [lv for _, lv in escalate_due(store, routing, rules, T + timedelta(hours=12)).escalated] == [2]
    payload = next(r for r in store.notifications() if r["event"] == "escalated")["payload"]
    assert "数据时间 09-06 09:00 至 09-06 10:00（Asia/Shanghai）" in payload["text"], payload["text"]
    assert "data 09-06 09:00 .. 09-06 10:00 (Asia/Shanghai)" in payload["text_en"], payload["text_en"]

    later = {"rule_id": RULE, "mode": "live", "outcome": "breach", "window_start": (T + timedelta(hours=1)).isoformat(),
             "window_end": (T + timedelta(hours=2)).isoformat(), "firing": 1, "resolved_entities": [],
             "breaches": [{"entity_key": "shop_id=shop-01/sku=SKU-BEA-000050", "severity": "yellow",
                           "bucket": (T + timedelta(hours=1)).isoformat(), "metric": "negative_24h", "value": 61.0,
                           "baseline": 1.0, "threshold": 12.0, "entity": {}}]}
    queue_notifications(rules[RULE], later, store, routing, T + timedelta(hours=13))  # still firing: no news
    alert = store.list()[0]
    assert alert.detail["value"] == 61.0  # the rest of the detail is the latest evaluation's
    assert data_window([alert], rules[RULE]) == ((T - timedelta(hours=1)).isoformat(), T.isoformat())
    # an alert stored before the window was recorded: its buckets, each the rule's grain long
    legacy = replace(alert, detail={k: v for k, v in alert.detail.items() if k != "fired_window"})
    assert data_window([legacy], rules[RULE]) == ((T - timedelta(hours=1)).isoformat(),
                                                  (T + timedelta(hours=2)).isoformat())


def test_an_escalation_lists_exactly_what_it_escalates_and_how_long_it_waited(setting):
    """Yellow and red alerts of one rule, unacknowledged for the SLA: one escalation per severity,
    each naming only its own entities at its own severity, with the data window of the evaluation
    that fired them and how long nobody acknowledged."""
    store, routing, rules = setting
    routing = routing.model_copy(update={"escalation": routing.escalation.model_copy(
        update={"start_level": {"blue": 1, "yellow": 1, "red": 1}})})
    rule = rules[RULE]
    entities = {"shop_id=shop-01/sku=SKU-Y1": "yellow", "shop_id=shop-01/sku=SKU-Y2": "yellow",
                "shop_id=shop-01/sku=SKU-R1": "red", "shop_id=shop-01/sku=SKU-B1": "blue"}
    ev = {"rule_id": rule.id, "mode": "live", "outcome": "breach", "window_start": (T - timedelta(hours=1)).isoformat(),
          "window_end": T.isoformat(), "firing": len(entities), "resolved_entities": [],
          "breaches": [{"entity_key": key, "severity": sev, "bucket": (T - timedelta(hours=1)).isoformat(),
                        "metric": "negative_24h", "value": 60.0, "baseline": 1.0, "threshold": 12.0, "entity": {}}
                       for key, sev in entities.items()]}
    queue_notifications(rule, ev, store, routing, T)
    assert _ladder(store, routing, rules, timedelta(minutes=40)) == [(timedelta(minutes=30), 2)] * 3
    rows = [r for r in store.notifications() if r["event"] == "escalated" and r["route"] == "cs_dingtalk"]
    told = {r["payload"]["severity"]: r["payload"] for r in rows}
    assert set(told) == {"yellow", "red"}  # blue stays with the people who act
    for severity, payload in told.items():
        mine = sorted(k for k, s in entities.items() if s == severity)
        assert sorted(payload["data"]["entities"]) == mine
        others = [k.split("=")[-1] for k, s in entities.items() if s != severity]
        assert not any(o in payload["text"] for o in others), payload["text"]
        assert "已 30 分钟无人确认" in payload["text"] and "Unacknowledged for 30 min" in payload["text_en"]
        assert "数据时间 09-06 09:00 至 09-06 10:00" in payload["text"]  # the window that fired them
