"""Send what the outbox holds: throttle -> send with retry -> record. The only stage that talks to vendors.

``deliver_due(store, senders, now)`` takes every pending notification whose time has come, oldest
first, and hands it to its route's sender:

- **claim**: a notification is claimed (a lease in the store) before it is sent, so two
  deliverers running at once (the notify task and the escalation DAG) never both send it;
- **throttle**: a route with a rate limit (``rate_limits``: a DingTalk robot takes 20 messages a
  minute) sends at most that many in any 60 seconds; when more are waiting than the budget
  allows, they are **batched** in order into fewer, longer messages (a digest), so a burst is
  delivered within the limit and nothing waits behind it for long;
- **send**: in the channel's language (``languages``: zh by default, en selectable);
  an action in dry-run mode is recorded as ``dry_run`` and not sent;
- **retry**: a retryable failure (5xx, 429, timeout, DingTalk's 130101) stays pending with
  exponential back-off, and the route's later notifications wait behind it, so a channel that
  comes back delivers everything once and in order. A final failure, or too many attempts: the
  notification goes to the route's fallback (e.g. email) under a key of its own and is marked
  failed.

The retry policy lives here and nowhere else; the clock is passed in.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from threshold_operators.alerting.channels.base import Message, Sender

MAX_BATCH_CHARS = 3500  # a DingTalk markdown message may hold 20,000 bytes; phones show far less
WINDOW = timedelta(seconds=60)


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
    dry_run: list[int] = field(default_factory=list)
    held_back: int = 0  # waiting behind an earlier notification of the same route
    throttled: int = 0  # waiting for the route's rate limit
    requests: int = 0  # messages handed to senders (a batch is one)


def message_of(payload: dict, language: str = "zh") -> Message:
    en = language == "en" and payload.get("text_en")
    return Message(payload["title_en"] if en else payload["title"], payload["text_en"] if en else payload["text"],
                   tuple(payload.get("mentions", ())), payload.get("data", {}), tuple(payload.get("emails", ())),
                   payload.get("severity"), tuple(tuple(x) for x in payload.get("links", ())))


def batch_message(messages: list[Message], language: str = "zh") -> Message:
    """Several messages of one route as one digest, in order."""
    if len(messages) == 1:
        return messages[0]
    order = {"blue": 1, "yellow": 2, "red": 3}
    top = max((m.severity for m in messages), key=lambda s: order.get(s or "", 0), default=None)
    head = f"[{len(messages)} 条汇总] {messages[0].title}" if language != "en" else \
        f"[digest of {len(messages)}] {messages[0].title}"
    mentions = tuple(dict.fromkeys(x for m in messages for x in m.mentions))
    emails = tuple(dict.fromkeys(x for m in messages for x in m.emails))
    links = tuple(dict.fromkeys(x for m in messages for x in m.links))
    return Message(head, "\n\n---\n\n".join(m.text for m in messages), mentions,
                   {"batch": [m.data for m in messages]}, emails, top, links)


def _batches(rows: list[dict], budget: int, language: str) -> list[list[dict]]:
    """Consecutive rows in at most ``budget`` batches of at most MAX_BATCH_CHARS (the rest wait)."""
    if budget <= 0:
        return []
    if len(rows) <= budget:
        return [[r] for r in rows]
    size = math.ceil(len(rows) / budget)
    out, current, chars = [], [], 0
    for r in rows:
        text = len(message_of(r["payload"], language).text)
        if current and (len(current) >= size or chars + text > MAX_BATCH_CHARS):
            out.append(current)
            if len(out) == budget:
                return out
            current, chars = [], 0
        current.append(r)
        chars += text
    if current and len(out) < budget:
        out.append(current)
    return out


def deliver_due(store, senders: Mapping[str, Sender], now: datetime, *, policy: RetryPolicy = RetryPolicy(),
                fallbacks: Mapping[str, str] | None = None, limit: int = 5000,
                rate_limits: Mapping[str, int | None] | None = None,
                languages: Mapping[str, str] | None = None, batch: bool = True) -> DeliveryReport:
    """Send the due notifications. ``batch=False``: one request per notification even under the
    throttle (the rest wait for the next minute), as a plain outbox would."""
    report = DeliveryReport()
    rate_limits, languages = rate_limits or {}, languages or {}
    due: dict[str, list[dict]] = defaultdict(list)
    for n in store.pending(limit):  # oldest first; a route stops at its first not-yet-due row
        route = n["route"]
        if route in due and due[route] and due[route][-1] is None:
            report.held_back += 1
            continue
        if n["next_attempt_at"] > now:
            due[route].append(None)  # waiting out its back-off: the route's later ones wait too
            report.held_back += 1
            continue
        due[route].append(n)
    for route, rows in due.items():
        rows = [r for r in rows if r is not None]
        if not rows:
            continue
        language = languages.get(route, "zh")
        cap = rate_limits.get(route)
        if cap:
            budget = max(cap - store.sent_since(route, now - WINDOW), 0)
            batches = _batches(rows, budget, language) if batch else [[r] for r in rows[:budget]]
            report.throttled += len(rows) - sum(len(b) for b in batches)
        else:
            batches = [[r] for r in rows]
        for batch in batches:
            if not _send(store, senders, route, batch, language, now, policy, fallbacks or {}, report):
                report.held_back += sum(len(b) for b in batches[batches.index(batch) + 1:])
                break
    return report


def _send(store, senders, route: str, batch: list[dict], language: str, now: datetime, policy: RetryPolicy,
          fallbacks: Mapping[str, str], report: DeliveryReport) -> bool:
    """Send one batch (claimed first); False when the route must stop for this pass."""
    batch = [n for n in batch if store.claim(n["id"], now)]
    if not batch:
        return False  # another deliverer has them
    lead = batch[0]["id"]
    if all(n["payload"].get("dry_run") for n in batch):
        for n in batch:
            store.mark_sent(n["id"], now, status="dry_run")
            report.dry_run.append(n["id"])
        return True
    sender = senders.get(route)
    if sender is None:
        # a missing connection is a set-up problem: kept (with back-off) until it is defined, then the fallback
        ok, retryable, error = False, True, f"no sender configured for route {route!r} (is its connection defined?)"
    else:
        result = sender.send(batch_message([message_of(n["payload"], language) for n in batch], language))
        report.requests += 1
        ok, retryable, error = result.ok, result.retryable, result.error or ""
    if ok:
        for n in batch:
            store.mark_sent(n["id"], now, batch_of=lead if len(batch) > 1 else None)
            report.sent.append(n["id"])
        return True
    for n in batch:
        next_at = policy.next_attempt(n["attempts"] + 1, now) if retryable else None
        store.mark_failed(n["id"], error, next_at)
        if next_at is not None:
            report.retrying.append(n["id"])
            continue
        report.failed.append(n["id"])
        fallback = fallbacks.get(route)
        if fallback and fallback != route:
            store.enqueue(key=f"{n['idempotency_key']}>{fallback}", fingerprint=n["fingerprint"], event=n["event"],
                          level=n["level"], route=fallback, payload=n["payload"], now=now)
            report.rerouted.append(n["id"])
    return not retryable


def build_senders(routing, rules=()) -> tuple[dict[str, Sender], list[str]]:
    """A sender for each channel of ``routing`` and each action connection of ``rules`` whose Airflow
    connection is defined; and the problems (undefined connections) for the log."""
    from threshold_operators.alerting.actions import ActionSender, route_of
    from threshold_operators.alerting.channels import senders_for

    senders, problems = senders_for(routing)
    for rule in rules:
        for action in rule.actions:
            route = route_of(action)
            if route in senders:
                continue
            try:
                senders[route] = ActionSender.from_connection(action.conn_id, routing.action_connections)
            except Exception as exc:  # noqa: BLE001 - an undefined connection: reported, the rest still delivers
                problems.append(f"{route}: {type(exc).__name__}: {str(exc)[:200]}")
    return senders, problems


def deliver(store, routing, now: datetime, *, rules=(), senders: Mapping[str, Sender] | None = None,
            policy: RetryPolicy = RetryPolicy(), log=None) -> DeliveryReport:
    """``deliver_due`` with the routing file's settings: fallbacks, rate limits, languages; the
    senders built from the Airflow connections unless given."""
    if senders is None:
        senders, problems = build_senders(routing, rules)
        for p in problems:
            (log.warning if log else print)(f"channel not configured: {p}")
    return deliver_due(store, senders, now, policy=policy, fallbacks=routing.fallbacks(),
                       rate_limits={n: c.rate_limit for n, c in routing.channels.items()},
                       languages={n: c.language for n, c in routing.channels.items()})
