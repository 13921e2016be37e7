"""DingTalk custom robot (钉钉自定义机器人): markdown messages with @mobiles.

The Airflow connection (type ``http``): host ``https://oapi.dingtalk.com`` (or a proxy), the
robot's access token as the password, and, when the robot has "加签" security, its secret in
``extra.secret``. Each request is then signed: ``sign = base64(HMAC-SHA256(secret,
"{timestamp}\\n{secret}"))`` with the timestamp in milliseconds (DingTalk refuses one more than an
hour off). A request body is at most 20,000 bytes (errcode 460101): a long list shows the top entities
that fit, then "+N more" with a link to the full list (``channels.layout``). DingTalk answers HTTP
200 with ``errcode``: 0 is success; 130101 (more than 20
messages a minute) is retried later; other codes (a bad token or signature, 310000) are not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Callable

from threshold_operators.alerting.channels.base import (
    Message,
    SendResult,
    errcode_result,
    json_size,
    lookup_connection,
    post_json,
)
from threshold_operators.alerting.channels.layout import fit_markdown

MAX_BODY_BYTES = 20_000  # errcode 460101 "message too long"
RATE_LIMITED = 130101  # "send too fast": 20 messages a minute per robot
RETRYABLE_CODES = {RATE_LIMITED, -1}  # -1: "system busy"


def signature(secret: str, timestamp_ms: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class DingTalkSender:
    def __init__(self, session, base_url: str, token: str, secret: str | None = None, *,
                 name: str = "dingtalk", clock: Callable[[], float] = time.time, timeout: float = 10.0):
        self.session, self.base_url, self.name = session, base_url.rstrip("/"), name
        self._token, self._secret, self._clock, self._timeout = token, secret, clock, timeout

    @classmethod
    def from_connection(cls, conn_id: str, **kwargs) -> DingTalkSender:
        from threshold_operators.alerting.channels.http_connection import http_session

        conn = lookup_connection(conn_id)
        session, base_url = http_session(conn_id, conn)  # the secret stays out of the headers
        extra = conn.extra_dejson or {}
        return cls(session, base_url, conn.password or extra.get("access_token", ""), extra.get("secret"),
                   name=conn_id, **kwargs)

    def payload(self, message: Message) -> dict:
        mentions = "".join(f" @{m}" for m in message.mentions)

        def body(text: str) -> dict:
            return {"msgtype": "markdown", "markdown": {"title": message.title, "text": f"{text}{mentions}"},
                    "at": {"atMobiles": list(message.mentions), "isAtAll": False}}

        return body(fit_markdown(message, lambda text: json_size(body(text)), MAX_BODY_BYTES))

    def send(self, message: Message) -> SendResult:
        params = {"access_token": self._token}
        if self._secret:
            ts = int(self._clock() * 1000)
            params |= {"timestamp": str(ts), "sign": signature(self._secret, ts)}
        url = f"{self.base_url}/robot/send?{urllib.parse.urlencode(params)}"
        return errcode_result(post_json(self.session, url, self.payload(message), self._timeout), RETRYABLE_CODES)
