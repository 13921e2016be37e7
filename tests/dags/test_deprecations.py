"""No DeprecationWarning of ours: not in a task's log, not in the CLI or the API server.

pyproject's ``filterwarnings`` ignores DeprecationWarning for the whole suite (Airflow's own
imports emit many), so these tests record the warnings themselves, whatever the filters say, and
keep those our code causes: issued from a file under plugins/ or dags/, or issued by a library
function that our code called directly (``Connection.get_connection_from_secrets`` warns from
inside airflow/models/connection.py, about its caller).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import warnings
from pathlib import Path

import pytest

from tests.dags.test_dag_integrity import DAGS

REPO = Path(__file__).resolve().parents[2]
OURS = (str(REPO / "plugins") + "/", str(REPO / "dags") + "/")


def _ours(filename: str) -> bool:
    return filename.startswith(OURS)


@contextlib.contextmanager
def deprecations_of_ours():
    """Record every DeprecationWarning (and subclasses: Airflow's RemovedInAirflow4Warning...) that
    our code causes while the block runs, as ``(message, our file:line)``."""
    found: list[tuple[str, str]] = []
    original = warnings.warn

    def warn(message, category=None, stacklevel=1, source=None, **kwargs):
        cat = category or (type(message) if isinstance(message, Warning) else UserWarning)
        if issubclass(cat, DeprecationWarning | PendingDeprecationWarning):
            issuer = sys._getframe(1)
            frame = issuer
            while frame is not None and frame.f_code.co_filename == issuer.f_code.co_filename:
                frame = frame.f_back  # leave the module that warns: who called it?
            attributed = issuer
            for _ in range(max(stacklevel, 1) - 1):  # the frame the warning names (its stacklevel)
                attributed = attributed.f_back if attributed.f_back is not None else attributed
            for f in (attributed, frame):
                if f is not None and _ours(f.f_code.co_filename):
                    found.append((str(message), f"{f.f_code.co_filename.removeprefix(str(REPO) + '/')}:{f.f_lineno}"))
                    break
            else:  # the old connection lookup warns about its caller: noise in our task logs, whoever calls it
                if "get_connection_from_secrets" in str(message) and frame is not None:
                    found.append((str(message), f"{frame.f_code.co_filename}:{frame.f_lineno}"))
        return original(message, category, stacklevel + 1, source, **kwargs)

    warnings.warn = warn
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield found
        finally:
            warnings.warn = original
    found += [(str(w.message), f"{w.filename.removeprefix(str(REPO) + '/')}:{w.lineno}") for w in caught
              if issubclass(w.category, DeprecationWarning | PendingDeprecationWarning) and _ours(w.filename)]
    found[:] = sorted(set(found))


def test_the_recorder_sees_a_deprecated_call_of_ours(airflow_db):
    """The recorder works: the old lookup our code used to make is caught, inside a task."""
    from airflow.models.connection import Connection
    from airflow.sdk.execution_time import task_runner

    def old_lookup():  # stands in for our code: this file is not under plugins/, so pretend
        return Connection.get_connection_from_secrets("storefence_nothing")

    old_lookup.__code__ = old_lookup.__code__.replace(co_filename=str(REPO / "plugins" / "old_lookup.py"))
    had = getattr(task_runner, "SUPERVISOR_COMMS", None)
    task_runner.SUPERVISOR_COMMS = object()  # as in a task: get_connection_from_secrets warns there
    try:
        with deprecations_of_ours() as found, contextlib.suppress(Exception):
            old_lookup()
    finally:
        if had is None:
            del task_runner.SUPERVISOR_COMMS
        else:
            task_runner.SUPERVISOR_COMMS = had
    assert any("get_connection_from_secrets" in m and "old_lookup.py" in where for m, where in found), found


def _write_drop(airflow_home, now):
    import os

    from tests.dags.test_extract_dags import ITEMS_CSV, ORDERS_CSV

    drop = airflow_home / "storefence" / "drop" / "shop_exports"
    shutil.rmtree(drop, ignore_errors=True)
    drop.mkdir(parents=True)
    (drop / "orders_dep.csv").write_text(ORDERS_CSV, encoding="utf-8")
    (drop / "order_items_dep.csv").write_text(ITEMS_CSV, encoding="utf-8")
    (drop / "orders_empty.csv").write_text("", encoding="utf-8")
    finished = now.timestamp() - 3600  # written an hour before the task runs: finished
    for p in drop.glob("*.csv"):
        os.utime(p, (finished, finished))


def test_task_runs_cause_no_deprecation_warning(airflow_db, airflow_home, tmp_path, monkeypatch, pinned_now):
    """An extract DAG (file drop, quality gate, load, the rejected-file message) and an alert DAG
    (check, notify, deliver with acknowledge links through HTTP and SMTP connections to a local
    inbox) run with dag.test(): no DeprecationWarning of ours, and no caller of the old
    ``Connection.get_connection_from_secrets`` (ours or a provider's)."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_alert_dags import TEST_RULES, _load_orders
    from threshold_operators.warehouse.hook import WarehouseHook

    monkeypatch.setenv("AIRFLOW__STOREFENCE__STORAGE_URL", str(tmp_path))
    monkeypatch.setenv("STOREFENCE_RULES_DIR", str(TEST_RULES / "rules"))
    monkeypatch.setenv("STOREFENCE_SQL_DIR", str(TEST_RULES / "sql"))
    path = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_WAREHOUSE", json.dumps({"conn_type": "duckdb",
                                                                        "host": str(tmp_path / "extracted.duckdb")}))
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_STATE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "s.sqlite")}))
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_ACK", json.dumps(
        {"conn_type": "http", "host": "https://airflow.example.com", "password": "ack-secret"}))
    _write_drop(airflow_home, pinned_now)
    from threshold_operators.alerting.local_inbox import LocalInbox
    from threshold_operators.alerting.routing import load_routing

    inbox = LocalInbox().__enter__()  # notify delivers for real: HttpHook and SmtpHook in the task
    for variable, value in inbox.connections(load_routing(), []).items():
        monkeypatch.setenv(variable, value)

    from datetime import timedelta

    hook = WarehouseHook(url=f"duckdb:///{path}")
    t0 = pinned_now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    _load_orders(hook, {t0 + i * timedelta(hours=1): 12 for i in range(5)})  # a live breach, whatever the hour
    hook.engine.dispose()

    with deprecations_of_ours() as found:
        bag = DagBag(dag_folder=str(DAGS / "storefence_extract.py"))
        extract = bag.get_dag("storefence_extract_shop_exports").test()
        monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_WAREHOUSE", json.dumps({"conn_type": "duckdb", "host": str(path)}))
        alerts = DagBag(dag_folder=str(DAGS / "storefence_alerts_sales.py")).get_dag("storefence_alerts_sales").test()
    assert {ti.task_id: ti.state for ti in extract.get_task_instances()} == {
        "fetch_orders": "success", "load_orders": "success", "fetch_order_items": "success",
        "load_order_items": "success", "publish": "success"}
    assert "sales.high: breach, 1 firing" in {ti.rendered_map_index for ti in alerts.get_task_instances()
                                             if ti.task_id == "notify" and ti.state == "success"}
    inbox.__exit__(None, None, None)
    assert inbox.http, "nothing delivered: the channels' connection lookups were not exercised"
    shutil.rmtree(airflow_home / "storefence" / "drop" / "shop_exports")
    assert found == []


def test_lookups_outside_a_task_cause_no_deprecation_warning(airflow_db, tmp_path, monkeypatch):
    """The CLI and the API server look connections up outside a task: the SDK's lookup (env
    variables, secrets backends), then the metadata DB, silently."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    from threshold_operators.alerting.ack_link import link_settings
    from threshold_operators.alerting.store import state_url
    from threshold_operators.connections import get_connection, in_task

    assert not in_task()
    monkeypatch.delenv("AIRFLOW_CONN_STOREFENCE_ACK", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_STOREFENCE_STATE", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_FROM_ENV", json.dumps({"conn_type": "http", "host": "env.example"}))
    with create_session() as s:  # made with `airflow connections add` or in the UI: in the metadata DB
        s.query(Connection).filter(Connection.conn_id == "storefence_ack").delete()
        s.add(Connection(conn_id="storefence_ack", conn_type="http", host="https://db.example.com", password="k"))
    try:
        with deprecations_of_ours() as found:
            assert link_settings().base_url == "https://db.example.com"
            assert get_connection("storefence_from_env").host == "env.example"
            assert state_url().startswith("sqlite:///")
            with pytest.raises(Exception, match="isn't defined"):
                get_connection("storefence_nowhere")
        assert found == []
    finally:
        with create_session() as s:
            s.query(Connection).filter(Connection.conn_id == "storefence_ack").delete()


def test_the_simulator_causes_no_deprecation_warning(tmp_path):
    """`make demo` starts by simulating the shop (pandas: DatetimeIndex.weekday is deprecated)."""
    from tests.conftest import SHOP_END
    from threshold_operators.simulator.run import SimulationSpec, simulate
    from threshold_operators.warehouse.hook import WarehouseHook

    hook = WarehouseHook(url=f"duckdb:///{tmp_path / 'shop.duckdb'}")
    with deprecations_of_ours() as found:
        simulate(SimulationSpec(shops=1, skus=24, days=2, orders_per_day=50, incidents="none", end=SHOP_END, seed=3), hook)
    hook.engine.dispose()
    assert found == []


PLUGIN_SCAN = ("import sys\n"
               "sys.modules['airflow_local_settings'] = None  # the control: Airflow without our local settings\n"
               "from airflow.sdk.plugins_manager import integrate_macros_plugins\n"
               "integrate_macros_plugins()\n"
               "print('scanned')\n")


@pytest.mark.slow
def test_a_task_process_logs_no_gitwildmatch_deprecation(airflow_db, airflow_home, tmp_path):
    """Airflow's plugin scan reads plugins/.airflowignore with pathspec's deprecated
    GitWildMatchPattern; plugins/airflow_local_settings.py filters exactly that warning. A real
    ``airflow tasks test`` (Airflow's warning filters, not pytest's) shows none; the same scan
    without the local settings shows it (the check can see the warning)."""
    import os
    import subprocess

    env = {**os.environ, "AIRFLOW_HOME": str(airflow_home), "PYTHONWARNINGS": "",
           "AIRFLOW_CONN_STOREFENCE_STATE": json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "s.sqlite")})}
    env.pop("PYTHONPATH", None)  # as a deployment runs: the plugins folder reaches sys.path through Airflow
    control = subprocess.run([sys.executable, "-c", PLUGIN_SCAN], capture_output=True, text=True, timeout=120,
                             env=env, cwd=tmp_path)
    assert "scanned" in control.stdout, control.stderr[-2000:]
    assert "GitWildMatchPattern" in control.stdout + control.stderr  # Airflow's own call, without the filter

    airflow = str(Path(sys.executable).with_name("airflow"))
    run = subprocess.run([airflow, "tasks", "test", "storefence_escalation", "escalate_and_deliver"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0 and "released 0" in out, out[-3000:]
    assert "GitWildMatchPattern" not in out and "gitwildmatch" not in out
