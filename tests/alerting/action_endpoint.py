"""An idempotent JSON API on loopback, as procurement, ads and customer-service systems expose.

It records every POST (path, body, ``Idempotency-Key``), answers 201, and 409 to a key it has
seen; it can be taken down (503). One of these stands in for each action's endpoint.
"""

from __future__ import annotations

import json

from tests.alerting.receivers import LoopbackReceiver


class ActionEndpoint(LoopbackReceiver):
    def __init__(self, token: str | None = "api-key"):
        super().__init__()
        self.token = token
        self.accepted: list[dict] = []  # {"path", "key", "body"}
        self.duplicates = 0

    def answer(self, path: str, headers, body: bytes) -> tuple:
        body = json.loads(body or b"{}")
        if self.token and headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"status": 401}
        key = headers.get("Idempotency-Key")
        if key and any(a["key"] == key for a in self.accepted):
            self.duplicates += 1
            return 409, {"status": 409}
        self.accepted.append({"path": path, "key": key, "body": body})
        return 201, {"status": 201}
