"""A DingTalk robot endpoint on loopback, strict as the real one, for the channel tests.

It checks the access token, and, when it has a secret, the timestamp (at most an hour off) and
the HMAC-SHA256 signature; it accepts 20 messages a minute and answers the 21st with errcode
130101; it can be taken down (HTTP 503) and brought back. Every accepted message is kept, in
order. Its clock is injectable, like everything else in the pack.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class DingTalkReceiver:
    def __init__(self, token: str = "robot-token", secret: str | None = "SEC-robot-secret", clock=time.time,
                 per_minute: int = 20):
        self.token, self.secret, self.clock, self.per_minute = token, secret, clock, per_minute
        self.received: list[dict] = []
        self.refused: list[int] = []  # errcodes answered
        self.down = False
        self._minute: dict[int, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                code, msg = receiver._check(self.path, body)
                if code:
                    receiver.refused.append(code)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"errcode": code, "errmsg": msg}).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

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
        minute = int(self.clock() // 60)
        if self._minute.get(minute, 0) >= self.per_minute:
            return 130101, "send too fast, exceed 20 times per minute"
        self._minute[minute] = self._minute.get(minute, 0) + 1
        self.received.append(json.loads(body))
        return 0, "ok"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
