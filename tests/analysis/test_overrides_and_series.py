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
    """An hourly CSV for the rolling spike rule (1 h window, every 5 minutes): each hour's orders
    spread over its 12 slices, so the hour of 40 orders (12 usually) shows as it lands."""
    spike = catalogue.get("sales.order_spike")
    rows = read_csv(_csv(tmp_path / "s.csv", ["ts", "entity", "orders"], _spike_rows()), spike.rule, catalogue.get)
    bt = backtest_series(spike, catalogue.get, rows)
    # the six weeks of baseline and the neighbouring hour, the window's other 55 minutes, the lead-in
    assert bt.start == T0 + timedelta(days=42, hours=2)
    assert bt.end == T0 + timedelta(hours=24 * 50)  # the end of the last hour, not of its first 5 minutes
    [e] = bt.episodes
    spike_hour = T0 + timedelta(hours=24 * 45 + 10)
    # the window ending 10:45 holds 45 minutes of the spike: 33 orders, surprising enough (z 4.9)
    assert (e.entity_key, e.severity, e.start) == ("shop_id=series/sku=A", "red", spike_hour + timedelta(minutes=40))
    # the window ending 11:20 holds 40 minutes of it (30.7 orders, z 4.4): quiet again
    assert e.end == spike_hour + timedelta(minutes=75)
    assert e.peak_value == pytest.approx(40 / 12) and e.threshold == 3  # the window of the hour itself
    assert bt.as_json()["episodes"][0]["severity"] == "red" and bt.summary["alerts"] == 1


def _five_minute(rows):
    """Hourly [ts, entity, orders] rows as a 5-minute CSV's rows, each hour's orders spread evenly."""
    out = []
    for ts, entity, orders in rows:
        t = datetime.fromisoformat(ts)
        out += [[(t + timedelta(minutes=5 * k)).isoformat(), entity, orders / 12] for k in range(12)]
    return out


def test_a_five_minute_csv_is_read_slice_by_slice_and_an_hourly_one_spread(catalogue, tmp_path):
    spike = catalogue.get("sales.order_spike")
    hourly = read_csv(_csv(tmp_path / "h.csv", ["ts", "entity", "orders"], _spike_rows(24 * 2, 30)), spike.rule,
                      catalogue.get)
    fine = read_csv(_csv(tmp_path / "f.csv", ["ts", "entity", "orders"], _five_minute(_spike_rows(24 * 2, 30))),
                    spike.rule, catalogue.get)

    def key(r):
        return r["bucket"], r["sku"]

    assert len(hourly) == len(fine) == 2 * 24 * 2 * 12
    assert sorted((key(r), round(r["orders"], 9)) for r in hourly) == sorted((key(r), round(r["orders"], 9))
                                                                               for r in fine)
    assert {r["orders"] for r in hourly if r["sku"] == "B"} == {1.0}  # 12 an hour: one order every 5 minutes


def test_a_burst_in_a_five_minute_csv_fires_within_minutes(catalogue, tmp_path):
    """A top seller (120 orders an hour, 10 every 5 minutes) sells ten times as much for two hours
    from 10:00 (a live stream mentions it): the 1-hour window ending 10:10 holds 10 minutes of
    it, 300 orders (2.5 times the baseline, far past the Poisson guard): it fires with the bucket
    of 10:05, red from the next. It resolves once the window holds a single slice of it (240:
    twice the baseline, not above it), the window ending 12:55."""
    spike = catalogue.get("sales.order_spike")
    burst = T0 + timedelta(days=45, hours=10)
    rows = []
    for k in range(12 * 24 * 46):
        t = T0 + timedelta(minutes=5 * k)
        rows.append([t.isoformat(), "TOP", 100 if burst <= t < burst + timedelta(hours=2) else 10])
    series = read_csv(_csv(tmp_path / "top.csv", ["ts", "entity", "orders"], rows), spike.rule, catalogue.get)
    bt = backtest_series(spike, catalogue.get, series, burst - timedelta(hours=1), burst + timedelta(hours=4))
    [e] = bt.episodes
    assert e.start == burst + timedelta(minutes=5) and e.severity == "red"  # seen 10 minutes in
    assert e.end == burst + timedelta(hours=2, minutes=50)
    assert [r.severity for r in bt.results if r.bucket <= burst + timedelta(minutes=10)] == ["yellow", "red"]


def test_an_hourly_csv_of_a_current_state_holds_for_each_five_minutes(catalogue, tmp_path):
    cover = catalogue.get("inventory.stock_cover")
    rows = read_csv(_csv(tmp_path / "c.csv", ["ts", "entity", "cover_days", "avg_14d"],
                         [[T0.isoformat(), "A", 10, 5], [(T0 + timedelta(hours=1)).isoformat(), "A", 2, 5]]),
                    cover.rule, catalogue.get)
    assert [(r["bucket"] - T0, r["cover_days"], r["avg_14d"]) for r in rows] == \
        [(timedelta(minutes=5 * k), 10.0 if k < 12 else 2.0, 5.0) for k in range(24)]


@pytest.mark.parametrize(("rule_id", "header", "row", "message"), [
    ("sales.order_spike", ["time", "orders"], [T0.isoformat(), 1], "no ts column"),
    ("sales.order_spike", ["ts", "sales"], [T0.isoformat(), 1], "reads orders, not in the file"),
    ("sales.order_spike", ["ts", "orders"], ["yesterday", 1], "bad.csv:3: ts 'yesterday' is not an ISO 8601"),
    ("sales.order_drop", ["ts", "orders"], ["2026-08-03T00:30:00Z", 1], "bad.csv:3: .* not on the hour"),
    ("sales.order_spike", ["ts", "orders"], ["2026-08-03T00:32:00Z", 1], "bad.csv:3: .* not on a 5-minute boundary"),
    ("inventory.stock_cover", ["ts", "cover_days", "avg_14d"], ["2026-08-03T00:31:00Z", 1, 1],
     "bad.csv:3: .* not on a 5-minute boundary"),
    ("sales.order_spike", ["ts", "orders"], [T0.isoformat(), "many"], "bad.csv:3: orders = 'many' is not a number"),
])
def test_a_bad_csv_is_one_clear_error_with_its_line(catalogue, tmp_path, rule_id, header, row, message):
    good = [T0.isoformat()] + [1] * (len(header) - 1)  # line 2 is fine: the error names line 3
    path = _csv(tmp_path / "bad.csv", header, [good, row])
    with pytest.raises(SeriesError, match=message):
        read_csv(path, catalogue.get(rule_id).rule, catalogue.get)


def test_a_duplicate_hour_and_a_short_series_are_refused(catalogue, tmp_path):
    spike = catalogue.get("sales.order_spike")
    dup = _csv(tmp_path / "dup.csv", ["ts", "orders"], [[T0.isoformat(), 1], [T0.isoformat(), 2]])
    with pytest.raises(SeriesError, match="dup.csv:3: a second row"):
        read_csv(dup, spike.rule, catalogue.get)
    short = read_csv(_csv(tmp_path / "short.csv", ["ts", "orders"], [[T0.isoformat(), 1]]), spike.rule, catalogue.get)
    with pytest.raises(SeriesError, match="shorter than the history"):
        backtest_series(spike, catalogue.get, short)
