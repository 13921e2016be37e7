"""What every channel sender is: ``send(message) -> SendResult(ok, retryable, error)``.

As in Alertmanager's notifiers, a sender says whether a failure is worth retrying; the retry
policy itself lives in one place (``alerting.delivery``). A vendor's error code in an HTTP 200
reply is a failure. Secrets come from Airflow connections only and never appear in results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Message:
    title: str
    text: str  # markdown
    mentions: tuple[str, ...] = ()  # mobiles the channel can @ (DingTalk, WeCom), text (SMS) or call (voice)
    data: dict = field(default_factory=dict, compare=False)  # the structured alert, for webhooks
    emails: tuple[str, ...] = ()  # addresses, for the email channel
    severity: str | None = None  # blue, yellow, red (None: a resolved or operational message)
    links: tuple[tuple[str, str], ...] = ()  # (label, url): the acknowledge link, the runbook
    key: str | None = field(default=None, compare=False)  # the outbox idempotency key (Idempotency-Key header)
    # The message's parts, for channels that lay them out themselves (``channels.layout``): a form
    # (``messages.alert_message``: head, items, runbook, ...) or a plain markdown text, one per
    # message of a digest; empty when the message is text only.
    parts: tuple = field(default=(), compare=False)


@dataclass(frozen=True)
class SendResult:
    ok: bool
    retryable: bool = False
    error: str | None = None

    @classmethod
    def success(cls) -> SendResult:
        return cls(True)


class Sender(Protocol):
    name: str

    def send(self, message: Message) -> SendResult: ...


def http_failure(status: int, body: str) -> SendResult:
    """An HTTP error reply: 429 and 5xx are worth retrying, other 4xx are not (a bad request or token)."""
    return SendResult(False, status == 429 or status >= 500, f"HTTP {status}: {body[:200]}")


def lookup_connection(conn_id: str):
    """An Airflow connection, inside a task (Task SDK) or outside one (CLI, API server, tests)."""
    from threshold_operators.connections import get_connection

    return get_connection(conn_id)


def json_size(payload: dict) -> int:
    """The bytes of ``payload`` as ``post_json`` sends it."""
    import json

    return len(json.dumps(payload, ensure_ascii=False).encode())


def post_json(session, url: str, payload: dict, timeout: float):
    """POST ``payload`` as UTF-8 JSON: the reply, or a retryable SendResult when the channel is down."""
    import json

    import requests

    try:
        return session.post(url, data=json.dumps(payload, ensure_ascii=False).encode(),
                            headers={"Content-Type": "application/json; charset=utf-8"}, timeout=timeout)
    except requests.RequestException as exc:  # refused, reset, timed out
        return SendResult(False, True, type(exc).__name__)


def errcode_result(reply, retryable_codes) -> SendResult:
    """A chat robot's answer (DingTalk, WeCom): the HTTP status, then ``errcode`` in an HTTP 200 body
    (0 is success; a code in ``retryable_codes`` is worth retrying, any other is final)."""
    if isinstance(reply, SendResult):
        return reply
    if reply.status_code != 200:
        return http_failure(reply.status_code, reply.text)
    try:
        body = reply.json()
    except ValueError:
        return SendResult(False, True, f"HTTP 200 without JSON: {reply.text[:200]}")
    code = body.get("errcode", 0)
    if code == 0:
        return SendResult.success()
    return SendResult(False, code in retryable_codes, f"errcode {code}: {str(body.get('errmsg', ''))[:200]}")
