"""Feishu / Lark custom bot (飞书自定义机器人): interactive cards.

The Airflow connection (type ``http``): host ``https://open.feishu.cn`` (Lark:
``https://open.larksuite.com``), the webhook token (the last part of the webhook URL) as the
password, and, when the bot has "签名校验", its secret in ``extra.secret``. A message is ``POST
{host}/open-apis/bot/v2/hook/{token}``; a signed one carries ``timestamp`` (seconds) and ``sign`` in
the body, with ``sign = base64(HMAC-SHA256(key="{timestamp}\\n{secret}", msg=b""))`` (Feishu refuses a
timestamp more than an hour off).

The card: a header coloured by severity; for a message that lists alerts, its summary, then one
row of two fields per entity (who it is and its severity; what was measured, what else to know
and its acknowledge link), the top entities that fit the request's 20 KB, a "+N more" line
linking to the full list, the runbook, and who was told as a note; other messages as one markdown
element. The mobiles as ``@mobile`` text (a custom bot can @ only by open id, not by mobile), and a
button per link.

Feishu answers HTTP 200 with ``code`` (older deployments: ``StatusCode``): 0 is success; 9499 and
11232 (frequency limits: 100 a minute, 5 a second per bot) are retried later; others (19021 bad
signature or timestamp, 19001 bad request, 19024 keyword missing) are not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Callable

from threshold_operators.alerting.channels.base import (
    Message,
    SendResult,
    http_failure,
    json_size,
    lookup_connection,
)
from threshold_operators.alerting.channels.http_connection import http_session
from threshold_operators.alerting.channels.layout import most_shown
from threshold_operators.alerting.channels.markdown import cut, cut_utf8

RETRYABLE_CODES = {9499, 11232}  # "too many request", "frequency limited"
SIGN_MISMATCH = 19021
TEMPLATE = {"red": "red", "yellow": "orange", "blue": "blue", None: "green"}  # card header colours
MAX_TEXT = 8000  # a text-only message's markdown element
MAX_BODY_BYTES = 20_000  # a custom bot's request body: 20 KB


SIGNATURE_BYTES = 100  # "timestamp" and "sign", added to a signed request's body


def card_elements(parts, shown: int) -> list[dict]:
    """A card's elements for the parts of a message (one, or a digest's), each form with its top
    ``shown`` entities as rows of fields."""
    from threshold_operators.alerting.messages import more_line

    out: list[dict] = []
    for i, part in enumerate(parts):
        if i:
            out.append({"tag": "hr"})
        if not isinstance(part, dict):
            out.append({"tag": "markdown", "content": cut(part, MAX_TEXT)})
            continue
        lang, zh = part["lang"], part["lang"] == "zh"
        if len(parts) > 1:
            out.append({"tag": "markdown", "content": f"**{part['head']}**"})
        out.append({"tag": "markdown", "content": "\n".join([part["summary"], *part["notes"]])})
        for it in part["items"][:shown]:
            what = it["said"] + (("；" if zh else "; ") + it["facts"] if it.get("facts") else "")
            ack = f"\n[{'确认' if zh else 'Acknowledge'}]({it['ack']})" if it.get("ack") else ""
            out.append({"tag": "div", "fields": [
                {"is_short": True, "text": {"tag": "lark_md", "content": f"**[{it['level']}] {it['who']}**"}},
                {"is_short": True, "text": {"tag": "lark_md", "content": what + ack}}]})
        more = more_line(part["count"] - min(shown, len(part["items"])), lang, part.get("all"))
        out += [{"tag": "markdown", "content": x} for x in (more.removeprefix("- "), *part["after"]) if x]
        out.append({"tag": "markdown", "content": part["runbook"]})
        out.append({"tag": "note", "elements": [{"tag": "plain_text", "content": part["to"]}]})
    return out


def signature(secret: str, timestamp_s: int) -> str:
    return base64.b64encode(hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()


class FeishuSender:
    def __init__(self, session, base_url: str, token: str, secret: str | None = None, *, name: str = "feishu",
                 clock: Callable[[], float] = time.time, timeout: float = 10.0):
        self.session, self.base_url, self.name = session, base_url.rstrip("/"), name
        self._token, self._secret, self._clock, self._timeout = token, secret, clock, timeout

    @classmethod
    def from_connection(cls, conn_id: str, **kwargs) -> FeishuSender:
        conn = lookup_connection(conn_id)
        session, base_url = http_session(conn_id, conn)
        extra = conn.extra_dejson or {}
        kwargs.setdefault("name", conn_id)
        return cls(session, base_url, conn.password or extra.get("token", ""), extra.get("secret"),
                   **kwargs)

    def payload(self, message: Message) -> dict:
        at = " ".join(f"@{m}" for m in message.mentions)
        tail: list[dict] = []
        if message.links:
            tail.append({"tag": "action", "actions": [
                {"tag": "button", "text": {"tag": "plain_text", "content": label}, "url": url,
                 "type": "primary" if i == 0 else "default"} for i, (label, url) in enumerate(message.links)]})

        def card(elements: list[dict]) -> dict:
            return {"msg_type": "interactive", "card": {
                "config": {"wide_screen_mode": True},
                "header": {"title": {"tag": "plain_text", "content": message.title},
                           "template": TEMPLATE.get(message.severity, "blue")},
                "elements": elements + tail}}

        if not message.parts:
            return card([{"tag": "markdown", "content": cut(message.text, MAX_TEXT) + (f"\n{at}" if at else "")}])
        mentions = [{"tag": "markdown", "content": at}] if at else []
        for shown in range(most_shown(message), -1, -1):
            body = card(card_elements(message.parts, shown) + mentions)
            if json_size(body) + SIGNATURE_BYTES <= MAX_BODY_BYTES:
                return body
        return card([{"tag": "markdown", "content": cut_utf8(message.text, MAX_BODY_BYTES // 2)}])

    def send(self, message: Message) -> SendResult:
        import requests

        body = self.payload(message)
        if self._secret:
            ts = int(self._clock())
            body = {"timestamp": str(ts), "sign": signature(self._secret, ts), **body}
        url = f"{self.base_url}/open-apis/bot/v2/hook/{urllib.parse.quote(self._token, safe='')}"
        try:
            reply = self.session.post(url, data=json.dumps(body, ensure_ascii=False).encode(),
                                      headers={"Content-Type": "application/json; charset=utf-8"},
                                      timeout=self._timeout)
        except requests.RequestException as exc:  # refused, reset, timed out: the channel is down
            return SendResult(False, True, type(exc).__name__)
        try:
            answer = reply.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            if reply.status_code != 200:
                return http_failure(reply.status_code, reply.text)
            return SendResult(False, True, f"HTTP 200 without JSON: {reply.text[:200]}")
        code = answer.get("code", answer.get("StatusCode", 0 if reply.status_code == 200 else None))
        if code == 0 and reply.status_code == 200:
            return SendResult.success()
        if code is None:
            return http_failure(reply.status_code, reply.text)
        retryable = code in RETRYABLE_CODES or reply.status_code == 429 or reply.status_code >= 500
        msg = answer.get("msg", answer.get("StatusMessage", ""))
        return SendResult(False, retryable, f"code {code}: {str(msg)[:200]}")
