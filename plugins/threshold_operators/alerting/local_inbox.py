"""A local stand-in for the vendors, for the demo: every channel delivers here instead of the cloud.

One HTTP server on loopback takes what each channel sends (DingTalk and WeCom robots, Feishu,
Slack, the SMS and voice provider, the webhook, the procurement, ads and customer-service APIs)
under a path of its own (``/<channel>/...``) and answers as the vendor does on success; an SMTP
server (aiosmtpd) takes the email. Everything received is kept, in order, to print who got what.
``connections()`` gives the ``AIRFLOW_CONN_*`` values that point every channel of ``routing.yaml``
and every action of the catalogue here (``connection_fields()``: the same as fields, to store
them in the metadata DB). ``record``, when given, is called with ("http" | "mail", item) for
everything received (``storefence inbox serve`` appends it to a file). Not for production: it
checks no signature.
"""

from __future__ import annotations

import json
import threading
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalInbox:
    def __init__(self, port: int = 0, smtp_port: int | None = None, record=None):
        self.http: list[dict] = []  # {"channel", "path", "body"}
        self.mail: list[dict] = []  # {"to", "subject"}
        self._record = record or (lambda kind, item: None)
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"raw": raw.decode("utf-8", "replace")}
                channel = self.path.strip("/").split("/", 1)[0]
                inbox.http.append({"channel": channel, "path": self.path, "body": body})
                inbox._record("http", inbox.http[-1])
                self.send_response(200)
                if channel.endswith("slack"):
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(b"ok")
                    return
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"errcode": 0, "errmsg": "ok", "code": 0, "msg": "success",
                                             "StatusCode": 0}).encode())

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._smtp = None
        self.smtp_port = smtp_port

    def __enter__(self):
        import logging

        from aiosmtpd.controller import Controller

        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command
        inbox = self

        class Mailbox:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
                msg = message_from_bytes(envelope.content)
                inbox.mail.append({"to": list(envelope.rcpt_tos),
                                   "subject": str(make_header(decode_header(msg.get("Subject", ""))))})
                inbox._record("mail", inbox.mail[-1])
                return "250 OK"

        import socket

        if not self.smtp_port:
            with socket.socket() as probe:  # a free port (aiosmtpd checks its server by connecting to it)
                probe.bind(("127.0.0.1", 0))
                self.smtp_port = probe.getsockname()[1]
        self._smtp = Controller(Mailbox(), hostname="127.0.0.1", port=self.smtp_port)
        self._smtp.start()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        if self._smtp:
            self._smtp.stop()

    def connections(self, routing, rules) -> dict[str, str]:
        """``AIRFLOW_CONN_<ID>`` -> JSON for every channel and action connection, pointing here."""
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)
                for conn_id, conn in self.connection_fields(routing, rules).items()}

    def connection_fields(self, routing, rules) -> dict[str, dict]:
        return inbox_connections(self.url, self.smtp_port, routing, rules)


def inbox_connections(url: str, smtp_port: int, routing, rules) -> dict[str, dict]:
    """conn_id -> the connection's fields (conn_type, host, port, login, password, extra) for every
    channel and action connection, pointing at the inbox at ``url`` (HTTP) and ``smtp_port``."""
    out = {}
    for name, ch in routing.channels.items():
        if ch.kind == "email":
            conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port, "login": "",
                    "password": "", "extra": {"disable_ssl": True, "disable_tls": True,
                                              "from_email": "storefence@localhost"}}
        elif ch.kind in ("sms", "voice"):
            conn = {"conn_type": "http", "host": f"{url}/{name}", "password": "demo-key",
                    "extra": {"endpoint": "/send", "body": {"to": "{{ to }}", "text": "{{ text }}"},
                              "ok": {"field": "code", "equals": 0}}}
        else:
            conn = {"conn_type": "http", "host": f"{url}/{name}", "password": "demo-token"}
        out[ch.conn_id] = conn
    for rule in rules:
        for action in rule.actions:
            out[action.conn_id] = {"conn_type": "http", "host": f"{url}/{action.conn_id}", "password": "demo-key"}
    out["storefence_ack"] = {"conn_type": "http", "host": "http://localhost:8080", "password": "demo-ack-secret"}
    return out
