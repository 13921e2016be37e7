"""A generic JSON webhook: the alert in a documented, versioned body, optionally signed.

The Airflow connection (type ``http``): host = the receiver's URL (with its path, or the path in
``extra.endpoint``), password (optional) = the signing secret. The body, schema
``storefence.alert/v1``::

    {"schema": "storefence.alert/v1", "title": "...", "text": "... (markdown)",
     "severity": "red" | "yellow" | "blue" | null, "links": [{"label": "...", "url": "..."}],
     "mentions": ["138..."], "emails": ["..."], "alert": {... the structured alert ...},
     "sent_at": "2026-08-16T07:31:00+00:00"}

With a secret, ``X-Storefence-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`` (as GitHub
signs its webhooks): the receiver recomputes it over the bytes it got and compares in constant
time; ``sent_at`` is inside the signed body, so it can also refuse old replays.

Every request carries ``Idempotency-Key: <the outbox key>`` (a digest of the keys for a batch):
delivery is at-least-once where a deliverer dies between the receiver's answer and its record,
and a repeat then comes with the same key, for the receiver to drop.

Any 2xx is success; 429 and 5xx are retried, other 4xx are not; network errors are retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

from threshold_operators.alerting.channels.base import Message, SendResult, http_failure, lookup_connection
from threshold_operators.alerting.channels.http_connection import http_session

SCHEMA = "storefence.alert/v1"
SIGNATURE_HEADER = "X-Storefence-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    def __init__(self, session, url: str, secret: str | None = None, *, name: str = "webhook",
                 clock: Callable[[], float] = time.time, timeout: float = 10.0):
        self.session, self.url, self.name = session, url, name
        self._secret, self._clock, self._timeout = secret, clock, timeout

    @classmethod
    def from_connection(cls, conn_id: str, **kwargs) -> WebhookSender:
        conn = lookup_connection(conn_id)
        session, base_url = http_session(conn_id, conn)
        endpoint = (conn.extra_dejson or {}).get("endpoint") or ""
        url = base_url.rstrip("/") + "/" + endpoint.lstrip("/") if endpoint else base_url
        kwargs.setdefault("name", conn_id)
        return cls(session, url, conn.password or None, **kwargs)

    def payload(self, message: Message) -> dict:
        return {"schema": SCHEMA, "title": message.title, "text": message.text, "severity": message.severity,
                "links": [{"label": label, "url": url} for label, url in message.links],
                "mentions": list(message.mentions), "emails": list(message.emails), "alert": message.data,
                "sent_at": datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="seconds")}

    def send(self, message: Message) -> SendResult:
        import requests

        body = json.dumps(self.payload(message), ensure_ascii=False, default=str).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "storefence-alerts",
                   "X-Storefence-Schema": SCHEMA}
        if message.key:  # the outbox's idempotency key: a receiver that saw it already can drop a repeat
            headers[IDEMPOTENCY_HEADER] = message.key
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        try:
            reply = self.session.post(self.url, data=body, headers=headers, timeout=self._timeout)
        except requests.RequestException as exc:  # refused, reset, timed out: the receiver is down
            return SendResult(False, True, type(exc).__name__)
        if 200 <= reply.status_code < 300:
            return SendResult.success()
        return http_failure(reply.status_code, reply.text)
