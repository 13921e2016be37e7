"""Backtests on the simulated shop's warehouse (DuckDB): the replay is what the live cycles did,
the scores find the labelled incidents, tune sweeps, plots are drawn, shadow rules are reported."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from threshold_operators.analysis.backtest import backtest, replay
from threshold_operators.analysis.overrides import apply_overrides
from threshold_operators.analysis.scoring import score
from threshold_operators.analysis.tune import sweep
from threshold_operators.engine.compile import compile_rule
from threshold_operators.engine.evaluate import evaluate, warehouse_query
from threshold_operators.rules.catalogue import load_catalogue

H = timedelta(hours=1)


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


def _incident(labels, incident_id):
    return next(i for i in labels["incidents"] if i["id"] == incident_id)


@pytest.mark.parametrize("rule_id", ["sales.order_spike", "sales.order_drop", "customer.negative_review_burst"])
def test_week_long_windows_give_what_the_hourly_cycles_gave(catalogue, incident_shop_duckdb, rule_id):
    hook, labels = incident_shop_duckdb
    inc = _incident(labels, {"sales.order_spike": "formula_spike_low_stock", "sales.order_drop": "slow_sales_decline",
                             "customer.negative_review_burst": "negative_review_burst"}[rule_id])
    start = datetime.fromisoformat(inc["start"]).replace(minute=0) - 6 * H
    end = start + 30 * H
    loaded = catalogue.get(rule_id)
    query = warehouse_query(hook)
    compiled = compile_rule(loaded, catalogue.get)
    hourly = []
    t = start
    while t < end:
        hourly += evaluate(compiled, query, t, t + H, now=t + H).results
        t += H
    chunked = replay(loaded, catalogue.get, query, start, end)

    def states(results):
        return sorted((r.entity_key, r.bucket, str(r.state), r.severity) for r in results)

    assert states(chunked) == states(hourly)
    assert any(str(r.state) == "firing" for r in chunked)  # not a comparison of two empty sets


def test_scores_catch_the_labelled_spike_within_a_cycle(catalogue, incident_shop_duckdb):
    hook, labels = incident_shop_duckdb
    inc = _incident(labels, "formula_spike_low_stock")
    start = datetime.fromisoformat(inc["start"]) - timedelta(days=3)
    end = datetime.fromisoformat(inc["end"]) + timedelta(days=1)
    loaded = catalogue.get("sales.order_spike")
    bt = backtest(loaded, catalogue.get, warehouse_query(hook), start, end)
    s = score(loaded.rule, bt.episodes, labels, start, end)
    assert "formula_spike_low_stock" in s.caught and s.on_time["formula_spike_low_stock"]
    assert s.delays_h["formula_spike_low_stock"] <= 1.0  # the bucket of 07:00 ends 30 minutes after 07:30
    assert all(e.severity in ("yellow", "red") for e in bt.episodes)


def test_a_sweep_of_the_spike_threshold_recommends_within_the_budget(catalogue, incident_shop_duckdb):
    hook, labels = incident_shop_duckdb
    inc = _incident(labels, "formula_spike_low_stock")
    start = datetime.fromisoformat(inc["start"]).replace(minute=0) - timedelta(days=6)
    end = start + timedelta(days=7)
    loaded = catalogue.get("sales.order_spike")
    query = warehouse_query(hook)

    def run(variant, settings):
        return backtest(variant, catalogue.get, query, start, end, settings)

    values = ["1", "3", "6"]  # the noise guard: standard deviations of a Poisson count above the baseline
    result = sweep(loaded, catalogue.get, run, "conditions.1.above", values, labels, start, end,
                   max_alerts_per_week=1000)
    per_week = [p.alerts_per_week for p in result.points]
    assert per_week == sorted(per_week, reverse=True) and per_week[0] > per_week[-1]  # a looser guard: more alerts
    assert result.recommended == 1  # the loosest is within a generous budget
    catching = [p for p in result.points if "formula_spike_low_stock" in p.caught]
    budget = min(p.alerts_per_week for p in catching)
    tight = sweep(loaded, catalogue.get, run, "conditions.1.above", values, labels, start, end,
                  max_alerts_per_week=budget)
    chosen = next(p for p in tight.points if p.value == tight.recommended)
    assert chosen.alerts_per_week <= budget and "formula_spike_low_stock" in chosen.caught
    none = sweep(loaded, catalogue.get, run, "conditions.1.above", values, labels, start, end,
                 max_alerts_per_week=-1)
    assert none.recommended is None


def test_a_plot_draws_the_metric_baseline_tiers_and_episodes(catalogue, incident_shop_duckdb, tmp_path):
    from threshold_operators.analysis.backtest import windows
    from threshold_operators.analysis.plots import write_plot

    hook, labels = incident_shop_duckdb
    inc = _incident(labels, "formula_spike_low_stock")
    start = datetime.fromisoformat(inc["start"]).replace(minute=0) - timedelta(days=2)
    end = start + timedelta(days=3)
    loaded = catalogue.get("sales.order_spike")
    query = warehouse_query(hook)
    bt = backtest(loaded, catalogue.get, query, start, end)
    png = write_plot(bt, loaded, catalogue.get, query, tmp_path / "spike.png", windows(loaded, start, end), top=3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    page = write_plot(bt, loaded, catalogue.get, query, tmp_path / "spike.html", windows(loaded, start, end), top=3)
    text = page.read_text(encoding="utf-8")
    assert "<svg" in text and "<script" not in text and "src=" not in text  # self-contained
    assert "red threshold" in text and bt.episodes[0].entity_key in text


def test_the_shadow_report_replays_what_would_have_been_sent(catalogue):
    from threshold_operators.analysis.shadow import would_send

    t = datetime.fromisoformat("2026-09-27T08:00:00+00:00")
    rows = [{"rule_id": "sales.order_spike_7d", "entity_key": "shop_id=s/sku=A", "bucket": t + k * H,
             "state": "firing", "severity": sev, "window_end": t + (k + 1) * H}
            for k, sev in enumerate(["yellow", "yellow", "red"])]
    rows.append({"rule_id": "sales.order_spike_7d", "entity_key": "shop_id=s/sku=A", "bucket": t + 3 * H,
                 "state": "resolved", "severity": None, "window_end": t + 4 * H})
    sent = would_send(rows)
    assert [(m.event, m.severity) for m in sent] == [("fired", "yellow"), ("worsened", "red"), ("resolved", "red")]


def test_an_override_changes_what_the_warehouse_backtest_finds(catalogue, incident_shop_duckdb):
    hook, labels = incident_shop_duckdb
    inc = _incident(labels, "formula_spike_low_stock")
    start = datetime.fromisoformat(inc["start"]).replace(minute=0) - 2 * H
    end = start + 8 * H
    query = warehouse_query(hook)
    base = backtest(catalogue.get("sales.order_spike"), catalogue.get, query, start, end)
    strict = backtest(apply_overrides(catalogue.get("sales.order_spike"), ["condition.threshold={yellow: 50}"]),
                      catalogue.get, query, start, end, ["condition.threshold={yellow: 50}"])
    assert base.episodes and not strict.episodes and strict.as_json()["overrides"] == ["condition.threshold={yellow: 50}"]
