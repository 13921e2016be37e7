"""Acknowledge links: signed, expiring, bound to one alert and level; settings from a connection."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from threshold_operators.alerting.ack_link import (
    InvalidLink,
    LinkSettings,
    ack_url,
    link_settings,
    make_token,
    read_token,
)

T0 = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)
OPENED = T0 - timedelta(minutes=7, seconds=30)  # when the firing the link is sent for opened
SECRET = "correct horse battery staple"
DAY = 24 * 3600


def test_round_trip():
    token = make_token("0f3a9c21d4e5b6a7c8d9", 2, SECRET, now=T0, opened_at=OPENED)
    assert read_token(token, SECRET, DAY, now=T0 + timedelta(hours=23)) == ("0f3a9c21d4e5b6a7c8d9", 2, OPENED)
    assert "/" not in token and "+" not in token and "=" not in token  # URL-safe as it stands


def test_expired_after_max_age():
    token = make_token("0f3a9c21d4e5b6a7c8d9", 1, SECRET, now=T0, opened_at=OPENED)
    assert read_token(token, SECRET, DAY, now=T0 + timedelta(seconds=DAY))
    with pytest.raises(InvalidLink) as err:
        read_token(token, SECRET, DAY, now=T0 + timedelta(seconds=DAY + 1))
    assert err.value.kind == "expired"
    assert "expired" in err.value.reason and "2026-11-11 00:00 UTC" in err.value.reason and "24 hours" in err.value.reason


def test_a_signer_clock_slightly_ahead_is_tolerated_but_not_the_future():
    token = make_token("0f3a9c21d4e5b6a7c8d9", 1, SECRET, now=T0, opened_at=OPENED)
    assert read_token(token, SECRET, DAY, now=T0 - timedelta(seconds=30))  # a worker 30 s ahead of the API server
    with pytest.raises(InvalidLink) as err:
        read_token(token, SECRET, DAY, now=T0 - timedelta(hours=1))
    assert err.value.kind == "tampered"


@pytest.mark.parametrize("alter", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
    lambda t: make_token("another-alert-fp00000", 1, SECRET, now=T0, opened_at=OPENED).split(".")[0] + "." + t.split(".", 1)[1],
    lambda t: t[: len(t) // 2],  # truncated by a chat client
    lambda t: "not-a-token",
])
def test_tampered(alter):
    token = make_token("0f3a9c21d4e5b6a7c8d9", 1, SECRET, now=T0, opened_at=OPENED)
    with pytest.raises(InvalidLink) as err:
        read_token(alter(token), SECRET, DAY, now=T0)
    assert err.value.kind == "tampered" and "not valid" in err.value.reason


def test_another_secret_or_salt_does_not_verify():
    from itsdangerous import URLSafeTimedSerializer

    token = make_token("0f3a9c21d4e5b6a7c8d9", 1, SECRET, now=T0, opened_at=OPENED)
    with pytest.raises(InvalidLink):
        read_token(token, "another secret", DAY, now=T0)
    foreign = URLSafeTimedSerializer(SECRET, salt="another-purpose").dumps(["0f3a9c21d4e5b6a7c8d9", 1])
    with pytest.raises(InvalidLink):
        read_token(foreign, SECRET, DAY)


def test_settings_from_the_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_ACK", json.dumps({
        "conn_type": "http", "host": "https://airflow.example.com/", "password": SECRET,
        "extra": {"ttl_hours": 6}}))
    settings = link_settings()
    assert settings == LinkSettings("https://airflow.example.com", SECRET, timedelta(hours=6))
    assert SECRET not in repr(settings)
    url = ack_url(settings, "0f3a9c21d4e5b6a7c8d9", 3, now=T0, opened_at=OPENED)
    prefix = "https://airflow.example.com/storefence/ack/"
    assert url.startswith(prefix)
    assert read_token(url.removeprefix(prefix), SECRET, settings.ttl.total_seconds(), now=T0) == (
        "0f3a9c21d4e5b6a7c8d9", 3, OPENED)


def test_settings_default_ttl_and_uri_style_host(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_ACK", json.dumps({
        "conn_type": "http", "host": "airflow.internal", "schema": "http", "port": 8080, "password": SECRET}))
    assert link_settings() == LinkSettings("http://airflow.internal:8080", SECRET, timedelta(hours=24))


def test_no_connection_means_no_links(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_STOREFENCE_ACK", raising=False)
    assert link_settings() is None


@pytest.mark.parametrize("conn, problem", [
    ({"conn_type": "http", "host": "https://a.example.com"}, "password"),
    ({"conn_type": "http", "password": SECRET}, "host"),
    ({"conn_type": "http", "host": "https://a.example.com", "password": SECRET, "extra": {"ttl_hours": "a day"}},
     "ttl_hours"),
])
def test_a_half_configured_connection_says_what_is_missing(monkeypatch, conn, problem):
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_ACK", json.dumps(conn))
    with pytest.raises(ValueError, match=problem):
        link_settings()


def test_the_link_names_one_firing():
    from dataclasses import dataclass

    @dataclass
    class Firing:
        opened_at: datetime

    link = read_token(make_token("0f3a9c21d4e5b6a7c8d9", 1, SECRET, now=T0, opened_at=OPENED), SECRET, DAY, now=T0)
    assert link.opened_at == OPENED.replace(microsecond=0)
    assert link.firing_of(Firing(OPENED)) and link.firing_of(Firing(OPENED.replace(microsecond=0)))
    assert not link.firing_of(Firing(OPENED + timedelta(days=7)))  # resolved, then fired again a week later
    assert not link.firing_of(Firing(OPENED - timedelta(seconds=1)))


def test_a_link_signed_without_its_firing_is_refused():
    from itsdangerous import URLSafeTimedSerializer

    from threshold_operators.alerting.ack_link import SALT

    old = URLSafeTimedSerializer(SECRET, salt=SALT).dumps(["0f3a9c21d4e5b6a7c8d9", 1])  # an older version's link
    with pytest.raises(InvalidLink) as err:
        read_token(old, SECRET, DAY)
    assert "did not bind links to one firing" in err.value.reason
