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

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from threshold_operators.alerting import faults
from threshold_operators.alerting.channels.base import Message, Sender, SendResult

MAX_BATCH_CHARS = 3500  # a DingTalk markdown message may hold 20,000 bytes; phones show far less
WINDOW = timedelta(seconds=60)
DEFAULT_WORST_CASE = 60.0  # seconds, for a sender that does not say (worst_case_seconds)
LEASE_MIN = timedelta(minutes=5)
LOOKAHEAD = 200  # rows read per claim when no batch is planned
SECRET_ATTRS = {"token", "secret", "key", "api_key", "password", "login"}


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
    busy: int = 0  # routes left to another deliverer sending on them
    claim_lost: list[int] = field(default_factory=list)  # sent or failed, but the claim was gone: not recorded


ACK_LABEL_BOTH = "确认 / Acknowledge"  # the acknowledge link's label as stored; sent in the channel's language
ACK_LABEL = {"zh": "确认", "en": "Acknowledge"}


def message_of(payload: dict, language: str = "zh", key: str | None = None) -> Message:
    en = language == "en" and payload.get("text_en")
    form = (payload.get("forms") or {}).get("en" if en else "zh")
    links = tuple((ACK_LABEL["en" if en else "zh"] if label == ACK_LABEL_BOTH else label, url)
                  for label, url in payload.get("links", ()))
    return Message(payload["title_en"] if en else payload["title"], payload["text_en"] if en else payload["text"],
                   tuple(payload.get("mentions", ())), payload.get("data", {}), tuple(payload.get("emails", ())),
                   payload.get("severity"), links, key, (form,) if form else ())


def batch_message(messages: list[Message], language: str = "zh") -> Message:
    """Several messages of one route as one digest, in order."""
    if len(messages) == 1:
        return messages[0]
    key = hashlib.sha256("|".join(m.key or "" for m in messages).encode()).hexdigest()[:32]
    order = {"blue": 1, "yellow": 2, "red": 3}
    top = max((m.severity for m in messages), key=lambda s: order.get(s or "", 0), default=None)
    head = f"[{len(messages)} 条汇总] {messages[0].title}" if language != "en" else \
        f"[digest of {len(messages)}] {messages[0].title}"
    mentions = tuple(dict.fromkeys(x for m in messages for x in m.mentions))
    emails = tuple(dict.fromkeys(x for m in messages for x in m.emails))
    links = tuple(dict.fromkeys(x for m in messages for x in m.links))
    parts = tuple(p for m in messages for p in (m.parts or (m.text,))) if any(m.parts for m in messages) else ()
    return Message(head, "\n\n---\n\n".join(m.text for m in messages), mentions,
                   {"batch": [m.data for m in messages]}, emails, top, links, key, parts)


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


def utc_now() -> datetime:
    """The real clock (the default of ``deliver_due``'s ``clock``)."""
    return datetime.now(UTC)


def worst_case_send(sender, message: Message | None = None) -> float:
    """Seconds one ``send`` may take at worst: the sender's ``worst_case_seconds(message)`` (its
    timeouts x its own retries x the recipients it calls one by one), or DEFAULT_WORST_CASE."""
    fn = getattr(sender, "worst_case_seconds", None)
    return float(fn(message)) if callable(fn) else DEFAULT_WORST_CASE


def lease_for(sender, message: Message | None = None) -> timedelta:
    """How long a claim holds its rows: twice the worst-case send plus a minute, at least LEASE_MIN;
    so a slow but live deliverer always records before anyone may take its rows again."""
    return max(LEASE_MIN, timedelta(seconds=2 * worst_case_send(sender, message) + 60))


def _redact(text: str, sender) -> str:
    """An exception's text without the sender's secrets (tokens, keys, passwords, signed URLs)."""
    import re

    secrets = []
    for name, value in vars(sender).items() if sender is not None else ():
        if isinstance(value, str) and name.lstrip("_") in SECRET_ATTRS:
            secrets.append(value)
        elif isinstance(value, tuple) and name.lstrip("_") == "secrets":
            secrets += [v for v in value if isinstance(v, str)]
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return re.sub(r"(?i)\b(access_token|token|key|sign|secret|password|api_key)=[^&\s'\"]+", r"\1=***", text)


def _unexpected(exc: BaseException, sender) -> SendResult:
    """A sender that raised (a bug, a message it cannot encode): a final failure, recorded with the
    exception's type and message (secrets removed), that goes to the fallback."""
    return SendResult(False, False, _redact(f"unexpected {type(exc).__name__}: {str(exc)[:300]}", sender))


def _clock_of(now: datetime | None, clock: Callable[[], datetime] | None) -> Callable[[], datetime]:
    if clock is not None:
        return clock
    if now is not None:
        return lambda: now  # a pinned instant: tests and replays
    return utc_now


def deliver_due(store, senders: Mapping[str, Sender], now: datetime | None = None, *,
                clock: Callable[[], datetime] | None = None, policy: RetryPolicy = RetryPolicy(),
                fallbacks: Mapping[str, str] | None = None, limit: int = 5000,
                rate_limits: Mapping[str, int | None] | None = None,
                languages: Mapping[str, str] | None = None, batch: bool = True) -> DeliveryReport:
    """Send the due notifications, route by route. ``clock``: the current time, read at each claim
    and each record (default: the real UTC clock; a ``now`` alone pins it, for tests and replays).
    ``batch=False``: one request per notification even under the throttle (the rest wait for the
    next minute), as a plain outbox would."""
    clock = _clock_of(now, clock)
    report = DeliveryReport()
    rate_limits, languages, fallbacks = rate_limits or {}, languages or {}, fallbacks or {}
    for route in store.pending_routes():
        _deliver_route(store, senders.get(route), route, clock, policy, fallbacks.get(route),
                       rate_limits.get(route), languages.get(route, "zh"), batch, limit, report)
    return report


def _deliver_route(store, sender, route: str, clock, policy: RetryPolicy, fallback: str | None, cap: int | None,
                   language: str, batch: bool, limit: int, report: DeliveryReport) -> None:
    """Claim, send and record the route's due rows, one request at a time, in order. Each claim is
    taken under the route's lock, with the throttle's count, so N deliverers share one budget."""
    from threshold_operators.alerting.store import ClaimLost

    while True:
        t = clock()
        with store.route_lock(route) as con:
            if store.route_busy(route, t, con):
                report.busy += 1  # another deliverer is sending on it: the route's order is its to keep
                return
            rows = store.route_queue(route, t, con, limit=limit if cap and batch else LOOKAHEAD)
            due = []
            for i, r in enumerate(rows):
                if r["next_attempt_at"] > t:  # backing off after a failure: the later ones wait behind it
                    report.held_back += len(rows) - i
                    break
                due.append(r)
            if not due:
                return
            if cap:
                budget = max(cap - store.requests_since(route, t - WINDOW, t, con), 0)
                if budget == 0:
                    report.throttled += len(due)
                    return
            if cap and batch:  # the texts of every due row, to size the batches
                lot = _batches(store.claimed([r["id"] for r in due], con), budget, language)[0]
            else:
                lot = store.claimed([due[0]["id"]], con)
            message, problem = _message(lot, language)
            try:
                token = store.claim_rows([r["id"] for r in lot], t, lease_for(sender, message), con)
            except ClaimLost:  # taken meanwhile (a deliverer not honouring the route lock): leave it
                report.busy += 1
                return
        faults.point("deliver.claimed")
        if not _send(store, sender, route, lot, token, message or problem, clock, policy, fallback, report):
            report.held_back += max(len(due) - len(lot), 0)
            return


def _message(lot: list[dict], language: str) -> tuple[Message | None, str | None]:
    """The request of a lot, or why it cannot be built (a payload that is not a message: ``_send``
    records it as a final failure)."""
    try:
        return batch_message([message_of(n["payload"], language, n["idempotency_key"]) for n in lot], language), None
    except Exception as exc:  # noqa: BLE001 - recorded, sent to the fallback, delivery goes on
        return None, f"unexpected {type(exc).__name__} building the message: {str(exc)[:300]}"


def _send(store, sender, route: str, batch: list[dict], token: str, message: Message | str,
          clock, policy: RetryPolicy, fallback: str | None, report: DeliveryReport) -> bool:
    """Send one claimed batch (``message``: the request, or why it could not be built) and record the
    outcome under its claim; False when the route must stop for this pass (a retryable failure: the
    later rows wait behind it, in order)."""
    lead = batch[0]["id"]
    if all(n["payload"].get("dry_run") for n in batch):
        gone = store.finish(token, {n["id"]: {"status": "dry_run", "sent_at": clock()} for n in batch})
        report.dry_run += [n["id"] for n in batch if n["id"] not in gone]
        report.claim_lost += gone
        return True
    if sender is None:
        # a missing connection is a set-up problem: kept (with back-off) until it is defined, then the fallback
        ok, retryable, error = False, True, f"no sender configured for route {route!r} (is its connection defined?)"
    elif isinstance(message, str):  # the message could not be built: why
        ok, retryable, error = False, False, message
    else:
        try:
            result = sender.send(message)
        except Exception as exc:  # noqa: BLE001 - isolated: recorded, sent to the fallback, delivery goes on
            result = _unexpected(exc, sender)
        report.requests += 1
        ok, retryable, error = result.ok, result.retryable, result.error or ""
    if ok:
        faults.point("deliver.sent")
        at = clock()
        done = {"status": "sent", "sent_at": at, "batch_of": lead if len(batch) > 1 else None}
        gone = store.finish(token, {n["id"]: {**done, **({"last_error": error} if error else {})} for n in batch})
        faults.point("deliver.recorded")
        report.sent += [n["id"] for n in batch if n["id"] not in gone]
        report.claim_lost += gone
        return True
    at = clock()
    updates, reroute = {}, []
    for n in batch:
        next_at = policy.next_attempt(n["attempts"] + 1, at) if retryable else None
        updates[n["id"]] = {"status": "pending", "last_error": error, "next_attempt_at": next_at} if next_at \
            else {"status": "failed", "last_error": error}
        if next_at is None and fallback and fallback != route:
            reroute.append(n)
    with store.transaction() as con:  # the failure and its fallback rows: both or neither
        gone = store.finish(token, updates, con)
        for n in reroute:
            if n["id"] not in gone:
                store.enqueue(key=f"{n['idempotency_key']}>{fallback}", fingerprint=n["fingerprint"],
                              event=n["event"], level=n["level"], route=fallback, payload=n["payload"], now=at,
                              con=con)
    report.claim_lost += gone
    for n in batch:
        if n["id"] in gone:
            continue
        if "next_attempt_at" in updates[n["id"]]:
            report.retrying.append(n["id"])
        else:
            report.failed.append(n["id"])
            if n in reroute:
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


def deliver(store, routing, now: datetime | None = None, *, clock: Callable[[], datetime] | None = None, rules=(),
            senders: Mapping[str, Sender] | None = None, policy: RetryPolicy = RetryPolicy(), log=None
            ) -> DeliveryReport:
    """``deliver_due`` with the routing file's settings: fallbacks, rate limits, languages; the
    senders built from the Airflow connections unless given. The real clock unless ``clock`` or
    ``now`` (pinned) is given."""
    if senders is None:
        senders, problems = build_senders(routing, rules)
        for p in problems:
            (log.warning if log else print)(f"channel not configured: {p}")
    report = deliver_due(store, senders, now, clock=clock, policy=policy, fallbacks=routing.fallbacks(),
                         rate_limits={n: c.rate_limit for n, c in routing.channels.items()},
                         languages={n: c.language for n, c in routing.channels.items()})
    if report.claim_lost:
        (log.warning if log else print)(
            f"{len(report.claim_lost)} notification(s) finished after their claim ran out and was taken by "
            f"another deliverer (not recorded by this one; they may be told twice, under the same key): "
            f"{report.claim_lost[:20]}")
    return report
