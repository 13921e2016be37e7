"""``--set KEY=VALUE``: change any field of a rule for one run, validated like the rule file.

Keys are dotted paths into the rule as written in YAML: ``for=2``, ``hold_for=12h``,
``min_volume.0.at_least=20``, ``params.stale_hours=36``, ``conditions.1.above=5``,
``conditions.0.baseline.periods=4``. ``condition.X`` is the rule's primary condition (the one its
alerts report), and ``condition.threshold`` its threshold, whichever of ``above`` / ``below`` it
has (``condition.threshold.red=3`` for one tier). Values are YAML: ``2``, ``1.5``, ``12h``,
``{yellow: 5, red: 8}``. A key that does not exist, or a value the rule model refuses, is an
``OverrideError`` naming it; nothing is changed.
"""

from __future__ import annotations

import dataclasses

import yaml
from pydantic import ValidationError


class OverrideError(ValueError):
    pass


def parse_setting(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise OverrideError(f"--set {text!r}: expected KEY=VALUE, e.g. condition.threshold=1.5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _path(rule, key: str) -> list:
    parts = key.split(".")
    if parts[0] == "condition":
        i = rule.conditions.index(rule.primary)
        rest = parts[1:]
        if rest[:1] == ["threshold"]:
            side = "above" if rule.primary.above is not None else "below"
            rest = [side, *rest[1:]]
        return ["conditions", i, *rest]
    return [int(p) if p.isdigit() else p for p in parts]


def apply_overrides(loaded, settings: list[str]):
    """A copy of the catalogue entry ``loaded`` with its rule changed by ``settings`` (KEY=VALUE)."""
    from threshold_operators.rules.model import Rule

    if not settings:
        return loaded
    data = loaded.rule.model_dump(by_alias=True, exclude_unset=False)
    for text in settings:
        key, value = parse_setting(text)
        path = _path(loaded.rule, key)
        node = data
        for j, part in enumerate(path):
            last = j == len(path) - 1
            if isinstance(node, list):
                if not isinstance(part, int) or not 0 <= part < len(node):
                    raise OverrideError(f"--set {key}: {'.'.join(map(str, path[:j]))} has no item {part}")
            elif not isinstance(node, dict) or part not in node:
                where = ".".join(map(str, path[:j])) or loaded.rule.id
                raise OverrideError(f"--set {key}: {where} has no field {part!r}")
            if last:
                node[part] = value
            else:
                node = node[part]
    try:
        rule = Rule.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise OverrideError(f"--set: the rule {loaded.rule.id} would be invalid: {loc}: {first['msg']}") from None
    return dataclasses.replace(loaded, rule=rule)
