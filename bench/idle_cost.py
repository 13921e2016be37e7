"""What Airflow's own processes cost while nothing runs: CPU share of each component.

Starts the harness's deployment (tests/harness/airflow_stack.py: api-server, scheduler,
dag-processor, LocalExecutor, a PostgreSQL metadata DB of its own), unpauses the alert DAGs (the
extracts and the escalation stay paused: nothing is triggered), waits 20 s, then reads each
component's process tree's CPU time from /proc over ``--seconds`` and prints it as a share of one
core. On two cores every per cent the scheduler's processes burn idle is taken from a cycle.

    .venv/bin/python bench/idle_cost.py [--seconds 120] [--min-file-process-interval 120]

Measured 2026-11-30 (2-core machine, idle): default interval (30 s): scheduler 22.7%,
dag-processor 13.3%, api-server 4.0% of one core; with ``--min-file-process-interval 120``:
17.0%, 4.4%, 2.3%.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]


def cpu_seconds(pid: int) -> float:
    """utime + stime + children's, of one process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    parents: dict[int, list[int]] = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        parents.setdefault(ppid, []).append(int(p))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


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
        before = {n: sum(map(cpu_seconds, tree(pid))) for n, pid in pids.items()}
        t0 = time.monotonic()
        time.sleep(args.seconds)
        dt = time.monotonic() - t0
        after = {n: sum(map(cpu_seconds, tree(pid))) for n, pid in pids.items()}
    for n in pids:
        print(f"{n:<14} {100 * (after[n] - before[n]) / dt:5.1f}% of one core while idle")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
