"""--set overrides and metric series from CSV: what they change, and one clear error for bad input."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta

import pytest

from threshold_operators.analysis.backtest import backtest_series
from threshold_operators.analysis.overrides import OverrideError, apply_overrides
from threshold_operators.analysis.series import SeriesError, read_csv
from threshold_operators.rules.catalogue import load_catalogue

T0 = datetime(2026, 8, 3, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


def test_set_changes_the_primary_threshold_a_tier_and_top_level_fields(catalogue):
    spike = catalogue.get("sales.order_spike")
    assert apply_overrides(spike, ["condition.threshold.red=5"]).rule.primary.above == {"yellow": 2.0, "red": 5.0}
    assert apply_overrides(spike, ["condition.threshold={yellow: 2.5}"]).rule.primary.above == {"yellow": 2.5}
    drop = catalogue.get("sales.order_drop")
    changed = apply_overrides(drop, ["condition.threshold=0.4", "for=2", "min_volume.0.at_least=20", "hold_for=12h"])
    assert changed.rule.primary.below == 0.4 and changed.rule.for_ == 2
    assert changed.rule.min_volume[0].at_least == 20 and changed.rule.hold_for == timedelta(hours=12)
    assert drop.rule.for_ == 3  # the catalogue's rule is untouched


@pytest.mark.parametrize(("setting", "message"), [
    ("condition.treshold=2", "has no field 'treshold'"),
    ("min_volume.3.at_least=1", "has no item 3"),
    ("for=-1", "would be invalid: for"),
    ("nothing", "expected KEY=VALUE"),
])
def test_a_bad_set_is_one_clear_error(catalogue, setting, message):
    with pytest.raises(OverrideError, match=message.replace("(", r"\(")):
        apply_overrides(catalogue.get("sales.order_drop"), [setting])


def _csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _spike_rows(hours=24 * 50, spike_at=24 * 45 + 10):
    rows = []
    for h in range(hours):
        t = (T0 + timedelta(hours=h)).isoformat()
        rows.append([t, "A", 40 if h == spike_at else 12])
        rows.append([t, "B", 12])
    return rows


def test_a_series_backtest_finds_the_spike_and_nothing_else(catalogue, tmp_path):
    spike = catalogue.get("sales.order_spike")
    rows = read_csv(_csv(tmp_path / "s.csv", ["ts", "entity", "orders"], _spike_rows()), spike.rule, catalogue.get)
    bt = backtest_series(spike, catalogue.get, rows)
    assert bt.start == T0 + timedelta(days=42, hours=2)  # the six weeks of baseline, and the lead-in
    [e] = bt.episodes
    assert (e.entity_key, e.severity, e.start) == ("shop_id=series/sku=A", "red", T0 + timedelta(hours=24 * 45 + 10))
    assert e.end == e.start + timedelta(hours=1) and e.peak_value == pytest.approx(40 / 12) and e.threshold == 3
    assert bt.as_json()["episodes"][0]["severity"] == "red" and bt.summary["alerts"] == 1


@pytest.mark.parametrize(("header", "row", "message"), [
    (["time", "orders"], [T0.isoformat(), 1], "no ts column"),
    (["ts", "sales"], [T0.isoformat(), 1], "reads orders, not in the file"),
    (["ts", "orders"], ["yesterday", 1], "is not an ISO 8601 timestamp"),
    (["ts", "orders"], ["2026-08-03T00:30:00Z", 1], "not on the hour"),
    (["ts", "orders"], [T0.isoformat(), "many"], "is not a number"),
])
def test_a_bad_csv_is_one_clear_error_with_its_line(catalogue, tmp_path, header, row, message):
    path = _csv(tmp_path / "bad.csv", header, [row])
    with pytest.raises(SeriesError, match=message):
        read_csv(path, catalogue.get("sales.order_spike").rule, catalogue.get)


def test_a_duplicate_hour_and_a_short_series_are_refused(catalogue, tmp_path):
    spike = catalogue.get("sales.order_spike")
    dup = _csv(tmp_path / "dup.csv", ["ts", "orders"], [[T0.isoformat(), 1], [T0.isoformat(), 2]])
    with pytest.raises(SeriesError, match="dup.csv:3: a second row"):
        read_csv(dup, spike.rule, catalogue.get)
    short = read_csv(_csv(tmp_path / "short.csv", ["ts", "orders"], [[T0.isoformat(), 1]]), spike.rule, catalogue.get)
    with pytest.raises(SeriesError, match="shorter than the history"):
        backtest_series(spike, catalogue.get, short)
