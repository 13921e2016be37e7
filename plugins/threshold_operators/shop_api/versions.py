"""Which version of each row the shop serves at ``as_of``: a platform's history, not a cut-off.

A table holds each row as it stands at the end of the simulated window: an order placed at 17:11
and cancelled at 17:41 has ``status = 'cancelled'`` and ``updated_at = 17:41``. Hiding the rows
changed after ``as_of`` (what the API first did) makes that order invisible at 17:20, when a real
platform shows it ``pending``. So the platform file may keep the history of its changing rows:

- ``<table>__versions``: the table's columns plus ``valid_from``, one row per version (the
  version a key had from ``valid_from`` until its next version);
- ``platform_history(table_name, versions_table, history_from)``: rows whose change-tracking
  column is at or after ``history_from`` are served from their versions, older rows as they
  stand (their last change came before ``history_from``).

At ``as_of`` the API serves, for every key, the latest version whose ``valid_from <= as_of``; a
key with none (created later) stays hidden. That is exact for any ``as_of >= history_from``;
before it, rows that changed between ``as_of`` and ``history_from`` are hidden (the simulator
keeps history only where a live clock may look). Without ``as_of`` the table is served as it
stands. A row's change-tracking column never goes back from one version to the next, which is
what lets keyset pages and ``updated_since`` reads stay exact while ``as_of`` moves: a row only
ever moves later in the page order, so it is never skipped, and each of its versions is
delivered by a read whose ``as_of`` falls in that version's life.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from threshold_operators.warehouse.schema import TableSpec

HISTORY_TABLE = "platform_history"
VALID_FROM = "valid_from"


@dataclass(frozen=True)
class History:
    """Where a table's versions are kept and from when."""

    versions_table: str
    history_from: datetime


def versions_table_name(table: str) -> str:
    return f"{table}__versions"


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def read_histories(con: Any) -> dict[str, History]:
    """The tables whose versions the platform file keeps (none for a file without history)."""
    present = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if HISTORY_TABLE not in present:
        return {}
    rows = con.execute(f"SELECT table_name, versions_table, history_from FROM {HISTORY_TABLE}").fetchall()
    return {t: History(v, h) for t, v, h in rows if v in present}


def served_rows(
    spec: TableSpec,
    history: History | None,
    as_of: datetime | None,
    *,
    updated_since: datetime | None = None,
) -> tuple[str, list[Any]]:
    """A subquery (SQL, parameters) of the rows of ``spec`` as the platform shows them at ``as_of``.

    ``updated_since`` is applied inside (it may be: a row's change-tracking column never goes
    back, so a later version is never below it when an earlier one is not); other filters go
    outside, on the version served.
    """
    cols = ", ".join(quote(c) for c in spec.columns)
    updated = spec.updated_field
    if updated is None or as_of is None:
        where, params = [], []
        if updated is not None and updated_since is not None:
            where, params = [f"{quote(updated)} >= ?"], [updated_since]
        sql = f"SELECT {cols} FROM {quote(spec.name)}" + (" WHERE " + " AND ".join(where) if where else "")
        return sql, params
    since_sql, since_params = (f" AND {quote(updated)} >= ?", [updated_since]) if updated_since is not None else ("", [])
    current = f"SELECT {cols} FROM {quote(spec.name)} WHERE {quote(updated)} <= ?{since_sql}"
    if history is None:
        return current, [as_of, *since_params]
    keys = ", ".join(quote(k) for k in spec.key)
    versions = (
        f"SELECT {cols} FROM {quote(history.versions_table)} WHERE {quote(VALID_FROM)} <= ?{since_sql} "
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {quote(VALID_FROM)} DESC) = 1"
    )
    sql = f"{current} AND {quote(updated)} < ? UNION ALL {versions}"
    return sql, [as_of, *since_params, history.history_from, as_of, *since_params]
