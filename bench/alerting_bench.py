"""The alerting pipeline under a burst: 10,000 SKUs under their stock cover at once.

Two figures, each Storefence against a plain baseline in the same run, medians of ``--runs``,
on the SQLite state store (the default) and PostgreSQL (``--pg-url``; skipped if unreachable):

1. **Throughput** (wall clock): entities per second through the notify task's pipeline
   (``queue_notifications``: record 10,000 alerts, mute, group, route, dedup, purchase
   suggestions) and the whole cycle to the last accepted message (``run_cycle`` delivering to a
   strict DingTalk robot on loopback, 20 messages a minute). Baseline: a plain per-alert outbox,
   one notification per entity, each in its own transaction (what a stateful callback does).
2. **Delivery delay** (simulated time; the robot's clock is the pipeline's): from the burst to
   the last message the robot accepted, with the robot refusing anything over 20 a minute.
   Storefence groups the burst into one message per channel (and batches what the throttle
   holds back); the baseline sends one message per SKU through the same throttle, so it needs
   10,000 / 20 = 500 minutes. Also: messages sent, and 130101 refusals (must be 0).

    .venv/bin/python bench/alerting_bench.py [--runs 3] [--entities 10000] [--pg-url URL]

Results: ``bench/results/alerting.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

T0 = datetime(2026, 9, 7, 2, 5, tzinfo=UTC)  # 10:05 in Shanghai: outside quiet hours
RULE = "inventory.stock_cover"


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self) -> float:
        return self.now.timestamp()


def evaluation(n: int) -> dict:
    end = T0.replace(minute=0)
    return {"rule_id": RULE, "mode": "live", "outcome": "breach", "window_start": (end - timedelta(hours=1)).isoformat(),
            "window_end": end.isoformat(), "firing": n, "resolved_entities": [], "failing_tables": {},
            "breaches": [{"entity_key": f"shop_id=shop-{i % 20:02d}/sku=SKU-{i:05d}",
                          "entity": {"shop_id": f"shop-{i % 20:02d}", "sku": f"SKU-{i:05d}"}, "severity": "yellow",
                          "bucket": (end - timedelta(hours=1)).isoformat(), "metric": "cover_days", "value": 4.0,
                          "baseline": None, "threshold": 7.0,
                          "attributes": {"stock": 10, "in_transit": 0, "daily_forecast": 2.0,
                                         "supplier_id": f"SUP-{i % 7}"}} for i in range(n)]}


def make_store(kind: str, pg_url: str | None, folder: Path):
    from threshold_operators.alerting.store import StateStore

    if kind == "sqlite":
        store = StateStore(url=f"sqlite:///{folder / f'state-{uuid.uuid4().hex[:6]}.sqlite'}")
        store.create()
        return store, lambda: None
    import sqlalchemy as sa

    schema = f"sfbench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as con:
        con.execute(sa.text(f"CREATE SCHEMA {schema}"))
    store = StateStore(url=pg_url, schema=schema)
    store.create()

    def drop():
        store.engine.dispose()
        with admin.begin() as con:
            con.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    return store, drop


def senders(robot_url: str, api_url: str, clock):
    import requests

    from threshold_operators.alerting.actions import ActionSender
    from threshold_operators.alerting.channels.dingtalk import DingTalkSender

    out = {"purchasing_dingtalk": DingTalkSender(requests.Session(), robot_url, "robot-token", "SEC-robot-secret",
                                                 clock=clock)}
    out["action:procurement_api"] = ActionSender(requests.Session(), api_url, "api-key")
    return out


def storefence_case(store, n: int) -> dict:
    from tests.alerting.action_endpoint import ActionEndpoint
    from tests.alerting.dingtalk_receiver import DingTalkReceiver
    from threshold_operators.alerting.escalation import run_cycle
    from threshold_operators.alerting.pipeline import _link_settings, queue_notifications
    from threshold_operators.alerting.routing import load_routing
    from threshold_operators.rules.catalogue import load_catalogue

    routing = load_routing()
    rules = {rid: r.rule for rid, r in load_catalogue().rules.items()}
    _link_settings()  # the ack-link connection lookup: once per process, not part of the burst
    ev = evaluation(n)
    clock = Clock()
    with DingTalkReceiver(clock=clock) as robot, ActionEndpoint() as api:
        sends = senders(robot.url, api.url, clock)
        t0 = time.perf_counter()
        report = queue_notifications(rules[RULE], ev, store, routing, clock.now)
        t_queue = time.perf_counter() - t0
        minutes = 0
        while True:
            run_cycle(store, routing, rules, clock.now, senders=sends)
            if not [r for r in store.pending() if r["route"] == "purchasing_dingtalk"]:
                break
            clock.now += timedelta(minutes=1)
            minutes += 1
        t_all = time.perf_counter() - t0
    assert report.events == {"fired": n}, report.events
    return {"queue_s": t_queue, "cycle_s": t_all, "entities_per_s": n / t_queue,
            "delay_min": minutes, "messages": len(robot.received), "refused_130101": robot.refused.count(130101),
            "purchase_orders": len(api.accepted), "purchase_lines": sum(len(a["body"]["lines"]) for a in api.accepted)}


def baseline_case(store, n: int) -> dict:
    """One notification per entity, each stored in its own transaction, sent one by one under the throttle."""
    from tests.alerting.dingtalk_receiver import DingTalkReceiver
    from threshold_operators.alerting.delivery import deliver_due

    ev = evaluation(n)
    clock = Clock()
    with DingTalkReceiver(clock=clock) as robot:
        sends = senders(robot.url, "http://127.0.0.1:9", clock)
        t0 = time.perf_counter()
        for b in ev["breaches"]:
            store.enqueue(key=f"{RULE}|{b['entity_key'][8:]}|{ev['window_end'][:13]}", fingerprint=b["entity_key"][-20:],
                          event="fired", level=1, route="purchasing_dingtalk",
                          payload={"title": f"[yellow] {b['entity_key']}", "text": f"{b['entity_key']} cover 4 days"},
                          now=clock.now)
        t_queue = time.perf_counter() - t0
        # the delay, in simulated minutes, of sending one message per SKU at 20 a minute
        t1 = time.perf_counter()
        deliver_due(store, sends, clock.now, rate_limits={"purchasing_dingtalk": 20}, batch=False)
        per_pass = time.perf_counter() - t1
        remaining = len(store.pending(limit=n + 10))
    minutes = -(-remaining // 20)
    return {"queue_s": t_queue, "entities_per_s": n / t_queue, "delay_min": minutes,
            "messages": n, "first_pass_s": per_pass, "refused_130101": robot.refused.count(130101)}


def median(rows: list[dict], key: str):
    return statistics.median(r[key] for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--entities", type=int, default=10_000)
    ap.add_argument("--pg-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    kinds = ["sqlite"]
    try:
        import sqlalchemy as sa

        with sa.create_engine(args.pg_url).connect():
            kinds.append("postgres")
    except Exception as exc:  # noqa: BLE001
        print(f"PostgreSQL not reachable ({type(exc).__name__}): SQLite only")
    results = {"entities": args.entities, "runs": args.runs, "stores": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            rows = {"storefence": [], "baseline": []}
            for _ in range(args.runs):  # interleaved
                for case, fn in (("storefence", storefence_case), ("baseline", baseline_case)):
                    store, drop = make_store(kind, args.pg_url, Path(tmp))
                    try:
                        rows[case].append(fn(store, args.entities))
                    finally:
                        store.engine.dispose()
                        drop()
            sf, base = rows["storefence"], rows["baseline"]
            summary = {
                "storefence": {k: median(sf, k) for k in sf[0]},
                "baseline": {k: median(base, k) for k in base[0]},
            }
            summary["ratio_entities_per_s"] = summary["storefence"]["entities_per_s"] / summary["baseline"]["entities_per_s"]
            summary["delay_minutes"] = {"storefence": summary["storefence"]["delay_min"],
                                        "baseline": summary["baseline"]["delay_min"]}
            results["stores"][kind] = summary | {"all_runs": rows}
            s, b = summary["storefence"], summary["baseline"]
            print(f"[{kind}] {args.entities} SKUs: pipeline {s['entities_per_s']:.0f} entities/s "
                  f"(queue {s['queue_s']:.2f} s, to the last message {s['cycle_s']:.2f} s), "
                  f"baseline outbox {b['entities_per_s']:.0f}/s -> x{summary['ratio_entities_per_s']:.2f}; "
                  f"messages {s['messages']:.0f} vs {b['messages']:.0f}; delay {s['delay_min']:.0f} min vs "
                  f"{b['delay_min']:.0f} min; 130101 refusals {s['refused_130101']:.0f}; purchase orders "
                  f"{s['purchase_orders']:.0f} with {s['purchase_lines']:.0f} lines")
    out = REPO / "bench" / "results" / "alerting.json"
    out.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    print(f"written {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
