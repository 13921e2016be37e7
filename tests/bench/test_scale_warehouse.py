"""The scale bench's warehouse generator (bench/scale_warehouse.py): the slices landed after a
build are the rows a later build holds, and every table is kept in the order of its time column."""

from __future__ import annotations

import importlib.util
import sys
from datetime import timedelta
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "scale_warehouse.py"


@pytest.fixture(scope="module")
def sw():
    spec = importlib.util.spec_from_file_location("scale_warehouse", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale_warehouse"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small(sw, tmp_path_factory):
    cache = tmp_path_factory.mktemp("scale-cache")
    spec = sw.ScaleSpec(shops=2, skus=120, days=3, orders_per_day=400)
    return spec, cache, sw.build(spec, cache, log=lambda *a, **k: None)


def _rows(path, table, column, since):
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    try:
        return set(con.execute(f"SELECT * FROM {table} WHERE {column} >= ?", [since]).fetchall())
    finally:
        con.close()


def test_a_build_is_found_in_the_cache_the_second_time(sw, small):
    spec, cache, info = small
    assert not info.cached and info.rows["order_items"] > 0
    again = sw.build(spec, cache)
    assert again.cached and again.path == info.path and again.rows == info.rows


def test_every_fact_table_is_in_the_order_of_its_time_column(sw, small):
    import duckdb

    _, _, info = small
    con = duckdb.connect(str(info.path), read_only=True)
    try:
        for table in sw.FACT_TABLES:
            col = sw.TIME_COLUMN[table]
            out_of_order = con.execute(
                f"SELECT count(*) FROM (SELECT {col} AS t, lag({col}) OVER (ORDER BY rowid) AS before FROM {table}) "
                "WHERE t < before").fetchone()[0]
            assert out_of_order == 0, table
    finally:
        con.close()


def test_twelve_landed_slices_give_the_rows_of_a_build_one_hour_later(sw, small, tmp_path):
    spec, cache, info = small
    landed = sw.working_copy(info, tmp_path / "landed.duckdb")
    source = sw.SliceSource(spec, 12)
    for k in range(12):
        sw.land_slice(landed, spec, k, source.rows(k))
    source.close()
    later = sw.ScaleSpec(**{**spec.__dict__, "end": spec.end + timedelta(hours=1)})
    rebuilt = sw.build(later, cache, log=lambda *a, **k: None)
    since = later.end - timedelta(days=later.days) + timedelta(seconds=1)  # after the later build's first positions
    for table in sw.FACT_TABLES:
        col = sw.TIME_COLUMN[table]
        a, b = _rows(landed, table, col, since), _rows(rebuilt.path, table, col, since)
        assert a == b, f"{table}: {len(a - b)} rows only landed, {len(b - a)} only rebuilt"
        assert a, table


def test_a_parcels_scans_tell_its_shipment_row(sw, small):
    """Picked up at shipped_at; the latest scan is last_tracking_at; delivered at delivered_at."""
    import duckdb

    _, _, info = small
    con = duckdb.connect(str(info.path), read_only=True)
    try:
        shipped_after_start = "s.shipped_at >= (SELECT min(event_at) FROM tracking_events)"
        mismatched = con.execute(f"""
            WITH e AS (
                SELECT shipment_id, min(event_at) FILTER (WHERE status = 'picked_up') AS picked_up,
                       max(event_at) AS latest, max(event_at) FILTER (WHERE status = 'delivered') AS delivered
                FROM tracking_events GROUP BY shipment_id)
            SELECT count(*), count(e.shipment_id) FROM shipments s LEFT JOIN e USING (shipment_id)
            WHERE {shipped_after_start} AND (e.shipment_id IS NULL OR e.picked_up <> s.shipped_at
                OR e.latest <> s.last_tracking_at OR e.delivered IS DISTINCT FROM s.delivered_at)""").fetchone()
        scans = con.execute(f"SELECT count(*) FROM shipments s WHERE {shipped_after_start}").fetchone()[0]
    finally:
        con.close()
    assert scans > 0
    assert mismatched == (0, 0)
