"""Small rule files for the tests: one rule's head plus the fields under test, and the located
problems validation reports for it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from threshold_operators import located_yaml
from threshold_operators.rules.model import RuleFile


def rule_file(tmp_path: Path, head: str, fields: str) -> Path:
    """``sales.yaml`` in ``tmp_path``: ``head`` (a rule file up to its first rule's fields) and
    ``fields`` (more fields of that rule, dedented), indented under the rule."""
    path = tmp_path / "sales.yaml"
    path.write_text(head + textwrap.indent(textwrap.dedent(fields), "    "), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    """The problems validating ``path`` reports, each as ``line: field: message``."""
    with pytest.raises(located_yaml.ConfigFileError) as exc:
        located_yaml.validate(RuleFile, path)
    return [p.removeprefix(f"{path}:") for p in exc.value.problems]
