"""How far a rule's tables have landed: a sparse table does not hold its rules back when its source's
run read the other tables further (no complaint for an hour is not an hour of missing data)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from threshold_operators.engine.record import landed_until
from threshold_operators.warehouse.bulk_load import bulk_loader
from threshold_operators.warehouse.schema import arrow_table, create_schema

T = datetime(2026, 9, 10, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def _runs(hook, rows):
    create_schema(hook.engine)
    cols = ("run_id", "source", "table_name", "updated_since", "updated_before", "rows_fetched", "rows_loaded",
            "rows_quarantined", "high_water_mark", "finished_at")
    full = [dict(zip(cols, (run, source, table, None, None, 1, 1, 0, hwm, finished), strict=True))
            for run, source, table, hwm, finished in rows]
    with bulk_loader(hook) as loader:
        loader.upsert("extract_runs", arrow_table("extract_runs", {c: [r[c] for r in full] for c in cols}))


def test_a_sparse_table_is_complete_as_far_as_its_sources_latest_run_read(warehouse):
    _runs(warehouse, [
        ("r1", "shop_api", "orders", T - 5 * M, T),
        ("r1", "shop_api", "complaints", T - 70 * M, T),  # the last complaint is 70 minutes old
        ("r1", "reviews_api", "reviews", T - 30 * M, T),  # another source, read less far
        ("r0", "shop_api", "orders", T - 10 * M, T - 5 * M),
    ])
    assert landed_until(warehouse, ("complaints",)) == T - 5 * M
    assert landed_until(warehouse, ("complaints", "orders", "products")) == T - 5 * M
    assert landed_until(warehouse, ("complaints", "reviews")) == T - 30 * M  # the other source holds it back
    assert landed_until(warehouse, ("refunds",)) is None  # never extracted and empty


def test_a_domain_cycle_asks_each_table_once_and_answers_as_each_rule_would(warehouse, monkeypatch):
    """``CycleFacts``: the marks and gates a domain's rules share, asked once a table per cycle,
    with the same answers as each rule asking alone."""
    from threshold_operators.engine import record
    from threshold_operators.engine.gates import CycleFacts, failing_tables

    _runs(warehouse, [
        ("r1", "shop_api", "orders", T - 5 * M, T),
        ("r1", "shop_api", "complaints", T - 70 * M, T),
        ("r1", "reviews_api", "reviews", T - 30 * M, T),
    ])
    asked: list[str] = []
    real = record.table_mark
    monkeypatch.setattr(record, "table_mark", lambda hook, table: asked.append(table) or real(hook, table))
    rules = [("complaints",), ("complaints", "orders", "products"), ("complaints", "reviews"), ("orders",)]
    alone = [landed_until(warehouse, tables) for tables in rules]
    asked.clear()
    facts = CycleFacts(warehouse, {t for tables in rules for t in tables})
    assert [facts.landed_until(tables) for tables in rules] == alone
    assert sorted(asked) == ["complaints", "orders", "reviews"]  # once each; products is a dimension
    assert all(facts.failing_tables(tables) == failing_tables(warehouse, tables) for tables in rules)
