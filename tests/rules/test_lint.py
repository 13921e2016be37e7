"""Rule files: the shipped catalogue is clean, the golden bad files give the golden messages,
the published JSON Schema matches the model and accepts the shipped files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from threshold_operators.rules.catalogue import load_catalogue
from threshold_operators.rules.model import rule_file_json_schema

REPO = Path(__file__).resolve().parents[2]
BAD = Path(__file__).parent / "testdata" / "bad"
CATALOGUE_IDS = {  # the catalogue: the ids are part of the interface
    "sales.order_spike", "sales.order_drop", "inventory.stock_cover", "customer.logistics_stale",
    "customer.negative_review", "traffic.paid_cost_quality", "traffic.conversion_drop", "finance.refund_rate",
    "finance.payment_failure", "finance.complaint_spike", "compound.spike_low_stock",
}


def lint(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "threshold_operators.cli", "lint", *args], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "plugins")})


def test_the_shipped_catalogue_is_clean_in_both_dialects():
    result = lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no problems (duckdb, postgres)" in result.stdout
    catalogue = load_catalogue()
    assert set(catalogue.rules) >= CATALOGUE_IDS
    assert {r.rule.mode for r in catalogue.rules.values() if r.id in CATALOGUE_IDS} == {"live"}


def test_bad_files_give_every_problem_with_file_line_and_field():
    result = lint(str(BAD.relative_to(REPO)))
    assert result.returncode == 1
    got = [line.removeprefix(f"{BAD.relative_to(REPO)}/") for line in result.stdout.splitlines()]
    expected = (BAD / "expected.txt").read_text(encoding="utf-8").splitlines()
    assert got == expected
    assert "16 problem(s); 1 rule(s) valid" in result.stderr


def test_a_missing_path_is_a_usage_error():
    result = lint("no/such/folder")
    assert result.returncode == 2 and "no such file or folder" in result.stderr


def test_the_published_json_schema_is_the_models():
    published = json.loads((REPO / "docs" / "rules.schema.json").read_text(encoding="utf-8"))
    assert published == rule_file_json_schema(), "regenerate: storefence rules schema > docs/rules.schema.json"


def test_the_json_schema_accepts_the_shipped_rule_files():
    import jsonschema

    schema = rule_file_json_schema()
    from threshold_operators.rules.model import DOMAINS

    for path in [REPO / "include" / "rules" / f"{d}.yaml" for d in DOMAINS]:
        jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema)


def test_the_json_schema_rejects_an_unknown_field():
    import jsonschema
    import pytest

    doc = yaml.safe_load((REPO / "include" / "rules" / "finance.yaml").read_text(encoding="utf-8"))
    doc["rules"][0]["thresold"] = 3
    with pytest.raises(jsonschema.ValidationError, match="thresold"):
        jsonschema.validate(doc, rule_file_json_schema())


def _parse_in_a_fresh_process(env: dict) -> tuple[bool, str]:
    """Parse the sales DAG file in a new interpreter: (was sqlglot imported, import error if any)."""
    code = ("import sys, runpy\n"
            "try:\n    runpy.run_path('dags/storefence_alerts_sales.py'); err = ''\n"
            "except Exception as exc:\n    err = str(exc)\n"
            "print('SQLGLOT=%s' % ('sqlglot' in sys.modules)); print('ERR=' + err.replace(chr(10), ' | '))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO / "plugins"), **env})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return lines["SQLGLOT"] == "True", lines["ERR"]


def test_dag_parsing_reuses_the_validated_catalogue_until_a_file_changes(tmp_path):
    import shutil

    rules, sql = tmp_path / "rules", tmp_path / "sql"
    shutil.copytree(REPO / "include" / "rules", rules)
    shutil.copytree(REPO / "include" / "sql", sql)
    env = {"STOREFENCE_RULES_DIR": str(rules), "STOREFENCE_SQL_DIR": str(sql),
           "STOREFENCE_CACHE_DIR": str(Path(os.environ["AIRFLOW_HOME"]) / f"cache-{tmp_path.name}")}  # under AIRFLOW_HOME
    assert _parse_in_a_fresh_process(env) == (True, "")  # first parse: validated (sqlglot)
    assert _parse_in_a_fresh_process(env) == (False, "")  # then: from the cache, no SQL parsing
    query = sql / "sales" / "orders_by_sku_hour.sql"
    query.write_text(query.read_text(encoding="utf-8").replace("DISTINCT i.order_id", "DISTINCT i.order_no"),
                     encoding="utf-8")
    validated, error = _parse_in_a_fresh_process(env)  # a changed query is validated again
    assert validated and "orders_by_sku_hour.sql:5: query: Unknown column: order_no" in error


def test_every_rule_owner_is_a_team_of_the_routing_file(tmp_path):
    import shutil

    shutil.copytree(REPO / "include", tmp_path / "include")
    finance = tmp_path / "include" / "rules" / "finance.yaml"
    text = finance.read_text(encoding="utf-8")
    finance.write_text(text.replace("    owner: tech\n", "    owner: techh\n", 1), encoding="utf-8")
    line = text.splitlines().index("    owner: tech") + 1
    result = lint(str(tmp_path / "include"))
    assert result.returncode == 1
    assert f"finance.yaml:{line}: owner: 'techh' is not a team of routing.yaml" in result.stdout
