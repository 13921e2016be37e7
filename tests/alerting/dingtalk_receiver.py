"""A DingTalk robot endpoint on loopback, strict as the real one, for the channel tests.

It checks the access token, and, when it has a secret, the timestamp (at most an hour off) and
the HMAC-SHA256 signature; it accepts 20 messages a minute and answers the 21st with errcode
130101; it can be taken down (HTTP 503) and brought back. Every accepted message is kept, in
order, with the wall time it was accepted at (``accepted_at``, epoch seconds of the real clock
whatever ``clock`` is: the live benchmark measures latency to it). Its clock is injectable, like
everything else in the pack.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse

from tests.alerting.receivers import LoopbackReceiver


class DingTalkReceiver(LoopbackReceiver):
    def __init__(self, token: str = "robot-token", secret: str | None = "SEC-robot-secret", clock=time.time,
                 per_minute: int = 20):
        super().__init__(clock=clock, per_minute=per_minute)
        self.token, self.secret = token, secret
        self.accepted_at: list[float] = []  # wall time of each accepted message, parallel to ``received``

    def answer(self, path: str, headers, body: bytes) -> tuple:
        code, msg = self._check(path, body)
        if code:
            self.refused.append(code)
        return 200, {"errcode": code, "errmsg": msg}

    def _check(self, path: str, body: bytes) -> tuple[int, str]:
        url = urllib.parse.urlparse(path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path != "/robot/send" or q.get("access_token") != self.token:
            return 300001, "token is not exist"
        if self.secret:
            ts = int(q.get("timestamp", "0"))
            if abs(self.clock() * 1000 - ts) > 3600 * 1000:
                return 310000, "timestamp expired"
            expected = base64.b64encode(hmac.new(self.secret.encode(), f"{ts}\n{self.secret}".encode(),
                                                 hashlib.sha256).digest()).decode()
            if q.get("sign") != expected:
                return 310000, "sign not match"
        if len(body) > 20_000:
            return 460101, "message too long, exceed 20000 bytes"
        msg = json.loads(body)
        if msg.get("msgtype") != "markdown" or not msg.get("markdown", {}).get("title") \
                or not isinstance(msg["markdown"].get("text"), str):
            return 40035, "缺少参数 markdown"
        if not self.within_limit():
            return 130101, "send too fast, exceed 20 times per minute"
        self.received.append(json.loads(body))
        self.accepted_at.append(time.time())
        return 0, "ok"
