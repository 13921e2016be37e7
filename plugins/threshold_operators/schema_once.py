"""Schema set-up once per version, not by every task: a marker read first, DDL only when behind.

The warehouse's tables and the state store's are created by ``storefence airflow-setup`` /
``storefence warehouse init`` / the ``storefence_warehouse_setup`` DAG, and a task that finds
its database behind (a first run on a new warehouse, an upgrade whose DDL nobody ran) brings it
up itself. Every task used to run the DDL (``CREATE TABLE IF NOT EXISTS``, ``ALTER TABLE ... ADD
COLUMN``) each time: concurrent first runs on several workers race (PostgreSQL's
``CREATE TABLE IF NOT EXISTS`` is not safe against a concurrent one: the loser fails on
``pg_type``'s unique index), and every fetch, load and notify paid for the catalogue reads.

``ensure(engine, component, version, apply)``:

- reads ``storefence_schema.version`` of ``component`` (one indexed read); when it equals
  ``version`` nothing else happens;
- otherwise, in ONE transaction: takes the set-up lock (PostgreSQL: one for every component,
  ``pg_advisory_xact_lock``, released with the transaction, so it is safe behind PgBouncer's
  transaction pooling; SQLite: ``BEGIN IMMEDIATE``, the writer lock; DuckDB: one process has the
  file), reads the marker again (another worker may have done it meanwhile), runs
  ``apply(con)`` and writes the marker. DDL is transactional on all three: a set-up that fails
  half-way leaves nothing half-made.

``version`` is a digest of the tables' definitions (``digest(metadata)``), so a release that adds
a table or a column is behind until its set-up ran once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime

log = logging.getLogger(__name__)

MARKER = "storefence_schema"


def digest(metadata, *extra: str) -> str:
    """A version of the tables of ``metadata`` (names, columns, types, keys, indexes) and ``extra``."""
    parts = list(extra)
    for table in sorted(metadata.tables.values(), key=lambda t: t.name):
        parts.append(table.name)
        parts += [f"{c.name}:{c.type!r}:{c.nullable}:{c.primary_key}" for c in table.columns]
        parts += sorted(f"ix:{ix.name}:{','.join(c.name for c in ix.columns)}" for ix in table.indexes)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def add_missing_columns(con, tables) -> list[str]:
    """Add to each of ``tables`` (that exists) the columns of its definition it lacks, as a later
    version defines them: their type, without NOT NULL (the rows before have no value); the columns
    added. The columns present are those a query returns (duckdb-engine's reflection of columns
    fails on DuckDB 2.0). The state store's and the warehouse's set-up both use it."""
    from sqlalchemy import text

    added = []
    for table in tables:
        have = set(con.execute(text(f"SELECT * FROM {table.name} LIMIT 0")).keys())  # noqa: S608 - schema names
        for column in table.columns:
            if column.name in have:
                continue
            con.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {column.type.compile(dialect=con.dialect)}')
            added.append(f"{table.name}.{column.name}")
    return added


def current(engine, component: str) -> str | None:
    """The version recorded for ``component``; None when there is none (or no marker table)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.connect() as con:
            try:
                return con.execute(text(f"SELECT version FROM {MARKER} WHERE component = :c"),
                                   {"c": component}).scalar()
            finally:
                con.rollback()
    except DBAPIError as exc:  # no marker table yet (the database is new, or older than the marker)
        if "does not exist" in str(exc).lower() or "no such table" in str(exc).lower():
            return None
        raise


@contextmanager
def _plain(engine) -> Iterator:
    with engine.begin() as con:
        yield con


def ensure(engine, component: str, version: str, apply: Callable[..., object],
           begin: Callable[[], AbstractContextManager] | None = None, force: bool = False):
    """Bring ``component`` to ``version`` once (see the module's docstring). ``begin``: how to open
    the write transaction (the state store's ``transaction``: ``BEGIN IMMEDIATE`` on SQLite);
    ``force``: apply even when the marker is current (the explicit set-up commands). Returns
    what ``apply`` returned, None when nothing was needed."""
    from sqlalchemy import text

    if not force and current(engine, component) == version:
        return None
    dialect = engine.dialect.name
    with (begin or (lambda: _plain(engine)))() as con:
        if dialect == "postgresql":
            con.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": "storefence:schema"})
        con.execute(text(f"CREATE TABLE IF NOT EXISTS {MARKER} (component VARCHAR(64) PRIMARY KEY, "
                         f"version VARCHAR(64) NOT NULL, applied_at TIMESTAMP NOT NULL)"))
        have = con.execute(text(f"SELECT version FROM {MARKER} WHERE component = :c"), {"c": component}).scalar()
        if have == version and not force:  # another worker did it while this one waited for the lock
            return None
        result = apply(con)
        con.execute(text(f"DELETE FROM {MARKER} WHERE component = :c"), {"c": component})
        con.execute(text(f"INSERT INTO {MARKER} (component, version, applied_at) VALUES (:c, :v, :t)"),
                    {"c": component, "v": version, "t": datetime.now(UTC).replace(tzinfo=None)})
    if have == version:
        log.info("%s schema checked at version %s: nothing was missing", component, version)
    else:
        log.info("%s schema brought to version %s (was %s)", component, version, have or "none")
    return result
