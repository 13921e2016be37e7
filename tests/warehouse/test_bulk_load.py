"""Bulk loading: exact values on both dialects, and all-or-nothing on failure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
import sqlalchemy as sa

from threshold_operators.warehouse.bulk_load import (
    DuckDBBulkLoader,
    PostgresBulkLoader,
    SQLAlchemyBulkLoader,
    bulk_loader,
)
from threshold_operators.warehouse.schema import arrow_table, create_schema


def _orders(ids, amount=12.3):
    n = len(ids)
    t0 = datetime(2026, 3, 1, 7, 30, tzinfo=UTC)
    return arrow_table("orders", {
        "order_id": ids, "shop_id": ["s1"] * n, "channel": ["app"] * n, "customer_id": ["c" * 16] * n,
        "status": ["paid"] * n, "amount": [amount] * n, "currency": ["CNY"] * n,
        "created_at": pa.array([t0] * n, pa.timestamp("us", tz="UTC")),
        "paid_at": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
        "updated_at": pa.array([t0] * n, pa.timestamp("us", tz="UTC")),
    })


def test_the_fastest_loader_is_chosen(warehouse):
    expected = DuckDBBulkLoader if warehouse.is_duckdb else PostgresBulkLoader
    assert type(bulk_loader(warehouse)) is expected


def test_values_round_trip_exactly(warehouse):
    create_schema(warehouse.engine)
    warehouse.engine.dispose()
    with bulk_loader(warehouse) as loader:
        loader.append("orders", _orders(["o1", "o2"], amount=1234567.89))
    assert loader.rows_written == {"orders": 2}
    with warehouse.engine.connect() as con:
        row = con.execute(sa.text("SELECT amount, created_at, paid_at, status FROM orders WHERE order_id = 'o1'")).one()
    assert str(row.amount) == "1234567.89"
    assert row.created_at == datetime(2026, 3, 1, 7, 30, tzinfo=UTC)
    assert row.paid_at is None and row.status == "paid"


def test_a_failed_load_leaves_nothing(warehouse):
    create_schema(warehouse.engine)
    warehouse.engine.dispose()
    with pytest.raises(Exception), bulk_loader(warehouse) as loader:  # noqa: B017 - driver-specific error
        loader.append("orders", _orders(["o1", "o2"]))
        loader.append("orders", _orders(["o2"]))  # duplicate key
    with warehouse.engine.connect() as con:
        assert con.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar_one() == 0


def test_a_batch_missing_a_column_is_refused_by_name(warehouse):
    create_schema(warehouse.engine)
    warehouse.engine.dispose()
    with pytest.raises(ValueError, match="lacks columns.*visitors"), bulk_loader(warehouse) as loader:
        loader.append("traffic", pa.table({"shop_id": ["s1"]}))


def test_generic_loader_works_on_any_sqlalchemy_warehouse(tmp_path):
    from threshold_operators.warehouse.hook import WarehouseHook

    hook = WarehouseHook(url=f"sqlite:///{tmp_path / 'w.sqlite'}")
    create_schema(hook.engine)
    loader = bulk_loader(hook)
    assert type(loader) is SQLAlchemyBulkLoader
    with loader:
        loader.append("orders", _orders(["o1"]))
    with hook.engine.connect() as con:
        assert con.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar_one() == 1


def test_a_batch_of_many_tiny_chunks_loads_intact(warehouse):
    """A day's table often has 0 or 1 rows; a flush concatenates hundreds of them."""
    create_schema(warehouse.engine)
    warehouse.engine.dispose()
    pieces = []
    for i in range(300):
        ids = [f"o{i:04d}"] if i % 3 else []
        pieces.append(_orders(ids).take(pa.array(list(range(len(ids))), pa.int64())))
    batch = pa.concat_tables(pieces)
    with bulk_loader(warehouse) as loader:
        loader.append("orders", batch)
    with warehouse.engine.connect() as con:
        got = sorted(con.execute(sa.text("SELECT order_id FROM orders")).scalars())
    assert got == sorted(f"o{i:04d}" for i in range(300) if i % 3)


def _order_versions(rows):
    """rows: (order_id, status, updated hour)"""
    base = datetime(2026, 3, 1, tzinfo=UTC)
    n = len(rows)
    return arrow_table("orders", {
        "order_id": [r[0] for r in rows], "shop_id": ["s1"] * n, "channel": ["app"] * n, "customer_id": ["c"] * n,
        "status": [r[1] for r in rows], "amount": [10.0] * n, "currency": ["CNY"] * n,
        "created_at": pa.array([base] * n, pa.timestamp("us", tz="UTC")),
        "paid_at": pa.array([base] * n, pa.timestamp("us", tz="UTC")),
        "updated_at": pa.array([base + timedelta(hours=r[2]) for r in rows], pa.timestamp("us", tz="UTC")),
    })


def _statuses(hook):
    with hook.engine.connect() as con:
        out = dict(con.execute(sa.text("SELECT order_id, status FROM orders")).all())
    hook.engine.dispose()
    return out


def test_upsert_is_idempotent_and_keeps_the_latest_version(warehouse):
    create_schema(warehouse.engine)
    warehouse.engine.dispose()
    first = _order_versions([("o1", "paid", 1), ("o2", "paid", 1)])
    for _ in range(2):  # a retry, a re-run
        with bulk_loader(warehouse) as loader:
            loader.upsert("orders", first)
    assert _statuses(warehouse) == {"o1": "paid", "o2": "paid"}
    # later: o1 refunded; a backfill re-delivers o2's old version; o3 arrives twice in one batch
    with bulk_loader(warehouse) as loader:
        loader.upsert("orders", _order_versions([("o1", "refunded", 5), ("o2", "pending", 0),
                                                  ("o3", "paid", 2), ("o3", "shipped", 3)]))
    assert _statuses(warehouse) == {"o1": "refunded", "o2": "paid", "o3": "shipped"}


def test_upsert_on_a_generic_sqlalchemy_warehouse(tmp_path):
    from threshold_operators.warehouse.hook import WarehouseHook

    hook = WarehouseHook(url=f"sqlite:///{tmp_path / 'w.sqlite'}")
    create_schema(hook.engine)
    with bulk_loader(hook) as loader:
        loader.upsert("orders", _order_versions([("o1", "paid", 1), ("o2", "paid", 1)]))
    with bulk_loader(hook) as loader:
        loader.upsert("orders", _order_versions([("o1", "refunded", 5), ("o3", "paid", 2)]))
    assert _statuses(hook) == {"o1": "refunded", "o2": "paid", "o3": "paid"}


# --- Tables whose key holds their time (schema.time_key): on DuckDB, no key index -----------------

def _scans(rows):
    """rows: (shipment_id, minute, status) -> tracking_events"""
    base = datetime(2026, 3, 1, 8, tzinfo=UTC)
    n = len(rows)
    return arrow_table("tracking_events", {
        "shipment_id": [r[0] for r in rows],
        "event_at": pa.array([base + timedelta(minutes=r[1]) for r in rows], pa.timestamp("us", tz="UTC")),
        "shop_id": ["s1"] * n, "warehouse_id": ["w1"] * n, "tracking_no": ["t"] * n, "status": [r[2] for r in rows],
    })


def _primary_keys(hook) -> set[str]:
    with hook.engine.connect() as con:
        if hook.is_duckdb:
            sql = "SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
        else:
            sql = ("SELECT c.relname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
                   "WHERE k.contype = 'p' AND c.relnamespace = current_schema()::regnamespace")
        out = set(con.execute(sa.text(sql)).scalars())
    hook.engine.dispose()
    return out


def test_tables_keyed_by_their_time_have_no_key_index_on_duckdb_only(warehouse):
    """An ART index over the ever-growing tables made every open and close of the DuckDB file cost
    more with the history it holds; the loader keeps their keys unique instead."""
    create_schema(warehouse.engine)
    warehouse.engine.dispose()
    keyed = _primary_keys(warehouse)
    time_keyed = {"tracking_events", "inventory_snapshots", "traffic", "ad_spend", "rule_results"}
    assert {"orders", "order_items", "shipments", "rule_states", "inventory_latest"} <= keyed
    if warehouse.is_duckdb:
        assert not keyed & time_keyed
    else:
        assert time_keyed <= keyed


def _scan_rows(hook):
    with hook.engine.connect() as con:
        out = sorted(tuple(r) for r in con.execute(sa.text(
            "SELECT shipment_id, EXTRACT(MINUTE FROM event_at), status FROM tracking_events")).all())
    hook.engine.dispose()
    return [(a, int(m), s) for a, m, s in out]


def test_upsert_of_a_time_keyed_table_keeps_one_row_a_key(warehouse):
    create_schema(warehouse.engine)
    warehouse.engine.dispose()
    first = _scans([("p1", 0, "picked_up"), ("p1", 30, "in_transit"), ("p2", 10, "picked_up")])
    for _ in range(2):  # a retry: the same rows again
        with bulk_loader(warehouse) as loader:
            loader.upsert("tracking_events", first)
    assert _scan_rows(warehouse) == [("p1", 0, "picked_up"), ("p1", 30, "in_transit"), ("p2", 10, "picked_up")]
    # the extract's overlap re-delivers a scan with a corrected status, beside a new one; a key twice in a batch
    with bulk_loader(warehouse) as loader:
        loader.upsert("tracking_events", _scans([("p1", 30, "delivered"), ("p2", 50, "in_transit"),
                                                  ("p2", 50, "in_transit")]))
    assert _scan_rows(warehouse) == [("p1", 0, "picked_up"), ("p1", 30, "delivered"), ("p2", 10, "picked_up"),
                                     ("p2", 50, "in_transit")]


def test_append_of_a_present_key_fails_with_or_without_a_key_index(warehouse):
    """``append`` takes new keys only: a key stored already, or twice in the batch, fails the load
    as the key's index makes it fail where there is one (PostgreSQL), and nothing is written; the
    rollups would otherwise count the row twice."""
    create_schema(warehouse.engine)
    warehouse.engine.dispose()
    with bulk_loader(warehouse) as loader:
        loader.append("tracking_events", _scans([("p1", 0, "picked_up"), ("p1", 30, "in_transit")]))
    for batch in (_scans([("p2", 5, "picked_up"), ("p1", 30, "in_transit")]),  # p1 at 30 is stored
                  _scans([("p3", 5, "picked_up"), ("p3", 5, "picked_up")])):  # twice in the batch
        with pytest.raises(Exception, match="(?i)duplicate key") as failed, bulk_loader(warehouse) as loader:
            loader.append("tracking_events", batch)
        if warehouse.is_duckdb:
            assert "tracking_events" in str(failed.value)
    assert _scan_rows(warehouse) == [("p1", 0, "picked_up"), ("p1", 30, "in_transit")]
    with bulk_loader(warehouse) as loader:  # a new scan of p1, in the range of the stored ones
        loader.append("tracking_events", _scans([("p1", 15, "sorted"), ("p2", 45, "picked_up")]))
    assert _scan_rows(warehouse) == [("p1", 0, "picked_up"), ("p1", 15, "sorted"), ("p1", 30, "in_transit"),
                                     ("p2", 45, "picked_up")]


def _results(rows):
    """rows: (entity, bucket hour, state, evaluated hour) -> rule_results"""
    base = datetime(2026, 3, 1, tzinfo=UTC)
    n = len(rows)
    ts = pa.timestamp("us", tz="UTC")
    return arrow_table("rule_results", {
        "rule_id": ["sales.x"] * n, "entity_key": [r[0] for r in rows],
        "bucket": pa.array([base + timedelta(hours=r[1]) for r in rows], ts),
        "state": [r[2] for r in rows], "severity": ["red"] * n, "value": [1.0] * n, "baseline": [None] * n,
        "threshold": [None] * n, "entity": ["{}"] * n, "metrics": ["{}"] * n, "mode": ["live"] * n,
        "window_end": pa.array([base] * n, ts),
        "evaluated_at": pa.array([base + timedelta(hours=r[3]) for r in rows], ts),
    })


def test_upsert_of_a_time_keyed_table_keeps_the_newer_version(warehouse):
    """rule_results' rows are versioned by evaluated_at: a re-evaluation replaces a row, an older
    one (a late retry of an earlier run) does not; the stored rows of other buckets stay."""
    create_schema(warehouse.engine)
    warehouse.engine.dispose()
    with bulk_loader(warehouse) as loader:
        loader.upsert("rule_results", _results([("a", 1, "firing", 10), ("b", 1, "pending", 10), ("a", 2, "firing", 10)]))
    with bulk_loader(warehouse) as loader:
        loader.upsert("rule_results", _results([("a", 1, "resolved", 11), ("b", 1, "firing", 9), ("c", 1, "firing", 11)]))
    with warehouse.engine.connect() as con:
        got = sorted(tuple(r) for r in con.execute(sa.text(
            "SELECT entity_key, EXTRACT(HOUR FROM bucket), state FROM rule_results")).all())
    warehouse.engine.dispose()
    assert [(e, int(h), s) for e, h, s in got] == [("a", 1, "resolved"), ("a", 2, "firing"), ("b", 1, "pending"),
                                                  ("c", 1, "firing")]


def test_a_duckdb_file_created_with_the_key_index_keeps_using_it(tmp_path):
    """A file made by an earlier version holds the key's index; the loader's upsert uses it."""
    from threshold_operators.warehouse.hook import WarehouseHook

    hook = WarehouseHook(url=f"duckdb:///{tmp_path / 'old.duckdb'}")
    create_schema(hook.engine)
    with hook.engine.begin() as con:  # as an earlier version created it
        con.execute(sa.text("DROP TABLE tracking_events"))
        con.execute(sa.text("CREATE TABLE tracking_events (shipment_id VARCHAR(64) NOT NULL, event_at TIMESTAMPTZ "
                            "NOT NULL, shop_id VARCHAR(32) NOT NULL, warehouse_id VARCHAR(32) NOT NULL, tracking_no "
                            "VARCHAR(64) NOT NULL, status VARCHAR(16) NOT NULL, PRIMARY KEY (shipment_id, event_at))"))
    hook.engine.dispose()
    assert "tracking_events" in _primary_keys(hook)
    for status in ("in_transit", "delivered"):
        with bulk_loader(hook) as loader:
            loader.upsert("tracking_events", _scans([("p1", 30, status)]))
            assert loader._keyed["tracking_events"] is True
    assert _scan_rows(hook) == [("p1", 30, "delivered")]


def test_upgrade_rebuilds_an_earlier_files_time_keyed_tables_without_their_index(tmp_path, capsys):
    from threshold_operators.cli import main
    from threshold_operators.warehouse.hook import WarehouseHook

    url = f"duckdb:///{tmp_path / 'old.duckdb'}"
    hook = WarehouseHook(url=url)
    create_schema(hook.engine)
    with hook.engine.begin() as con:  # tracking_events as an earlier version created it, with rows
        con.execute(sa.text("DROP TABLE tracking_events"))
        con.execute(sa.text("CREATE TABLE tracking_events (shipment_id VARCHAR(64) NOT NULL, event_at TIMESTAMPTZ "
                            "NOT NULL, shop_id VARCHAR(32) NOT NULL, warehouse_id VARCHAR(32) NOT NULL, tracking_no "
                            "VARCHAR(64) NOT NULL, status VARCHAR(16) NOT NULL, PRIMARY KEY (shipment_id, event_at))"))
    hook.engine.dispose()
    with bulk_loader(hook) as loader:
        loader.upsert("tracking_events", _scans([("p1", 0, "picked_up"), ("p1", 30, "in_transit")]))
    assert main(["warehouse", "upgrade", "--warehouse", url]) == 0
    assert "rebuilt without their key index tracking_events" in capsys.readouterr().out
    assert "tracking_events" not in _primary_keys(hook)
    assert _scan_rows(hook) == [("p1", 0, "picked_up"), ("p1", 30, "in_transit")]
    with bulk_loader(hook) as loader:  # the loader's own key keeping from now on
        loader.upsert("tracking_events", _scans([("p1", 30, "delivered")]))
    assert _scan_rows(hook) == [("p1", 0, "picked_up"), ("p1", 30, "delivered")]
    assert main(["warehouse", "upgrade", "--warehouse", url]) == 0  # again: nothing to do
    assert "nothing (none held one)" in capsys.readouterr().out


def test_order_lines_lookup_reads_an_index_on_duckdb(tmp_path):
    """The loader finds the stored versions of a batch's order lines by order_id (the first column
    of their compound key): on DuckDB through an index of its own, not a scan growing with the
    history; set-up adds the index to a file that lacks it."""
    from threshold_operators.warehouse.hook import WarehouseHook
    from threshold_operators.warehouse.schema import create_schema

    hook = WarehouseHook(url=f"duckdb:///{tmp_path / 'w.duckdb'}")
    create_schema(hook.engine)
    with hook.engine.begin() as con:  # a file made before the index
        con.execute(sa.text("DROP INDEX order_items_order_id"))
    create_schema(hook.engine)
    with hook.engine.connect() as con:
        assert con.execute(sa.text("SELECT count(*) FROM duckdb_indexes() WHERE index_name = 'order_items_order_id'")
                           ).scalar_one() == 1
    with hook.engine.begin() as con:
        con.execute(sa.text("INSERT INTO order_items SELECT 'o' || i::VARCHAR, 1, 's1', 'k', 1, 1.0, "
                            "TIMESTAMPTZ '2026-03-01 00:00:00+00' FROM range(20000) r(i)"))
    with hook.engine.connect() as con:
        con.execute(sa.text("CHECKPOINT"))  # (rows still in the WAL are scanned, not looked up)
        plan = "\n".join(r[1] for r in con.execute(sa.text(
            "EXPLAIN ANALYZE SELECT DISTINCT created_at FROM order_items WHERE order_id IN ('o1', 'o2')")).all())
    hook.engine.dispose()
    assert "INDEX_SCAN" in plan.upper().replace(" ", "_"), plan
