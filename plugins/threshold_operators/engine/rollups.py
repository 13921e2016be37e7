"""Rollups: a rolling rule's metric query kept per entity and 5-minute slice, maintained as data lands.

A rolling rule (``window: 1h`` in its rule file) is evaluated every 5 minutes over a window
ending at the newest complete slice, against the same window in earlier days or weeks. Reading
raw facts for that would cost a cycle the whole window and every baseline window, twelve times
an hour. Instead the rule's metric query (additive metrics per entity and ``slice()``) is
materialised once in ``rollup_<domain>_<query>`` (the entity keys, ``bucket`` = the slice's
start, one DOUBLE PRECISION column per metric), and a cycle reads only rollup rows.

Kept exact under late and updated rows: every load notes the slices it changed for some rollup
in ``rollup_dirty`` in its own transaction (``warehouse.rollup_tables``; what a rollup reads is
in ``rollup_reads``, which ``maintain`` writes before the rollup reads any fact); ``maintain`` recomputes
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
from functools import lru_cache

from threshold_operators.rules.model import ENTITY_KEYS, SLICE
from threshold_operators.rules.sql_template import ROLLUP_READ_DAYS, rollup_table
from threshold_operators.warehouse.rollup_tables import has_registry, register_reads

log = logging.getLogger(__name__)

FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
MERGE_GAP = timedelta(hours=1)  # dirty slices closer than this are recomputed as one range
MAX_ATTEMPTS = 5
READ_RANGES = 64  # ranges of slices recomputed by one statement


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
    def reads(self) -> dict[str, tuple[str, ...] | None]:
        """The columns the query reads, per table (``query_reads``): what ``rollup_reads`` holds."""
        return dict(query_reads(self.template, self.params))

    @property
    def sql(self) -> str:
        """The metric query over one range of slices (``:scan_0_start`` .. ``:scan_0_end``)."""
        return self.sql_over(1)

    def sql_over(self, n_ranges: int) -> str:
        """The metric query over ``n_ranges`` ranges of slices (``:scan_<i>_start`` .. ``_end``)."""
        from threshold_operators.rules.sql_template import RenderContext, render

        return render(self.template, RenderContext(n_ranges=n_ranges, params=dict(self.params)))

    @property
    def query_hash(self) -> str:
        text = "\n".join([self.sql, ",".join(self.keys), ",".join(self.metrics), repr(self.params)])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def bind(self, lo: datetime, hi: datetime) -> dict:
        return self.bind_ranges([(lo, hi)])

    def bind_ranges(self, ranges: list[tuple[datetime, datetime]]) -> dict:
        out = {f"p_{k}": v for k, v in self.params}
        for i, (lo, hi) in enumerate(ranges):
            out[f"scan_{i}_start"], out[f"scan_{i}_end"] = lo, hi
        return out


KEY_COLUMNS = frozenset(k for keys in ENTITY_KEYS.values() for k in keys)


@lru_cache(maxsize=256)
def query_columns(template: str, params: tuple = ()) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(key columns, metric columns, tables read) of a slice query: its output's entity key columns
    (shop_id, sku, ...), the rest but ``bucket`` (additive metrics), and the warehouse tables it reads."""
    import sqlglot
    from sqlglot import exp

    from threshold_operators.rules.sql_template import RenderContext, render

    stmt = sqlglot.parse_one(render(template, RenderContext(n_ranges=1, params=dict(params))), read="duckdb")
    names = list(stmt.named_selects)
    ctes = {c.alias_or_name for c in stmt.find_all(exp.CTE)}
    tables = sorted({t.name for t in stmt.find_all(exp.Table) if t.name and t.name not in ctes})
    return (tuple(n for n in names if n in KEY_COLUMNS),
            tuple(n for n in names if n not in KEY_COLUMNS and n != "bucket"), tuple(tables))


@lru_cache(maxsize=256)
def query_reads(template: str, params: tuple = ()) -> tuple[tuple[str, tuple[str, ...] | None], ...]:
    """(warehouse table, the columns the query reads of it) for each table a slice query reads: its
    columns qualified by sqlglot against the schema, scope by scope (a CTE's alias is not a table).
    ``None`` for a table's columns when they cannot be told (a column sqlglot cannot place): a load
    then counts every change of that table."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.optimizer.scope import traverse_scope

    from threshold_operators.rules.sql_template import RenderContext, render
    from threshold_operators.warehouse.schema import TABLE_NAMES, table_spec

    stmt = sqlglot.parse_one(render(template, RenderContext(n_ranges=1, params=dict(params))), read="duckdb")
    tables = sorted({t.name for t in stmt.find_all(exp.Table) if t.name in TABLE_NAMES})
    try:
        schema = {t: {c: "VARCHAR" for c in table_spec(t).columns} for t in tables}
        stmt = qualify(stmt, schema=schema, dialect="duckdb", validate_qualify_columns=True)
        reads: dict[str, set[str]] = {t: set() for t in tables}
        for scope in traverse_scope(stmt):
            for column in scope.columns:
                source = scope.sources.get(column.table)
                if isinstance(source, exp.Table) and source.name in reads:
                    reads[source.name].add(column.name)
    except SqlglotError:
        return tuple((t, None) for t in tables)
    return tuple((t, tuple(sorted(c))) for t, c in sorted(reads.items()))


def rollup_of_query(query: str, template: str, params: dict | None = None, rules: tuple[str, ...] = ()) -> Rollup:
    params = dict(params or {})
    keys, metrics, tables = query_columns(template, tuple(sorted(params.items())))
    return Rollup(rollup_table(query, params), query, template, tuple(sorted(params.items())), keys, metrics,
                  tables, rules)


def read_query(path: str) -> str:
    """A slice query's text from the SQL folder (``rollup()`` names one by its path)."""
    from threshold_operators.rules.catalogue import inside, sql_dir

    file = sql_dir() / path
    if not inside(file, sql_dir()) or not file.is_file():
        raise FileNotFoundError(f"rollup({path!r}): no such query in {sql_dir()}")
    return file.read_text(encoding="utf-8")


ROLLUP_CALL = re.compile(r"\{\{\s*rollup\(\s*['\"]([^'\"]+)['\"]\s*\)\s*\}\}")


def rollup_paths(template: str) -> list[str]:
    """The queries a template reads through ``rollup()``."""
    return list(dict.fromkeys(ROLLUP_CALL.findall(template)))


def catalogue_rollups(catalogue) -> dict[str, Rollup]:
    """Every rollup the catalogue reads: each rolling rule's query (rules sharing a query and params
    share one) and each query named by ``rollup()``."""
    found: dict[str, tuple[str, str, dict, list[str]]] = {}
    for loaded in catalogue.rules.values():
        rule = loaded.rule
        if loaded.tables == ("series",):
            continue
        if rule.rolling:
            name = rollup_table(rule.query, rule.params)
            found.setdefault(name, (rule.query, loaded.template, dict(rule.params), []))[3].append(rule.id)
        for path in rollup_paths(loaded.template):
            name = rollup_table(path, {})
            if name not in found:
                found[name] = (path, read_query(path), {}, [])
            found[name][3].append(rule.id)
    return {name: rollup_of_query(q, t, p, tuple(rules)) for name, (q, t, p, rules) in found.items()}


def rollups_needed(loaded, catalogue) -> list[tuple[Rollup, object]]:
    """(rollup, rule reading it) for the rule and every rule it refers to."""
    every = catalogue_rollups(catalogue)
    out = []
    for item in [loaded, *(catalogue.get(r) for r in loaded.rule.references)]:
        if item.tables == ("series",):
            continue
        if item.rule.rolling:
            out.append((every[rollup_table(item.rule.query, item.rule.params)], item.rule))
        out += [(every[rollup_table(path, {})], item.rule) for path in rollup_paths(item.template)]
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
    earlier: bool = False  # brought up to date earlier in this DuckDB session: nothing asked

    def describe(self) -> str:
        if self.earlier:
            return f"{self.rollup}: up to date (maintained earlier in this session)"
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


def _state(con, name: str, qhash: str) -> tuple[dict | None, int, bool | None]:
    """(the rollup's ``rollup_state`` row or None, the newest ``rollup_dirty.seq``, whether
    ``rollup_reads`` holds the query ``qhash``: None where it has no such table), in one query."""
    from sqlalchemy import text

    registered = "(SELECT COUNT(*) FROM rollup_reads r WHERE r.rollup = :r AND r.query_hash = :h)" \
        if has_registry(con) else "NULL"
    row = con.execute(text(f"SELECT m.max_seq, s.query_hash, s.through_seq, s.built_from, {registered} AS registered "
                           "FROM (SELECT COALESCE(MAX(seq), 0) AS max_seq FROM rollup_dirty) m "
                           "LEFT JOIN rollup_state s ON s.rollup = :r"), {"r": name, "h": qhash}).mappings().one()
    state = {k: row[k] for k in ("query_hash", "through_seq", "built_from")}
    held = None if row["registered"] is None else bool(row["registered"])
    return (state if state["query_hash"] is not None else None), row["max_seq"], held


def _read(hook, rollup: Rollup, ranges: list[tuple[datetime, datetime]]):
    """The query's rows over ``ranges``, read on the evaluation connection, as one Arrow table."""
    import pyarrow as pa
    from sqlalchemy import text

    names = (*rollup.keys, "bucket", *rollup.metrics)
    cols: dict[str, list] = {c: [] for c in names}
    with hook.evaluation_connection() as con:
        # the ranges in statements of up to READ_RANGES each: a cycle after an extract that updated
        # orders of the last days recomputes dozens of scattered slices, in one or two queries
        for k in range(0, len(ranges), READ_RANGES):
            part = ranges[k:k + READ_RANGES]
            result = con.execute(text(rollup.sql_over(len(part))), rollup.bind_ranges(part))
            at = [list(result.keys()).index(c) for c in names]
            for row in result.all():
                for c, i in zip(names, at, strict=True):
                    cols[c].append(row[i])
    schema = pa.schema([(k, pa.string()) for k in rollup.keys] + [("bucket", pa.timestamp("us", tz="UTC"))]
                       + [(m, pa.float64()) for m in rollup.metrics])
    table = pa.table({c: [str(v) if c in rollup.keys and v is not None else
                          (float(v) if c in rollup.metrics and v is not None else v) for v in values]
                      for c, values in cols.items()}, schema=schema)
    # in time order: DuckDB skips the row groups outside a cycle's ranges (zone maps), so reading a
    # window and its baselines costs the same whatever the length of the history held
    return table.sort_by([("bucket", "ascending")])


@dataclass
class _Plan:
    """What one maintainer found to do for a rollup (step 1 of ``maintain_many``)."""

    rollup: Rollup
    done: Maintenance
    ranges: list[tuple[datetime, datetime]]
    built_from: datetime
    seen_seq: int | None
    max_seq: int

    @property
    def idle(self) -> bool:
        """Nothing landed since and nothing to build or extend: no write at all."""
        return not self.done.rebuilt and not self.ranges and self.seen_seq == self.max_seq


def _plan(con, rollup: Rollup, need_from: datetime, attempt: int) -> _Plan:
    """Which slices of ``rollup`` to recompute, read in the caller's transaction (on PostgreSQL
    under its SHARE lock on ``rollup_dirty``)."""
    from sqlalchemy import text

    from threshold_operators.warehouse.schema import as_utc

    tables = [t for t in rollup.tables if t not in ("shops", "products", "warehouses")]
    qhash = rollup.query_hash
    done = Maintenance(rollup.name, attempts=attempt)
    state, max_seq, registered = _state(con, rollup.name, qhash)
    # what the query reads, before it reads: a load that starts later marks what it can see
    # change (on PostgreSQL a load holds ROW EXCLUSIVE on rollup_dirty from its registry
    # read to its commit, so one in flight finishes before the SHARE lock is granted)
    if registered is False:
        register_reads(con, rollup.name, qhash, lambda: rollup.reads, held=False)
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
    done.ranges, done.through_seq = ranges, max_seq
    return _Plan(rollup, done, ranges, built_from, None if state is None else state["through_seq"], max_seq)


def _claim(loader, plan: _Plan, now: datetime) -> bool:
    """Move ``plan``'s mark if it is where step 1 found it; False when another maintainer moved it."""
    rollup, qhash = plan.rollup, plan.rollup.query_hash
    if plan.seen_seq is not None and not plan.done.rebuilt:  # the usual case
        return loader.execute("UPDATE rollup_state SET through_seq = ?, built_from = ?, updated_at = ? "
                              "WHERE rollup = ? AND through_seq = ? AND query_hash = ?",
                              (plan.max_seq, plan.built_from, now, rollup.name, plan.seen_seq, qhash)) == 1
    current = loader.rows(f"SELECT through_seq FROM rollup_state WHERE rollup = '{rollup.name}'")
    return (current[0]["through_seq"] if current else None) == plan.seen_seq


def _write(hook, loader, plan: _Plan, data, now: datetime) -> None:
    """Replace ``plan``'s slices with ``data`` (rebuild the table first when asked) and set its state."""
    rollup = plan.rollup
    if plan.done.rebuilt:
        loader.execute(f"DROP TABLE IF EXISTS {rollup.name}")
        for ddl in _ddl(hook, rollup):
            loader.execute(ddl)
    else:
        for k in range(0, len(plan.ranges), READ_RANGES):
            part = plan.ranges[k:k + READ_RANGES]
            loader.execute(f"DELETE FROM {rollup.name} WHERE " + " OR ".join(["(bucket >= ? AND bucket < ?)"] * len(part)),
                           tuple(t for r in part for t in r))
    if data is not None:
        loader.append_rows(rollup.name, data)
    if plan.seen_seq is None or plan.done.rebuilt:
        loader.execute("DELETE FROM rollup_state WHERE rollup = ?", (rollup.name,))
        loader.execute("INSERT INTO rollup_state (rollup, query_hash, through_seq, built_from, updated_at) "
                       "VALUES (?, ?, ?, ?, ?)", (rollup.name, rollup.query_hash, plan.max_seq, plan.built_from, now))


def maintain(hook, rollup: Rollup, need_from: datetime, now: datetime) -> Maintenance:
    """Bring ``rollup`` up to date with every load noted so far, holding every slice from
    ``need_from`` on (builds it, rebuilds it after a query change, extends it backwards). Idempotent."""
    return maintain_many(hook, [(rollup, need_from)], now)[0]


def maintain_many(hook, needs: list[tuple[Rollup, datetime]], now: datetime) -> list[Maintenance]:
    """``maintain`` for several rollups with one write transaction (and one commit) for all of
    them instead of one each: what a domain's cycle does before its rules (``maintain_cycle``).

    1. what to recompute, every rollup's in one read transaction; 2. the query's rows of each
    (read-only connection); 3. one write: each rollup's mark is claimed (moved if it is where
    step 1 found it; on PostgreSQL under an advisory lock per rollup, taken in name order), its
    slices replaced; a rollup another maintainer moved meanwhile is left out of this write and
    planned again. A rollup named twice is held from the earlier of its two starts. Idempotent;
    one result a rollup, in the order of ``needs``."""
    from sqlalchemy import text

    from threshold_operators.warehouse.bulk_load import bulk_loader

    postgres = hook.dialect_name == "postgresql"
    memo = getattr(hook, "session_memo", None)  # a DuckDB session: nobody else writes the file meanwhile
    out: dict[str, Maintenance] = {}
    todo: dict[str, tuple[Rollup, datetime]] = {}
    for rollup, need_from in needs:
        if memo is not None and (held := memo.get((rollup.name, rollup.query_hash))) is not None and held <= need_from:
            out.setdefault(rollup.name, Maintenance(rollup.name, earlier=True))
        elif rollup.name not in todo or need_from < todo[rollup.name][1]:
            todo[rollup.name] = (rollup, need_from)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if not todo:
            break
        # 1. what to recompute, read while no load that marked slices is still open
        with hook.engine.begin() as con:
            if postgres:
                con.execute(text("LOCK TABLE rollup_dirty IN SHARE MODE"))
            plans = [_plan(con, rollup, need_from, attempt) for rollup, need_from in todo.values()]
        writes = []
        for plan in plans:
            if plan.idle:
                _done(out, memo, plan)
                todo.pop(plan.rollup.name)
            else:  # 2. the query's rows for those slices
                data = _read(hook, plan.rollup, plan.ranges) if plan.ranges else None
                plan.done.rows = data.num_rows if data is not None else 0
                writes.append((plan, data))
        if not writes:
            break
        # 3. replace the slices and move the marks, unless another maintainer moved one meanwhile
        claimed = []
        with bulk_loader(hook) as loader:
            for plan, data in sorted(writes, key=lambda w: w[0].rollup.name):
                if postgres:
                    loader.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (plan.rollup.name,))
                if not _claim(loader, plan, now):  # maintained by another task since step 1: planned again
                    log.info("%s: maintained by another task meanwhile; again", plan.rollup.name)
                    continue
                _write(hook, loader, plan, data, now)
                claimed.append(plan)
            if claimed:
                # slices every rollup has applied are not needed any more, but the newest: it tells the
                # newest seq when nothing is pending (an empty table read as 0 moved every mark back)
                loader.execute("DELETE FROM rollup_dirty WHERE seq <= (SELECT MIN(through_seq) FROM rollup_state) "
                               "AND seq < (SELECT MAX(seq) FROM rollup_dirty)")
        for plan in claimed:
            _done(out, memo, plan)
            todo.pop(plan.rollup.name)
    if todo:
        raise RuntimeError(f"{', '.join(todo)}: maintained concurrently {MAX_ATTEMPTS} times in a row; try again")
    return [out[name] for name in dict.fromkeys(rollup.name for rollup, _ in needs)]


def _done(out: dict, memo: dict | None, plan: _Plan) -> None:
    out[plan.rollup.name] = plan.done
    if memo is not None:
        memo[(plan.rollup.name, plan.rollup.query_hash)] = plan.built_from


def rollup_needs(loaded, catalogue, start: datetime) -> dict[str, tuple[Rollup, datetime]]:
    """Every rollup a cycle of ``loaded`` starting at ``start`` reads, with the oldest slice it
    needs: the window, lead-in and baselines of a rolling rule; the 35 days ``rollup()`` gives a query."""
    from threshold_operators.engine.windows import history_needed

    need: dict[str, tuple[Rollup, datetime]] = {}
    for rollup, rule in rollups_needed(loaded, catalogue):
        since = start - history_needed(rule) if rule.rolling and rollup.query == rule.query \
            else start - timedelta(days=ROLLUP_READ_DAYS)
        if rollup.name not in need or since < need[rollup.name][1]:
            need[rollup.name] = (rollup, since)
    return need


def maintain_for(hook, loaded, catalogue, start: datetime, end: datetime, now: datetime) -> list[Maintenance]:
    """Maintain every rollup a cycle of ``loaded`` over ``[start, end)`` reads, holding the history
    its window, lead-in and baselines need."""
    return maintain_many(hook, list(rollup_needs(loaded, catalogue, start).values()), now)


def maintain_cycle(hook, cycles: list[tuple[object, datetime]], catalogue, now: datetime) -> list[Maintenance]:
    """Every rollup the rules of ``cycles`` ((loaded rule, its cycle's start)) read, in one write
    transaction: a domain's cycle before its first rule. Each rule's own ``maintain_for`` then
    finds them held (in a DuckDB session, without a query) unless its cycle starts earlier."""
    needs = [need for loaded, start in cycles for need in rollup_needs(loaded, catalogue, start).values()]
    return maintain_many(hook, needs, now) if needs else []
