"""One 5-minute cycle of the whole catalogue at scale under the real scheduler, against the same
cycle in one process.

Issue 13's third benchmark: "the same cycle under the real scheduler: the wall time of all
domains after one extract". The warehouse is ``bench/cycle_cost.py``'s (10 shops x 20,000 SKUs,
about 3,000 orders a shop a day, ``--days`` of history, DuckDB; built once and cached), copied.
Its first two slices land and are evaluated in this process (the rollups and every rule's state
are built: a deployment's steady state). Then Airflow starts as ``make up`` runs it (the tests'
harness: api-server, scheduler, dag-processor, LocalExecutor, a PostgreSQL metadata database of
its own), its ``storefence_warehouse`` connection on the copy (the DuckDB pool: one slot), every
channel to the local inbox. Slices then land one at a time, the way the extract's load writes
them (``scale_warehouse.land_slice``: the bulk loader's upserts and the ``extract_runs`` rows),
alternating between the two ways of running the cycle:

- **scheduler**: every domain's alert DAG triggered over REST at once, as the extract's Asset
  events trigger them; each runs its ``evaluate`` task (every due rule of the domain, its
  buckets since its last cycle, the rollups first) and its ``notify`` instances. The figure is
  the wall time from the trigger to the end of the last domain's run, read from the runs'
  ``end_date``; the runs' own start -> end and the ``evaluate`` tasks' durations beside it.
- **in-process**: the same domains' evaluation in this process (``cycle_cost.domain_cycles``:
  one hook and session a domain, the rollups, each rule), with no scheduler, no task process,
  no notify.

Both take one freshly landed slice each, so each evaluates what one extract brought. Medians
over ``--cycles`` of each; the top-of-hour cycles (the hourly rules too) apart.

    PYTHONPATH=$PWD/plugins STOREFENCE_HOME=$PWD .venv/bin/python bench/scheduler_cycle.py \\
        [--days 30] [--cycles 6] [--work-dir DIR]

Results: ``bench/results/scheduler_cycle.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO), str(Path(__file__).resolve().parent)]

from cycle_cost import cycle_rules, domain_cycles  # noqa: E402
from scale_warehouse import FACT_TABLES, SOURCE_OF, ScaleSpec, SliceSource, build, land_slice, working_copy  # noqa: E402

PG_SERVER = os.environ.get("STOREFENCE_PG_SERVER", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
WARM_UP = 2  # slices landed and evaluated in this process before Airflow starts


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def median(xs):
    return round(statistics.median(xs), 3) if xs else None


def served_until(path: Path, k: int, t1: datetime) -> None:
    """Each table's source served it up to the slice's end: an ``extract_runs`` row per table
    with the high-water mark at ``t1``. The bench cuts slices exactly at their end, so the newest
    row of a slice is just before it; a live extract reads up to the moment it runs, past the
    slice's end, and its marks say the slice is complete. The engine evaluates a slice once every
    table it reads has landed past its end (``engine.record.landed_until``)."""
    from threshold_operators.warehouse.bulk_load import bulk_loader
    from threshold_operators.warehouse.hook import WarehouseHook
    from threshold_operators.warehouse.schema import arrow_table

    n = len(FACT_TABLES)
    with bulk_loader(WarehouseHook(url=f"duckdb:///{path}")) as loader:
        loader.upsert("extract_runs", arrow_table("extract_runs", {
            "run_id": [f"scale-slice-{k}-served"] * n, "source": [SOURCE_OF.get(t, "shop_api") for t in FACT_TABLES],
            "table_name": list(FACT_TABLES), "updated_since": [t1] * n, "updated_before": [t1] * n,
            "rows_fetched": [0] * n, "rows_loaded": [0] * n, "rows_quarantined": [0] * n,
            "high_water_mark": [t1] * n, "finished_at": [t1 + timedelta(minutes=1)] * n}))


def scheduler_cycle(client, dag_ids: list[str], k: int) -> dict:
    """Trigger every domain at once; wait for all; the wall time to the last end and each run's."""
    triggered = datetime.now(UTC)
    runs = {d: client.trigger(d, run_id=f"scale-slice-{k}")["dag_run_id"] for d in dag_ids}
    states = {d: client.wait_ended(d, r, timeout=1800, poll=0.5) for d, r in runs.items()}
    out = {"slice": k, "triggered": triggered.isoformat(), "states": states, "domains": {}}
    ends = []
    for d, r in runs.items():
        run = client.dag_run(d, r)
        start, end = _ts(run.get("start_date")), _ts(run.get("end_date"))
        tis = client.task_instances(d, r)
        evaluate = next((t for t in tis if t["task_id"] == "evaluate"), {})
        notify = [t for t in tis if t["task_id"] == "notify"]
        evaluations = client.xcom(d, r, "evaluate", key="evaluations") or {}
        out["domains"][d] = {"run_s": round((end - start).total_seconds(), 2), "end_after_trigger_s":
                             round((end - triggered).total_seconds(), 2),
                             "evaluate_s": evaluate.get("duration"), "notify": [t.get("state") for t in notify],
                             "outcomes": {rid: e.get("outcome") for rid, e in evaluations.items()}}
        ends.append(end)
    out["wall_s"] = round((max(ends) - triggered).total_seconds(), 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--cycles", type=int, default=6, help="cycles of each kind (scheduler, in-process)")
    ap.add_argument("--shops", type=int, default=10)
    ap.add_argument("--skus", type=int, default=20_000)
    ap.add_argument("--orders-per-day", type=int, default=3_000)
    ap.add_argument("--work-dir", type=Path, default=None)
    ap.add_argument("--pg-server", default=PG_SERVER)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scheduler_cycle.json")
    args = ap.parse_args()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="sf-sched-cycle-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, work)
    finally:
        if args.work_dir is None:  # the warehouse copy and the Airflow home go with the run
            shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path) -> int:
    from tests.harness.airflow_stack import running_airflow
    from threshold_operators.alerting.local_inbox import LocalInbox, inbox_connections
    from threshold_operators.alerting.routing import load_routing
    from threshold_operators.rules.catalogue import load_catalogue

    catalogue = load_catalogue()
    spec = ScaleSpec(shops=args.shops, skus=args.skus, days=args.days, orders_per_day=args.orders_per_day)
    path = working_copy(build(spec), work / "scheduler.duckdb")
    url = f"duckdb:///{path}"
    slices = WARM_UP + 2 * args.cycles
    source = SliceSource(spec, slices)

    def land(k: int):
        t0, t1 = spec.slice_bounds(k)
        load = land_slice(path, spec, k, source.rows(k))
        served_until(path, k, t1)
        return t0, t1, load

    for k in range(WARM_UP):  # the rollups and every rule's state: a deployment's steady state
        t0, t1, _ = land(k)
        domain_cycles(url, catalogue, cycle_rules(catalogue, t1), t0, t1, t1 + timedelta(minutes=1))
        print(f"warm-up slice {k} evaluated in this process", flush=True)

    samples = {"scheduler": [], "in_process": []}
    home = work / "airflow"
    home.mkdir(exist_ok=True)
    with LocalInbox() as inbox, running_airflow(home, args.pg_server) as af:
        client = af.client
        print(f"Airflow up in {af.seconds_to_start:.0f} s at {af.stack.config.api_url}", flush=True)
        rules = [r.rule for r in catalogue.rules.values()]
        conns = inbox_connections(inbox.url, inbox.smtp_port, load_routing(), rules)
        conns["storefence_warehouse"] = {"conn_type": "duckdb", "host": str(path)}
        for conn_id, fields in conns.items():
            client.put_connection({"connection_id": conn_id, **{k: (json.dumps(v) if k == "extra" else v)
                                                               for k, v in fields.items()}})
        pool = client.request("GET", "/api/v2/pools/storefence_warehouse")
        dag_ids = sorted(d["dag_id"] for d in client.dags("storefence_alerts_%"))
        for d in dag_ids:
            client.unpause(d)
        time.sleep(10)  # unpausing may schedule the hourly fallback's latest run: let it end first
        while any(client.dag_runs(d, state=["queued", "running"]) for d in dag_ids):
            time.sleep(2)
        print(f"{len(dag_ids)} domains unpaused; pool storefence_warehouse: {pool['slots']} slot(s)", flush=True)
        for c in range(args.cycles):
            for kind in ("scheduler", "in_process"):
                k = WARM_UP + 2 * c + (kind == "in_process")
                t0, t1, load = land(k)
                rules_due = cycle_rules(catalogue, t1)
                if kind == "scheduler":
                    sample = scheduler_cycle(client, dag_ids, k)
                    outcomes = {r: o for dom in sample["domains"].values() for r, o in dom["outcomes"].items()}
                    if stale := sorted(r.id for r in rules_due if outcomes.get(r.id) in (None, "error", "up_to_date")):
                        raise SystemExit(f"slice {k}: rules that did not evaluate the slice under the scheduler: "
                                         f"{stale} ({outcomes})")
                else:
                    t = time.perf_counter()
                    cyc = domain_cycles(url, catalogue, rules_due, t0, t1, t1 + timedelta(minutes=1))
                    sample = {"slice": k, "wall_s": round(time.perf_counter() - t, 3),
                              "outcomes": cyc["outcomes"]}
                sample |= {"end": t1.isoformat(), "top_of_hour": t1.minute == 0, "rules": len(rules_due),
                           "load_s": load["load_seconds"]}
                samples[kind].append(sample)
                print(f"slice {k:2} {'(hour)' if sample['top_of_hour'] else '      '} {kind:<10} "
                      f"{sample['wall_s']:.2f} s ({len(rules_due)} rules)", flush=True)
        inbox_count = {"http": len(inbox.http), "mail": len(inbox.mail)}
    source.close()

    out = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "spec": spec.as_dict(),
           "pool_slots": pool["slots"], "domains": dag_ids, "inbox": inbox_count, "figures": {}}
    for kind, rows in samples.items():
        typical = [s["wall_s"] for s in rows if not s["top_of_hour"]]
        hourly = [s["wall_s"] for s in rows if s["top_of_hour"]]
        out["figures"][kind] = {"median_s": median(typical), "max_s": max(typical, default=None),
                                "cycles": len(typical), "top_of_hour_s": hourly}
    sched = [s for s in samples["scheduler"] if not s["top_of_hour"]]
    out["figures"]["scheduler"] |= {
        "domain_run_median_s": {d: median([s["domains"][d]["run_s"] for s in sched]) for d in dag_ids},
        "evaluate_task_median_s": {d: median([s["domains"][d]["evaluate_s"] for s in sched
                                              if s["domains"][d]["evaluate_s"] is not None]) for d in dag_ids},
    }
    a, b = out["figures"]["scheduler"]["median_s"], out["figures"]["in_process"]["median_s"]
    out["scheduler_over_in_process"] = round(a / b, 2) if a and b else None
    out["samples"] = samples
    args.out.write_text(json.dumps(out, indent=1, default=str) + "\n", encoding="utf-8")
    print("\n| way | cycles | median wall time, all domains | max | top of the hour |\n|---|---|---|---|---|")
    for kind, fig in out["figures"].items():
        print(f"| {kind} | {fig['cycles']} | {fig['median_s']} s | {fig['max_s']} s | {fig['top_of_hour_s']} |")
    print(f"\nscheduler / in-process: {out['scheduler_over_in_process']}x")
    for d in dag_ids:
        print(f"  {d}: run {out['figures']['scheduler']['domain_run_median_s'][d]} s, evaluate task "
              f"{out['figures']['scheduler']['evaluate_task_median_s'][d]} s")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
