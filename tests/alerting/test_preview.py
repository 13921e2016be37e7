"""``storefence preview RULE``: what each channel of the rule's team would send for its latest
evaluation in the state store, in each channel's form and language, nothing sent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from threshold_operators.alerting.pipeline import queue_notifications
from threshold_operators.alerting.preview import latest_alerts, preview
from threshold_operators.alerting.routing import load_routing
from threshold_operators.cli import main
from threshold_operators.rules.catalogue import load_catalogue

T = datetime(2026, 9, 7, 2, tzinfo=UTC)  # 10:00 in Shanghai: no quiet hours
RULE = "inventory.stock_cover"


def _fire(store, severity="red"):
    rule = load_catalogue().get(RULE).rule
    end = T
    ev = {"rule_id": RULE, "mode": "live", "outcome": "breach", "window_start": (end - timedelta(hours=1)).isoformat(),
          "window_end": end.isoformat(), "firing": 2, "resolved_entities": [],
          "breaches": [{"entity_key": f"shop_id=shop-01/sku=SKU-{i}", "entity": {"shop_id": "shop-01", "sku": f"SKU-{i}"},
                        "severity": severity, "bucket": (end - timedelta(hours=1)).isoformat(), "metric": "cover_days",
                        "value": v, "baseline": None, "threshold": 3.0, "metrics": {"cover_days": v},
                        "attributes": {"stock": s, "in_transit": 0, "daily_forecast": 48.0, "supplier_id": "SUP-1"}}
                       for i, (v, s) in enumerate([(0.21, 10), (1.5, 72)])]}
    queue_notifications(rule, ev, store, load_routing(), end)
    return rule


def test_each_channel_of_the_team_in_its_form_and_language(store):
    rule = _fire(store)
    alerts = latest_alerts(store, RULE)
    shown = {r.kind: r for r in preview(rule, alerts, load_routing())}
    routing = load_routing()
    team = routing.team_of(rule.owner)
    assert {routing.channels[c].kind for c in routing.channels_for(team, "red")} == set(shown)
    robot = json.loads(shown["dingtalk"].body)  # the robot's request body, markdown
    assert robot["msgtype"] == "markdown" and "库存可售 0.2 天（阈值 3 天）" in robot["markdown"]["text"]
    assert "约 5 小时售罄" in robot["markdown"]["text"]
    assert shown["dingtalk"].language == "zh" and "stock cover" not in robot["markdown"]["text"]
    english = {r.kind: r for r in preview(rule, alerts, routing, language="en")}
    assert "stock cover 0.2 days (threshold 3 days)" in json.loads(english["dingtalk"].body)["markdown"]["text"]
    only = preview(rule, alerts, routing, kind="dingtalk")
    assert [r.kind for r in only] == ["dingtalk"]


def test_the_command_prints_it_and_refuses_what_it_cannot_show(store, capsys):
    url = str(store.engine.url)
    assert main(["preview", RULE, "--state", url]) == 2  # nothing fired yet: said, not a traceback
    assert "no alert in the state store" in capsys.readouterr().err
    _fire(store)
    assert main(["preview", RULE, "--state", url, "--channel", "dingtalk", "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("=== purchasing_dingtalk (dingtalk, en): [red] Low stock cover")
    assert "on hand 10 units" in out
    assert main(["preview", "no.such_rule", "--state", url]) == 2
