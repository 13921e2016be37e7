"""Send what the outbox holds: the last stage of the pipeline, and the only one that talks to vendors.

``deliver_due(store, senders, now)`` takes every pending notification whose time has come, oldest
first, and hands it to its route's sender. Sent: marked sent (never sent again). A retryable
failure (5xx, 429, timeout, DingTalk's 130101): the notification stays pending with exponential
back-off, and the route's later notifications wait behind it, so a channel that comes back
delivers everything once and in order. A final failure, or too many attempts: the notification
goes to the route's fallback (e.g. email) under a key of its own, and is marked failed.
The retry policy lives here and nowhere else; the clock is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from threshold_operators.alerting.channels.base import Message, Sender


@dataclass(frozen=True)
class RetryPolicy:
    first_delay: timedelta = timedelta(seconds=30)
    factor: float = 2.0
    max_delay: timedelta = timedelta(minutes=10)
    max_attempts: int = 12  # about an hour and a half of trying before the fallback

    def next_attempt(self, attempts_so_far: int, now: datetime) -> datetime | None:
        """When to try again after ``attempts_so_far`` failed attempts (None: give up)."""
        if attempts_so_far >= self.max_attempts:
            return None
        delay = min(self.first_delay * (self.factor ** (attempts_so_far - 1)), self.max_delay)
        return now + delay


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    rerouted: list[int] = field(default_factory=list)
    held_back: int = 0  # waiting behind an earlier notification of the same route


def deliver_due(store, senders: Mapping[str, Sender], now: datetime, *, policy: RetryPolicy = RetryPolicy(),
                fallbacks: Mapping[str, str] | None = None, limit: int = 500) -> DeliveryReport:
    report = DeliveryReport()
    blocked: set[str] = set()
    for n in store.pending(limit):
        route = n["route"]
        if route in blocked:
            report.held_back += 1
            continue
        if n["next_attempt_at"] > now:  # waiting out its back-off: the route's later ones wait too
            blocked.add(route)
            report.held_back += 1
            continue
        sender = senders.get(route)
        if sender is None:
            result_ok, retryable, error = False, False, f"no sender configured for route {route!r}"
        else:
            p = n["payload"]
            result = sender.send(Message(p["title"], p["text"], tuple(p.get("mentions", ())), p.get("data", {})))
            result_ok, retryable, error = result.ok, result.retryable, result.error or ""
        if result_ok:
            store.mark_sent(n["id"], now)
            report.sent.append(n["id"])
            continue
        next_at = policy.next_attempt(n["attempts"] + 1, now) if retryable else None
        store.mark_failed(n["id"], error, next_at)
        if next_at is not None:
            report.retrying.append(n["id"])
            blocked.add(route)
            continue
        report.failed.append(n["id"])
        fallback = (fallbacks or {}).get(route)
        if fallback and fallback != route:
            store.enqueue(key=f"{n['idempotency_key']}>{fallback}", fingerprint=n["fingerprint"], event=n["event"],
                          level=n["level"], route=fallback, payload=n["payload"], now=now)
            report.rerouted.append(n["id"])
    return report
