"""An idempotent JSON API on loopback, as procurement, ads and customer-service systems expose.

It records every POST (path, body, ``Idempotency-Key``), answers 201, and 409 to a key it has
seen; it can be taken down (503). One of these stands in for each action's endpoint.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ActionEndpoint:
    def __init__(self, token: str | None = "api-key"):
        self.token = token
        self.accepted: list[dict] = []  # {"path", "key", "body"}
        self.duplicates = 0
        self.down = False
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                status = endpoint._receive(self.path, self.headers, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"status": status}).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._lock = threading.Lock()

    def _receive(self, path, headers, body) -> int:
        if self.down:
            return 503
        if self.token and headers.get("Authorization") != f"Bearer {self.token}":
            return 401
        key = headers.get("Idempotency-Key")
        with self._lock:
            if key and any(a["key"] == key for a in self.accepted):
                self.duplicates += 1
                return 409
            self.accepted.append({"path": path, "key": key, "body": body})
        return 201

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
