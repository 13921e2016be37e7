"""WarehouseHook: the one way Storefence code reaches the warehouse.

The warehouse is named by the Airflow connection ``storefence_warehouse`` (any conn id can be
passed). Supported connection types:

- ``duckdb``   - an embedded DuckDB file; the path is the connection's host (or ``extra.path``),
  relative paths are taken from ``$AIRFLOW_HOME``. The default set-up points it at
  ``$AIRFLOW_HOME/storefence.duckdb``.
- ``postgres`` - PostgreSQL; login, password, host, port and database (schema field) as usual,
  optional ``extra.search_path`` to keep Storefence's tables in their own schema.
- anything else with ``extra.sqlalchemy_url`` - any SQLAlchemy URL (for other warehouses).

A DuckDB file can be open in only one process at a time, and LocalExecutor runs each task in a
process of its own. So on DuckDB this hook never keeps the file open between uses (no pool),
retries while another process holds the lock (``extra.lock_timeout`` seconds, default 120), and
the DAGs put warehouse tasks in the one-slot ``storefence_warehouse`` pool.

Rules are evaluated on a connection of their own (``evaluation_connection``), a second line of
defence behind the lint and the check of every compiled statement: on DuckDB a connection
opened read-only with external access (files, URLs, ATTACH, COPY), extension loading and
installing disabled and its configuration locked before the rule's SQL runs; on PostgreSQL a
READ ONLY transaction from its first statement, rolled back after the query, as
``extra.evaluation_role`` (``SET LOCAL ROLE``) when the connection names one: a read-only
transaction does not stop a superuser's ``pg_read_file``, a role that may only read does.
The extract and load side keeps the ordinary connection (it writes the warehouse).

A cycle that runs many statements (a domain's rules: gates, rollups, evaluation, state) opens
a ``session()``: on DuckDB the file is then opened once, with external access and extension
loading disabled and its configuration locked, and every connection of the hook in the session
(the writing ones and the evaluation ones) is a cursor of that one database. What the session
gives up is the read-only open; in its place, DuckDB's own parser must find exactly one SELECT
in what the evaluation connection runs (``only_one_select``, on every evaluation connection),
and the evaluation's transaction is rolled back after the query, as on PostgreSQL. Opening a DuckDB file costs
tens of milliseconds and a cycle ran about five opens a rule; the session holds the file lock
for the cycle, which the one-slot pool gives the task anyway. On PostgreSQL the engines' pools
already reuse connections, and a session changes nothing.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager, suppress
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.sdk.exceptions import AirflowFailException

from threshold_operators.warehouse import WAREHOUSE_CONN_ID

DEFAULT_LOCK_TIMEOUT_S = 120.0

# DuckDB settings of the rule evaluation connection, given when the file is opened; then
# `SET lock_configuration = true` makes them (and every other setting) final for the connection.
DUCKDB_EVALUATION_CONFIG = {
    "enable_external_access": False,  # no files, URLs, ATTACH, COPY, INSTALL
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}

HOW_TO_SET = (
    "set it with `airflow connections add {conn_id} --conn-type duckdb --conn-host /path/warehouse.duckdb` "
    "(or --conn-type postgres ...), or the environment variable AIRFLOW_CONN_{env} (see README, 'Warehouse')"
)


class WarehouseConfigError(AirflowFailException):
    """The warehouse connection is missing or wrong. The message is one line saying how to fix it.

    A configuration error does not heal by itself, so a task that meets it fails at once,
    without retries (``AirflowFailException``).
    """


def _how_to_set(conn_id: str) -> str:
    return HOW_TO_SET.format(conn_id=conn_id, env=conn_id.upper())


def _is_duckdb_lock_error(exc: BaseException) -> bool:
    return "Could not set lock on file" in str(exc) or "Conflicting lock" in str(exc)


def connect_duckdb(path: str, *, read_only: bool = False, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
                   config: dict | None = None, set_up: bool = True):
    """Open a DuckDB file, waiting (with backoff) while another process holds its lock."""
    import duckdb

    deadline = time.monotonic() + lock_timeout
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(path, read_only=read_only, config=config or {})
            if set_up:
                con.execute("SET TimeZone = 'UTC'")
                con.execute("SET enable_progress_bar = false")
            return con
        except duckdb.IOException as exc:
            if not _is_duckdb_lock_error(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def only_one_select(statement: str) -> None:
    """Refuse, by DuckDB's own parser, anything but one SELECT on the evaluation connection. In a
    session (not opened read-only) this is what keeps a ``ROLLBACK; DELETE ...`` out; a write
    inside a SELECT (a data-modifying CTE) is rolled back with the evaluation's transaction."""
    import duckdb

    kinds = _statement_kinds(statement)
    if kinds != ("SELECT",):
        raise duckdb.PermissionException(
            f"the evaluation connection runs one SELECT, not {', '.join(kinds) or 'nothing'}")


@lru_cache(maxsize=512)
def _statement_kinds(statement: str) -> tuple[str, ...]:
    """The kinds of the statements in ``statement`` by DuckDB's parser (remembered by text: a rule's
    statement is the same every cycle, and parsing a large one costs milliseconds)."""
    import duckdb

    return tuple(s.type.name for s in duckdb.extract_statements(statement))


def search_path_sql(value: str, conn_id: str) -> str:
    """``extra.search_path`` ("storefence" or "storefence, public") checked to be schema names
    (unquoted: folded to lower case, as PostgreSQL reads them); anything else is a configuration
    error (the value goes into a SET statement)."""
    import re

    names = [n.strip() for n in str(value).split(",")]
    if not names or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]{0,62}", n) for n in names):
        raise WarehouseConfigError(f"connection '{conn_id}': extra.search_path {value!r} is not a list of schema "
                                   f"names (letters, digits, _ and $, separated by commas)")
    return ", ".join(names)


def _per_transaction(engine, statements: list[str]):
    """``engine``, running ``statements`` first in every transaction (SQLAlchemy's ``begin`` event,
    autobegin included), so a pooler's server connection carries nothing from one to the next."""
    from sqlalchemy import event

    @event.listens_for(engine, "begin")
    def _settings(con):
        for sql in statements:
            con.exec_driver_sql(sql)

    return engine


def url_from_connection(conn: Any) -> str:
    """The SQLAlchemy URL of an Airflow connection (pure: no lookups)."""
    from sqlalchemy.engine import URL

    conn_type = (conn.conn_type or "").lower()
    extra = conn.extra_dejson or {}
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    if conn_type == "duckdb":
        path = extra.get("path") or conn.host or conn.schema
        if not path:
            raise WarehouseConfigError(
                f"connection '{conn.conn_id}' (duckdb) names no file: {_how_to_set(conn.conn_id)}"
            )
        if path != ":memory:" and not os.path.isabs(path):
            path = str(Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / path)
        return f"duckdb:///{path}"
    if conn_type in ("postgres", "postgresql"):
        return URL.create(
            "postgresql+psycopg2",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or "localhost",
            port=conn.port or None,
            database=conn.schema or None,
        ).render_as_string(hide_password=False)
    raise WarehouseConfigError(
        f"connection '{conn.conn_id}' has type '{conn_type or 'none'}', which Storefence cannot use as a "
        f"warehouse: use duckdb, postgres, or put a SQLAlchemy URL in extra.sqlalchemy_url; {_how_to_set(conn.conn_id)}"
    )


class WarehouseHook(DbApiHook):
    """Reach the Storefence warehouse (DuckDB, PostgreSQL, or any SQLAlchemy URL).

    :param warehouse_conn_id: Airflow connection id (default ``storefence_warehouse``).
    :param url: a SQLAlchemy URL to use instead of a connection (the CLI's ``--warehouse``).
    """

    conn_name_attr = "warehouse_conn_id"
    default_conn_name = WAREHOUSE_CONN_ID
    conn_type = "duckdb"
    hook_name = "Storefence warehouse"
    supports_autocommit = True

    def __init__(self, *args, url: str | None = None, search_path: str | None = None,
                 evaluation_role: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._url = url
        self._search_path = search_path
        self._evaluation_role = evaluation_role
        self._in_session = False  # in a session(), on DuckDB: every connection is a cursor of _shared
        self._shared = None  # the session's database, opened at its first use
        self.session_memo: dict | None = None  # lives as long as a DuckDB session (``session``)

    # --- configuration -------------------------------------------------------------------------
    @cached_property
    def _extra(self) -> dict:
        if self._url:
            return {}
        return dict(self._lookup_connection().extra_dejson or {})

    def _lookup_connection(self):
        conn_id = self.get_conn_id()
        try:
            from threshold_operators.connections import get_connection

            return get_connection(conn_id)  # the Task SDK's lookup; the metadata DB outside a task
        except Exception as exc:  # AirflowNotFoundException, or a secrets backend failure
            if "isn't defined" in str(exc) or type(exc).__name__ == "AirflowNotFoundException":
                raise WarehouseConfigError(f"connection '{conn_id}' is not defined: {_how_to_set(conn_id)}") from None
            raise WarehouseConfigError(f"connection '{conn_id}' could not be read ({exc}): {_how_to_set(conn_id)}") from exc

    @cached_property
    def sqlalchemy_url(self):  # type: ignore[override]
        from sqlalchemy.engine import make_url

        raw = self._url or url_from_connection(self._lookup_connection())
        try:
            url = make_url(raw)
        except Exception as exc:
            raise WarehouseConfigError(
                f"connection '{self.get_conn_id()}' has an unreadable SQLAlchemy URL ({exc}): {_how_to_set(self.get_conn_id())}"
            ) from None
        if not self._url and url.get_backend_name() == "duckdb" and (url.database or ":memory:") != ":memory:":
            from threshold_operators.executor import refuse_per_host

            refuse_per_host(f"connection '{self.get_conn_id()}' is the DuckDB file {url.database}, on one host's disk")
        return url

    @property
    def dialect_name(self) -> str:  # type: ignore[override]
        return self.sqlalchemy_url.get_backend_name()

    @property
    def is_duckdb(self) -> bool:
        return self.dialect_name == "duckdb"

    @property
    def duckdb_path(self) -> str:
        return self.sqlalchemy_url.database or ":memory:"

    @property
    def search_path(self) -> str | None:
        return self._search_path or self._extra.get("search_path")

    @property
    def lock_timeout(self) -> float:
        return float(self._extra.get("lock_timeout", DEFAULT_LOCK_TIMEOUT_S))

    # --- connections ---------------------------------------------------------------------------
    def get_sqlalchemy_engine(self, engine_kwargs=None):
        """An engine that holds nothing open between uses on DuckDB and waits out its file lock."""
        from sqlalchemy import create_engine, event
        from sqlalchemy.pool import NullPool

        kwargs = dict(engine_kwargs or {})
        url = self.sqlalchemy_url
        if self.is_duckdb:
            kwargs.setdefault("poolclass", NullPool)
            engine = create_engine(url, **kwargs)
            lock_timeout = self.lock_timeout

            @event.listens_for(engine, "do_connect")
            def _wait_for_lock(dialect, conn_rec, cargs, cparams):
                if self._in_session:  # a cursor of the session's database, configured already
                    from duckdb_engine import ConnectionWrapper

                    conn_rec.info["storefence_session"] = True
                    return ConnectionWrapper(self._session_database().cursor())
                deadline = time.monotonic() + lock_timeout
                delay = 0.05
                while True:
                    try:
                        return dialect.connect(*cargs, **cparams)
                    except Exception as exc:
                        if not _is_duckdb_lock_error(exc) or time.monotonic() + delay > deadline:
                            raise
                        time.sleep(delay)
                        delay = min(delay * 2, 2.0)

            @event.listens_for(engine, "connect")
            def _utc(dbapi_conn, conn_rec):
                if not conn_rec.info.get("storefence_session"):
                    dbapi_conn.execute("SET TimeZone = 'UTC'")

            return engine
        if url.get_backend_name() == "postgresql":
            kwargs.setdefault("pool_pre_ping", True)
            return _per_transaction(create_engine(url, **kwargs), self.transaction_settings())
        return create_engine(url, **kwargs)

    def transaction_settings(self, evaluation: bool = False) -> list[str]:
        """PostgreSQL: what every transaction of the hook sets first, with ``SET LOCAL`` (it ends with
        the transaction). Not startup ``options`` or a session ``SET``: behind PgBouncer's
        transaction pooling consecutive transactions of one client run on different server
        connections, and PgBouncer refuses the ``options`` startup parameter; a ``SET LOCAL`` holds
        exactly for the transaction that ran it, wherever it runs. ``evaluation``: the rule
        evaluation's transaction also reads only and compiles nothing (``jit = off``)."""
        out = ["SET LOCAL timezone = 'UTC'"]
        if self.search_path:
            out.append(f"SET LOCAL search_path TO {search_path_sql(self.search_path, self.get_conn_id())}")
        if evaluation:
            # jit=off: a rule's statement joins CTEs whose row estimates run to millions when a
            # cycle reads a few thousand rows; JIT-compiling it cost ~4 s a cycle for ~50 ms of work
            out += ["SET TRANSACTION READ ONLY", "SET LOCAL jit = off"]
        return out

    @cached_property
    def engine(self):
        return self.get_sqlalchemy_engine()

    @cached_property
    def evaluation_engine(self):
        """The engine rules are evaluated on: read-only, no external access, settings locked."""
        from sqlalchemy import event

        if self.is_duckdb:
            in_memory = self.duckdb_path == ":memory:"
            engine = self.get_sqlalchemy_engine({"connect_args": {
                "read_only": not in_memory, "config": dict(DUCKDB_EVALUATION_CONFIG)}})

            @event.listens_for(engine, "do_execute")
            def _one_select(cursor, statement, parameters, context):
                only_one_select(statement)

            @event.listens_for(engine, "do_execute_no_params")
            def _one_select_no_params(cursor, statement, context):
                only_one_select(statement)

            @event.listens_for(engine, "connect")
            def _lock(dbapi_conn, conn_rec):  # after the UTC listener: the time zone is set, then final
                if conn_rec.info.get("storefence_session"):
                    return  # the session's database is configured and locked
                dbapi_conn.execute("SET enable_progress_bar = false")
                dbapi_conn.execute("SET lock_configuration = true")

            return engine
        if self.sqlalchemy_url.get_backend_name() == "postgresql":
            from sqlalchemy import create_engine

            # read-only from its first statement, whoever opens the transaction
            return _per_transaction(create_engine(self.sqlalchemy_url, pool_pre_ping=True),
                                    self.transaction_settings(evaluation=True))
        return self.get_sqlalchemy_engine()

    @cached_property
    def evaluation_role(self) -> str | None:
        """PostgreSQL: the role rules are evaluated as (``extra.evaluation_role``), a role that may
        only read the warehouse tables; the connection's user must be a member of it."""
        import re

        role = self._evaluation_role or self._extra.get("evaluation_role")
        if role is not None and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", str(role)):
            raise WarehouseConfigError(f"connection '{self.get_conn_id()}': extra.evaluation_role {role!r} is not a "
                                       f"role name (lower case letters, digits and _)")
        return role

    def _warn_if_superuser(self, con) -> None:
        """Once per hook: a superuser's read-only transaction still reads server files (pg_read_file)."""
        from sqlalchemy import text

        if getattr(self, "_superuser_checked", False):
            return
        self._superuser_checked = True
        row = con.execute(text("SELECT current_user, rolsuper OR pg_has_role(current_user, 'pg_read_server_files', "
                               "'MEMBER') FROM pg_roles WHERE rolname = current_user")).first()
        if row and row[1]:
            self.log.warning("rules are evaluated as %s, who may read server files even in a read-only transaction: "
                             "set extra.evaluation_role on connection %s to a role that may only read the warehouse "
                             "(docs/warehouse.md)", row[0], self.get_conn_id())

    @contextmanager
    def evaluation_connection(self):
        """A SQLAlchemy connection for a rule's statement: nothing it runs can read a file, reach
        another server, change a setting or write (see the module's docstring). Rolled back on exit."""
        from sqlalchemy import text

        with self.evaluation_engine.connect() as con:
            if self.dialect_name == "postgresql":
                con.execute(text("SET TRANSACTION READ ONLY"))
                if self.evaluation_role:  # for this transaction only; the statement cannot RESET it
                    con.execute(text(f'SET LOCAL ROLE "{self.evaluation_role}"'))
                else:
                    self._warn_if_superuser(con)
            try:
                yield con
            finally:
                con.rollback()

    def get_conn(self):
        """A DB-API connection: the native DuckDB connection, or the driver's (psycopg2, ...)."""
        if self.is_duckdb:
            if self._in_session:
                return self._session_database().cursor()
            return connect_duckdb(self.duckdb_path, lock_timeout=self.lock_timeout)
        conn = self.engine.raw_connection()
        if self.dialect_name == "postgresql":  # its first transaction (psycopg2 begins one at the first statement)
            self.apply_transaction_settings(conn)
        return conn

    def apply_transaction_settings(self, dbapi_conn) -> None:
        """``transaction_settings`` on a DB-API connection, at the start of each of its transactions
        (the bulk loader's one transaction; call it again after a commit)."""
        with dbapi_conn.cursor() as cur:
            for sql in self.transaction_settings():
                cur.execute(sql)

    @contextmanager
    def session(self):
        """Every connection of this hook in the block shares one database (see the module's
        docstring): on DuckDB the file is opened at the block's first use and closed at its end;
        opening it fails (or waits for the lock) where that first use is. Re-entrant."""
        if not self.is_duckdb or self._in_session or self.duckdb_path == ":memory:":
            yield self  # (an in-memory database is one per connection: nothing to share)
            return
        self._in_session = True
        # the file is this process's alone until the block ends: what the engine learnt of it (the
        # rollups brought up to date) holds until this process writes what a rollup reads
        self.session_memo = {}
        try:
            yield self
        finally:
            self._in_session = False
            self.session_memo = None
            for engine in ("engine", "evaluation_engine"):  # their connections are the session's cursors
                if engine in self.__dict__:
                    self.__dict__[engine].dispose()
            if self._shared is not None:
                self._shared.close()
                self._shared = None

    def _session_database(self):
        """The session's database: opened once, external access off, time zone UTC, settings locked."""
        if self._shared is None:
            shared = connect_duckdb(self.duckdb_path, lock_timeout=self.lock_timeout,
                                    config=dict(DUCKDB_EVALUATION_CONFIG), set_up=False)
            try:
                shared.execute("SET GLOBAL TimeZone = 'UTC'")
                shared.execute("SET lock_configuration = true")
            except BaseException:
                shared.close()
                raise
            self._shared = shared
        return self._shared

    @contextmanager
    def native_connection(self):
        """A DB-API connection closed on exit; commits on success, rolls back on error."""
        conn = self.get_conn()
        try:
            yield conn
            conn.commit()
        except BaseException:
            with suppress(Exception):  # DuckDB without an open transaction
                conn.rollback()
            raise
        finally:
            conn.close()

    def get_uri(self) -> str:
        return self.sqlalchemy_url.render_as_string(hide_password=False)

    def describe(self) -> str:
        """The URL without its password, for logs and summaries."""
        return self.sqlalchemy_url.render_as_string(hide_password=True)
