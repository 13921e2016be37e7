"""Backtests on the simulated shop's warehouse (DuckDB): the replay is what the live cycles did,
the scores find the labelled incidents, tune sweeps, plots are drawn, shadow rules are reported."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from threshold_operators.analysis.backtest import backtest, replay
from threshold_operators.analysis.overrides import apply_overrides
from threshold_operators.analysis.scoring import score, touches
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
    assert s.delays_h["formula_spike_low_stock"] <= 1.0  # the rolling hour shows the fivefold spike 25 minutes in
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

    values = ["1", "3", "6"]  # the noise guard: the Poisson tail of the window's count, in normal quantiles
    # (z 1 lets through one window in six: over a thousand alerts a week, every 5 minutes on 60 SKUs)
    result = sweep(loaded, catalogue.get, run, "conditions.1.above", values, labels, start, end,
                   max_alerts_per_week=10_000)
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


def test_the_shadow_report_of_a_five_minute_rule_gives_each_cycles_news():
    """A shadow rule every 5 minutes (its rows a bucket each, window_end 5 minutes later): one message
    per news, at the cycle it happened in, none for the cycles that only kept firing."""
    from threshold_operators.analysis.shadow import render, would_send

    t = datetime.fromisoformat("2026-09-27T08:00:00+00:00")
    five = timedelta(minutes=5)
    states = ["firing"] * 4 + ["resolved"]
    sevs = ["yellow", "yellow", "red", "red", None]
    rows = [{"rule_id": "sales.order_spike_sustained", "entity_key": "shop_id=s/sku=S", "bucket": t + k * five,
             "state": st, "severity": sev, "window_end": t + (k + 1) * five}
            for k, (st, sev) in enumerate(zip(states, sevs, strict=True))]
    sent = would_send(rows)
    assert [(m.event, m.severity, m.window_end - t) for m in sent] == [
        ("fired", "yellow", five), ("worsened", "red", 3 * five), ("resolved", "red", 5 * five)]
    assert "08:05 UTC  fired" in render(sent) and "08:15 UTC  worsened" in render(sent)


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


# --- rolling rules (issue 13): every 5 minutes over a rolling window ------------------------------
FIVE = timedelta(minutes=5)


def _states(results):
    return sorted((r.entity_key, r.bucket, str(r.state), r.severity) for r in results)


def test_a_rolling_rule_replayed_in_week_chunks_gives_its_five_minute_cycles(catalogue, incident_shop):
    """sales.order_spike (1 h window, every 5 minutes) around the formula spike: the replay's
    week-long window and the 24 live cycles of 5 minutes agree bucket for bucket, state and
    severity, on both warehouses."""
    from threshold_operators.analysis.backtest import windows

    hook, labels = incident_shop
    inc = _incident(labels, "formula_spike_low_stock")
    start = datetime.fromisoformat(inc["start"]).replace(minute=0)  # 07:00; the spike from 07:30
    end = start + 2 * H
    loaded = catalogue.get("sales.order_spike")
    query = warehouse_query(hook)
    assert windows(loaded, start, end) == [(start, end)]  # one chunk, not cycle by cycle
    compiled = compile_rule(loaded, catalogue.get, source="query")
    cycles, prior = [], None
    t = start
    while t < end:
        ev = evaluate(compiled, query, t, t + FIVE, now=t + FIVE, prior=prior)
        prior = ev.carry
        cycles += ev.results
        t += FIVE
    chunked = replay(loaded, catalogue.get, query, start, end)
    assert _states(chunked) == _states(cycles)
    assert any(str(r.state) == "firing" for r in chunked) and {r.bucket.minute for r in chunked} - {0}


def test_the_detection_delay_of_a_rolling_rule_is_exact_to_the_slice(catalogue, incident_shop_duckdb):
    """The delay runs from the incident's start to the end of the first alerting 5-minute bucket,
    in minutes, not rounded to a tenth of an hour."""
    hook, labels = incident_shop_duckdb
    inc = _incident(labels, "formula_spike_low_stock")
    t0 = datetime.fromisoformat(inc["start"])
    start, end = t0 - timedelta(hours=6), datetime.fromisoformat(inc["end"]) + H
    loaded = catalogue.get("sales.order_spike")
    bt = backtest(loaded, catalogue.get, warehouse_query(hook), start, end)
    s = score(loaded.rule, bt.episodes, labels, start, end)
    first = min(e.start for e in bt.episodes if touches(inc, e.entity))
    assert first.minute % 5 == 0 and first.second == 0
    minutes = (first + FIVE - t0) / timedelta(minutes=1)
    assert s.as_json()["detection_delay_minutes"]["formula_spike_low_stock"] == round(minutes, 2)
    assert s.delays_h["formula_spike_low_stock"] == round(minutes / 60, 4)
    assert 0 < minutes <= 30  # a fivefold spike of a brand's formula shows within half an hour


def test_a_current_state_rule_every_five_minutes_is_replayed_cycle_by_cycle(catalogue, incident_shop_duckdb):
    """compound.spike_low_stock (every 5 minutes) has no history of its own: the replay runs its
    5-minute cycles, and the double alert of the formula incident fires within its first hour.
    (DuckDB only: its 36 cycles take minutes on PostgreSQL; the statement is the live one, which
    tests/engine runs on both.)"""
    from threshold_operators.analysis.backtest import windows

    hook, labels = incident_shop_duckdb
    inc = _incident(labels, "formula_spike_low_stock")
    t0 = datetime.fromisoformat(inc["start"])
    start = t0.replace(minute=0) - H
    end = start + 3 * H
    loaded = catalogue.get("compound.spike_low_stock")
    wins = windows(loaded, start, end)
    assert len(wins) == 36 and all(b - a == FIVE for a, b in wins)
    bt = backtest(loaded, catalogue.get, warehouse_query(hook), start, end)
    s = score(loaded.rule, bt.episodes, labels, start, end)
    assert "formula_spike_low_stock" in s.caught, bt.episodes
    assert s.delays["formula_spike_low_stock"] <= H


def test_evaluate_labels_may_sample_current_states_at_a_longer_cadence(catalogue, incident_shop_duckdb):
    """--state-every 1h: the 5-minute current-state rules are replayed hourly (a twelfth of the
    queries), the rolling rules as they run; the formula incident is still caught."""
    from threshold_operators.analysis.commands import evaluate_all, sampled
    from threshold_operators.usage_error import UsageError

    hook, labels = incident_shop_duckdb
    inc = _incident(labels, "formula_spike_low_stock")
    start = datetime.fromisoformat(inc["start"]).replace(minute=0) - H
    end = start + 5 * H
    assert sampled(catalogue.get("compound.spike_low_stock"), H).rule.every == H
    assert sampled(catalogue.get("sales.order_spike"), H) is catalogue.get("sales.order_spike")  # not a state
    with pytest.raises(UsageError, match="not a whole number"):
        sampled(catalogue.get("inventory.stock_cover"), timedelta(minutes=7))
    [compound], _ = evaluate_all(catalogue, hook, labels, start, end, ["compound.spike_low_stock"], H)
    assert "formula_spike_low_stock" in compound.caught
    first_seen = datetime.fromisoformat(inc["start"]) + compound.delays["formula_spike_low_stock"]
    assert first_seen.minute == 0  # seen at the end of an hourly cycle
