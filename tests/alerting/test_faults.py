"""Fault injection on the alert path, on the SQLite and the PostgreSQL state store (issue 11, part 2).

Every case ends with every alert told exactly once (or at least once under the same idempotency
key, where a crash sits between the receiver's answer and the record), in order, within the
throttle. The receivers are real HTTP servers on loopback: generic webhooks that record the
``Idempotency-Key`` of every request, and the strict DingTalk robot (20 a minute, 130101 above).

- a crash at every step between "alert recorded" and "message sent": an exception in this
  process, and a worker process killed with SIGKILL (``STOREFENCE_FAULT``, ``alerting.faults``);
  then what Airflow does next (the task's retry, the escalation DAG's cycles);
- a sender that raises; a lease that runs out mid-send;
- two and four deliverers at once (threads and processes) under a 20/min robot;
- an acknowledgement racing an escalation cycle and a notify task;
- quiet hours on a shared route; a firing alert nobody was told of (left by an older version).

The figures (faults injected, alerts recorded, messages expected, delivered, duplicated, lost,
refused) are printed at the end; ``make bench-faults`` also writes them to ``bench/results/fault_suite.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.alerting import fault_worker
from tests.alerting.conftest import Clock
from tests.alerting.dingtalk_receiver import DingTalkReceiver
from tests.alerting.receivers import WebhookReceiver
from threshold_operators.alerting import faults
from threshold_operators.alerting.channels.base import SendResult
from threshold_operators.alerting.channels.webhook import WebhookSender
from threshold_operators.alerting.delivery import deliver_due
from threshold_operators.alerting.escalation import acknowledge_alert, escalate_due, run_cycle
from threshold_operators.alerting.lifecycle import AlertStatus, fingerprint
from threshold_operators.alerting.pipeline import queue_notifications
from threshold_operators.alerting.routing import load_routing
from threshold_operators.alerting.store import StateStore
from threshold_operators.alerting.store import notifications as outbox
from threshold_operators.rules.catalogue import load_catalogue

REPO = Path(__file__).resolve().parents[2]
H = timedelta(hours=1)
T = datetime(2026, 9, 7, 2, 5, tzinfo=UTC)  # 10:05 in Shanghai: nobody's quiet hours
RULE = "inventory.stock_cover"  # purchasing: yellow -> purchasing_dingtalk + email, red -> + voice; an action
ROUTES = ("purchasing_dingtalk", "email", "voice", "action:procurement_api")
NOTIFY_STEPS = ("notify.decided", "notify.recorded", "notify.queued", "notify.committed")
DELIVER_STEPS = ("deliver.claimed", "deliver.sent", "deliver.recorded")

FIGURES: dict[str, Counter] = {}
SUMMARY: list[str] = []


def _count(category: str, **numbers) -> None:
    FIGURES.setdefault(category, Counter()).update({"cases": 1, **numbers})


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield
    if not FIGURES:
        return
    keys = ("cases", "faults_injected", "alerts_recorded", "messages_expected", "delivered", "duplicated", "lost",
            "refused")
    total = Counter()
    for c in FIGURES.values():
        total.update(c)
    table = {cat: {k: c.get(k, 0) for k in keys} for cat, c in sorted(FIGURES.items())}
    table["TOTAL"] = {k: total.get(k, 0) for k in keys}
    # written only when asked (`make bench-faults`): a test run leaves the checkout as it was
    out = os.environ.get("STOREFENCE_FAULT_FIGURES")
    if out:
        Path(out).write_text(json.dumps({
            "suite": "tests/alerting/test_faults.py", "figures": table,
            "command": "make bench-faults (CI=true pytest tests/alerting/test_faults.py, both state stores)",
            "note": "duplicated: only where a crash or an expired lease sits between the receiver's answer and "
                    "the record; every repeat carried the same Idempotency-Key"}, indent=1) + "\n")
    lines = ["", "fault suite figures" + (f" ({out})" if out else "") + ":",
             f"{'category':<32}" + "".join(f"{k:>18}" for k in keys)]
    lines += [f"{cat:<32}" + "".join(f"{row[k]:>18}" for k in keys) for cat, row in table.items()]
    SUMMARY[:] = lines  # printed at the end of the session (conftest.py: pytest_terminal_summary)


@pytest.fixture(autouse=True)
def _no_hooks():
    faults.reset()
    yield
    faults.reset()


@pytest.fixture(scope="module")
def catalogue():
    cat = load_catalogue()
    return {rid: r.rule for rid, r in cat.rules.items()}


@pytest.fixture(scope="module")
def routing():
    return load_routing()


def _breach(sku: str, severity: str, end: datetime, value: float) -> dict:
    return {"entity_key": f"shop_id=s1/sku={sku}", "entity": {"shop_id": "s1", "sku": sku}, "severity": severity,
            "bucket": (end - H).isoformat(), "metric": "cover_days", "value": value, "baseline": None,
            "threshold": 7.0, "attributes": {"stock": 10, "in_transit": 0, "daily_forecast": 5, "supplier_id": "SUP-1"}}


def _evaluation(end: datetime, breaches, resolved=()) -> dict:
    return {"rule_id": RULE, "mode": "live", "outcome": "breach", "window_start": (end - H).isoformat(),
            "window_end": end.isoformat(), "firing": len(breaches), "resolved_entities": list(resolved),
            "failing_tables": {}, "breaches": [_breach(k, s, end, v) for k, s, v in breaches]}


EV1 = _evaluation(T, [("A", "red", 1.0), ("B", "yellow", 5.0), ("C", "yellow", 6.0)])
EV2 = _evaluation(T + H, [("A", "red", 0.9), ("C", "yellow", 6.0), ("D", "blue", 12.0)],
                  resolved=["shop_id=s1/sku=B"])
# What Airflow runs: the notify task of the first evaluation (where the fault strikes), its retry
# (a no-op when the first try succeeded), escalation cycles, the next evaluation, more cycles.
SCRIPT = [("notify", T, EV1), ("notify", T, EV1), ("cycle", T + timedelta(minutes=2), None),
          ("cycle", T + timedelta(minutes=10), None), ("notify", T + H, EV2),
          ("cycle", T + H + timedelta(minutes=10), None), ("cycle", T + 2 * H, None)]


def _job(store: StateStore, job: str, now: datetime, evaluation, urls: dict, **extra) -> dict:
    return {"job": job, "now": now.isoformat(), "store_url": store.engine.url.render_as_string(hide_password=False),
            "schema": store.schema, "rule": RULE, "evaluation": evaluation, "routes": urls, **extra}


def _in_worker(job: dict, fault: str | None = None) -> int:
    """Run ``job`` in a worker process (killed by the fault when it says ``kill``): its exit code."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)])}
    env.pop(faults.ENV, None)
    if fault:
        env[faults.ENV] = fault
    done = subprocess.run([sys.executable, "-m", "tests.alerting.fault_worker", json.dumps(job)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    if done.returncode not in (0, -9):
        raise AssertionError(done.stderr[-3000:])
    return done.returncode


def _keys(receiver) -> list[str]:
    return [h.get("Idempotency-Key") for h in receiver.headers]


def _play(store: StateStore, urls: dict, fault: str | None = None, how: str = "raise") -> int:
    """Play SCRIPT; the fault strikes in the first job. Returns the faults that fired."""
    fired = 0
    for i, (kind, now, ev) in enumerate(SCRIPT):
        job = _job(store, kind, now, ev, urls)
        if i == 0 and fault and how == "kill":
            fired += _in_worker(job, f"{fault}:kill") == -9
            continue
        if i == 0 and fault:
            os.environ[faults.ENV] = f"{fault}:raise"
            try:
                fault_worker.run(job, store)
            except faults.InjectedFault:
                fired += 1
            finally:
                os.environ.pop(faults.ENV, None)
            continue
        fault_worker.run(job, store)
    return fired


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """What the script tells when nothing goes wrong: route -> idempotency keys, in order."""
    store = StateStore(url=f"sqlite:///{tmp_path_factory.mktemp('ref') / 'state.sqlite'}")
    store.create()
    with contextlib.ExitStack() as stack:
        hooks = {r: stack.enter_context(WebhookReceiver(secret=None)) for r in ROUTES}
        _play(store, {r: h.url for r, h in hooks.items()})
        keys = {r: _keys(h) for r, h in hooks.items()}
        bodies = {r: list(h.received) for r, h in hooks.items()}
    store.engine.dispose()
    fired = Counter((r, fp) for r in ROUTES for b in bodies[r] if b["alert"].get("event") == "fired"
                    for fp in b["alert"]["fingerprints"])
    assert set(fired.values()) == {1} and len({fp for _, fp in fired}) == 4  # A, B, C, then D: each once a route
    assert any(b["alert"].get("event") == "resolved" for b in bodies["purchasing_dingtalk"])
    assert all(len(v) == len(set(v)) for v in keys.values()) and sum(map(len, keys.values())) >= 8
    return keys


@pytest.mark.parametrize("how", ["raise", "kill"])
@pytest.mark.parametrize("step", NOTIFY_STEPS + DELIVER_STEPS)
def test_a_crash_at_any_step_loses_nothing_and_repeats_only_between_send_and_record(state_store, reference,
                                                                                   step, how):
    with contextlib.ExitStack() as stack:
        hooks = {r: stack.enter_context(WebhookReceiver(secret=None)) for r in ROUTES}
        fired = _play(state_store, {r: h.url for r, h in hooks.items()}, step, how)
        got = {r: _keys(h) for r, h in hooks.items()}
        refused = sum(len(h.refused) for h in hooks.values())
    assert fired == 1, f"the fault at {step} did not strike"
    expected = sum(map(len, reference.values()))
    delivered = sum(len(set(v) & set(reference[r])) for r, v in got.items())
    duplicated = sum(len(v) - len(set(v)) for v in got.values())
    _count(f"crash ({how})", faults_injected=fired, alerts_recorded=len(state_store.list()),
           messages_expected=expected, delivered=delivered, duplicated=duplicated, lost=expected - delivered,
           refused=refused)
    for route, keys in got.items():
        assert list(dict.fromkeys(keys)) == reference[route], route  # every message, in order, nothing else
    if step == "deliver.sent":  # the receiver answered, the record never happened: told again, same key
        assert duplicated == 1
    else:
        assert duplicated == 0
    assert {r["status"] for r in state_store.notifications()} == {"sent"}


class RaisingSender:
    """A sender with a bug: it raises, with its secret in the exception's message."""

    def __init__(self, name):
        self.name, self._token = name, "SECRET-robot-token-42"

    def send(self, message):
        raise ValueError(f"header injection in title {message.title!r} (POST /robot/send?access_token={self._token})")


def test_a_sender_that_raises_is_a_recorded_failure_and_delivery_goes_on(state_store, routing, catalogue):
    queue_notifications(catalogue[RULE], EV1, state_store, routing, T)
    with contextlib.ExitStack() as stack:
        hooks = {r: stack.enter_context(WebhookReceiver(secret=None)) for r in ROUTES}
        senders = {r: WebhookSender(requests.Session(), h.url, None, name=r) for r, h in hooks.items()}
        senders["purchasing_dingtalk"] = RaisingSender("purchasing_dingtalk")
        report = deliver_due(state_store, senders, T, fallbacks=routing.fallbacks())
        again = deliver_due(state_store, senders, T + timedelta(minutes=1), fallbacks=routing.fallbacks())
        got = {r: _keys(h) for r, h in hooks.items()}
    rows = state_store.notifications()
    broken = [r for r in rows if r["route"] == "purchasing_dingtalk"]
    assert len(broken) == 2 and {r["status"] for r in broken} == {"failed"}  # both, not only the first
    for r in broken:
        assert r["attempts"] == 1 and r["claimed_until"] is None
        assert r["last_error"].startswith("unexpected ValueError: header injection") and "SECRET" not in r["last_error"]
    assert len(report.failed) == 2 and len(report.rerouted) == 2 and again.sent == []
    expected = {r["idempotency_key"] for r in rows if r["route"] != "purchasing_dingtalk"}
    delivered = {k for keys in got.values() for k in keys}
    assert delivered == expected and {f"{r['idempotency_key']}>email" for r in broken} <= delivered
    assert {r["status"] for r in rows if r["route"] != "purchasing_dingtalk"} == {"sent"}
    _count("sender raises", faults_injected=2, alerts_recorded=len(state_store.list()),
           messages_expected=len(expected), delivered=len(delivered & expected),
           duplicated=sum(len(v) - len(set(v)) for v in got.values()), lost=len(expected - delivered), refused=0)


class SlowSender:
    """Sends through ``inner``; during its first send the clock runs past the lease and ``meanwhile``
    runs (another deliverer, which takes the row over); then it answers ``result`` (default: the
    inner sender's)."""

    def __init__(self, inner, clock: Clock, meanwhile, result: SendResult | None = None):
        self.name, self.inner, self.clock, self.meanwhile, self.result, self.calls = inner.name, inner, clock, \
            meanwhile, result, 0

    def send(self, message):
        self.calls += 1
        out = self.inner.send(message)
        if self.calls == 1:
            self.clock.advance(minutes=30)  # longer than any lease: the deliverer looks dead
            self.meanwhile()
        return self.result or out


@pytest.mark.parametrize("late", ["sent", "failed"])
def test_a_lease_that_runs_out_mid_send_is_told_again_under_the_same_key_and_never_reverted(state_store, late):
    clock = Clock(T)
    state_store.enqueue(key="k-slow", fingerprint="f1", event="fired", level=1, route="r",
                        payload={"title": "slow", "text": "x"}, now=T)
    with WebhookReceiver(secret=None) as hook:
        fast = WebhookSender(requests.Session(), hook.url, None, name="r")
        second = {}

        def meanwhile():
            second["report"] = deliver_due(state_store, {"r": fast}, clock=lambda: clock.now)

        slow = SlowSender(WebhookSender(requests.Session(), hook.url, None, name="r"), clock, meanwhile,
                          SendResult(False, True, "HTTP 503") if late == "failed" else None)
        first = deliver_due(state_store, {"r": slow}, clock=lambda: clock.now)
        keys = _keys(hook)
    [row] = state_store.notifications()
    assert keys == ["k-slow", "k-slow"]  # at least once, the same key both times (the receiver can drop one)
    assert second["report"].sent == [row["id"]] and first.claim_lost == [row["id"]]
    assert first.sent == [] and first.retrying == []  # the late answer is reported, not applied
    assert row["status"] == "sent" and row["attempts"] == 1  # never turned back to pending
    _count("lease runs out mid-send", faults_injected=1, alerts_recorded=0, messages_expected=1, delivered=1,
           duplicated=1, lost=0, refused=0)


def _burst(store: StateStore, routes: dict[str, int]) -> dict[str, list[str]]:
    titles = {}
    for route, n in routes.items():
        titles[route] = [f"[red] {route} #{i}" for i in range(n)]
        for i, title in enumerate(titles[route]):
            store.enqueue(key=f"{route}-{i}", fingerprint=f"f{i}", event="fired", level=1, route=route,
                          payload={"title": title, "text": f"{route} SKU-{i}: 库存仅够 5 小时"}, now=T)
    return titles


class Unhurried:
    """A sender that takes a few milliseconds (a real network's latency), so deliverers overlap."""

    def __init__(self, inner):
        self.name, self.inner = inner.name, inner

    def send(self, message):
        import time

        time.sleep(0.005)
        return self.inner.send(message)


def _robot_senders(robots: dict, clock: Clock) -> dict:
    from threshold_operators.alerting.channels.dingtalk import DingTalkSender

    return {r: DingTalkSender(requests.Session(), robot.url, "robot-token", "SEC-robot-secret", name=r, clock=clock)
            for r, robot in robots.items()}


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize("how", ["threads", "processes"])
def test_n_deliverers_at_once_stay_within_the_robots_limit(state_store, how, n, batch):
    clock = Clock(T)
    titles = _burst(state_store, {"ops_dingtalk": 50, "purchasing_dingtalk": 30})
    per_minute: dict[str, Counter] = {}
    with contextlib.ExitStack() as stack:
        robots = {r: stack.enter_context(DingTalkReceiver(clock=clock)) for r in titles}
        for _ in range(6):
            if how == "threads":
                errors = []

                def one(errors=errors):
                    try:
                        deliver_due(state_store, {r: Unhurried(s) for r, s in _robot_senders(robots, clock).items()},
                                    clock.now, rate_limits=dict.fromkeys(robots, 20), batch=batch)
                    except Exception as exc:  # noqa: BLE001 - reported below
                        errors.append(exc)
                workers = [threading.Thread(target=one) for _ in range(n)]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join(120)
                assert errors == []
            else:
                job = _job(state_store, "deliver", clock.now, None, {r: x.url for r, x in robots.items()},
                           kind="dingtalk", rate_limits=dict.fromkeys(robots, 20), batch=batch)
                env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)])}
                procs = [subprocess.Popen([sys.executable, "-m", "tests.alerting.fault_worker", json.dumps(job)],
                                          cwd=REPO, env=env, stderr=subprocess.PIPE) for _ in range(n)]
                for p in procs:
                    assert p.wait(120) == 0, p.stderr.read().decode()[-2000:]
            for r, robot in robots.items():
                minutes = per_minute.setdefault(r, Counter())
                minutes[clock.now] = robot.requests - sum(minutes.values())
            clock.advance(seconds=61)
            if not state_store.pending():
                break
        refused = sum(len(robot.refused) for robot in robots.values())
    told = {r: [f"[red] {r} #{i}" for m in robot.received for i in re.findall(r"SKU-(\d+):", m["markdown"]["text"])]
            for r, robot in robots.items()}
    for r in titles:
        assert told[r] == titles[r], r  # each once, in order
        assert max(per_minute[r].values()) <= 20
    assert refused == 0
    expected = sum(map(len, titles.values()))
    delivered = sum(len(set(v)) for v in told.values())
    _count(f"{n} {how} (batch={batch})", faults_injected=0, alerts_recorded=0, messages_expected=expected,
           delivered=delivered, duplicated=sum(len(v) - len(set(v)) for v in told.values()),
           lost=expected - delivered, refused=refused)


def test_an_acknowledgement_racing_a_cycle_or_a_notify_task_is_never_undone(state_store, routing, catalogue):
    store = state_store
    queue_notifications(catalogue[RULE], EV1, store, routing, T)
    a, c = fingerprint(RULE, "shop_id=s1/sku=A"), fingerprint(RULE, "shop_id=s1/sku=C")
    at = T + timedelta(minutes=31)  # the red alert's SLA (30 minutes) ran out: the cycle escalates it
    # the cycle reads the alerts, someone acknowledges A, the cycle writes
    faults.hooks["cycle.decided"] = lambda _: faults.hooks.pop("cycle.decided") and acknowledge_alert(
        store, a, "zhao.lei", at)
    report = escalate_due(store, routing, catalogue, at)
    assert store.get(a).status == AlertStatus.ACKNOWLEDGED and store.get(a).acknowledged_by == "zhao.lei"
    assert a not in [fp for fp, _ in report.escalated] and store.get(a).escalation_level == 2
    escalated = [r for r in store.notifications() if r["event"] == "escalated"]
    assert all(a not in r["payload"]["data"]["fingerprints"] for r in escalated)
    # the next notify task reads C, someone acknowledges C, the task writes
    faults.hooks["notify.decided"] = lambda _: faults.hooks.pop("notify.decided") and acknowledge_alert(
        store, c, "chen.jie", T + H)
    queue_notifications(catalogue[RULE], EV2, store, routing, T + H)
    assert store.get(c).status == AlertStatus.ACKNOWLEDGED and store.get(c).acknowledged_by == "chen.jie"
    later = run_cycle(store, routing, catalogue, T + 3 * H, senders={})
    assert {a, c}.isdisjoint(fp for fp, _ in later.escalated)
    assert store.get(a).status == AlertStatus.ACKNOWLEDGED and store.get(c).status == AlertStatus.ACKNOWLEDGED
    _count("ack races cycle/notify", faults_injected=2, alerts_recorded=len(store.list()), messages_expected=0,
           delivered=0, duplicated=0, lost=0, refused=0)


def test_quiet_hours_of_one_team_do_not_hold_back_another_on_a_shared_route(state_store, routing, catalogue):
    night = datetime(2026, 9, 6, 17, 5, tzinfo=UTC)  # 01:05 in Shanghai: operations' quiet hours (23-08)
    spike, drop = catalogue["sales.order_spike"], catalogue["sales.order_drop"]  # operations, marketing
    ev = {**_evaluation(night, []), "rule_id": spike.id,
          "breaches": [{**_breach("Q", "yellow", night, 9.0), "metric": "orders"}]}
    queue_notifications(spike, ev, state_store, routing, night)  # yellow at night: deferred to 08:00
    ev2 = {**ev, "rule_id": drop.id, "window_end": (night + timedelta(minutes=1)).isoformat()}
    queue_notifications(drop, ev2, state_store, routing, night + timedelta(minutes=1))  # marketing: no quiet hours
    rows = state_store.notifications()
    assert [r["route"] for r in rows] == ["ops_dingtalk", "ops_dingtalk"]
    with WebhookReceiver(secret=None) as hook:
        sender = {"ops_dingtalk": WebhookSender(requests.Session(), hook.url, None, name="ops_dingtalk")}
        first = deliver_due(state_store, sender, night + timedelta(minutes=2))
        assert _keys(hook) == [rows[1]["idempotency_key"]]  # the marketing message went out at 01:07
        deliver_due(state_store, sender, datetime(2026, 9, 7, 0, 0, 30, tzinfo=UTC))  # 08:00:30 in Shanghai
        keys = _keys(hook)
    assert first.sent == [rows[1]["id"]]
    assert keys == [rows[1]["idempotency_key"], rows[0]["idempotency_key"]]
    _count("quiet hours, shared route", faults_injected=0, alerts_recorded=len(state_store.list()),
           messages_expected=2, delivered=len(set(keys)), duplicated=len(keys) - len(set(keys)), lost=2 - len(set(keys)),
           refused=0)


@pytest.mark.parametrize("how", ["none", "raise", "kill"])
def test_a_firing_alert_nobody_was_told_of_is_told_once_by_the_cycle(state_store, routing, catalogue, how):
    """What the older two-transaction notify left when it died between them: a firing alert, no message."""
    store = state_store
    queue_notifications(catalogue[RULE], EV1, store, routing, T)
    for r in store.list():
        store.save(replace(r, notified_at=None, escalation_level=0, escalated_at=None))
    with store.transaction() as con:
        con.execute(outbox.delete())
    with contextlib.ExitStack() as stack:
        hooks = {r: stack.enter_context(WebhookReceiver(secret=None)) for r in ROUTES}
        urls = {r: h.url for r, h in hooks.items()}
        fired = 0
        at = T + timedelta(minutes=5)
        if how == "kill":
            fired = _in_worker(_job(store, "cycle", at, None, urls), "cycle.told:kill") == -9
        elif how == "raise":
            os.environ[faults.ENV] = "cycle.told:raise"
            try:
                fault_worker.run(_job(store, "cycle", at, None, urls), store)
            except faults.InjectedFault:
                fired = 1
            finally:
                os.environ.pop(faults.ENV, None)
        first = fault_worker.run(_job(store, "cycle", at, None, urls), store)
        fault_worker.run(_job(store, "notify", at, EV1, urls), store)  # the notify task's late retry
        again = fault_worker.run(_job(store, "cycle", at + timedelta(minutes=5), None, urls), store)
        got = {r: _keys(h) for r, h in hooks.items()}
        bodies = [b for h in hooks.values() for b in h.received]
    assert fired == (how != "none")
    assert sorted(first.requeued) == sorted(a.fingerprint for a in store.list()) and again.requeued == []
    told = Counter(fp for b in bodies if b["alert"].get("event") == "fired" for fp in b["alert"]["fingerprints"])
    assert len(told) == 3 and all(a.notified_at is not None for a in store.list())
    keys = [k for v in got.values() for k in v]
    assert len(keys) == len(set(keys)) and {r["status"] for r in store.notifications()} == {"sent"}
    routes_per_alert = Counter(fp for r in store.notifications() for fp in r["payload"]["data"].get("fingerprints", ()))
    assert all(told[fp] == routes_per_alert[fp] for fp in told)  # once on each of its routes
    _count(f"untold alert re-queued ({how})", faults_injected=int(fired), alerts_recorded=len(store.list()),
           messages_expected=len(store.notifications()), delivered=len(set(keys)),
           duplicated=len(keys) - len(set(keys)), lost=len(store.notifications()) - len(set(keys)), refused=0)


def test_a_mark_whose_claim_was_taken_over_is_not_applied(state_store):
    """The first deliverer's lease ran out and a second one holds the row: the first one's late
    answer (sent or failed) changes nothing; the second one's record stands."""
    state_store.enqueue(key="k", fingerprint="f", event="fired", level=1, route="r", payload={"title": "t", "text": "x"},
                        now=T)
    [row] = state_store.pending()
    first = state_store.claim(row["id"], T, lease_seconds=300)
    assert first and state_store.claim(row["id"], T + timedelta(minutes=4)) is None  # still held
    second = state_store.claim(row["id"], T + timedelta(minutes=6))  # the lease ran out
    assert second and second != first
    assert not state_store.mark_failed(row["id"], "HTTP 503", T + timedelta(minutes=7), token=first)
    assert not state_store.mark_sent(row["id"], T + timedelta(minutes=7), token=first)
    assert state_store.pending()[0]["claim_token"] == second and state_store.pending()[0]["attempts"] == 0
    assert state_store.mark_sent(row["id"], T + timedelta(minutes=7), token=second)
    assert not state_store.mark_failed(row["id"], "late", None, token=second)  # a sent row stays sent
    [done] = state_store.notifications()
    assert done["status"] == "sent" and done["attempts"] == 1 and done["last_error"] is None


def test_the_lease_outlasts_the_worst_case_send_of_each_sender():
    from threshold_operators.alerting.channels.base import Message
    from threshold_operators.alerting.channels.email import EmailSender
    from threshold_operators.alerting.channels.sms import SmsSender
    from threshold_operators.alerting.delivery import LEASE_MIN, lease_for, worst_case_send

    sms = SmsSender(requests.Session(), "http://127.0.0.1:9", "key", {"endpoint": "/send"}, timeout=10)
    many = Message("t", "x", mentions=tuple(f"1380000{i:04d}" for i in range(20)))
    assert worst_case_send(sms, many) == 400  # 20 numbers, one after the other, 10 s connect + 10 s read each
    assert lease_for(sms, many) == timedelta(seconds=860) > timedelta(seconds=400)
    mail = EmailSender(lambda: None, "alerts@example.com", timeout=30, retry_limit=5)
    assert worst_case_send(mail, Message("t", "x", emails=("a@x", "b@x"))) == 30 * (5 + 3 + 2)
    assert lease_for(RaisingSender("r")) == LEASE_MIN  # an HTTP robot: 60 s at worst, the 5-minute floor


def test_the_email_sender_raising_on_a_title_with_a_newline_stalls_nothing(state_store, monkeypatch):
    """The issue's case, with the real SMTP sender and a real SMTP server: the email module refuses
    a header with a newline by raising; that row fails (recorded), the next rows go out."""
    from tests.alerting.receivers import SmtpServer
    from threshold_operators.alerting.channels.email import EmailSender

    titles = ["[红色] 库存告急\nBcc: everyone@example.com", "[红色] 库存告急 #2", "[红色] 库存告急 #3"]
    for i, title in enumerate(titles):
        state_store.enqueue(key=f"mail-{i}", fingerprint=f"f{i}", event="fired", level=1, route="ops_email",
                            payload={"title": title, "text": "SKU-1", "emails": ["ops@shop.example"]}, now=T)
    with SmtpServer() as smtp:
        monkeypatch.setenv("AIRFLOW_CONN_OPS_EMAIL", json.dumps(
            {"conn_type": "smtp", "host": smtp.host, "port": smtp.port, "login": "alerts", "password": "smtp-password",
             "extra": {"from_email": "storefence@shop.example", "disable_ssl": True, "disable_tls": True,
                       "retry_limit": 0, "timeout": 5}}))
        report = deliver_due(state_store, {"ops_email": EmailSender.from_connection("ops_email")}, T)
        subjects = [str(m["Subject"]) for m in smtp.received]
    rows = state_store.notifications()
    assert subjects == titles[1:] and [r["status"] for r in rows] == ["failed", "sent", "sent"]
    assert rows[0]["last_error"].startswith("unexpected ValueError") and "smtp-password" not in rows[0]["last_error"]
    assert report.failed == [rows[0]["id"]] and len(report.sent) == 2
    _count("sender raises", faults_injected=1, alerts_recorded=0, messages_expected=2, delivered=len(subjects),
           duplicated=0, lost=2 - len(subjects), refused=0)
