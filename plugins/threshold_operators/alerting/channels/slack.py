"""Slack incoming webhook: a header block and mrkdwn sections.

The Airflow connection (type ``http``): host ``https://hooks.slack.com/services`` and the
webhook's secret path ``T…/B…/…`` (what follows ``/services/`` in the webhook URL) as the
password; the message is POSTed to ``{host}/{password}``. The whole webhook URL is the secret, so
the path lives in the password, never in host or extra.

The message: a ``header`` block (plain text, at most 150 characters), the text as ``section``
blocks of at most 3000 characters of mrkdwn, the links as one mrkdwn line and the mobiles as a
context line (Slack does not know them); ``text`` holds the title for notifications.

Slack answers ``200 ok`` (text, not JSON). Failures are HTTP statuses with a short reason:
429 (about one message a second per webhook) and 5xx are retried later; 400 ``invalid_payload``,
403 ``invalid_token`` / ``action_prohibited``, 404 ``no_service`` / ``channel_not_found`` and 410
``channel_is_archived`` are not. ``Retry-After`` is not honoured: the retry policy decides.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from threshold_operators.alerting.channels.base import Message, SendResult, lookup_connection
from threshold_operators.alerting.channels.http_connection import http_session
from threshold_operators.alerting.channels.markdown import cut, link_line, slack_mrkdwn

MAX_HEADER = 150
MAX_SECTION = 3000
MAX_SECTIONS = 40  # of the 50 blocks a message may hold


class SlackSender:
    def __init__(self, session, base_url: str, path: str, *, name: str = "slack",
                 clock: Callable[[], float] = time.time, timeout: float = 10.0):
        self.session, self.base_url, self.name = session, base_url.rstrip("/"), name
        self._path, self._clock, self._timeout = path.strip("/"), clock, timeout

    @classmethod
    def from_connection(cls, conn_id: str, **kwargs) -> SlackSender:
        conn = lookup_connection(conn_id)
        session, base_url = http_session(conn_id, conn)
        kwargs.setdefault("name", conn_id)
        return cls(session, base_url, conn.password or "", **kwargs)

    def payload(self, message: Message) -> dict:
        text = slack_mrkdwn(message.text)
        chunks = [text[i:i + MAX_SECTION] for i in range(0, len(text), MAX_SECTION)][:MAX_SECTIONS] or [" "]
        blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": cut(message.title, MAX_HEADER),
                                                          "emoji": True}}]
        blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": c}} for c in chunks]
        if message.links:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": slack_mrkdwn(link_line(message.links))}})
        if message.mentions:
            blocks.append({"type": "context", "elements": [
                {"type": "mrkdwn", "text": " ".join(f"@{m}" for m in message.mentions)}]})
        return {"text": message.title, "blocks": blocks}

    def send(self, message: Message) -> SendResult:
        import requests

        try:
            reply = self.session.post(f"{self.base_url}/{self._path}",
                                      data=json.dumps(self.payload(message), ensure_ascii=False).encode(),
                                      headers={"Content-Type": "application/json; charset=utf-8"},
                                      timeout=self._timeout)
        except requests.RequestException as exc:  # refused, reset, timed out: the channel is down
            return SendResult(False, True, type(exc).__name__)
        if reply.status_code == 200:
            return SendResult.success()
        status = reply.status_code
        return SendResult(False, status == 429 or status >= 500, f"HTTP {status}: {reply.text[:200]}")
