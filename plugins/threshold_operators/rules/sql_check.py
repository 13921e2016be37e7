"""Static checks of a rule's metric query, with sqlglot, before it ever reaches a warehouse.

The query is rendered (Jinja, placeholders only), then parsed in each warehouse dialect:
exactly one statement, a SELECT; only tables of the warehouse schema; only their columns;
and the output has what the engine reads: the entity's key columns, ``bucket`` and every
metric the rule names. Each problem carries the SQL file and the line it is on.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from threshold_operators.engine.windows import scan_range_count
from threshold_operators.rules.model import Rule
from threshold_operators.rules.sql_template import RenderContext, TemplateProblem, render


@cache
def _warehouse_schema() -> dict[str, dict[str, str]]:
    from sqlalchemy import DateTime, Integer, Numeric, SmallInteger, String, Text

    from threshold_operators.warehouse.schema import TABLE_NAMES, metadata

    def type_of(t) -> str:
        for cls, name in ((DateTime, "TIMESTAMPTZ"), (SmallInteger, "SMALLINT"), (Integer, "INT"),
                          (Numeric, "DECIMAL(14, 2)"), (Text, "TEXT"), (String, "VARCHAR")):
            if isinstance(t, cls):
                return name
        return "VARCHAR"

    return {name: {c.name: type_of(c.type) for c in metadata.tables[name].columns} for name in TABLE_NAMES}


def _line_of(text: str, needle: str) -> int:
    m = re.search(rf"\b{re.escape(needle)}\b", text)
    return text.count("\n", 0, m.start()) + 1 if m else 1


def check_query(rule: Rule, path: Path, template: str, dialects) -> tuple[tuple[str, ...], list[str]]:
    """(tables read, problems). No problems means the query is safe to compile and run."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import OptimizeError, ParseError
    from sqlglot.optimizer.qualify import qualify

    problems: list[str] = []
    try:
        sql = render(template, RenderContext(n_ranges=scan_range_count(rule), params=dict(rule.params)))
    except TemplateProblem as exc:
        m = re.match(r"line (\d+): (.*)", str(exc))
        if m:
            return (), [f"{path}:{m.group(1)}: query: {m.group(2)}"]
        named = re.search(r"param\('(\w+)'\)", str(exc))
        return (), [f"{path}:{_line_of(template, named.group(1)) if named else 1}: query: {exc}"]
    schema = _warehouse_schema()
    tables: set[str] = set()
    for dialect in dialects:
        try:
            statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
        except ParseError as exc:
            err = exc.errors[0] if exc.errors else {}
            problems.append(f"{path}:{err.get('line', 1)}: query: does not parse as {dialect} SQL: "
                            f"{err.get('description', str(exc).splitlines()[0])}")
            continue
        if len(statements) != 1:
            problems.append(f"{path}:1: query: {len(statements)} statements; a metric query is one SELECT")
            continue
        stmt = statements[0]
        if not isinstance(stmt, exp.Select | exp.SetOperation):
            problems.append(f"{path}:1: query: a {stmt.key.upper()} statement; only a SELECT may be a metric query")
            continue
        ctes = {c.alias_or_name for c in stmt.find_all(exp.CTE)}
        for table in stmt.find_all(exp.Table):
            name = table.name
            if not name or name in ctes or isinstance(table.this, exp.Anonymous | exp.Func):
                continue
            if name not in schema:
                problems.append(f"{path}:{_line_of(template, name)}: query: table {name!r} is not in the "
                                f"warehouse schema (docs/warehouse.md)")
            else:
                tables.add(name)
        if problems:
            break
        try:
            qualify(stmt.copy(), schema=schema, dialect=dialect, validate_qualify_columns=True,
                    quote_identifiers=False, identify=False)
        except OptimizeError as exc:
            msg = str(exc).splitlines()[0]
            m = (re.search(r"Column '\"?(\w+)\"?'", msg) or re.search(r"[Uu]nknown column:? '?(\w+)", msg)
                 or re.search(r"'(\w+)'", msg))
            problems.append(f"{path}:{_line_of(template, m.group(1)) if m else 1}: query: {msg}")
            break
        outputs = set(stmt.named_selects)
        missing = [c for c in (*rule.keys, "bucket", *rule.metrics, *rule.attributes) if c not in outputs]
        if missing:
            problems.append(f"{path}:1: query: the output lacks {', '.join(missing)} (entity {rule.entity} needs "
                            f"{', '.join(rule.keys)}; then bucket; metrics {', '.join(rule.metrics)})")
            break
    return tuple(sorted(tables)), _merge_dialects(problems)


def _merge_dialects(problems: list[str]) -> list[str]:
    """One line per problem: "does not parse as duckdb / postgres SQL" instead of one per dialect."""
    merged: dict[str, list[str]] = {}
    for p in problems:
        m = re.search(r"does not parse as (\w+) SQL", p)
        key = p.replace(m.group(0), "does not parse as {} SQL") if m else p
        merged.setdefault(key, []).append(m.group(1) if m else "")
    return [k.replace("{}", " / ".join(d)) if "{}" in k else k for k, d in merged.items()]
