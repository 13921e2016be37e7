"""Simulator benchmark: rows/s and peak memory for N order lines into DuckDB and PostgreSQL.

Side by side in one run, against a floor: the same simulation with no warehouse at all
(generation alone, rows counted and dropped). Each run is a fresh process (so its peak RSS is
its own); runs are interleaved (floor, duckdb, postgres, floor, ...) so machine drift hits every
target alike, and the medians are reported.

    .venv/bin/python bench/simulator_bench.py                       # 10M order lines, 3 runs
    .venv/bin/python bench/simulator_bench.py --order-lines 1000000 --runs 5

PostgreSQL: the server at --pg-url (default 127.0.0.1:5432/test), a fresh schema per run,
dropped afterwards. Its server-side memory is not in the peak RSS (another process).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
from warehouses import PG_URL, fresh_warehouse  # noqa: E402 - bench/ is on the path when run as a script

SHOPS, SKUS, DAYS = 10, 20_000, 365
END = datetime(2026, 9, 30, tzinfo=UTC)


def spec_for(order_lines: int):
    from threshold_operators.simulator.catalogue import MEAN_LINES
    from threshold_operators.simulator.run import SimulationSpec

    per_day = round(order_lines / (SHOPS * DAYS * MEAN_LINES))
    return SimulationSpec(shops=SHOPS, skus=SKUS, days=DAYS, orders_per_day=per_day, seed=1, end=END, incidents="default")


def worker(target: str, order_lines: int, pg_url: str) -> dict:
    from threshold_operators.simulator.run import simulate

    extra = {}
    if target == "generate-only":
        result = simulate(spec_for(order_lines), None)
    else:
        with fresh_warehouse(target, pg_url) as hook:
            result = simulate(spec_for(order_lines), hook)
            if hook.is_duckdb:
                extra["file_mb"] = round(Path(hook.duckdb_path).stat().st_size / 2**20)
    rows = sum(result.rows.values())
    return {
        "target": target,
        "order_lines": result.order_lines,
        "rows": rows,
        "seconds": round(result.seconds, 2),
        "rows_per_s": round(rows / result.seconds),
        "order_lines_per_s": round(result.order_lines / result.seconds),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        **extra,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--order-lines", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--targets", default="generate-only,duckdb,postgres")
    ap.add_argument("--pg-url", default=PG_URL)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "simulator.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.order_lines, args.pg_url)), flush=True)
        return 0

    targets = args.targets.split(",")
    runs: dict[str, list[dict]] = {t: [] for t in targets}
    started = time.time()
    for r in range(args.runs):
        for t in targets:
            out = subprocess.run([sys.executable, __file__, "--worker", t, "--order-lines", str(args.order_lines),
                                  "--pg-url", args.pg_url], capture_output=True, text=True)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if out.returncode != 0 or not line:
                print(f"run {r + 1} {t} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
                return 1
            res = json.loads(line[0][len("RESULT "):])
            runs[t].append(res)
            print(f"run {r + 1}/{args.runs} {t:<14} {res['seconds']:>7.1f} s  {res['rows_per_s']:>9,} rows/s  "
                  f"peak {res['peak_rss_mb']:,} MB", flush=True)

    floor = statistics.median(x["seconds"] for x in runs[targets[0]])
    summary = []
    print(f"\n{args.order_lines:,} order lines ({SHOPS} shops x {SKUS:,} SKUs x {DAYS} days), median of {args.runs} runs:")
    print(f"| target | order lines | all rows | seconds | rows/s | order lines/s | peak RSS MB | time vs {targets[0]} |")
    print("|---|---|---|---|---|---|---|---|")
    for t in targets:
        med = {k: statistics.median(x[k] for x in runs[t]) for k in ("seconds", "rows_per_s", "order_lines_per_s", "peak_rss_mb")}
        row = {"target": t, "order_lines": runs[t][0]["order_lines"], "rows": runs[t][0]["rows"], **med,
               "ratio_to_floor": round(med["seconds"] / floor, 2), "runs": runs[t]}
        summary.append(row)
        print(f"| {t} | {row['order_lines']:,} | {row['rows']:,} | {med['seconds']:.1f} | {med['rows_per_s']:,.0f} | "
              f"{med['order_lines_per_s']:,.0f} | {med['peak_rss_mb']:,.0f} | {row['ratio_to_floor']:.2f}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "simulator", "order_lines_asked": args.order_lines, "runs": args.runs,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "finished": datetime.now(UTC).isoformat(), "wall_s": round(time.time() - started),
        "results": summary,
    }, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
