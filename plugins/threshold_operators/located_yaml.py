"""YAML files whose problems are reported with file, line and field.

``load(path)`` returns the parsed document and the line of every mapping key and list item;
``validate(model, path)`` runs a pydantic model over it and turns every validation error into
``file:line: field: message``, all of them at once (``ConfigFileError``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigFileError(ValueError):
    """One or more problems in configuration files; ``problems`` lists them, one a line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _scalar(node) -> Any:
    """A scalar node's value, resolved as yaml.safe_load would (ints, floats, dates, strings)."""
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _walk(node, path: tuple, lines: dict[tuple, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = key_node.value
            out[key] = _walk(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1  # the key's line, not its value's
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return _scalar(node)


def load(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """(document, {path-in-document: line}). Raises ConfigFileError on unreadable YAML."""
    path = Path(path)
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise ConfigFileError([f"{path}:{line}: not valid YAML: {exc.problem}"]) from None
    except OSError as exc:
        raise ConfigFileError([f"{path}: cannot be read: {exc.strerror}"]) from None
    lines: dict[tuple, int] = {}
    return (_walk(node, (), lines) if node is not None else None), lines


def line_of(lines: dict[tuple, int], loc: tuple) -> int:
    """The line of the deepest part of ``loc`` that the file has (a missing field: its parent)."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 0


def validate(model, path: str | Path):
    """Parse ``path`` into ``model`` (pydantic); every problem reported with file and line."""
    from pydantic import ValidationError

    data, lines = load(path)
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(p) for p in loc) or "(document)"
            msg = "unknown field (not part of the format; check the spelling)" if err["type"] == "extra_forbidden" \
                else err["msg"].removeprefix("Value error, ")
            problems.append(f"{path}:{line_of(lines, loc)}: {field}: {msg}")
        raise ConfigFileError(problems) from None
