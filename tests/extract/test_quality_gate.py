"""The quality gate on records in memory: no warehouse, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threshold_operators.extract.quality_gate import (
    SUITES_DIR,
    Suite,
    load_suite,
    typed_batch,
    validate_batch,
)
from threshold_operators.located_yaml import ConfigFileError
from threshold_operators.warehouse.schema import TABLE_NAMES

NOW = datetime(2026, 9, 30, tzinfo=UTC)


def review(rid, rating=5, created="2026-09-01T10:00:00Z", **kw):
    return {"review_id": rid, "shop_id": "s", "order_id": "o1", "sku": "k", "rating": rating, "body": "ok",
            "created_at": created, **kw}


def test_every_table_has_a_valid_suite():
    for table in TABLE_NAMES:
        suite = load_suite(table)
        assert suite.table == table and suite.checks, table
    assert sorted(p.stem for p in SUITES_DIR.glob("*.yaml")) == sorted(TABLE_NAMES)


def test_each_bad_row_is_refused_with_its_own_reasons():
    records = [
        review("r1"),
        review("r2", rating=7),
        review(None, rating=3),
        review("r4", rating="five", created="yesterday"),
        review("r5", created="2030-01-01T00:00:00Z"),
        review("r6", rating=2),
    ]
    result = validate_batch(records, "reviews", load_suite("reviews"), now=NOW)
    assert list(result.good["review_id"]) == ["r1", "r6"]
    reasons = {r["row_no"]: r["failed_checks"] for r in result.refused}
    assert reasons == {
        1: "between(rating, 1.0, 5.0)",
        2: "not_null(review_id)",
        3: "type(rating); type(created_at)",  # a value that did not convert is not reported as missing
        4: "not_in_future(created_at)",
    }
    assert '"rating": "five"' in next(r["raw_record"] for r in result.refused if r["row_no"] == 3)


def test_older_versions_in_a_batch_are_superseded_not_refused():
    records = [review("r1", created="2026-09-01T10:00:00Z", body="old"),
               review("r1", created="2026-09-02T10:00:00Z", body="new")]
    result = validate_batch(records, "reviews", load_suite("reviews"), now=NOW)
    assert result.superseded == 1 and not result.refused
    assert list(result.good["body"]) == ["new"]


def test_conflicting_copies_of_a_key_are_refused():
    records = [review("r1", body="a"), review("r1", body="b")]  # same key, same time, different content
    result = validate_batch(records, "reviews", load_suite("reviews"), now=NOW)
    assert [r["failed_checks"] for r in result.refused] == ["unique(review_id)"] * 2


def test_references_are_looked_up_in_the_warehouse():
    items = [{"order_id": o, "line_no": 1, "shop_id": "s", "sku": "k", "quantity": 1, "unit_price": "9.90",
              "created_at": "2026-09-01T10:00:00Z"} for o in ("o1", "o2", "o3")]
    asked = []

    def known(table, column, values):
        asked.append((table, column, values))
        return {"o1", "o3"}

    result = validate_batch(items, "order_items", load_suite("order_items"), now=NOW, known_keys=known)
    assert asked == [("orders", "order_id", ["o1", "o2", "o3"])]
    # a parent not loaded yet is lateness, not bad data: the line waits for it (extract.holding)
    assert result.refused == [] and [r["record_key"] for r in result.waiting] == ["o2|1"]
    assert result.waiting[0]["failed_checks"] == "references(order_id -> orders)"
    assert result.waiting[0]["waiting_for"] == [{"table": "orders", "column": "order_id", "value": "o2"}]
    assert result.waiting[0]["wait"] == timedelta(minutes=30)
    # wait: 0 refuses it at once
    suite = load_suite("order_items").model_copy(deep=True)
    next(c for c in suite.checks if c.check == "references").wait = timedelta(0)
    result = validate_batch(items, "order_items", suite, now=NOW, known_keys=known)
    assert [r["record_key"] for r in result.refused] == ["o2|1"] and result.waiting == []


def test_without_the_gate_types_are_still_checked():
    result = typed_batch([review("r1"), review("r2", rating="five")], "reviews")
    assert list(result.good["review_id"]) == ["r1"]
    assert [r["failed_checks"] for r in result.refused] == ["type(rating)"]


def test_a_bad_suite_names_file_line_and_field(tmp_path):
    (tmp_path / "reviews.yaml").write_text(
        "table: reviews\nchecks:\n  - {check: between, column: rating}\n  - {check: sometimes, column: rating}\n",
        encoding="utf-8")
    with pytest.raises(ConfigFileError) as err:
        load_suite("reviews", tmp_path)
    text = str(err.value)
    assert f"{tmp_path / 'reviews.yaml'}:3: checks.0" in text and "between needs min, max or both" in text
    assert f"{tmp_path / 'reviews.yaml'}:4: checks.1.check" in text


def test_a_suite_naming_an_unknown_column_is_refused():
    with pytest.raises(ValueError, match=r"\['stars'\]"):
        Suite.model_validate({"table": "reviews", "checks": [{"check": "not_null", "columns": ["stars"]}]})
