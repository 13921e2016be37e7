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
- ``{{ local_day('o.created_at', 's.timezone') }}``: the bucket of a daily metric: the start of
  the shop-local day, as a UTC timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import jinja2


class TemplateProblem(ValueError):
    pass


@dataclass
class RenderContext:
    """What a template may use; records what it did use."""

    n_ranges: int = 1
    prefix: str = ""  # placeholder prefix, so a compound rule can embed another rule's query
    params: dict = field(default_factory=dict)
    used_params: set[str] = field(default_factory=set)
    windowed: bool = False

    def in_window(self, column: str) -> str:
        self.windowed = True
        p = self.prefix
        parts = [f"({column} >= :{p}scan_{i}_start AND {column} < :{p}scan_{i}_end)" for i in range(self.n_ranges)]
        return "(" + " OR ".join(parts) + ")"

    def param(self, name: str) -> str:
        if name not in self.params:
            known = ", ".join(sorted(self.params)) or "none"
            raise TemplateProblem(f"param({name!r}) is not in the rule's params (it has: {known})")
        self.used_params.add(name)
        return f":{self.prefix}p_{name}"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


def render(template_text: str, ctx: RenderContext) -> str:
    """The SQL of a metric query for ``ctx``; raises TemplateProblem with the template's message."""
    try:
        template = _environment().from_string(template_text)
        return template.render(
            in_window=ctx.in_window,
            param=ctx.param,
            hour=lambda col: f"date_trunc('hour', {col})",
            local_day=lambda col, tz: f"(CAST(date_trunc('day', {col} AT TIME ZONE {tz}) AS TIMESTAMP) AT TIME ZONE {tz})",
            window_start=f":{ctx.prefix}window_start",
            window_end=f":{ctx.prefix}window_end",
        ).rstrip().rstrip(";").rstrip()
    except TemplateProblem:
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"line {exc.lineno}: template syntax: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateProblem(f"template: {exc.message}") from None
