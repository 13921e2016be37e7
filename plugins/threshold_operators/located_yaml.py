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


MAX_NODES = 200_000  # a rule file has a few thousand; an alias bomb ("billion laughs") has billions


class _AliasProblem(ValueError):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


def _walk(node, path: tuple, lines: dict[tuple, int], active: set[int], budget: list[int]) -> Any:
    """The document under ``node``. ``active``: the nodes being expanded (an alias back to one of
    them is a cycle); ``budget``: nodes left to expand (aliases repeat a node wherever they point)."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _AliasProblem(node.start_mark.line + 1, f"more than {MAX_NODES:,} values once aliases are expanded "
                                                      f"(an alias bomb?)")
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        if id(node) in active:
            raise _AliasProblem(node.start_mark.line + 1, "a recursive alias (an anchor used inside itself)")
        active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                out = {}
                for key_node, value_node in node.value:
                    if not isinstance(key_node, yaml.ScalarNode):
                        raise _AliasProblem(key_node.start_mark.line + 1, "a mapping key must be a plain value")
                    key = key_node.value
                    out[key] = _walk(value_node, (*path, key), lines, active, budget)
                    lines[(*path, key)] = key_node.start_mark.line + 1  # the key's line, not its value's
                return out
            return [_walk(item, (*path, i), lines, active, budget) for i, item in enumerate(node.value)]
        finally:
            active.discard(id(node))
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
    if node is None:
        return None, lines
    try:
        return _walk(node, (), lines, set(), [MAX_NODES]), lines
    except _AliasProblem as exc:
        raise ConfigFileError([f"{path}:{exc.line}: not valid here: {exc}"]) from None


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
