"""The mute stage alone: silences, the three inhibitions, quiet hours; pure, no store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threshold_operators.alerting.lifecycle import Alert, AlertStatus, fingerprint
from threshold_operators.alerting.mute import (
    Inhibition,
    MuteStage,
    QuietHours,
    Silence,
    Silences,
    parse_quiet_hours,
    quiet_until,
)

NOW = datetime(2026, 9, 7, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def alert(rule="sales.order_spike", entity="shop_id=s1/sku=A", severity="yellow", status=AlertStatus.FIRING):
    return Alert(fingerprint(rule, entity), rule, entity, status, severity, NOW, NOW, NOW, NOW)


def silence(**kw):
    base = dict(author="li.wei", reason="大促压测 / load test", starts_at=NOW - timedelta(hours=1),
                ends_at=NOW + timedelta(hours=2))
    return Silence(**(base | kw))


@pytest.mark.parametrize(("matchers", "muted"), [
    ({}, True),
    ({"rule": "sales.*"}, True),
    ({"rule": "inventory.*"}, False),
    ({"entity": "*sku=A"}, True),
    ({"entity": "*sku=B"}, False),
    ({"shop": "s1"}, True),
    ({"shop": "s2"}, False),
])
def test_a_silence_matches_by_rule_entity_and_shop(matchers, muted):
    m = Silences((silence(**matchers),)).mutes(alert(), "operations", NOW)
    assert (m is not None) == muted
    if muted:
        assert "li.wei" in m.reason and "load test" in m.reason and m.until is None


def test_a_maintenance_window_mutes_only_between_its_start_and_end():
    window = silence(starts_at=NOW + timedelta(hours=1), ends_at=NOW + timedelta(hours=3))
    assert not window.active(NOW) and window.active(NOW + timedelta(hours=2)) and not window.active(NOW + timedelta(hours=3))


def test_a_silence_needs_an_author_a_reason_and_an_end_after_its_start():
    with pytest.raises(ValueError, match="end after"):
        silence(ends_at=NOW - timedelta(hours=2))
    with pytest.raises(ValueError, match="author and a reason"):
        silence(reason=" ")


def test_a_failing_table_inhibits_the_rules_that_read_it():
    inh = Inhibition({"orders": "freshness: nothing new for 3 h"}, {"sales.order_drop": ["orders", "shops"]})
    m = inh.mutes(alert("sales.order_drop", "shop_id=s1"), "marketing", NOW)
    assert m.kind == "inhibition" and "orders" in m.reason
    assert inh.mutes(alert("inventory.stock_cover"), "purchasing", NOW) is None


def test_a_failing_table_holds_back_only_the_rules_that_fire_on_low_values():
    inh = Inhibition({"orders": "quality: 40 of 300 rows refused"},
                     {"sales.order_drop": ["orders"], "sales.order_spike": ["orders"]}, low_rules={"sales.order_drop"})
    assert inh.mutes(alert("sales.order_drop", "shop_id=s1"), "marketing", NOW).kind == "inhibition"
    assert inh.mutes(alert("sales.order_spike"), "marketing", NOW) is None  # missing data never makes a spike


def test_a_rule_fires_on_low_values_only_when_every_condition_is_below():
    from threshold_operators.rules.catalogue import load_catalogue

    rules = {rid: r.rule for rid, r in load_catalogue().rules.items()}
    assert rules["sales.order_drop"].fires_on == "low" and rules["inventory.stock_cover"].fires_on == "low"
    assert rules["sales.order_spike"].fires_on == "high" and rules["finance.refund_rate"].fires_on == "high"
    compound = [r for r in rules.values() if r.references]
    assert compound and all(r.fires_on == "high" for r in compound)  # a compound rule is never held back


def test_red_holds_back_yellow_and_blue_of_the_same_entity_only():
    inh = Inhibition(active=[alert("inventory.stock_cover", severity="red")])
    assert inh.mutes(alert("sales.order_spike", severity="yellow"), "operations", NOW) is not None
    assert inh.mutes(alert("sales.order_spike", severity="red"), "operations", NOW) is None
    assert inh.mutes(alert("sales.order_spike", "shop_id=s1/sku=B"), "operations", NOW) is None
    assert inh.mutes(alert("inventory.stock_cover", severity="yellow"), "purchasing", NOW) is None  # itself


def test_a_compound_alert_holds_back_its_components():
    inh = Inhibition(active=[alert("compound.spike_low_stock", severity="red")],
                     components={"compound.spike_low_stock": ["sales.order_spike"]})
    m = inh.mutes(alert("sales.order_spike", severity="red"), "operations", NOW)
    assert m is not None and "compound.spike_low_stock" in m.reason


@pytest.mark.parametrize(("utc", "until"), [
    (datetime(2026, 9, 7, 16, 0, tzinfo=UTC), datetime(2026, 9, 8, 0, 0, tzinfo=UTC)),  # 00:00 local -> 08:00
    (datetime(2026, 9, 7, 15, 30, tzinfo=UTC), datetime(2026, 9, 8, 0, 0, tzinfo=UTC)),  # 23:30 local
    (datetime(2026, 9, 7, 23, 59, tzinfo=UTC), datetime(2026, 9, 8, 0, 0, tzinfo=UTC)),  # 07:59 local
    (datetime(2026, 9, 8, 0, 0, tzinfo=UTC), None),  # 08:00 local: working hours
    (datetime(2026, 9, 7, 14, 59, tzinfo=UTC), None),  # 22:59 local
])
def test_quiet_hours_across_midnight_in_the_shops_timezone(utc, until):
    assert quiet_until("23:00-08:00", "Asia/Shanghai", utc) == until


def test_at_night_only_red_goes_out_the_rest_waits_for_the_morning():
    night = datetime(2026, 9, 7, 17, 0, tzinfo=UTC)  # 01:00 in Shanghai
    q = QuietHours({"operations": "23:00-08:00"})
    deferred = q.mutes(alert(severity="yellow"), "operations", night)
    assert deferred.until == datetime(2026, 9, 8, 0, 0, tzinfo=UTC) and deferred.kind == "quiet_hours"
    assert q.mutes(alert(severity="red"), "operations", night) is None
    assert q.mutes(alert(severity="yellow"), "purchasing", night) is None  # no quiet hours of its own


def test_the_stage_keeps_the_first_answer_and_splits():
    stage = MuteStage((Inhibition(active=[alert("inventory.stock_cover", severity="red")]),
                       Silences((silence(),)), QuietHours({})))
    passed, muted = stage.split([alert(), alert(entity="shop_id=s9/sku=Z")], "operations", NOW)
    assert [a.entity_key for a in passed] == [] and [m.kind for _, m in muted] == ["inhibition", "silence"]


def test_bad_quiet_hours_are_refused():
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        parse_quiet_hours("23-8")
