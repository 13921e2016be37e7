"""DomainEvaluateOperator: a domain's rules in one task, every failure a recorded outcome.

The operator runs in-process here (``execute`` with the two things of the context it reads) on
a real DuckDB warehouse and the engine tests' rules; the DAG around it is run by
tests/dags/test_alert_dags.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.dags.test_alert_dags import TEST_RULES
from tests.engine.test_engine_sql import _load_orders
from threshold_operators.operators.domain_evaluate import DomainEvaluateOperator, has_news, report

H = timedelta(hours=1)
T0 = datetime(2026, 9, 10, 2, tzinfo=UTC)
RULES = ["sales.high", "sales.drop", "sales.daily", "sales.spike_from_nothing"]


class _TI:
    def __init__(self):
        self.xcom = {}

    def xcom_push(self, key, value):
        self.xcom[key] = value


@pytest.fixture
def warehouse(monkeypatch, tmp_path):
    from threshold_operators.warehouse.hook import WarehouseHook

    monkeypatch.setenv("STOREFENCE_RULES_DIR", str(TEST_RULES / "rules"))
    monkeypatch.setenv("STOREFENCE_SQL_DIR", str(TEST_RULES / "sql"))
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_STATE",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "state.sqlite")}))
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    hook = WarehouseHook(url=url)
    _load_orders(hook, {T0 + i * H: 12 for i in range(4)} | {T0 + 4 * H: 1})  # sales.high breaches
    hook.engine.dispose()
    return url


def _operator(url, rule_ids, **kwargs):
    from threshold_operators.warehouse.hook import WarehouseHook

    class OnFile(DomainEvaluateOperator):
        def get_db_hook(self):
            return WarehouseHook(url=url)

    return OnFile(task_id="evaluate", rule_ids=rule_ids, retry_pause=0, **kwargs)


def test_every_rule_of_the_domain_on_one_session_and_only_the_news_is_returned(warehouse):
    ti = _TI()
    told = _operator(warehouse, RULES).execute({"ti": ti, "run_id": "r1"})
    assert [s["rule_id"] for s in told] == ["sales.high"]  # the live breach; the shadow's is only recorded
    evaluations = ti.xcom["evaluations"]
    assert list(evaluations) == RULES
    assert evaluations["sales.high"]["outcome"] == "breach" and evaluations["sales.spike_from_nothing"]["outcome"] == "breach"
    engine = sa.create_engine(warehouse)
    with engine.connect() as con:  # each rule's cycle recorded, as its own task would
        recorded = dict(con.execute(sa.text("SELECT rule_id, outcome FROM rule_evaluations")).all())
    engine.dispose()  # (a pooled connection would hold the file open in this process)
    assert recorded["sales.high"] == "breach" and recorded["sales.drop"] == "ok"
    again = _TI()
    assert _operator(warehouse, RULES).execute({"ti": again, "run_id": "r2"}) == []  # nothing new: nothing told
    assert {s["outcome"] for s in again.xcom["evaluations"].values()} == {"up_to_date"}


def test_an_error_is_the_rules_outcome_and_the_next_rule_is_still_evaluated(warehouse, monkeypatch):
    from threshold_operators.operators import threshold_check

    real, calls = threshold_check.evaluate_rule, []

    def flaky(hook, loaded, *args, **kwargs):  # the connection drops: twice for sales.high, always for sales.drop
        calls.append(loaded.id)
        if loaded.id == "sales.drop" or (loaded.id == "sales.high" and calls.count("sales.high") <= 2):
            raise sa.exc.OperationalError("SELECT 1", {}, ConnectionResetError("connection reset by peer"))
        return real(hook, loaded, *args, **kwargs)

    monkeypatch.setattr(threshold_check, "evaluate_rule", flaky)
    ti = _TI()
    told = _operator(warehouse, ["sales.high", "sales.drop", "sales.nope", "sales.daily"]).execute(
        {"ti": ti, "run_id": "r1"})
    assert calls == ["sales.high"] * 3 + ["sales.drop"] * 3 + ["sales.daily"]  # 3 tries, then the next rule
    evaluations = ti.xcom["evaluations"]
    assert evaluations["sales.high"]["outcome"] == "breach"  # the third try went through
    assert evaluations["sales.drop"]["outcome"] == "error" and evaluations["sales.drop"]["error"]["kind"] == "infrastructure"
    assert "connection reset by peer" in evaluations["sales.drop"]["error"]["message"]
    assert evaluations["sales.nope"]["error"]["kind"] == "rule"  # not in the catalogue: told, not a crash
    assert evaluations["sales.daily"]["outcome"] == "ok"  # evaluated after the two errors
    assert [s["rule_id"] for s in told] == ["sales.high", "sales.drop", "sales.nope"]


def test_a_rule_error_is_not_tried_again(warehouse, monkeypatch):
    from threshold_operators.operators import threshold_check

    calls = []

    def rejected(hook, loaded, *args, **kwargs):
        calls.append(loaded.id)
        raise sa.exc.ProgrammingError("SELECT nope", {}, Exception("Binder Error: column nope not found"))

    monkeypatch.setattr(threshold_check, "evaluate_rule", rejected)
    ti = _TI()
    _operator(warehouse, ["sales.high"]).execute({"ti": ti, "run_id": "r1"})
    assert calls == ["sales.high"] and ti.xcom["evaluations"]["sales.high"]["error"]["kind"] == "rule"


def _recorded(url) -> dict[str, str]:
    engine = sa.create_engine(url)
    with engine.connect() as con:
        got = dict(con.execute(sa.text("SELECT rule_id, outcome FROM rule_evaluations")).all())
    engine.dispose()
    return got


def test_the_domains_cycles_are_recorded_in_one_transaction(warehouse, monkeypatch):
    from threshold_operators.engine import record as record_module

    real, batches = record_module.record_many, []

    def spy(hook, evaluated, run_id):
        batches.append(sorted(rule.id for _, rule in evaluated))
        return real(hook, evaluated, run_id)

    monkeypatch.setattr(record_module, "record_many", spy)
    _operator(warehouse, RULES).execute({"ti": _TI(), "run_id": "r1"})
    assert batches == [sorted(RULES)]  # one write for the four rules (record() would be one each)
    assert set(_recorded(warehouse)) == set(RULES)


def test_a_failed_domain_record_falls_back_to_each_rule_and_loses_only_the_failing_one(warehouse, monkeypatch):
    """The transaction of the domain's records fails (a rule's row the warehouse refuses): each
    rule is recorded alone; the one whose record fails is an error outcome, told; the others are
    recorded and told as they were; the next cycle takes the failed rule's window again."""
    from threshold_operators.engine import record as record_module

    real_many, real_record = record_module.record_many, record_module.record

    def refused(hook, evaluated, run_id):
        raise sa.exc.IntegrityError("INSERT INTO rule_evaluations", {}, Exception("Constraint Error: value too long"))

    def record(hook, ev, rule, run_id):
        if rule.id == "sales.drop":
            raise sa.exc.IntegrityError("INSERT INTO rule_evaluations", {}, Exception("Constraint Error: value too long"))
        return real_many(hook, [(ev, rule)], run_id)

    monkeypatch.setattr(record_module, "record_many", refused)
    monkeypatch.setattr(record_module, "record", record)
    ti = _TI()
    told = _operator(warehouse, RULES).execute({"ti": ti, "run_id": "r1"})
    evaluations = ti.xcom["evaluations"]
    assert evaluations["sales.drop"]["outcome"] == "error" and evaluations["sales.drop"]["error"]["kind"] == "rule"
    assert evaluations["sales.drop"]["error"]["message"].startswith(
        "sales.drop: evaluated, but its cycle could not be recorded: IntegrityError")
    assert "value too long" in evaluations["sales.drop"]["error"]["message"]
    assert evaluations["sales.high"]["outcome"] == "breach"
    assert {s["rule_id"] for s in told} == {"sales.high", "sales.drop"}
    assert set(_recorded(warehouse)) == set(RULES) - {"sales.drop"}
    monkeypatch.setattr(record_module, "record", real_record)
    monkeypatch.setattr(record_module, "record_many", real_many)
    again = _TI()
    _operator(warehouse, RULES).execute({"ti": again, "run_id": "r2"})
    assert again.xcom["evaluations"]["sales.drop"]["outcome"] == "ok"  # its window, evaluated again
    assert again.xcom["evaluations"]["sales.high"]["outcome"] == "up_to_date"
    assert set(_recorded(warehouse)) == set(RULES)


def test_what_has_news():
    quiet = {"rule_id": "r", "mode": "live", "outcome": "ok", "firing": 0, "breaches": [], "resolved_entities": [],
             "failing_tables": {}, "gates_checked": ["orders"]}
    assert not has_news(quiet, set())
    assert not has_news(quiet | {"outcome": "up_to_date"}, set())
    assert has_news(quiet, {"orders"})  # its passing gate resolves the open gate alert
    assert not has_news(quiet, {"reviews"})
    assert has_news(quiet | {"outcome": "breach", "firing": 1, "breaches": [{}]}, set())
    assert not has_news(quiet | {"mode": "shadow", "outcome": "breach", "firing": 1, "breaches": [{}]}, set())
    assert has_news(quiet | {"resolved_entities": ["shop_id=s1"]}, set())
    assert has_news(quiet | {"failing_tables": {"orders": {"kind": "quality"}}}, set())
    assert has_news({"rule_id": "r", "mode": "live", "outcome": "error", "error": {"kind": "rule", "message": "m"}}, set())


def test_the_logs_closing_table():
    text = report({"a.x": {"outcome": "breach", "firing": 2, "mode": "live"},
                   "a.y": {"outcome": "ok", "resolved": 1},
                   "a.z": {"outcome": "error", "error": {"kind": "rule", "message": "a.z: could not evaluate"}}},
                  {"a.x", "a.z"})
    assert text.splitlines() == ["3 rule(s) evaluated, 2 with something to tell:",
                                 "  -> a.x                                breach, 2 firing",
                                 "     a.y                                ok, 1 resolved",
                                 "  -> a.z                                error (rule): a.z: could not evaluate"]


@pytest.fixture
def rolling_warehouse(monkeypatch, tmp_path):
    """A DuckDB warehouse with 3 hours of orders and the engine tests' rolling rules, which read
    one rollup (``rollup_sales_orders_by_sku_slice``) through the shipped query."""
    import shutil

    from tests.engine.test_rolling import DATA, REPO, SHIPPED, _items, _load, _spread
    from threshold_operators.warehouse.hook import WarehouseHook

    sql = tmp_path / "sql"
    shutil.copytree(DATA / "sql", sql)
    for path in SHIPPED:
        (sql / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "include" / "sql" / path, sql / path)
    monkeypatch.setenv("STOREFENCE_RULES_DIR", str(DATA / "rules"))
    monkeypatch.setenv("STOREFENCE_SQL_DIR", str(sql))
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_STATE",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "state.sqlite")}))
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    hook = WarehouseHook(url=url)
    _load(hook, _items(_spread(T0, [1] * 36)))
    hook.engine.dispose()
    return url


ROLLING = ["sales.rolling_count", "sales.rolling_long"]


def test_the_domains_rollups_are_maintained_once_before_its_rules(rolling_warehouse, monkeypatch):
    """The rollups the domain's rules read are brought up to date before the first rule, in one
    call and one write; the rules find them held (no write of their own)."""
    from threshold_operators.engine import rollups

    real, calls = rollups.maintain_many, []

    def spy(hook, needs, now):
        done = real(hook, needs, now)
        calls.append([(m.rollup, m.rebuilt, m.earlier) for m in done])
        return done

    monkeypatch.setattr(rollups, "maintain_many", spy)
    ti = _TI()
    _operator(rolling_warehouse, ROLLING).execute({"ti": ti, "run_id": "r1"})
    assert calls[0] == [("rollup_sales_orders_by_sku_slice", True, False)]  # the domain's, first: built
    assert calls[1:] == [[("rollup_sales_orders_by_sku_slice", False, True)]] * len(ROLLING)  # each rule: held
    assert {s["outcome"] for s in ti.xcom["evaluations"].values()} <= {"ok", "breach"}


def test_when_the_domains_rollups_fail_each_rule_maintains_its_own(rolling_warehouse, monkeypatch):
    from threshold_operators.engine import rollups

    def broken(*args, **kwargs):
        raise RuntimeError("the rollups of the domain could not be maintained")

    monkeypatch.setattr(rollups, "maintain_cycle", broken)
    ti = _TI()
    _operator(rolling_warehouse, ROLLING).execute({"ti": ti, "run_id": "r1"})
    assert {s["outcome"] for s in ti.xcom["evaluations"].values()} <= {"ok", "breach"}  # logged, not an error
    engine = sa.create_engine(rolling_warehouse)
    with engine.connect() as con:  # the first rule built the rollup itself
        assert con.execute(sa.text("SELECT SUM(orders) FROM rollup_sales_orders_by_sku_slice")).scalar() == 36
    engine.dispose()


def test_the_history_is_pruned_once_a_day_when_the_windows_cross_midnight(warehouse, monkeypatch):
    """The cycle whose windows cross a UTC midnight (data time) prunes the domain's rules' history
    older than ``keep_results`` before its end; other cycles do not; a failed prune is logged."""
    from threshold_operators.engine import record as record_module
    from threshold_operators.engine.record import crosses_midnight

    assert crosses_midnight([{"window_start": "2026-09-09T23:55:00+00:00", "window_end": "2026-09-10T00:00:00+00:00"}])
    assert not crosses_midnight([{"window_start": "2026-09-10T00:00:00+00:00", "window_end": "2026-09-10T00:05:00+00:00"},
                                 {"rule_id": "x", "outcome": "error"}])
    calls = []
    monkeypatch.setattr(record_module, "prune", lambda hook, rule_ids, before: calls.append((rule_ids, before)) or (0, 0))
    _operator(warehouse, RULES).execute({"ti": _TI(), "run_id": "r1"})  # 02:00 .. 06:00: no midnight
    assert calls == []
    end = T0 + 4 * H
    _operator(warehouse, RULES, window_start="2026-09-09T22:00:00Z", window_end=end.isoformat(),
              keep_results=timedelta(days=30)).execute({"ti": _TI(), "run_id": "r2"})
    assert calls == [(RULES, end - timedelta(days=30))]

    def broken(*args):
        raise RuntimeError("the warehouse refused the delete")

    monkeypatch.setattr(record_module, "prune", broken)
    ti = _TI()
    _operator(warehouse, RULES, window_start="2026-09-09T22:00:00Z", window_end=end.isoformat()).execute(
        {"ti": ti, "run_id": "r3"})
    assert "error" not in {s["outcome"] for s in ti.xcom["evaluations"].values()}
    calls.clear()
    monkeypatch.setattr(record_module, "prune", lambda hook, rule_ids, before: calls.append((rule_ids, before)) or (0, 0))
    _operator(warehouse, RULES, window_start="2026-09-09T22:00:00Z", window_end=end.isoformat(),
              keep_results=timedelta(0)).execute({"ti": _TI(), "run_id": "r4"})  # never prune
    assert calls == []
