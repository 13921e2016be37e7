"""The analyst commands as people run them: `storefence backtest|tune|test-rules|evaluate|report`,
in a real process; JSON as documented; bad input is one line and exit status 2, nothing written."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 8, 3, tzinfo=UTC)


def storefence(*args, cwd=REPO):
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    return subprocess.run([sys.executable, "-m", "threshold_operators.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd)


def test_backtest_json_is_the_documented_object(series):
    out = storefence("backtest", "sales.order_spike", "--series", series, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["rule"] == "sales.order_spike" and doc["source"].startswith("series")
    assert [(e["entity"], e["severity"]) for e in doc["episodes"]] == [({"shop_id": "series", "sku": "A"}, "red"),
                                                                       ({"shop_id": "series", "sku": "A"}, "yellow")]
    assert set(doc["episodes"][0]) == {"entity", "entity_key", "severity", "start", "end", "peak_value", "baseline",
                                       "threshold"}
    assert {"alerts_per_week", "alerts_per_week_by_severity", "hours_in_alert"} <= set(doc["summary"])


def test_backtest_set_and_plot(series, tmp_path):
    out = storefence("backtest", "sales.order_spike", "--series", series, "--set", "condition.threshold.yellow=2.95",
                     "--plot", tmp_path / "spike.png")
    assert out.returncode == 0, out.stderr
    assert "1 alert episode(s)" in out.stdout and "condition.threshold.yellow=2.95" in out.stdout
    assert (tmp_path / "spike.png").stat().st_size > 10_000


def test_backtest_of_a_five_minute_csv_and_its_plot(tmp_path):
    """A CSV at 5-minute resolution: the rolling spike rule sees a top seller's tenfold burst 10
    minutes in (the window ending 10:10), and the plot draws it."""
    path = tmp_path / "five.csv"
    burst = T0 + timedelta(days=45, hours=10)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["ts", "entity", "orders"])
        for k in range(12 * 24 * 46):
            t = T0 + timedelta(minutes=5 * k)
            w.writerow([t.isoformat(), "TOP", 100 if burst <= t < burst + timedelta(hours=1) else 10])
    out = storefence("backtest", "sales.order_spike", "--series", path, "--start", (burst - timedelta(hours=1)).isoformat(),
                     "--end", (burst + timedelta(hours=3)).isoformat(), "--json", "--plot", tmp_path / "top.svg")
    assert out.returncode == 0, out.stderr
    [e] = json.loads(out.stdout)["episodes"]
    assert datetime.fromisoformat(e["start"]) == burst + timedelta(minutes=5) and e["severity"] == "red"
    assert (tmp_path / "top.svg").stat().st_size > 10_000


def test_tune_recommends_the_loosest_value_within_the_budget(series):
    out = storefence("tune", "sales.order_spike", "--series", series, "--param", "condition.threshold.yellow",
                     "--values", "2,2.5,2.95", "--max-alerts-per-week", "1", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [p["alerts"] for p in doc["points"]] == [2, 2, 1] and doc["recommended"] == 2.95


@pytest.mark.parametrize(("args", "message"), [
    (["backtest", "sales.nope", "--series", "x.csv"], "unknown rule 'sales.nope'"),
    (["backtest", "sales.order_spike", "--series", "SERIES", "--set", "condition.treshold=2"], "has no field"),
    (["backtest", "sales.order_spike", "--series", "missing.csv"], "missing.csv"),
    (["backtest", "sales.order_spike", "--series", "SERIES", "--plot", "out.pdf"], "use a .png, .svg or .html"),
    (["backtest", "sales.order_spike", "--start", "last tuesday"], "not an ISO 8601 timestamp"),
    (["tune", "sales.order_spike", "--series", "SERIES", "--param", "nope", "--values", "1"], "has no field 'nope'"),
    (["evaluate"], "storefence evaluate RULE"),
    (["evaluate", "--labels", "nowhere.yaml"], "cannot read the labels file"),
    (["report"], "--shadow"),
])
def test_bad_input_is_one_line_and_status_2(series, tmp_path, args, message):
    out = storefence(*[series if a == "SERIES" else a for a in args], cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    # one line (argparse's own errors come after its usage lines, as every argparse tool's do)
    assert message in out.stderr.strip().splitlines()[-1] and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 or out.stderr.startswith("usage:")
    assert not (tmp_path / "out.pdf").exists()


def test_a_csv_without_the_metric_names_it(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,visits\n2026-08-03T00:00:00Z,3\n", encoding="utf-8")
    out = storefence("backtest", "sales.order_drop", "--series", bad)
    assert out.returncode == 2 and "reads orders, not in the file" in out.stderr


def test_test_rules_passes_the_shipped_cases_and_fails_a_wrong_one(tmp_path):
    ok = storefence("test-rules")
    assert ok.returncode == 0 and "0 failed" in ok.stdout, ok.stdout
    wrong = (REPO / "tests" / "rules" / "customer.yaml").read_text(encoding="utf-8").replace("severity: blue", "severity: red")
    (tmp_path / "wrong.yaml").write_text(wrong, encoding="utf-8")
    failed = storefence("test-rules", tmp_path / "wrong.yaml")
    assert failed.returncode == 1 and "FAIL" in failed.stdout and "wrong.yaml:" in failed.stdout


def test_every_shipped_rule_has_a_firing_and_a_quiet_case():
    from threshold_operators.analysis.rule_tests import load_cases, test_files
    from threshold_operators.rules.catalogue import load_catalogue

    firing, quiet = set(), set()
    for f in test_files(REPO / "tests" / "rules"):
        for case in load_cases(f):
            for ev in case.evals:
                (firing if ev["alerts"] else quiet).add(case.rule)
    rules = set(load_catalogue().rules)
    assert rules <= firing and rules <= quiet, (rules - firing, rules - quiet)
