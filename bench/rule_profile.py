"""Where one rule's 5-minute evaluation goes at scale: DuckDB's planning, its execution, the rows
it reads and makes, against the plain read of the same rollup rows (the rule's share of the floor).

``bench/cycle_cost.py`` times each rule as the cycle runs it (gates, statement, recording); this
looks inside the statement. For each rule a typical 5-minute cycle evaluates, on the 30-day
warehouse of ``bench/cycle_cost.py`` (after its run: the copy in ``--work-dir`` has the rollups),
with DuckDB's profiler (``enable_profiling = 'json'``, detailed): the optimizer's and planner's
time, the execution's CPU time, rows scanned and intermediate rows; and, run the same way, the
rule's part of the floor (the aggregate of the rollup rows its window and baselines read,
``cycle_cost.rollup_reads``). Medians of ``--runs`` runs each, interleaved.

    PYTHONPATH=$PWD/plugins STOREFENCE_HOME=$PWD .venv/bin/python bench/rule_profile.py \\
        --warehouse /work/cycle-work/w30.duckdb [--end 2026-09-30T17:05:00Z] [--runs 5]

Results: ``bench/results/rule_profile.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(Path(__file__).resolve().parent)]

from cycle_cost import cycle_rules, rollup_reads  # noqa: E402

PARAM = re.compile(r"(?<![:\w]):(\w+)")  # SQLAlchemy's :name, not a ::cast


def profiled(con, sql: str, params: dict, out: Path) -> dict:
    """Run ``sql`` once under DuckDB's profiler: seconds planning, executing, and the row counts."""
    con.execute("SET enable_profiling = 'json'")
    con.execute(f"SET profiling_output = '{out}'")
    con.execute(sql, params).fetchall()
    con.execute("SET enable_profiling = 'no_output'")
    d = json.loads(out.read_text(encoding="utf-8"))
    q = d["query"]
    return {"plan_s": d["optimizer"]["total_time"] + d["planner"]["total_time"] + d["physical_planner"]["total_time"],
            "execute_s": q["cpu_time"], "total_s": q["total_time"], "rows_scanned": q["total_rows_scanned"],
            "intermediate_rows": q["total_intermediate_rows"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--warehouse", type=Path, required=True, help="a DuckDB file with the rollups (cycle_cost's copy)")
    ap.add_argument("--end", default="2026-09-30T17:05:00+00:00", help="the cycle's end (a landed slice's)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "rule_profile.json")
    args = ap.parse_args()
    import duckdb

    from threshold_operators.engine.compile import compile_rule
    from threshold_operators.rules.catalogue import load_catalogue

    catalogue = load_catalogue()
    t1 = datetime.fromisoformat(args.end.replace("Z", "+00:00")).astimezone(UTC)
    t0 = t1 - timedelta(minutes=5)
    rules = [r for r in cycle_rules(catalogue, t1) if r.rule.every <= timedelta(minutes=5)]
    floors = rollup_reads(catalogue, rules, t0, t1)
    con = duckdb.connect(str(args.warehouse), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET profiling_mode = 'detailed'")
    scratch = Path(tempfile.mkdtemp(prefix="sf-rule-profile-")) / "profile.json"
    cases = {}
    for loaded in rules:
        compiled = compile_rule(loaded, catalogue.get, source="rollup")
        sql = PARAM.sub(r"$\1", compiled.sql)
        params = {k: v for k, v in compiled.params(t0, t1).items() if f"${k}" in sql}
        cases[loaded.id] = {"rule": (sql, params), "floor": (floors.get(f"rollup:{loaded.id}"), {})}
    samples = {rid: {"rule": [], "floor": []} for rid in cases}
    for _ in range(args.runs):
        for rid, parts in cases.items():
            for part, (sql, params) in parts.items():
                if sql is not None:
                    samples[rid][part].append(profiled(con, sql, params, scratch))
    con.close()

    def med(xs, key):
        return round(statistics.median(x[key] for x in xs), 4) if xs else None

    out = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "warehouse": str(args.warehouse),
           "cycle_end": t1.isoformat(), "runs": args.runs, "rules": {}}
    print("| rule | planning | execution | rows scanned | intermediate rows | floor read (execution, rows) | execution / floor |")
    print("|---|---|---|---|---|---|---|")
    for rid, parts in samples.items():
        fig = {part: {k: med(xs, k) for k in ("plan_s", "execute_s", "total_s", "rows_scanned", "intermediate_rows")}
               for part, xs in parts.items() if xs}
        ratio = (round(fig["rule"]["execute_s"] / fig["floor"]["execute_s"], 1)
                 if "floor" in fig and fig["floor"]["execute_s"] else None)
        fig["execute_over_floor"] = ratio
        out["rules"][rid] = fig
        r, f = fig["rule"], fig.get("floor")
        floor_cell = f"{f['execute_s'] * 1000:.1f} ms, {f['rows_scanned']:,.0f}" if f else "(reads no rolling window)"
        print(f"| `{rid}` | {r['plan_s'] * 1000:.1f} ms | {r['execute_s'] * 1000:.1f} ms | {r['rows_scanned']:,.0f} | "
              f"{r['intermediate_rows']:,.0f} | {floor_cell} | {'' if ratio is None else f'{ratio}x'} |")
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
