"""``storefence preview RULE --backtest``: the first message people would get about an episode of a
backtest, on the simulated shop's warehouse (DuckDB) and on a metric CSV, in each channel's form,
nothing sent; the breaches are the check task's; bad input is one line and exit status 2."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from threshold_operators.analysis.backtest import backtest
from threshold_operators.analysis.episodes import first_firing
from threshold_operators.cli import main
from threshold_operators.engine.compile import compile_rule
from threshold_operators.engine.evaluate import evaluate, warehouse_query
from threshold_operators.operators.threshold_check import ThresholdCheckOperator
from threshold_operators.rules.catalogue import load_catalogue

T0 = datetime(2026, 8, 3, tzinfo=UTC)  # the CSV's first hour
RULE = "sales.order_spike"


def _incident(labels, incident_id="formula_spike_low_stock"):
    return next(i for i in labels["incidents"] if i["id"] == incident_id)


def _window(inc) -> tuple[str, str]:
    """From two hours before the incident to one after it: times of the labels, not of today."""
    return ((datetime.fromisoformat(inc["start"]) - timedelta(hours=2)).isoformat(),
            (datetime.fromisoformat(inc["end"]) + timedelta(hours=1)).isoformat())


def _listed(out: str) -> list[str]:
    """The episode lines of the listing: (marker) number, start, end, severity, entity."""
    return [line for line in out.splitlines() if re.match(r"^(->|  )\s+\d+  \d{4}-", line)]


def _robot_text(out: str) -> str:
    body = out[out.index("=== ops_dingtalk"):].split("\n", 1)[1].split("\n===", 1)[0]
    return json.loads(body)["markdown"]["text"]



def test_the_latest_episode_of_an_incident_names_its_sku_and_says_its_orders(incident_shop_duckdb, capsys):
    hook, labels = incident_shop_duckdb
    inc = _incident(labels)
    start, end = _window(inc)
    url = f"duckdb:///{hook.duckdb_path}"
    assert main(["preview", RULE, "--backtest", "--start", start, "--end", end, "--warehouse", url]) == 0
    out = capsys.readouterr().out
    listed = _listed(out)
    count = int(re.search(r"(\d+) alert episode\(s\)", out).group(1))
    assert count == len(listed) >= 2  # both of the brand's SKUs, numbered for --episode
    latest = listed[-1]
    assert latest.startswith("->") and f"Episode {count} of {count}" in out  # the latest by default
    sku = latest.rsplit("sku=", 1)[1]
    assert sku in inc["skus"]
    with hook.evaluation_connection() as con:
        from sqlalchemy import text

        title = con.execute(text("SELECT name FROM products WHERE sku = :s"), {"s": sku}).scalar_one()
    robot = _robot_text(out)  # the operations robot's request body: the team's own channel
    assert sku in robot and title in robot  # its name, with the key kept small
    assert re.search(r"订单 \d+ 单，平时 [\d.]+ 单，×[\d.]+（阈值 ×[23]）", robot), robot  # as people say it

    assert main(["preview", RULE, "--backtest", "--start", start, "--end", end, "--warehouse", url,
                 "--episode", "1", "--channel", "dingtalk", "--lang", "en"]) == 0
    first = capsys.readouterr().out
    assert _listed(first)[0].startswith("->") and f"Episode 1 of {count}" in first
    robot = _robot_text(first)
    assert listed[0].rsplit("sku=", 1)[1] in robot
    assert re.search(r"orders \d+, usually [\d.]+, ×[\d.]+ \(threshold ×[23]\)", robot), robot
    assert first.count("\n=== ") == 1 and "Nothing is sent" in first


def test_the_breaches_are_the_check_tasks_of_the_cycle_that_fired(incident_shop_duckdb):
    """What the preview lists is what the evaluate task of that 5-minute cycle put in its XCom, plus
    the window that fired it and the alert's fingerprint (the notify task's alert detail)."""
    hook, labels = incident_shop_duckdb
    catalogue = load_catalogue()
    loaded = catalogue.get(RULE)
    start, end = (datetime.fromisoformat(t) for t in _window(_incident(labels)))
    query = warehouse_query(hook)
    bt = backtest(loaded, catalogue.get, query, start, end)
    for episode in bt.episodes:
        breaches, window = first_firing(loaded.rule, bt.results, bt.episodes, episode)
        at = episode.start
        assert window == (at.isoformat(), (at + timedelta(minutes=5)).isoformat())
        ev = evaluate(compile_rule(loaded, catalogue.get), query, at, at + timedelta(minutes=5), now=at + timedelta(minutes=5))
        xcom = {b["entity_key"]: b for b in ThresholdCheckOperator._summary(ev, loaded.rule)["breaches"]}
        assert episode.entity_key in {b["entity_key"] for b in breaches}
        for b in breaches:
            assert {k: v for k, v in b.items() if k not in ("fired_window", "fingerprint")} == xcom[b["entity_key"]]
            assert b["fired_window"] == list(window) and len(b["fingerprint"]) == 20
        assert len({b["severity"] for b in breaches}) == 1  # one message per rule, event and severity


def test_a_metric_csv_lists_its_episodes_and_shows_the_one_asked_for(series, capsys):
    assert main(["preview", RULE, "--backtest", "--series", str(series), "--channel", "dingtalk"]) == 0
    out = capsys.readouterr().out
    assert "2 alert episode(s)" in out and f"[series {series}]" in out
    first, latest = _listed(out)
    assert " red " in first and " yellow " in latest and latest.startswith("->")
    robot = _robot_text(out)
    assert "shop_id=series/sku=A" in robot and "【黄色预警】订单激增" in robot  # no dimensions: the key as it is
    assert re.search(r"订单 \d+ 单，平时 12 单，×[\d.]+（阈值 ×2）", robot), robot  # the rolling hour, 5 minutes in

    # the red episode: its first message is the yellow one of its first 5 minutes, said so
    assert main(["preview", RULE, "--backtest", "--series", str(series), "--episode", "1", "--channel", "dingtalk"]) == 0
    out = capsys.readouterr().out
    assert "Episode 1 of 2" in out and '(yellow; it reached red later: a "worsened" message)' in out
    robot = _robot_text(out)
    assert "【黄色预警】订单激增" in robot and re.search(r"订单 \d+ 单，平时 12 单，×[\d.]+（阈值 ×2）", robot), robot

    assert main(["preview", RULE, "--backtest", "--series", str(series), "--days", "4", "--channel", "dingtalk"]) == 0
    out = capsys.readouterr().out  # the last 4 days: the second spike alone
    assert "1 alert episode(s)" in out and "【黄色预警】" in _robot_text(out)


@pytest.mark.parametrize(("args", "message"), [
    (["preview", "sales.nope", "--backtest", "--series", "SERIES"], "unknown rule 'sales.nope'"),
    (["preview", RULE, "--backtest", "--series", "SERIES", "--start", "2026-09-10T00:00:00Z",
      "--end", "2026-09-12T00:00:00Z"], "has no alert episode over 2026-09-10 00:00 .. 2026-09-12 00:00 UTC"),
    (["preview", RULE, "--backtest", "--series", "SERIES", "--episode", "3"], "--episode 3: sales.order_spike has 2"),
    (["preview", RULE, "--backtest", "--series", "SERIES", "--days", "0"], "--days 0"),
    (["preview", RULE, "--backtest", "--series", "SERIES", "--set", "condition.treshold=2"], "has no field"),
    (["preview", RULE, "--backtest", "--series", "SERIES", "--state", "sqlite:///x"], "give one"),
    (["preview", RULE, "--episode", "2"], "--episode: only with --backtest"),
    (["preview", RULE, "--backtest", "--start", "2026-09-10T00:00:00Z", "--days", "2"], "not allowed with"),
    # tune and backtest take a series' range the same way
    (["backtest", RULE, "--series", "SERIES", "--start", "2030-01-01T00:00:00Z"], "is not before the end"),
    (["tune", RULE, "--series", "SERIES", "--start", "2030-01-01T00:00:00Z", "--param", "condition.threshold",
      "--values", "2"], "is not before the end"),
])
def test_bad_input_is_one_line_and_status_2(series, capsys, args, message):
    try:
        status = main([str(series) if a == "SERIES" else a for a in args])
    except SystemExit as exc:  # argparse's own errors exit, after its usage lines
        status = exc.code
    out = capsys.readouterr()
    assert status == 2 and message in out.err.strip().splitlines()[-1] and out.out == ""


def test_backtest_and_tune_take_the_last_n_days(series, capsys):
    assert main(["backtest", RULE, "--series", str(series), "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)["episodes"]
    assert main(["backtest", RULE, "--series", str(series), "--days", "4", "--json"]) == 0
    last = json.loads(capsys.readouterr().out)["episodes"]
    assert len(whole) == 2 and len(last) == 1  # the last 4 days: the second spike alone
    assert (last[0]["start"], last[0]["severity"]) == (whole[1]["start"], whole[1]["severity"])
    assert main(["tune", RULE, "--series", str(series), "--param", "condition.threshold", "--values", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["points"][0]["alerts"] == 2
    assert main(["tune", RULE, "--series", str(series), "--days", "4", "--param", "condition.threshold",
                 "--values", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["points"][0]["alerts"] == 1
