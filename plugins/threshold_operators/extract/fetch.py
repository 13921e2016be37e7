"""Fetch step: read one table's changes from its source into staging.

The window starts at the warehouse's high-water mark (the latest change-tracking value already
loaded, not the wall clock) minus the source's overlap, so late writes are read again and the
upsert absorbs the repeats. A run for an interval that ends before that mark (a backfill, or a
cleared old run) reads its own interval instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from threshold_operators.extract import staging
from threshold_operators.extract.paged_api import PagedApiReader
from threshold_operators.extract.sources import SourceSpec, TableSource


def fetch_window(high_water: datetime | None, overlap: timedelta, interval: tuple[datetime, datetime] | None):
    """(updated_since, updated_before) for a run. None means open on that side."""
    if interval and high_water is not None and interval[1] < high_water - overlap:
        return interval[0] - overlap, interval[1]
    return (high_water - overlap if high_water is not None else None), None


def high_water_mark(warehouse, table: TableSource) -> datetime | None:
    """The latest change-tracking value of the table (a short read; DuckDB's file is released at once)."""
    from sqlalchemy import text

    from threshold_operators.warehouse.schema import ensure_schema

    if not table.cursor_field:
        return None
    ensure_schema(warehouse.engine)
    with warehouse.engine.connect() as con:
        value = con.execute(text(f"SELECT MAX({table.cursor_field}) FROM {table.table}")).scalar()
    warehouse.engine.dispose()
    return value


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts else None


def fetch_http_table(source: SourceSpec, table: TableSource, *, session, base_url: str, warehouse, run_id: str,
                     interval: tuple[datetime, datetime] | None = None, sleep=None) -> staging.Manifest:
    """Page through ``table``'s endpoint into this run's staging folder."""
    since, before = fetch_window(high_water_mark(warehouse, table), source.overlap, interval)
    params = {k: v for k, v in (("updated_since", _iso(since)), ("updated_before", _iso(before))) if v}
    reader = PagedApiReader(session, base_url, **({"sleep": sleep} if sleep else {}))
    folder = staging.staging_dir(run_id, source.source, table.table)
    manifest = staging.write(
        folder, reader.pages(table.endpoint, params, page_size=source.page_size),
        {"source": source.source, "table": table.table, "run_id": run_id,
         "updated_since": _iso(since), "updated_before": _iso(before)},
    )
    manifest.pages, manifest.throttled = reader.stats.pages, reader.stats.throttled
    manifest.server_errors, manifest.waited_s = reader.stats.server_errors, round(reader.stats.waited_s, 2)
    staging.complete(folder, manifest)
    return manifest
