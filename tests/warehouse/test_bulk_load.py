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
