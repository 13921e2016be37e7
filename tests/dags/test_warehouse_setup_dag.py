"""storefence_warehouse_setup, run for real with dag.test() on DuckDB and PostgreSQL."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from threshold_operators.warehouse.schema import TABLE_NAMES


@pytest.fixture
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dag_integrity import DAGS

    return DagBag(dag_folder=str(DAGS / "storefence_warehouse_setup.py")).get_dag("storefence_warehouse_setup")


def _run(dag, conn_id):
    run = dag.test(run_conf={"warehouse_conn_id": conn_id})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    return run, states


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_creates_the_schema_and_reports(kind, dag, tmp_path, monkeypatch, request):
    if kind == "duckdb":
        conn = {"conn_type": "duckdb", "host": str(tmp_path / "w.duckdb")}
        url, search_path = f"duckdb:///{tmp_path / 'w.duckdb'}", None
    else:
        schema = request.getfixturevalue("pg_schema")
        conn = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": "test",
                "extra": {"search_path": schema}}
        url, search_path = request.getfixturevalue("pg_admin_url"), schema
    monkeypatch.setenv("AIRFLOW_CONN_SF_SETUP_WH", json.dumps(conn))
    run, states = _run(dag, "sf_setup_wh")
    assert states == {"create_schema": "success", "load_plans": "success", "report": "success"}
    assert run.state == "success"

    from threshold_operators.warehouse.hook import WarehouseHook

    hook = WarehouseHook(url=url, search_path=search_path)
    assert set(TABLE_NAMES) <= set(sa.inspect(hook.engine).get_table_names())
    hook.engine.dispose()
    # idempotent: a second run succeeds and changes nothing
    run2, states2 = _run(dag, "sf_setup_wh")
    assert run2.state == "success" and set(states2.values()) == {"success"}


def test_a_missing_connection_fails_at_once_without_retries(dag):
    run, states = _run(dag, "sf_no_such_conn")
    assert states["create_schema"] == "failed"
    ti = next(t for t in run.get_task_instances() if t.task_id == "create_schema")
    assert ti.try_number == 1  # WarehouseConfigError is final: no retry, no 30 s wait
    assert states["report"] == "upstream_failed" and states["load_plans"] == "upstream_failed"
    assert run.state == "failed"
