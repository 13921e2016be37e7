"""Every DAG file imports without error, cheaply, and follows the pack's conventions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
HEAVY = ("pandas", "great_expectations", "duckdb", "sqlalchemy", "pyarrow", "numpy", "psycopg2")


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dags, "no DAG found"


def test_every_dag_file_is_loaded(dagbag):
    files = {Path(d.fileloc).name for d in dagbag.dags.values()}
    assert files == {p.name for p in DAGS.glob("*.py") if not p.name.startswith("_")}


def test_conventions(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag_id.startswith("storefence_"), dag_id
        assert "storefence" in dag.tags, dag_id
        assert dag.doc_md, f"{dag_id} has no doc_md"
        for t in dag.tasks:
            assert t.owner and t.owner != "airflow", f"{dag_id}.{t.task_id} has no owner team"


def _heavy_modules_after(statement: str) -> set[str]:
    """Run ``statement`` in a fresh interpreter; the heavy modules it left in sys.modules."""
    code = f"import sys; {statement}; print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO / "plugins")})
    assert out.returncode == 0, out.stderr[-2000:]
    line = [x for x in out.stdout.splitlines() if x.startswith("HEAVY=")][-1]
    return set(filter(None, line[len("HEAVY="):].split(",")))


@pytest.mark.parametrize("dag_file", sorted(p.name for p in DAGS.glob("*.py")))
def test_parsing_imports_nothing_heavy(dag_file):
    """A DAG file may import no heavy module beyond what the Task SDK itself loads."""
    baseline = _heavy_modules_after("from airflow.sdk import dag, task, DAG, Asset")
    parsed = _heavy_modules_after(f"import runpy; runpy.run_path({str(DAGS / dag_file)!r})")
    assert parsed - baseline == set(), f"{dag_file} imports at parse time: {parsed - baseline}"


def test_the_plugin_scan_leaves_the_package_alone():
    """Airflow imports every .py under plugins/ by its bare name (a module named calendar.py
    would replace the standard library's); .airflowignore keeps the package out of that scan."""
    from airflow._shared.module_loading.file_discovery import find_path_from_directory

    scanned = [p for p in find_path_from_directory(str(REPO / "plugins"), ".airflowignore", "regexp") if p.endswith(".py")]
    assert not [p for p in scanned if "threshold_operators" in p]
