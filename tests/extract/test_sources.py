"""Source files: the shipped ones validate; a bad one is reported with file, line and field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threshold_operators.extract.fetch import fetch_window
from threshold_operators.extract.sources import SOURCES_DIR, load_source, load_sources
from threshold_operators.located_yaml import ConfigFileError


def test_shipped_sources_validate():
    specs, errors = load_sources(SOURCES_DIR)
    assert errors == {}
    assert {s.dag_id for s in specs} == {"storefence_extract_shop_api", "storefence_extract_ads_api",
                                         "storefence_extract_reviews_api", "storefence_extract_shop_exports"}
    tables = sorted(t.table for s in specs if s.type == "http" for t in s.tables)
    from threshold_operators.warehouse.schema import TABLE_NAMES

    assert tables == sorted(TABLE_NAMES)  # every canonical table has an API source
    shop = next(s for s in specs if s.source == "shop_api")
    assert shop.overlap == timedelta(minutes=15) and shop.conn_id == "shop_api_default"
    assert shop.max_lag_of(next(t for t in shop.tables if t.table == "shops")) is None  # freshness: false
    assert shop.max_lag_of(next(t for t in shop.tables if t.table == "refunds")) == timedelta(days=1)


BAD = """\
source: Bad-Name
type: http
overlap: 15 minutes
tables:
  - {table: ordrs, endpoint: /v1/orders}
  - table: orders
    endpoint: /v1/orders
    colour: red
"""


def test_every_problem_with_file_line_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    with pytest.raises(ConfigFileError) as err:
        load_source(path)
    problems = err.value.problems
    assert f"{path}:1: source:" in problems[0]
    assert any(p.startswith(f"{path}:3: overlap:") and "not a duration" in p for p in problems)
    assert any(p.startswith(f"{path}:5: tables.0.table:") and "unknown table 'ordrs'" in p for p in problems)
    assert any(p.startswith(f"{path}:8: tables.1.colour:") for p in problems)


def test_a_broken_file_does_not_stop_the_others(tmp_path):
    (tmp_path / "good.yaml").write_text((SOURCES_DIR / "reviews_api.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "bad.yaml").write_text(BAD, encoding="utf-8")
    specs, errors = load_sources(tmp_path)
    assert [s.source for s in specs] == ["reviews_api"]
    assert list(errors) == [str(tmp_path / "bad.yaml")]


def test_unreadable_yaml_names_its_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("source: x\ntables: [\n", encoding="utf-8")
    with pytest.raises(ConfigFileError, match=rf"{path}:3: not valid YAML"):
        load_source(path)


T = datetime(2026, 9, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("hwm", "interval", "expected"),
    [
        (None, None, (None, None)),  # first load: everything
        (T, None, (T - timedelta(minutes=15), None)),  # live: from the high-water mark minus the overlap
        (T, (T - timedelta(minutes=5), T + timedelta(minutes=5)), (T - timedelta(minutes=15), None)),  # current interval
        (T, (T - timedelta(days=3), T - timedelta(days=2)),  # an old interval: a backfill reads just that
         (T - timedelta(days=3, minutes=15), T - timedelta(days=2))),
    ],
)
def test_fetch_window(hwm, interval, expected):
    assert fetch_window(hwm, timedelta(minutes=15), interval) == expected
