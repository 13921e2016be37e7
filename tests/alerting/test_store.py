"""The state store on SQLite (the default, WAL mode) and PostgreSQL: alerts and the outbox."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from threshold_operators.alerting.lifecycle import Event, Observation, notification_key, transition
from threshold_operators.alerting.store import StateStore, state_url

T0 = datetime(2026, 8, 16, 7, tzinfo=UTC)
NOW = datetime(2026, 8, 16, 8, 5, tzinfo=UTC)


@pytest.fixture
def store(state_store):
    return state_store


def _firing(k=0, severity="red"):
    return transition(None, Observation("inventory.stock_cover", "shop_id=s1/sku=A", "firing", severity,
                                        T0 + timedelta(hours=k), T0 + timedelta(hours=k + 1), {"value": 0.2}), NOW)


def test_alerts_round_trip(store):
    alert = _firing().alert
    store.save(alert)
    assert store.get(alert.fingerprint) == alert
    later = transition(alert, Observation("inventory.stock_cover", "shop_id=s1/sku=A", "resolved", None,
                                          T0 + timedelta(hours=3), T0 + timedelta(hours=4)), NOW + timedelta(hours=3))
    store.save(later.alert)
    assert store.get(alert.fingerprint).status == "resolved"
    assert [a.fingerprint for a in store.list()] == [alert.fingerprint] and store.list(active_only=True) == []


def test_the_same_notification_is_stored_once_however_often_it_is_decided(store):
    alert = _firing().alert
    key = notification_key(alert, Event.FIRED, 1, T0 + timedelta(hours=1))
    first = [store.enqueue(key=key, fingerprint=alert.fingerprint, event="fired", level=1, route="purchasing",
                           payload={"text": "库存不足"}, now=NOW) for _ in range(3)]
    assert first == [True, False, False]
    pending = store.due(NOW)
    assert len(pending) == 1 and pending[0]["payload"] == {"text": "库存不足"}
    store.mark_failed(pending[0]["id"], "HTTP 503", NOW + timedelta(minutes=1))
    assert store.due(NOW) == [] and len(store.due(NOW + timedelta(minutes=1))) == 1  # back-off respected
    store.mark_sent(pending[0]["id"], NOW + timedelta(minutes=1))
    assert store.due(NOW + timedelta(hours=1)) == []
    sent = store.notifications(alert.fingerprint)[0]
    assert sent["status"] == "sent" and sent["attempts"] == 2 and sent["last_error"] == "HTTP 503"
    assert store.enqueue(key=key, fingerprint=alert.fingerprint, event="fired", level=1, route="purchasing",
                         payload={}, now=NOW + timedelta(days=1)) is False  # a re-run a day later: still once


def test_giving_up_marks_failed(store):
    alert = _firing().alert
    store.enqueue(key="k", fingerprint=alert.fingerprint, event="fired", level=1, route="r", payload={}, now=NOW)
    store.mark_failed(store.due(NOW)[0]["id"], "errcode 310000", None)
    assert store.due(NOW + timedelta(days=1)) == [] and store.notifications()[0]["status"] == "failed"


def test_the_default_store_is_a_wal_sqlite_file_in_the_airflow_home(airflow_home, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW_CONN_STOREFENCE_STATE", raising=False)
    assert state_url() == f"sqlite:///{tmp_path / 'storefence-state.sqlite'}"
    store = StateStore()
    store.create()
    store.save(_firing().alert)
    with store.engine.begin() as con:  # a writer in the middle of a transaction ...
        con.exec_driver_sql("UPDATE alerts SET severity = 'yellow'")
        reader = sqlite3.connect(tmp_path / "storefence-state.sqlite", timeout=0.1)  # ... does not block a reader
        assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert reader.execute("SELECT severity FROM alerts").fetchone()[0] == "red"
        reader.close()
    store.engine.dispose()


def test_a_connection_picks_the_store(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_STATE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "s.db")}))
    assert state_url() == f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_STATE", json.dumps(
        {"conn_type": "postgres", "host": "db.internal", "login": "sf", "schema": "alerts", "port": 5432}))
    assert state_url() == "postgresql+psycopg2://sf@db.internal:5432/alerts"


def test_find_takes_a_hex_prefix_only(store):
    alert = _firing().alert
    store.save(alert)
    assert store.find(alert.fingerprint[:6]) == alert
    assert store.find("%") is None and store.find("_") is None and store.find("") is None  # no LIKE wildcards


def test_chart_points_upsert_and_prune(store):
    """``alert_points`` (the alerts page's chart): one row per rule, entity and bucket however often
    a retried task writes it; a point older than 30 days is pruned as new ones come."""
    def point(bucket, value, state="firing"):
        return {"rule_id": "inventory.stock_cover", "entity_key": "shop_id=s1/sku=A", "bucket": bucket,
                "state": state, "severity": "red" if state == "firing" else None, "value": value,
                "baseline": 9.0, "threshold": 3.0}

    old = T0 - timedelta(days=31)
    store.save_points([point(old, 1.0)], old)
    store.save_points([point(T0, 2.0), point(T0 + timedelta(hours=1), 1.5)], NOW)
    store.save_points([point(T0, 2.5), point(T0 + timedelta(hours=2), None, "resolved")], NOW)  # a retry, then news
    got = store.points("inventory.stock_cover", "shop_id=s1/sku=A")
    assert [(p["bucket"], p["state"], p["value"]) for p in got] == [
        (T0, "firing", 2.5), (T0 + timedelta(hours=1), "firing", 1.5), (T0 + timedelta(hours=2), "resolved", None)]
    assert store.points("inventory.stock_cover", "shop_id=s1/sku=A", since=T0 + timedelta(hours=1))[0]["value"] == 1.5


def test_the_messages_about_an_alert_are_its_own_and_the_groups_listing_it(store):
    """What the alerts page's detail lists: rows under the alert's fingerprint, grouped messages
    naming it, and resolved messages naming its entity; never another entity's whose key contains
    LIKE's wildcards."""
    alert = _firing().alert
    store.save(alert)
    other = "shop_id=s1/sku=A%"  # a LIKE wildcard in a key: matches nothing but itself
    rows = [("own", alert.fingerprint, {}),
            ("group", "feedbeef", {"rule_id": alert.rule_id, "fingerprints": [alert.fingerprint, "x"]}),
            ("resolved", "cafe0001", {"rule_id": alert.rule_id, "entities": [alert.entity_key]}),
            ("other rule", "cafe0002", {"rule_id": "sales.order_spike", "entities": [alert.entity_key]}),
            ("wildcard", "cafe0003", {"rule_id": alert.rule_id, "entities": [other]})]
    for key, fp, data in rows:
        store.enqueue(key=key, fingerprint=fp, event="fired", level=1, route="r", payload={"data": data}, now=NOW)
    store.enqueue(key="before", fingerprint=alert.fingerprint, event="fired", level=1, route="r", payload={},
                  now=alert.opened_at - timedelta(hours=1))  # an earlier firing's message
    assert [n["idempotency_key"] for n in store.notifications_about(alert)] == ["own", "group", "resolved"]


def test_the_page_lists_the_active_and_the_recently_resolved(store):
    alert = _firing().alert
    gone = transition(None, Observation("inventory.stock_cover", "shop_id=s1/sku=B", "firing", "red", T0,
                                        T0 + timedelta(hours=1)), NOW).alert
    store.save_many([alert, gone])
    resolved = transition(gone, Observation(gone.rule_id, gone.entity_key, "resolved", None, T0 + timedelta(hours=2),
                                            T0 + timedelta(hours=3)), NOW + timedelta(hours=1)).alert
    store.save(resolved)
    assert {a.entity_key for a in store.list(resolved_since=NOW)} == {alert.entity_key, gone.entity_key}
    assert {a.entity_key for a in store.list(resolved_since=NOW + timedelta(hours=2))} == {alert.entity_key}


def test_a_store_made_before_an_index_existed_gets_it(store):
    """An index added since (the outbox's ``created_at``, which bounds an alert's messages) is
    created by the next set-up, as a missing column is added."""
    from sqlalchemy import inspect

    def indexes():
        return {i["name"] for i in inspect(store.engine).get_indexes("notifications")}

    assert "ix_notifications_created_at" in indexes()
    with store.engine.begin() as con:
        con.exec_driver_sql("DROP INDEX ix_notifications_created_at")
    assert "ix_notifications_created_at" not in indexes()
    store.create(force=True)
    assert "ix_notifications_created_at" in indexes()
