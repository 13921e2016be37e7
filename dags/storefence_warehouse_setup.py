"""storefence_warehouse_setup: create the canonical warehouse schema, load the planned events of
include/rules/plans.yaml, and report what the warehouse holds.

Run it once after pointing the ``storefence_warehouse`` connection at a new warehouse, and after
changing plans.yaml (or any time: it only creates what is missing). Parsing this file imports nothing heavy: the hook,
SQLAlchemy and the drivers are imported inside the tasks.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from threshold_operators.bundle import use_bundle
from threshold_operators.warehouse import WAREHOUSE_CONN_ID, WAREHOUSE_POOL

use_bundle(__file__)  # rules, sources, suites and routing from include/ of this file's bundle


@dag(
    dag_id="storefence_warehouse_setup",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["storefence", "warehouse"],
    params={"warehouse_conn_id": Param(WAREHOUSE_CONN_ID, type="string", description="Airflow connection of the warehouse")},
    doc_md=__doc__,
    default_args={"owner": "data-engineering", "retries": 2, "retry_delay": pendulum.duration(seconds=30)},
)
def storefence_warehouse_setup():
    @task(pool=WAREHOUSE_POOL)
    def create_schema(params=None) -> list[str]:
        from threshold_operators.warehouse.hook import WarehouseHook
        from threshold_operators.warehouse.schema import create_schema as create

        hook = WarehouseHook(warehouse_conn_id=params["warehouse_conn_id"])
        try:
            created = create(hook.engine)
        finally:
            hook.engine.dispose()
        print(f"{hook.describe()}: created {created or 'nothing, the schema was complete'}")
        return created

    @task(pool=WAREHOUSE_POOL)
    def load_plans(created: list[str], params=None) -> int:
        """include/rules/plans.yaml into planned_events (its own rows; a planning system's are kept)."""
        from datetime import UTC, datetime

        from threshold_operators.rules.catalogue import rules_dir
        from threshold_operators.rules.plans import PLANS_FILE
        from threshold_operators.warehouse.hook import WarehouseHook
        from threshold_operators.warehouse.planned_events import load_plans_file

        path = rules_dir() / PLANS_FILE
        if not path.is_file():
            print(f"{path}: no plans file; planned_events left as it is")
            return 0
        hook = WarehouseHook(warehouse_conn_id=params["warehouse_conn_id"])
        try:
            n = load_plans_file(hook.engine, path, datetime.now(UTC))
        finally:
            hook.engine.dispose()
        print(f"{hook.describe()}: planned_events from {path}: {n} row(s)")
        return n

    @task(pool=WAREHOUSE_POOL)
    def report(created: list[str], params=None) -> dict[str, int]:
        from threshold_operators.warehouse.hook import WarehouseHook
        from threshold_operators.warehouse.summary import render, table_stats

        hook = WarehouseHook(warehouse_conn_id=params["warehouse_conn_id"])
        stats = table_stats(hook)
        print(render(stats, target=hook.describe()))
        return {r["table"]: r["rows"] for r in stats}

    created = create_schema()
    load_plans(created) >> report(created)


storefence_warehouse_setup()
