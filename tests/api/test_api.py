"""The Storefence app: acknowledge links (no login, GET never acknowledges) and the JSON API behind
Airflow's own authentication, on a real SQLite state store, real JWTs of the configured auth manager
(SimpleAuthManager) and, at the end, Airflow's whole API server with the plugin mounted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import LINKS, SECRET, T0, USERS, bearer
from threshold_operators.alerting.ack_link import LinkSettings, make_token
from threshold_operators.alerting.lifecycle import AlertStatus, Observation, transition
from threshold_operators.alerting.mute import Silence
from threshold_operators.alerting.store import StateStore


def fire(store: StateStore, rule="inventory.low_stock", entity="shop_id=S1/sku=SKU-0042", severity="red"):
    obs = Observation(rule, entity, "firing", severity, T0 - timedelta(hours=1), T0)
    alert = transition(None, obs, T0).alert
    store.save(alert)
    return alert


# --- acknowledge links -------------------------------------------------------------------------
def test_get_shows_the_alert_and_does_not_acknowledge(client, store):
    alert = fire(store)
    token = make_token(alert.fingerprint, 1, SECRET, now=T0, opened_at=alert.opened_at)
    for _ in range(3):  # a chat app's link preview, then the person, then a reload
        page = client.get(f"/ack/{token}")
        assert page.status_code == 200
    assert "inventory.low_stock" in page.text and "shop_id=S1/sku=SKU-0042" in page.text and "red" in page.text
    assert "firing" in page.text and '<form method="post">' in page.text
    # the alerts page's detail of this alert, for whoever logs in to Airflow
    assert f'href="https://airflow.example.com/plugin/storefence?alert={alert.fingerprint}"' in page.text
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    assert store.get(alert.fingerprint).status == AlertStatus.FIRING


def test_post_acknowledges_once(client, store, clock):
    alert = fire(store)
    token = make_token(alert.fingerprint, 2, SECRET, now=T0, opened_at=alert.opened_at)
    done = client.post(f"/ack/{token}", data={"name": "  王 芳 "})
    assert done.status_code == 200 and "Acknowledged" in done.text
    saved = store.get(alert.fingerprint)
    assert saved.status == AlertStatus.ACKNOWLEDGED
    assert saved.acknowledged_by == "王 芳 (link:L2)" and saved.acknowledged_at == clock.t
    clock.t += timedelta(minutes=10)
    again = client.post(f"/ack/{token}")
    assert again.status_code == 200 and "Already acknowledged" in again.text and "王 芳" in again.text
    assert store.get(alert.fingerprint).acknowledged_at == saved.acknowledged_at  # idempotent
    assert "<form" not in client.get(f"/ack/{token}").text


def test_post_without_a_name_records_the_link_level(client, store):
    alert = fire(store)
    assert client.post(f"/ack/{make_token(alert.fingerprint, 3, SECRET, now=T0, opened_at=alert.opened_at)}").status_code == 200
    assert store.get(alert.fingerprint).acknowledged_by == "link:L3"


def test_expired_and_tampered_links_are_refused(client, store, clock):
    alert = fire(store)
    token = make_token(alert.fingerprint, 1, SECRET, now=T0, opened_at=alert.opened_at)
    clock.t = T0 + timedelta(hours=24, seconds=1)
    for response in (client.get(f"/ack/{token}"), client.post(f"/ack/{token}")):
        assert response.status_code == 403 and "expired" in response.text
    clock.t = T0
    forged = make_token(alert.fingerprint, 1, "a guessed secret", now=T0, opened_at=alert.opened_at)
    for response in (client.get(f"/ack/{forged}"), client.post(f"/ack/{forged}"), client.post(f"/ack/{token}x")):
        assert response.status_code == 403 and "not valid" in response.text
    assert store.get(alert.fingerprint).status == AlertStatus.FIRING


def test_a_link_to_an_unknown_or_resolved_alert(client, store):
    assert client.get(f"/ack/{make_token('0' * 20, 1, SECRET, now=T0, opened_at=T0)}").status_code == 404
    alert = fire(store)
    store.save(transition(alert, Observation(alert.rule_id, alert.entity_key, "resolved", None, T0, T0), T0).alert)
    token = make_token(alert.fingerprint, 1, SECRET, now=T0, opened_at=alert.opened_at)
    assert "Nothing to acknowledge" in client.get(f"/ack/{token}").text
    assert client.post(f"/ack/{token}").status_code == 409
    assert store.get(alert.fingerprint).status == AlertStatus.RESOLVED


def test_a_link_of_an_earlier_firing_does_not_acknowledge_todays(client, store, clock):
    """Fired last week, told with a link, resolved; fired again today: last week's link is gone (410)."""
    week = timedelta(days=7)
    obs = Observation("inventory.low_stock", "shop_id=S1/sku=SKU-0042", "firing", "red", T0 - week - timedelta(hours=1),
                      T0 - week)
    last_week = transition(None, obs, T0 - week).alert
    store.save(last_week)
    old_link = make_token(last_week.fingerprint, 1, SECRET, now=T0 - week + timedelta(minutes=1),
                          opened_at=last_week.opened_at)
    resolved = transition(last_week, Observation(obs.rule_id, obs.entity_key, "resolved", None, T0 - week + timedelta(hours=1),
                                                 T0 - week + timedelta(hours=1)), T0 - week + timedelta(hours=1)).alert
    store.save(resolved)
    today = transition(resolved, Observation(obs.rule_id, obs.entity_key, "firing", "red", T0 - timedelta(hours=1), T0),
                       T0).alert
    store.save(today)
    assert today.fingerprint == last_week.fingerprint and today.opened_at == T0

    links = LinkSettings(LINKS.base_url, SECRET, timedelta(days=30))  # long-lived links: only the firing differs
    from threshold_operators.api.app import create_app

    with TestClient(create_app(store_factory=lambda: store, now=clock, settings=lambda: links)) as c:
        for response in (c.get(f"/ack/{old_link}"), c.post(f"/ack/{old_link}", data={"name": "王 芳"})):
            assert response.status_code == 410, response.text
            assert "earlier firing" in response.text and f"{last_week.opened_at:%Y-%m-%d %H:%M}" in response.text
            assert "<form" not in response.text
        assert store.get(today.fingerprint).status == AlertStatus.FIRING and store.get(today.fingerprint).acknowledged_by is None
        new_link = make_token(today.fingerprint, 1, SECRET, now=T0, opened_at=today.opened_at)
        assert c.post(f"/ack/{new_link}", data={"name": "王 芳"}).status_code == 200
    assert store.get(today.fingerprint).acknowledged_by == "王 芳 (link:L1)"


def test_links_not_configured(store, clock):
    from threshold_operators.api.app import create_app

    with TestClient(create_app(store_factory=lambda: store, now=clock, settings=lambda: None)) as c:
        page = c.get(f"/ack/{make_token('0' * 20, 1, SECRET, now=T0, opened_at=T0)}")
    assert page.status_code == 404 and "storefence_ack" in page.text


def test_alert_text_is_escaped(client, store):
    alert = fire(store, entity="shop_id=S1/sku=<script>alert(1)</script>")
    page = client.get(f"/ack/{make_token(alert.fingerprint, 1, SECRET, now=T0, opened_at=alert.opened_at)}")
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text


# --- the authenticated API ---------------------------------------------------------------------
@pytest.mark.parametrize("method, path", [
    ("GET", "/api/alerts"), ("POST", "/api/alerts/0f3a/ack"), ("GET", "/api/silences"),
    ("POST", "/api/silences"), ("DELETE", "/api/silences/abc"),
])
def test_the_api_needs_a_token(client, auth_manager, method, path):
    assert client.request(method, path).status_code == 401
    assert client.request(method, path, headers={"Authorization": "Bearer not.a.jwt"}).status_code in (401, 403)
    nobody = bearer(auth_manager, "nobody", None)  # authenticated, no role: not authorized
    assert client.request(method, path, headers=nobody, json={}).status_code == 403


WRITES = [("POST", "/api/alerts/{fp}/ack", None),
          ("POST", "/api/alerts/ack", {"fingerprints": ["{fp}"]}),
          ("POST", "/api/silences", {"rule": "inventory.*", "reason": "stock on the way", "duration": "1h"}),
          ("DELETE", "/api/silences/{silence}", None)]


def test_every_write_route_is_in_the_list_above(client):
    """A new POST/PUT/DELETE route must be added to WRITES, so that its 403 for viewers is tested."""
    routes = {(m, r.path) for r in client.app.routes for m in getattr(r, "methods", ()) if m in ("POST", "PUT", "DELETE", "PATCH")}
    reads = {("POST", "/ack/{token}"),  # the signed link is its own authentication
             ("POST", "/api/silences/preview")}  # a read with a body: writes nothing, open to viewers
    assert routes - reads == {("POST", "/api/alerts/{fingerprint}/ack"), ("POST", "/api/alerts/ack"),
                              ("POST", "/api/silences"), ("DELETE", "/api/silences/{silence_id}")}


@pytest.mark.parametrize("role, allowed", [("viewer", False), ("user", True), ("op", True), ("admin", True)])
def test_writes_need_a_role_that_may_edit(client, store, auth_manager, clock, role, allowed):
    """SimpleAuthManager lets every Viewer use a custom view with any method; our second question
    (may the user edit DAG runs?) refuses the viewer. Reads stay open to the viewer."""
    alert = fire(store)
    silence = store.add_silence(Silence("li.wei", "planned", clock.t, clock.t + timedelta(hours=2), "*"), clock.t)
    headers = bearer(auth_manager, f"someone-{role}", role)
    for method, path, body in WRITES:
        url = path.format(fp=alert.fingerprint, silence=silence.id)
        if body and "fingerprints" in body:
            body = {"fingerprints": [alert.fingerprint]}
        response = client.request(method, url, headers=headers, json=body)
        if allowed:
            assert response.status_code in (200, 201), (method, url, response.text)
        else:
            assert response.status_code == 403, (method, url, response.text)
            assert "needs a role that may edit" in response.json()["detail"]
    if not allowed:
        assert store.get(alert.fingerprint).status == AlertStatus.FIRING
        assert [s.id for s in store.silences(clock.t)] == [silence.id]
    assert client.get("/api/alerts", headers=headers).status_code == 200
    assert client.get("/api/silences", headers=headers).status_code == 200


def test_the_openapi_description_needs_a_login(client, auth_manager):
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/openapi.json", headers={"Authorization": "Bearer not.a.jwt"}).status_code in (401, 403)
    assert client.get("/openapi.json", headers=bearer(auth_manager, "nobody", None)).status_code == 403
    described = client.get("/openapi.json", headers=bearer(auth_manager, "guest", "viewer"))
    assert described.status_code == 200 and "/api/silences" in described.json()["paths"]
    assert "/openapi.json" not in described.json()["paths"]
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert client.get(path).status_code == 404  # not served


def test_an_expired_token_is_refused(client, auth_manager):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    token = auth_manager.generate_jwt(SimpleAuthManagerUser(username="li.wei", role="op"),
                                      expiration_time_in_seconds=-3600)
    assert client.get("/api/alerts", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_list_and_acknowledge_alerts(client, store, auth_manager, clock):
    red = fire(store)
    other = fire(store, rule="traffic.conversion_drop", entity="shop_id=S1", severity="yellow")
    store.save(transition(other, Observation(other.rule_id, other.entity_key, "resolved", None, T0, T0), T0).alert)
    headers = bearer(auth_manager, "li.wei", "op")
    active = client.get("/api/alerts", headers=headers)
    assert active.status_code == 200
    assert [a["fingerprint"] for a in active.json()["alerts"]] == [red.fingerprint]
    assert len(client.get("/api/alerts?all=true", headers=headers).json()["alerts"]) == 2

    acked = client.post(f"/api/alerts/{red.fingerprint[:8]}/ack", headers=headers)
    assert acked.status_code == 200
    assert acked.json()["status"] == "acknowledged" and acked.json()["acknowledged_by"] == "li.wei"
    assert store.get(red.fingerprint).acknowledged_by == "li.wei"
    assert client.post(f"/api/alerts/{red.fingerprint}/ack", headers=headers).status_code == 200  # idempotent
    assert client.post(f"/api/alerts/{other.fingerprint}/ack", headers=headers).status_code == 409  # resolved
    assert client.post("/api/alerts/ffffffff/ack", headers=headers).status_code == 404
    assert client.post("/api/alerts/%25/ack", headers=headers).status_code == 422  # never a LIKE pattern


def test_silences_through_the_api_end_up_in_the_store(client, store, auth_manager, clock):
    headers = bearer(auth_manager, "li.wei", "op")
    made = client.post("/api/silences", headers=headers, json={
        "rule": "inventory.*", "entity": "*sku=SKU-0042*", "shop": "S1", "reason": "大促压测", "duration": "2h"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["author"] == "li.wei" and body["state"] == "active"
    window = client.post("/api/silences", headers=headers, json={
        "rule": "*", "reason": "warehouse maintenance", "starts_at": "2026-11-12T01:00:00",
        "ends_at": "2026-11-12T03:00:00+00:00"})
    assert window.status_code == 201 and window.json()["state"] == "pending"

    stored = {s.id: s for s in store.silences()}
    assert set(stored) == {body["id"], window.json()["id"]}
    s = stored[body["id"]]
    assert (s.rule, s.entity, s.shop, s.author, s.reason) == ("inventory.*", "*sku=SKU-0042*", "S1", "li.wei", "大促压测")
    assert s.starts_at == clock.t and s.ends_at == clock.t + timedelta(hours=2)
    assert stored[window.json()["id"]].starts_at == datetime(2026, 11, 12, 1, tzinfo=UTC)

    listed = client.get("/api/silences", headers=headers).json()
    assert [x["id"] for x in listed] == [body["id"], window.json()["id"]]

    clock.t += timedelta(minutes=30)
    gone = client.delete(f"/api/silences/{body['id']}", headers=headers)
    assert gone.status_code == 200 and gone.json()["state"] == "expired"
    assert [x.id for x in store.silences(clock.t)] == [window.json()["id"]]
    assert [x["id"] for x in client.get("/api/silences", headers=headers).json()] == [window.json()["id"]]
    assert len(client.get("/api/silences?all=true", headers=headers).json()) == 2
    assert client.delete(f"/api/silences/{body['id']}", headers=headers).status_code == 404


def test_expiring_a_pending_silence(client, store, auth_manager, clock):
    headers = bearer(auth_manager, "li.wei", "op")
    window = client.post("/api/silences", headers=headers, json={
        "rule": "*", "reason": "maintenance", "starts_at": "2026-11-12T01:00:00Z", "duration": "2h"}).json()
    assert client.delete(f"/api/silences/{window['id']}", headers=headers).status_code == 200
    assert store.silences(clock.t) == []


@pytest.mark.parametrize("payload, problem", [
    ({"rule": "x", "reason": "r"}, "ends_at or duration"),
    ({"rule": "x", "reason": "r", "duration": "2h", "ends_at": "2026-11-12T00:00:00Z"}, "ends_at or duration"),
    ({"rule": "x", "reason": "r", "duration": "2 fortnights"}, "not a duration"),
    ({"rule": "x", "reason": "r", "starts_at": "2026-11-12T05:00:00Z", "ends_at": "2026-11-12T04:00:00Z"},
     "must end after it starts"),
    ({"rule": "x", "reason": "r", "ends_at": "2026-11-10T00:00:00Z"}, "must end after it starts"),
    ({"rule": "x", "reason": "", "duration": "2h"}, "reason"),
])
def test_bad_silences_are_refused_with_why(client, store, auth_manager, payload, problem):
    response = client.post("/api/silences", headers=bearer(auth_manager, "li.wei", "op"), json=payload)
    assert response.status_code == 422 and problem in response.text
    assert store.silences() == []


def test_the_silence_api_feeds_the_mute_stage(client, store, auth_manager, clock):
    from threshold_operators.alerting.mute import Silences

    alert = fire(store)
    client.post("/api/silences", headers=bearer(auth_manager, "li.wei", "op"),
                json={"rule": "inventory.*", "reason": "restock on the way", "duration": "1h"})
    mute = Silences(tuple(store.silences(clock.t))).mutes(alert, "inventory", clock.t)
    assert mute is not None and "li.wei" in mute.reason and "restock on the way" in mute.reason
    assert isinstance(store.silences()[0], Silence)


# --- the plugin, as Airflow loads and serves it --------------------------------------------------
def test_airflow_discovers_the_plugin():
    from airflow import plugins_manager, settings

    assert settings.PLUGINS_FOLDER.endswith("plugins")
    plugins, errors = plugins_manager._get_plugins()
    assert not {path: e for path, e in errors.items() if "plugins/" in path}, errors
    storefence = next(p for p in plugins if p.name == "storefence")
    assert storefence.source is not None and str(storefence.source).endswith("storefence_plugin.py")
    apps, _ = plugins_manager.get_fastapi_plugins()
    assert [(a["url_prefix"], a["name"]) for a in apps if a["url_prefix"] == "/storefence"] == [
        ("/storefence", "Storefence alerts")]
    assert not any(p.source and "threshold_operators" in str(p.source) for p in plugins)  # .airflowignore


def test_served_by_airflow_with_a_token_from_auth_token(airflow_db, auth_manager, tmp_path, monkeypatch):
    """Airflow's own API server app: the plugin is mounted at /storefence, a token comes from
    POST /auth/token with a user's password, and the link page needs no login at all."""
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    state = tmp_path / "served.sqlite"
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_STATE", json.dumps({"conn_type": "sqlite", "host": str(state)}))
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_ACK", json.dumps(
        {"conn_type": "http", "host": "https://airflow.example.com", "password": SECRET}))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", USERS)
    store = StateStore(url=f"sqlite:///{state}")
    store.create()
    alert = fire(store)
    try:
        with TestClient(create_app(apps="core")) as api:
            assert api.get("/storefence/api/alerts").status_code == 401
            assert api.get("/storefence/openapi.json").status_code == 401
            password = SimpleAuthManager.get_passwords()["li.wei"]
            login = api.post("/auth/token", json={"username": "li.wei", "password": password})
            assert login.status_code == 201, login.text
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            guest = api.post("/auth/token", json={"username": "guest",
                                                  "password": SimpleAuthManager.get_passwords()["guest"]})
            as_guest = {"Authorization": f"Bearer {guest.json()['access_token']}"}
            assert api.get("/storefence/api/alerts", headers=as_guest).status_code == 200
            assert api.post(f"/storefence/api/alerts/{alert.fingerprint}/ack", headers=as_guest).status_code == 403
            listed = api.get("/storefence/api/alerts", headers=headers)
            assert listed.status_code == 200 and [a["fingerprint"] for a in listed.json()["alerts"]] == [alert.fingerprint]

            token = make_token(alert.fingerprint, 1, SECRET, opened_at=alert.opened_at)
            page = api.get(f"/storefence/ack/{token}")
            assert page.status_code == 200 and "inventory.low_stock" in page.text
            assert store.get(alert.fingerprint).status == AlertStatus.FIRING
            assert api.post(f"/storefence/ack/{token}", data={"name": "li.wei"}).status_code == 200
            assert store.get(alert.fingerprint).acknowledged_by == "li.wei (link:L1)"
    finally:
        purge_cached_app()
        store.engine.dispose()


def test_a_per_host_state_store_under_celery_is_a_503_that_says_what_to_set(auth_manager, clock):
    """The api-server of a CeleryExecutor deployment whose state store is still the SQLite default:
    the alerts API answers what to fix, not a 500."""
    from threshold_operators.api.app import create_app
    from threshold_operators.executor import PerHostStorageError

    def refused():
        raise PerHostStorageError("connection 'storefence_state' is the SQLite file /x.sqlite, on one host's disk, "
                                  "but the executor CeleryExecutor runs tasks on several hosts: point it at PostgreSQL")

    with TestClient(create_app(store_factory=refused, now=clock, settings=lambda: LINKS)) as c:
        answer = c.get("/api/alerts", headers=bearer(auth_manager, "guest", "viewer"))
    assert answer.status_code == 503
    assert "storefence_state" in answer.json()["detail"] and "PostgreSQL" in answer.json()["detail"]
