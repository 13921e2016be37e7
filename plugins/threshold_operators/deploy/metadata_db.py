"""Which metadata database the deployment uses, and why.

In order: a URL the user gave (``--metadata-db URL`` or ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``),
then what the Airflow home's ``airflow.cfg`` already names (a home keeps its database), then
the PostgreSQL server on 127.0.0.1:5432 when it answers, else SQLite in the home. The
PostgreSQL database is ``storefence_airflow_<6 hex digits of the home's path>``, created if
missing: one per Airflow home, as SQLite's file is, so two checkouts on one machine never share
their connections (the warehouse connection names a file of its home). PostgreSQL is preferred: it takes the
scheduler, the DAG processor, the API server and the LocalExecutor's task processes writing at
once without a file lock; SQLite works for one machine's LocalExecutor on Airflow 3.3 but
serialises every write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PG_SERVER = os.environ.get("STOREFENCE_PG_SERVER", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def database_name(home: Path) -> str:
    import hashlib

    return f"storefence_airflow_{hashlib.sha1(str(home.resolve()).encode()).hexdigest()[:6]}"


@dataclass(frozen=True)
class MetadataDb:
    url: str
    reason: str

    @property
    def kind(self) -> str:
        return "PostgreSQL" if self.url.startswith("postgres") else "SQLite" if self.url.startswith("sqlite") else \
            self.url.split(":", 1)[0]

    def describe(self) -> str:
        from sqlalchemy.engine import make_url

        return f"{self.kind} {make_url(self.url).render_as_string(hide_password=True)} ({self.reason})"


def sqlite_url(home: Path) -> str:
    return f"sqlite:///{home / 'airflow.db'}"


def choose(home: Path, configured: str | None, requested: str | None = None, database: str | None = None,
           server: str = PG_SERVER) -> MetadataDb:
    """The metadata DB for the home. ``configured``: airflow.cfg's ``[database] sql_alchemy_conn``;
    ``requested``: a URL, ``postgres`` (fail if unreachable) or ``sqlite``."""
    if requested and requested not in ("postgres", "sqlite"):
        return MetadataDb(requested, "given with --metadata-db")
    if not requested and (env := os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")):
        return MetadataDb(env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is set")
    database = database or database_name(home)
    ours = {sqlite_url(home), database_url(server, database)}
    if not requested and configured and configured not in ours:
        return MetadataDb(configured, f"the one {home / 'airflow.cfg'} names")
    if requested != "sqlite":
        problem = pg_unavailable(server)
        if problem is None:
            ensure_database(server, database)
            return MetadataDb(database_url(server, database),
                              "PostgreSQL answers on 127.0.0.1:5432: the scheduler, DAG processor, API server "
                              "and task processes write at once without SQLite's file lock")
        if requested == "postgres":
            raise RuntimeError(f"PostgreSQL requested but unreachable: {problem}")
        return MetadataDb(sqlite_url(home), f"no PostgreSQL on 127.0.0.1:5432 ({problem}); SQLite serialises "
                                            "writes, enough for one machine's LocalExecutor")
    return MetadataDb(sqlite_url(home), "--metadata-db sqlite")


def pg_unavailable(server: str = PG_SERVER) -> str | None:
    """None when the server answers, else the first line of why not."""
    import sqlalchemy as sa

    engine = sa.create_engine(server, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as con:
            con.execute(sa.text("SELECT 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not available"
        return str(exc).strip().splitlines()[0]
    finally:
        engine.dispose()


def database_url(server: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(server).set(database=database).render_as_string(hide_password=False)


def ensure_database(server: str, database: str) -> str:
    """Create ``database`` on the server if missing; its URL."""
    import sqlalchemy as sa

    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as con:
            if not con.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}).scalar():
                con.execute(sa.text(f'CREATE DATABASE "{database}"'))
    finally:
        engine.dispose()
    return database_url(server, database)


def drop_database(server: str, database: str) -> None:
    """Drop ``database`` (the tests' own), ending the sessions still connected to it."""
    import sqlalchemy as sa

    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as con:
            con.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d "
                                "AND pid <> pg_backend_pid()"), {"d": database})
            con.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}"'))
    finally:
        engine.dispose()
