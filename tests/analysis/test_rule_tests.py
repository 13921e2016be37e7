"""Rule unit tests as data on 5-minute rules: the series' ``step``, hourly values spread over a
rolling rule's slices or held by a current state, and one clear error (file:line) for a bad case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threshold_operators.analysis.rule_tests import load_cases, rows_of, run_case
from threshold_operators.rules.catalogue import load_catalogue

T0 = datetime(2026, 8, 3, tzinfo=UTC)
FIVE = timedelta(minutes=5)


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


def _case(tmp_path, body: str):
    path = tmp_path / "case.yaml"
    path.write_text("tests:" + body, encoding="utf-8")
    return load_cases(path)[0]


def test_an_hourly_series_is_spread_over_a_rolling_rules_slices_and_held_by_a_state(catalogue, tmp_path):
    case = _case(tmp_path, """
  - name: two hours
    rule: compound.spike_low_stock
    start: 2026-08-03T00:00:00Z
    series:
      - {entity: shop_id=s1/sku=A, orders: "12 24", stock_hours: "5 7"}
    eval: [{at: 2026-08-03T01:00:00Z, alerts: []}]
""")
    rows = sorted(rows_of(case, catalogue.get(case.rule).rule, catalogue.get), key=lambda r: r["bucket"])
    assert [r["bucket"] for r in rows] == [T0 + k * FIVE for k in range(24)]
    assert [r["orders"] for r in rows] == [1.0] * 12 + [2.0] * 12  # counts: an hour's 12 orders, one a slice
    assert [r["stock_hours"] for r in rows] == [5.0] * 12 + [7.0] * 12  # a state: the same all hour


def test_step_5m_takes_a_value_every_5_minutes(catalogue, tmp_path):
    case = _case(tmp_path, """
  - name: fine
    rule: sales.order_spike
    start: 2026-08-03T00:00:00Z
    step: 5m
    series:
      - {entity: shop_id=s1/sku=A, orders: "1 2 3"}
    eval: [{at: 2026-08-03T00:15:00Z, alerts: []}]
""")
    rows = rows_of(case, catalogue.get(case.rule).rule, catalogue.get)
    assert [(r["bucket"], r["orders"]) for r in rows] == [(T0, 1.0), (T0 + FIVE, 2.0), (T0 + 2 * FIVE, 3.0)]


@pytest.mark.parametrize(("rule", "step", "at", "message"), [
    ("sales.order_spike", "7m", "2026-08-03T01:00:00Z", "case.yaml:2: step 7m does not fit sales.order_spike: use a "
                                                        "whole number of 5-minute buckets"),
    ("sales.order_drop", "5m", "2026-08-03T01:00:00Z", "case.yaml:2: step 5m does not fit sales.order_drop: use 1h"),
    ("sales.order_spike", None, "2026-08-03T01:02:00Z", "case.yaml:2: ts 2026-08-03T01:02:00Z is not on a 5-minute "
                                                        "boundary"),
    ("sales.order_drop", None, "2026-08-03T01:05:00Z", "case.yaml:2: ts 2026-08-03T01:05:00Z is not on the hour"),
])
def test_a_step_or_time_that_does_not_fit_the_rule_is_one_clear_failure(catalogue, tmp_path, rule, step, at, message):
    lines = ["  - name: bad", f"    rule: {rule}", "    start: 2026-08-03T00:00:00Z",
             *([f"    step: {step}"] if step else []),
             '    series: [{entity: shop_id=s1/sku=A, orders: "12x3"}]', f"    eval: [{{at: '{at}', alerts: []}}]"]
    path = tmp_path / "case.yaml"
    path.write_text("tests:\n" + "\n".join(lines) + "\n", encoding="utf-8")
    [case] = load_cases(path)
    [failure] = run_case(case, catalogue)
    assert message in failure


def test_a_step_that_is_not_a_duration_names_its_line(tmp_path):
    from threshold_operators.analysis.rule_tests import RuleTestError

    (tmp_path / "case.yaml").write_text("tests:\n  - name: x\n    rule: sales.order_spike\n    start: 2026-08-03T00:00:00Z\n"
                                        "    step: often\n    series: []\n    eval: []\n", encoding="utf-8")
    with pytest.raises(RuleTestError, match=r"case.yaml:5: tests.0.step: 'often' is not a duration"):
        load_cases(tmp_path / "case.yaml")


def test_a_plot_puts_the_poisson_tail_threshold_at_the_count_that_reaches_it():
    from threshold_operators.analysis.plots import poisson_tail_z, threshold_in_metric_units

    count = threshold_in_metric_units("poisson_tail", 4.75, 12.0)
    assert 32 < count < 33 and poisson_tail_z(count, 12.0) == pytest.approx(4.75, abs=1e-6)
    assert poisson_tail_z(33, 12.0) > 4.75 > poisson_tail_z(32, 12.0)  # the hour of tests/rules/sales.yaml
