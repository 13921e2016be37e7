"""Metric queries: Jinja templates that render to SQL with bound parameters only.

A metric query (``include/sql/<domain>/<name>.sql``) is one SELECT returning the rule's entity
key columns, a ``bucket`` column (the start of the hour, or of the shop-local day, as a UTC
timestamp) and one column per metric. Values never appear in the SQL text: the template
calls helpers that render ``:name`` placeholders, and the engine binds the values.

Helpers available in a template:

- ``{{ in_window('o.created_at') }}``: the time ranges the cycle needs (the evaluated window
  plus the history its baselines read), as a predicate on a timestamp column. Every fact table
  scan must be bounded by it (or by ``window_end``): that keeps a cycle's cost independent of
  the length of history.
- ``{{ window_start }}`` / ``{{ window_end }}``: the evaluated window (UTC, end exclusive).
- ``{{ param('stale_hours') }}``: a value from the rule's ``params``.
- ``{{ hour('o.created_at') }}``: the bucket of an hourly metric.
- ``{{ slice('o.created_at') }}``: the 5-minute slice of a rolling rule's metric (``window:``);
  such a query returns additive metrics (counts, sums) per slice, which the engine keeps in a
  rollup and sums over the window.
- ``{{ rollup('sales/orders_by_sku_slice.sql') }}``: the 5-minute slices of another query (one a
  rolling rule would read), from its rollup, as a subquery: every slice of the 35 days before
  the window's end. A current-state rule (stock now) reads its sales rate from it instead of
  scanning order lines every 5 minutes.
- ``{{ last_bucket }}``: the last bucket the cycle evaluates (the window's end minus the grain):
  the bucket of a current-state metric (stock now).
- ``{{ local_day('o.created_at', 's.timezone') }}``: the bucket of a daily metric: the start of
  the shop-local day, as a UTC timestamp.

A template is data, not code: it is rendered in Jinja's immutable sandbox, sees only these
helpers and values (no filters, no globals, no attribute of anything: ``x.y`` and ``x['y']``
are refused; no loops, macros, includes or imports), and a helper's arguments must be column references (``o.created_at``) or param
names: a helper never pastes arbitrary text into the SQL. A refused construct is a
``TemplateProblem`` naming the template's line (a lint problem at file:line).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

COLUMN_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
PARAM_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MAX_SQL_CHARS = 200_000  # a rendered metric query is a few kB; more is a template expanding itself


ROLLUP_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*\.sql$")
ROLLUP_READ_DAYS = 35  # what rollup() gives a query: the slices of the 35 days before the window's end


class TemplateProblem(ValueError):
    pass


def rollup_table(path: str, params: dict | None = None) -> str:
    """``rollup_<query path as an identifier>`` (and a hash of the params when a rule has some)."""
    import hashlib

    stem = re.sub(r"[^a-z0-9_]", "_", path.lower().removesuffix(".sql"))
    name = f"rollup_{stem}"
    if params:
        name += "_" + hashlib.sha256(repr(sorted(params.items())).encode()).hexdigest()[:8]
    if len(name) > 63:
        name = name[:54] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


def _column(helper: str, value) -> str:
    if not isinstance(value, str) or not COLUMN_REF.match(value):
        raise TemplateProblem(f"{helper}({value!r}): the argument must be a column reference such as 'o.created_at'")
    return value


@dataclass
class RenderContext:
    """What a template may use; records what it did use."""

    n_ranges: int = 1
    prefix: str = ""  # placeholder prefix, so a compound rule can embed another rule's query
    params: dict = field(default_factory=dict)
    used_params: set[str] = field(default_factory=set)
    windowed: bool = False
    rollups_used: list[str] = field(default_factory=list)
    rollup_sql: object = None  # path -> SQL of the subquery (None: the rollup table, see ``rollup``)

    def in_window(self, column: str) -> str:
        column = _column("in_window", column)
        self.windowed = True
        p = self.prefix
        parts = [f"({column} >= :{p}scan_{i}_start AND {column} < :{p}scan_{i}_end)" for i in range(self.n_ranges)]
        return "(" + " OR ".join(parts) + ")"

    def rollup(self, path: str) -> str:
        if not isinstance(path, str) or not ROLLUP_PATH.match(path) or ".." in path.split("/"):
            raise TemplateProblem(f"rollup({path!r}): the argument is a query path inside the SQL folder, such as "
                                  f"'sales/orders_by_sku_slice.sql'")
        self.rollups_used.append(path)
        if self.rollup_sql is not None:
            return self.rollup_sql(path)
        table = rollup_table(path)
        p = self.prefix
        return (f"(SELECT * FROM {table} WHERE bucket >= CAST(:{p}window_end AS TIMESTAMPTZ) - INTERVAL "
                f"'{ROLLUP_READ_DAYS} days' AND bucket < CAST(:{p}window_end AS TIMESTAMPTZ))")

    def param(self, name: str) -> str:
        if not isinstance(name, str) or not PARAM_NAME.match(name):
            raise TemplateProblem(f"param({name!r}): a param name is a lower-case identifier")
        if name not in self.params:
            known = ", ".join(sorted(self.params)) or "none"
            raise TemplateProblem(f"param({name!r}) is not in the rule's params (it has: {known})")
        self.used_params.add(name)
        return f":{self.prefix}p_{name}"


def _hour(column: str) -> str:
    return f"date_trunc('hour', {_column('hour', column)})"


def _slice(column: str) -> str:
    col = _column("slice", column)
    return (f"(date_trunc('hour', {col}) + INTERVAL '5 minutes' * "
            f"CAST(FLOOR(EXTRACT(MINUTE FROM {col}) / 5) AS INTEGER))")


def _local_day(column: str, tz: str) -> str:
    col, tz = _column("local_day", column), _column("local_day", tz)
    return f"(CAST(date_trunc('day', {col} AT TIME ZONE {tz}) AS TIMESTAMP) AT TIME ZONE {tz})"


class _Helper:
    """A helper as the template sees it: something to call that returns a string, and nothing
    else (no attributes, so no way from it to a function's globals or a bound method's object)."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, *args):
        return str(self._fn(*args))


class _RuleSandbox(ImmutableSandboxedEnvironment):
    """No attribute or item of anything, and no operator that could build a huge value."""

    intercepted_binops = frozenset(["*", "**", "+"])

    def is_safe_attribute(self, obj, attr, value) -> bool:
        return False

    def getitem(self, obj, argument):
        return self.undefined(obj=obj, name=argument, exc=jinja2.exceptions.SecurityError,
                              hint=f"access to {argument!r} of a value is not allowed in a metric query")

    def is_safe_callable(self, obj) -> bool:
        return isinstance(obj, _Helper)

    def call_binop(self, context, operator, left, right):
        for v in (left, right):
            if not isinstance(v, int | float) or isinstance(v, bool):
                if operator == "+" and isinstance(left, str) and isinstance(right, str) \
                        and len(left) + len(right) <= MAX_SQL_CHARS:
                    return left + right
                raise jinja2.exceptions.SecurityError(f"the operator {operator} applies to numbers only here")
        if operator == "**" and abs(right) > 64:
            raise jinja2.exceptions.SecurityError("an exponent above 64")
        return self.binop_table[operator](left, right)


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = _RuleSandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.globals.clear()  # range, dict, lipsum, cycler, joiner, namespace
    env.filters.clear()
    env.tests.clear()
    return env


# Statements a metric query may not use: loops and macros (a template that runs for ever),
# includes, imports and inheritance (other files).
_REFUSED_STATEMENTS = (jinja2.nodes.For, jinja2.nodes.Macro, jinja2.nodes.CallBlock, jinja2.nodes.Include,
                       jinja2.nodes.Import, jinja2.nodes.FromImport, jinja2.nodes.Extends, jinja2.nodes.Block)


def _template_line(tb) -> int | None:
    """The template line a rendering error was raised on (Jinja rewrites its traceback)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@lru_cache(maxsize=512)
def _checked_template(template_text: str):
    """The sandbox's compiled template of a text that holds none of the refused statements; kept,
    since a cycle renders the same few templates again and again (a refusal is not kept)."""
    env = _environment()
    for node in env.parse(template_text).find_all(_REFUSED_STATEMENTS):
        raise TemplateProblem(f"line {node.lineno}: template: {{% {type(node).__name__.lower()} %}} is not "
                              f"allowed in a metric query (no loops, macros, includes or imports)")
    return env.from_string(template_text)


def render(template_text: str, ctx: RenderContext) -> str:
    """The SQL of a metric query for ``ctx``; raises TemplateProblem with the template's message."""
    try:
        template = _checked_template(template_text)
        chunks, size = [], 0
        for chunk in template.generate(
            in_window=_Helper(ctx.in_window),
            param=_Helper(ctx.param),
            hour=_Helper(_hour),
            slice=_Helper(_slice),
            rollup=_Helper(ctx.rollup),
            local_day=_Helper(_local_day),
            window_start=f":{ctx.prefix}window_start",
            window_end=f":{ctx.prefix}window_end",
            last_bucket=f":{ctx.prefix}last_bucket",
        ):
            size += len(chunk)
            if size > MAX_SQL_CHARS:  # stop a template that expands itself before it fills memory
                raise TemplateProblem(f"line 1: template: renders more than {MAX_SQL_CHARS:,} characters")
            chunks.append(chunk)
        sql = "".join(chunks).rstrip().rstrip(";").rstrip()
    except TemplateProblem as exc:
        line = _template_line(sys.exc_info()[2])
        if line and "not in the rule's params" not in str(exc):
            raise TemplateProblem(f"line {line}: {exc}") from None
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"line {exc.lineno}: template syntax: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        line = _template_line(sys.exc_info()[2]) or 1
        raise TemplateProblem(f"line {line}: refused by the template sandbox: {exc} (a metric query is data: "
                              f"only the helpers and values of docs/rules.md)") from None
    except jinja2.UndefinedError as exc:
        line = _template_line(sys.exc_info()[2])
        raise TemplateProblem(f"{f'line {line}: ' if line else ''}template: {exc.message}") from None
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, RecursionError, MemoryError) as exc:
        line = _template_line(sys.exc_info()[2]) or 1
        raise TemplateProblem(f"line {line}: template: {type(exc).__name__}: {exc}") from None
    return sql
