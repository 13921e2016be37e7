"""The parts of the pack that must hold when its tasks run on several hosts (CeleryExecutor):
per-host storage refused with what to set, staging every worker reaches (and swept), the schema
set up once under a lock however many workers start at once.

The two-worker deployment itself is tests/deploy/test_celery_workers.py; these are its parts,
each on the real thing (an executor configured through Airflow's own settings, real files, a
real object store of fsspec, real PostgreSQL with concurrent processes)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN_URL

REPO = Path(__file__).resolve().parents[2]


def _forget_executors() -> None:
    """Airflow reads [core] executor once per process (ExecutorLoader's list), and so do we."""
    from airflow.executors import executor_loader

    from threshold_operators.executor import remote_executors

    executor_loader._executor_names.clear()
    remote_executors.cache_clear()


@pytest.fixture
def executor(monkeypatch):
    """Set the deployment's executor (Airflow's setting, read as the scheduler reads it)."""
    def use(name: str) -> None:
        monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", name)
        _forget_executors()

    yield use
    monkeypatch.delenv("AIRFLOW__CORE__EXECUTOR", raising=False)
    _forget_executors()


@pytest.fixture
def celery(executor):
    executor("CeleryExecutor")


@pytest.fixture
def local(executor):
    executor("LocalExecutor")


def test_the_known_executors_are_what_their_classes_say():
    from airflow.executors.local_executor import LocalExecutor
    from airflow.providers.celery.executors.celery_executor import CeleryExecutor

    from threshold_operators.executor import KNOWN

    assert KNOWN["LocalExecutor"] is LocalExecutor.is_local is True
    assert KNOWN["CeleryExecutor"] is CeleryExecutor.is_local is False


def test_a_mixed_executor_list_is_remote(executor):
    from threshold_operators.executor import remote_executors

    executor("LocalExecutor,CeleryExecutor")
    assert remote_executors() == ("CeleryExecutor",)
    executor("LocalExecutor")
    assert remote_executors() == ()


def test_under_celery_a_duckdb_warehouse_connection_is_refused_naming_it(celery, monkeypatch, tmp_path):
    from threshold_operators.executor import PerHostStorageError
    from threshold_operators.warehouse.hook import WarehouseHook

    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_WAREHOUSE",
                       json.dumps({"conn_type": "duckdb", "host": str(tmp_path / "w.duckdb")}))
    with pytest.raises(PerHostStorageError) as err:
        _ = WarehouseHook().dialect_name
    text = str(err.value)
    assert "'storefence_warehouse'" in text and "w.duckdb" in text and "CeleryExecutor" in text
    assert "PostgreSQL" in text
    # an analyst's explicit file (the CLI's --warehouse) is not the deployment's connection
    assert WarehouseHook(url=f"duckdb:///{tmp_path / 'copy.duckdb'}").dialect_name == "duckdb"
    assert not (tmp_path / "w.duckdb").exists()  # refused before anything was opened


def test_under_celery_the_default_sqlite_state_store_is_refused(celery, monkeypatch, tmp_path):
    from threshold_operators.alerting.store import StateStore
    from threshold_operators.executor import PerHostStorageError

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW_CONN_STOREFENCE_STATE", raising=False)
    with pytest.raises(PerHostStorageError) as err:
        _ = StateStore().engine
    assert "'storefence_state'" in str(err.value) and "the connection is not defined" in str(err.value)
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_STATE", json.dumps({"conn_type": "sqlite", "host": "s.sqlite"}))
    with pytest.raises(PerHostStorageError, match="SQLite file .*s.sqlite, on one host's disk"):
        _ = StateStore().engine
    assert not list(tmp_path.glob("*.sqlite"))


def test_under_the_local_executor_the_embedded_defaults_stay(local, monkeypatch, tmp_path):
    from threshold_operators.alerting.store import StateStore
    from threshold_operators.extract import staging
    from threshold_operators.warehouse.hook import WarehouseHook

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW__STOREFENCE__STORAGE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_WAREHOUSE", json.dumps({"conn_type": "duckdb", "host": "w.duckdb"}))
    assert WarehouseHook().dialect_name == "duckdb"
    assert str(StateStore().engine.url).startswith("sqlite")
    assert staging.staging_root() == tmp_path / "storefence" / "staging"


def test_under_celery_staging_must_be_set_to_shared_storage(celery, monkeypatch, tmp_path):
    from threshold_operators.executor import PerHostStorageError
    from threshold_operators.extract import staging

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW__STOREFENCE__STORAGE_URL", raising=False)
    with pytest.raises(PerHostStorageError, match=r"storage_url is not set.*AIRFLOW__STOREFENCE__STORAGE_URL"):
        staging.staging_dir("run-1", "shop_api", "orders")
    monkeypatch.setenv("AIRFLOW__STOREFENCE__STORAGE_URL", f"file://{tmp_path / 'shared'}")
    assert staging.staging_dir("run-1", "shop_api", "orders") == tmp_path / "shared" / "staging" / "run-1" / "shop_api" / "orders"


def test_under_celery_a_relative_drop_folder_needs_a_shared_root(celery, monkeypatch, tmp_path):
    from threshold_operators.executor import PerHostStorageError
    from threshold_operators.extract.file_drop import drop_folder
    from threshold_operators.extract.sources import load_sources

    spec = next(s for s in load_sources()[0] if s.type == "file")
    monkeypatch.delenv("AIRFLOW__STOREFENCE__DROPS_ROOT", raising=False)
    with pytest.raises(PerHostStorageError, match="drops_root"):
        drop_folder(spec)
    monkeypatch.setenv("AIRFLOW__STOREFENCE__DROPS_ROOT", str(tmp_path / "mnt"))
    assert drop_folder(spec) == tmp_path / "mnt" / spec.folder


def test_setup_under_celery_refuses_a_duckdb_warehouse_at_the_start(tmp_path):
    """`storefence airflow-setup`, the deployment's first step, refuses before any DAG runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__EXECUTOR="CeleryExecutor", PYTHONPATH=str(REPO / "plugins"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW_CONN_STOREFENCE_WAREHOUSE=json.dumps({"conn_type": "duckdb", "host": "w.duckdb"}))
    done = subprocess.run([sys.executable, "-m", "threshold_operators.cli", "airflow-setup"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "connection 'storefence_warehouse' is the DuckDB file" in done.stderr
    assert not (tmp_path / "w.duckdb").exists()


# --- staging: the same code on a local folder and on an object store ------------------------------
@pytest.fixture(params=["local", "object"])
def storage_root(request, tmp_path):
    """A staging root on a local disk, and one on fsspec's in-memory object store through
    Airflow's ObjectStoragePath (what s3:// or gs:// are, without a network)."""
    if request.param == "local":
        yield tmp_path / "staging"
        return
    import secrets

    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import fs as airflow_fs
    from fsspec.implementations.memory import MemoryFileSystem

    schemes = airflow_fs._register_filesystems()  # what a provider's filesystem module adds, for memory://
    schemes["memory"] = lambda conn_id, options: MemoryFileSystem(**options)
    root = ObjectStoragePath(f"memory://sf-{secrets.token_hex(4)}/staging")
    try:
        yield root
        if root.exists():
            root.rmdir(recursive=True)
    finally:
        schemes.pop("memory", None)


def test_staging_round_trip_on_both_kinds_of_storage(storage_root):
    from threshold_operators.extract import staging

    folder = staging.staging_dir("manual__2026-09-29T10:00:00+00:00", "shop_api", "orders", storage_root)
    with pytest.raises(FileNotFoundError, match="no manifest, the fetch did not complete"):
        staging.read_manifest(folder)
    pages = [[{"order_id": f"o{i}", "note": "中文"} for i in range(5)], [{"order_id": "o9"}]]
    manifest = staging.write(folder, pages, {"source": "shop_api", "table": "orders", "run_id": "r",
                                             "updated_since": None, "updated_before": None}, part_rows=4,
                             now=datetime(2026, 9, 29, 10, tzinfo=UTC))
    with pytest.raises(FileNotFoundError):  # parts written, manifest not yet: not loadable
        staging.read_manifest(folder)
    staging.complete(folder, manifest)
    again = staging.read_manifest(folder)
    assert again.rows == 6 and again.parts == ["part-00001.jsonl", "part-00002.jsonl"]
    assert [r["order_id"] for part in staging.read_parts(folder, again) for r in part] == [
        "o0", "o1", "o2", "o3", "o4", "o9"]
    staging.remove(folder)
    assert not folder.exists()


def test_sweep_removes_only_old_runs_of_its_source(storage_root):
    from threshold_operators.extract import staging

    now = datetime(2026, 9, 30, 12, tzinfo=UTC)

    def stage(run, source, at, finished=True):
        folder = staging.staging_dir(run, source, "orders", storage_root)
        m = staging.write(folder, [[{"a": 1}]], {"source": source, "table": "orders", "run_id": run,
                                                 "updated_since": None, "updated_before": None}, now=at)
        if finished:
            staging.complete(folder, m)
        return folder

    old = stage("old", "shop_api", now - timedelta(days=3))
    died = stage("died", "shop_api", now - timedelta(days=5), finished=False)  # the fetch died: no manifest
    recent = stage("recent", "shop_api", now - timedelta(hours=1))
    other = stage("old", "ads_api", now - timedelta(days=3))
    removed = staging.sweep("shop_api", now, root=storage_root)
    assert len(removed) == 2
    assert not old.exists() and not died.exists()
    assert recent.exists() and other.exists()
    assert staging.sweep("shop_api", now, root=storage_root) == []


def _load_in_another_home(home: str, storage_url: str | None, run_id: str, q) -> None:
    """A load in a process of its own, with an Airflow home of its own (another worker)."""
    os.environ["AIRFLOW_HOME"] = home
    if storage_url:
        os.environ["AIRFLOW__STOREFENCE__STORAGE_URL"] = storage_url
    else:
        os.environ.pop("AIRFLOW__STOREFENCE__STORAGE_URL", None)
    try:
        from threshold_operators.extract import staging

        m = staging.read_manifest(staging.staging_dir(run_id, "shop_api", "orders"))
        q.put(("ok", m.rows))
    except Exception as exc:  # noqa: BLE001 - the outcome is the test's
        q.put(("error", str(exc)))


@pytest.mark.parametrize("shared", [False, True])
def test_a_load_on_another_worker_finds_the_fetch_only_through_shared_storage(shared, tmp_path, monkeypatch):
    from threshold_operators.extract import staging

    url = f"file://{tmp_path / 'shared'}" if shared else None
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "worker-fetch"))
    if url:
        monkeypatch.setenv("AIRFLOW__STOREFENCE__STORAGE_URL", url)
    else:
        monkeypatch.delenv("AIRFLOW__STOREFENCE__STORAGE_URL", raising=False)
    folder = staging.staging_dir("run-1", "shop_api", "orders")
    staging.complete(folder, staging.write(folder, [[{"a": 1}, {"a": 2}]], {
        "source": "shop_api", "table": "orders", "run_id": "run-1", "updated_since": None, "updated_before": None}))
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_load_in_another_home, args=(str(tmp_path / "worker-load"), url, "run-1", q))
    p.start()
    outcome = q.get(timeout=120)
    p.join(30)
    if shared:
        assert outcome == ("ok", 2)
    else:  # what the issue saw: the default is each worker's own disk
        assert outcome[0] == "error" and "no manifest, the fetch did not complete" in outcome[1]


# --- the schema, once ----------------------------------------------------------------------------
def _ensure_in_process(url: str, schema: str, what: str, q) -> None:
    try:
        if what == "warehouse":
            from threshold_operators.warehouse.hook import WarehouseHook
            from threshold_operators.warehouse.schema import ensure_schema

            hook = WarehouseHook(url=url, search_path=schema)
            created = ensure_schema(hook.engine)
            hook.engine.dispose()
        else:
            from threshold_operators.alerting.store import StateStore

            store = StateStore(url=url, schema=schema)
            store.create()
            created = []
            store.engine.dispose()
        q.put(("ok", len(created)))
    except Exception as exc:  # noqa: BLE001 - the outcome is the test's
        q.put(("error", f"{type(exc).__name__}: {exc}"))


@pytest.mark.postgres
@pytest.mark.parametrize("what", ["warehouse", "state"])
def test_workers_starting_at_once_set_the_schema_up_once(pg_schema, what):
    """Eight processes bring a new PostgreSQL schema up at the same moment: none fails (a bare
    CREATE TABLE IF NOT EXISTS race fails on pg_type's unique index), the tables are made once."""
    import sqlalchemy as sa

    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_ensure_in_process, args=(PG_ADMIN_URL, pg_schema, what, q)) for _ in range(8)]
    for p in procs:
        p.start()
    outcomes = [q.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(30)
    assert all(o[0] == "ok" for o in outcomes), outcomes
    if what == "warehouse":  # one of them created the tables, the others found them made
        assert sorted(o[1] for o in outcomes)[-1] > 0 and sum(o[1] > 0 for o in outcomes) == 1, outcomes
    engine = sa.create_engine(PG_ADMIN_URL)
    with engine.connect() as con:
        rows = con.execute(sa.text(f"SELECT component FROM {pg_schema}.storefence_schema")).scalars().all()
    engine.dispose()
    assert rows == [what]


def test_a_task_that_finds_the_schema_current_runs_no_ddl(tmp_path):
    import sqlalchemy as sa

    from threshold_operators.warehouse.hook import WarehouseHook
    from threshold_operators.warehouse.schema import create_schema, ensure_schema

    hook = WarehouseHook(url=f"duckdb:///{tmp_path / 'w.duckdb'}")
    assert "orders" in create_schema(hook.engine)
    statements = []
    sa.event.listen(hook.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    assert ensure_schema(hook.engine) == []
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT"), statements
    with hook.engine.begin() as con:  # a release that changes the tables is behind until set up once
        con.execute(sa.text("UPDATE storefence_schema SET version = 'older'"))
    statements.clear()
    ensure_schema(hook.engine)
    assert any("CREATE" in s.upper() for s in statements)
    with hook.engine.connect() as con:
        from threshold_operators.warehouse.schema import schema_version

        assert con.execute(sa.text("SELECT version FROM storefence_schema")).scalar() == schema_version()
    hook.engine.dispose()


# --- include/ of the DAG's bundle -------------------------------------------------------------------
PARSE_AND_READ = """
import json, runpy, sys
runpy.run_path(sys.argv[1])  # what a worker does first: parse the task's DAG file
from threshold_operators.bundle import include_dir, include_digest
from threshold_operators.rules.catalogue import load_catalogue
from threshold_operators.extract.sources import load_sources
rule = load_catalogue().get("inventory.stock_cover").rule
print(json.dumps({"include": str(include_dir()), "digest": include_digest(),
                  "red": rule.conditions[0].below["red"], "sources": sorted(s.source for s in load_sources()[0])}))
"""


def test_a_worker_reads_the_include_of_the_bundle_it_parsed(tmp_path):
    """Two checkouts of the pack (two bundle versions, or two workers' disks) with different
    thresholds: parsing a DAG file of each reads that checkout's rules, not the package's."""
    import shutil

    versions = {}
    for name, red in (("v1", None), ("v2", "2")):
        root = tmp_path / name
        shutil.copytree(REPO / "dags", root / "dags")
        shutil.copytree(REPO / "include", root / "include")
        if red:
            rules = root / "include" / "rules" / "inventory.yaml"
            text = rules.read_text(encoding="utf-8")
            assert "below: {blue: 15, yellow: 7, red: 3}" in text
            rules.write_text(text.replace("below: {blue: 15, yellow: 7, red: 3}", f"below: {{blue: 15, yellow: 7, red: {red}}}"),
                             encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFENCE_")}
        env.update(PYTHONPATH=str(REPO / "plugins"), AIRFLOW_HOME=str(tmp_path / "home"))
        done = subprocess.run([sys.executable, "-c", PARSE_AND_READ, str(root / "dags" / "storefence_alerts_inventory.py")],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        versions[name] = json.loads(done.stdout.strip().splitlines()[-1])
    assert versions["v1"]["include"] == str(tmp_path / "v1" / "include")
    assert versions["v2"]["include"] == str(tmp_path / "v2" / "include")
    assert (versions["v1"]["red"], versions["v2"]["red"]) == (3, 2)
    assert versions["v1"]["digest"] != versions["v2"]["digest"]
    assert versions["v1"]["sources"] == versions["v2"]["sources"] and "shop_api" in versions["v1"]["sources"]


def test_the_include_digest_is_the_same_for_the_same_files(tmp_path):
    import shutil

    from threshold_operators.bundle import PACKAGE_INCLUDE, include_digest

    shutil.copytree(PACKAGE_INCLUDE, tmp_path / "include")
    assert include_digest(tmp_path / "include") == include_digest(PACKAGE_INCLUDE)
    (tmp_path / "include" / "rules" / "sales.yaml").write_text("changed", encoding="utf-8")
    assert include_digest(tmp_path / "include") != include_digest(PACKAGE_INCLUDE)
