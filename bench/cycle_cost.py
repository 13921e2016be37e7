"""One 5-minute cycle of the whole catalogue at scale, against its floor; flat in history length.

Issue 13's second benchmark. The warehouse of ``bench/scale_warehouse.py`` (10 shops x 20,000
SKUs, about 3,000 orders a shop a day, on DuckDB; built once and cached) is copied for each
history length (``--days``, default 30 and 365; 730 for 24 months), and 5-minute slices after
its end land into the copy with the warehouse's bulk loader, as the extract's load writes them
(noting their slices for the rollups). For each landed slice, in one run, alternating the
history lengths:

- **load**: the slice's upserts (every fact table, one transaction);
- **cycle**: every rule the 5-minute cycle evaluates (the rolling and 5-minute rules; at the
  top of the hour the hourly rules too), domain by domain as each domain's ``evaluate`` task
  runs them (``operators.domain_evaluate``): one ``WarehouseHook``, one ``session()`` and one
  ``CycleFacts`` (the extract gates and landed marks, asked once) per domain (**sessions**:
  opening them, i.e. the file and the hook's two engines with their first connection, and closing
  them, a checkpoint of what the cycle wrote), in which the rollups the domain's rules
  read are brought up to date first (**rollups**: the slices the load marked, recomputed from
  the raw facts; the cost that maintenance adds to a load), then each rule is one
  ``threshold_check.evaluate_rule`` over the slice (**evaluate**: its gates, the evaluation
  compiled against the rollups; then the domain's states recorded in one transaction, as the
  operator records them, timed apart as well: ``record_s``);
- **floor**: what any evaluation of the slice must at least read: one scan-aggregate of the
  newly landed slice of each fact table the cycle's rules read (``bench/floor_scan.py``), plus
  reading the rollup rows the rules' windows and baselines need (a rolling rule: the rows of
  its scan ranges; a rule reading ``rollup()``: the 14 days a stock cover needs).

The first slices build the rollups (the history the rules need) and are left out; the
figures are medians over the typical cycles (not on the hour), the top-of-hour cycle apart.
Targets (issue 13): cycle <= 1.5x floor; 24 months <= 1.1x one month; rollups <= 20% of a load.

    PYTHONPATH=$PWD/plugins STOREFENCE_HOME=$PWD .venv/bin/python bench/cycle_cost.py \\
        [--days 30,365] [--slices 26] [--shops 10 --skus 20000 --orders-per-day 3000]

Results: ``bench/results/cycle_cost.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from floor_scan import floor_queries  # noqa: E402
from scale_warehouse import ScaleSpec, SliceSource, build, land_slice, working_copy  # noqa: E402

WARM_UP = 2  # slice 0 carries the monthly stocktake; the first cycle builds the rollups
TARGETS = {"cycle_over_floor": 1.5, "history_ratio": 1.1, "rollups_over_load": 0.20}
ROLLUP_READ = timedelta(days=14)  # what a rollup() reader of the catalogue needs (the stock cover's 14 days)


def cycle_rules(catalogue, t1: datetime) -> list:
    """The rules a cycle ending at ``t1`` evaluates: every 5-minute rule; the hourly ones on the hour."""
    out = []
    for loaded in catalogue.rules.values():
        every = loaded.rule.every
        if every <= timedelta(minutes=5) or (t1.minute == 0 and every <= timedelta(hours=1)):
            out.append(loaded)
    return out


def rollup_reads(catalogue, rules, t0: datetime, t1: datetime) -> dict[str, str]:
    """The rollup rows the rules' windows and baselines need, as plain aggregates (part of the floor)."""
    from threshold_operators.engine.rollups import catalogue_rollups, rollup_paths
    from threshold_operators.engine.windows import plan_cycle
    from threshold_operators.rules.sql_template import rollup_table

    every = catalogue_rollups(catalogue)
    out = {}
    for loaded in rules:
        rule = loaded.rule
        if rule.rolling:
            r = every[rollup_table(rule.query, rule.params)]
            ranges = " OR ".join(f"(bucket >= TIMESTAMPTZ '{lo.isoformat()}' AND bucket < TIMESTAMPTZ '{hi.isoformat()}')"
                                 for lo, hi in plan_cycle(rule, t0, t1).scans)
            sums = ", ".join(f"sum({m})" for m in rule.metrics)
            out[f"rollup:{rule.id}"] = (f"SELECT {', '.join(r.keys)}, {sums} FROM {r.name} WHERE {ranges} "
                                        f"GROUP BY {', '.join(r.keys)}")
        for path in rollup_paths(loaded.template):
            r = every[rollup_table(path)]
            out[f"rollup:{r.name}:{ROLLUP_READ.days}d"] = (
                f"SELECT {', '.join(r.keys)}, {', '.join(f'sum({m})' for m in r.metrics)} FROM {r.name} "
                f"WHERE bucket >= TIMESTAMPTZ '{(t1 - ROLLUP_READ).isoformat()}' AND bucket < TIMESTAMPTZ "
                f"'{t1.isoformat()}' GROUP BY {', '.join(r.keys)}")
    return out


def floor_of(catalogue, rules, t0: datetime, t1: datetime) -> dict[str, str]:
    tables = {t for loaded in rules for t in loaded.tables} | \
        {t for loaded in rules for ref in loaded.rule.references for t in catalogue.get(ref).tables}
    scans = {t: sql for t, sql in floor_queries(t0, t1).items() if t in tables}
    return scans | rollup_reads(catalogue, rules, t0, t1)


def time_floor(path: Path, queries: dict[str, str]) -> float:
    import duckdb

    t = time.perf_counter()
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    for sql in queries.values():
        con.execute(sql).fetchall()
    con.close()
    return time.perf_counter() - t


def rule_start(loaded, t0: datetime, t1: datetime) -> datetime:
    """Where a rule's cycle ending at ``t1`` starts: the slice ``t0`` of a 5-minute rule, one ``every`` back otherwise."""
    every = loaded.rule.every
    return t1 - every if every > timedelta(minutes=5) else t0


def domain_cycles(url: str, catalogue, rules, t0, t1, now, search_path: str | None = None) -> dict:
    """Every domain's cycle in turn, as its ``evaluate`` task runs it: one hook and one session a
    domain; the rollups its rules read brought up to date first (timed apart: what maintenance
    adds), then each rule evaluated over the slice. Seconds per part, per rule; the outcomes (a
    bench whose rules all errored would measure nothing). ``search_path``: the PostgreSQL schema
    of the warehouse's tables (the connection's ``extra.search_path``)."""
    from threshold_operators.engine.gates import CycleFacts
    from threshold_operators.engine.record import record_many
    from threshold_operators.engine.rollups import maintain_cycle
    from threshold_operators.operators.threshold_check import evaluate_rule
    from threshold_operators.warehouse.hook import WarehouseHook

    out = {"open_s": 0.0, "rollups_s": 0.0, "evaluate_s": 0.0, "per_rule_s": {}, "per_maintain_s": {}, "outcomes": {}}
    domains: dict[str, list] = {}
    for loaded in rules:
        domains.setdefault(loaded.rule.domain, []).append(loaded)
    for domain, in_domain in domains.items():
        hook = WarehouseHook(url=url, search_path=search_path)
        t = time.perf_counter()
        try:
            with hook.session():
                # the session opened: the file (at its first use otherwise, inside the first rule's
                # rollups) and the hook's two engines; what maintenance and rules then do is theirs
                with hook.engine.connect(), hook.evaluation_connection():
                    pass
                out["open_s"] += time.perf_counter() - t
                t = time.perf_counter()
                # the domain's rollups in one write, as the operator maintains them before its rules
                maintain_cycle(hook, [(loaded, rule_start(loaded, t0, t1)) for loaded in in_domain], catalogue, now)
                out["per_maintain_s"][domain] = time.perf_counter() - t
                out["rollups_s"] += time.perf_counter() - t
                t = time.perf_counter()
                facts = CycleFacts(hook, {t for loaded in in_domain for t in loaded.tables})  # as the operator does
                evaluated: list = []
                for loaded in in_domain:
                    tt = time.perf_counter()
                    start = rule_start(loaded, t0, t1)
                    summary = evaluate_rule(hook, loaded, catalogue, now, "cycle-bench", window_start=start.isoformat(),
                                            window_end=t1.isoformat(), maintain=False, facts=facts,
                                            record_to=evaluated)
                    out["per_rule_s"][loaded.id] = time.perf_counter() - tt
                    out["outcomes"][loaded.id] = summary.get("outcome")
                tt = time.perf_counter()
                record_many(hook, evaluated, "cycle-bench")  # the domain's cycles in one transaction
                out["record_s"] = out.get("record_s", 0.0) + time.perf_counter() - tt
                out["evaluate_s"] += time.perf_counter() - t
                t = time.perf_counter()
        finally:
            hook.engine.dispose()
            hook.evaluation_engine.dispose()
        out["open_s"] += time.perf_counter() - t  # closing the session (a checkpoint when the WAL is large)
    return out


def median(xs):
    return round(statistics.median(xs), 4) if xs else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", default="30,365")
    ap.add_argument("--slices", type=int, default=26, help="slices landed (the first two warm up; 22 typical cycles)")
    ap.add_argument("--shops", type=int, default=10)
    ap.add_argument("--skus", type=int, default=20_000)
    ap.add_argument("--orders-per-day", type=int, default=3_000)
    ap.add_argument("--work-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "cycle_cost.json")
    args = ap.parse_args()
    from threshold_operators.rules.catalogue import load_catalogue

    catalogue = load_catalogue()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="sf-cycle-"))
    try:
        return run_all(args, catalogue, work)
    finally:
        if args.work_dir is None:  # the working copies (24 GB for both lengths) go with the run
            shutil.rmtree(work, ignore_errors=True)


def run_all(args, catalogue, work: Path) -> int:
    lengths = [int(d) for d in args.days.split(",")]
    runs = {}
    for days in lengths:  # build (or find) each warehouse and its copy first
        spec = ScaleSpec(shops=args.shops, skus=args.skus, days=days, orders_per_day=args.orders_per_day)
        info = build(spec)
        copy = working_copy(info, work / f"w{days}.duckdb")
        runs[days] = {"spec": spec, "path": copy, "source": SliceSource(spec, args.slices), "rows": info.rows, "samples": []}
        print(f"{days} days: {copy} ({copy.stat().st_size / 1e9:.2f} GB)", flush=True)
    for k in range(args.slices):
        for days, run in runs.items():  # alternating the history lengths, slice by slice
            spec = run["spec"]
            t0, t1 = spec.slice_bounds(k)
            now = t1 + timedelta(minutes=1)
            load = land_slice(run["path"], spec, k, run["source"].rows(k))
            rules = cycle_rules(catalogue, t1)
            cycle = domain_cycles(f"duckdb:///{run['path']}", catalogue, rules, t0, t1, now)
            if errors := sorted(r for r, o in cycle["outcomes"].items() if o == "error"):
                raise SystemExit(f"slice {k}: rules could not evaluate: {errors}")
            floor = time_floor(run["path"], floor_of(catalogue, rules, t0, t1))
            total = cycle["open_s"] + cycle["rollups_s"] + cycle["evaluate_s"]
            sample = {"slice": k, "end": t1.isoformat(), "top_of_hour": t1.minute == 0, "rules": len(rules),
                      "domains": len({loaded.rule.domain for loaded in rules}), "load_s": load["load_seconds"],
                      "open_s": round(cycle["open_s"], 4), "rollups_s": round(cycle["rollups_s"], 4),
                      "evaluate_s": round(cycle["evaluate_s"], 4), "record_s": round(cycle.get("record_s", 0.0), 4),
                      "cycle_s": round(total, 4), "floor_s": round(floor, 4),
                      "per_rule_s": {r: round(v, 4) for r, v in cycle["per_rule_s"].items()},
                      "outcomes": cycle["outcomes"]}
            run["samples"].append(sample)
            print(f"{days:>4} d slice {k:2} {'(hour)' if sample['top_of_hour'] else '      '} load {sample['load_s']:.3f} s, "
                  f"sessions {sample['open_s']:.3f} s, rollups {sample['rollups_s']:.3f} s, evaluate "
                  f"{sample['evaluate_s']:.3f} s ({len(rules)} rules), floor {floor:.3f} s", flush=True)
    out = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "targets": TARGETS, "lengths": {}}
    for days, run in runs.items():
        typical = [s for s in run["samples"][WARM_UP:] if not s["top_of_hour"]]
        hourly = [s for s in run["samples"][WARM_UP:] if s["top_of_hour"]]
        fig = {key: median([s[key] for s in typical])
               for key in ("load_s", "open_s", "rollups_s", "evaluate_s", "record_s", "cycle_s", "floor_s")}
        fig["cycle_over_floor"] = round(fig["cycle_s"] / fig["floor_s"], 2) if fig["floor_s"] else None
        fig["rollups_over_load"] = round(fig["rollups_s"] / fig["load_s"], 3) if fig["load_s"] else None
        fig["typical_cycles"] = len(typical)
        fig["top_of_hour"] = hourly
        fig["per_rule_median_s"] = {r: median([s["per_rule_s"][r] for s in typical if r in s["per_rule_s"]])
                                    for r in {r for s in typical for r in s["per_rule_s"]}}
        fig["samples"] = run["samples"]
        fig["spec"] = run["spec"].as_dict()
        out["lengths"][str(days)] = fig
    if len(lengths) > 1:
        short, long = out["lengths"][str(min(lengths))], out["lengths"][str(max(lengths))]
        out["history_ratio"] = round(long["cycle_s"] / short["cycle_s"], 2)
    args.out.write_text(json.dumps(out, indent=1, default=str) + "\n", encoding="utf-8")
    print("\n| history | load | rollups (share of load) | cycle | floor | cycle / floor |\n|---|---|---|---|---|---|")
    for days, fig in out["lengths"].items():
        print(f"| {days} d | {fig['load_s']:.3f} s | {fig['rollups_s']:.3f} s ({fig['rollups_over_load']:.0%}) | "
              f"{fig['cycle_s']:.3f} s | {fig['floor_s']:.3f} s | {fig['cycle_over_floor']}x |")
    if "history_ratio" in out:
        print(f"\nlongest / shortest history: {out['history_ratio']}x (target <= {TARGETS['history_ratio']})")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
