"""The rollups' bookkeeping in the warehouse: which 5-minute slices of which fact table changed.

A rolling rule (``window:`` in its rule file) reads a rollup, its metric query kept per entity
and 5-minute slice (``engine.rollups``). Two tables keep the rollups exact under late and
updated rows without the loader knowing any rule:

- ``rollup_dirty (seq, table_name, slice)``: every load appends, **in its own transaction**,
  the slices (of the table's ``event_field``) of the rows it changed for some rollup, and of the
  stored versions those rows replace where an update moved the event time (a corrected
  ``created_at``: the old slice loses the row, ``movable_event``); ``seq`` comes from a
  sequence, so a row appended after a reader looked has a larger ``seq`` than any it saw;
- ``rollup_state (rollup, query_hash, through_seq, built_from, updated_at)``: how far each
  rollup has got: it holds every slice from ``built_from`` on, recomputed for every
  ``rollup_dirty`` row up to ``through_seq``;
- ``rollup_reads (rollup, query_hash, table_name, read_columns)``: what each rollup's query reads,
  table by table, written by the rollup before it builds (``engine.rollups``). A load reads it
  (``read_registry``) so that it marks only what some rollup can see change: nothing for a table
  no rollup reads (shipments, stock), and for an upsert only the rows that are new, moved to
  another slice, or changed in a column a rollup reads (an order's status changing, days after it
  was placed, does not change the orders per slice of the refund rate). A rollup without its row
  here (one built by an earlier version) makes every load mark every row, as before.

Created with explicit DDL (a sequence-backed column differs between DuckDB and PostgreSQL);
documented in docs/warehouse.md (``BOOKKEEPING_DOC``).
"""

from __future__ import annotations

from datetime import UTC, timedelta

SLICE = timedelta(minutes=5)
DIMENSIONS = ("shops", "products", "warehouses")  # read whole; not sliced

BOOKKEEPING_DOC = """\
### rollup_dirty

The 5-minute slices (of the table's event time) in which a load changed something a rollup reads
(`rollup_reads`): the slices of its new rows, and the old and new slices of the rows it replaced
that moved (the event time is not part of the key) or changed in a column a rollup reads;
nothing for a table no rollup reads. Appended in the load's own transaction. The rollups of
rolling rules recompute exactly these slices; the rows every rollup has applied are deleted,
but the newest (it tells the newest `seq` when nothing is pending). Rows of these tables are
replaced, never deleted. A tool other than Storefence's loader that fills these tables may mark every slice it writes.

| column | type | description |
|---|---|---|
| seq | BIGINT | Increasing number from a sequence (a rollup remembers the last it applied). |
| table_name | VARCHAR(64) | Fact table loaded. |
| slice | TIMESTAMPTZ | Start of the 5-minute slice, UTC. |

### rollup_state

How far each rollup (`rollup_<domain>_<query>`: a rolling rule's metric query per entity and
5-minute slice) has got.

| column | type | description |
|---|---|---|
| rollup | VARCHAR(128) | Rollup table. |
| query_hash | VARCHAR(64) | Hash of the rendered query it was built with; a change rebuilds it. |
| through_seq | BIGINT | The last `rollup_dirty.seq` applied. |
| built_from | TIMESTAMPTZ | First slice held (every later slice is held). |
| updated_at | TIMESTAMPTZ | Wall-clock time of the last maintenance. |

### rollup_reads

What each rollup's query reads, table by table (the columns qualified by `sqlglot` against the
schema): a load marks in `rollup_dirty` only the rows some rollup can see change (new, moved to
another slice, or changed in a column listed here), and nothing for a table no rollup reads.

| column | type | description |
|---|---|---|
| rollup | VARCHAR(128) | Rollup table. |
| query_hash | VARCHAR(64) | The `rollup_state.query_hash` these rows describe. |
| table_name | VARCHAR(64) | Warehouse table the query reads. |
| read_columns | VARCHAR(2000) | Its columns the query reads, comma-separated; `*` when they could not be told (every change counts). |
"""


def _dialect(engine) -> str:
    return engine.dialect.name


BOOKKEEPING_VERSION = "rollup-bookkeeping-2"  # change it with the statements below (schema_once)


def create_rollup_bookkeeping(bind) -> None:
    """Create ``rollup_dirty``, ``rollup_state`` and ``rollup_reads`` if missing (idempotent). ``bind``: an engine,
    or a connection whose transaction the statements join."""
    from sqlalchemy import text
    from sqlalchemy.engine import Connection

    dialect = _dialect(bind)
    if dialect.startswith("postgres"):
        statements = ["CREATE TABLE IF NOT EXISTS rollup_dirty (seq BIGSERIAL PRIMARY KEY, "
                      "table_name VARCHAR(64) NOT NULL, slice TIMESTAMPTZ NOT NULL)"]
    elif dialect == "duckdb":
        statements = ["CREATE SEQUENCE IF NOT EXISTS rollup_dirty_seq",
                      "CREATE TABLE IF NOT EXISTS rollup_dirty (seq BIGINT PRIMARY KEY DEFAULT "
                      "nextval('rollup_dirty_seq'), table_name VARCHAR(64) NOT NULL, slice TIMESTAMPTZ NOT NULL)"]
    else:  # SQLite and the like: an INTEGER PRIMARY KEY numbers itself
        statements = ["CREATE TABLE IF NOT EXISTS rollup_dirty (seq INTEGER PRIMARY KEY, "
                      "table_name VARCHAR(64) NOT NULL, slice TIMESTAMP NOT NULL)"]
    statements += [
        "CREATE TABLE IF NOT EXISTS rollup_state (rollup VARCHAR(128) PRIMARY KEY, query_hash VARCHAR(64) NOT NULL, "
        "through_seq BIGINT NOT NULL, built_from TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL)",
        "CREATE INDEX IF NOT EXISTS rollup_dirty_table ON rollup_dirty (table_name, seq)",
        "CREATE TABLE IF NOT EXISTS rollup_reads (rollup VARCHAR(128) NOT NULL, query_hash VARCHAR(64) NOT NULL, "
        "table_name VARCHAR(64) NOT NULL, read_columns VARCHAR(2000) NOT NULL, PRIMARY KEY (rollup, table_name))",
    ]
    if isinstance(bind, Connection):
        for sql in statements:
            bind.execute(text(sql))
        return
    with bind.begin() as con:
        for sql in statements:
            con.execute(text(sql))


EVERY_COLUMN = "*"


class Registry:
    """What the rollups read, as a load sees it (``read_registry``): for a table, ``None`` when no
    rollup reads it, else the columns they read (``EVERY_COLUMN`` among them: not known)."""

    def __init__(self, reads: dict[str, frozenset[str]], conservative: bool):
        self.reads = reads
        self.conservative = conservative  # a rollup without its row: every table, every column

    def columns(self, table: str) -> frozenset[str] | None:
        if self.conservative:
            return frozenset({EVERY_COLUMN})
        return self.reads.get(table)


REGISTRY_SQL = ("SELECT s.rollup, r.table_name, r.read_columns FROM rollup_state s LEFT JOIN rollup_reads r "
                "ON r.rollup = s.rollup AND r.query_hash = s.query_hash "
                "UNION ALL SELECT rollup, table_name, read_columns FROM rollup_reads")


def registry_of(rows) -> Registry:
    """The registry from ``REGISTRY_SQL``'s rows: every rollup being built or kept with what it
    reads; a kept rollup whose query has no row (built before the registry) makes it conservative."""
    reads: dict[str, set[str]] = {}
    conservative = False
    for _rollup, table, columns in rows:
        if table is None:
            conservative = True
            continue
        reads.setdefault(table, set()).update(c for c in columns.split(",") if c)
    return Registry({t: frozenset(c) for t, c in reads.items()}, conservative)


CONSERVATIVE = Registry({}, conservative=True)  # what a load assumes before set-up made rollup_reads

_REGISTRY_AT: set[str] = set()  # databases seen holding rollup_reads (a table is never dropped)

# Whether rollup_reads exists, asked without failing the transaction (None: ask SQLAlchemy's inspector).
REGISTRY_PRESENT_SQL = {"duckdb": "SELECT COUNT(*) > 0 FROM duckdb_tables() WHERE table_name = 'rollup_reads'",
                        "postgresql": "SELECT to_regclass('rollup_reads') IS NOT NULL"}
LOCK_MARKS_SQL = "LOCK TABLE rollup_dirty IN ROW EXCLUSIVE MODE"  # PostgreSQL: a load's, to its commit


def has_registry(con) -> bool:
    """Whether the warehouse of ``con`` (a SQLAlchemy connection) holds ``rollup_reads`` (asked once
    a process and database once it does: set-up creates it, nothing drops it)."""
    from sqlalchemy import inspect, text

    where = f"{con.engine.url}#{con.dialect.default_schema_name}"
    if where in _REGISTRY_AT:
        return True
    sql = REGISTRY_PRESENT_SQL.get(con.dialect.name)
    present = con.execute(text(sql)).scalar() if sql else inspect(con).has_table("rollup_reads")
    if present:
        _REGISTRY_AT.add(where)
    return bool(present)


def register_reads(con, rollup: str, query_hash: str, reads, held: bool | None = None) -> bool:
    """Write what ``rollup`` (built with ``query_hash``) reads, unless it is there already (``held``:
    whether it is, when the caller asked; else asked here); in the caller's transaction (``con``: a
    SQLAlchemy connection), before the rollup reads any fact. ``reads``: a callable giving
    ``{table: columns or None}``, called only when the rows are written (qualifying the query costs
    about 20 ms a process). True when written; False as well where set-up has not created the
    table yet (loads then mark every row, as before it)."""
    from sqlalchemy import text

    if held or not has_registry(con):
        return False
    if held is None and con.execute(text("SELECT COUNT(*) FROM rollup_reads WHERE rollup = :r AND query_hash = :h"),
                                    {"r": rollup, "h": query_hash}).scalar():
        return False
    con.execute(text("DELETE FROM rollup_reads WHERE rollup = :r"), {"r": rollup})
    rows = [{"r": rollup, "h": query_hash, "t": table, "c": EVERY_COLUMN if columns is None else ",".join(columns)}
            for table, columns in reads().items()]
    if rows:
        con.execute(text("INSERT INTO rollup_reads (rollup, query_hash, table_name, read_columns) VALUES (:r, :h, :t, :c)"),
                    rows)
    return True


def is_sliced(table: str) -> bool:
    """Whether loads of ``table`` mark slices (a fact table with an event time)."""
    from threshold_operators.warehouse.schema import TABLE_NAMES, table_spec

    return table in TABLE_NAMES and table not in DIMENSIONS and bool(table_spec(table).event_field)


def dirty_slices(table: str, data) -> list:
    """The distinct 5-minute slices of the event times of ``data`` (an Arrow table of rows of the
    fact ``table``); [] for a table that is not sliced."""
    import pyarrow.compute as pc

    from threshold_operators.warehouse.schema import table_spec

    if not is_sliced(table) or data.num_rows == 0:
        return []
    field = table_spec(table).event_field
    if field not in data.column_names:
        return []
    column = data.column(field)
    floored = pc.floor_temporal(column, multiple=5, unit="minute")
    return [v for v in pc.unique(floored).to_pylist() if v is not None]


def movable_event(table: str) -> tuple[str, str] | None:
    """(event field, lookup column) of a sliced ``table`` whose rows' event time an update can
    move (the event field is not part of the key), else None. The lookup column is the key's
    first column: the stored versions of a batch's keys are among the rows it selects."""
    from threshold_operators.warehouse.schema import table_spec

    if not is_sliced(table):
        return None
    spec = table_spec(table)
    if spec.event_field in spec.key:
        return None
    return spec.event_field, spec.key[0]


def slices_of(times) -> set:
    """The 5-minute slices (UTC starts) of timestamps read back from the warehouse."""
    from threshold_operators.warehouse.schema import as_utc

    out = set()
    for t in times:
        t = as_utc(t)
        if t is not None:
            t = t.astimezone(UTC)
            out.add(t.replace(minute=t.minute - t.minute % 5, second=0, microsecond=0))
    return out
