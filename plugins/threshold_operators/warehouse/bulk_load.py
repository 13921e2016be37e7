"""Bulk loading of Arrow tables into the warehouse, the fastest way each dialect offers.

- DuckDB: the Arrow table is scanned in place (zero copy) by ``INSERT ... SELECT``.
- PostgreSQL: ``COPY ... FROM STDIN (FORMAT csv)``, the CSV written by Arrow's C++ writer.
- anything else: SQLAlchemy ``executemany`` (correct, slower).

A loader keeps one connection for its whole life (a load is one job in one process). Rows are
committed when the caller calls ``commit()`` and when the loader closes without error; on an
error, what was not committed is rolled back.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from threshold_operators.warehouse.rollup_tables import (
    CONSERVATIVE,
    EVERY_COLUMN,
    LOCK_MARKS_SQL,
    REGISTRY_PRESENT_SQL,
    REGISTRY_SQL,
    dirty_slices,
    is_sliced,
    movable_event,
    registry_of,
    slices_of,
)
from threshold_operators.warehouse.schema import as_utc, table_spec

if TYPE_CHECKING:
    import pyarrow as pa

    from threshold_operators.warehouse.hook import WarehouseHook


class BulkLoader:
    """Append Arrow tables to warehouse tables. Use as a context manager."""

    def __init__(self, hook: WarehouseHook):
        self.hook = hook
        self.rows_written: dict[str, int] = {}
        self._rollup_registry = None  # rollup_tables.Registry, read once per transaction

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.rollback()
        self.close()
        return False

    def _conform(self, table: str, data: pa.Table) -> pa.Table:
        columns = table_spec(table).columns
        missing = [c for c in columns if c not in data.column_names]
        if missing:
            raise ValueError(f"{table}: the batch lacks columns {missing}")
        return data.select(list(columns))

    def append(self, table: str, data: pa.Table) -> None:
        """Insert rows that are new (a key already present is an error)."""
        if data.num_rows == 0:
            return
        self._append(table, self._conform(table, data))
        self.rows_written[table] = self.rows_written.get(table, 0) + data.num_rows
        if self._rollup_columns(table) is not None:  # some rollup reads the table
            self._mark(table, dirty_slices(table, data))
        self._keep_latest(table, data)

    def upsert(self, table: str, data: pa.Table) -> None:
        """Insert or replace by key, so a re-run, a retry or a backfill never duplicates a row.

        Within the batch the latest version of a key wins; against the warehouse a row is
        replaced only by a version at least as recent (by the table's change-tracking column),
        so a backfill of an old interval never overwrites a newer state.
        """
        if data.num_rows == 0:
            return
        marks = self._changed_slices(table, data)
        self._upsert(table, self._conform(table, data))
        self.rows_written[table] = self.rows_written.get(table, 0) + data.num_rows
        self._mark(table, marks)
        self._keep_latest(table, data)

    def _mark(self, table: str, slices) -> None:
        """Note, in this transaction, the 5-minute slices of ``table`` the rollups must recompute
        (``rollup_dirty``); the rollups a DuckDB session brought up to date are not any more."""
        if slices:
            self._insert_dirty([(table, s) for s in sorted(slices)])
            if self.hook.session_memo is not None:
                self.hook.session_memo.clear()

    def _rollup_columns(self, table: str) -> frozenset[str] | None:
        """The columns of ``table`` some rollup reads (``EVERY_COLUMN`` among them: not known); None
        for a table no rollup reads, or one that is not sliced (asked without reading the registry)."""
        return self._registry().columns(table) if is_sliced(table) else None

    def _registry(self):
        """What the rollups read (``rollup_tables.rollup_reads``), read once per transaction; on
        PostgreSQL under ROW EXCLUSIVE on ``rollup_dirty`` (what the INSERT of its marks takes
        anyway), held to the commit, so a rollup that registers meanwhile waits for this load."""
        if self._rollup_registry is None:
            self._lock_marks()
            if self._has_registry():
                self._rollup_registry = registry_of(tuple(r.values()) for r in self._rows(REGISTRY_SQL))
            else:  # a warehouse whose set-up has not run since the registry came: every row, as before
                self._rollup_registry = CONSERVATIVE
        return self._rollup_registry

    def _lock_marks(self) -> None:
        """Hold, to the commit, the lock under which marks are written (PostgreSQL)."""
        if self.hook.dialect_name == "postgresql":
            self._execute(LOCK_MARKS_SQL, ())

    def _has_registry(self) -> bool:
        """Whether the warehouse has ``rollup_reads`` (asked without failing the transaction)."""
        return bool(self._scalar(REGISTRY_PRESENT_SQL[self.hook.dialect_name]))

    def _changed_slices(self, table: str, data: pa.Table) -> set:
        """The slices an upsert of ``data`` changes for some rollup: none for a table no rollup reads;
        where the rollups' columns are known and the event time is not part of the key, the slices
        of the rows that are new, and the old and new slices of the rows that moved or changed in a
        column a rollup reads (``_slices_of_changes``); otherwise every row's slice and those of the
        stored versions it replaces (``_replaced_slices``)."""
        columns = self._rollup_columns(table)
        if columns is None:
            return set()
        spec = table_spec(table)
        if EVERY_COLUMN in columns or spec.event_field in spec.key:
            return set(dirty_slices(table, data)) | self._replaced_slices(table, data)
        return self._slices_of_changes(table, data, columns)

    def _slices_of_changes(self, table: str, data: pa.Table, columns: frozenset[str]) -> set:
        """Compare the batch with the stored versions of its keys (one lookup by the key's first
        column, as ``_replaced_slices``), on the event time's slice and the columns ``columns``."""
        spec = table_spec(table)
        key, event = list(spec.key), spec.event_field
        compared = [c for c in spec.columns if c in columns and c not in key and c != event]
        values = [v for v in data.column(key[0]).unique().to_pylist() if v is not None]
        stored: dict[tuple, tuple] = {}
        for row in self._select_where(table, [*key, event, *compared], key[0], values) if values else ():
            old_slice = slices_of([row[len(key)]])
            stored[tuple(row[:len(key)])] = (next(iter(old_slice), None), tuple(row[len(key) + 1:]))
        out: set = set()
        for row in data.select([*key, event, *compared]).to_pylist():
            new_slice = next(iter(slices_of([row[event]])), None)
            old = stored.get(tuple(row[k] for k in key))
            if old is None:  # a new row
                out.add(new_slice)
            elif old != (new_slice, tuple(row[c] for c in compared)):  # moved, or changed where a rollup looks
                out.update((old[0], new_slice))
        out.discard(None)
        return out

    def _keep_latest(self, table: str, data: pa.Table) -> None:
        """Move the latest-state table of ``table`` (``schema.LATEST_OF``), in this transaction: a
        row replaces the state only if it is at least as recent (the upsert's own rule)."""
        from threshold_operators.warehouse.schema import LATEST_OF

        latest = LATEST_OF.get(table)
        if latest is not None:
            self._upsert(latest, self._conform(latest, data))

    def _replaced_slices(self, table: str, data: pa.Table) -> set:
        """Before an upsert: the slices of the stored rows that the batch's keys may replace, on a
        table where an update can move a row's event time (``rollup_tables.movable_event``);
        a slice the row leaves is recomputed as well as the one it enters."""
        movable = movable_event(table)
        if movable is None:
            return set()
        event, lookup = movable
        values = [v for v in data.column(lookup).unique().to_pylist() if v is not None]
        return slices_of(self._values_where(table, event, lookup, values)) if values else set()

    @staticmethod
    def _upsert_sql(table: str, source: str) -> str:
        spec = table_spec(table)
        cols = ", ".join(spec.columns)
        key = ", ".join(spec.key)
        rest = [c for c in spec.columns if c not in spec.key]
        newer = f" WHERE EXCLUDED.{spec.updated_field} >= {table}.{spec.updated_field}" if spec.updated_field and spec.updated_field not in spec.key else ""
        action = f"DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in rest)}{newer}" if rest else "DO NOTHING"
        return f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {source} ON CONFLICT ({key}) {action}"

    @staticmethod
    def _latest_per_key(table: str) -> tuple[str, str]:
        """(PARTITION BY, ORDER BY) that keep the latest version of each key."""
        spec = table_spec(table)
        order = f"{spec.updated_field} DESC" if spec.updated_field else "1"
        return ", ".join(spec.key), order

    def _values_where(self, table: str, column: str, where: str, values: list) -> list:
        """The distinct values of ``table.column`` where ``table.where`` is one of ``values``."""
        return list({row[0] for row in self._select_where(table, [column], where, values)})

    def existing(self, table: str, column: str, values: list) -> set:
        """The ``values`` that ``table.column`` holds (in this loader's transaction)."""
        if not values:
            return set()
        return set(self._values_where(table, column, column, values))

    def scalar(self, sql: str):
        """One value from a query, in this loader's transaction (e.g. a new high-water mark)."""
        return self._scalar(sql)

    def rows(self, sql: str) -> list[dict]:
        """Every row of a query (no parameters: the SQL names tables and columns only), as dicts."""
        return self._rows(sql)

    def append_rows(self, table: str, data: pa.Table) -> None:
        """Insert ``data`` into any table by its column names (a rollup): no schema check, no slices marked."""
        if data.num_rows:
            self._append_any(table, data)

    def execute(self, sql: str, params: tuple = ()) -> int | None:
        """One statement with ``?`` placeholders, in this loader's transaction; the rows it changed
        (an UPDATE's or DELETE's count; None where the driver does not tell)."""
        return self._execute(sql, tuple(params))

    def delete_keys(self, table: str, keys: list[tuple]) -> None:
        """Delete the rows of ``table`` with these primary keys (in this loader's transaction).
        Only for tables no rollup reads (the held rows): a sliced fact table is never deleted
        from, its rows are replaced by newer versions (``upsert``)."""
        if not keys:
            return
        if is_sliced(table):
            raise ValueError(f"{table}: rows of a sliced fact table are replaced (upsert), not deleted")
        self._delete_keys(table, table_spec(table).key, [tuple(k) for k in keys])

    # dialect hooks
    def _append_any(self, table: str, data: pa.Table) -> None:
        self._append(table, data)

    def _execute(self, sql: str, params: tuple) -> int | None: ...
    def _select_where(self, table: str, columns: list[str], where: str, values: list) -> list[tuple]: ...
    def _insert_dirty(self, rows: list[tuple]) -> None: ...
    def open(self) -> None: ...
    def _append(self, table: str, data: pa.Table) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


IN_LIST = 1000  # below DuckDB's index_scan_max_count (2048)


class DuckDBBulkLoader(BulkLoader):
    def open(self) -> None:
        self.con = self.hook.get_conn()
        self._keyed: dict[str, bool] = {}  # table -> holds its primary key's index (``_keyless_time_key``)
        self.con.execute("BEGIN TRANSACTION")

    def _insert_dirty(self, rows: list[tuple]) -> None:
        self.con.executemany("INSERT INTO rollup_dirty (table_name, slice) VALUES (?, ?)", rows)

    def _execute(self, sql: str, params: tuple) -> int | None:
        cur = self.con.execute(sql, list(params))
        if cur.description is not None and [d[0] for d in cur.description] == ["Count"]:  # DML: its count
            row = cur.fetchone()
            return row[0] if row else None
        return None

    def _append_any(self, table: str, data: pa.Table) -> None:
        cols = ", ".join(data.column_names)
        self.con.register("_storefence_batch", data)
        try:
            self.con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _storefence_batch")
        finally:
            self.con.unregister("_storefence_batch")

    def _append(self, table: str, data: pa.Table) -> None:
        if (column := self._keyless_time_key(table)) is not None:
            self.con.register("_storefence_batch", data)
            try:
                self._refuse_present_keys(table, column, data)
            finally:
                self.con.unregister("_storefence_batch")
        self._append_any(table, data)

    def _refuse_present_keys(self, table: str, column: str, data: pa.Table) -> None:
        """What the key's index does for a table that has one: an append of a key the batch holds
        twice, or that is stored already, fails (and the transaction with it). The stored versions
        are looked for in the batch's range of ``column`` only, as ``_replace_in_range`` does."""
        import duckdb
        import pyarrow.compute as pc

        key = table_spec(table).key
        bounds = pc.min_max(data.column(column)).as_py()
        picked = ", ".join(f"b.{k}" for k in key)
        same = " AND ".join(f"b.{k} = t.{k}" for k in key)
        found = self.con.execute(
            f"(SELECT {picked} FROM _storefence_batch b GROUP BY {picked} HAVING COUNT(*) > 1 LIMIT 1) UNION ALL "
            f"(SELECT {picked} FROM _storefence_batch b JOIN {table} t ON {same} "
            f"WHERE t.{column} BETWEEN ? AND ? LIMIT 1) LIMIT 1", [bounds["min"], bounds["max"]]).fetchall()
        if found:
            row = found[0]
            shown = ", ".join(f"{k}: {v}" for k, v in zip(key, row, strict=True))
            raise duckdb.ConstraintException(f'Duplicate key "{shown}" in {table}: an append takes new keys only '
                                             f"(an upsert replaces a stored version)")

    def _upsert(self, table: str, data: pa.Table) -> None:
        key, order = self._latest_per_key(table)
        self.con.register("_storefence_raw", data)
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW _storefence_batch AS SELECT * FROM _storefence_raw "
                             f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order}) = 1")
            if (column := self._keyless_time_key(table)) is not None:
                self._replace_in_range(table, column, data)
            else:
                self.con.execute(self._upsert_sql(table, "_storefence_batch"))
        finally:
            self.con.execute("DROP VIEW IF EXISTS _storefence_batch")
            self.con.unregister("_storefence_raw")

    def _keyless_time_key(self, table: str) -> str | None:
        """The time key (``schema.time_key``) of a table this file holds without its primary key's
        index, else None (a file created before keeps its index, and ``ON CONFLICT`` uses it)."""
        from threshold_operators.warehouse.schema import time_key

        column = time_key(table)
        if column is None:
            return None
        keyed = self._keyed
        if table not in keyed:
            # (about 1 ms; duckdb_constraints() costs 15 ms at a database's first call)
            keyed[table] = bool(self.con.execute("SELECT bool_or(pk) FROM pragma_table_info(?)", [table]).fetchall()[0][0])
        return None if keyed[table] else column

    def _replace_in_range(self, table: str, column: str, data: pa.Table) -> None:
        """The upsert of a table without key index: the stored versions of the batch's keys lie in
        the batch's range of ``column`` (part of the key), so they are looked for there only (zone
        maps skip every other row group); the rule stays the upsert's: a stored version is replaced
        by one at least as recent (the change-tracking column), and a newer one is kept."""
        import pyarrow.compute as pc

        spec = table_spec(table)
        bounds = pc.min_max(data.column(column)).as_py()
        lo, hi = bounds["min"], bounds["max"]
        same = " AND ".join(f"b.{k} = t.{k}" for k in spec.key)
        in_range = f"t.{column} BETWEEN ? AND ?"
        cols = ", ".join(spec.columns)
        updated = spec.updated_field
        keep_newer = bool(updated) and updated not in spec.key  # a stored version newer than the batch's stays
        newer = f" AND b.{updated} >= t.{updated}" if keep_newer else ""
        self.con.execute(f"DELETE FROM {table} t WHERE {in_range} AND EXISTS "
                         f"(SELECT 1 FROM _storefence_batch b WHERE {same}{newer})", [lo, hi])
        if keep_newer:  # what is left of the batch's keys in the range is newer: not inserted
            self.con.execute(f"INSERT INTO {table} ({cols}) SELECT {', '.join('b.' + c for c in spec.columns)} "
                             f"FROM _storefence_batch b WHERE NOT EXISTS (SELECT 1 FROM {table} t "
                             f"WHERE {in_range} AND {same})", [lo, hi])
        else:
            self.con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _storefence_batch")

    def _select_where(self, table: str, columns: list[str], where: str, values: list) -> list[tuple]:
        out: list[tuple] = []
        # an IN list of at most IN_LIST values: DuckDB probes the key's index (ART) instead of
        # scanning the table, so the cost follows the batch, not the history kept
        for i in range(0, len(values), IN_LIST):
            chunk = values[i:i + IN_LIST]
            sql = f"SELECT {', '.join(columns)} FROM {table} WHERE {where} IN ({', '.join('?' * len(chunk))})"
            out += self.con.execute(sql, chunk).fetchall()
        return out

    def _scalar(self, sql: str):
        return self.con.execute(sql).fetchall()[0][0]

    def _rows(self, sql: str) -> list[dict]:
        cur = self.con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def _delete_keys(self, table: str, key: tuple[str, ...], keys: list[tuple]) -> None:
        self.con.executemany(f"DELETE FROM {table} WHERE {' AND '.join(f'{k} = ?' for k in key)}", keys)

    def commit(self) -> None:
        self.con.execute("COMMIT")
        self._rollup_registry = None
        self.con.execute("BEGIN TRANSACTION")

    def rollback(self) -> None:
        self.con.execute("ROLLBACK")
        self._rollup_registry = None

    def close(self) -> None:
        self.con.close()


class PostgresBulkLoader(BulkLoader):
    def open(self) -> None:
        self.con = self.hook.get_conn()

    def _insert_dirty(self, rows: list[tuple]) -> None:
        with self.con.cursor() as cur:
            cur.executemany("INSERT INTO rollup_dirty (table_name, slice) VALUES (%s, %s)", rows)

    def _execute(self, sql: str, params: tuple) -> int | None:
        with self.con.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), params)
            return cur.rowcount if cur.rowcount >= 0 else None

    def _append(self, table: str, data: pa.Table) -> None:
        import pyarrow.csv as pcsv

        buf = io.BytesIO()
        # one chunk: pyarrow 26 writes garbage for columns made of many tiny chunks
        pcsv.write_csv(data.combine_chunks(), buf, pcsv.WriteOptions(include_header=False))
        buf.seek(0)
        cols = ", ".join(data.column_names)
        with self.con.cursor() as cur:
            cur.copy_expert(f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv)", buf)

    def _upsert(self, table: str, data: pa.Table) -> None:
        key, order = self._latest_per_key(table)
        with self.con.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE _storefence_raw (LIKE {table}) ON COMMIT DROP")
        self._append("_storefence_raw", data)
        with self.con.cursor() as cur:
            cur.execute(f"CREATE TEMP VIEW _storefence_batch AS SELECT DISTINCT ON ({key}) * FROM _storefence_raw "
                        f"ORDER BY {key}, {order}")
            cur.execute(self._upsert_sql(table, "_storefence_batch"))
            cur.execute("DROP VIEW _storefence_batch; DROP TABLE _storefence_raw")

    def _select_where(self, table: str, columns: list[str], where: str, values: list) -> list[tuple]:
        with self.con.cursor() as cur:
            cur.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE {where} = ANY(%s)", (list(values),))
            return [tuple(r) for r in cur.fetchall()]

    def _scalar(self, sql: str):
        with self.con.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]

    def _rows(self, sql: str) -> list[dict]:
        with self.con.cursor() as cur:
            cur.execute(sql)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def _delete_keys(self, table: str, key: tuple[str, ...], keys: list[tuple]) -> None:
        with self.con.cursor() as cur:
            cur.executemany(f"DELETE FROM {table} WHERE {' AND '.join(f'{k} = %s' for k in key)}", keys)

    def commit(self) -> None:
        self.con.commit()
        self._rollup_registry = None  # (and the lock under which it was read)
        self.hook.apply_transaction_settings(self.con)  # SET LOCAL ends with its transaction

    def rollback(self) -> None:
        self.con.rollback()
        self._rollup_registry = None
        self.hook.apply_transaction_settings(self.con)

    def close(self) -> None:
        self.con.close()


class SQLAlchemyBulkLoader(BulkLoader):
    def open(self) -> None:
        self.con = self.hook.engine.connect()
        self.tx = self.con.begin()

    def _insert_dirty(self, rows: list[tuple]) -> None:
        from sqlalchemy import text

        self.con.execute(text("INSERT INTO rollup_dirty (table_name, slice) VALUES (:t, :s)"),
                         [{"t": t, "s": s} for t, s in rows])

    def _execute(self, sql: str, params: tuple) -> int | None:
        from sqlalchemy import text

        parts = sql.split("?")
        named = "".join(part + (f":p{i}" if i < len(parts) - 1 else "") for i, part in enumerate(parts))
        result = self.con.execute(text(named), {f"p{i}": v for i, v in enumerate(params)})
        return result.rowcount if result.rowcount >= 0 else None

    def _append_any(self, table: str, data: pa.Table) -> None:
        from sqlalchemy import text

        cols = data.column_names
        self.con.execute(text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"),
                         data.to_pylist())

    def _append(self, table: str, data: pa.Table) -> None:
        from threshold_operators.warehouse.schema import metadata

        self.con.execute(metadata.tables[table].insert(), data.to_pylist())

    def _upsert(self, table: str, data: pa.Table) -> None:
        """Portable upsert: delete the batch's keys that hold an older version, insert the rest."""
        from sqlalchemy import and_, tuple_

        from threshold_operators.warehouse.schema import metadata

        spec = table_spec(table)
        t = metadata.tables[table]
        latest: dict[tuple, dict] = {}
        for row in data.to_pylist():
            k = tuple(row[c] for c in spec.key)
            if k not in latest or (spec.updated_field and row[spec.updated_field] >= latest[k][spec.updated_field]):
                latest[k] = row
        key_cols = tuple_(*(t.c[c] for c in spec.key))
        existing = {}
        if latest:
            for row in self.con.execute(t.select().where(key_cols.in_(list(latest)))).mappings():
                existing[tuple(row[c] for c in spec.key)] = row
        fresh = []
        for k, row in latest.items():
            old = existing.get(k)
            if old is not None:
                if spec.updated_field and as_utc(old[spec.updated_field]) > as_utc(row[spec.updated_field]):
                    continue
                self.con.execute(t.delete().where(and_(*(t.c[c] == v for c, v in zip(spec.key, k, strict=True)))))
            fresh.append(row)
        if fresh:
            self.con.execute(t.insert(), fresh)

    def _select_where(self, table: str, columns: list[str], where: str, values: list) -> list[tuple]:
        from threshold_operators.warehouse.schema import metadata

        t = metadata.tables[table]
        return [tuple(r) for r in self.con.execute(t.select().with_only_columns(*(t.c[c] for c in columns))
                                                   .where(t.c[where].in_(values)))]

    def _has_registry(self) -> bool:
        from sqlalchemy import inspect

        if self.hook.dialect_name in REGISTRY_PRESENT_SQL:
            return super()._has_registry()
        return inspect(self.con).has_table("rollup_reads")

    def _scalar(self, sql: str):
        from sqlalchemy import text

        return self.con.execute(text(sql)).scalar()

    def _rows(self, sql: str) -> list[dict]:
        from sqlalchemy import text

        return [dict(r) for r in self.con.execute(text(sql)).mappings()]

    def _delete_keys(self, table: str, key: tuple[str, ...], keys: list[tuple]) -> None:
        from sqlalchemy import and_

        from threshold_operators.warehouse.schema import metadata

        t = metadata.tables[table]
        for k in keys:
            self.con.execute(t.delete().where(and_(*(t.c[c] == v for c, v in zip(key, k, strict=True)))))

    def commit(self) -> None:
        self.tx.commit()
        self._rollup_registry = None
        self.tx = self.con.begin()

    def rollback(self) -> None:
        self.tx.rollback()
        self._rollup_registry = None

    def close(self) -> None:
        self.con.close()


def bulk_loader(hook: WarehouseHook) -> BulkLoader:
    """The fastest loader for the hook's warehouse."""
    if hook.is_duckdb:
        return DuckDBBulkLoader(hook)
    if hook.dialect_name == "postgresql" and hook.sqlalchemy_url.get_driver_name() == "psycopg2":
        return PostgresBulkLoader(hook)
    return SQLAlchemyBulkLoader(hook)
