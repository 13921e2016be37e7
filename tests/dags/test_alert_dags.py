"""The alert DAGs: one per domain from the rule files, run for real with dag.test().

The runs use the engine tests' purpose-built rules (tests/engine/testdata) on a DuckDB warehouse
with hand-made orders, so each outcome is known: a live breach, a shadow breach, nothing, an
unreachable warehouse.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.dags.test_dag_integrity import DAGS
from tests.engine.test_engine_sql import _load_orders

REPO = Path(__file__).resolve().parents[2]
TEST_RULES = REPO / "tests" / "engine" / "testdata"
DOMAINS = ("sales", "inventory", "customer", "traffic", "finance", "compound")
H = timedelta(hours=1)
# The data's time: 10:00 in Asia/Shanghai, so a window of a few hours holds no shop-local midnight
# and the day-grain rule has no day to complete. Time is an input: the runs read the wall clock only
# for when things happened (the tests under several clocks: tests/test_clocks.py).
T0 = datetime(2026, 9, 10, 2, tzinfo=UTC)


def _bag(path=DAGS):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(path))


def test_one_dag_per_domain_with_one_evaluate_task_and_a_notify_mapped_over_the_rules_with_news(airflow_db):
    from airflow.sdk import AssetOrTimeSchedule
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from threshold_operators.rules.catalogue import load_catalogue

    bag = _bag()
    catalogue = load_catalogue()
    for domain in DOMAINS:
        dag = bag.get_dag(f"storefence_alerts_{domain}")
        rules = catalogue.domain(domain)
        assert {t.task_id for t in dag.tasks} == {"evaluate", "notify"}  # two processes a cycle, whatever the rules
        assert isinstance(dag.timetable, AssetOrTimeSchedule)
        evaluate, notify = dag.get_task("evaluate"), dag.get_task("notify")
        assert evaluate.rule_ids == [r.id for r in rules] and evaluate.downstream_task_ids == {"notify"}
        assert evaluate.retries == 3 and evaluate.pool == "storefence_warehouse"
        assert evaluate.keep_results is None  # the rules' history: record.KEEP_RESULTS (90 days)
        # the task's own failure (no rule evaluated at all) reaches the data engineers
        assert [type(c).__name__ for c in evaluate.on_failure_callback] == ["StorefenceNotifier"]
        assert isinstance(notify, MappedOperator) and notify.partial_kwargs["retries"] == 2
        assert notify.partial_kwargs.get("pool", "default_pool") == "default_pool"  # the state store only
        assert notify.partial_kwargs["map_index_template"] == "{{ rule_outcome }}"  # the rule's name in the grid
    sales = bag.get_dag("storefence_alerts_sales")
    # one run per extract cycle: every source feeding its fact tables (orders come from the API and
    # the file drop), never the per-table Assets
    assert type(sales.timetable.asset_condition).__name__ == "AssetAll"
    assert {a.name for a in sales.timetable.asset_condition.objects} == {"storefence.source.shop_api",
                                                                         "storefence.source.shop_exports"}
    customer = bag.get_dag("storefence_alerts_customer")
    assert {a.name for a in customer.timetable.asset_condition.objects} == {"storefence.source.shop_api",
                                                                            "storefence.source.reviews_api"}
    assert sales.timetable.timetable.expression == "10 * * * *"  # the fallback when no extract lands


def test_a_dag_file_sets_how_long_the_rules_history_is_kept(airflow_db):
    from datetime import timedelta

    from threshold_operators.alerts.dag_factory import build_alert_dag

    dag = build_alert_dag("sales", keep_results=timedelta(days=7))
    assert dag.get_task("evaluate").keep_results == timedelta(days=7)


def test_a_broken_rule_file_breaks_only_its_own_domains_dag(airflow_db, tmp_path, monkeypatch):
    rules, sql = tmp_path / "rules", tmp_path / "sql"
    shutil.copytree(REPO / "include" / "rules", rules)
    shutil.copytree(REPO / "include" / "sql", sql)
    text = (rules / "finance.yaml").read_text(encoding="utf-8")
    (rules / "finance.yaml").write_text(text.replace("    query: ", "    thresold: 3\n    query: ", 1),
                                        encoding="utf-8")
    monkeypatch.setenv("STOREFENCE_RULES_DIR", str(rules))
    monkeypatch.setenv("STOREFENCE_SQL_DIR", str(sql))
    bag = _bag()
    assert set(bag.import_errors) == {str(DAGS / "storefence_alerts_finance.py")}
    message = bag.import_errors[str(DAGS / "storefence_alerts_finance.py")]
    line = next(i for i, t in enumerate(text.splitlines()) if t.startswith("    query: ")) + 1
    assert f"finance.yaml:{line}: rules.0.thresold: unknown field" in message
    assert {f"storefence_alerts_{d}" for d in DOMAINS if d != "finance"} <= set(bag.dag_ids)
    assert "storefence_alerts_finance" not in bag.dag_ids


@pytest.fixture
def test_rules_dags(airflow_db, monkeypatch, tmp_path):
    monkeypatch.setenv("STOREFENCE_RULES_DIR", str(TEST_RULES / "rules"))
    monkeypatch.setenv("STOREFENCE_SQL_DIR", str(TEST_RULES / "sql"))
    path = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_WAREHOUSE", json.dumps({"conn_type": "duckdb", "host": str(path)}))
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_STATE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "state.sqlite")}))
    bag = _bag(DAGS / "storefence_alerts_sales.py")
    assert bag.import_errors == {}
    return bag.get_dag("storefence_alerts_sales"), path


def _states(run) -> dict[str, str]:
    """task id (a notify instance: ``notify[<rule id>]``) -> state."""
    return {ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.rendered_map_index.split(':')[0]}]": str(ti.state)
            for ti in run.get_task_instances()}


def _xcom(run, task_id, key="return_value"):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(XComModel.get_many(run_id=run.run_id, key=key, task_ids=task_id,
                                                 dag_ids=run.dag_id)).scalar_one_or_none()
        return XComModel.deserialize_value(row) if row is not None else None


def _evaluations(run) -> dict[str, dict]:
    """rule id -> the evaluate task's summary of it (every rule, told or not)."""
    return _xcom(run, "evaluate", "evaluations")


def _notified(run) -> dict[str, dict]:
    """rule id -> what its notify instance returned."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(XComModel.get_many(run_id=run.run_id, key="return_value", task_ids="notify",
                                                  dag_ids=run.dag_id, map_indexes=None)).scalars().all()
        values = [XComModel.deserialize_value(r) for r in rows]
    return {v["rule_id"]: v for v in values if v}


@pytest.mark.clock_sensitive  # a DAG run: its tasks read the wall clock
def test_a_breach_is_told_by_the_rules_own_notify_instance_and_a_quiet_rule_starts_none(test_rules_dags):
    from threshold_operators.warehouse.hook import WarehouseHook

    dag, path = test_rules_dags
    hook = WarehouseHook(url=f"duckdb:///{path}")
    t0 = T0  # the window comes from the landed data, never from the wall clock
    _load_orders(hook, {t0 + i * H: 12 for i in range(4)} | {t0 + 4 * H: 1})
    hook.engine.dispose()

    run = dag.test()
    # one notify instance, the live breach's, named after it; a shadow breach and a quiet rule start none
    assert _states(run) == {"evaluate": "success", "notify[sales.high]": "success"}
    [notify] = [ti for ti in run.get_task_instances() if ti.task_id == "notify"]
    assert notify.rendered_map_index == "sales.high: breach, 1 firing"
    evaluations = _evaluations(run)  # every rule's outcome, told or not
    assert {r: e["outcome"] for r, e in evaluations.items()} == {
        "sales.high": "breach", "sales.spike_from_nothing": "breach", "sales.drop": "ok", "sales.daily": "ok"}
    assert [e["rule_id"] for e in _xcom(run, "evaluate")] == ["sales.high"]  # what notify is mapped over

    evaluation = evaluations["sales.high"]
    assert evaluation["outcome"] == "breach" and evaluation["firing"] == 1
    assert evaluation["window_start"] == (t0 + 3 * H).isoformat() and evaluation["window_end"] == (t0 + 4 * H).isoformat()
    note = _notified(run)["sales.high"]
    assert note["events"] == {"fired": 1} and note["queued"] == 2

    with WarehouseHook(url=f"duckdb:///{path}").engine.connect() as con:
        recorded = con.execute(sa.text("SELECT rule_id, outcome, mode, firing FROM rule_evaluations ORDER BY rule_id")).all()
        results = con.execute(sa.text("SELECT rule_id, state, severity, value, threshold FROM rule_results "
                                      "ORDER BY rule_id")).all()
    assert ("sales.high", "breach", "live", 1) in recorded
    assert ("sales.spike_from_nothing", "breach", "shadow", 1) in recorded
    assert [(r[1], r[2], float(r[3]), float(r[4])) for r in results if r[0] == "sales.high"] == [("firing", "red", 12, 10)]
    # the shadow rule's breach is kept too (a zero baseline: the ratio has no value, the threshold is kept)
    assert [(r[1], r[2], r[3]) for r in results if r[0] == "sales.spike_from_nothing"] == [("firing", "yellow", None)]

    from threshold_operators.alerting.store import StateStore

    outbox = StateStore().notifications()
    assert [r["event"] for r in outbox] == ["fired", "fired"]  # sales.high, red, owner "test": 2 channels
    assert {r["route"] for r in outbox} == {"team_hook", "team_sms"}
    text = outbox[0]["payload"]["text_en"]
    # the shop by its name from the warehouse (engine.names), its key kept small
    assert "- [red] Shop s1: orders 12" in text and "What to do:" in text and "threshold 10" in text
    # no connection defined for the test's channels: kept pending (with back-off) until there is one
    assert {r["status"] for r in outbox} == {"pending"} and "no sender configured" in outbox[0]["last_error"]

    again = dag.test()  # no new data: every rule is up to date, nothing fires twice, no notify instance
    assert _states(again) == {"evaluate": "success", "notify": "skipped"}
    assert {e["outcome"] for e in _evaluations(again).values()} == {"up_to_date"}


@pytest.mark.clock_sensitive  # a DAG run: its tasks read the wall clock
def test_an_unreachable_warehouse_is_an_error_not_a_breach(test_rules_dags, monkeypatch, tmp_path):
    dag, _ = test_rules_dags
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_WAREHOUSE", json.dumps(
        {"conn_type": "duckdb", "host": str(tmp_path / "no" / "such" / "dir" / "w.duckdb")}))
    dag.get_task("evaluate").attempts = 1  # the task tries 3 times with a pause; the test wants the outcome now
    run = dag.test()
    # the evaluate task ends (each rule's error is its recorded outcome); each rule's notify tells it and fails
    states = _states(run)
    assert states == {"evaluate": "success"} | {f"notify[sales.{r}]": "failed"
                                                 for r in ("high", "spike_from_nothing", "drop", "daily")}
    evaluation = _evaluations(run)["sales.high"]
    assert evaluation["outcome"] == "error" and evaluation["error"]["kind"] == "infrastructure"
    from threshold_operators.alerting.store import StateStore

    outbox = StateStore().notifications()  # to the data engineers, not the rule's owner; once per rule
    assert {r["route"] for r in outbox} == {"data_hook", "email"} and len(outbox) == 2 * 4
    high = [r for r in outbox if "sales.high" in r["payload"]["text_en"]]
    assert "not evaluated" in high[0]["payload"]["title_en"] and "infrastructure" in high[0]["payload"]["text_en"]


@pytest.mark.clock_sensitive  # a DAG run: its tasks read the wall clock
def test_a_run_with_a_window_in_its_conf_backfills_that_window(test_rules_dags):
    from threshold_operators.warehouse.hook import WarehouseHook

    dag, path = test_rules_dags
    hook = WarehouseHook(url=f"duckdb:///{path}")
    t0 = T0 - 24 * H  # a fixed day: a window built from the wall clock met a shop-local midnight at some hours
    _load_orders(hook, {t0 + i * H: 12 for i in range(4)} | {t0 + 20 * H: 1})
    hook.engine.dispose()
    window = {"window_start": t0.isoformat(), "window_end": (t0 + 6 * H).isoformat()}
    run = dag.test(run_conf=window)
    evaluation = _evaluations(run)["sales.high"]
    assert (evaluation["window_start"], evaluation["window_end"]) == (window["window_start"], window["window_end"])
    assert evaluation["firing"] == 1 and evaluation["detail"] == "explicit window"
    assert _states(run)["notify[sales.high]"] == "success"
    from threshold_operators.alerting.store import StateStore

    queued = [r["event"] for r in StateStore().notifications()]
    assert queued == ["fired", "fired", "resolved", "resolved"]  # fired at t0+1h, resolved by t0+4h; 2 channels
    again = dag.test(run_conf=window)  # the same backfill again: the alert already knows that data
    assert _evaluations(again)["sales.high"]["firing"] == 1
    assert [r["event"] for r in StateStore().notifications()] == queued  # nothing queued twice
