"""WarehouseHook: connection resolution, one-line errors, and DuckDB's one-process lock."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from threshold_operators.warehouse.hook import (
    WarehouseConfigError,
    WarehouseHook,
    connect_duckdb,
    url_from_connection,
)


class FakeConn:
    """The fields of an Airflow Connection that url_from_connection reads."""

    def __init__(self, conn_type, host=None, schema=None, login=None, password=None, port=None, extra=None):
        self.conn_id = "storefence_warehouse"
        self.conn_type, self.host, self.schema = conn_type, host, schema
        self.login, self.password, self.port = login, password, port
        self.extra_dejson = extra or {}


def test_duckdb_connection_relative_path_is_under_airflow_home(airflow_home):
    assert url_from_connection(FakeConn("duckdb", host="/data/w.duckdb")) == "duckdb:////data/w.duckdb"
    assert url_from_connection(FakeConn("duckdb", host="w.duckdb")) == f"duckdb:///{airflow_home}/w.duckdb"


def test_postgres_connection_builds_a_psycopg2_url():
    url = url_from_connection(FakeConn("postgres", host="db", port=5433, login="u", password="p@ss", schema="shop"))
    assert url == "postgresql+psycopg2://u:p%40ss@db:5433/shop"


def test_any_sqlalchemy_url_in_extra_wins():
    assert url_from_connection(FakeConn("generic", extra={"sqlalchemy_url": "sqlite:///x.db"})) == "sqlite:///x.db"


def test_unusable_connection_type_is_one_line_naming_the_connection():
    with pytest.raises(WarehouseConfigError) as err:
        url_from_connection(FakeConn("http", host="x"))
    msg = str(err.value)
    assert "\n" not in msg and "storefence_warehouse" in msg and "'http'" in msg and "airflow connections add" in msg


def test_duckdb_connection_without_a_file_is_refused():
    with pytest.raises(WarehouseConfigError, match="names no file"):
        url_from_connection(FakeConn("duckdb"))


def test_missing_connection_says_how_to_set_it(airflow_db):
    with pytest.raises(WarehouseConfigError) as err:
        _ = WarehouseHook(warehouse_conn_id="storefence_nowhere").sqlalchemy_url
    msg = str(err.value)
    assert "\n" not in msg
    assert "'storefence_nowhere' is not defined" in msg and "AIRFLOW_CONN_STOREFENCE_NOWHERE" in msg


def test_connection_from_environment(monkeypatch, tmp_path, airflow_db):
    path = tmp_path / "env.duckdb"
    monkeypatch.setenv("AIRFLOW_CONN_SF_ENV_WH", json.dumps({"conn_type": "duckdb", "host": str(path)}))
    hook = WarehouseHook(warehouse_conn_id="sf_env_wh")
    assert hook.is_duckdb and hook.duckdb_path == str(path)
    with hook.engine.connect() as con:
        assert con.exec_driver_sql("SELECT 42").scalar_one() == 42


def test_connection_from_the_metadata_db(tmp_path, airflow_db):
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.add(Connection(conn_id="sf_db_wh", conn_type="duckdb", host=str(tmp_path / "db.duckdb")))
    assert WarehouseHook(warehouse_conn_id="sf_db_wh").duckdb_path == str(tmp_path / "db.duckdb")


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
    """
)


def _hold_lock(path, seconds):
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_duckdb_waits_for_another_process_to_release_the_file(tmp_path):
    path = tmp_path / "locked.duckdb"
    holder = _hold_lock(path, 1.5)
    started = time.monotonic()
    con = connect_duckdb(str(path), lock_timeout=30)
    waited = time.monotonic() - started
    con.close()
    holder.wait()
    assert waited > 0.5  # it really was locked, and we got in once it was released


def test_duckdb_lock_wait_gives_up_after_the_timeout(tmp_path):
    import duckdb

    path = tmp_path / "locked.duckdb"
    holder = _hold_lock(path, 5)
    try:
        with pytest.raises(duckdb.IOException, match="lock"):
            connect_duckdb(str(path), lock_timeout=0.3)
    finally:
        holder.kill()
        holder.wait()


def test_engine_holds_nothing_open_between_uses(tmp_path):
    """A second process can open the file as soon as a query through the hook is done."""
    path = tmp_path / "w.duckdb"
    hook = WarehouseHook(url=f"duckdb:///{path}")
    with hook.engine.begin() as con:
        con.exec_driver_sql("CREATE TABLE t AS SELECT 1 AS a")
    out = subprocess.run(
        [sys.executable, "-c", f"import duckdb; print(duckdb.connect({str(path)!r}).execute('select a from t').fetchone()[0])"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.stdout.strip() == "1", out.stderr


def test_postgres_search_path_keeps_tables_in_their_schema(pg_schema, pg_admin_url):
    hook = WarehouseHook(url=pg_admin_url, search_path=pg_schema)
    with hook.engine.begin() as con:
        con.exec_driver_sql("CREATE TABLE probe (a int)")
        where = con.exec_driver_sql("SELECT table_schema FROM information_schema.tables WHERE table_name = 'probe'").scalar_one()
        tz = con.exec_driver_sql("SHOW timezone").scalar_one()
    hook.engine.dispose()
    assert where == pg_schema and tz == "UTC"


@pytest.mark.postgres
def test_rules_run_as_the_evaluation_role_read_the_warehouse_and_no_server_file(pg_schema, pg_admin_url, pg_server,
                                                                              capsys):
    """A read-only transaction does not stop a superuser's pg_read_file; the evaluation role does."""
    import secrets

    import sqlalchemy as sa

    role = f"sf_checks_{secrets.token_hex(3)}"
    owner = WarehouseHook(url=pg_admin_url, search_path=pg_schema)
    with owner.engine.begin() as con:
        con.exec_driver_sql("CREATE TABLE orders (order_id text)")
        con.exec_driver_sql("INSERT INTO orders VALUES ('A-1')")
        con.exec_driver_sql(f"CREATE ROLE {role} NOLOGIN")
        con.exec_driver_sql(f"GRANT USAGE ON SCHEMA {pg_schema} TO {role}")
        con.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA {pg_schema} TO {role}")
    try:
        # the superuser of this test server: warned, and it could read a server file
        with owner.evaluation_connection() as con:
            assert con.execute(sa.text("SELECT pg_read_file('PG_VERSION')")).scalar_one().strip()
        logged = capsys.readouterr().out  # Airflow's hook logger writes through structlog
        assert "may read server files" in logged and "evaluation_role" in logged

        checks = WarehouseHook(url=pg_admin_url, search_path=pg_schema, evaluation_role=role)
        with checks.evaluation_connection() as con:
            assert con.execute(sa.text("SELECT current_user")).scalar_one() == role
            assert con.execute(sa.text("SELECT order_id FROM orders")).scalar_one() == "A-1"
        for forbidden in ("SELECT pg_read_file('PG_VERSION')", "SELECT count(*) FROM pg_authid"):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), \
                    checks.evaluation_connection() as con:
                con.execute(sa.text(forbidden))
        with checks.engine.connect() as con:  # extract and load keep the connection's own user
            assert con.execute(sa.text("SELECT current_user")).scalar_one() != role
        checks.engine.dispose()
        checks.evaluation_engine.dispose()
        with pytest.raises(WarehouseConfigError, match="evaluation_role"):
            _ = WarehouseHook(url=pg_admin_url, evaluation_role='x"; DROP TABLE orders; --').evaluation_role
    finally:
        owner.engine.dispose()
        owner.evaluation_engine.dispose()
        with pg_server.begin() as con:
            con.exec_driver_sql(f"DROP OWNED BY {role}")
            con.exec_driver_sql(f"DROP ROLE {role}")


def test_a_session_opens_the_file_once_and_releases_it(tmp_path, monkeypatch):
    """A domain's cycle: every connection of the hook in a session is a cursor of one database."""
    import duckdb
    import sqlalchemy as sa

    path = tmp_path / "w.duckdb"
    hook = WarehouseHook(url=f"duckdb:///{path}")
    with hook.engine.begin() as con:
        con.exec_driver_sql("CREATE TABLE t AS SELECT 1 AS a")
    opened = []
    real_connect = duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda *a, **k: opened.append(a) or real_connect(*a, **k))
    with hook.session():
        for _ in range(3):
            with hook.engine.begin() as con:
                con.exec_driver_sql("INSERT INTO t VALUES (2)")
            with hook.evaluation_connection() as con:
                assert con.execute(sa.text("SELECT count(*) FROM t")).scalar_one() >= 2
                assert con.execute(sa.text("SELECT current_setting('TimeZone')")).scalar_one() == "UTC"
            with hook.native_connection() as raw:
                raw.execute("INSERT INTO t VALUES (3)")
    assert len(opened) == 1
    out = subprocess.run(  # released: another process opens the file at once
        [sys.executable, "-c", f"import duckdb; print(duckdb.connect({str(path)!r}).execute('select count(*) from t').fetchone()[0])"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.stdout.strip() == "7", out.stderr
    with hook.engine.begin() as con:  # and the hook works without a session again
        assert con.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 7
