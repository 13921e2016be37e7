"""A rule's runbook and description: one string (both languages, as before) or ``{zh, en}``; a
language missing is refused with file, line and field; the catalogue writes every runbook and
description in both."""

from __future__ import annotations

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
    query: sales/orders_by_sku_hour.sql
    entity: shop
    conditions: [{metric: orders, above: 5}]
    owner: operations
"""


def _file(tmp_path: Path, texts: str) -> Path:
    return rule_file(tmp_path, HEAD, texts)


_problems = problems


def test_a_string_runbook_and_description_are_both_languages(tmp_path):
    rule = located_yaml.validate(RuleFile, _file(tmp_path, """\
        description: Orders above 5.
        runbook: Check the shop.
    """)).rules[0]
    assert (rule.runbook_in("zh"), rule.runbook_in("en")) == ("Check the shop.", "Check the shop.")
    assert rule.description_in("zh") == rule.description_in("en") == "Orders above 5."


def test_zh_and_en_runbook_and_description_are_each_their_language(tmp_path):
    rule = located_yaml.validate(RuleFile, _file(tmp_path, """\
        description:
          zh: 订单超过 5。
          en: Orders above 5.
        runbook:
          zh: 检查店铺。
          en: >-
            Check the
            shop.
    """)).rules[0]
    assert (rule.runbook_in("zh"), rule.runbook_in("en")) == ("检查店铺。", "Check the shop.")
    assert (rule.description_in("zh"), rule.description_in("en")) == ("订单超过 5。", "Orders above 5.")
    assert rule.runbook_in(None) == "检查店铺。"  # Chinese by default


def test_a_language_missing_or_empty_is_refused_at_its_line(tmp_path):
    path = _file(tmp_path, """\
        description: {en: Orders above 5.}
        runbook:
          zh: 检查店铺。
    """)
    assert _problems(path) == ["9: rules.0.description.zh: Field required",
                               "10: rules.0.runbook.en: Field required"]
    path = _file(tmp_path, """\
        description: ""
        runbook: {zh: 检查店铺。, en: "", fr: Vérifier}
    """)
    assert _problems(path) == [
        "9: rules.0.description: String should have at least 1 character",
        "10: rules.0.runbook.en: String should have at least 1 character",
        "10: rules.0.runbook.fr: unknown field (not part of the format; check the spelling)"]
    path = _file(tmp_path, """\
        description: [Orders above 5.]
        runbook:
          zh: 检查店铺。
          en: Check the shop.
    """)
    assert _problems(path) == ["9: rules.0.description: give a text, or one text per language: {zh: ..., en: ...}"]


def test_the_json_schema_takes_a_string_or_both_languages():
    import jsonschema

    schema = rule_file_json_schema()
    doc = yaml.safe_load(HEAD)
    for texts in ({"description": "d", "runbook": "r"}, {"description": "d", "runbook": {"zh": "处理", "en": "do"}}):
        jsonschema.validate({**doc, "rules": [{**doc["rules"][0], **texts}]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**doc, "rules": [{**doc["rules"][0], "description": "d", "runbook": {"zh": "处理"}}]},
                            schema)


def test_a_rule_round_trips_through_its_dump():
    """The catalogue's cache stores ``model_dump`` and validates it again."""
    spec = {**yaml.safe_load(HEAD)["rules"][0], "description": "d", "runbook": {"zh": "处理", "en": "do"}}
    rule = Rule.model_validate(spec)
    assert Rule.model_validate(rule.model_dump(mode="json", by_alias=True, exclude_defaults=True)) == rule


@pytest.mark.parametrize("field", ["description", "runbook"])
@pytest.mark.parametrize("rule_id", sorted(load_catalogue().rules))
def test_every_catalogue_description_and_runbook_is_written_in_both_languages(rule_id, field):
    """A Chinese channel or alerts page gets no English: each text is {zh, en}, and the zh one is Chinese."""
    import re

    rule = load_catalogue().rules[rule_id].rule
    text = getattr(rule, field)
    assert text.zh != text.en, f"{rule_id}: one {field} for both languages"
    assert re.search(r"[\u4e00-\u9fff]", text.zh) and not re.search(r"[\u4e00-\u9fff]", text.en), rule_id
    assert not re.search(r"[A-Za-z]{3,} [A-Za-z]{3,} [A-Za-z]{3,}", text.zh), f"{rule_id}: English in the zh {field}"
    assert (getattr(rule, f"{field}_in")("zh"), getattr(rule, f"{field}_in")("en")) == (text.zh, text.en)
