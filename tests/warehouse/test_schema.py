"""The canonical schema: created idempotently on DuckDB and PostgreSQL, documented in docs/."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from threshold_operators.warehouse.schema import (
    LATEST_TABLE_NAMES,
    PACK_TABLE_NAMES,
    PLAN_TABLE_NAMES,
    TABLE_NAMES,
    arrow_schema,
    create_schema,
    metadata,
    render_markdown,
    table_spec,
)

REPO = Path(__file__).resolve().parents[2]

CANONICAL_KEYS = {
    "shops": ("shop_id",),
    "products": ("shop_id", "sku"),
    "warehouses": ("shop_id", "warehouse_id"),
    "orders": ("order_id",),
    "order_items": ("order_id", "line_no"),
    "payments": ("payment_id",),
    "refunds": ("refund_id",),
    "complaints": ("complaint_id",),
    "inventory_snapshots": ("shop_id", "sku", "warehouse_id", "snapshot_at"),
    "shipments": ("shipment_id",),
    "tracking_events": ("shipment_id", "event_at"),
    "reviews": ("review_id",),
    "traffic": ("shop_id", "channel", "source", "hour"),
    "ad_spend": ("shop_id", "channel", "campaign_id", "hour"),
}


def test_keys_are_the_canonical_ones():
    assert {t: table_spec(t).key for t in TABLE_NAMES} == CANONICAL_KEYS


def test_every_column_is_documented_with_a_meaning():
    for table in metadata.sorted_tables:
        assert table.comment, table.name
        for col in table.columns:
            assert col.comment, f"{table.name}.{col.name}"


def test_create_schema_is_idempotent_and_keeps_rows(warehouse):
    assert create_schema(warehouse.engine) == [*TABLE_NAMES, *PACK_TABLE_NAMES, *PLAN_TABLE_NAMES, *LATEST_TABLE_NAMES]
    with warehouse.engine.begin() as con:
        con.execute(sa.text("INSERT INTO shops VALUES ('s1', 'Shop', 'Asia/Shanghai', 'CNY')"))
    assert create_schema(warehouse.engine) == []
    assert set(TABLE_NAMES) <= set(sa.inspect(warehouse.engine).get_table_names())
    with warehouse.engine.connect() as con:
        for name in TABLE_NAMES:
            cols = list(con.execute(sa.text(f"SELECT * FROM {name} LIMIT 0")).keys())
            assert cols == list(table_spec(name).columns), name
        assert con.execute(sa.text("SELECT COUNT(*) FROM shops")).scalar_one() == 1


def test_primary_key_refuses_a_second_copy(warehouse):
    create_schema(warehouse.engine)
    insert = sa.text("INSERT INTO shops VALUES ('s1', 'Shop', 'Asia/Shanghai', 'CNY')")
    with warehouse.engine.begin() as con:
        con.execute(insert)
    try:
        with warehouse.engine.begin() as con:
            con.execute(insert)
    except sa.exc.DBAPIError as exc:  # IntegrityError on PostgreSQL, ConstraintException on DuckDB
        assert "shop_id" in str(exc).lower() or "duplicate" in str(exc).lower() or "unique" in str(exc).lower()
    else:
        raise AssertionError("a duplicate key was accepted")


def test_timestamps_are_utc_and_local_time_is_one_expression(warehouse):
    """`ts AT TIME ZONE shops.timezone` gives the shop's wall-clock time on both dialects."""
    create_schema(warehouse.engine)
    with warehouse.engine.begin() as con:
        con.execute(sa.text("INSERT INTO shops VALUES ('s1', 'Shop', 'Asia/Shanghai', 'CNY')"))
        con.execute(sa.text(
            "INSERT INTO traffic VALUES ('s1', 'app', 'paid', TIMESTAMP WITH TIME ZONE '2026-03-01 07:00:00+00', 10)"
        ))
        local = con.execute(sa.text(
            "SELECT t.hour AT TIME ZONE s.timezone FROM traffic t JOIN shops s USING (shop_id)"
        )).scalar_one()
    assert (local.hour, local.day) == (15, 1)


def test_docs_are_generated_from_the_schema():
    committed = (REPO / "docs" / "warehouse.md").read_text(encoding="utf-8")
    assert committed.strip() == render_markdown().strip(), "run: storefence warehouse docs > docs/warehouse.md"


def test_arrow_schema_follows_the_table():
    for name in TABLE_NAMES:
        assert arrow_schema(name).names == list(table_spec(name).columns)


def test_the_loader_keeps_the_latest_stock_and_a_new_table_starts_from_the_history(warehouse):
    """``inventory_latest``: moved in the transaction that loads the snapshots (a newer position
    replaces it, an older one never does); created on a warehouse that has snapshots, it is filled
    from them."""
    from datetime import UTC, datetime, timedelta

    from threshold_operators.warehouse.bulk_load import bulk_loader
    from threshold_operators.warehouse.schema import arrow_table

    t = datetime(2026, 9, 1, 10, tzinfo=UTC)

    def land(rows):
        with bulk_loader(warehouse) as loader:
            loader.upsert("inventory_snapshots", arrow_table("inventory_snapshots", {
                "shop_id": ["s1"] * len(rows), "sku": [sku for sku, _, _ in rows], "warehouse_id": ["w1"] * len(rows),
                "on_hand": [units for _, units, _ in rows], "reserved": [0] * len(rows), "in_transit": [0] * len(rows),
                "snapshot_at": [at for _, _, at in rows]}))

    def latest():
        with warehouse.engine.connect() as con:
            return {r[0]: r[1] for r in con.execute(sa.text("SELECT sku, on_hand FROM inventory_latest ORDER BY sku"))}

    create_schema(warehouse.engine)
    land([("A", 10, t), ("A", 7, t + timedelta(hours=1)), ("B", 5, t)])  # within a batch the newest wins
    assert latest() == {"A": 7, "B": 5}
    land([("A", 99, t - timedelta(days=1)), ("B", 4, t + timedelta(hours=2))])  # a backfill of old positions
    assert latest() == {"A": 7, "B": 4}
    with warehouse.engine.begin() as con:  # a warehouse of an earlier version: the table is missing
        con.execute(sa.text("DROP TABLE inventory_latest"))
    assert create_schema(warehouse.engine) == ["inventory_latest"]
    assert latest() == {"A": 7, "B": 4}


def test_an_upgrade_adds_the_columns_a_later_version_defines(warehouse):
    """A warehouse made before ``rule_evaluations.definition`` existed: the set-up adds the column
    (empty for the rows before), keeps the rows, and a cycle records into it."""
    create_schema(warehouse.engine)
    with warehouse.engine.begin() as con:
        con.execute(sa.text("DROP TABLE rule_evaluations"))
        con.execute(sa.text("CREATE TABLE rule_evaluations (rule_id VARCHAR(128) NOT NULL, window_start TIMESTAMPTZ "
                            "NOT NULL, window_end TIMESTAMPTZ NOT NULL, mode VARCHAR(8), outcome VARCHAR(16), firing "
                            "INTEGER, pending INTEGER, resolved INTEGER, candidates INTEGER, detail TEXT, duration_ms "
                            "INTEGER, run_id VARCHAR(250), evaluated_at TIMESTAMPTZ, "
                            "PRIMARY KEY (rule_id, window_start, window_end))"))
        con.execute(sa.text("INSERT INTO rule_evaluations (rule_id, window_start, window_end, outcome) VALUES "
                            "('sales.x', TIMESTAMPTZ '2026-09-01 00:00:00+00', TIMESTAMPTZ '2026-09-01 01:00:00+00', "
                            "'ok')"))
    assert create_schema(warehouse.engine) == []
    with warehouse.engine.connect() as con:
        cols = list(con.execute(sa.text("SELECT * FROM rule_evaluations LIMIT 0")).keys())
        assert cols[-1] == "definition" and set(cols) == {c.name for c in metadata.tables["rule_evaluations"].columns}
        assert con.execute(sa.text("SELECT rule_id, definition FROM rule_evaluations")).all() == [("sales.x", None)]
