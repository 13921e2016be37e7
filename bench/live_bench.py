"""The pack on Airflow's own scheduler with the live shop, against the same cycle in one process.

Issue 12's benchmark. One run of the deployment ``make up`` starts (api-server, scheduler,
dag-processor; LocalExecutor; a PostgreSQL metadata database of its own, from the tests'
harness), its warehouse on PostgreSQL (a database of its own on 127.0.0.1:5432, the
``storefence_warehouse`` pool at 8 slots), the live shop on an accelerated clock (by default 2
hours behind at 5x: a cycle of at least 60 s stands for 5 data minutes, one extract interval),
every channel on loopback (the DingTalk channels to strict robots that note when they accepted
each message, the rest to the local inbox). The bench triggers the three API extracts through
the REST API, waits for them to end and for ``--interval`` seconds to pass, and again, for
``--cycles`` cycles; everything after the loads (the Asset-triggered alert DAGs, checks, notify,
delivery, escalation) is the scheduler's doing. Then it reads back, over REST and from the
warehouse:

(a) latency, in wall seconds, from a row's creation (its change-tracking time, a data time,
    converted to the wall time the live shop began to serve it: ``LiveClock.wall_time``)
    - to its load: the end of the first ``load_<table>`` task whose high-water mark reached it;
    - to the check that evaluated its bucket: the end of the first ``evaluate`` task of a
      domain with a rule reading the table whose evaluation window holds the row (hourly buckets: this
      includes waiting for the hour to complete, in accelerated time);
    - to the receiver, for each breach message a robot accepted (attributed to the notify task
      that was running when it arrived): from the landing of the data that completed the
      breaching bucket (the load that brought the last of the rule's tables past the bucket's
      end) and from the creation of the bucket's newest row;
(b) the wall time of each Asset-triggered alert-DAG run per domain (start to end), and per cycle
    from the last extract load's end to the end of the last alert-DAG run of that cycle;
(c) task instances finished per minute over the run, and the wait of each warehouse-pool task
    between ``scheduled_when`` (ready to run) and ``queued_when`` (a pool slot and an executor
    slot granted), split in two: the part during which every pool slot was held (a task holds
    one from ``queued_when`` to its end) is the wait for a pool slot, the rest a wait for one of
    the executor's slots; and on to ``start_date``.

The baseline is the same cycle in one process (``dag.test()``; a subprocess with an Airflow home
of its own on SQLite, the live shop, the robots and the inbox in-process, the warehouse on
PostgreSQL as well): the four extracts (the file drop's too, as under the scheduler), then every
alert domain, timed per cycle. The ratio is
the scheduler's cycle (the first of its extract runs started -> the last alert run of the cycle
ended; a triggered run can wait behind the extract's own 5-minute run, which is left out) over
the in-process one (medians). Targets are printed next to the figures.

    .venv/bin/python bench/live_bench.py                 # 20 cycles of >= 60 s, 5 in-process cycles
    .venv/bin/python bench/live_bench.py --quick         # a smoke run: 4 cycles, 2 in-process
    .venv/bin/python bench/live_bench.py --cycles 30 --interval 60 --speed 5 --behind 120
    .venv/bin/python bench/live_bench.py --from-raw /tmp/storefence-live-bench-raw.json  # figures again

Each run keeps its raw record (runs, task instances, evaluations, messages, row times) in
``$TMPDIR/storefence-live-bench-raw[-quick].json``.

Results: ``bench/results/live.json`` (``--quick``: ``live-quick.json``).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

PG_SERVER = os.environ.get("STOREFENCE_PG_SERVER", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
SOURCES = ("shop_api", "ads_api", "reviews_api")
FILE_DROP = "shop_exports"  # no files dropped; triggered with each cycle so that its event is in (AssetAll)
DINGTALK = {"dingtalk_ops": "ops", "dingtalk_purchasing": "purchasing", "dingtalk_customer_service": "cs",
            "dingtalk_tech": "tech"}
DIRECTOR_MOBILE = "13800000003"  # wang.fang, 运营总监 (include/rules/routing.yaml)
DOUBLE_ALERT = "爆单且库存告急"  # compound.spike_low_stock
POOL_SLOTS = 8
PARALLELISM = 4  # the harness's (deploy.stack.StackConfig.parallelism): the executor's slots
# Tables whose change-tracking column is when a row appeared; ad_spend and traffic carry the hour
# they describe instead, so they give no creation time.
EVENT_TABLES = ("orders", "order_items", "payments", "refunds", "complaints", "shipments", "inventory_snapshots",
                "reviews")
TARGETS = {"breach_to_receiver_p95_s": 300.0, "overhead_ratio": 2.0, "pool_wait_max_s": 10.0}
SHOP = {"skus": 80, "days": 52, "orders_per_day": 1500, "hours_ahead": timedelta(hours=3)}


# --- small pure pieces --------------------------------------------------------------------------
def ts(value) -> datetime | None:
    """An API or XCom timestamp (ISO 8601, 'Z' or offset) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0, "median": None, "p95": None, "max": None}
    return {"n": len(values), "median": round(statistics.median(values), 2), "p95": round(percentile(values, 95), 2),
            "max": round(max(values), 2)}


def afternoon_zone(moment: datetime) -> str:
    """A fixed-offset zone in which ``moment`` is between 15:00 and 16:00: the live incident falls in
    the shop's busy afternoon whatever the hour the bench runs (as in the end-to-end test)."""
    offset = (15 - moment.hour + 12) % 24 - 12
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


def first_reaching(marks: list[tuple[datetime, datetime]], t: datetime) -> datetime | None:
    """``marks``: (load end, high-water mark after it), by load end. The end of the first load whose
    mark reached ``t`` (the marks never go back, so a running maximum is searched)."""
    return next((end for end, mark in marks if mark is not None and mark >= t), None)


def rule_of(notify: dict) -> str:
    """The rule id of an instance of a domain's mapped ``notify`` task (named ``<rule id>: <outcome>``)."""
    return (notify.get("rendered_map_index") or "").split(":", 1)[0]


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of (start, end) intervals open at one instant."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def full_spans(intervals: list[tuple[datetime, datetime]], slots: int) -> list[tuple[datetime, datetime]]:
    """The spans during which at least ``slots`` of the (start, end) intervals were open at once. A slot
    freed and taken at the same instant leaves the pool full: arrivals count first."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], -e[1]))
    spans, now, since = [], 0, None
    for t, step in edges:
        now += step
        if now >= slots and since is None:
            since = t
        elif now < slots and since is not None:
            if t > since:
                spans.append((since, t))
            since = None
    return spans


def overlap_s(a: datetime, b: datetime, spans: list[tuple[datetime, datetime]]) -> float:
    """Seconds of [a, b] inside ``spans``."""
    return sum(max(0.0, (min(b, e) - max(a, s)).total_seconds()) for s, e in spans)


def body_text(body: dict) -> str:
    md = body.get("markdown") or {}
    return f"{md.get('title', '')}\n{md.get('text', '')}{(body.get('text') or {}).get('content', '')}"


def is_director_double_alert(body: dict) -> bool:
    return DIRECTOR_MOBILE in (body.get("at") or {}).get("atMobiles", []) and DOUBLE_ALERT in body_text(body)


def row_latencies(rows: dict[str, list[datetime]], loads: dict[str, list[tuple[datetime, datetime]]],
                  checks: list[dict], rule_tables: dict[str, tuple[str, ...]], wall_time) -> dict[str, list[float]]:
    """Per row (data time of creation, per table): seconds from visible to loaded and to checked.

    ``checks``: {"rule_id", "end", "window_start", "window_end"} of each evaluation that had a window;
    a row is checked by the first one of a rule reading its table whose window holds it."""
    by_table: dict[str, list[dict]] = {}
    for c in sorted(checks, key=lambda c: c["end"]):
        for table in rule_tables.get(c["rule_id"], ()):
            by_table.setdefault(table, []).append(c)
    out = {"to_load": [], "to_check": [], "not_loaded": 0, "not_checked": 0}
    for table, times in rows.items():
        marks = loads.get(table, [])
        for t in times:
            visible = wall_time(t)
            loaded = first_reaching(marks, t)
            if loaded is None:
                out["not_loaded"] += 1
                continue
            out["to_load"].append((loaded - visible).total_seconds())
            checked = next((c["end"] for c in by_table.get(table, [])
                            if c["window_start"] <= t < c["window_end"] and c["end"] >= loaded), None)
            if checked is None:
                out["not_checked"] += 1
            else:
                out["to_check"].append((checked - visible).total_seconds())
    return out


def bucket_landed(tables: tuple[str, ...], bucket_end: datetime,
                  loads: dict[str, list[tuple[datetime, datetime]]]) -> datetime | None:
    """When the data completing a bucket had landed: the latest, over the rule's fact tables, of the
    first load that brought the table past ``bucket_end`` (the engine evaluates a bucket once every
    table it reads has)."""
    ends = [first_reaching(loads.get(t, []), bucket_end) for t in tables if t not in ("shops", "products")]
    return None if not ends or None in ends else max(ends)


def connections(inbox: dict[str, dict], shop_port: int, robots: dict, warehouse_url: str) -> dict[str, dict]:
    """conn_id -> fields: the inbox's channels, the live shop's three sources, the DingTalk robots
    (token and signing secret) and the PostgreSQL warehouse."""
    from sqlalchemy.engine import make_url

    pg = make_url(warehouse_url)
    return {
        **inbox,
        **{f"{s}_default": {"conn_type": "http", "host": "127.0.0.1", "port": shop_port} for s in SOURCES},
        **{conn: {"conn_type": "http", "host": robots[conn].url, "password": f"{name}-token",
                  "extra": {"secret": f"SEC-{name}"}} for conn, name in DINGTALK.items()},
        "storefence_warehouse": {"conn_type": "postgres", "host": pg.host, "port": pg.port or 5432,
                                 "login": pg.username, "schema": pg.database},
    }


def stores_connections(warehouse_url: str, state_url: str) -> dict[str, dict]:
    """``storefence_warehouse`` and ``storefence_state`` on PostgreSQL, given to every process as
    environment connections (they must exist before the set-up, and on every Celery worker)."""
    from sqlalchemy.engine import make_url

    def pg(url: str) -> dict:
        u = make_url(url)
        return {"conn_type": "postgres", "host": u.host, "port": u.port or 5432, "login": u.username,
                "schema": u.database}

    return {"storefence_warehouse": pg(warehouse_url), "storefence_state": pg(state_url)}


# --- the deployment run ---------------------------------------------------------------------------
def scheduler_run(args, work: Path) -> dict:

    from tests.alerting.dingtalk_receiver import DingTalkReceiver
    from tests.harness.airflow_stack import running_airflow
    from tests.harness.celery_stack import connection_env, free_redis_db, running_celery
    from threshold_operators.alerting.local_inbox import LocalInbox, inbox_connections
    from threshold_operators.alerting.routing import load_routing
    from threshold_operators.deploy.metadata_db import drop_database, ensure_database
    from threshold_operators.rules.catalogue import load_catalogue
    from threshold_operators.simulator.live import STATE_FILE, LiveShopServer, prepare_live_shop
    from threshold_operators.warehouse.hook import WarehouseHook

    home = work / "shop"  # the live shop's files (the Airflow homes are the harness's)
    home.mkdir()
    database = f"sf_bench_live_{os.getpid()}"
    warehouse_url = ensure_database(args.pg_server, database)
    # the state store on PostgreSQL too (a database of its own): the one outbox of every worker
    state_database = f"sf_bench_state_{os.getpid()}"
    state_url = ensure_database(args.pg_server, state_database)
    stores = stores_connections(warehouse_url, state_url)
    w0 = datetime.now(UTC)
    behind = timedelta(minutes=args.behind)
    shops = {}

    def prepare(stack) -> None:
        t0 = time.perf_counter()
        shops["live"] = prepare_live_shop(
            home, speed=args.speed, behind=behind, hours_ahead=SHOP["hours_ahead"], skus=SHOP["skus"],
            days=SHOP["days"], orders_per_day=SHOP["orders_per_day"],
            timezone=afternoon_zone(w0 - behind + timedelta(minutes=5)), now=w0,
            warehouse=WarehouseHook(url=warehouse_url))
        print(f"live shop prepared in {time.perf_counter() - t0:.0f} s; warehouse {database} on PostgreSQL", flush=True)

    robots = {conn: DingTalkReceiver(token=f"{name}-token", secret=f"SEC-{name}") for conn, name in DINGTALK.items()}
    routing = load_routing()
    catalogue = load_catalogue()
    rules = [r.rule for r in catalogue.rules.values()]
    cycles: list[dict] = []
    t_start = time.monotonic()
    try:
        if args.executor == "celery":  # N workers taking turns at one queue, staging in a folder all reach
            broker = f"redis://127.0.0.1:6379/{free_redis_db()}"
            deployment = running_celery(work / "airflow", args.pg_server, broker,
                                        workers=tuple(f"w{i + 1}:default" for i in range(args.workers)), routes={},
                                        default_queue="default", connections=stores, prepare=prepare,
                                        extra_config={("storefence", "storage_url"): f"file://{work / 'storage'}"})
        else:
            (work / "airflow").mkdir()
            deployment = running_airflow(work / "airflow", args.pg_server, prepare=prepare,
                                         extra_env=connection_env(stores))
        with LocalInbox() as inbox, deployment as af, contextlib.ExitStack() as robots_up:
            for robot in robots.values():
                robots_up.enter_context(robot)
            print(f"Airflow up in {af.seconds_to_start:.0f} s at {af.stack.config.api_url}", flush=True)
            client = af.client
            with LiveShopServer(home / STATE_FILE) as api:
                clock = api.clock
                port = int(api.url.rsplit(":", 1)[1])
                conns = connections(inbox_connections(inbox.url, inbox.smtp_port, routing, rules), port, robots,
                                    warehouse_url)
                for conn_id, fields in conns.items():
                    client.put_connection({"connection_id": conn_id, **{k: (json.dumps(v) if k == "extra" else v)
                                                                       for k, v in fields.items()}})
                pool = client.request("PATCH", "/api/v2/pools/storefence_warehouse", json={
                    "pool": "storefence_warehouse", "slots": POOL_SLOTS, "include_deferred": False})
                print(f"pool storefence_warehouse: {pool['slots']} slots; warehouse connection -> {database}", flush=True)
                for dag in client.dags("storefence_%"):
                    client.unpause(dag["dag_id"])
                # unpausing an extract schedules its latest 5-minute interval at once: let those runs and
                # what they trigger end first, so that the first cycle is not queued behind them
                time.sleep(10)
                wait_quiet(client, timeout=900)
                bench_from = datetime.now(UTC)
                for n in range(args.cycles):
                    started = time.time()
                    runs = {s: client.trigger(f"storefence_extract_{s}")["dag_run_id"] for s in SOURCES}
                    # the file drop is a source of orders too: the domains wait for every source's cycle
                    drop = client.trigger(f"storefence_extract_{FILE_DROP}")["dag_run_id"]
                    states = {s: client.wait_ended(f"storefence_extract_{s}", r, timeout=900, poll=1) for s, r in runs.items()}
                    client.wait_ended(f"storefence_extract_{FILE_DROP}", drop, timeout=900, poll=1)
                    cycles.append({"cycle": n + 1, "triggered": datetime.fromtimestamp(started, UTC).isoformat(),
                                   "runs": runs, "states": states,
                                   "data_time": clock.data_time(datetime.now(UTC)).isoformat()})
                    print(f"cycle {n + 1}/{args.cycles}: extracts {states} in {time.time() - started:.0f} s; "
                          f"data time {clock.data_time(datetime.now(UTC)):%H:%M:%S}; "
                          f"DingTalk {sum(len(r.received) for r in robots.values())} accepted", flush=True)
                    time.sleep(max(0.0, started + args.interval - time.time()))
                wait_quiet(client, timeout=600)
                bench_to = datetime.now(UTC)
                print(f"quiet after {time.monotonic() - t_start:.0f} s; reading back the run", flush=True)
                collected = collect(client, bench_from, catalogue)
                # Airflow's scheduler logs a line on every loop in which a task waits for a full pool
                log = af.home / "logs" / "storefence-up" / "scheduler.log"
                collected["pool_full_log_lines"] = sum("open slots in pool" in line for line in
                                                       log.read_text(encoding="utf-8", errors="replace").splitlines()) \
                    if log.is_file() else None
                warehouse = read_warehouse(warehouse_url, shops["live"].d0)
            messages = [{"conn": conn, "at": datetime.fromtimestamp(at, UTC), "body": body}
                        for conn, robot in robots.items() for body, at in zip(robot.received, robot.accepted_at, strict=True)]
            refused = {conn: list(robot.refused) for conn, robot in robots.items() if robot.refused}
            inbox_count = {"http": len(inbox.http), "mail": len(inbox.mail)}
    finally:
        drop_database(args.pg_server, database)
        drop_database(args.pg_server, state_database)
    return {"shop": shops["live"], "clock": clock, "cycles": cycles, "bench_from": bench_from, "bench_to": bench_to,
            "messages": messages, "refused": refused, "inbox": inbox_count, "catalogue": catalogue,
            "seconds": time.monotonic() - t_start, **collected, **warehouse}


def wait_quiet(client, timeout: float) -> None:
    """Until no storefence DAG run is queued or running (the escalation DAG's own runs included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(client.dag_runs(d["dag_id"], state=["queued", "running"]) for d in client.dags("storefence_%")):
            return
        time.sleep(3)
    print(f"still busy after {timeout:.0f} s; reading what ended", flush=True)


def all_runs(client, dag_id: str) -> list[dict]:
    out, offset = [], 0
    while True:
        page = client.request("GET", f"/api/v2/dags/{dag_id}/dagRuns",
                              params={"limit": 100, "offset": offset, "order_by": "run_after"})
        out += page["dag_runs"]
        offset += len(page["dag_runs"])
        if not page["dag_runs"] or offset >= page["total_entries"]:
            return out


def collect(client, since: datetime, catalogue) -> dict:
    """Every storefence run since ``since`` with its task instances; each rule's evaluation (the XCom
    ``evaluations`` of its domain's ``evaluate`` task, which ended when the task did)."""
    runs, tis, evaluations = [], [], []
    for dag in client.dags("storefence_%"):
        for run in all_runs(client, dag["dag_id"]):
            if (ts(run.get("run_after")) or since) < since - timedelta(minutes=10):
                continue
            run_tis = client.task_instances(dag["dag_id"], run["dag_run_id"])
            runs.append(run)
            tis += run_tis
            if dag["dag_id"].startswith("storefence_alerts_"):
                for ti in run_tis:
                    if ti["task_id"] == "evaluate" and ti["state"] == "success":
                        try:
                            evs = client.xcom(dag["dag_id"], run["dag_run_id"], "evaluate", key="evaluations")
                        except Exception:  # noqa: BLE001 - a task that failed before pushing them
                            continue
                        evaluations += [{"dag_id": dag["dag_id"], "run_id": run["dag_run_id"],
                                         "task_id": ti["task_id"], "end": ts(ti["end_date"]), **ev}
                                        for ev in evs.values()]
    return {"runs": runs, "tis": tis, "evaluations": evaluations}


def read_warehouse(url: str, d0: datetime) -> dict:
    """The extract runs' high-water marks and the creation times of the rows of the live window."""
    import sqlalchemy as sa

    from threshold_operators.warehouse.schema import table_spec

    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            extract_runs = [dict(r._mapping) for r in con.execute(sa.text(
                "SELECT run_id, source, table_name, high_water_mark, rows_loaded, finished_at FROM extract_runs"))]
            rows = {}
            for table in EVENT_TABLES:
                column = table_spec(table).updated_field
                rows[table] = [ts(r[0]) for r in con.execute(sa.text(
                    f"SELECT {column} FROM {table} WHERE {column} >= :d0"), {"d0": d0})]  # noqa: S608 - schema names
    finally:
        engine.dispose()
    return {"extract_runs": extract_runs, "rows": rows}


# --- figures ---------------------------------------------------------------------------------------
def figures(r: dict) -> dict:
    clock, catalogue = r["clock"], r["catalogue"]
    tis = r["tis"]
    by_key = {(t["dag_id"], t["dag_run_id"], t["task_id"]): t for t in tis}
    # loads: table -> [(load end, high-water mark)], by load end
    loads: dict[str, list[tuple[datetime, datetime]]] = {}
    for x in r["extract_runs"]:
        ti = by_key.get((f"storefence_extract_{x['source']}", x["run_id"], f"load_{x['table_name']}"))
        if ti is None or not ti.get("end_date"):
            continue
        loads.setdefault(x["table_name"], []).append((ts(ti["end_date"]), ts(x["high_water_mark"])))
    for marks in loads.values():
        marks.sort(key=lambda m: m[0])
    rule_tables = {rid: lr.tables for rid, lr in catalogue.rules.items()}
    grains = {rid: lr.rule.grain_delta for rid, lr in catalogue.rules.items()}  # a 5-minute rule: its slice
    windows = [{"rule_id": e["rule_id"], "end": e["end"], "window_start": ts(e["window_start"]),
                "window_end": ts(e["window_end"])} for e in r["evaluations"]
               if e.get("window_start") and e.get("window_end") and e.get("outcome") not in ("error", "up_to_date")]
    rows = row_latencies(r["rows"], loads, windows, rule_tables, clock.wall_time)

    # breach messages: each accepted message, attributed to the notify task running when it arrived
    evaluation_of = {(e["dag_id"], e["run_id"], e["rule_id"]): e for e in r["evaluations"]}
    notifies = [t for t in tis if t["dag_id"].startswith("storefence_alerts_") and t["task_id"] == "notify"
                and t.get("start_date") and t.get("end_date")]
    breach_from_landing, breach_from_newest, other, unmatched = [], [], 0, 0
    newest_rows = {t: sorted(v) for t, v in r["rows"].items()}
    director = []
    for m in r["messages"]:
        if is_director_double_alert(m["body"]):
            director.append(m["at"].isoformat())
        text = body_text(m["body"])
        candidates = [t for t in notifies
                      if ts(t["start_date"]) <= m["at"] <= ts(t["end_date"]) + timedelta(seconds=2)]
        if not candidates:
            unmatched += 1  # the escalation DAG's (a retry, a reminder, an escalation)
            continue

        named = [t for t in candidates if (lr := catalogue.rules.get(rule_of(t)))
                 and (lr.rule.name.zh in text or lr.rule.name.en in text)]
        notify = (named or candidates)[0]
        rid = rule_of(notify)
        ev = evaluation_of.get((notify["dag_id"], notify["dag_run_id"], rid))
        if not ev or ev.get("outcome") != "breach" or not ev.get("breaches"):
            other += 1
            continue
        bucket = max(ts(b["bucket"]) for b in ev["breaches"])
        bucket_end = bucket + grains.get(rid, timedelta(hours=1))
        landed = bucket_landed(rule_tables.get(rid, ()), bucket_end, loads)
        if landed is not None:
            breach_from_landing.append((m["at"] - landed).total_seconds())
        newest = [times[bisect.bisect_left(times, bucket_end) - 1] for t in rule_tables.get(rid, ())
                  if (times := newest_rows.get(t)) and bisect.bisect_left(times, bucket_end) > 0
                  and times[bisect.bisect_left(times, bucket_end) - 1] >= bucket]
        if newest:
            breach_from_newest.append((m["at"] - clock.wall_time(max(newest))).total_seconds())

    # (b) alert-DAG runs per domain; per cycle, last load end -> last alert run end
    alert_runs = [x for x in r["runs"] if x["dag_id"].startswith("storefence_alerts_") and x.get("end_date")
                  and x.get("start_date")]
    per_domain: dict[str, list[float]] = {}
    for x in alert_runs:
        if x["run_type"] == "asset_triggered":
            per_domain.setdefault(x["dag_id"].removeprefix("storefence_alerts_"), []).append(
                (ts(x["end_date"]) - ts(x["start_date"])).total_seconds())
    cycle_rows = []
    triggers = [ts(c["triggered"]) for c in r["cycles"]] + [datetime.max.replace(tzinfo=UTC)]
    run_start = {(x["dag_id"], x["dag_run_id"]): ts(x.get("start_date")) for x in r["runs"]}
    for i, c in enumerate(r["cycles"]):
        load_ends = [ts(t["end_date"]) for s, run_id in c["runs"].items()
                     for t in tis if t["dag_id"] == f"storefence_extract_{s}" and t["dag_run_id"] == run_id
                     and t["task_id"].startswith("load_") and t.get("end_date")]
        # from the first of the cycle's extract runs to start: a run queued behind the DAG's own
        # 5-minute run (max_active_runs=1) starts when that one ends
        starts = [run_start.get((f"storefence_extract_{s}", run_id)) for s, run_id in c["runs"].items()]
        began = min([x for x in starts if x] or [triggers[i]])
        mine = [x for x in alert_runs if x["run_type"] == "asset_triggered"
                and triggers[i] <= ts(x.get("queued_at") or x["run_after"]) < triggers[i + 1]]
        if not load_ends or not mine:
            continue
        last_alert = max(ts(x["end_date"]) for x in mine)
        cycle_rows.append({"cycle": c["cycle"], "domains": sorted({x["dag_id"] for x in mine}),
                           "alert_runs": len(mine),
                           "queued_s": (began - triggers[i]).total_seconds(),
                           "extract_s": (max(load_ends) - began).total_seconds(),
                           "all_domains_s": (last_alert - max(load_ends)).total_seconds(),
                           "cycle_s": (last_alert - began).total_seconds()})

    # (c) tasks per minute; pool waits
    by_kind: dict[str, list[float]] = {}
    for t in tis:
        if t.get("start_date") and t.get("end_date") and ts(t["start_date"]) >= r["bench_from"]:
            tid = t["task_id"]
            kind = tid.split("_", 1)[0] if tid.startswith(("fetch_", "load_")) else tid.rsplit("_", 1)[-1]
            by_kind.setdefault(kind, []).append((ts(t["end_date"]) - ts(t["start_date"])).total_seconds())
    finished = [ts(t["end_date"]) for t in tis if t.get("end_date") and t["state"] in ("success", "failed")
                and ts(t["end_date"]) >= r["bench_from"]]
    span_min = (max(finished) - r["bench_from"]).total_seconds() / 60 if finished else float("nan")
    pool_tis = [t for t in tis if t.get("pool") == "storefence_warehouse" and t.get("start_date")]
    # Airflow counts a pool slot as held from queued to the end. The scheduler queues more tasks
    # than the LocalExecutor has workers (measured: 8 queued at once for 4 workers, each waiting
    # 6-11 s to start), so the pool can be "full" of tasks that wait for the executor, not for the
    # warehouse. A task waited for the pool when every slot was held by a RUNNING task (a bigger
    # pool would have let it run); the rest of its scheduled -> queued time it waited for one of
    # the executor's slots (parallelism), however Airflow counted the pool meanwhile.
    running = [(ts(t["start_date"]), ts(t["end_date"])) for t in pool_tis if t.get("end_date")]
    held = [(ts(t["queued_when"]), ts(t["end_date"])) for t in pool_tis if t.get("queued_when") and t.get("end_date")]
    full = full_spans(running, POOL_SLOTS)
    airflow_full = full_spans(held, POOL_SLOTS)
    waiting = [(ts(t["scheduled_when"]), ts(t["queued_when"])) for t in pool_tis
               if t.get("queued_when") and t.get("scheduled_when")]
    slot_wait = [overlap_s(a, b, full) for a, b in waiting]
    executor_wait = [(b - a).total_seconds() - w for (a, b), w in zip(waiting, slot_wait, strict=True)]
    counted_wait = [overlap_s(a, b, airflow_full) for a, b in waiting]
    to_start = [(ts(t["start_date"]) - ts(t["scheduled_when"] or t["queued_when"])).total_seconds() for t in pool_tis
                if t.get("scheduled_when") or t.get("queued_when")]
    longest = max(pool_tis, key=lambda t: (ts(t["queued_when"]) - ts(t["scheduled_when"])).total_seconds()
                  if t.get("queued_when") and t.get("scheduled_when") else -1, default=None)
    return {
        "latency_s": {
            "row_to_load": summary(rows["to_load"]),
            "row_to_check_end": summary(rows["to_check"]),
            "rows_not_loaded_in_run": rows["not_loaded"], "rows_not_checked_in_run": rows["not_checked"],
            "breach_message_from_landing": summary(breach_from_landing),
            "breach_message_from_newest_row": summary(breach_from_newest),
            "dingtalk_messages": len(r["messages"]), "messages_not_from_a_breach": other,
            "messages_from_escalation": unmatched,
        },
        "alert_run_s_per_domain": {d: summary(v) for d, v in sorted(per_domain.items())},
        "alert_runs_per_cycle_per_domain": round(sum(len(v) for v in per_domain.values())
                                                 / max(1, len(r["cycles"])) / max(1, len(per_domain)), 2),
        "cycle_s": {"extract": summary([c["extract_s"] for c in cycle_rows]),
                    "all_domains_after_extract": summary([c["all_domains_s"] for c in cycle_rows]),
                    "extract_and_all_domains": summary([c["cycle_s"] for c in cycle_rows])},
        "cycles": cycle_rows,
        "tasks": {"finished": len(finished), "minutes": round(span_min, 2),
                  # where a cycle's time goes: each kind of task's own run (start -> end, the
                  # task process's start-up, its API calls and the work itself)
                  "run_s_by_kind": {k: summary(v) for k, v in sorted(by_kind.items())},
                  "per_minute": round(len(finished) / span_min, 1) if finished else None,
                  "warehouse_pool_tasks": len(pool_tis),
                  # a wait for a pool slot needs the pool full; with parallelism below the pool's slots,
                  # scheduled -> queued is a wait for one of the executor's slots instead
                  "most_running_at_once": most_at_once([(ts(t["start_date"]), ts(t["end_date"])) for t in tis
                                                        if t.get("start_date") and t.get("end_date")]),
                  "most_running_in_pool_at_once": most_at_once([(ts(t["start_date"]), ts(t["end_date"]))
                                                                for t in pool_tis if t.get("end_date")]),
                  "pool_slots": POOL_SLOTS,
                  "slot_wait_s": summary(slot_wait), "pool_full_s": round(sum((b - a).total_seconds() for a, b in full), 1),
                  "pool_full_as_airflow_counts_s": round(sum((b - a).total_seconds() for a, b in airflow_full), 1),
                  "wait_while_airflow_counted_pool_full_s": summary(counted_wait),
                  "executor_slot_wait_s": summary(executor_wait), "scheduled_to_start_s": summary(to_start),
                  "longest_slot_wait": None if longest is None else {
                      k: longest.get(k) for k in ("dag_id", "dag_run_id", "task_id", "scheduled_when", "queued_when",
                                                  "start_date")}},
        "director_double_alert": director,
    }


# --- the in-process baseline ----------------------------------------------------------------------
def baseline_run(args, work: Path) -> dict:
    """The child process (a fresh interpreter: Airflow reads its settings at import) and its figures."""
    home = work / "in-process"
    home.mkdir()
    out = work / "in-process.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "STOREFENCE_HOME": str(REPO),
        "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    })
    subprocess.run([sys.executable, "-m", "threshold_operators.cli", "airflow-setup", "--pool-slots", str(POOL_SLOTS)],
                   env=env, check=True, capture_output=True, cwd=home)
    argv = [sys.executable, __file__, "--in-process-child", str(out), "--baseline-cycles", str(args.baseline_cycles),
            "--interval", str(args.interval), "--speed", str(args.speed), "--behind", str(args.behind),
            "--pg-server", args.pg_server]
    subprocess.run(argv, env=env, check=True, cwd=home)
    return json.loads(out.read_text(encoding="utf-8"))


def in_process_child(args) -> int:
    """Runs inside the baseline's own Airflow home: the live shop, then cycles of dag.test()."""
    import logging

    from airflow.dag_processing.dagbag import DagBag

    from tests.alerting.dingtalk_receiver import DingTalkReceiver
    from threshold_operators.alerting.local_inbox import LocalInbox, inbox_connections
    from threshold_operators.alerting.routing import load_routing
    from threshold_operators.deploy.metadata_db import drop_database, ensure_database
    from threshold_operators.rules.catalogue import load_catalogue
    from threshold_operators.simulator.live import STATE_FILE, LiveShopServer, prepare_live_shop
    from threshold_operators.warehouse.hook import WarehouseHook

    home = Path(os.environ["AIRFLOW_HOME"])
    database = f"sf_bench_inproc_{os.getpid()}"
    warehouse_url = ensure_database(args.pg_server, database)
    w0 = datetime.now(UTC)
    behind = timedelta(minutes=args.behind)
    cycles = []
    try:
        prepare_live_shop(home, speed=args.speed, behind=behind, hours_ahead=SHOP["hours_ahead"], skus=SHOP["skus"],
                          days=SHOP["days"], orders_per_day=SHOP["orders_per_day"],
                          timezone=afternoon_zone(w0 - behind + timedelta(minutes=5)), now=w0,
                          warehouse=WarehouseHook(url=warehouse_url))
        robots = {conn: DingTalkReceiver(token=f"{name}-token", secret=f"SEC-{name}") for conn, name in DINGTALK.items()}
        routing = load_routing()
        rules = [r.rule for r in load_catalogue().rules.values()]
        with LocalInbox() as inbox, LiveShopServer(home / STATE_FILE) as api, contextlib.ExitStack() as up:
            for robot in robots.values():
                up.enter_context(robot)
            port = int(api.url.rsplit(":", 1)[1])
            conns = connections(inbox_connections(inbox.url, inbox.smtp_port, routing, rules), port, robots,
                                warehouse_url)
            for conn_id, fields in conns.items():
                os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)
            dags_folder = REPO / "dags"
            with open(home / "dag-test.log", "w", encoding="utf-8") as log, \
                    contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                logging.disable(logging.INFO)
                extracts = DagBag(dag_folder=str(dags_folder / "storefence_extract.py"))
                alerts = [d for p in sorted(dags_folder.glob("storefence_alerts_*.py"))
                          for d in DagBag(dag_folder=str(p)).dags.values()]
                for n in range(args.baseline_cycles):
                    started = time.time()
                    states = {s: str(extracts.get_dag(f"storefence_extract_{s}").test().state) for s in (*SOURCES, FILE_DROP)}
                    extracted = time.time()
                    for dag in alerts:
                        dag.test()
                    ended = time.time()
                    cycles.append({"cycle": n + 1, "extract_s": extracted - started, "all_domains_s": ended - extracted,
                                   "cycle_s": ended - started, "states": states})
                    print(f"in-process cycle {n + 1}: {cycles[-1]}", file=sys.__stdout__, flush=True)
                    time.sleep(max(0.0, started + args.interval - time.time()))
                logging.disable(logging.NOTSET)
            accepted = sum(len(r.received) for r in robots.values())
    finally:
        drop_database(args.pg_server, database)
    Path(args.in_process_child).write_text(json.dumps({"cycles": cycles, "dingtalk_accepted": accepted}, indent=1),
                                           encoding="utf-8")
    return 0


# --- the raw record ----------------------------------------------------------------------------------
RAW_KEYS = ("cycles", "bench_from", "bench_to", "messages", "refused", "inbox", "seconds", "runs", "tis",
            "evaluations", "extract_runs", "rows", "pool_full_log_lines")


RUN_ARGS = ("cycles", "interval", "speed", "behind", "quick")


def write_raw(path: Path, run: dict, baseline: dict | None, load, load_after, args) -> None:
    doc = {k: run.get(k) for k in RAW_KEYS} | {"shop": run["shop"].to_json(), "baseline": baseline,
                                            "load": list(load), "load_after": list(load_after),
                                            "args": {k: getattr(args, k) for k in RUN_ARGS},
                                            "when": datetime.now(UTC).isoformat(timespec="seconds")}
    path.write_text(json.dumps(doc, default=str, ensure_ascii=False), encoding="utf-8")


def read_raw(path: Path):
    from threshold_operators.rules.catalogue import load_catalogue
    from threshold_operators.simulator.live import LiveShop

    doc = json.loads(path.read_text(encoding="utf-8"))
    shop = LiveShop.from_json(doc["shop"])
    run = {k: doc.get(k) for k in RAW_KEYS} | {"shop": shop, "clock": shop.clock(), "catalogue": load_catalogue()}
    run["bench_from"], run["bench_to"] = ts(run["bench_from"]), ts(run["bench_to"])
    run["messages"] = [m | {"at": ts(m["at"])} for m in run["messages"]]
    run["evaluations"] = [e | {"end": ts(e["end"])} for e in run["evaluations"]]
    run["rows"] = {t: [ts(x) for x in v] for t, v in run["rows"].items()}
    run["args"], run["when"] = doc.get("args") or {}, doc.get("when")  # the run's own settings and time
    return run, doc["baseline"], doc["load"], doc["load_after"]


# --- the report ------------------------------------------------------------------------------------
def fmt(s: dict | None, unit: str = "s") -> str:
    if not s or not s.get("n"):
        return "n=0"
    return f"median {s['median']:.1f} {unit}, p95 {s['p95']:.1f} {unit} (n={s['n']})"


def executor_label(args) -> str:
    executor = getattr(args, "executor", "local")
    return "LocalExecutor" if executor == "local" else f"CeleryExecutor, {args.workers} worker(s)"


def results_name(args) -> str:
    """live.json (LocalExecutor, against the in-process baseline), live-local.json (LocalExecutor
    without it: the scale-out bench's run), live-celery-<N>.json; -quick before .json for a smoke run."""
    if getattr(args, "executor", "local") != "local":
        stem = f"live-celery-{args.workers}"
    else:
        stem = "live-local" if getattr(args, "no_baseline", False) else "live"
    return f"{stem}{'-quick' if args.quick else ''}.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=20, help="extract cycles through the scheduler (default 20)")
    ap.add_argument("--interval", type=float, default=60, help="at least this many seconds from one cycle's start "
                                                               "to the next (default 60)")
    ap.add_argument("--speed", type=float, default=5.0, help="the live shop's clock: data seconds per wall second")
    ap.add_argument("--behind", type=float, default=120, help="minutes the shop starts behind the wall clock")
    ap.add_argument("--baseline-cycles", type=int, default=5, help="in-process cycles (dag.test())")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 4 cycles, 2 in-process, 40 s apart")
    ap.add_argument("--no-baseline", action="store_true", help="skip the in-process cycles")
    ap.add_argument("--pg-server", default=PG_SERVER, help="the PostgreSQL server (metadata DB and warehouse)")
    ap.add_argument("--executor", choices=("local", "celery"), default="local",
                    help="LocalExecutor (default), or CeleryExecutor with a Redis broker on 127.0.0.1:6379")
    ap.add_argument("--workers", type=int, default=1, help="Celery workers, each with a home of its own (default 1)")
    ap.add_argument("--from-raw", help="compute the figures from the raw record of an earlier run")
    ap.add_argument("--in-process-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.in_process_child:
        return in_process_child(args)
    if args.quick:
        args.cycles, args.baseline_cycles, args.interval = 4, 2, 40
    load = os.getloadavg()
    raw_path = Path(tempfile.gettempdir()) / f"storefence-{results_name(args).removesuffix('.json')}-raw.json"
    baseline = None
    if args.from_raw:  # the figures again from a run's raw record (no Airflow started)
        run, baseline, load, load_after = read_raw(Path(args.from_raw))
        for k, v in run["args"].items():
            setattr(args, k, v)
    print(f"live bench: {args.cycles} cycles of >= {args.interval:.0f} s, shop {args.behind:.0f} min behind at "
          f"{args.speed:g}x; {os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
          + (f" (the run of {run['when']}, from its raw record)" if args.from_raw else ""), flush=True)
    if not args.from_raw:
        with tempfile.TemporaryDirectory(prefix="sf-live-bench-") as tmp:
            work = Path(tmp)
            if not args.no_baseline:  # first: the shorter of the two, so that a failure costs little
                print(f"in-process baseline: {args.baseline_cycles} cycles of dag.test()", flush=True)
                baseline = baseline_run(args, work)
            run = scheduler_run(args, work)
        load_after = os.getloadavg()
        write_raw(raw_path, run, baseline, load, load_after, args)
        print(f"raw record: {raw_path} (--from-raw {raw_path} computes the figures again)", flush=True)
    result = figures(run)
    shop = run["shop"]
    sched_cycle = result["cycle_s"]["extract_and_all_domains"]
    base = {k: summary([c[k] for c in baseline["cycles"]]) for k in ("extract_s", "all_domains_s", "cycle_s")} \
        if baseline else None
    ratio = round(sched_cycle["median"] / base["cycle_s"]["median"], 2) \
        if base and sched_cycle["median"] and base["cycle_s"]["median"] else None
    pool_max = result["tasks"]["slot_wait_s"]["max"]
    p95 = result["latency_s"]["breach_message_from_landing"]["p95"]
    checks = {
        "breach_to_receiver_p95_s": {"target": f"<= {TARGETS['breach_to_receiver_p95_s']:.0f}", "measured": p95,
                                     "met": p95 is not None and p95 <= TARGETS["breach_to_receiver_p95_s"]},
        "overhead_ratio": {"target": f"<= {TARGETS['overhead_ratio']:g}", "measured": ratio,
                           "met": ratio is not None and ratio <= TARGETS["overhead_ratio"]},
        "pool_wait_max_s": {"target": f"<= {TARGETS['pool_wait_max_s']:.0f}", "measured": pool_max,
                            "met": pool_max is not None and pool_max <= TARGETS["pool_wait_max_s"]},
        "director_double_alert": {"target": "reached dingtalk_ops", "measured": len(result["director_double_alert"]),
                                  "met": bool(result["director_double_alert"])},
    }
    doc = {
        "when": run.get("when") or datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "load_before": [round(x, 2) for x in load],
                    "load_after": [round(x, 2) for x in load_after]},
        "setup": {"executor": executor_label(args), "metadata_db": "PostgreSQL", "warehouse": "PostgreSQL",
                  "state_store": "PostgreSQL",
                  "pool_slots": POOL_SLOTS, "cycles": args.cycles, "interval_s": args.interval, "speed": args.speed,
                  "behind_min": args.behind, "shop": {k: str(v) for k, v in SHOP.items()},
                  "incident": shop.incident, "run_seconds": round(run["seconds"], 1)},
        "targets": checks, **result,
        "in_process": None if baseline is None else {**base, "cycles": baseline["cycles"],
                                                     "dingtalk_accepted": baseline["dingtalk_accepted"]},
        "overhead_ratio": ratio, "refused": run["refused"], "inbox": run["inbox"],
        "pool_full_log_lines": run.get("pool_full_log_lines"),
    }
    lat, t = result["latency_s"], result["tasks"]
    print(f"\n== Storefence on the scheduler ({executor_label(args)}, PostgreSQL) with the live shop "
          f"({args.speed:g}x, {len(run['cycles'])} cycles)")
    print(f"(a) row created -> loaded          {fmt(lat['row_to_load'])}")
    print(f"    row created -> check ended     {fmt(lat['row_to_check_end'])}  "
          f"({lat['rows_not_checked_in_run']} rows' buckets not evaluated within the run)")
    print(f"    bucket landed -> DingTalk      {fmt(lat['breach_message_from_landing'])}   target p95 <= 300 s")
    print(f"    newest row -> DingTalk         {fmt(lat['breach_message_from_newest_row'])}")
    for d, s in result["alert_run_s_per_domain"].items():
        print(f"(b) alert run {d:<18} {fmt(s)}")
    print(f"    alert runs per domain and cycle {result['alert_runs_per_cycle_per_domain']}")
    print(f"    last load -> last alert run    {fmt(result['cycle_s']['all_domains_after_extract'])}")
    print(f"    extract + all domains          {fmt(sched_cycle)}")
    if base:
        print(f"    in-process (dag.test())        {fmt(base['cycle_s'])}  (extract {fmt(base['extract_s'])}, "
              f"alerts {fmt(base['all_domains_s'])})")
        print(f"    scheduler / in-process         x{ratio}   target <= 2x")
    print(f"(c) tasks finished per minute      {t['per_minute']} ({t['finished']} in {t['minutes']:.1f} min)")
    for kind, s in t["run_s_by_kind"].items():
        print(f"    one {kind:<12} task runs       {fmt(s)}")
    print(f"    pool slot wait                 {fmt(t['slot_wait_s'])}, max {pool_max} s   target <= 10 s "
          f"(scheduled while {POOL_SLOTS} running tasks held every slot: {t['pool_full_s']} s in all; at most "
          f"{t['most_running_in_pool_at_once']} pool tasks and {t['most_running_at_once']} tasks in all ran at once)")
    print(f"    pool full as Airflow counts it {t['pool_full_as_airflow_counts_s']} s (queued + running); a task's wait "
          f"meanwhile {fmt(t['wait_while_airflow_counted_pool_full_s'])}")
    print(f"    'open slots in pool' lines     {run.get('pool_full_log_lines')} in the scheduler's log")
    print(f"    executor slot wait             {fmt(t['executor_slot_wait_s'])} (scheduled -> queued otherwise: "
          f"parallelism {PARALLELISM})")
    print(f"    scheduled -> started (pool)    {fmt(t['scheduled_to_start_s'])}, max {t['scheduled_to_start_s']['max']} s")
    print(f"    director's double alert        {len(result['director_double_alert'])} message(s) on dingtalk_ops")
    print("targets: " + "; ".join(f"{k} {v['measured']} ({v['target']}): {'met' if v['met'] else 'NOT met'}"
                                  for k, v in checks.items()))
    print(f"load average before {load[0]:.2f}, after {load_after[0]:.2f} ({os.cpu_count()} CPUs)")
    out = REPO / "bench" / "results" / results_name(args)
    out.write_text(json.dumps(doc, indent=1, default=str, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"written {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
