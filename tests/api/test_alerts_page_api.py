"""The API behind the alerts page: the view (tabs, filters, counts, order), an alert's detail (the
chart's points from the notify path, the notification history, the task instance, the rule's file
and runbook), acknowledging many, a silence's preview and its immediate effect, on a real SQLite
state store, the real rule catalogue and routing, real JWTs and a frozen clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.api.conftest import T0, bearer
from threshold_operators.alerting.lifecycle import AlertStatus, Observation, escalate, transition
from threshold_operators.alerting.pipeline import queue_notifications
from threshold_operators.alerting.routing import load_routing
from threshold_operators.rules.catalogue import load_catalogue

COVER = "inventory.stock_cover"


def fire(store, rule=COVER, entity="shop_id=shop-01/sku=SKU-1", severity="red", at=T0, **detail):
    obs = Observation(rule, entity, "firing", severity, at - timedelta(hours=1), at,
                      {"value": 2.5, "baseline": 9.0, "threshold": 3.0, "metric": "cover_days", **detail})
    alert = transition(None, obs, at).alert
    store.save(alert)
    return alert


@pytest.fixture
def op(auth_manager):
    return bearer(auth_manager, "li.wei", "op")


def test_the_view_counts_filters_and_orders_red_first(client, store, op, clock):
    blue = fire(store, entity="shop_id=shop-01/sku=SKU-B", severity="blue")
    red_old = fire(store, entity="shop_id=shop-02/sku=SKU-R1", severity="red", at=T0 - timedelta(hours=3))
    red_new = fire(store, entity="shop_id=shop-01/sku=SKU-R2", severity="red")
    yellow = fire(store, rule="sales.order_spike", entity="shop_id=shop-01/sku=SKU-Y", severity="yellow")
    acked = fire(store, entity="shop_id=shop-02/sku=SKU-A", severity="yellow")
    store.save(transition(acked, Observation(acked.rule_id, acked.entity_key, "firing", "yellow", T0, T0), T0).alert)
    client.post(f"/api/alerts/{acked.fingerprint}/ack", headers=op)
    gone = fire(store, entity="shop_id=shop-01/sku=SKU-G", severity="red", at=T0 - timedelta(days=2))
    store.save(transition(gone, Observation(gone.rule_id, gone.entity_key, "resolved", None, T0, T0), T0).alert)

    view = client.get("/api/alerts?tab=firing", headers=op).json()
    assert [a["fingerprint"] for a in view["alerts"]] == [red_new.fingerprint, red_old.fingerprint,
                                                          yellow.fingerprint, blue.fingerprint]
    assert view["counts"]["by_state"] == {"firing": 4, "acknowledged": 1, "muted": 0, "resolved": 1}
    assert view["counts"]["by_severity"] == {"red": 2, "yellow": 1, "blue": 1}
    assert view["facets"]["shops"] == ["shop-01", "shop-02"] and view["facets"]["domains"] == ["inventory", "sales"]
    assert view["updated_at"].startswith("2026-11-11T02:05")
    row = view["alerts"][0]
    assert row["rule_names"]["zh"] == load_catalogue().get(COVER).rule.name.zh  # names from the catalogue
    assert (row["shop"], row["entity"], row["value"], row["baseline"], row["threshold"]) == (
        "shop-01", {"shop_id": "shop-01", "sku": "SKU-R2"}, 2.5, 9.0, 3.0)

    narrowed = client.get("/api/alerts?tab=firing&shop=shop-01&severity=red&severity=blue", headers=op).json()
    assert [a["fingerprint"] for a in narrowed["alerts"]] == [red_new.fingerprint, blue.fingerprint]
    assert narrowed["counts"]["by_state"]["acknowledged"] == 0  # shop-02's acknowledged alert is filtered out
    assert [a["fingerprint"] for a in client.get("/api/alerts?q=sku-r1", headers=op).json()["alerts"]] == [
        red_old.fingerprint]
    assert [a["rule_id"] for a in client.get("/api/alerts?domain=sales", headers=op).json()["alerts"]] == [
        "sales.order_spike"]
    held = client.get("/api/alerts?tab=acknowledged", headers=op).json()["alerts"]
    assert [(a["fingerprint"], a["held_by"]) for a in held] == [(acked.fingerprint, {"zh": "li.wei", "en": "li.wei"})]
    assert [a["fingerprint"] for a in client.get("/api/alerts?tab=resolved", headers=op).json()["alerts"]] == [
        gone.fingerprint]
    clock.t += timedelta(days=8)  # resolved more than a week ago: no longer shown
    assert client.get("/api/alerts?tab=resolved", headers=op).json()["alerts"] == []
    limited = client.get("/api/alerts?tab=firing&limit=2", headers=op).json()
    assert limited["total"] == 4 and limited["truncated"] and len(limited["alerts"]) == 2
    assert client.get("/api/alerts?tab=nope", headers=op).status_code == 422


def test_who_holds_an_alert_is_the_people_of_its_level(client, store, op):
    alert = fire(store)
    store.save(escalate(alert, 2, T0))
    row = client.get("/api/alerts", headers=op).json()["alerts"][0]
    team = load_routing().team_of(load_catalogue().get(COVER).rule.owner)
    names = [p.name for p in load_routing().recipients(team, 2)]  # each language, as routing.yaml names them
    assert names and row["escalation_level"] == 2
    assert row["held_by"] == {"zh": ", ".join(n.zh for n in names), "en": ", ".join(n.en for n in names)}


def test_the_english_page_names_who_holds_an_alert_in_english(client, store, op):
    """The shipped routing.yaml names everyone in both languages: the English value is the English names,
    with not one Chinese character, in the list and in the detail alike."""
    routing = load_routing()
    team = routing.team_of(load_catalogue().get(COVER).rule.owner)
    assert all(p.name.en != p.name.zh for p in routing.people.values())
    for level in (1, 2, 3):
        alert = fire(store, entity=f"shop_id=shop-01/sku=SKU-L{level}")
        store.save(escalate(alert, level, T0))
        row = client.get(f"/api/alerts/{alert.fingerprint}", headers=op).json()["alert"]
        english = [p.name.en for p in routing.recipients(team, level)]
        assert english and row["held_by"]["en"] == ", ".join(english)
        assert not any("\u4e00" <= c <= "\u9fff" for c in row["held_by"]["en"])
        assert row["held_by"]["zh"] == ", ".join(p.name.zh for p in routing.recipients(team, level))
    listed = {a["entity_key"]: a["held_by"]["en"] for a in client.get("/api/alerts", headers=op).json()["alerts"]}
    assert listed["shop_id=shop-01/sku=SKU-L3"] == "Wang Fang (ops director)"  # purchasing's level 3


def test_a_level_that_names_nobody_is_held_by_its_role_in_each_language():
    from threshold_operators.api.views import held_by

    alert = escalate(transition(None, Observation(COVER, "k", "firing", "red", T0, T0), T0).alert, 2, T0)
    assert held_by(alert, lambda rule_id, level: []) == {"zh": "L2 (主管)", "en": "L2 (supervisor)"}
    assert held_by(transition(None, Observation(COVER, "k", "firing", "red", T0, T0), T0).alert,
                   lambda rule_id, level: []) is None  # nobody told yet


def test_acknowledge_many_skips_what_cannot_be(client, store, op):
    a, b = fire(store, entity="shop_id=shop-01/sku=SKU-1"), fire(store, entity="shop_id=shop-01/sku=SKU-2")
    gone = fire(store, entity="shop_id=shop-01/sku=SKU-3")
    store.save(transition(gone, Observation(gone.rule_id, gone.entity_key, "resolved", None, T0, T0), T0).alert)
    done = client.post("/api/alerts/ack", headers=op,
                       json={"fingerprints": [a.fingerprint, b.fingerprint[:10], gone.fingerprint, "ffffffff"]})
    assert done.status_code == 200
    body = done.json()
    assert sorted(r["fingerprint"] for r in body["acknowledged"]) == sorted([a.fingerprint, b.fingerprint])
    assert {s["fingerprint"] for s in body["skipped"]} == {gone.fingerprint, "ffffffff"}
    assert {store.get(f).acknowledged_by for f in (a.fingerprint, b.fingerprint)} == {"li.wei"}
    assert client.post("/api/alerts/ack", headers=op, json={"fingerprints": []}).status_code == 422
    assert client.post("/api/alerts/ack", headers=op, json={"fingerprints": ["%"]}).status_code == 422


def test_a_silence_previews_its_matches_then_holds_them_back_at_once(client, store, op, auth_manager):
    hit1 = fire(store, entity="shop_id=shop-01/sku=SKU-1")
    hit2 = fire(store, entity="shop_id=shop-01/sku=SKU-2", severity="yellow")
    other_shop = fire(store, entity="shop_id=shop-02/sku=SKU-1")
    other_rule = fire(store, rule="sales.order_spike", entity="shop_id=shop-01/sku=SKU-1")
    matchers = {"rule": "inventory.*", "entity": "*", "shop": "shop-01"}
    viewer = bearer(auth_manager, "guest", "viewer")
    preview = client.post("/api/silences/preview", headers=viewer, json=matchers)  # a read: viewers may
    assert preview.status_code == 200
    assert [a["fingerprint"] for a in preview.json()["alerts"]] == [hit1.fingerprint, hit2.fingerprint]
    assert store.get(hit1.fingerprint).status == AlertStatus.FIRING  # a preview writes nothing

    made = client.post("/api/silences", headers=op, json={**matchers, "reason": "restock booked", "duration": "2h"})
    assert made.status_code == 201
    for fp in (hit1.fingerprint, hit2.fingerprint):
        held = store.get(fp)
        assert held.status == AlertStatus.SILENCED and "restock booked" in held.muted and made.json()["id"] in held.muted
    assert {store.get(f).status for f in (other_shop.fingerprint, other_rule.fingerprint)} == {AlertStatus.FIRING}
    muted = client.get("/api/alerts?tab=muted", headers=op).json()
    assert sorted(a["fingerprint"] for a in muted["alerts"]) == sorted([hit1.fingerprint, hit2.fingerprint])
    assert all("restock booked" in a["muted"] for a in muted["alerts"])


def test_the_detail_has_the_chart_the_messages_and_the_task_instance(client, store, op, clock):
    """The notify path records each observation as a point (the chart's history), in the transaction
    that records the alert; the detail shows them with the messages that told of it and the task
    instance that evaluated it."""
    catalogue, routing = load_catalogue(), load_routing()
    rule = catalogue.get(COVER).rule
    entity, by = "shop_id=shop-01/sku=SKU-9", {"dag_id": "storefence_alerts_inventory",
                                              "run_id": "asset_triggered__2026-11-11T01:05:00+00:00",
                                              "task_id": "evaluate", "notify_map_index": 0}
    for i, value in enumerate((2.8, 2.2, 1.5)):
        end = T0 + timedelta(hours=i)
        breach = {"entity_key": entity, "entity": {"shop_id": "shop-01", "sku": "SKU-9"}, "severity": "red",
                  "bucket": (end - timedelta(hours=1)).isoformat(), "metric": "cover_days", "value": value,
                  "baseline": 9.0, "threshold": 3.0, "metrics": {"cover_days": value}, "attributes": {}}
        queue_notifications(rule, {"rule_id": COVER, "outcome": "breach", "window_start": (end - timedelta(hours=1))
                                   .isoformat(), "window_end": end.isoformat(), "breaches": [breach],
                                   "evaluated_by": by}, store, routing, end)
    end = T0 + timedelta(hours=3)
    queue_notifications(rule, {"rule_id": COVER, "outcome": "ok", "window_start": (end - timedelta(hours=1)).isoformat(),
                               "window_end": end.isoformat(), "breaches": [], "resolved_entities": [entity],
                               "resolved_at": {entity: (end - timedelta(hours=1)).isoformat()}}, store, routing, end)
    fp = store.list()[0].fingerprint
    clock.t = end
    detail = client.get(f"/api/alerts/{fp[:12]}", headers=op).json()
    assert [(p["state"], p["value"]) for p in detail["points"]] == [
        ("firing", 2.8), ("firing", 2.2), ("firing", 1.5), ("resolved", None)]
    assert {p["threshold"] for p in detail["points"][:3]} == {3.0}
    assert detail["alert"]["status"] == "resolved"
    assert detail["rule"]["file"] == "include/rules/inventory.yaml" and detail["rule"]["line"] == 5
    assert detail["rule"]["runbook"] == rule.runbook_in("zh") and detail["rule"]["owner"] == rule.owner
    assert detail["rule"]["runbooks"] == {"zh": rule.runbook.zh, "en": rule.runbook.en}  # both, for the page's language
    assert rule.runbook.zh != rule.runbook.en
    assert detail["rule"]["description"] == rule.description_in("zh")
    assert detail["rule"]["descriptions"] == {"zh": rule.description.zh, "en": rule.description.en}
    events = {n["event"] for n in detail["notifications"]}
    assert {"fired", "resolved"} <= events and all(n["route"] for n in detail["notifications"])
    ti = detail["task_instance"]
    assert ti["dag_id"] == "storefence_alerts_inventory" and ti["task_id"] == "evaluate"
    assert ti["url"] == ("dags/storefence_alerts_inventory/runs/asset_triggered__2026-11-11T01%3A05%3A00%2B00%3A00"
                         "/tasks/evaluate")
    assert client.get("/api/alerts/ffffffff", headers=op).status_code == 404


def test_points_are_kept_for_thirty_days_and_a_retry_writes_them_once(store):
    from threshold_operators.alerting.store import POINTS_KEPT

    def point(bucket, value):
        return {"rule_id": COVER, "entity_key": "k", "bucket": bucket, "state": "firing", "severity": "red",
                "value": value, "baseline": 1, "threshold": 2}

    store.save_points([point(T0 - POINTS_KEPT - timedelta(hours=1), 1.0)], T0 - POINTS_KEPT)
    store.save_points([point(T0, 5.0)], T0)
    store.save_points([point(T0, 6.0)], T0)  # a retried task: the same bucket, rewritten
    assert [(p["bucket"], p["value"]) for p in store.points(COVER, "k")] == [(T0, 6.0)]


def test_the_page_bundle_is_served_without_login(client):
    response = client.get("/ui/storefence-alerts.umd.js")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/javascript")
    assert "AirflowPlugin" in response.text
    assert client.get("/ui/../app.py").status_code == 404
    assert client.get("/ui/other.js").status_code == 404


def test_a_firing_alert_in_its_teams_quiet_hours_says_its_messages_wait(client, store, op, clock):
    """Quiet hours defer messages, they do not hold the alert back: the row says so while they last."""
    team = load_routing().team_of(load_catalogue().get("sales.order_spike").rule.owner)
    assert load_routing().quiet_hours().get(team) == "23:00-08:00"
    yellow = fire(store, rule="sales.order_spike", entity="shop_id=shop-01/sku=SKU-Y", severity="yellow")
    red = fire(store, rule="sales.order_spike", entity="shop_id=shop-01/sku=SKU-R", severity="red")
    clock.t = datetime(2026, 11, 11, 16, 30, tzinfo=UTC)  # 00:30 in Asia/Shanghai
    rows = {a["fingerprint"]: a for a in client.get("/api/alerts", headers=op).json()["alerts"]}
    assert rows[yellow.fingerprint]["muted"].startswith(f"quiet hours of {team}")
    assert rows[red.fingerprint]["muted"] is None  # red is never held back
    clock.t = datetime(2026, 11, 11, 2, 30, tzinfo=UTC)  # 10:30 there
    assert client.get(f"/api/alerts/{yellow.fingerprint}", headers=op).json()["alert"]["muted"] is None
