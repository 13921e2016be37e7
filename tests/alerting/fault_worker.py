"""The jobs of the fault-injection suite, run in this process or in a worker process that a test
may kill (``python -m tests.alerting.fault_worker '<job as JSON>'``).

A job is what an Airflow task does on the alert path, on a pinned clock:

- ``notify``: a rule's notify task (``queue_notifications`` then ``deliver``);
- ``cycle``: the ``storefence_escalation`` DAG's task (``run_cycle``);
- ``deliver``: a deliverer alone (``deliver_due``), with the channel's rate limit.

Senders go to receivers on loopback (``routes``: route -> URL): a generic webhook sender (it
sends the outbox key as ``Idempotency-Key``, so the receiver can tell a repeat from a new
message) or the strict DingTalk robot's. Faults come from ``STOREFENCE_FAULT`` (``alerting.faults``).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime


def store_of(job: dict):
    from threshold_operators.alerting.store import StateStore

    store = StateStore(url=job["store_url"], schema=job.get("schema"))
    return store


def senders_of(job: dict) -> dict:
    import requests

    from threshold_operators.alerting.channels.dingtalk import DingTalkSender
    from threshold_operators.alerting.channels.webhook import WebhookSender

    epoch = datetime.fromisoformat(job["now"]).timestamp()
    out = {}
    for route, url in job["routes"].items():
        if job.get("kind", "webhook") == "dingtalk":
            out[route] = DingTalkSender(requests.Session(), url, "robot-token", "SEC-robot-secret", name=route,
                                        clock=lambda: epoch)
        else:
            out[route] = WebhookSender(requests.Session(), url, None, name=route, clock=lambda: epoch)
    return out


def run(job: dict, store=None, senders=None):
    """Run one job; returns its report."""
    from threshold_operators.alerting.delivery import deliver, deliver_due
    from threshold_operators.alerting.escalation import run_cycle
    from threshold_operators.alerting.pipeline import queue_notifications
    from threshold_operators.alerting.routing import load_routing
    from threshold_operators.rules.catalogue import load_catalogue

    now = datetime.fromisoformat(job["now"]).astimezone(UTC)
    own = store is None
    store = store or store_of(job)
    senders = senders if senders is not None else senders_of(job)
    try:
        if job["job"] == "deliver":
            return deliver_due(store, senders, now, rate_limits=job.get("rate_limits"), batch=job.get("batch", True))
        routing = load_routing()
        rules = {rid: r.rule for rid, r in load_catalogue().rules.items()}
        if job["job"] == "notify":
            report = queue_notifications(rules[job["rule"]], job["evaluation"], store, routing, now)
            deliver(store, routing, now, senders=senders)
            return report
        if job["job"] == "cycle":
            return run_cycle(store, routing, rules, now, senders=senders)
        raise ValueError(f"unknown job {job['job']!r}")
    finally:
        if own:
            store.engine.dispose()


if __name__ == "__main__":
    run(json.loads(sys.argv[1]))
