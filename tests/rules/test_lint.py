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
    for path in sorted((REPO / "include" / "rules").glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema)


def test_the_json_schema_rejects_an_unknown_field():
    import jsonschema
    import pytest

    doc = yaml.safe_load((REPO / "include" / "rules" / "finance.yaml").read_text(encoding="utf-8"))
    doc["rules"][0]["thresold"] = 3
    with pytest.raises(jsonschema.ValidationError, match="thresold"):
        jsonschema.validate(doc, rule_file_json_schema())
