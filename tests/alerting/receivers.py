"""Vendor endpoints on loopback, strict as the real ones, for the channel tests.

Each HTTP receiver is a ``ThreadingHTTPServer`` on ``127.0.0.1:0`` that checks what its vendor
checks (the key or token, the signature and its timestamp, the payload's limits), keeps every
accepted message in order (``received``) and every refusal code (``refused``), enforces the
vendor's per-minute limit on an injectable clock, and can be taken down (``down = True``: HTTP
503). ``SmtpServer`` is a real SMTP server (aiosmtpd) with login, refused addresses and a reply
to DATA that a test may set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import urllib.parse
from email import message_from_bytes
from email import policy as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackReceiver:
    """The server and the common duties; a vendor answers in ``answer(path, headers, body)`` with
    ``(status, body)`` (a dict body is sent as JSON)."""

    def __init__(self, clock=time.time, per_minute: int | None = None):
        self.clock, self.per_minute = clock, per_minute
        self.received: list = []
        self.refused: list = []
        self.requests = 0
        self.headers: list[dict] = []  # of every request, in order
        self.down = False
        self._minute: dict[int, int] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.requests += 1
                    receiver.headers.append(dict(self.headers))
                    if receiver.down:
                        status, answer, headers = 503, "service unavailable", {}
                    else:
                        status, answer, *rest = receiver.answer(self.path, self.headers, body)
                        headers = rest[0] if rest else {}
                data = json.dumps(answer).encode() if isinstance(answer, dict) else str(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if isinstance(answer, dict) else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_PUT = do_POST  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str, headers, body: bytes) -> tuple:
        raise NotImplementedError

    def within_limit(self) -> bool:
        """Counts one message against the minute's budget; False when the budget is spent."""
        if self.per_minute is None:
            return True
        minute = int(self.clock() // 60)
        if self._minute.get(minute, 0) >= self.per_minute:
            return False
        self._minute[minute] = self._minute.get(minute, 0) + 1
        return True

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class WeComReceiver(LoopbackReceiver):
    """A WeCom group robot: the key, markdown of at most 4096 bytes, 20 messages a minute (45009);
    ``busy`` answers -1."""

    def __init__(self, key: str = "wecom-key", clock=time.time, per_minute: int = 20):
        super().__init__(clock, per_minute)
        self.key, self.busy = key, False

    def answer(self, path, headers, body):
        code, msg = self._check(path, body)
        if code:
            self.refused.append(code)
        return 200, {"errcode": code, "errmsg": msg}

    def _check(self, path, body) -> tuple[int, str]:
        url = urllib.parse.urlparse(path)
        if url.path != "/cgi-bin/webhook/send" or dict(urllib.parse.parse_qsl(url.query)).get("key") != self.key:
            return 93000, "invalid webhook url, hint: [1700000000_1_abc]"
        if self.busy:
            return -1, "system busy"
        try:
            msg = json.loads(body)
        except ValueError:
            return 40001, "invalid json"
        if msg.get("msgtype") != "markdown" or not isinstance(msg.get("markdown", {}).get("content"), str):
            return 40008, "invalid message type"
        if len(msg["markdown"]["content"].encode()) > 4096:
            return 40058, "content exceed max length 4096"
        if not self.within_limit():
            return 45009, "api freq out of limit"
        self.received.append(msg)
        return 0, "ok"


class FeishuReceiver(LoopbackReceiver):
    """A Feishu custom bot: the token, the signature (timestamp in seconds, at most an hour off:
    19021), 100 messages a minute (11232); ``legacy`` answers with ``StatusCode``."""

    def __init__(self, token: str = "feishu-token", secret: str | None = "feishu-secret", clock=time.time,
                 per_minute: int = 100, legacy: bool = False):
        super().__init__(clock, per_minute)
        self.token, self.secret, self.legacy = token, secret, legacy

    def answer(self, path, headers, body):
        code, msg = self._check(path, body)
        if code:
            self.refused.append(code)
            return 200, {"code": code, "msg": msg, "data": {}}
        return 200, ({"Extra": None, "StatusCode": 0, "StatusMessage": "success"} if self.legacy
                     else {"code": 0, "msg": "success", "data": {}})

    def _check(self, path, body) -> tuple[int, str]:
        if urllib.parse.urlparse(path).path != f"/open-apis/bot/v2/hook/{self.token}":
            return 19001, "param invalid: incoming webhook access token invalid"
        msg = json.loads(body)
        if self.secret:
            ts = int(msg.get("timestamp", "0"))
            if abs(self.clock() - ts) > 3600:
                return 19021, "sign match fail or timestamp is not within one hour from current time"
            key = f"{ts}\n{self.secret}".encode()
            if msg.get("sign") != base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode():
                return 19021, "sign match fail or timestamp is not within one hour from current time"
        if msg.get("msg_type") != "interactive" or "card" not in msg:
            return 19001, "param invalid"
        if len(body) > 20 * 1024:
            return 19002, "request body too large: at most 20 KB"
        if not self.within_limit():
            return 11232, "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]"
        self.received.append(msg)
        return 0, "success"


class SlackReceiver(LoopbackReceiver):
    """A Slack incoming webhook: the secret path (404 no_service), blocks within Slack's limits
    (400 invalid_blocks), 60 messages a minute (429); ``archived`` answers 410."""

    def __init__(self, path: str = "T0001/B0001/slack-secret", clock=time.time, per_minute: int = 60):
        super().__init__(clock, per_minute)
        self.path, self.archived = path, False

    def answer(self, path, headers, body):
        if path != f"/services/{self.path}":
            return self._refuse(404, "no_service")
        if self.archived:
            return self._refuse(410, "channel_is_archived")
        msg = json.loads(body)
        blocks = msg.get("blocks", [])
        if not msg.get("text") or len(blocks) > 50 or any(
                (b["type"] == "header" and len(b["text"]["text"]) > 150)
                or (b["type"] == "section" and len(b["text"]["text"]) > 3000) for b in blocks):
            return self._refuse(400, "invalid_blocks")
        if not self.within_limit():
            return self._refuse(429, "rate_limited", {"Retry-After": "1"})
        self.received.append(msg)
        return 200, "ok"

    def _refuse(self, status, reason, headers=None):
        self.refused.append(reason)
        return status, reason, headers or {}


class SmsProviderReceiver(LoopbackReceiver):
    """An SMS / voice provider: ``Authorization: Bearer KEY`` (code 1001), 11-digit mobiles (1002),
    texts of at most 300 characters (1003), an SMS of at most ``max_segments`` segments (70
    characters each of Chinese, 67 in a long message: 1004), a call of one sentence of at most 160
    characters (1005), a per-minute limit (1029); HTTP 200 with ``code`` 0."""

    def __init__(self, api_key: str = "sms-api-key", clock=time.time, per_minute: int | None = None,
                 max_segments: int = 4):
        super().__init__(clock, per_minute)
        self.api_key, self.max_segments = api_key, max_segments

    def answer(self, path, headers, body):
        code, msg = self._check(path, headers, body)
        if code:
            self.refused.append(code)
        return 200, {"code": code, "message": msg, "id": f"m{len(self.received)}"}

    def _check(self, path, headers, body) -> tuple[int, str]:
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return 1001, "invalid api key"
        msg = json.loads(body)
        if not (str(msg.get("to", "")).isdigit() and len(str(msg["to"])) == 11):
            return 1002, "invalid mobile"
        if len(msg.get("text", "")) > 300:
            return 1003, "text too long"
        text = msg.get("text", "")
        if "/voice" in path:
            if len(text) > 160 or any(mark in text.rstrip("。.") for mark in "。\n"):
                return 1005, "a call reads one sentence"
        elif _segments(text) > self.max_segments:
            return 1004, f"more than {self.max_segments} segments"
        if not self.within_limit():
            return 1029, "too frequent, try later"
        self.received.append({"path": urllib.parse.urlparse(path).path, **msg})
        return 0, "ok"


def _segments(text: str) -> int:
    """SMS segments as a network counts them, told apart from the sender's own count: GSM-7 (ASCII
    but the backtick; ``^{}[]~|\\`` from its extension table, two septets each) 160 septets a
    segment, 153 when concatenated; UCS-2 (any other character, as all Chinese is) 70, 67."""
    if all(ord(c) < 128 and c != "`" for c in text):
        n, single, multi = len(text) + sum(c in "^{}[]~|\\" for c in text), 160, 153
    else:
        n, single, multi = len(text), 70, 67
    return 1 if n <= single else -(-n // multi)


class WebhookReceiver(LoopbackReceiver):
    """A generic webhook receiver: verifies ``X-Storefence-Signature`` over the raw body (401);
    ``status`` forces a reply (e.g. 400 or 500)."""

    def __init__(self, secret: str | None = "hook-secret", clock=time.time):
        super().__init__(clock)
        self.secret, self.status = secret, None
        self.raw: list[bytes] = []

    def answer(self, path, headers, body):
        if self.status:
            self.refused.append(self.status)
            return self.status, {"error": "forced"}
        if self.secret:
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(headers.get("X-Storefence-Signature", ""), expected):
                self.refused.append(401)
                return 401, {"error": "bad signature"}
        self.raw.append(body)
        self.received.append({"path": path, **json.loads(body)})
        return 202, {"accepted": True}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    """A real SMTP server on loopback (aiosmtpd) that requires no TLS: ``login`` / ``password``
    (when set) are checked (535 otherwise); ``refuse`` maps an address to its RCPT reply (e.g.
    ``"550 5.1.1 no such user"``); ``data_reply`` replaces the reply to DATA (e.g. ``"451 ..."``).
    Accepted messages are parsed into ``received`` (``email.message.EmailMessage``)."""

    def __init__(self, login: str | None = "alerts", password: str | None = "smtp-password"):
        self.login, self.password = login, password
        self.refuse: dict[str, str] = {}
        self.data_reply: str | None = None
        self.received: list = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.port = free_port()
        self.host = "127.0.0.1"
        self._controller = None

    def start(self):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        server = self

        class Handler:
            async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):  # noqa: N802
                if address in server.refuse:
                    return server.refuse[address]
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, smtp, session, envelope):  # noqa: N802
                if server.data_reply:
                    return server.data_reply
                server.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                server.received.append(message_from_bytes(envelope.original_content or envelope.content,
                                                          policy=email_policy.default))
                return "250 Message accepted for delivery"

        def authenticator(smtp, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == server.login \
                and auth_data.password.decode() == server.password
            return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535 itself

        kwargs = {"authenticator": authenticator, "auth_require_tls": False} if self.login else {}
        self._controller = Controller(Handler(), hostname=self.host, port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self):
        if self._controller:
            self._controller.stop()
            self._controller = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
