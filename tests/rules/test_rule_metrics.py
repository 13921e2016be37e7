"""``metrics:`` of a rule: how messages say a metric (label, unit, format), validated strictly with
file, line and field; every catalogue rule says each of its conditions' metrics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.rules.rule_files import problems, rule_file
from threshold_operators import located_yaml
from threshold_operators.rules.catalogue import load_catalogue
from threshold_operators.rules.model import Rule, RuleFile, rule_file_json_schema

HEAD = """\
domain: sales
rules:
  - id: sales.t
    name: {zh: 测试, en: Test}
    description: Orders above 5.
    query: sales/orders_by_sku_hour.sql
    entity: shop
    conditions: [{metric: orders, above: 5}]
    min_volume: [{metric: visitors, at_least: 1}]
    owner: operations
    runbook: Check the shop.
"""


def _file(tmp_path: Path, texts: str) -> Path:
    return rule_file(tmp_path, HEAD, texts)


_problems = problems


def test_a_metric_has_a_label_per_language_a_unit_and_a_format(tmp_path):
    rule = located_yaml.validate(RuleFile, _file(tmp_path, """\
        metrics:
          orders: {label: {zh: 订单, en: orders}, unit: {zh: 单}, format: int}
          visitors: {label: {zh: 访客, en: visitors}, format: int}
    """)).rules[0]
    spec = rule.metric_label("orders")
    assert (spec.label.in_language("zh"), spec.unit.in_language("zh"), spec.unit.in_language("en"), spec.format) \
        == ("订单", "单", "", "int")
    assert rule.metric_label("visitors").unit is None and rule.metric_label("conversion") is None
    assert rule.metrics == ["orders", "visitors"]  # the columns the rule reads, unchanged
    assert Rule.model_validate(rule.model_dump(mode="json", by_alias=True, exclude_defaults=True)) == rule
    assert Rule.model_validate(rule.model_dump(by_alias=True, exclude_unset=False)) == rule  # --set overrides


def test_a_wrong_metrics_entry_is_refused_at_its_line(tmp_path):
    path = _file(tmp_path, """\
        metrics:
          orders: {label: {zh: 订单}, unit: {zh: 单}, format: 3f, digits: 1}
    """)
    assert _problems(path) == [
        "13: rules.0.metrics.orders.label.en: Field required",
        "13: rules.0.metrics.orders.format: Input should be 'int', '1f', '2f', 'percent' or 'money'",
        "13: rules.0.metrics.orders.digits: unknown field (not part of the format; check the spelling)"]
    path = _file(tmp_path, """\
        metrics:
          order: {label: {zh: 订单, en: orders}, format: int}
    """)
    [problem] = _problems(path)
    assert problem.startswith("12: rules.0.metrics: ") and "'order' is not a metric of the rule" in problem
    path = _file(tmp_path, """\
        metrics:
          orders: {label: {zh: 订单, en: orders}, unit: {zh: 天, en: days}, format: percent}
    """)
    [problem] = _problems(path)
    assert problem.startswith("13: rules.0.metrics.orders") and "percent" in problem


def test_the_json_schema_knows_metrics():
    import jsonschema

    schema = rule_file_json_schema()
    doc = yaml.safe_load(HEAD)
    good = {"orders": {"label": {"zh": "订单", "en": "orders"}, "unit": {"zh": "单"}, "format": "int"}}
    jsonschema.validate({**doc, "rules": [{**doc["rules"][0], "metrics": good}]}, schema)
    for bad in ({"orders": {"label": {"zh": "订单", "en": "orders"}, "format": "3f"}},
                {"orders": {"label": {"zh": "订单"}, "format": "int"}},
                {"orders": {"label": {"zh": "订单", "en": "orders"}, "format": "int", "digits": 1}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**doc, "rules": [{**doc["rules"][0], "metrics": bad}]}, schema)


def test_every_catalogue_rule_says_each_metric_of_its_conditions():
    """Labelled in both languages (the zh one Chinese, the en one not), with a format."""
    cjk = re.compile(r"[\u4e00-\u9fff]")
    catalogue = load_catalogue().rules
    assert len(catalogue) == 17
    for rid, loaded in catalogue.items():
        rule = loaded.rule
        for metric in (c.metric for c in rule.conditions if c.metric):
            spec = rule.metric_label(metric)
            assert spec is not None, f"{rid}: metrics: has no entry for {metric}"
            assert cjk.search(spec.label.zh) and not cjk.search(spec.label.en), (rid, metric)
            if spec.unit is not None and spec.unit.zh != "%":
                assert cjk.search(spec.unit.zh) and not cjk.search(spec.unit.en), (rid, metric)
