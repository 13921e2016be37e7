"""A rule on a metric series from anywhere: a CSV export, or the rows of a rule unit test.

The series becomes a table ``series`` in an in-memory DuckDB (the rule's entity keys, ``bucket``
and the metric columns), and the rule's metric query is replaced by a plain read of it; the rest
is the rule as written, compiled by the same engine: baselines are computed from the series
itself, persistence, tiers, guards and recovery as live.

CSV columns: ``ts`` (ISO 8601, UTC unless it says otherwise), an optional ``entity`` (either the
key written as alerts show it, ``shop_id=s1/sku=A``, or a bare value taken as the last key, e.g.
the SKU), and every metric the rule's conditions and guards read. ``ts`` is on the hour for an
hour-grain rule; for a day-grain rule the start of the shop's local day (midnight in Shanghai is
16:00 UTC); for a 5-minute rule (a rolling ``window:`` rule, or a current state every 5 minutes)
either every 5 minutes (a row per 5-minute bucket) or on the hour: a file whose every ``ts`` is on
the hour is read as hourly, and each row becomes the rule's 12 buckets of its hour (``to_grain``:
the count of a rolling rule is spread evenly over them, a current state holds for each). The
rule's ``attributes`` (supplier, stock) are optional columns, kept as text.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

HOUR = timedelta(hours=1)


class SeriesError(ValueError):
    pass


def _metrics_of(rule, lookup) -> list[str]:
    names = list(rule.metrics)
    for ref in rule.references:
        names += [m for m in _metrics_of(lookup(ref).rule, lookup) if m not in names]
    return list(dict.fromkeys(names))


def entity_keys(rule, value: str | None) -> dict[str, str]:
    """The entity's key columns from a CSV ``entity`` value."""
    keys = rule.keys
    if value and "=" in value:
        parts = dict(p.split("=", 1) for p in value.split("/") if "=" in p)
        missing = [k for k in keys if k not in parts]
        if missing:
            raise SeriesError(f"entity {value!r} lacks {', '.join(missing)} (the {rule.entity} keys: {', '.join(keys)})")
        return {k: parts[k] for k in keys}
    return {**{k: "series" for k in keys[:-1]}, keys[-1]: value or "all"}


def parse_ts(value: str, where: str, resolution: timedelta = HOUR) -> datetime:
    """``value`` as an aware UTC datetime on a whole ``resolution`` of the clock (an hour, 5 minutes)."""
    try:
        ts = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise SeriesError(f"{where}: ts {value!r} is not an ISO 8601 timestamp") from None
    ts = (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC)
    resolution = min(resolution, HOUR)
    if (ts - ts.replace(minute=0, second=0, microsecond=0)) % resolution:
        what = "on the hour (the rule's buckets are hours)" if resolution == HOUR else \
            f"on a {resolution // timedelta(minutes=1)}-minute boundary (the rule's buckets)"
        raise SeriesError(f"{where}: ts {value} is not {what}")
    return ts


def default_step(rule) -> timedelta:
    """The spacing of a series' values for ``rule`` unless told: its grain, except an hour for a
    5-minute rule (hourly series keep working; ``to_grain`` makes the 5-minute buckets)."""
    return HOUR if rule.grain == "5m" else rule.grain_delta


def check_step(rule, step: timedelta, where: str) -> timedelta:
    """``step`` if a series of ``rule`` may be spaced so: the rule's grain, or for a 5-minute rule
    any whole number of 5-minute buckets."""
    from threshold_operators.durations import format_duration

    g = rule.grain_delta
    if step == g or (rule.grain == "5m" and step > g and not step % g):
        return step
    allowed = "a whole number of 5-minute buckets (5m, 15m, 1h)" if rule.grain == "5m" else \
        f"{format_duration(g)} (its grain)"
    raise SeriesError(f"{where}: step {format_duration(step)} does not fit {rule.id}: use {allowed}")


def spread_metrics(rule, lookup) -> set[str]:
    """The metrics a coarser series value is spread over (the counts and sums a rolling rule adds
    up over its window); every other metric is a state that holds for each bucket."""
    out = set(rule.metrics) if rule.rolling else set()
    for ref in rule.references:
        out |= spread_metrics(lookup(ref).rule, lookup)
    return out


def to_grain(rows: list[dict], rule, lookup, step: timedelta) -> list[dict]:
    """Rows a ``step`` apart (an hour) as rows of the rule's buckets (5 minutes): each row becomes
    the ``step / grain`` buckets it covers, a rolling rule's counts divided evenly among them (an
    hour's 12 orders are one order a slice, so any hour-long window still sums 12), any other value
    repeated (stock cover at 10 days holds for each 5 minutes of the hour)."""
    g = rule.grain_delta
    n = step // g
    if n <= 1:
        return rows
    spread = spread_metrics(rule, lookup)
    out = []
    for row in rows:
        for k in range(n):
            r = dict(row, bucket=row["bucket"] + k * g)
            for m in spread:
                if r.get(m) is not None:
                    r[m] = r[m] / n
            out.append(r)
    return out


def check_rule(rule, lookup) -> list[str]:
    """The metric columns the series must have; SeriesError when the rule cannot run on a series."""
    for ref in rule.references:
        if lookup(ref).rule.keys != rule.keys:
            raise SeriesError(f"{rule.id} refers to {ref}, whose entity differs: backtest it on the warehouse")
    return _metrics_of(rule, lookup)


def read_csv(path: Path, rule, lookup) -> list[dict]:
    """The rows of a series CSV for ``rule``, validated (one line per problem, the first one raised)."""
    needed = check_rule(rule, lookup)
    try:
        handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise SeriesError(f"{path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "ts" not in header:
            raise SeriesError(f"{path}: no ts column (columns: {', '.join(header) or 'none'})")
        missing = [m for m in needed if m not in header]
        if missing:
            raise SeriesError(f"{path}: {rule.id} reads {', '.join(missing)}, not in the file "
                              f"(columns: {', '.join(header)})")
        rows, seen = [], set()
        for n, raw in enumerate(reader, start=2):
            raw = {k.strip(): v for k, v in raw.items() if k}
            where = f"{path}:{n}"
            row = {"bucket": parse_ts(raw["ts"], where, rule.grain_delta), **entity_keys(rule, raw.get("entity"))}
            for a in rule.attributes:
                row[a] = (raw.get(a) or "").strip() or None
            for m in needed:
                text = (raw.get(m) or "").strip()
                if text == "":
                    row[m] = None
                    continue
                try:
                    row[m] = float(text)
                except ValueError:
                    raise SeriesError(f"{where}: {m} = {text!r} is not a number") from None
                if math.isnan(row[m]):
                    row[m] = None
            key = (row["bucket"], *(row[k] for k in rule.keys))
            if key in seen:
                raise SeriesError(f"{where}: a second row for {raw.get('entity') or 'the series'} at {raw['ts']}")
            seen.add(key)
            rows.append(row)
    if not rows:
        raise SeriesError(f"{path}: no rows")
    hourly = all(r["bucket"].minute == 0 for r in rows)
    return to_grain(rows, rule, lookup, default_step(rule)) if hourly else rows


class SeriesWarehouse:
    """An in-memory DuckDB holding one ``series`` table; ``query`` is the engine's query function."""

    def __init__(self, rows: list[dict], keys, metrics, attributes=()):
        import pyarrow as pa
        from sqlalchemy import create_engine
        from sqlalchemy.pool import StaticPool

        self.engine = create_engine("duckdb:///:memory:", poolclass=StaticPool)
        cols = {k: pa.array([str(r[k]) for r in rows], pa.string()) for k in keys}
        cols["bucket"] = pa.array([r["bucket"] for r in rows], pa.timestamp("us", tz="UTC"))
        for m in metrics:
            cols[m] = pa.array([r.get(m) for r in rows], pa.float64())
        for a in attributes:
            if a not in cols:
                cols[a] = pa.array([None if r.get(a) is None else str(r[a]) for r in rows], pa.string())
        table = pa.table(cols)
        with self.engine.connect() as con:
            raw = con.connection.driver_connection  # duckdb-engine's wrapper of the DuckDB connection
            raw.execute("SET TimeZone = 'UTC'")
            raw.register("series_arrow", table)
            raw.execute("CREATE TABLE series AS SELECT * FROM series_arrow")
            raw.unregister("series_arrow")
            con.commit()
        # A series has no planned events: the compiled rule's plan join finds nothing (factor 1).
        from threshold_operators.warehouse.schema import planned_events, products

        for t in (planned_events, products):
            t.create(self.engine, checkfirst=True)

    def query(self, sql: str, params: dict) -> list[dict]:
        from sqlalchemy import text

        with self.engine.connect() as con:
            return [dict(r._mapping) for r in con.execute(text(sql), params)]

    def dispose(self):
        self.engine.dispose()


def series_rule(loaded, metrics: list[str]):
    """The catalogue entry with its metric query replaced by a read of ``series``."""
    own = [*loaded.rule.metrics, *loaded.rule.attributes]
    cols = ", ".join([*loaded.rule.keys, "bucket", *own])
    return dataclasses.replace(loaded, template=f"SELECT {cols} FROM series", tables=("series",))


def series_lookup(lookup, metrics):
    return lambda rule_id: series_rule(lookup(rule_id), metrics)


def warehouse_for(loaded, lookup, rows: list[dict]):
    """(the series warehouse, the rule reading it, its lookup) for ``rows``."""
    metrics = check_rule(loaded.rule, lookup)
    attributes = list(dict.fromkeys(a for r in [loaded.rule, *(lookup(x).rule for x in loaded.rule.references)]
                                    for a in r.attributes))
    wh = SeriesWarehouse(rows, loaded.rule.keys, metrics, attributes)
    return wh, series_rule(loaded, metrics), series_lookup(lookup, metrics)
