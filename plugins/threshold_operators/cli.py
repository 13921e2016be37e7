"""The ``storefence`` command.

    storefence simulate   fill a warehouse with a simulated shop and its labelled incidents
    storefence shop-api   serve a simulated shop over HTTP, as a platform API would
    storefence live-shop  prepare | serve: a shop whose clock moves with real time (make up)
    storefence warehouse  init | upgrade | summary | docs
    storefence airflow-setup   migrate Airflow's metadata DB, the default connection, the pool, API secrets
    storefence demo       the main job on the embedded default (what `make demo` runs)
    storefence up | down  the pack on Airflow's own processes, in the background (`make up` / `make down`)
    storefence inbox      serve | tail: the local inbox of `storefence up`

Errors the user can fix (bad arguments, a missing connection) print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from threshold_operators.warehouse import WAREHOUSE_CONN_ID

DEMO = {"shops": 1, "skus": 500, "days": 400, "orders_per_day": 2000, "seed": 7}  # the demo shop


from threshold_operators.usage_error import UsageError  # noqa: E402 - re-exported: the command's one error


def _timestamp(value: str) -> datetime:
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {value!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _hook(args):
    from threshold_operators.warehouse.hook import WarehouseHook

    if getattr(args, "warehouse", None):
        return WarehouseHook(url=args.warehouse)
    return WarehouseHook(warehouse_conn_id=args.conn_id)


def _add_warehouse_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--warehouse", metavar="URL", help="SQLAlchemy URL (default: the Airflow connection)")
    p.add_argument("--conn-id", default=WAREHOUSE_CONN_ID, help=f"Airflow connection of the warehouse (default {WAREHOUSE_CONN_ID})")


def _add_simulation_args(p: argparse.ArgumentParser, defaults: dict) -> None:
    p.add_argument("--shops", type=int, default=defaults["shops"])
    p.add_argument("--skus", type=int, default=defaults["skus"], help="SKUs per shop")
    p.add_argument("--days", type=int, default=defaults["days"])
    p.add_argument("--orders-per-day", type=int, default=defaults["orders_per_day"], help="average orders a day per shop")
    p.add_argument("--seed", type=int, default=defaults["seed"])
    p.add_argument("--end", type=_timestamp, help="end of the window, exclusive (default: this hour, UTC)")
    p.add_argument("--incidents", default="default", help="default, none, or an incident YAML file")
    p.add_argument("--timezone", default="Asia/Shanghai", help="IANA timezone of the shops")


def _spec(args):
    from threshold_operators.simulator.run import SimulationSpec

    return SimulationSpec(shops=args.shops, skus=args.skus, days=args.days, orders_per_day=args.orders_per_day,
                          seed=args.seed, end=args.end, incidents=args.incidents, timezone=args.timezone)


def cmd_simulate(args) -> int:
    from threshold_operators.simulator.run import simulate

    hook = None if args.dry_run else _hook(args)
    target = "nowhere (dry run: rows are counted, not loaded)" if hook is None else hook.describe()
    print(f"Simulating {args.shops} shop(s) x {args.skus} SKUs x {args.days} days into {target} ...", flush=True)
    result = simulate(_spec(args), hook, labels_out=args.labels_out, replace=args.replace, progress=print)
    total = sum(result.rows.values())
    print(f"Wrote {total:,} rows ({result.order_lines:,} order lines) in {result.seconds:.1f} s "
          f"= {total / result.seconds:,.0f} rows/s; window {result.window_start:%Y-%m-%d %H:%M} .. {result.window_end:%Y-%m-%d %H:%M} UTC")
    if args.labels_out:
        print(f"Labels: {args.labels_out} ({len(result.labels['incidents'])} incidents)")
    return 0


def cmd_shop_api(args) -> int:
    from threshold_operators.shop_api.faults import FaultPolicy
    from threshold_operators.shop_api.server import serve

    source = args.source
    if not source:
        import tempfile
        from datetime import timedelta

        from threshold_operators.simulator.run import simulate
        from threshold_operators.warehouse.hook import WarehouseHook

        source = str(Path(tempfile.mkdtemp(prefix="storefence-shop-")) / "shop.duckdb")
        print(f"Simulating the shop into {source} ...", file=sys.stderr, flush=True)
        spec = _spec(args)
        spec.history_from = (args.as_of or spec.resolved_end()) - timedelta(days=2)  # exact as_of from then on
        simulate(spec, WarehouseHook(url=f"duckdb:///{source}"), labels_out=args.labels_out)
    faults = FaultPolicy(rate_limit=args.rate_limit, error_rate=args.error_rate, seed=args.seed)
    serve(source, host=args.host, port=args.port, faults=faults, token=os.environ.get("STOREFENCE_SHOP_API_TOKEN"), as_of=args.as_of)
    return 0


def _live_duration(value: str):
    """A duration (30m, 1h, 24h) or 0."""
    from datetime import timedelta

    return timedelta(0) if value.strip() == "0" else _duration(value)


def cmd_live_shop(args) -> int:
    """Prepare the live shop (platform file, warehouse history, state file) or serve it."""
    from threshold_operators.simulator import live

    if args.action == "serve":
        live.serve_live(args.state_file or airflow_home(), host=args.host, port=args.port,
                        token=os.environ.get("STOREFENCE_SHOP_API_TOKEN"))
        return 0
    shop = live.prepare_live_shop(
        airflow_home(), speed=args.speed, behind=args.behind, hours_ahead=args.hours_ahead, skus=args.skus,
        days=args.days, seed=args.seed, conn_id=args.conn_id, now=args.now, say=print)
    clock = shop.clock()
    caught = clock.caught_up_at
    print(f"Live shop ready in {shop.prepared_seconds:.1f} s: {airflow_home() / live.STATE_FILE}\n"
          f"  data time starts at {shop.d0:%Y-%m-%d %H:%M:%S} UTC, {clock.speed:g}x real time"
          + (f", real time from {caught:%H:%M:%S} UTC" if caught else "") + "\n"
          f"  incident {shop.incident['id']} on {shop.incident['sku']} ({shop.incident['shop_id']}): "
          f"{shop.incident['start']} to {shop.incident['end']} (data time), seen from "
          f"{clock.wall_time(datetime.fromisoformat(shop.incident['start'])):%H:%M:%S} UTC\n"
          f"  serve it with: storefence live-shop serve")
    return 0


def cmd_warehouse(args) -> int:
    if args.action == "docs":
        from threshold_operators.warehouse.schema import render_markdown

        print(render_markdown())
        return 0
    hook = _hook(args)
    if args.action == "init":
        from threshold_operators.warehouse.schema import create_schema

        created = create_schema(hook.engine)
        hook.engine.dispose()
        print(f"{hook.describe()}: created {', '.join(created) if created else 'nothing (schema complete)'}")
        return 0
    if args.action == "upgrade":
        from threshold_operators.warehouse.schema import create_schema, drop_time_key_indexes

        created = create_schema(hook.engine)
        rebuilt = drop_time_key_indexes(hook.engine)
        hook.engine.dispose()
        print(f"{hook.describe()}: created {', '.join(created) or 'nothing'}; rebuilt without their key index "
              f"{', '.join(rebuilt) or 'nothing (none held one)'}")
        return 0
    import yaml

    from threshold_operators.warehouse.summary import render, table_stats

    labels = yaml.safe_load(Path(args.labels).read_text(encoding="utf-8")) if args.labels else None
    print(render(table_stats(hook), labels, hook.describe()))
    return 0


def cmd_plans(args) -> int:
    """``plans load``: include/rules/plans.yaml into the table planned_events (its own rows only);
    ``plans list``: every planned event the rules read, from any source."""
    from threshold_operators import located_yaml
    from threshold_operators.rules.catalogue import rules_dir
    from threshold_operators.rules.plans import PLANS_FILE
    from threshold_operators.warehouse.planned_events import load_plans_file, read_planned_events

    hook = _hook(args)
    try:
        if args.action == "load":
            path = Path(args.file) if args.file else rules_dir() / PLANS_FILE
            try:
                n = load_plans_file(hook.engine, path, datetime.now(UTC))
            except located_yaml.ConfigFileError as exc:
                print("\n".join(exc.problems))
                print(f"{len(exc.problems)} problem(s) in {path}; the table was left as it was", file=sys.stderr)
                return 1
            print(f"{hook.describe()}: planned_events from {path}: {n} row(s) (source plans.yaml; other sources untouched)")
            return 0
        from threshold_operators.warehouse.schema import as_utc

        rows = read_planned_events(hook.engine)
        print(f"{'source':<12} {'event':<28} {'shop':<10} {'scope':<30} {'factor':>7}  start .. end (UTC)")
        for r in rows:
            scope = r["scope"] + (f" {r['scope_value']}" if r["scope_value"] else "")
            print(f"{r['source']:<12} {r['event_id']:<28} {r['shop_id']:<10} {scope:<30} {float(r['uplift']):>7.2f}  "
                  f"{as_utc(r['starts_at']):%Y-%m-%d %H:%M} .. {as_utc(r['ends_at']):%Y-%m-%d %H:%M}")
        print(f"{len(rows)} row(s)")
        return 0
    finally:
        hook.engine.dispose()


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()


def cmd_airflow_setup(args) -> int:
    """Idempotent: migrate the metadata DB, the default connection, the pool sized for the
    warehouse, strong API secrets (threshold_operators.airflow_home)."""
    from threshold_operators.airflow_home import set_up

    if args.pool_slots is not None and args.pool_slots < 1:
        raise UsageError(f"--pool-slots {args.pool_slots}: a pool needs at least one slot")
    for line in set_up(airflow_home(), args.pool_slots):
        print(line)
    return 0


def cmd_demo(args) -> int:
    """The main job on the embedded default: shop, API, extract DAGs, summary (threshold_operators.demo)."""
    from threshold_operators.demo import run_demo

    dags = Path(os.environ.get("AIRFLOW__CORE__DAGS_FOLDER") or Path(__file__).resolve().parents[2] / "dags")
    return run_demo(args.conn_id, args.end, dags, airflow_home())


def _rule_dirs(path: str | None) -> tuple[Path, Path]:
    """(rules folder, SQL folder) from a path to include/, include/rules/ or a rule file."""
    from threshold_operators.rules.catalogue import rules_dir, sql_dir

    if path is None:
        return rules_dir(), sql_dir()
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{path}: no such file or folder")
    if p.is_file():
        p = p.parent
    if (p / "rules").is_dir():
        return p / "rules", p / "sql"
    return p, p.parent / "sql"


def cmd_lint(args) -> int:
    """Validate every rule file and metric query; every problem with file, line and field."""
    from threshold_operators.rules.catalogue import load_catalogue

    rdir, sdir = _rule_dirs(args.path)
    dialects = ("duckdb", "postgres") if args.dialect == "all" else (args.dialect,)
    catalogue = load_catalogue(rdir, Path(args.sql_dir) if args.sql_dir else sdir, dialects)
    problems = catalogue.all_problems() + _routing_problems(rdir, catalogue) + _plans_problems(rdir)
    for line in problems:
        print(line)
    files = sorted({str(r.file) for r in catalogue.rules.values()})
    if problems:
        print(f"{len(problems)} problem(s); {len(catalogue.rules)} rule(s) valid in {len(files)} file(s)", file=sys.stderr)
        return 1
    from threshold_operators.bundle import include_digest

    print(f"{len(catalogue.rules)} rules in {len(files)} files: no problems ({', '.join(dialects)})")
    if (rdir / "routing.yaml").is_file():
        from threshold_operators.alerting.routing import load_routing

        print("escalation (routing.yaml):")
        for line in load_routing(rdir / "routing.yaml").ladder_summary():
            print(f"  {line}")
    if rdir.parent.name == "include" or rdir.name == "include":  # what every worker must read alike
        include = rdir.parent if rdir.name != "include" else rdir
        print(f"include/ digest {include_digest(include)} ({include}): the same on every worker")
    return 0


def _plans_problems(rdir: Path) -> list[str]:
    """plans.yaml (when the rules folder has one): valid (rules.plans)."""
    from threshold_operators import located_yaml
    from threshold_operators.rules.plans import PLANS_FILE, load_plans

    path = rdir / PLANS_FILE
    if not path.is_file():
        return []
    try:
        load_plans(path)
    except located_yaml.ConfigFileError as exc:
        return exc.problems
    return []


def _routing_problems(rdir: Path, catalogue) -> list[str]:
    """routing.yaml (when the rules folder has one): valid, and a team for every rule's owner."""
    from threshold_operators import located_yaml
    from threshold_operators.alerting.routing import load_routing

    path = rdir / "routing.yaml"
    if not path.is_file():
        return []
    try:
        routing = load_routing(path)
    except located_yaml.ConfigFileError as exc:
        return exc.problems
    problems = [f"{r.file}:{r.line_of('owner')}: owner: {r.rule.owner!r} is not a team of {path.name} "
                f"({', '.join(sorted(routing.teams))})" for r in catalogue.rules.values() if r.rule.owner not in routing.teams]
    _, lines = located_yaml.load(path)
    for part in ("rules", "start_at", "rule_ceiling"):  # the escalation's per-rule settings name real rules
        for rule_id in getattr(routing.escalation, part):
            if rule_id not in catalogue.rules:
                problems.append(f"{path}:{located_yaml.line_of(lines, ('escalation', part, rule_id))}: "
                                f"escalation.{part}.{rule_id}: no rule {rule_id!r} in the catalogue")
    for r in catalogue.rules.values():
        for i, action in enumerate(r.rule.actions):
            if action.conn_id not in routing.action_connections:
                problems.append(f"{r.file}:{r.line_of('actions', i, 'conn_id')}: actions.{i}.conn_id: {action.conn_id!r} "
                                f"is not declared under action_connections in {path.name} "
                                f"({', '.join(routing.action_connections) or 'none declared'})")
    return problems


def cmd_rules(args) -> int:
    """Print the rule files' JSON Schema, or list the catalogue."""
    import json

    if args.action == "schema":
        from threshold_operators.rules.model import rule_file_json_schema

        print(json.dumps(rule_file_json_schema(), indent=2, ensure_ascii=False))
        return 0
    from threshold_operators.rules.catalogue import load_catalogue

    catalogue = load_catalogue()
    for rid, loaded in sorted(catalogue.rules.items()):
        r = loaded.rule
        print(f"{rid:32} {r.mode:6} {r.entity:9} {r.grain:4} {r.owner:16} {r.name.zh} / {r.name.en}")
    for line in catalogue.all_problems():
        print(line, file=sys.stderr)
    return 1 if catalogue.all_problems() else 0


def cmd_evaluate(args) -> int:
    """Evaluate one rule over an explicit window and print what fires (no recording); a rule over
    a current state cycle by cycle, as live. With --labels, score every rule (or RULE) against
    labelled incidents."""
    if args.labels:
        from threshold_operators.analysis.commands import cmd_evaluate_labels

        return cmd_evaluate_labels(args, _hook)
    if not args.rule or args.start is None or args.end is None:
        raise UsageError("storefence evaluate RULE --start TS --end TS, or storefence evaluate --labels FILE")
    from threshold_operators.engine.compile import compile_rule
    from threshold_operators.engine.evaluate import evaluate_cycles, warehouse_query
    from threshold_operators.rules.catalogue import load_catalogue

    catalogue = load_catalogue()
    if args.rule not in catalogue.rules:
        raise UsageError(f"unknown rule {args.rule!r}; `storefence rules list` shows the catalogue")
    loaded = catalogue.get(args.rule)
    hook = _hook(args)
    compiled, query = compile_rule(loaded, catalogue.get, source="query"), warehouse_query(hook)
    i = loaded.rule.conditions.index(loaded.rule.primary)
    cycles, prior = _cycles(loaded, compiled, query, args.start, args.end)
    for ev in evaluate_cycles(compiled, query, cycles, prior):
        print(f"{args.rule} {ev.window_start.isoformat()} .. {ev.window_end.isoformat()}: {ev.outcome}, "
              f"{ev.candidates} candidate rows, {ev.duration_ms} ms")
        for r in ev.results:
            d = r.row
            print(f"  {r.bucket.isoformat()} {r.state:8} {r.severity or '':6} {r.entity_key} "
                  f"value={d.get(f'v_{i}')} baseline={d.get(f'base_{i}')}")
    return 0


def _cycles(loaded, compiled, query, start, end) -> tuple[list, dict]:
    """The windows ``storefence evaluate`` prints and the prior of the first: one window, or for a
    rule over a current state the live cycles (every ``every``), after the cycles of its lead-in
    (persistence, the recovery hold) are evaluated unprinted, as the live check would have: what
    was firing before ``start`` is known, and its recovery shows."""
    from threshold_operators.analysis.backtest import windows
    from threshold_operators.engine.evaluate import evaluate_cycles
    from threshold_operators.engine.windows import lead_in

    if not loaded.current_state:
        return [(start, end)], {}
    prior: dict = {}
    for ev in evaluate_cycles(compiled, query, windows(loaded, start - lead_in(loaded.rule), start)):
        prior = ev.carry
    return windows(loaded, start, end), prior


def cmd_alerts(args) -> int:
    """List the alert state store's alerts (active ones unless --all)."""
    from threshold_operators.alerting.store import StateStore

    store = StateStore(url=args.state)
    store.create()
    for a in store.list(active_only=not args.all):
        ack = f" acked by {a.acknowledged_by}" if a.acknowledged_by else ""
        print(f"{a.fingerprint[:10]}  {a.status:12} {a.severity or '':6} L{a.escalation_level}  {a.rule_id:30} "
              f"{a.entity_key}{ack}")
    return 0


BACKTEST_ONLY = ("start", "end", "days", "episode", "set", "series", "warehouse")  # preview's --backtest options


def cmd_preview(args) -> int:
    """What each channel would send for a rule's latest evaluation (``alerting.preview``), or with
    ``--backtest`` for an episode of a backtest (``analysis.commands.cmd_preview_backtest``)."""
    from threshold_operators.alerting.preview import as_text, latest_alerts, preview
    from threshold_operators.alerting.routing import load_routing
    from threshold_operators.alerting.store import StateStore
    from threshold_operators.rules.catalogue import load_catalogue

    if args.backtest:
        if args.state:
            raise UsageError("--state reads the state store's alerts, --backtest replays the warehouse: give one")
        return _analysis("cmd_preview_backtest")(args)
    given = [f"--{name}" for name in BACKTEST_ONLY if getattr(args, name) is not None]
    given += ["--conn-id"] if args.conn_id != WAREHOUSE_CONN_ID else []
    if given:
        raise UsageError(f"{', '.join(given)}: only with --backtest (a backtest episode instead of the state store's "
                         "alerts)")
    catalogue = load_catalogue()
    if args.rule not in catalogue.rules:
        raise UsageError(f"unknown rule {args.rule!r}; `storefence rules list` shows the catalogue")
    store = StateStore(url=args.state)
    store.create()
    alerts = latest_alerts(store, args.rule)
    if not alerts:
        raise UsageError(f"{args.rule} has no alert in the state store yet: nothing to preview (its DAG, "
                         f"`storefence demo` or a live run records them)")
    shown = preview(catalogue.get(args.rule).rule, alerts, load_routing(), kind=args.channel, language=args.lang)
    if not shown:
        raise UsageError(f"the team of {args.rule} has no {args.channel} channel for these alerts' severity")
    print(as_text(shown))
    return 0


def cmd_ack(args) -> int:
    """Acknowledge an alert: its escalation stops until it gets worse."""
    from threshold_operators.alerting.escalation import acknowledge_alert
    from threshold_operators.alerting.store import StateStore

    store = StateStore(url=args.state)
    try:
        alert = acknowledge_alert(store, args.alert_id, args.by, datetime.now(UTC))
    except LookupError as exc:
        raise UsageError(str(exc)) from None
    print(f"{alert.fingerprint[:10]} {alert.rule_id} {alert.entity_key}: {alert.status} by {alert.acknowledged_by}")
    return 0


def _duration(value: str):
    from threshold_operators.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_silence(args) -> int:
    """Add, list or expire silences: keep quiet about matching alerts for a while."""
    from threshold_operators.alerting.mute import Silence
    from threshold_operators.alerting.store import StateStore

    store = StateStore(url=args.state)
    store.create()
    now = datetime.now(UTC)
    if args.action == "add":
        starts = args.starts or now
        ends = args.until or starts + args.duration
        if ends <= now:
            raise UsageError(f"the silence would end in the past ({ends:%Y-%m-%d %H:%M} UTC)")
        try:
            silence = Silence(args.by, args.reason, starts, ends, args.rule, args.entity, args.shop)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        from threshold_operators.alerting.escalation import apply_silence

        made = store.add_silence(silence, now)
        held = apply_silence(store, made, now)  # its firing alerts are held back at once, as from the page
        print(f"added {made.describe()}" + (f"; {len(held)} firing alert(s) silenced now" if held else ""))
    elif args.action == "list":
        for s in store.silences(None if args.all else now):
            state = "pending" if now < s.starts_at else "active" if s.active(now) else "expired"
            print(f"{state:8} {s.describe()}")
    elif not store.expire_silence(args.silence_id, now):
        raise UsageError(f"no unexpired silence has id {args.silence_id!r}; `storefence silence list` shows them")
    else:
        print(f"expired {args.silence_id}")
    return 0


def _analysis(name: str, needs_warehouse: bool = True):
    def run(args) -> int:
        from threshold_operators.analysis import commands

        fn = getattr(commands, name)
        return fn(args, _hook) if needs_warehouse else fn(args)

    return run


def _add_analysis_parsers(sub) -> None:
    """backtest, tune, report, test-rules (threshold_operators.analysis, docs/analysis.md)."""
    p = sub.add_parser("backtest", help="replay a rule over history (or a metric CSV): alert episodes and a summary")
    p.add_argument("rule")
    span = p.add_mutually_exclusive_group()
    span.add_argument("--start", type=_timestamp, help="default: 8 weeks before --end")
    span.add_argument("--days", type=int, metavar="N", help="the N days before --end, instead of --start")
    p.add_argument("--end", type=_timestamp, help="default: the last complete hour of landed data")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a rule field for this run "
                   "(repeatable), e.g. condition.threshold=1.5, for=2, min_volume.0.at_least=20")
    p.add_argument("--series", metavar="FILE.csv", help="a metric CSV (ts, optional entity, the rule's metrics) "
                                                        "instead of the warehouse")
    p.add_argument("--json", action="store_true", help="the documented JSON object (docs/analysis.md)")
    p.add_argument("--plot", metavar="FILE", help="draw the metric, baseline, tiers and episodes: .png, .svg, .html")
    p.add_argument("--top", type=int, default=6, help="entities plotted (default 6)")
    _add_warehouse_args(p)
    p.set_defaults(func=_analysis("cmd_backtest"))

    p = sub.add_parser("tune", help="sweep one rule parameter: alerts a week, incidents caught, a recommendation")
    p.add_argument("rule")
    p.add_argument("--param", required=True, metavar="KEY", help="a --set key, e.g. condition.threshold")
    p.add_argument("--values", required=True, metavar="V1,V2,...")
    p.add_argument("--labels", metavar="FILE", help="labelled incidents: caught, missed, detection delay")
    p.add_argument("--max-alerts-per-week", type=float, default=1.0, help="the alert budget (default 1)")
    span = p.add_mutually_exclusive_group()
    span.add_argument("--start", type=_timestamp, help="default: 8 weeks before --end")
    span.add_argument("--days", type=int, metavar="N", help="the N days before --end, instead of --start")
    p.add_argument("--end", type=_timestamp)
    p.add_argument("--series", metavar="FILE.csv")
    p.add_argument("--json", action="store_true")
    _add_warehouse_args(p)
    p.set_defaults(func=_analysis("cmd_tune"))

    p = sub.add_parser("report", help="--shadow: what the shadow rules would have sent")
    p.add_argument("--shadow", action="store_true")
    p.add_argument("--since", type=_timestamp)
    p.add_argument("--until", type=_timestamp)
    p.add_argument("--json", action="store_true")
    _add_warehouse_args(p)
    p.set_defaults(func=_analysis("cmd_report"))

    p = sub.add_parser("test-rules", help="run the rule unit tests written as data (tests/rules/*.yaml)")
    p.add_argument("path", nargs="?", help="a test file or folder (default: tests/rules)")
    p.set_defaults(func=_analysis("cmd_test_rules", needs_warehouse=False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storefence", description="E-commerce threshold alerts on Apache Airflow.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="fill a warehouse with a simulated shop and labelled incidents")
    _add_warehouse_args(p)
    _add_simulation_args(p, DEMO)
    p.add_argument("--labels-out", metavar="FILE", help="write the incidents as they landed (YAML)")
    p.add_argument("--replace", action="store_true", help="empty the canonical tables first")
    p.add_argument("--dry-run", action="store_true", help="generate and count the rows without loading them")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("shop-api", help="serve a simulated shop over HTTP (paginated JSON per table)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--source", metavar="FILE.duckdb", help="serve this simulated DuckDB file (default: simulate one now)")
    _add_simulation_args(p, {**DEMO, "days": 60})
    p.add_argument("--labels-out", metavar="FILE")
    p.add_argument("--rate-limit", type=float, help="requests per second before 429 + Retry-After")
    p.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered with a 5xx")
    p.add_argument("--as-of", type=_timestamp, help="serve the shop as it was at this time")
    p.set_defaults(func=cmd_shop_api)

    p = sub.add_parser("live-shop", help="prepare | serve a simulated shop whose clock moves with real time")
    live = p.add_subparsers(dest="action", required=True)
    q = live.add_parser("prepare", help="simulate the platform file, seed the warehouse up to the live start, "
                                        "write $AIRFLOW_HOME/storefence-live-shop.json")
    q.add_argument("--speed", type=float, default=6.0, help="data seconds per second until real time (default 6)")
    q.add_argument("--behind", type=_live_duration, default="1h", help="how far behind real time data starts (default 1h)")
    q.add_argument("--hours-ahead", type=_live_duration, default="24h", help="data simulated beyond now (default 24h)")
    q.add_argument("--skus", type=int, default=200)
    q.add_argument("--days", type=int, default=60, help="window length; at least 50 days of history before the start")
    q.add_argument("--seed", type=int, default=7)
    q.add_argument("--conn-id", default=WAREHOUSE_CONN_ID, help=f"Airflow connection of the warehouse (default {WAREHOUSE_CONN_ID})")
    q.add_argument("--now", type=_timestamp, help="the wall time the clock starts at (tests)")
    q = live.add_parser("serve", help="serve the prepared live shop in the foreground; writes its url into the state file")
    q.add_argument("--port", type=int, default=0, help="0: any free port (default)")
    q.add_argument("--host", default="127.0.0.1")
    q.add_argument("--state-file", metavar="FILE", help="default $AIRFLOW_HOME/storefence-live-shop.json")
    p.set_defaults(func=cmd_live_shop)

    p = sub.add_parser("warehouse", help="init the schema, upgrade a file made by an earlier version, summarise "
                                         "the warehouse, print the schema docs")
    p.add_argument("action", choices=["init", "upgrade", "summary", "docs"])
    _add_warehouse_args(p)
    p.add_argument("--labels", metavar="FILE", help="with summary: list the incidents of this labels file")
    p.set_defaults(func=cmd_warehouse)

    p = sub.add_parser("plans", help="load include/rules/plans.yaml into planned_events, or list the planned events")
    p.add_argument("action", choices=["load", "list"])
    p.add_argument("--file", metavar="FILE", help="with load: the plans file (default: plans.yaml in the rules folder)")
    _add_warehouse_args(p)
    p.set_defaults(func=cmd_plans)

    p = sub.add_parser("lint", help="validate rule files and metric queries (file, line, field; exit 1 on a problem)")
    p.add_argument("path", nargs="?", help="include/, include/rules/ or a rule file (default: the pack's)")
    p.add_argument("--sql-dir", help="metric queries folder (default: the sql/ next to the rules)")
    p.add_argument("--dialect", choices=["all", "duckdb", "postgres"], default="all")
    p.set_defaults(func=cmd_lint)

    p = sub.add_parser("rules", help="list the rule catalogue, or print the rule files' JSON Schema")
    p.add_argument("action", choices=["list", "schema"])
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser("evaluate", help="evaluate one rule over a window and print what fires; with --labels, "
                                        "score the rules against labelled incidents")
    p.add_argument("rule", nargs="?")
    p.add_argument("--start", type=_timestamp)
    p.add_argument("--end", type=_timestamp)
    p.add_argument("--labels", metavar="FILE", help="labelled incidents (storefence simulate --labels-out): "
                                                    "caught, missed, false alerts a week, detection delay")
    p.add_argument("--state-every", type=_duration, metavar="DURATION",
                   help="with --labels: replay current-state rules evaluated more often (stock cover every 5 "
                        "minutes) at this cadence, e.g. 1h: 12 times fewer queries over a long range")
    p.add_argument("--json", action="store_true")
    _add_warehouse_args(p)
    p.set_defaults(func=cmd_evaluate)

    _add_analysis_parsers(sub)

    p = sub.add_parser("alerts", help="list the alerts in the state store")
    p.add_argument("--all", action="store_true", help="resolved ones too")
    p.add_argument("--state", metavar="URL", help="state store URL (default: the connection storefence_state)")
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("preview", help="what each channel would send for a rule's latest evaluation, "
                                       "or for an episode of a backtest (--backtest)")
    p.add_argument("rule", help="rule id, e.g. inventory.stock_cover")
    p.add_argument("--channel", metavar="KIND", help="only channels of this kind (dingtalk, wecom, email, sms, ...)")
    p.add_argument("--lang", choices=("zh", "en"), help="this language instead of each channel's own")
    p.add_argument("--state", metavar="URL", help="state store URL (default: the connection storefence_state)")
    b = p.add_argument_group("--backtest", "the first message of a backtest episode instead of the state store's "
                                           "alerts; the range, --set and --series as storefence backtest's")
    b.add_argument("--backtest", action="store_true", help="replay the rule over history (or --series) first")
    span = b.add_mutually_exclusive_group()
    span.add_argument("--start", type=_timestamp, help="default: 8 weeks before --end")
    span.add_argument("--days", type=int, metavar="N", help="the N days before --end, instead of --start")
    b.add_argument("--end", type=_timestamp, help="default: the last complete hour of landed data (of --series: its end)")
    b.add_argument("--episode", type=int, metavar="N", help="the Nth episode of the range, as listed (default: the latest)")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a rule field (repeatable), "
                                                                      "as storefence backtest --set")
    b.add_argument("--series", metavar="FILE.csv", help="a metric CSV instead of the warehouse (storefence backtest)")
    _add_warehouse_args(b)
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("ack", help="acknowledge an alert (stops its escalation)")
    p.add_argument("alert_id", help="the alert's fingerprint, or its first characters")
    p.add_argument("--by", default=os.environ.get("USER", "someone"), help="who takes it")
    p.add_argument("--state", metavar="URL", help="state store URL (default: the connection storefence_state)")
    p.set_defaults(func=cmd_ack)

    p = sub.add_parser("silence", help="add, list or expire silences (keep quiet about matching alerts)")
    silence = p.add_subparsers(dest="action", required=True)
    state_help = "state store URL (default: the connection storefence_state)"
    q = silence.add_parser("add", help="silence the alerts of matching rules and entities for a while")
    q.add_argument("--rule", required=True, help='glob on the rule id: "inventory.*", "*" for every rule')
    q.add_argument("--entity", default="*", help='glob on the entity key: "*sku=SKU-0042*" (default: all)')
    q.add_argument("--shop", help="only this shop id")
    q.add_argument("--reason", required=True)
    q.add_argument("--by", default=os.environ.get("USER", "someone"), help="who silences")
    end = q.add_mutually_exclusive_group(required=True)
    end.add_argument("--for", dest="duration", type=_duration, help="how long: 30m, 2h, 3d")
    end.add_argument("--until", type=_timestamp, help="when it ends (ISO 8601; UTC unless an offset is given)")
    q.add_argument("--starts", type=_timestamp, help="when it starts (default: now): a maintenance window")
    q.add_argument("--state", metavar="URL", help=state_help)
    q = silence.add_parser("list", help="list the silences not yet expired")
    q.add_argument("--all", action="store_true", help="expired ones too")
    q.add_argument("--state", metavar="URL", help=state_help)
    q = silence.add_parser("expire", help="end a silence now")
    q.add_argument("silence_id", metavar="ID")
    q.add_argument("--state", metavar="URL", help=state_help)
    p.set_defaults(func=cmd_silence)

    p = sub.add_parser("airflow-setup", help="migrate the metadata DB, create the pool and the default connection")
    p.add_argument("--pool-slots", type=int, default=None, metavar="N",
                   help="slots of the storefence_warehouse pool (default: 1 on DuckDB, "
                        "8 on PostgreSQL; a count set by hand is kept)")
    p.set_defaults(func=cmd_airflow_setup)

    p = sub.add_parser("demo", help="the main job on the embedded default")
    p.add_argument("--conn-id", default=WAREHOUSE_CONN_ID)
    p.add_argument("--end", type=_timestamp, help="end of the simulated window (default: this hour)")
    p.set_defaults(func=cmd_demo)

    from threshold_operators.deploy.up import add_parsers as _add_deploy_parsers

    _add_deploy_parsers(sub)  # up, down, inbox
    return parser


def main(argv: list[str] | None = None) -> int:
    from threshold_operators.executor import PerHostStorageError
    from threshold_operators.simulator.incidents import IncidentError
    from threshold_operators.simulator.run import SimulationError
    from threshold_operators.warehouse.hook import WarehouseConfigError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (WarehouseConfigError, PerHostStorageError, SimulationError, IncidentError, UsageError,
            FileNotFoundError) as exc:
        print(f"storefence {args.command}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a rule refused before it ran: a message, not a traceback
        from threshold_operators.engine.compile import RuleRefused
        from threshold_operators.rules.sql_template import TemplateProblem

        if not isinstance(exc, RuleRefused | TemplateProblem):
            raise
        print(f"storefence {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
