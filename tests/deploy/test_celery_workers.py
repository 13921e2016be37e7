"""CeleryExecutor with two workers, each on a "host" of its own (tests/harness/celery_stack.py):
its own Airflow home, log folder, loopback address and queue, sharing the PostgreSQL metadata DB,
a Redis broker (a database of the test's own, flushed afterwards) and the API server.

Tasks are routed by a ``task_policy`` (``airflow_local_settings.py``): ``fetch_*`` to the
``fetch`` worker, everything else to ``load``. So the fetch and the load of one table run on
different hosts, and whatever the fetch leaves for the load must be in storage both reach: the
warehouse and the state store on PostgreSQL, staging in a folder both workers are given
(``[storefence] storage_url``), as a shared mount would be.

The scheduler runs on the real clock; the shop's data are placed relative to now (as in
test_real_scheduler.py), so the test is the same at any hour. Timeouts are generous; nothing
here is timed. A task that goes up for retry fails the test at once with its log: in this clean
set-up a retry is a fault, and the DAG's retry delays would only add minutes before the same
message.

The second test runs the whole path on three workers (``fetch``; ``deliver-a``: the alert DAGs'
notify tasks; ``deliver-b``: everything else, the escalation DAG included), so two workers deliver
from the one PostgreSQL outbox to strict DingTalk robots; an acknowledgement through the plugin's
API on the API server stops the acknowledged alert's ladder (shortened to minutes by a routing
file every home reads, ``STOREFENCE_ROUTING``) while a control alert is escalated.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import IN_CI, PG_ADMIN_URL, fresh_schemas
from tests.harness.celery_stack import (
    CeleryDeployment,
    flush_redis,
    free_redis_db,
    redis_unavailable,
    running_celery,
)

pytestmark = [pytest.mark.real_airflow, pytest.mark.postgres, pytest.mark.slow]

EXTRACT = "storefence_extract_shop_api"


@pytest.fixture
def redis_broker() -> str:
    """``redis://127.0.0.1:6379/<n>``, a database no one else uses now; flushed afterwards.
    Redis absent: the test skips, except under CI=true, where it fails."""
    problem = redis_unavailable()
    if problem:
        if IN_CI:
            pytest.fail(f"Redis is required under CI=true: 127.0.0.1:6379 {problem}")
        pytest.skip(f"Redis at 127.0.0.1:6379 unreachable ({problem})")
    url = f"redis://127.0.0.1:6379/{free_redis_db()}"
    yield url
    flush_redis(url)


@pytest.fixture
def pg_stores(pg_server):
    """(warehouse schema, state store schema) on the test database, dropped afterwards."""
    with fresh_schemas(pg_server, "sf_celery", "sf_celery_state") as names:
        yield tuple(names)


def postgres_stores(warehouse_schema: str, state_schema: str, server_url: str = PG_ADMIN_URL) -> dict[str, dict]:
    """The ``storefence_warehouse`` and ``storefence_state`` connections on the PostgreSQL server,
    each in a schema of its own (their ``search_path`` extra, set per transaction)."""
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    server = {"conn_type": "postgres", "host": url.host, "port": url.port or 5432, "login": url.username,
              "password": url.password, "schema": url.database}
    return {"storefence_warehouse": {**server, "extra": {"search_path": warehouse_schema}},
            "storefence_state": {**server, "extra": {"search_path": state_schema}}}


def shared_storage(folder) -> tuple[dict, dict]:
    """(extra_config, extra_env) naming ``folder`` as the storage every worker reaches, for staging
    and GX results: ``[storefence] storage_url``."""
    return {("storefence", "storage_url"): f"file://{folder}"}, {}


def wait_ended_or_retrying(client, dag_id: str, run_id: str, timeout: float = 600) -> tuple[str, str]:
    """Poll until the run ends, or a task of any running run of the DAG is up for retry (the
    scheduled run that unpausing made may go first: ``max_active_runs=1``): (the run's state, or
    ``up_for_retry``; the run to report on)."""
    deadline = time.monotonic() + timeout
    while True:
        state = client.dag_run(dag_id, run_id)["state"]
        if state in ("success", "failed"):
            return state, run_id
        for run in client.dag_runs(dag_id, state=["running"]):
            if any(t["state"] == "up_for_retry" for t in client.task_instances(dag_id, run["dag_run_id"])):
                return "up_for_retry", run["dag_run_id"]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dag_id} {run_id} still {state} after {timeout:.0f} s\n{client.run_report(dag_id, run_id)}")
        time.sleep(2)


def placement(af: CeleryDeployment, tis: list[dict]) -> dict[str, tuple[str, str, str]]:
    """task id -> (queue, hostname, the worker of that hostname) of each task instance that ran."""
    return {t["task_id"]: (t.get("queue"), t.get("hostname"), getattr(af.worker_of(t.get("hostname")), "queue", None))
            for t in tis if t.get("hostname")}


def test_fetch_and_load_of_a_table_run_on_their_own_workers(pg_server, redis_broker, pg_stores, small_shop, tmp_path):
    import sqlalchemy as sa

    from threshold_operators.demo import seed_history
    from threshold_operators.shop_api.server import ShopApiServer
    from threshold_operators.warehouse.hook import WarehouseHook

    source, end = small_shop
    warehouse_schema, state_schema = pg_stores
    storage = tmp_path / "shared-storage"
    storage.mkdir()
    config, env = shared_storage(storage)

    def seed(stack):  # after the set-up made the warehouse's tables
        warehouse = WarehouseHook(url=PG_ADMIN_URL, search_path=warehouse_schema)
        seed_history(source, warehouse, end - timedelta(hours=2))
        warehouse.engine.dispose()

    t0 = time.monotonic()
    with ShopApiServer(source) as api:
        host, port = api.url.removeprefix("http://").rsplit(":", 1)
        connections = {**postgres_stores(warehouse_schema, state_schema),
                       "shop_api_default": {"conn_type": "http", "host": host, "port": int(port)}}
        with running_celery(tmp_path / "airflow", PG_ADMIN_URL, redis_broker, workers=("fetch", "load"),
                            connections=connections, extra_config=config, extra_env=env, prepare=seed) as af:
            started = time.monotonic() - t0
            c = af.client
            run_id = c.trigger(EXTRACT)["dag_run_id"]
            c.unpause(EXTRACT)  # also schedules its latest interval; max_active_runs=1 runs them one by one
            state, reported = wait_ended_or_retrying(c, EXTRACT, run_id)
            report = f"{reported}: {state}\n{c.run_report(EXTRACT, reported)}" if state != "success" else ""
            where = placement(af, c.task_instances(EXTRACT, reported))
            if state == "success":
                loads = {t: c.xcom(EXTRACT, run_id, t) for t in where if t.startswith("load_")}
                # each log read by the API server from the log server of the worker that ran the task
                logs = {t: c.task_log(EXTRACT, run_id, t) for t in ("fetch_orders", "load_orders")}

    print(f"\nstack start {af.seconds_to_start:.0f} s (set-up and start {started:.0f} s); run {state}; "
          f"test {time.monotonic() - t0:.0f} s")
    for task_id, (queue, hostname, worker) in where.items():
        wanted = af.queue_for(task_id)
        assert (queue, worker) == (wanted, wanted), \
            f"{task_id} ran from queue {queue} on {hostname} (worker {worker}), not on the {wanted} worker " \
            f"({af.workers[wanted].hostname}); placement: {json.dumps(where, indent=1)}"
    assert state == "success", f"{EXTRACT} {report}"
    fetched = {t.removeprefix("fetch_") for t in where if t.startswith("fetch_")}
    loaded = {t.removeprefix("load_") for t in where if t.startswith("load_")}
    assert fetched and loaded == fetched, f"tables fetched {sorted(fetched)}, loaded {sorted(loaded)}"
    assert any(r["loaded"] > 0 for r in loads.values()), loads  # the two hours after the seeded history
    for task_id, text in logs.items():
        host = af.workers[af.queue_for(task_id)].hostname
        assert f"http://{host}:" in text and "shop_api.orders:" in text, f"{task_id}'s log:\n{text[-3000:]}"
    with pg_server.connect() as con:  # the state store is the connection's schema, not a file per host
        state_tables = set(con.execute(sa.text("SELECT table_name FROM information_schema.tables "
                                               "WHERE table_schema = :s"), {"s": state_schema}).scalars())
    assert {"alerts", "notifications"} <= state_tables, state_tables


# --- for the fuller end-to-end test (alert DAGs -> strict DingTalk robots, two deliverers, an
# acknowledgement through the plugin's API on one host stops the escalation) -----------------------
DELIVERY_ROUTES = {"fetch_": "fetch", "notify": "deliver-a"}  # + default_queue="deliver-b": two deliverers
DELIVERY_WORKERS = ("fetch", "deliver-a", "deliver-b")


def dingtalk_connections(robots: dict) -> dict[str, dict]:
    """conn_id -> connection for each ``tests.alerting.dingtalk_receiver.DingTalkReceiver`` (entered),
    keyed by the channel's connection id; the robot's name is its token's prefix."""
    out = {}
    for conn_id, robot in robots.items():
        out[conn_id] = {"conn_type": "http", "host": robot.url, "password": robot.token,
                        "extra": {"secret": robot.secret}}
    return out


def acknowledge(af: CeleryDeployment, fingerprint: str) -> dict:
    """Acknowledge an alert through the Storefence plugin's API on the API server (one host, the
    main home's), as the admin; the alert as the API returns it."""
    return af.client.request("POST", f"/storefence/api/alerts/{fingerprint}/ack")


ESCALATION = "storefence_escalation"
DOUBLE = "compound.spike_low_stock"  # the red double alert: straight to the director (L3)
LIVE_SOURCES = ("shop_api", "ads_api", "reviews_api")  # HTTP sources, served by the live shop
CYCLE = (*LIVE_SOURCES, "shop_exports")  # every extract DAG: a domain runs once all its sources' cycles are in
SHORT_LADDER = {"sla": "1m", "repeat": "1m"}  # include/rules/routing.yaml has 30m and 4h


def short_ladder_routing(path, **escalation: str):
    """``include/rules/routing.yaml`` with its ``escalation`` options replaced (the SLA, every
    rule's own SLA too, and the repeat interval: minutes, not the file's 30m, 2h and 4h), written
    to ``path``; every home is given
    it as ``STOREFENCE_ROUTING`` (``alerting.routing.routing_path``)."""
    import yaml

    from tests.harness.celery_stack import REPO
    from threshold_operators.alerting.routing import load_routing

    doc = yaml.safe_load((REPO / "include" / "rules" / "routing.yaml").read_text(encoding="utf-8"))
    if "sla" in escalation:  # a rule's own SLA (the negative review's 2h) is shortened with the rest
        escalation = {"rules": {rule: escalation["sla"] for rule in doc["escalation"].get("rules") or {}},
                      **escalation}
    doc["escalation"] = {**doc["escalation"], **escalation}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_routing(path)  # validates it as every task will


def told_up_the_ladder(text: str, rule) -> bool:
    """Whether ``text`` (a message, a digest, a mail subject) carries an escalation or a repeat
    ("still firing") of ``rule``, in either language: the heads and titles of
    ``alerting.messages.alert_message``."""
    import re

    zh, en = re.escape(rule.name.zh), re.escape(rule.name.en)
    return bool(re.search(rf"【(升级|仍在告警)·[^】]*】{zh}|{zh} \((升级|仍在告警)\)"
                          rf"|\[[^\]]* (escalated|still firing)\] {en}|{en} \((escalated|still firing)\)", text))


def most_in_a_minute(accepted_at: list[float]) -> int:
    """The most messages accepted in any 60 seconds (a sliding window, stricter than the robot's
    calendar minute)."""
    times = sorted(accepted_at)
    return max((sum(1 for u in times[i:] if u < t + 60) for i, t in enumerate(times)), default=0)


def _utc(value):
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def _pick_control(store, routing, rules, acked: str):
    """A firing alert nobody acknowledged that the next escalation cycle would escalate: not muted,
    not a data gate, below its severity's ceiling, told now (red, or its team keeps no quiet hours);
    ``inventory.stock_cover`` first (the spiked SKU's stock), else any."""
    def escalates(a) -> bool:
        rule = rules.get(a.rule_id)
        if (a.fingerprint == acked or a.status != "firing" or a.muted or rule is None
                or not 0 < a.escalation_level < routing.ceiling(a.severity, a.rule_id)):
            return False
        team = routing.team_of(rule.owner)
        return a.severity == "red" or not routing.teams[team].quiet_hours

    candidates = [a for a in store.list(active_only=True) if escalates(a)]
    candidates.sort(key=lambda a: (a.rule_id != "inventory.stock_cover", a.severity != "red", a.rule_id))
    return candidates[0] if candidates else None


def wait_quiet(client, dag_ids: list[str], timeout: float = 600) -> None:
    """Until no run of ``dag_ids`` is queued or running (the DAGs stay unpaused: the scheduler
    leaves a paused DAG's running run as it is, for ever). TimeoutError naming the busy ones."""
    deadline = time.monotonic() + timeout
    while True:
        busy = [(d, r["dag_run_id"], r["state"]) for d in dag_ids
                for r in client.dag_runs(d, state=["queued", "running"])]
        if not busy:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"still busy after {timeout:.0f} s: {busy}")
        time.sleep(3)


def _outbox(store) -> list[dict]:
    """Every notification of the state store: (id, event, level, route, status, created_at, sent_at,
    rule_id, fingerprints)."""
    import sqlalchemy as sa

    from threshold_operators.alerting.store import notifications

    with store.engine.connect() as con:
        rows = con.execute(sa.select(notifications).order_by(notifications.c.id)).mappings().all()
    out = []
    for r in rows:
        data = (json.loads(r["payload"]) or {}).get("data") or {}
        out.append({"id": r["id"], "event": r["event"], "level": r["level"], "route": r["route"],
                    "status": r["status"], "created_at": _utc(r["created_at"]), "sent_at": _utc(r["sent_at"]),
                    "rule_id": data.get("rule_id"), "fingerprints": data.get("fingerprints") or []})
    return out


def test_extract_alert_delivery_to_strict_dingtalk_robots_across_workers(pg_server, redis_broker, pg_stores,
                                                                         tmp_path):
    """The live shop's formula spike, extracted on the ``fetch`` worker, loaded and evaluated on
    ``deliver-b``, told by the notify tasks on ``deliver-a`` and escalated by the escalation DAG on
    ``deliver-b``: two deliverers, one PostgreSQL outbox, strict DingTalk robots (20 a minute,
    signed). The escalation ladder is shortened to minutes by a routing file every home is given
    (``STOREFENCE_ROUTING``). Phase 1 (the escalation DAG paused): extract cycles over REST until
    the director's channel has the double alert, and one more. Phase 2: the double alert is
    acknowledged through the plugin's API on the API server; then the escalation DAG runs
    (unpaused, triggered over REST, at least twice, each time with the double alert's repeat
    overdue), alongside one more extract cycle. The acknowledged alert is never told again up the
    ladder, on any channel; a control alert nobody acknowledged is escalated; nothing arrives
    twice, nothing is refused, no robot gets more than 20 in any minute."""
    from tests.alerting.dingtalk_receiver import DingTalkReceiver
    from tests.deploy.test_live_end_to_end import (
        BEHIND,
        DINGTALK,
        DIRECTOR_MOBILE,
        SPEED,
        _body_text,
        afternoon_zone,
    )
    from threshold_operators.alerting.local_inbox import LocalInbox, inbox_connections
    from threshold_operators.alerting.store import StateStore
    from threshold_operators.deploy.stack import free_port
    from threshold_operators.rules.catalogue import load_catalogue
    from threshold_operators.simulator.live import LiveShopServer, prepare_live_shop
    from threshold_operators.warehouse.hook import WarehouseHook

    t0 = time.monotonic()
    warehouse_schema, state_schema = pg_stores
    storage, drops, live_home = tmp_path / "shared-storage", tmp_path / "shared-drops", tmp_path / "live"
    for folder in (storage, drops, live_home):
        folder.mkdir()
    routing_file = tmp_path / "routing.yaml"
    routing = short_ladder_routing(routing_file, **SHORT_LADDER)
    repeat = routing.escalation.repeat
    rules = {rid: r.rule for rid, r in load_catalogue().rules.items()}
    double = rules[DOUBLE]
    config, env = shared_storage(storage)
    config = {**config, ("storefence", "drops_root"): str(drops)}  # shop_exports' drop folder, on every worker
    env = {**env, "STOREFENCE_ROUTING": str(routing_file)}

    # As the LocalExecutor test: the spike starts half an hour before an hour boundary the shop's
    # clock passes while it catches up (30x), in a zone where that is the shop's afternoon.
    w0 = datetime.now(UTC)
    d0 = w0 - BEHIND
    boundary = (d0 + timedelta(minutes=30)).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    incident_at = boundary - timedelta(minutes=30)
    shops = {}

    def prepare(stack):  # after the set-up made the PostgreSQL warehouse's tables
        shops["live"] = prepare_live_shop(
            live_home, speed=SPEED, behind=BEHIND, hours_ahead=timedelta(hours=3), skus=80, days=52,
            orders_per_day=1500, timezone=afternoon_zone(incident_at), now=w0, incident_at=incident_at,
            warehouse=WarehouseHook(url=PG_ADMIN_URL, search_path=warehouse_schema))

    robots = {conn: DingTalkReceiver(token=f"{name}-token", secret=f"SEC-{name}") for conn, name in DINGTALK.items()}
    shop_port = free_port()
    store = StateStore(url=PG_ADMIN_URL, schema=state_schema)  # the test's own reader of the one outbox
    phases: dict[str, float] = {}
    cycles, states, director, ack, control, escalations, where = 0, {}, [], None, None, [], []
    escalation_sent = 0
    at_ack: dict[str, int] = {}
    with LocalInbox() as inbox:
        for robot in robots.values():
            robot.__enter__()
        try:
            connections = {**postgres_stores(warehouse_schema, state_schema),
                           **inbox_connections(inbox.url, inbox.smtp_port, routing, rules.values()),
                           **dingtalk_connections(robots),
                           **{f"{s}_default": {"conn_type": "http", "host": "127.0.0.1", "port": shop_port}
                              for s in LIVE_SOURCES}}
            with running_celery(tmp_path / "airflow", PG_ADMIN_URL, redis_broker, workers=DELIVERY_WORKERS,
                                routes=DELIVERY_ROUTES, default_queue="deliver-b", connections=connections,
                                extra_config=config, extra_env=env, prepare=prepare) as af, \
                    LiveShopServer(live_home, port=shop_port):
                phases["started"] = time.monotonic() - t0
                c = af.client
                dags = [d["dag_id"] for d in c.dags("storefence_%")]
                for dag_id in dags:
                    if dag_id.startswith(("storefence_extract_", "storefence_alerts_")):
                        c.unpause(dag_id)

                def cycle() -> dict[str, str]:
                    runs = {s: c.trigger(f"storefence_extract_{s}")["dag_run_id"] for s in CYCLE}
                    return {s: c.wait_ended(f"storefence_extract_{s}", run_id) for s, run_id in runs.items()}

                # --- phase 1: the escalation DAG paused; the notify tasks (deliver-a) tell ----------
                deadline = time.monotonic() + 20 * 60
                while time.monotonic() < deadline and not director:  # phase 2 runs one more cycle
                    cycles += 1
                    states[cycles] = cycle()
                    phases[f"cycle {cycles}"] = time.monotonic() - t0
                    print(f"cycle {cycles} {states[cycles]} at {phases[f'cycle {cycles}']:.0f} s", flush=True)
                    director = [m for m in robots["dingtalk_ops"].received
                                if DIRECTOR_MOBILE in (m.get("at") or {}).get("atMobiles", [])
                                and double.name.zh in _body_text(m)]
                wait_quiet(c, dags)  # the last cycle's alert DAGs have told what they found
                phases["phase 1"] = time.monotonic() - t0
                double_alerts = [a for a in store.list(active_only=True) if a.rule_id == DOUBLE]

                # --- phase 2: acknowledge on the API server; the escalation DAG (deliver-b) runs -----
                if director and double_alerts:
                    red = double_alerts[0]
                    control = _pick_control(store, routing, rules, red.fingerprint)
                    at_ack = {conn: len(r.received) for conn, r in robots.items()} | {
                        "inbox http": len(inbox.http), "inbox mail": len(inbox.mail)}
                    ack = acknowledge(af, red.fingerprint)
                    acked_at = datetime.now(UTC)
                    c.unpause(ESCALATION)
                    for n in range(5):  # at least twice; until the control was escalated
                        due = [_utc(store.get(red.fingerprint).notified_at) + repeat]  # overdue: only the ack holds it
                        if control is not None:
                            due.append(_utc(control.escalated_at or control.opened_at) + routing.sla_of(control.rule_id))
                        wait = (max(due) + timedelta(seconds=5) - datetime.now(UTC)).total_seconds()
                        assert wait < 600, f"the short ladder is not short: {wait:.0f} s to wait ({control})"
                        time.sleep(max(0.0, wait))
                        run_id = c.trigger(ESCALATION)["dag_run_id"]
                        extract = cycle() if n == 0 else {}  # the notify tasks deliver alongside (deliver-a)
                        state = c.wait_ended(ESCALATION, run_id)
                        result = c.xcom(ESCALATION, run_id, "escalate_and_deliver") if state == "success" else None
                        escalations.append((run_id, state, result, extract))
                        if control is None:
                            # the double alert may fire in the first cycle, before the stock rule's
                            # own alert is red (a yellow one during the purchasing team's quiet hours
                            # is no control): pick it once the cycle after the ack has told it
                            control = _pick_control(store, routing, rules, red.fingerprint)
                        elif n >= 1 and store.get(control.fingerprint).escalation_level > control.escalation_level:
                            break
                        time.sleep(20)
                wait_quiet(c, dags)  # a scheduled run may start later: only runs that ended are checked
                time.sleep(5)  # the last deliveries' answers
                phases["phase 2"] = time.monotonic() - t0
                runs = {dag_id: c.dag_runs(dag_id) for dag_id in dags}
                # what every escalation run delivered: once unpaused, its schedule (every 2 minutes)
                # runs it too, and a scheduled run may deliver what a triggered one would have
                escalation_sent = sum((c.xcom(ESCALATION, run["dag_run_id"], "escalate_and_deliver") or {}).get("sent", 0)
                                      for run in runs.get(ESCALATION, []) if run["state"] == "success")
                for dag_id, dag_runs in runs.items():
                    for run in dag_runs:
                        for ti in c.task_instances(dag_id, run["dag_run_id"]):
                            if ti.get("hostname"):
                                worker = af.worker_of(ti["hostname"])
                                where.append((dag_id, run["dag_run_id"], ti["task_id"], ti.get("map_index", -1),
                                              ti.get("queue"), getattr(worker, "queue", None), ti["state"], run["state"]))
                outbox = _outbox(store)
                final = {a.fingerprint: a for a in store.list()}
        finally:
            for robot in robots.values():
                robot.__exit__(None, None, None)
    shop = shops.get("live")
    print(f"\nstack start {phases.get('started', 0):.0f} s, phase 1 ({cycles} cycles) to {phases.get('phase 1', 0):.0f} s, "
          f"phase 2 to {phases.get('phase 2', 0):.0f} s; test {time.monotonic() - t0:.0f} s")

    def texts(since: dict[str, int] | None = None) -> list[tuple[str, str]]:
        """(where, text) of everything the robots and the inbox accepted (since the counts ``since``)."""
        since = since or {}
        out = [(conn, _body_text(m)) for conn, r in robots.items() for m in r.received[since.get(conn, 0):]]
        out += [(f"inbox {h['channel']}", json.dumps(h["body"], ensure_ascii=False))
                for h in inbox.http[since.get("inbox http", 0):]]
        out += [("inbox mail", str(m.get("subject", ""))) for m in inbox.mail[since.get("inbox mail", 0):]]
        return out

    lines = [f"{cycles} extract cycles {states}; incident {shop.incident if shop else None}",
             f"acknowledged {json.dumps(ack, default=str)}",
             f"control {control}", "escalation runs:"]
    lines += [f"   {run_id} {state} {result} extract {extract}" for run_id, state, result, extract in escalations]
    for conn, robot in robots.items():
        lines.append(f"{conn}: {len(robot.received)} accepted ({at_ack.get(conn, '-')} before the ack), "
                     f"refused {robot.refused}, at most {most_in_a_minute(robot.accepted_at)} in a minute")
        lines += [f"   {_body_text(m).splitlines()[0][:120]}" for m in robot.received[:25]]
    lines.append(f"inbox: {Counter(h['channel'] for h in inbox.http)}; mail {len(inbox.mail)}")
    lines.append(f"outbox: {Counter((n['event'], n['status']) for n in outbox)}")
    lines += [f"   {n['id']} {n['event']} L{n['level']} {n['route']} {n['status']} {n['rule_id']} "
              f"created {n['created_at']:%H:%M:%S}" for n in outbox if n["event"] in ("escalated", "repeat")]
    report = "\n".join(lines)
    print(f"{' '.join(f'{k} {v:.0f} s' for k, v in phases.items())}\n{report}")

    # 1. the double alert reached the director's channel (told by a notify task: the escalation DAG was paused)
    assert director, f"the double alert never reached the director's channel\n{report}"
    assert all(s == "success" for run in [*states.values(), *(e[3] for e in escalations)] for s in run.values()), \
        f"an extract run did not succeed\n{report}"
    # every message once, nothing refused, within the robot's limit, with two deliverers
    for conn, robot in robots.items():
        seen = Counter(json.dumps(m, sort_keys=True, ensure_ascii=False) for m in robot.received)
        assert not [m for m, n in seen.items() if n > 1], f"{conn} got a message twice\n{report}"
        assert not robot.refused, f"{conn} refused {robot.refused}\n{report}"
        assert most_in_a_minute(robot.accepted_at) <= robot.per_minute, f"{conn} over its limit\n{report}"
    misplaced = [w for w in where if (w[4], w[5]) != (af.queue_for(w[2]),) * 2]
    assert not misplaced, f"tasks on the wrong worker (dag, run, task, map index, queue, worker, state, run's state): " \
                          f"{misplaced[:20]}\n{report}"
    ran = Counter((w[2], w[5]) for w in where if w[2] in ("notify", "escalate_and_deliver"))
    assert ran[("notify", "deliver-a")] and ran[("escalate_and_deliver", "deliver-b")], f"{ran}\n{report}"
    assert escalation_sent > 0, f"the escalation DAG (deliver-b) delivered nothing\n{report}"
    not_done = sorted({(w[0], w[1], w[2], w[6]) for w in where if w[7] in ("success", "failed") and w[6] != "success"})
    assert not not_done, f"task instances of ended runs that did not succeed: {not_done}\n{report}"

    # 2. the acknowledgement on the API server stops the double alert's ladder on every worker
    assert ack and ack["status"] == "acknowledged" and ack["acknowledged_by"] == "admin", report
    assert len(escalations) >= 2 and all(e[1] == "success" for e in escalations), report
    red = final[ack["fingerprint"]]
    assert red.status == "acknowledged" and red.escalation_level == 3, f"{red}\n{report}"
    again = [(where_, text[:200]) for where_, text in texts() if told_up_the_ladder(text, double)]
    assert not again, f"the acknowledged double alert was told again up the ladder: {again}\n{report}"
    queued = [n for n in outbox if n["rule_id"] == DOUBLE and n["event"] in ("escalated", "repeat")]
    assert not queued, f"the acknowledged double alert was queued again: {queued}\n{report}"
    # ... while the control, which nobody acknowledged, was escalated (and told) after the acknowledgement
    assert control is not None, f"no firing, unacknowledged alert below the director to compare with\n{report}"
    assert final[control.fingerprint].escalation_level > control.escalation_level, \
        f"the control was not escalated: {final[control.fingerprint]}\n{report}"
    escalated = [n for n in outbox if n["event"] == "escalated" and control.fingerprint in n["fingerprints"]]
    assert escalated and all(n["created_at"] > acked_at and n["status"] == "sent" for n in escalated), \
        f"the control's escalation in the outbox: {escalated}\n{report}"
    heard = [w for w, text in texts(at_ack) if told_up_the_ladder(text, rules[control.rule_id])]
    assert heard, f"nobody heard of the control's escalation\n{report}"
