"""One DAG factory for every source: ``storefence_extract_<source>`` from include/sources/<source>.yaml.

For each table of the source: ``fetch_<table>`` reads the changes into staging (HTTP through
the source's Airflow connection; it does not hold the warehouse pool, only a short read of the
high-water mark), then ``load_<table>`` runs the quality gate and upserts, in the
``storefence_warehouse`` pool. A table whose suite checks references to another table of the
source loads after it.

Assets, one event per extract cycle. The run ends with ``publish`` (a teardown: it runs when
every load is done, whether or not one failed, and a failed load still fails the run). It emits
ONE event of the source's Asset (``storefence.source.<source>``, URI
``storefence://source/<source>``), with the cycle's outcome as extra: the tables that advanced,
rows, quarantined and high-water mark per table, the tables whose fetch or load failed. The alert
DAGs schedule on these source Assets (``alerts.dag_factory``: each domain waits for every
source it reads), so one extract cycle triggers each domain once. ``cycle_event`` decides:

- a table advanced (its high-water mark moved: new data landed): the event is emitted;
- nothing advanced, and the run is the source's newest cycle (not a backfill, its ``run_after``
  later than every cycle published before): the event is emitted all the same, so a domain
  waiting for all its sources is not stalled by a quiet one (and a drop to nothing is noticed);
- nothing advanced in a backfill or a re-run of an old interval: nothing is emitted.

Each load still emits its table's Asset (``storefence.<table>``) when the table advanced: for
lineage in the UI and for a user's own DAGs; no Storefence DAG is scheduled on them.

Parse time: this module imports the Task SDK and pydantic only; the hooks, GX, pandas and the
drivers are imported inside the tasks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pendulum
from airflow.sdk import DAG, Asset, AssetAlias, task

from threshold_operators.alerting.notifier import StorefenceNotifier
from threshold_operators.extract.sources import SourceSpec
from threshold_operators.warehouse import WAREHOUSE_CONN_ID, WAREHOUSE_POOL

START = pendulum.datetime(2025, 1, 1, tz="UTC")


def table_asset(table: str) -> Asset:
    """The Asset a load emits when ``table`` received new rows (lineage; nothing is scheduled on it)."""
    return Asset(name=f"storefence.{table}", uri=f"storefence://warehouse/{table}", group="storefence")


def source_asset(source: str) -> Asset:
    """The Asset an extract emits once per cycle of ``source``; the alert DAGs schedule on it."""
    return Asset(name=f"storefence.source.{source}", uri=f"storefence://source/{source}", group="storefence")


def cycle_event(source: str, results: dict[str, dict | None], *, run_id: str, run_type: str, cycle: datetime,
                last_cycle: str | None) -> dict | None:
    """The extra of the source's event for one extract run, or None when the run must trigger nothing.

    ``results``: table -> the load's result (``LoadResult.as_dict()``), None when its fetch or load
    did not finish; ``cycle``: the run's ``run_after``; ``last_cycle``: the newest cycle published
    before (the ``latest_cycle`` of the source's last event), None when there is none. Pure."""
    advanced = sorted(t for t, r in results.items() if r and r.get("advanced"))
    newest = run_type != "backfill" and (last_cycle is None or cycle > datetime.fromisoformat(last_cycle))
    if not advanced and not newest:
        return None
    latest = cycle if last_cycle is None else max(cycle, datetime.fromisoformat(last_cycle))
    return {
        "source": source, "run_id": run_id, "cycle": cycle.isoformat(), "latest_cycle": latest.isoformat(),
        "advanced": advanced, "failed": sorted(t for t, r in results.items() if r is None),
        "tables": {t: {"rows": r["loaded"], "quarantined": r["quarantined"], "high_water_mark": r["high_water_mark"]}
                   for t, r in sorted(results.items()) if r},
    }


def _load_order(spec: SourceSpec) -> dict[str, list[str]]:
    """table -> tables of this source it must load after (its ``references`` checks)."""
    from threshold_operators.extract.quality_gate import load_suite

    names = {t.table for t in spec.tables}
    return {t.table: sorted({c.table for c in load_suite(t.suite).checks if c.check == "references" and c.table in names and c.table != t.table})
            for t in spec.tables}


def build_extract_dag(spec: SourceSpec, warehouse_conn_id: str = WAREHOUSE_CONN_ID) -> DAG:
    default_args = {
        "owner": spec.owner,
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        # a load that fails for good reaches the data engineers once (not on every try)
        "on_failure_callback": [StorefenceNotifier(team="data_engineering", severity="yellow")],
    }
    with DAG(
        dag_id=spec.dag_id,
        schedule=spec.schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=default_args,
        tags=["storefence", "extract", spec.source],
        doc_md=f"Extract **{spec.source}** ({spec.type}): {spec.description}\n\n"
               f"Tables: {', '.join(t.table for t in spec.tables)}. Defined in `include/sources/{spec.source}.yaml`.",
    ) as dag:
        loads = {}
        for ts in spec.tables:
            fetch = _fetch_task(spec, ts, warehouse_conn_id)
            load = _load_task(spec, ts, warehouse_conn_id)
            f = fetch.override(task_id=f"fetch_{ts.table}")()
            loads[ts.table] = load.override(task_id=f"load_{ts.table}")(f)
        for table, after in _load_order(spec).items():
            for other in after:
                loads[other] >> loads[table]
        list(loads.values()) >> _publish_task(spec)().as_teardown()
    return dag


def _publish_task(spec: SourceSpec):
    asset = source_asset(spec.source)
    alias = AssetAlias(name=f"storefence.extract.source.{spec.source}")
    tables = [ts.table for ts in spec.tables]

    # A teardown: runs once every load is done (success or not) and does not decide the run's
    # state; no pool (it reads XCom and the source's last event, never the warehouse).
    @task(task_id="publish", inlets=[asset], outlets=[alias], retries=3)
    def publish(**context) -> dict | None:
        ti, run = context["ti"], context["dag_run"]
        results = {t: ti.xcom_pull(task_ids=f"load_{t}") for t in tables}
        last = list(context["inlet_events"][asset].ascending(False).limit(1))
        last_cycle = (last[0].extra or {}).get("latest_cycle") if last else None
        extra = cycle_event(spec.source, results, run_id=run.run_id, run_type=str(getattr(run.run_type, "value",
                            run.run_type)), cycle=run.run_after, last_cycle=last_cycle)
        if extra is None:
            print(f"{spec.source}: nothing advanced in an older cycle ({run.run_after.isoformat()}; newest "
                  f"published {last_cycle}): no event, nothing triggered")
            _sweep_staging(spec.source)
            return None
        context["outlet_events"][alias].add(asset, extra=extra)
        print(f"{spec.source}: cycle {extra['cycle']} published; advanced {extra['advanced'] or 'nothing'}"
              f"{'; failed ' + ', '.join(extra['failed']) if extra['failed'] else ''}")
        _sweep_staging(spec.source)
        return extra

    return publish


def _sweep_staging(source: str) -> None:
    """The staging of ``source``'s runs that never loaded, once older than ``staging.RETENTION``
    (kept until then for a retry of the load). A sweep that fails is logged, never the run's failure."""
    from threshold_operators.extract import staging

    try:
        removed = staging.sweep(source, pendulum.now("UTC"))
    except Exception as exc:  # noqa: BLE001 - housekeeping: the next cycle sweeps again
        print(f"{source}: staging not swept ({type(exc).__name__}: {exc})")
        return
    if removed:
        print(f"{source}: removed the staging of {len(removed)} run(s) older than {staging.RETENTION} that never loaded")


def _fetch_task(spec: SourceSpec, ts, warehouse_conn_id: str):
    @task
    def fetch(**context) -> dict:
        if spec.type == "file":
            from threshold_operators.extract.file_drop import fetch_file_table

            manifest = fetch_file_table(spec, ts, run_id=context["run_id"], now=pendulum.now("UTC"))
            print(f"{spec.source}.{ts.table}: {manifest.rows} rows from {len(manifest.files)} file(s) {manifest.files}")
            for r in manifest.rejected:
                print(f"  rejected (moved to rejected/ after the load): {r['file']}: {r['reason']}")
            for w in manifest.waiting:  # not finished yet: the next run takes it
                print(f"  left for a later run: {w['file']}: {w['reason']}")
            return {"rows": manifest.rows, "files": manifest.files, "rejected": manifest.rejected,
                    "waiting": manifest.waiting}

        from airflow.providers.http.hooks.http import HttpHook

        from threshold_operators.extract.fetch import fetch_http_table
        from threshold_operators.warehouse.hook import WarehouseHook

        http = HttpHook(method="GET", http_conn_id=spec.conn_id)
        session = http.get_conn()
        interval = (context.get("data_interval_start"), context.get("data_interval_end"))
        manifest = fetch_http_table(spec, ts, session=session, base_url=http.base_url,
                                    warehouse=WarehouseHook(warehouse_conn_id=warehouse_conn_id),
                                    run_id=context["run_id"], interval=interval if all(interval) else None)
        print(f"{spec.source}.{ts.table}: {manifest.rows} rows in {manifest.pages} pages "
              f"(since {manifest.updated_since or 'the beginning'}; {manifest.throttled} throttled, "
              f"{manifest.server_errors} server errors, waited {manifest.waited_s} s)")
        return {"rows": manifest.rows, "pages": manifest.pages, "updated_since": manifest.updated_since}

    return fetch


def _load_task(spec: SourceSpec, ts, warehouse_conn_id: str):
    alias = AssetAlias(name=f"storefence.extract.{ts.table}")

    @task(pool=WAREHOUSE_POOL, outlets=[alias])
    def load(fetched: dict, **context) -> dict:
        from threshold_operators.extract import staging
        from threshold_operators.extract.load import load_staged
        from threshold_operators.warehouse.hook import WarehouseHook

        now = pendulum.now("UTC")
        result = load_staged(spec, ts, warehouse=WarehouseHook(warehouse_conn_id=warehouse_conn_id),
                             run_id=context["run_id"], now=now)
        print(f"{spec.source}.{ts.table}: fetched {result.fetched}, loaded {result.loaded}, "
              f"quarantined {result.quarantined}, superseded {result.superseded}, held for a late parent "
              f"{result.held} (released {result.released}, expired {result.expired}); "
              f"high-water mark {result.high_water_mark}; {'fresh' if result.fresh else 'STALE'}")
        if result.advanced:  # new data landed; a re-read of the overlap or a backfill triggers nothing
            context["outlet_events"][alias].add(table_asset(ts.table), extra={
                "rows": result.loaded, "quarantined": result.quarantined,
                "high_water_mark": result.high_water_mark, "source": spec.source,
            })
        folder = staging.staging_dir(context["run_id"], spec.source, ts.table)
        if spec.type == "file":
            from threshold_operators.extract.file_drop import finish, tell_data_engineers

            manifest = staging.read_manifest(folder)
            finish(spec, manifest)
            tell_data_engineers(spec, manifest, now)  # once per run and table, however often retried
        staging.remove(folder)
        return result.as_dict()

    return load


def broken_source_dag(path: str, problems: list[str]) -> DAG:
    """A stand-in for a source file that does not validate: one task that fails with its problems."""
    from pathlib import Path

    name = Path(path).stem
    text = "\n".join(problems)
    with DAG(
        dag_id=f"storefence_extract_{name}",
        schedule=None,
        start_date=START,
        catchup=False,
        tags=["storefence", "extract", "config-error"],
        doc_md=f"**The source file `{path}` does not validate:**\n\n" + "\n".join(f"- `{p}`" for p in problems),
        default_args={"owner": "data-engineering", "retries": 0},
    ) as dag:

        @task(task_id="source_file_is_invalid")
        def invalid():
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{path} does not validate:\n{text}")

        invalid()
    return dag
