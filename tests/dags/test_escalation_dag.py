"""The storefence_escalation DAG and the StorefenceNotifier callback, run for real with dag.test()
against a DingTalk robot on loopback and a state store of the test's own."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.alerting.dingtalk_receiver import DingTalkReceiver
from tests.dags.test_alert_dags import _bag, _states
from threshold_operators.alerting.store import StateStore

pytestmark = pytest.mark.clock_sensitive  # reads the wall clock (tests/test_clocks.py)


@pytest.fixture
def state(tmp_path, monkeypatch, airflow_db):
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_STATE", json.dumps({"conn_type": "generic",
                                                                    "extra": {"sqlalchemy_url": url}}))
    store = StateStore()
    store.create()
    yield store
    store.engine.dispose()


@pytest.fixture
def robot(monkeypatch):
    with DingTalkReceiver() as r:
        for conn in ("DINGTALK_OPS", "DINGTALK_TECH"):
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn}", json.dumps({"conn_type": "http", "host": r.url,
                                                                   "password": "robot-token",
                                                                   "extra": {"secret": "SEC-robot-secret"}}))
        yield r


def test_the_dag_runs_every_two_minutes_outside_the_warehouse_pool(airflow_db):
    dag = _bag().dags["storefence_escalation"]
    assert [t.task_id for t in dag.tasks] == ["escalate_and_deliver"]
    assert dag.timetable.expression == "*/2 * * * *" and dag.max_active_runs == 1
    assert dag.tasks[0].pool == "default_pool"


def test_a_run_delivers_what_is_pending_once(state, robot, pinned_now):
    now = pinned_now
    state.enqueue(key="k1", fingerprint="f1", event="fired", level=1, route="ops_dingtalk",
                  payload={"title": "[red] 爆单且库存告急", "text": "SKU-1: 库存仅够 5 小时", "mentions": ["13800000003"]},
                  now=now - timedelta(minutes=1))
    dag = _bag().dags["storefence_escalation"]
    run = dag.test()
    assert _states(run) == {"escalate_and_deliver": "success"}
    assert [m["markdown"]["title"] for m in robot.received] == ["[red] 爆单且库存告急"]
    assert state.notifications()[0]["status"] == "sent"
    dag.test()  # the next run: nothing pending, nothing sent again
    assert len(robot.received) == 1
