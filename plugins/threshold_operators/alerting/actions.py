"""Actions, not only messages: what a rule's ``actions:`` do when it fires.

- ``purchase_suggestion`` (inventory): a suggested purchase order per supplier, one line per SKU,
  quantity = target cover days x daily forecast - stock - in transit (rounded up; lines of 0 are
  left out), POSTed to procurement for review;
- ``ads_pause`` (traffic.paid_cost_quality): a pause request for the channel to the ads platform;
  a dry run unless the rule says ``execute: true`` (recorded in the outbox as ``dry_run`` and
  announced to the rule's team, never sent);
- ``cs_task`` (customer rules): a customer-service task per entity, due within the rule's SLA.

An action is an outbox row like a message (route ``action:<conn_id>``), under an idempotency key
of the alert(s), the action and the data window: a retried task, a re-run or a backfill sends it
once, and the receiving system gets the same key in the ``Idempotency-Key`` header for its own
deduplication. Every body carries a versioned ``schema`` name.

A rule file is data, and the connection's password goes out as a bearer token, so where a
request goes is not the rule's to choose: the endpoint is a path on the connection's host
(``rules.model.ENDPOINT``), the final URL is checked to be on that host before anything is sent
(and redirects are not followed), the connection must be declared under ``action_connections``
in ``routing.yaml`` (``storefence lint`` refuses others), and Storefence's own connections
(``RESERVED_CONN_IDS``: the acknowledge-link key, the state store, the warehouse) never are.
"""

from __future__ import annotations

import math
from collections import defaultdict
from hashlib import sha256

from threshold_operators.alerting.channels.base import Message, SendResult, http_failure, lookup_connection
from threshold_operators.rules.model import RESERVED_CONN_IDS


class ActionRefused(ValueError):
    """An action whose connection or URL a rule may not use."""


def check_conn_id(conn_id: str, declared=None) -> None:
    """Raise ActionRefused unless ``conn_id`` may carry an action (``declared``: routing.yaml's list)."""
    if conn_id in RESERVED_CONN_IDS:
        raise ActionRefused(f"connection {conn_id!r} is Storefence's own; an action may not use it")
    if declared is not None and conn_id not in declared:
        raise ActionRefused(f"connection {conn_id!r} is not declared under action_connections in routing.yaml")


def same_origin_url(base_url: str, endpoint: str) -> str:
    """``base_url + endpoint``, or ActionRefused when that URL is not on the base URL's host (an
    endpoint like ``@other.host/x`` or ``.evil.example/x`` would move the request elsewhere)."""
    from urllib.parse import urlsplit

    url = f"{base_url.rstrip('/')}{endpoint}"
    base, final = urlsplit(base_url), urlsplit(url)
    if (final.scheme, final.netloc) != (base.scheme, base.netloc) or "@" in final.netloc \
            or not final.path.startswith(base.path.rstrip("/")) or ".." in final.path.split("/"):
        raise ActionRefused(f"the endpoint {endpoint!r} leaves the connection's host {base.hostname!r}; not sent")
    return url


def route_of(action) -> str:
    return f"action:{action.conn_id}"


def _key(*parts) -> str:
    return sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


def purchase_lines(breaches: list[dict], target_cover_days: float) -> dict[str | None, list[dict]]:
    """supplier -> order lines (quantity = target x forecast - stock - in transit, > 0 only)."""
    by_supplier: dict[str | None, list[dict]] = defaultdict(list)
    for b in breaches:
        a = b.get("attributes") or {}
        forecast = float(a.get("daily_forecast") or 0)
        stock = float(a.get("stock") or 0)
        in_transit = float(a.get("in_transit") or 0)
        quantity = math.ceil(target_cover_days * forecast - stock - in_transit)
        if quantity <= 0:
            continue
        by_supplier[a.get("supplier_id")].append({
            **b.get("entity", {}), "quantity": quantity, "stock": stock, "in_transit": in_transit,
            "daily_forecast": round(forecast, 3), "cover_days": b.get("value"), "severity": b.get("severity"),
            "fingerprint": b.get("fingerprint")})
    return dict(by_supplier)


def action_requests(rule, action, breaches: list[dict], window_end: str, sla_hours: float) -> list[dict]:
    """The requests ``action`` makes of ``breaches`` (the firing entities it applies to):
    dicts with ``key``, ``fingerprint`` (for the record) and ``body``."""
    breaches = [b for b in breaches if b.get("severity") in action.severities]
    if not breaches:
        return []
    dry_run = action.kind == "ads_pause" and not action.execute
    out = []
    if action.kind == "purchase_suggestion":
        target = float(action.params.get("target_cover_days", 30))
        for supplier, lines in sorted(purchase_lines(breaches, target).items(), key=lambda kv: str(kv[0])):
            key = _key(rule.id, action.kind, supplier, window_end, *sorted(x["fingerprint"] or "" for x in lines))
            out.append({"key": key, "fingerprint": lines[0]["fingerprint"], "body": {
                "schema": "storefence.purchase_suggestion/v1", "idempotency_key": key, "rule_id": rule.id,
                "supplier_id": supplier, "target_cover_days": target, "data_window_end": window_end,
                "lines": [{k: v for k, v in x.items() if k != "fingerprint"} for x in lines]}})
    else:
        for b in breaches:
            key = _key(rule.id, action.kind, b.get("fingerprint"), window_end)
            common = {"idempotency_key": key, "rule_id": rule.id, "entity": b.get("entity", {}),
                      "severity": b.get("severity"), "metric": b.get("metric"), "value": b.get("value"),
                      "baseline": b.get("baseline"), "threshold": b.get("threshold"), "data_window_end": window_end}
            if action.kind == "ads_pause":
                body = {"schema": "storefence.ads_pause/v1", **common, "channel": b.get("entity", {}).get("channel"),
                        "dry_run": dry_run, "reason": f"{rule.name.en}: {rule.description_in('en')}"}
            else:
                body = {"schema": "storefence.cs_task/v1", **common,
                        "title": f"{rule.name.zh}: {b.get('entity_key')}", "description": rule.runbook_in("zh"),
                        "due_within_hours": sla_hours}
            out.append({"key": key, "fingerprint": b.get("fingerprint"), "body": body})
    for r in out:
        r["dry_run"] = dry_run
        r["endpoint"] = action.endpoint
        r["kind"] = action.kind
    return out


class ActionSender:
    """POST an action's JSON body to ``host + endpoint`` of an Airflow HTTP connection (the API key,
    when there is one, as a bearer token from the connection's password)."""

    def __init__(self, session, base_url: str, token: str | None = None, *, name: str = "action",
                 timeout: float = 10.0):
        self.session, self.base_url, self.name, self._token, self._timeout = session, base_url.rstrip("/"), name, \
            token, timeout

    @classmethod
    def from_connection(cls, conn_id: str, declared=None, **kwargs) -> ActionSender:
        """``declared``: the action connections routing.yaml allows (None: only the reserved
        connections are refused)."""
        from threshold_operators.alerting.channels.http_connection import http_session

        check_conn_id(conn_id, declared)
        conn = lookup_connection(conn_id)
        session, base_url = http_session(conn_id, conn)  # no basic auth over the bearer token
        return cls(session, base_url, conn.password or None, name=f"action:{conn_id}", **kwargs)

    def send(self, message: Message) -> SendResult:
        import requests

        data = message.data
        headers = {"Content-Type": "application/json", "Idempotency-Key": data["body"]["idempotency_key"]}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            url = same_origin_url(self.base_url, data.get("endpoint", ""))
        except ActionRefused as exc:
            return SendResult(False, False, str(exc))  # not retried: the rule must change
        try:
            reply = self.session.post(url, json=data["body"], headers=headers, timeout=self._timeout,
                                      allow_redirects=False)  # a redirect could lead the token elsewhere
        except requests.RequestException as exc:
            return SendResult(False, True, type(exc).__name__)
        if reply.status_code == 409:  # the receiver has this idempotency key already: it is done
            return SendResult.success()
        if not 200 <= reply.status_code < 300:
            return http_failure(reply.status_code, reply.text)
        return SendResult.success()
