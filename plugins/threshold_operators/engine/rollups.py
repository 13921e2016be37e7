"""Rollups: a rolling rule's metric query kept per entity and 5-minute slice, maintained as data lands.

A rolling rule (``window: 1h`` in its rule file) is evaluated every 5 minutes over a window
ending at the newest complete slice, against the same window in earlier days or weeks. Reading
raw facts for that would cost a cycle the whole window and every baseline window, twelve times
an hour. Instead the rule's metric query (additive metrics per entity and ``slice()``) is
materialised once in ``rollup_<domain>_<query>`` (the entity keys, ``bucket`` = the slice's
start, one DOUBLE PRECISION column per metric), and a cycle reads only rollup rows.

Kept exact under late and updated rows: every load notes the slices it wrote in
``rollup_dirty`` in its own transaction (``warehouse.rollup_tables``); ``maintain`` recomputes
exactly the dirty slices of the tables the query reads, from the raw facts of those slices, and
records how far it got in ``rollup_state`` (``through_seq``). A rollup holds every slice from
``built_from`` on; a cycle (or a backtest) that needs older history extends it backwards first.
A changed query (or metric list) rebuilds it.

The analyst's query is read on the evaluation connection (read-only, no files, settings locked:
``WarehouseHook.evaluation_connection``) like any rule statement; only the engine's own
statements (DDL, DELETE of slices, INSERT of the rows read, the bookkeeping) use the writing
connection. On PostgreSQL the slices to recompute are read under a SHARE lock on
``rollup_dirty`` (every load that marked slices before has committed; one that marks later
gets a larger ``seq``), and the write is serialised per rollup by an advisory lock: a
maintainer that finds ``through_seq`` moved meanwhile starts again.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from threshold_operators.rules.model import SLICE

log = logging.getLogger(__name__)

FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
MERGE_GAP = timedelta(hours=1)  # dirty slices closer than this are recomputed as one range
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Rollup:
    """One materialised metric query: what every rolling rule reading it needs."""

    name: str
    query: str  # the rule file's query path, e.g. sales/orders_by_sku_slice.sql
    template: str
    params: tuple[tuple[str, object], ...]
    keys: tuple[str, ...]
    metrics: tuple[str, ...]
    tables: tuple[str, ...]
    rules: tuple[str, ...] = field(default=(), compare=False)

    @property
    def sql(self) -> str:
        """The metric query over one range of slices (``:scan_0_start`` .. ``:scan_0_end``)."""
        from threshold_operators.rules.sql_template import RenderContext, render

        return render(self.template, RenderContext(n_ranges=1, params=dict(self.params)))

    @property
    def query_hash(self) -> str:
        text = "\n".join([self.sql, ",".join(self.keys), ",".join(self.metrics), repr(self.params)])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def bind(self, lo: datetime, hi: datetime) -> dict:
        return {"scan_0_start": lo, "scan_0_end": hi, **{f"p_{k}": v for k, v in self.params}}


def rollup_name(query: str, params: dict) -> str:
    """``rollup_<query path as an identifier>`` (and a hash of the params when a rule has some)."""
    stem = re.sub(r"[^a-z0-9_]", "_", query.lower().removesuffix(".sql"))
    name = f"rollup_{stem}"
    if params:
        name += "_" + hashlib.sha256(repr(sorted(params.items())).encode()).hexdigest()[:8]
    if len(name) > 63:
        name = name[:54] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


def catalogue_rollups(catalogue) -> dict[str, Rollup]:
    """Every rollup the catalogue's rolling rules read (rules sharing a query and params share one,
    with the union of their metrics)."""
    found: dict[str, dict] = {}
    for loaded in catalogue.rules.values():
        rule = loaded.rule
        if not rule.rolling or loaded.tables == ("series",):
            continue
        name = rollup_name(rule.query, rule.params)
        entry = found.setdefault(name, {"loaded": loaded, "metrics": [], "rules": []})
        entry["metrics"] += [m for m in rule.metrics if m not in entry["metrics"]]
        entry["rules"].append(rule.id)
    out = {}
    for name, entry in found.items():
        loaded = entry["loaded"]
        out[name] = Rollup(name, loaded.rule.query, loaded.template, tuple(sorted(loaded.rule.params.items())),
                           loaded.rule.keys, tuple(entry["metrics"]), tuple(loaded.tables), tuple(entry["rules"]))
    return out


def rollup_for(loaded, catalogue) -> Rollup:
    return catalogue_rollups(catalogue)[rollup_name(loaded.rule.query, loaded.rule.params)]


def rollups_needed(loaded, catalogue) -> list[tuple[Rollup, object]]:
    """(rollup, rule) for the rule and every rule it refers to that is rolling."""
    out = []
    for item in [loaded, *(catalogue.get(r) for r in loaded.rule.references)]:
        if item.rule.rolling and item.tables != ("series",):
            out.append((rollup_for(item, catalogue), item.rule))
    return out


def coalesce(slices: list[datetime], gap: timedelta = MERGE_GAP) -> list[tuple[datetime, datetime]]:
    """Sorted slice starts as [lo, hi) ranges; slices less than ``gap`` apart share a range."""
    ranges: list[list[datetime]] = []
    for s in sorted(set(slices)):
        if ranges and s - ranges[-1][1] < gap:
            ranges[-1][1] = s + SLICE
        else:
            ranges.append([s, s + SLICE])
    return [(a, b) for a, b in ranges]


@dataclass
class Maintenance:
    """What one ``maintain`` call did (logged by the check task, timed by the benchmark)."""

    rollup: str
    rebuilt: bool = False
    extended_to: datetime | None = None
    ranges: list[tuple[datetime, datetime]] = field(default_factory=list)
    rows: int = 0
    through_seq: int = 0
    attempts: int = 0

    def describe(self) -> str:
        what = "rebuilt" if self.rebuilt else f"{len(self.ranges)} range(s) recomputed"
        if self.extended_to:
            what += f", extended back to {self.extended_to.isoformat()}"
        return f"{self.rollup}: {what}, {self.rows} rows (through seq {self.through_seq})"


def _ddl(hook, rollup: Rollup) -> list[str]:
    cols = [f'"{k}" VARCHAR' for k in rollup.keys] + ['"bucket" TIMESTAMPTZ'] + \
        [f'"{m}" DOUBLE PRECISION' for m in rollup.metrics]
    out = [f"CREATE TABLE {rollup.name} ({', '.join(cols)})"]
    if hook.dialect_name == "postgresql":
        out.append(f"CREATE INDEX {rollup.name}_bucket ON {rollup.name} (bucket)")
    return out


def _state(con, name: str) -> dict | None:
    from sqlalchemy import text

    row = con.execute(text("SELECT query_hash, through_seq, built_from FROM rollup_state WHERE rollup = :r"),
                      {"r": name}).mappings().first()
    return dict(row) if row else None


def _read(hook, rollup: Rollup, ranges: list[tuple[datetime, datetime]]):
    """The query's rows over ``ranges``, read on the evaluation connection, as one Arrow table."""
    import pyarrow as pa
    from sqlalchemy import text

    sql = text(rollup.sql)
    cols = {c: [] for c in (*rollup.keys, "bucket", *rollup.metrics)}
    with hook.evaluation_connection() as con:
        for lo, hi in ranges:
            result = con.execute(sql, rollup.bind(lo, hi)).mappings()
            for row in result:
                for c, values in cols.items():
                    values.append(row[c])
    schema = pa.schema([(k, pa.string()) for k in rollup.keys] + [("bucket", pa.timestamp("us", tz="UTC"))]
                       + [(m, pa.float64()) for m in rollup.metrics])
    return pa.table({c: [str(v) if c in rollup.keys and v is not None else
                         (float(v) if c in rollup.metrics and v is not None else v) for v in values]
                     for c, values in cols.items()}, schema=schema)


def maintain(hook, rollup: Rollup, need_from: datetime, now: datetime) -> Maintenance:
    """Bring ``rollup`` up to date with every load noted so far, holding every slice from
    ``need_from`` on (builds it, rebuilds it after a query change, extends it backwards). Idempotent."""
    from sqlalchemy import text

    from threshold_operators.warehouse.bulk_load import bulk_loader
    from threshold_operators.warehouse.schema import as_utc

    postgres = hook.dialect_name == "postgresql"
    tables = [t for t in rollup.tables if t not in ("shops", "products")]
    qhash = rollup.query_hash
    for attempt in range(1, MAX_ATTEMPTS + 1):
        done = Maintenance(rollup.name, attempts=attempt)
        # 1. what to recompute, read while no load that marked slices is still open
        with hook.engine.begin() as con:
            if postgres:
                con.execute(text("LOCK TABLE rollup_dirty IN SHARE MODE"))
            state = _state(con, rollup.name)
            max_seq = con.execute(text("SELECT COALESCE(MAX(seq), 0) FROM rollup_dirty")).scalar()
            if state is None or state["query_hash"] != qhash:
                done.rebuilt, ranges, built_from = True, [(need_from, FAR_FUTURE)], need_from
            else:
                built_from = as_utc(state["built_from"])
                ranges = []
                if state["through_seq"] < max_seq and tables:
                    names = ", ".join(f"'{t}'" for t in tables)  # schema table names (identifiers)
                    dirty = con.execute(text(f"SELECT DISTINCT slice FROM rollup_dirty WHERE table_name IN ({names}) "
                                             f"AND seq > :a AND seq <= :b AND slice >= :f"),
                                        {"a": state["through_seq"], "b": max_seq, "f": built_from}).scalars()
                    ranges = coalesce([as_utc(s) for s in dirty])
                if need_from < built_from:
                    ranges = [(need_from, built_from), *ranges]
                    done.extended_to, built_from = need_from, need_from
        seen_seq = None if state is None else state["through_seq"]
        done.ranges, done.through_seq = ranges, max_seq
        # 2. the query's rows for those slices (read-only connection)
        data = _read(hook, rollup, ranges) if ranges else None
        done.rows = data.num_rows if data is not None else 0
        # 3. replace the slices and move the mark, unless another maintainer moved it meanwhile
        with bulk_loader(hook) as loader:
            if postgres:
                loader.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (rollup.name,))
            current = loader.rows(f"SELECT through_seq, query_hash FROM rollup_state WHERE rollup = '{rollup.name}'")
            now_seq = current[0]["through_seq"] if current else None
            if now_seq != seen_seq:  # another task maintained it since step 1: start again from its state
                log.info("%s: maintained by another task meanwhile; again", rollup.name)
                continue
            if done.rebuilt:
                loader.execute(f"DROP TABLE IF EXISTS {rollup.name}")
                for ddl in _ddl(hook, rollup):
                    loader.execute(ddl)
            else:
                for lo, hi in ranges:
                    loader.execute(f"DELETE FROM {rollup.name} WHERE bucket >= ? AND bucket < ?", (lo, hi))
            if data is not None:
                loader.append_rows(rollup.name, data)
            loader.execute("DELETE FROM rollup_state WHERE rollup = ?", (rollup.name,))
            loader.execute("INSERT INTO rollup_state (rollup, query_hash, through_seq, built_from, updated_at) "
                           "VALUES (?, ?, ?, ?, ?)", (rollup.name, qhash, max_seq, built_from, now))
            # slices every rollup has applied are not needed any more
            loader.execute("DELETE FROM rollup_dirty WHERE seq <= (SELECT MIN(through_seq) FROM rollup_state)")
        return done
    raise RuntimeError(f"{rollup.name}: maintained concurrently {MAX_ATTEMPTS} times in a row; try again")


def maintain_for(hook, loaded, catalogue, start: datetime, end: datetime, now: datetime) -> list[Maintenance]:
    """Maintain every rollup a cycle of ``loaded`` over ``[start, end)`` reads, holding the history
    its window, lead-in and baselines need."""
    from threshold_operators.engine.windows import history_needed

    out = []
    for rollup, rule in rollups_needed(loaded, catalogue):
        out.append(maintain(hook, rollup, start - history_needed(rule), now))
    return out
