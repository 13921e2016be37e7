"""What Airflow's own processes cost while nothing runs: CPU share of each component.

Starts the harness's deployment (tests/harness/airflow_stack.py: api-server, scheduler,
dag-processor, LocalExecutor, a PostgreSQL metadata DB of its own), unpauses the alert DAGs (the
extracts and the escalation stay paused: nothing is triggered), waits 20 s, then reads each
component's process tree's CPU time (psutil) over ``--seconds`` and prints it as a share of one
core. On two cores every per cent the scheduler's processes burn idle is taken from a cycle.

    .venv/bin/python bench/idle_cost.py [--seconds 120] [--min-file-process-interval 120]

Measured 2026-11-30 (2-core machine, idle): default interval (30 s): scheduler 22.7%,
dag-processor 13.3%, api-server 4.0% of one core; with ``--min-file-process-interval 120``:
17.0%, 4.4%, 2.3%.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its living descendants (psutil)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def main() -> int:
    from tests.conftest import PG_ADMIN_URL
    from tests.harness.airflow_stack import running_airflow

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--min-file-process-interval", help="[dag_processor] min_file_process_interval (Airflow: 30)")
    args = ap.parse_args()
    extra = {}
    if args.min_file_process_interval:
        extra[("dag_processor", "min_file_process_interval")] = args.min_file_process_interval
    with tempfile.TemporaryDirectory() as d, running_airflow(Path(d) / "airflow", PG_ADMIN_URL,
                                                             extra_config=extra) as af:
        for dag in af.client.dags("storefence_alerts_%"):
            af.client.unpause(dag["dag_id"])
        time.sleep(20)
        pids = {name: p.pid for name, p in af.stack.processes.items()}
        before = {n: cpu_seconds(pid) for n, pid in pids.items()}
        t0 = time.monotonic()
        time.sleep(args.seconds)
        dt = time.monotonic() - t0
        after = {n: cpu_seconds(pid) for n, pid in pids.items()}
    for n in pids:
        print(f"{n:<14} {100 * (after[n] - before[n]) / dt:5.1f}% of one core while idle")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
