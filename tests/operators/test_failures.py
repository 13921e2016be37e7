"""The one place that tells a breach from an infrastructure error from a rule error, on real errors."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from threshold_operators.operators.failures import FailureKind, kind_of, raise_for


def _error_of(url: str, sql: str) -> BaseException:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            con.execute(sa.text(sql))
    except Exception as exc:  # noqa: BLE001 - the point is to capture it
        return exc
    finally:
        engine.dispose()
    raise AssertionError("no error")


def test_an_unreachable_duckdb_file_is_infrastructure(tmp_path):
    exc = _error_of(f"duckdb:///{tmp_path / 'missing' / 'dir' / 'w.duckdb'}", "SELECT 1")
    assert kind_of(exc) is FailureKind.INFRASTRUCTURE


def test_an_unreachable_postgres_is_infrastructure():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exc = _error_of(f"postgresql+psycopg2://postgres@127.0.0.1:{port}/test", "SELECT 1")
    assert kind_of(exc) is FailureKind.INFRASTRUCTURE


def test_sql_the_warehouse_rejects_is_a_rule_error(tmp_path):
    exc = _error_of(f"duckdb:///{tmp_path / 'w.duckdb'}", "SELECT no_such_column FROM (SELECT 1 AS a)")
    assert kind_of(exc) is FailureKind.RULE


def test_a_missing_connection_is_a_configuration_error():
    from threshold_operators.warehouse.hook import WarehouseConfigError

    assert kind_of(WarehouseConfigError("no connection")) is FailureKind.RULE


def test_each_kind_raises_what_makes_the_task_do_the_right_thing():
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    with pytest.raises(AirflowException, match=r"\[infrastructure, will retry\]") as info:
        raise_for(FailureKind.INFRASTRUCTURE, "x")
    assert not isinstance(info.value, AirflowFailException)
    with pytest.raises(AirflowFailException, match=r"\[rule or configuration error, not retried\]"):
        raise_for(FailureKind.RULE, "x")
    with pytest.raises(AirflowFailException, match=r"\[breach\]"):
        raise_for(FailureKind.BREACH, "x")
