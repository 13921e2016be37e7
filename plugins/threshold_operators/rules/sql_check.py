"""Static checks of a rule's metric query, with sqlglot, before it ever reaches a warehouse.

The query is rendered (sandboxed Jinja, placeholders only), then parsed in each warehouse
dialect: exactly one statement, a SELECT, with nothing that writes anywhere in its tree (no
data-modifying CTE, ``SELECT INTO``, ``FOR UPDATE``); only tables of the warehouse schema; only
their columns; only functions of the allow-list (``rules.sql_functions``: pure functions, no
file readers, no other servers, no clock); and the output has what the engine reads: the
entity's key columns, ``bucket`` (a TIMESTAMPTZ) and every metric the rule names. Each problem
carries the SQL file and the line it is on.

``statement_problems`` runs the same structural checks on the statement the engine compiles
from a rule, just before it runs (``engine.compile``): a rule that reached the engine without
lint (a stale cache, a hand-built catalogue) is refused the same way.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from sqlglot import exp

from threshold_operators.engine.windows import scan_range_count
from threshold_operators.rules.model import Rule
from threshold_operators.rules.sql_functions import ALLOWED_FUNCTIONS
from threshold_operators.rules.sql_template import RenderContext, TemplateProblem, render


@cache
def _warehouse_schema() -> dict[str, dict[str, str]]:
    from sqlalchemy import DateTime, Integer, Numeric, SmallInteger, String, Text

    from threshold_operators.warehouse.schema import (
        LATEST_TABLE_NAMES,
        PLAN_TABLE_NAMES,
        TABLE_NAMES,
        metadata,
    )

    def type_of(t) -> str:
        for cls, name in ((DateTime, "TIMESTAMPTZ"), (SmallInteger, "SMALLINT"), (Integer, "INT"),
                          (Numeric, "DECIMAL(14, 2)"), (Text, "TEXT"), (String, "VARCHAR")):
            if isinstance(t, cls):
                return name
        return "VARCHAR"

    return {name: {c.name: type_of(c.type) for c in metadata.tables[name].columns}
            for name in (*TABLE_NAMES, *PLAN_TABLE_NAMES, *LATEST_TABLE_NAMES)}


def _line_of(text: str, needle: str) -> int:
    """The line of ``needle`` (a word; ``name(`` a function call) in ``text``, ignoring -- comments."""
    code = re.sub(r"--[^\n]*", lambda m: " " * len(m.group(0)), text)
    pattern = rf"\b{re.escape(needle[:-1])}\s*\(" if needle.endswith("(") else rf"\b{re.escape(needle)}\b"
    pattern = pattern.replace("\\ ", "\\s+")
    m = re.search(pattern, code, re.IGNORECASE) or re.search(pattern, text, re.IGNORECASE)
    return text.count("\n", 0, m.start()) + 1 if m else 1


# Nodes that write, change a setting or leave the query: refused anywhere in the tree.
_WRITES = tuple(getattr(exp, n) for n in (
    "DML", "DDL", "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "Command", "Copy",
    "TruncateTable", "Set", "Pragma", "Use", "Transaction", "Commit", "Rollback", "Into", "Lock", "LoadData",
    "Attach", "Detach", "Install", "Describe", "Kill", "Grant", "Revoke", "Analyze", "Summarize", "Cache",
    "Uncache", "Refresh", "Export", "Comment", "Declare", "Execute", "Show") if hasattr(exp, n))


def function_name(node) -> tuple[str, str]:
    """(allow-list key, the name as written) of a function node."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower(), str(node.name)
    written = node.sql_name() if hasattr(node, "sql_name") else node.key
    return node.key, written.lower()


def statement_problems(stmt, schema: dict, extra_tables: set[str] = frozenset()) -> list[tuple[str, str]]:
    """(what to look for in the source, message) for each reason ``stmt`` may not run:
    not a SELECT, a write anywhere inside, a table outside the warehouse schema (or in another
    schema / database), a function outside the allow-list."""
    if not isinstance(stmt, exp.Select | exp.SetOperation):
        return [("", f"a {stmt.key.upper()} statement; only a SELECT may be a metric query")]
    problems: list[tuple[str, str]] = []
    for node in stmt.walk():
        if isinstance(node, _WRITES):
            what = "SELECT INTO" if isinstance(node, exp.Into) else "FOR UPDATE / SHARE" if isinstance(node, exp.Lock) \
                else node.key.upper()
            needle = {"SELECT INTO": "INTO", "FOR UPDATE / SHARE": "FOR"}.get(what, what)
            problems.append((needle, f"a {what} inside the query; a metric query only reads"))
    ctes = {c.alias_or_name for c in stmt.find_all(exp.CTE)} | set(extra_tables)
    for table in stmt.find_all(exp.Table):
        if isinstance(table.this, exp.Func):
            continue  # a table function: checked with the other functions below
        name = table.name
        if table.args.get("db") or table.args.get("catalog"):
            problems.append((name, f"table {table.sql()!r} names a schema or database; a metric query reads "
                                   f"the warehouse's tables by their plain names"))
        elif name not in ctes and name not in schema:
            problems.append((name, f"table {name!r} is not in the warehouse schema (docs/warehouse.md)"))
    for node in stmt.find_all(exp.Func):
        key, written = function_name(node)
        if key not in ALLOWED_FUNCTIONS:
            problems.append((f"{written}(", f"function {written}() is not allowed in a metric query (only pure "
                                      f"functions: the allow-list is in docs/rules.md, 'Rule files are data')"))
    return list(dict.fromkeys(problems))


def _bucket_type_problem(stmt, schema: dict, dialect: str) -> str | None:
    """Why the output's ``bucket`` is not a TIMESTAMPTZ (None: it is, or sqlglot cannot tell)."""
    from sqlglot.optimizer.annotate_types import annotate_types

    try:
        typed = annotate_types(stmt, schema=schema, dialect=dialect)
    except Exception:  # noqa: BLE001 - typing is best effort; the structure was checked already
        return None
    for sel in typed.selects:
        if sel.alias_or_name == "bucket" and sel.type is not None:
            t = sel.type
            if t.this == exp.DataType.Type.UNKNOWN or t.this == exp.DataType.Type.TIMESTAMPTZ:
                return None
            return (f"bucket is a {t.sql(dialect)}, not a TIMESTAMPTZ: a timestamp without a time zone is "
                    f"ambiguous; CAST(... AS TIMESTAMPTZ) or use hour() / local_day()")
    return None


def check_query(rule: Rule, path: Path, template: str, dialects) -> tuple[tuple[str, ...], list[str]]:
    """(tables read, problems). No problems means the query is safe to compile and run."""
    import sqlglot
    from sqlglot.errors import OptimizeError, ParseError
    from sqlglot.optimizer.qualify import qualify

    problems: list[str] = []
    if rule.rolling:
        problems = _rolling_shape_problems(rule, path, template)
        if problems:
            return (), problems
    ctx = RenderContext(n_ranges=scan_range_count(rule), params=dict(rule.params))
    try:
        sql = render(template, ctx)
    except TemplateProblem as exc:
        m = re.match(r"line (\d+): (.*)", str(exc))
        if m:
            return (), [f"{path}:{m.group(1)}: query: {m.group(2)}"]
        named = re.search(r"param\('(\w+)'\)", str(exc))
        return (), [f"{path}:{_line_of(template, named.group(1)) if named else 1}: query: {exc}"]
    schema = _warehouse_schema()
    tables: set[str] = set()
    rollups: set[str] = set()
    for used in dict.fromkeys(ctx.rollups_used):
        found, problem = _rollup_columns(used)
        if problem:
            return (), [f"{path}:{_line_of(template, used)}: query: {problem}"]
        name, columns, read = found
        schema = {**schema, name: columns}
        rollups.add(name)
        tables |= set(read)
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
        found = statement_problems(stmt, schema, rollups)
        if found:
            problems.extend(f"{path}:{_line_of(template, needle) if needle else 1}: query: {msg}" for needle, msg in found)
            break
        ctes = {c.alias_or_name for c in stmt.find_all(exp.CTE)}
        tables |= {t.name for t in stmt.find_all(exp.Table) if t.name and t.name not in ctes
                   and t.name not in rollups and not isinstance(t.this, exp.Func)}
        try:
            qualified = qualify(stmt.copy(), schema=schema, dialect=dialect, validate_qualify_columns=True,
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
        bucket = _bucket_type_problem(qualified, schema, dialect)
        if bucket:
            problems.append(f"{path}:{_line_of(template, 'AS bucket')}: query: {bucket}")
            break
    if rule.rolling and not problems:
        problems += _event_field_problems(path, template, tables)
    # a latest-state table (inventory_latest) stands for its history: the extract gates and the
    # landed mark a rule waits on are the history's, which the same load writes
    from threshold_operators.warehouse.schema import LATEST_OF

    history = {latest: table for table, latest in LATEST_OF.items()}
    return tuple(sorted({history.get(t, t) for t in tables})), _merge_dialects(problems)


def _rollup_columns(path: str):
    """((rollup table, its columns and types, the tables its query reads), problem) of a query named by
    ``rollup()``: it must be a slice query (slice(), in_window(), no params) of the SQL folder."""
    from threshold_operators.engine.rollups import query_columns, read_query
    from threshold_operators.rules.sql_template import rollup_table

    try:
        template = read_query(path)
    except (OSError, FileNotFoundError) as exc:
        return None, str(exc)
    if "slice(" not in template or "in_window(" not in template or "param(" in template:
        return None, (f"rollup({path!r}): not a slice query (a rolling rule's kind: slice(), in_window(), no "
                      f"params)")
    try:
        keys, metrics, read = query_columns(template)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a problem of that query
        return None, f"rollup({path!r}): {type(exc).__name__}: {str(exc).splitlines()[0]}"
    columns = {**{k: "VARCHAR" for k in keys}, "bucket": "TIMESTAMPTZ", **{m: "DOUBLE" for m in metrics}}
    return (rollup_table(path), columns, read), None


# What a rolling rule's query may not use: it is computed slice by slice into a rollup, for any
# range of slices, so it cannot depend on the cycle's window or bucket anything but slices.
_NOT_IN_ROLLING = ("window_start", "window_end", "last_bucket", "hour(", "local_day(")


def _rolling_shape_problems(rule: Rule, path: Path, template: str) -> list[str]:
    out = []
    for needle in ("slice(", "in_window("):
        if needle not in template:
            out.append(f"{path}:1: query: a rolling rule (window: {rule.window}) needs a query that buckets by "
                       f"{needle[:-1]}() and bounds its scans by in_window() (docs/rules.md, rolling rules)")
    for needle in _NOT_IN_ROLLING:
        if needle in template:
            out.append(f"{path}:{_line_of(template, needle)}: query: {needle.rstrip('(')} cannot be used by a rolling "
                       f"rule's query (it is kept per 5-minute slice in a rollup, for any range of slices)")
    if rule.attributes:
        out.append(f"{path}:1: query: a rolling rule sums its metrics over the window; attributes "
                   f"({', '.join(rule.attributes)}) cannot be summed")
    return out


def _event_field_problems(path: Path, template: str, tables: set[str]) -> list[str]:
    """A rolling query's in_window() and slice() must be on a table's event time: the slices a load
    marks for the rollups (``warehouse.rollup_tables``) are slices of it."""
    from threshold_operators.warehouse.schema import TABLE_NAMES, table_spec

    events = {table_spec(t).event_field for t in tables if t in TABLE_NAMES}
    out = []
    for helper, arg in re.findall(r"\b(in_window|slice)\(\s*['\"]([^'\"]+)['\"]", template):
        column = arg.split(".")[-1]
        if column not in events:
            out.append(f"{path}:{_line_of(template, arg)}: query: {helper}('{arg}'): a rolling rule's slices are of "
                       f"a table's event time ({', '.join(sorted(e for e in events if e)) or 'none read'}), which "
                       f"loads mark for the rollups")
    return out


def _merge_dialects(problems: list[str]) -> list[str]:
    """One line per problem: "does not parse as duckdb / postgres SQL" instead of one per dialect."""
    merged: dict[str, list[str]] = {}
    for p in problems:
        m = re.search(r"does not parse as (\w+) SQL", p)
        key = p.replace(m.group(0), "does not parse as {} SQL") if m else p
        merged.setdefault(key, []).append(m.group(1) if m else "")
    return [k.replace("{}", " / ".join(d)) if "{}" in k else k for k, d in merged.items()]
