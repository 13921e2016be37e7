"""How one 5-minute cycle of the whole catalogue grows with shops, on PostgreSQL (issue 14).

The PostgreSQL counterpart of ``bench/cycle_cost.py``, with the number of shops as the variable
(``--shops``, default 1, 10 and 100) at a fixed number of SKUs and orders a day per shop. For
each shop count the warehouse of ``bench/scale_warehouse.py`` is built in DuckDB (cached under
``bench/.cache/scale/``; ``--days`` of history, by default the least the catalogue needs: the
longest reach of any rule's window, lead-in and baselines, and the 35 days a ``rollup()``
reader gets) and copied into a fresh PostgreSQL schema ``sf_bench_shops_<n>_<random>``: the
real schema made by ``warehouse.schema.create_schema`` through a ``WarehouseHook`` with that
``search_path``, every table's rows moved with the pack's bulk loader (``append``, Arrow
batches read from DuckDB, a commit per batch; the loader keeps ``inventory_latest`` from the
snapshots and notes every slice in ``rollup_dirty``, as loads over the weeks would have), then
``VACUUM (ANALYZE)`` (what autovacuum would have done to tables loaded over weeks). Nothing is
kept in PostgreSQL between runs: leftover ``sf_bench_shops_*`` schemas are dropped at the
start, this run's at the end.

Then 5-minute slices after the build's END land into every schema, the shop counts
interleaved slice by slice (their order turning each slice), and for each:

- **load**: the slice's upserts with the bulk loader through the hook, one transaction, with
  the ``extract_runs`` rows and the high-water mark read after each table, as the extract's
  load does (``scale_warehouse.land_slice`` on the PostgreSQL URL), the slices noted for the
  rollups in the same transaction;
- **cycle**: every rule the cycle evaluates, domain by domain as each domain's ``evaluate``
  task runs them (``cycle_cost.domain_cycles`` on the PostgreSQL URL with the schema as
  ``search_path``), split into **rollups** (the marked slices recomputed), **evaluate** (gates,
  the rules' statements, their states recorded) and **sessions** (a hook's set-up and disposal);
- **floor**: one scan-aggregate of the newly landed slice of each fact table the rules read,
  plus reading the rollup rows their windows and baselines need (``cycle_cost.floor_of``), on a
  new connection (with ``jit = off``, as rules are evaluated);
- the **rule results** the cycle wrote (``rule_results`` rows, and firing entities per
  ``rule_evaluations``), which grow with the entities watched.

The first slices build the rollups and are left out (after them the rollup tables are
analysed, as autovacuum would have); the figures are medians over ``--slices`` typical cycles
(not on the hour), each shop count against 1 shop (the smallest given): cycle, load and floor
ratios, and the cycle per shop. At the end ``EXPLAIN (ANALYZE, BUFFERS)`` of the floor's
statements, the high-water marks' and each rollup's recomputation of the last slice, per shop
count (``--no-explain`` leaves it out).

    PYTHONPATH=$PWD/plugins STOREFENCE_HOME=$PWD .venv/bin/python bench/shop_scaling.py \\
        [--shops 1,10,100] [--skus-per-shop 200] [--orders-per-day 300] [--days N] [--slices 8] \\
        [--pg-url postgresql+psycopg2://postgres@127.0.0.1:5432/test]

Results: ``bench/results/shop_scaling.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
# the hook's note that rules run as a superuser (postgres, here), once per domain and cycle: not news
os.environ.setdefault("AIRFLOW__LOGGING__NAMESPACE_LEVELS", "airflow.task.hooks.threshold_operators=ERROR")

from cycle_cost import WARM_UP, cycle_rules, domain_cycles, floor_of, median  # noqa: E402
from scale_warehouse import FACT_TABLES, ScaleSpec, SliceSource, build, land_slice  # noqa: E402
from warehouses import PG_URL  # noqa: E402

SCHEMA_PREFIX = "sf_bench_shops_"
COPY_BATCH_ROWS = 200_000
FIGURES = ("load_s", "open_s", "rollups_s", "evaluate_s", "cycle_s", "floor_s", "result_rows", "firing")


def history_days(catalogue) -> int:
    """The least history (whole days before END) every rule's first cycles need: a rule's window
    (hourly ones start an ``every`` before the cycle's end), lead-in and baselines, and the days
    a ``rollup()`` reader is given."""
    from threshold_operators.engine.windows import history_needed
    from threshold_operators.rules.sql_template import ROLLUP_READ_DAYS

    reach = max([history_needed(loaded.rule) + loaded.rule.every for loaded in catalogue.rules.values()]
                + [timedelta(days=ROLLUP_READ_DAYS, minutes=5)])
    return math.ceil(reach / timedelta(days=1))


# --- PostgreSQL schemas ---------------------------------------------------------------------------

def admin_engine(url: str):
    import sqlalchemy as sa

    return sa.create_engine(url, isolation_level="AUTOCOMMIT")


def drop_leftovers(admin) -> list[str]:
    """Drop the ``sf_bench_shops_*`` schemas an earlier run left (killed before its clean-up)."""
    import sqlalchemy as sa

    with admin.connect() as con:
        names = con.execute(sa.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p ORDER BY 1"),
                            {"p": SCHEMA_PREFIX.replace("_", r"\_") + "%"}).scalars().all()
        for name in names:
            con.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    return list(names)


def schema_tables(admin, schema: str) -> list[str]:
    import sqlalchemy as sa

    with admin.connect() as con:
        return con.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = :s ORDER BY 1"),
                           {"s": schema}).scalars().all()


def vacuum_analyze(admin, schema: str, tables: list[str], vacuum: bool = True) -> float:
    import sqlalchemy as sa

    t = time.perf_counter()
    with admin.connect() as con:
        for table in tables:
            con.execute(sa.text(f'{"VACUUM (ANALYZE)" if vacuum else "ANALYZE"} "{schema}"."{table}"'))
    return time.perf_counter() - t


def schema_bytes(admin, schema: str) -> int:
    import sqlalchemy as sa

    with admin.connect() as con:
        return int(con.execute(sa.text(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind = 'r'"), {"s": schema}).scalar())


def copy_to_postgres(path: Path, url: str, schema: str, admin, batch_rows: int = COPY_BATCH_ROWS) -> dict:
    """The DuckDB warehouse at ``path`` into the (new, empty) ``schema``: the pack's schema, every
    table's rows by the bulk loader in Arrow batches (a commit each), then VACUUM (ANALYZE)."""
    import duckdb
    import pyarrow as pa
    import sqlalchemy as sa

    from threshold_operators.warehouse.bulk_load import bulk_loader
    from threshold_operators.warehouse.hook import WarehouseHook
    from threshold_operators.warehouse.schema import LATEST_OF, create_schema, metadata, table_spec

    started = time.perf_counter()
    with admin.connect() as con:
        con.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    hook = WarehouseHook(url=url, search_path=schema)
    per_table = {}
    try:
        create_schema(hook.engine)
        src = duckdb.connect(str(path), read_only=True)
        try:
            src.execute("SET TimeZone = 'UTC'")
            src.execute("SET enable_progress_bar = false")
            present = {r[0] for r in src.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            kept_by_loader = set(LATEST_OF.values())  # written by the loader with their history
            order = ["shops", "products", *FACT_TABLES]
            order += sorted(t for t in metadata.tables if t not in order)
            for table in order:
                if table not in present or table in kept_by_loader:
                    continue
                n = src.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]  # noqa: S608 - schema names
                if not n:
                    continue
                t = time.perf_counter()
                cols = ", ".join(table_spec(table).columns)
                reader = src.sql(f"SELECT {cols} FROM {table}").to_arrow_reader(batch_rows)  # noqa: S608
                with bulk_loader(hook) as loader:
                    for batch in reader:
                        loader.append(table, pa.Table.from_batches([batch]))
                        loader.commit()  # bounds what a transaction holds
                seconds = time.perf_counter() - t
                per_table[table] = {"rows": n, "seconds": round(seconds, 1), "rows_per_s": round(n / seconds)}
                print(f"    {table}: {n:,} rows in {seconds:.1f} s", flush=True)
        finally:
            src.close()
    finally:
        hook.engine.dispose()
    copied = time.perf_counter() - started
    vacuum = vacuum_analyze(admin, schema, schema_tables(admin, schema))
    rows = sum(v["rows"] for v in per_table.values())
    return {"schema": schema, "tables": per_table, "rows": rows, "copy_seconds": round(copied, 1),
            "rows_per_s": round(rows / copied), "vacuum_analyze_seconds": round(vacuum, 1),
            "bytes": schema_bytes(admin, schema)}


# --- what a cycle wrote, the floor, the plans ----------------------------------------------------

def pg_session(url: str, schema: str):
    """A new connection (no pool) in a transaction with the schema as search_path, UTC, no JIT."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(url, poolclass=NullPool)
    con = engine.connect()
    for sql in (f"SET LOCAL search_path TO {schema}", "SET LOCAL timezone = 'UTC'", "SET LOCAL jit = off"):
        con.exec_driver_sql(sql)
    return engine, con


def time_floor(url: str, schema: str, queries: dict[str, str]) -> tuple[float, dict[str, float]]:
    """The floor's statements in turn on a new connection, each fetched; total seconds (with the
    connection) and seconds per statement."""
    t = time.perf_counter()
    engine, con = pg_session(url, schema)
    each = {}
    try:
        for name, sql in queries.items():
            tt = time.perf_counter()
            con.exec_driver_sql(sql).fetchall()
            each[name] = time.perf_counter() - tt
        con.rollback()
    finally:
        con.close()
        engine.dispose()
    return time.perf_counter() - t, each


def cycle_results(url: str, schema: str, t1: datetime) -> dict:
    """What the cycle ending at ``t1`` recorded: rule_results rows, rules evaluated, entities firing."""
    import sqlalchemy as sa

    engine, con = pg_session(url, schema)
    try:
        rows = con.execute(sa.text("SELECT count(*) FROM rule_results WHERE window_end = :t"), {"t": t1}).scalar()
        ev = con.execute(sa.text("SELECT count(*), coalesce(sum(firing), 0), coalesce(sum(pending), 0), "
                                 "coalesce(sum(candidates), 0) FROM rule_evaluations WHERE window_end = :t"),
                         {"t": t1}).one()
        con.rollback()
    finally:
        con.close()
        engine.dispose()
    return {"result_rows": int(rows), "evaluations": int(ev[0]), "firing": int(ev[1]), "pending": int(ev[2]),
            "candidates": int(ev[3])}


def _plan_nodes(node: dict, depth: int = 0) -> list[str]:
    what = node["Node Type"]
    if node.get("Relation Name"):
        what += f" on {node['Relation Name']}"
    if node.get("Index Name"):
        what += f" using {node['Index Name']}"
    bits = [f"rows {node.get('Actual Rows')}x{node.get('Actual Loops')}", f"{node.get('Actual Total Time', 0):.1f} ms"]
    if node.get("Rows Removed by Filter"):
        bits.append(f"removed by filter {node['Rows Removed by Filter']}")
    if node.get("Heap Fetches"):
        bits.append(f"heap fetches {node['Heap Fetches']}")
    blocks = (node.get("Shared Hit Blocks") or 0) + (node.get("Shared Read Blocks") or 0)
    if blocks:
        bits.append(f"{blocks} blocks")
    out = ["  " * depth + f"{what} ({', '.join(bits)})"]
    for child in node.get("Plans", []):
        out += _plan_nodes(child, depth + 1)
    return out


def explain(url: str, schema: str, statements: dict[str, tuple[str, dict]]) -> dict:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of each statement (SQL, parameters): execution ms and the plan's nodes."""
    import sqlalchemy as sa

    out = {}
    for name, (sql, params) in statements.items():
        engine, con = pg_session(url, schema)
        try:
            query = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql
            plan = (con.execute(sa.text(query), params) if params else con.exec_driver_sql(query)).scalar()
            con.rollback()
        except Exception as exc:  # a plan that cannot be had is reported, not fatal
            out[name] = {"error": str(exc).splitlines()[0]}
            continue
        finally:
            con.close()
            engine.dispose()
        top = plan[0] if isinstance(plan, list) else json.loads(plan)[0]
        out[name] = {"execution_ms": round(top["Execution Time"], 2), "planning_ms": round(top["Planning Time"], 2),
                     "plan": _plan_nodes(top["Plan"])}
    return out


def plan_statements(catalogue, rules, t0: datetime, t1: datetime) -> dict[str, tuple[str, dict]]:
    """The floor's statements, each fact table's high-water mark (as a load reads it) and each
    rollup's recomputation of the slice [t0, t1) (what maintenance reads for a newly landed slice)."""
    from threshold_operators.engine.rollups import rollups_needed
    from threshold_operators.warehouse.schema import table_spec

    out = {name: (sql, {}) for name, sql in floor_of(catalogue, rules, t0, t1).items()}
    for table in FACT_TABLES:
        cursor = table_spec(table).updated_field
        out[f"high_water_mark:{table}"] = (f"SELECT MAX({cursor}) FROM {table}", {})  # noqa: S608 - schema names
    seen = set()
    for loaded in rules:
        for rollup, _rule in rollups_needed(loaded, catalogue):
            if rollup.name not in seen:
                seen.add(rollup.name)
                out[f"recompute:{rollup.name}"] = (rollup.sql_over(1), rollup.bind(t0, t1))
    return out


# --- the run -------------------------------------------------------------------------------------

def slices_to_land(spec: ScaleSpec, typical: int) -> int:
    """Slices after END to land: the warm-up, then ``typical`` that are not on the hour."""
    k = n = 0
    while n < typical:
        k += 1
        if k > WARM_UP and spec.slice_bounds(k - 1)[1].minute != 0:
            n += 1
    return k


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shops", default="1,10,100", help="shop counts to compare (comma-separated)")
    ap.add_argument("--skus-per-shop", type=int, default=200)
    ap.add_argument("--orders-per-day", type=int, default=300, help="per shop, on an average day")
    ap.add_argument("--days", type=int, default=None, help="history before END (default: the least the catalogue needs)")
    ap.add_argument("--slices", type=int, default=8, help="typical cycles measured (after the warm-up)")
    ap.add_argument("--pg-url", default=PG_URL)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--no-explain", action="store_true", help="leave out the EXPLAIN ANALYZE of the floor and rollups")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "shop_scaling.json")
    args = ap.parse_args()
    logging.getLogger("threshold_operators").setLevel(logging.ERROR)  # the per-rule info lines, the superuser note
    from threshold_operators.rules.catalogue import load_catalogue

    catalogue = load_catalogue()
    counts = sorted({int(n) for n in args.shops.split(",")})
    days = args.days or history_days(catalogue)
    started = time.time()
    admin = admin_engine(args.pg_url)
    left = drop_leftovers(admin)
    if left:
        print(f"dropped leftover schemas: {', '.join(left)}", flush=True)
    runs: dict[int, dict] = {}
    out: dict = {"benchmark": "shop_scaling", "when": datetime.now(UTC).isoformat(timespec="seconds"),
                 "warehouse": "postgresql", "pg_url": args.pg_url, "skus_per_shop": args.skus_per_shop,
                 "orders_per_day_per_shop": args.orders_per_day, "days": days, "warm_up_slices": WARM_UP,
                 "shops": {}}
    try:
        for n in counts:  # build (or find) each warehouse and copy it into a schema of its own
            spec = ScaleSpec(shops=n, skus=args.skus_per_shop, days=days, orders_per_day=args.orders_per_day)
            print(f"{n} shops: building (or finding) {n} x {spec.skus} SKUs x {days} days ...", flush=True)
            t = time.perf_counter()
            info = build(spec, args.cache_dir, log=lambda *a, **k: None)
            build_wall = time.perf_counter() - t
            print(f"  DuckDB {info.path.name}: {sum(info.rows.values()):,} rows, {info.size_bytes / 1e9:.2f} GB, "
                  f"{'cached' if info.cached else f'built in {info.build_seconds:.0f} s'}", flush=True)
            schema = f"{SCHEMA_PREFIX}{n}_{secrets.token_hex(3)}"
            runs[n] = {"spec": spec, "schema": schema, "samples": [], "source": None}
            copy = copy_to_postgres(info.path, args.pg_url, schema, admin)
            print(f"  copied into {schema}: {copy['rows']:,} rows in {copy['copy_seconds']:.0f} s "
                  f"({copy['rows_per_s']:,} rows/s), VACUUM (ANALYZE) {copy['vacuum_analyze_seconds']:.0f} s, "
                  f"{copy['bytes'] / 1e9:.2f} GB", flush=True)
            t = time.perf_counter()
            total = slices_to_land(spec, args.slices)
            runs[n]["source"] = SliceSource(spec, total)
            out["shops"][str(n)] = {"spec": spec.as_dict(), "duckdb": {
                "file": info.path.name, "rows": info.rows, "bytes": info.size_bytes, "cached": info.cached,
                "build_seconds": info.build_seconds, "build_wall_seconds": round(build_wall, 1)},
                "postgres": copy, "slice_source_seconds": round(time.perf_counter() - t, 1)}
        total = slices_to_land(runs[counts[0]]["spec"], args.slices)
        for k in range(total):
            turn = counts[k % len(counts):] + counts[:k % len(counts)]  # who goes first turns each slice
            for n in turn:
                run = runs[n]
                spec, schema = run["spec"], run["schema"]
                t0, t1 = spec.slice_bounds(k)
                now = t1 + timedelta(minutes=1)
                tg = time.perf_counter()
                rows = run["source"].rows(k)
                generated = time.perf_counter() - tg
                load = land_slice(args.pg_url, spec, k, rows, search_path=schema)
                rules = cycle_rules(catalogue, t1)
                cycle = domain_cycles(args.pg_url, catalogue, rules, t0, t1, now, search_path=schema)
                if errors := sorted(r for r, o in cycle["outcomes"].items() if o == "error"):
                    raise SystemExit(f"{n} shops, slice {k}: rules could not evaluate: {errors}")
                floor, floor_each = time_floor(args.pg_url, schema, floor_of(catalogue, rules, t0, t1))
                wrote = cycle_results(args.pg_url, schema, t1)
                cycle_s = cycle["open_s"] + cycle["rollups_s"] + cycle["evaluate_s"]
                sample = {"slice": k, "end": t1.isoformat(), "top_of_hour": t1.minute == 0, "warm_up": k < WARM_UP,
                          "rules": len(rules), "domains": len({loaded.rule.domain for loaded in rules}),
                          "rows_landed": sum(v["rows"] for v in load["tables"].values()),
                          "generate_s": round(generated, 3), "load_s": load["load_seconds"],
                          "load_tables_s": {t: v["seconds"] for t, v in load["tables"].items()},
                          "high_water_mark_s": {t: v["high_water_mark_seconds"] for t, v in load["tables"].items()},
                          "open_s": round(cycle["open_s"], 4), "rollups_s": round(cycle["rollups_s"], 4),
                          "evaluate_s": round(cycle["evaluate_s"], 4), "cycle_s": round(cycle_s, 4),
                          "floor_s": round(floor, 4), "floor_each_s": {q: round(v, 4) for q, v in floor_each.items()},
                          "per_rule_s": {r: round(v, 4) for r, v in cycle["per_rule_s"].items()},
                          "per_maintain_s": {r: round(v, 4) for r, v in cycle["per_maintain_s"].items()},
                          "outcomes": cycle["outcomes"], **wrote}
                run["samples"].append(sample)
                print(f"{n:>4} shops slice {k:2}{' (hour)' if sample['top_of_hour'] else '       '}"
                      f"{' warm-up' if sample['warm_up'] else '        '} {sample['rows_landed']:>6} rows: load "
                      f"{sample['load_s']:.3f} s, sessions {sample['open_s']:.3f} s, rollups {sample['rollups_s']:.3f} s, "
                      f"evaluate {sample['evaluate_s']:.3f} s ({len(rules)} rules), floor {floor:.3f} s; "
                      f"{wrote['result_rows']} result rows, {wrote['firing']} firing", flush=True)
                if k == WARM_UP - 1:  # the rollups are built: analysed, as autovacuum would have by now
                    admin_tables = [t for t in schema_tables(admin, schema) if t.startswith("rollup_")]
                    vacuum_analyze(admin, schema, admin_tables, vacuum=False)
        for n, run in runs.items():
            typical = [s for s in run["samples"] if not s["warm_up"] and not s["top_of_hour"]]
            fig = {key: median([s[key] for s in typical]) for key in FIGURES}
            fig["cycle_over_floor"] = round(fig["cycle_s"] / fig["floor_s"], 2) if fig["floor_s"] else None
            fig["rollups_over_load"] = round(fig["rollups_s"] / fig["load_s"], 3) if fig["load_s"] else None
            fig["cycle_per_shop_s"] = round(fig["cycle_s"] / n, 5)
            fig["typical_cycles"] = len(typical)
            fig["rows_landed_median"] = median([s["rows_landed"] for s in typical])
            for part in ("per_rule_s", "per_maintain_s", "load_tables_s", "high_water_mark_s", "floor_each_s"):
                fig[f"{part.removesuffix('_s')}_median_s"] = {
                    r: median([s[part].get(r) for s in typical]) for r in {r for s in typical for r in s[part]}}
            fig["first_cycle_s"] = run["samples"][0]["cycle_s"] if run["samples"] else None  # builds the rollups
            fig["top_of_hour"] = [s for s in run["samples"] if s["top_of_hour"]]
            fig["samples"] = run["samples"]
            with admin.connect() as con:
                import sqlalchemy as sa

                fig["orders_rows"] = con.execute(sa.text(f'SELECT count(*) FROM "{run["schema"]}".orders')).scalar()
                fig["skus"] = con.execute(sa.text(f'SELECT count(*) FROM "{run["schema"]}".products')).scalar()
                fig["rollup_rows"] = {t: con.execute(sa.text(f'SELECT count(*) FROM "{run["schema"]}"."{t}"')).scalar()
                                      for t in schema_tables(admin, run["schema"]) if t.startswith("rollup_")
                                      and t not in ("rollup_dirty", "rollup_state")}
            out["shops"][str(n)]["figures"] = fig
        base_n = counts[0]
        base = out["shops"][str(base_n)]["figures"]
        for n in counts:
            fig = out["shops"][str(n)]["figures"]
            fig["vs_smallest"] = {f"{key}_ratio": round(fig[key] / base[key], 2) if base[key] else None
                                  for key in ("cycle_s", "load_s", "floor_s", "rollups_s", "evaluate_s")}
            fig["vs_smallest"]["shops_ratio"] = n / base_n
            fig["vs_smallest"]["cycle_per_shop_ratio"] = round(fig["cycle_per_shop_s"] / base["cycle_per_shop_s"], 3)
        if not args.no_explain:
            for n, run in runs.items():
                last = [s for s in run["samples"] if not s["warm_up"] and not s["top_of_hour"]][-1]
                t1 = datetime.fromisoformat(last["end"])
                t0 = t1 - timedelta(minutes=5)
                print(f"EXPLAIN ANALYZE, {n} shops ...", flush=True)
                out["shops"][str(n)]["explain"] = explain(args.pg_url, run["schema"],
                                                          plan_statements(catalogue, cycle_rules(catalogue, t1), t0, t1))
    finally:
        for run in runs.values():
            if run.get("source") is not None:
                run["source"].close()
        dropped = drop_leftovers(admin)
        admin.dispose()
        print(f"dropped {', '.join(dropped) or 'nothing'}", flush=True)
    out["wall_seconds"] = round(time.time() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=str) + "\n", encoding="utf-8")
    print_table(out, counts)
    print(args.out)
    return 0


def print_table(out: dict, counts: list[int]) -> None:
    base = counts[0]
    print(f"\nOne 5-minute cycle on PostgreSQL, {out['skus_per_shop']} SKUs and {out['orders_per_day_per_shop']} orders "
          f"a day per shop, {out['days']} days; medians of the typical cycles\n")
    print("| shops | orders rows | SKUs | rows landed | load s | cycle s | rollups s | evaluate s | sessions s | floor s "
          "| cycle / floor | result rows | firing |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in counts:
        f = out["shops"][str(n)]["figures"]
        print(f"| {n} | {f['orders_rows']:,} | {f['skus']:,} | {f['rows_landed_median']:.0f} | {f['load_s']:.3f} | "
              f"{f['cycle_s']:.3f} | {f['rollups_s']:.3f} | {f['evaluate_s']:.3f} | {f['open_s']:.3f} | "
              f"{f['floor_s']:.3f} | {f['cycle_over_floor']}x | {f['result_rows']:.0f} | {f['firing']:.0f} |")
    print(f"\n| shops | x shops | cycle vs {base} | load vs {base} | floor vs {base} | rollups vs {base} | evaluate vs {base} "
          f"| cycle per shop s | per shop vs {base} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in counts:
        f = out["shops"][str(n)]["figures"]
        v = f["vs_smallest"]
        print(f"| {n} | {v['shops_ratio']:g} | {v['cycle_s_ratio']}x | {v['load_s_ratio']}x | {v['floor_s_ratio']}x | "
              f"{v['rollups_s_ratio']}x | {v['evaluate_s_ratio']}x | {f['cycle_per_shop_s']:.4f} | "
              f"{v['cycle_per_shop_ratio']}x |")


if __name__ == "__main__":
    raise SystemExit(main())
