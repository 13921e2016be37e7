"""The same live cycle on the LocalExecutor and on CeleryExecutor with 1 and 2 workers (issue 14).

Each configuration is one run of ``bench/live_bench.py`` (the live shop on an accelerated clock,
the extract cycles triggered over REST, everything after the loads the scheduler's doing, the
DingTalk channels to strict robots on loopback), all on PostgreSQL (metadata DB, warehouse,
state store), one after another on this machine, with the same cycles and interval:

    local        LocalExecutor (parallelism 4: the scheduler's own task processes)
    celery-1     CeleryExecutor, one worker (concurrency 2) with a home of its own, Redis broker
    celery-2     two such workers taking turns at the same queue

For each: the latency from a row's creation to its load and from a bucket's landing to the
message the robot accepted (median, p95), the wall time of all domains after one extract
(median, p95), and the task instances finished per minute; the ratios are against celery-1
(one worker). The runs' own JSON files are kept (bench/results/live*.json).

    .venv/bin/python bench/scale_out.py                      # 8 cycles of >= 45 s each
    .venv/bin/python bench/scale_out.py --cycles 12 --interval 60
    .venv/bin/python bench/scale_out.py --only celery-2      # one configuration

Results: ``bench/results/scale_out.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"local": ["--executor", "local"],
           "celery-1": ["--executor", "celery", "--workers", "1"],
           "celery-2": ["--executor", "celery", "--workers", "2"]}
RESULT_FILE = {"local": "live-local.json", "celery-1": "live-celery-1.json", "celery-2": "live-celery-2.json"}


def figures(doc: dict) -> dict:
    lat, cyc, tasks = doc["latency_s"], doc["cycle_s"], doc["tasks"]
    pick = lambda s: {"median": s.get("median"), "p95": s.get("p95"), "n": s.get("n")}  # noqa: E731
    return {
        "row_to_load_s": pick(lat["row_to_load"]),
        "landing_to_receiver_s": pick(lat["breach_message_from_landing"]),
        "all_domains_after_extract_s": pick(cyc["all_domains_after_extract"]),
        "extract_and_all_domains_s": pick(cyc["extract_and_all_domains"]),
        "tasks_per_minute": tasks["per_minute"],
        "director_double_alert": len(doc.get("director_double_alert") or []),
        "refused": doc.get("refused") or {},
        "run_seconds": doc["setup"].get("run_seconds"),
    }


def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=8)
    ap.add_argument("--interval", type=float, default=45)
    ap.add_argument("--only", choices=tuple(CONFIGS), action="append", help="run only these configurations")
    ap.add_argument("--from-results", action="store_true", help="only tabulate the live*.json files already there")
    args = ap.parse_args()
    names = args.only or list(CONFIGS)
    load = os.getloadavg()
    for name in names if not args.from_results else []:
        argv = [sys.executable, str(REPO / "bench" / "live_bench.py"), "--no-baseline", "--cycles", str(args.cycles),
                "--interval", str(args.interval), *CONFIGS[name]]
        print(f"== {name}: {' '.join(argv[1:])}", flush=True)
        t0 = time.monotonic()
        done = subprocess.run(argv, cwd=REPO)
        if done.returncode != 0:
            print(f"{name}: live_bench exited with {done.returncode}", file=sys.stderr)
            return done.returncode
        print(f"== {name}: {time.monotonic() - t0:.0f} s", flush=True)
    runs = {}
    for name in CONFIGS:
        path = REPO / "bench" / "results" / RESULT_FILE[name]
        if path.is_file():
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("setup", {}).get("state_store") == "PostgreSQL":  # a run of this bench, not issue 12's
                runs[name] = {"when": doc["when"], "cycles": doc["setup"]["cycles"], **figures(doc)}
    one = runs.get("celery-1")
    out = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
           "load_before": [round(x, 2) for x in load], "runs": runs, "ratio_to_one_worker": {}}
    if one:
        for name, r in runs.items():
            out["ratio_to_one_worker"][name] = {
                k: ratio(r[k]["median"], one[k]["median"]) for k in
                ("row_to_load_s", "landing_to_receiver_s", "all_domains_after_extract_s", "extract_and_all_domains_s")
            } | {"tasks_per_minute": ratio(r["tasks_per_minute"], one["tasks_per_minute"])}
    print(f"\n{'':28}" + "".join(f"{n:>18}" for n in runs))
    for key in ("row_to_load_s", "landing_to_receiver_s", "all_domains_after_extract_s", "extract_and_all_domains_s"):
        print(f"{key:28}" + "".join(f"{str(r[key]['median']) + ' / ' + str(r[key]['p95']):>18}" for r in runs.values()))
    print(f"{'tasks_per_minute':28}" + "".join(f"{r['tasks_per_minute']:>18}" for r in runs.values()))
    print(f"{'director_double_alert':28}" + "".join(f"{r['director_double_alert']:>18}" for r in runs.values()))
    if one:
        print("ratios to one worker (medians): " + json.dumps(out["ratio_to_one_worker"]))
    path = REPO / "bench" / "results" / "scale_out.json"
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"written {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
