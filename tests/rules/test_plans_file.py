"""include/rules/plans.yaml: validated like the rule files (every problem, with file, line and
field), linted, and loaded into planned_events without touching another source's rows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from threshold_operators import located_yaml
from threshold_operators.rules.plans import load_plans, plan_rows

REPO = Path(__file__).resolve().parents[2]
PLANS = Path(__file__).parent / "testdata" / "plans"
NOW = datetime(2026, 10, 1, tzinfo=UTC)


def _problems(name: str) -> list[str]:
    with pytest.raises(located_yaml.ConfigFileError) as exc:
        load_plans(PLANS / name)
    return [p.removeprefix(f"{PLANS / name}:") for p in exc.value.problems]


def test_the_shipped_plans_file_is_valid():
    assert load_plans(REPO / "include" / "rules" / "plans.yaml").events == []


def test_a_good_file_gives_one_row_per_event_and_uplift():
    rows = plan_rows(load_plans(PLANS / "good.yaml"), "plans.yaml", NOW)
    assert [(r["event_id"], r["scope"], r["scope_value"], r["uplift"]) for r in rows] == [
        ("double11_2026", "shop", "", 4.0),
        ("double11_2026", "category", "infant_formula", 6.0),
        ("double11_2026", "sku", "SKU-INF-000003", 10.0),
        ("live_stream_2026-12-12", "sku", "SKU-BEA-000001", 8.0)]
    assert rows[0]["starts_at"] == datetime(2026, 11, 10, 16, tzinfo=UTC)  # 00:00 in Shanghai, in UTC
    assert rows[0]["starts_at"].tzinfo is UTC and rows[0]["name"] == "双11"


def test_a_bad_file_is_refused_with_every_problem_at_its_line_and_field():
    problems = _problems("bad.yaml")
    expected = [
        ("2: events.0.id: 'Double11' is not an event id", 1),
        ("4: events.0.start: 2026-11-11T00:00:00 has no offset", 1),
        ("8: events.0.uplifts.1.shop: \"shop-01'; DROP TABLE orders; --\" is not a shop id", 1),
        ("9: events.0.uplifts.2: give a category or a sku, not both", 1),
        ("10: events.0.uplifts.3.factor: Input should be greater than 0", 1),
        ("11: events.0.uplifts.4.channel: unknown field", 1),
        ("12: events.1: end (2026-12-12T20:00:00+08:00) is not after start", 1),
        ("18: events.2: the event lasts 364 days", 1),
    ]
    for prefix, n in expected:
        assert sum(p.startswith(prefix) for p in problems) == n, (prefix, problems)
    assert len(problems) == len(expected), problems


def test_duplicate_ids_and_targets_are_refused():
    assert _problems("duplicates.yaml") == [
        "8: events.0.uplifts.1: the same shop as uplifts.0; one factor per shop, category or SKU and event",
        "9: events.1.id: 'double11' is already used at line 2",
    ]


def _cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    return subprocess.run([sys.executable, "-m", "threshold_operators.cli", *args], cwd=REPO,
                          capture_output=True, text=True, env=env)


def _rules_with(tmp_path: Path, plans: str) -> Path:
    folder = tmp_path / "include"
    shutil.copytree(REPO / "include" / "rules", folder / "rules", ignore=shutil.ignore_patterns("quality"))
    shutil.copytree(REPO / "include" / "sql", folder / "sql")
    shutil.copy(PLANS / plans, folder / "rules" / "plans.yaml")
    return folder / "rules"


def test_lint_reports_the_plans_files_problems(tmp_path):
    rules = _rules_with(tmp_path, "bad.yaml")
    result = _cli("lint", str(rules), "--dialect", "duckdb")
    assert result.returncode == 1
    assert f"{rules / 'plans.yaml'}:4: events.0.start:" in result.stdout
    assert "not a rule file" not in result.stdout


def test_plans_load_writes_its_own_rows_and_refuses_a_bad_file(tmp_path):
    import sqlalchemy as sa

    from threshold_operators.warehouse.planned_events import replace_planned_events

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    engine = sa.create_engine(url)
    replace_planned_events(engine, "erp", [{"event_id": "x", "name": "x", "shop_id": "shop-01", "scope": "shop",
                                            "scope_value": "", "uplift": 2, "starts_at": NOW, "ends_at": NOW.replace(day=2),
                                            "updated_at": NOW}])
    engine.dispose()
    loaded = _cli("plans", "load", "--file", str(PLANS / "good.yaml"), "--warehouse", url)
    assert loaded.returncode == 0, loaded.stderr
    assert "4 row(s)" in loaded.stdout
    refused = _cli("plans", "load", "--file", str(PLANS / "bad.yaml"), "--warehouse", url)
    assert refused.returncode == 1
    assert f"{PLANS / 'bad.yaml'}:2: events.0.id:" in refused.stdout
    listed = _cli("plans", "list", "--warehouse", url)
    assert listed.returncode == 0, listed.stderr
    assert "5 row(s)" in listed.stdout  # the erp's row kept, the file's four unchanged by the refused load
    assert "erp" in listed.stdout and "SKU-INF-000003" in listed.stdout
