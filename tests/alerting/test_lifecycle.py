"""The alert lifecycle: one pure function, the clock passed in, observations in data time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from threshold_operators.alerting.lifecycle import (
    AlertStatus,
    Event,
    Observation,
    acknowledge,
    escalate,
    notification_key,
    transition,
)

H = timedelta(hours=1)
T0 = datetime(2026, 8, 16, 7, tzinfo=UTC)
NOW = datetime(2026, 8, 16, 8, 5, tzinfo=UTC)


def obs(state, severity="yellow", k=0):
    return Observation("sales.order_spike", "shop_id=s1/sku=A", state, severity, T0 + k * H, T0 + (k + 1) * H)


def run(*observations):
    alert, events = None, []
    for i, o in enumerate(observations):
        t = transition(alert, o, NOW + i * H)
        alert = t.alert
        events.append(str(t.event))
    return alert, events


def test_pending_then_firing_then_resolved():
    alert, events = run(obs("pending", k=0), obs("firing", k=1), obs("firing", k=2), obs("resolved", None, k=3))
    assert events == ["opened", "fired", "none", "resolved"]
    assert alert.status == AlertStatus.RESOLVED and alert.first_bucket == T0 and alert.resolved_at == NOW + 3 * H


def test_a_pending_alert_that_never_fires_is_dropped_quietly():
    alert, events = run(obs("pending"), obs("resolved", None, k=1))
    assert events == ["opened", "dropped"] and alert.status == AlertStatus.RESOLVED


def test_a_higher_severity_is_news_a_lower_one_is_not():
    alert, events = run(obs("firing", "yellow"), obs("firing", "red", k=1), obs("firing", "yellow", k=2))
    assert events == ["fired", "worsened", "none"]
    assert alert.severity == "red"  # the alert keeps its worst severity while it fires


def test_older_data_changes_nothing():
    """A retried task or a backfill re-observes buckets the alert has seen: no event, no change."""
    alert, _ = run(obs("firing", k=0), obs("firing", k=3))
    again = transition(alert, obs("resolved", None, k=1), NOW + 9 * H)
    assert again.event == Event.NONE and again.alert == alert


def test_acknowledgement_stops_until_it_gets_worse():
    alert, _ = run(obs("firing", "yellow"))
    acked = acknowledge(alert, "li.wei", NOW)
    assert acked.event == Event.ACKNOWLEDGED and acked.alert.status == AlertStatus.ACKNOWLEDGED
    same = transition(acked.alert, obs("firing", "yellow", k=1), NOW + H)
    assert same.event == Event.NONE and same.alert.status == AlertStatus.ACKNOWLEDGED
    worse = transition(same.alert, obs("firing", "red", k=2), NOW + 2 * H)
    assert worse.event == Event.WORSENED and worse.alert.status == AlertStatus.FIRING
    assert worse.alert.acknowledged_by is None


def test_a_resolved_alert_that_breaches_again_fires_again():
    alert, events = run(obs("firing"), obs("resolved", None, k=1), obs("firing", k=2))
    assert events == ["fired", "resolved", "fired"] and alert.first_bucket == T0 + 2 * H


def test_firing_again_after_resolution_keeps_the_stored_rows_version():
    """The new firing replaces the stored row: compare-and-set must compare with that row's version."""
    from dataclasses import replace

    resolved = replace(transition(transition(None, obs("firing"), T0).alert, obs("resolved", None, k=1), T0).alert,
                       version=2)
    again = transition(resolved, obs("firing", k=2), T0)
    assert again.event == "fired" and again.alert.version == 2 and again.alert.first_bucket == T0 + 2 * H


def test_escalation_never_goes_down_and_keys_are_stable():
    alert, _ = run(obs("firing"))
    up = escalate(escalate(alert, 2, NOW), 1, NOW)
    assert up.escalation_level == 2
    k1 = notification_key(alert, Event.FIRED, 1, T0 + H)
    assert k1 == notification_key(alert, Event.FIRED, 1, T0 + H)
    assert k1 != notification_key(alert, Event.FIRED, 2, T0 + H) != notification_key(alert, Event.RESOLVED, 1, T0 + H)
