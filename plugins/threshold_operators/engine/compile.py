"""Compile a rule into one SQL statement the warehouse evaluates.

The statement wraps the rule's metric query in CTEs:

    m        the metric query, reading only the cycle's scan ranges
    cur      the buckets evaluated (plus the lead-in persistence and the recovery hold need);
             with ``no_data: zero|alert`` a grid of every known entity x every hour, so an
             entity that went silent is seen
    b<i>     the baseline of condition i: the same entity's history at fixed offsets, or over
             a trailing window (mean or median, with the number of points found)
    plan, b<i>_planned   during a planned event (planned_events), the baseline times the plan's
             factor for the entity and bucket (``Rule.plans``; docs/rules.md, "Planned events")
    r<j>_*   a referenced rule's own pipeline (compound rules), over the entities of ``cur`` only
             (``ask<j>x<k>``): a breach of another entity would join no row
    scored   per condition: the compared value (value, ratio, percent change, delta) and the
             tier it reaches; the volume guard; the combined severity level; the recovery hold

and returns only the rows that breach (``level > 0``) or are held between the recover and
breach thresholds (``hold = 1``): a few rows per cycle, never the fact rows. Thresholds,
offsets and windows are bound parameters; identifiers come from the validated rule only, match
the one identifier pattern (``rules.model.IDENTIFIER``) and are quoted. The compiled statement
is parsed before it is handed out (``rules.sql_check.statement_problems``, both dialects):
exactly one SELECT, nothing that writes, only warehouse tables and allow-listed functions, or
the rule is refused (``RuleRefused``) and nothing runs.

The SQL is plain enough for DuckDB and PostgreSQL alike (tested on both) and uses nothing
another SQLAlchemy warehouse could not offer (CTEs, VALUES, generate_series for the no-data grid).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property, lru_cache
from pathlib import Path

from threshold_operators.engine.windows import baseline_offsets, history_offsets, plan_cycle, scan_range_count
from threshold_operators.rules.model import IDENTIFIER, SEVERITIES, Condition, Rule
from threshold_operators.rules.sql_template import ROLLUP_READ_DAYS, RenderContext, render, rollup_table

LEVEL = {s: i + 1 for i, s in enumerate(SEVERITIES)}  # blue 1, yellow 2, red 3
# Rolling count baselines by running sums (``_Builder.rolling_by_differences``); False: every rule by
# the join of slices and buckets (the tests compare the two)
RUNNING_SUMS = True
GATE = 99  # level of a plain (untiered) condition that holds: never caps a tiered one


# Rule fields that say how a breach is told, not when: an edit of these keeps the recorded states
_DESCRIPTIVE = {"name", "description", "runbook", "owner", "audience", "notify", "actions", "metric_labels", "labels",
                "mode", "attributes"}


@dataclass
class CompiledRule:
    rule: Rule
    sql: str
    static_params: dict
    referenced: dict[str, CompiledRule] = field(default_factory=dict)  # prefix -> compiled rule
    current_state: bool = False  # a metric of the state at the window's end (``LoadedRule.current_state``)
    inline: tuple[str, ...] = ()  # placeholder prefixes of rollup() read from the raw facts (source="query")

    @cached_property
    def definition(self) -> str:
        """A digest of what the rule's states depend on: the statement, its bound constants, and the
        rule's conditions, persistence and hold (its names, texts, routing and mode are left out),
        the referenced rules' included. A cycle resumes from recorded states only of the same
        definition (``engine.record.last_evaluation``): after an edit the walk reads the lead-in
        again, so a streak counted under the old threshold does not carry into the new one."""
        import hashlib
        import json

        parts = [self.sql, json.dumps(self.rule.model_dump(mode="json", by_alias=True, exclude=_DESCRIPTIVE),
                                      sort_keys=True, default=str)]
        parts += [f"{k}={v!r}" for k, v in sorted(self.static_params.items())]
        parts += [f"{prefix}:{sub.definition}" for prefix, sub in sorted(self.referenced.items())]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def params(self, start: datetime, end: datetime, *, resume: bool = False) -> dict:
        """Every bound parameter for the window ``[start, end)``; ``resume``: without the lead-in
        (``windows.plan_cycle``; the rules a compound rule references keep theirs)."""
        return _bind(self, "", start, end, resume=resume)


def _bind(compiled: CompiledRule, prefix: str, start: datetime, end: datetime, *, resume: bool = False) -> dict:
    plan = plan_cycle(compiled.rule, start, end, resume=resume)
    out = {f"{prefix}{k}": v for k, v in plan.params().items()}
    out[f"{prefix}grid_first"] = plan.candidates_from + compiled.rule.grain_delta
    out.update({f"{prefix}{k}": v for k, v in compiled.static_params.items()})
    for inline in compiled.inline:  # a rollup() read from the raw facts: the slices of its 35 days
        out[f"{inline}scan_0_start"] = end - timedelta(days=ROLLUP_READ_DAYS)
        out[f"{inline}scan_0_end"] = end
    for sub_prefix, sub in compiled.referenced.items():
        out.update(_bind(sub, prefix + sub_prefix, start, end))
    return out


def _f(x) -> str:
    return f"CAST({x} AS DOUBLE PRECISION)"


class RuleRefused(ValueError):
    """A compiled rule statement that may not run (not one SELECT, a write, a function or table
    outside the allow-lists, a name outside the identifier pattern). Not retried."""


def q(name: str) -> str:
    """A column name from a rule file, checked against the one identifier pattern and quoted."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise RuleRefused(f"{name!r} is not an identifier (rules.model.IDENTIFIER); the rule is refused")
    return f'"{name}"'


class _Builder:
    def __init__(self, rule: Rule, template: str, prefix: str, lookup, slices: str | None = None,
                 source: str = "rollup"):
        self.rule, self.template, self.p, self.lookup = rule, template, prefix, lookup
        self.slices = slices  # a rolling rule's rollup table (None: its query over the scan ranges)
        self.source = source
        self.inline: list[str] = []  # prefixes of rollup() subqueries read from the raw facts
        self.params: dict = {}
        self.ctes: list[tuple[str, str]] = []
        self.referenced: dict[str, CompiledRule] = {}
        self.tables_read: set[str] = {slices} if slices else set()
        self.scale_by_plans = rule.plans == "scale_baseline"  # a compound rule's ignore reaches its references
        self.plan: str | None = None  # the plan CTE, made when a condition first needs it
        self.mx: str | None = None  # a rolling rule's windows at every offset (``rolling_metric``)
        self.seen: str | None = None  # a rolling rule's relation of every entity seen in a window read
        self.offset_k: dict[timedelta, int] = {}  # a rolling rule's offset -> its number in mx
        self.run: str | None = None  # a rolling rule's running sums (``rolling_by_differences``)
        self.baselines: dict[tuple[str, str], str] = {}  # (metric, baseline) -> its CTE: conditions share one
        # a referenced rule's pipeline computes only the entities the compound rule has rows for:
        # (the CTE of their keys, the keys); each entity's states depend on its own rows alone
        self.only: tuple[str, tuple[str, ...]] | None = None
        self.cur: str | None = None  # the rows evaluated (``current``)

    def bind(self, name: str, value) -> str:
        self.params[name] = value
        return f":{self.p}{name}"

    def keys(self, alias: str) -> str:
        return ", ".join(f"{alias}.{q(k)}" for k in self.rule.keys)

    def on(self, a: str, b: str, keys=None) -> str:
        return " AND ".join(f"{a}.{q(k)} = {b}.{q(k)}" for k in (keys or self.rule.keys))

    def only_entities(self, alias: str) -> str:
        """The join that keeps ``alias``'s rows to the entities of ``self.only`` ("": all). Their CTE
        holds each entity once: the join drops rows, never repeats one."""
        if self.only is None:
            return ""
        name, keys = self.only
        return f" JOIN {name} o ON {self.on('o', alias, keys)}"

    def cte(self, name: str, body: str) -> str:
        full = f"{self.p}{name}"
        self.ctes.append((full, body))
        return full

    # --- the stages -------------------------------------------------------------------------
    def metric(self) -> str:
        ctx = RenderContext(n_ranges=scan_range_count(self.rule), prefix=self.p, params=dict(self.rule.params))
        if self.rule.rolling:
            return self.rolling_metric(ctx)
        if self.source == "query":  # rollup(): the query itself over the raw facts of the 35 days
            ctx.rollup_sql = self.inline_rollup
        sql = render(self.template, ctx)
        if self.only is not None:  # the query as written, its rows kept to the entities asked for
            sql = f"SELECT x.* FROM (\n{sql}\n) x{self.only_entities('x')}"
        if self.source != "query":
            self.tables_read |= {rollup_table(path) for path in ctx.rollups_used}
        for name, value in self.rule.params.items():
            self.params[f"p_{name}"] = value
        return self.cte("m", sql)

    def rolling_metric(self, ctx: RenderContext) -> str:
        """A rolling rule's values: at every bucket the cycle evaluates, and at each of those less
        every baseline offset, the sums of the slices in the window ending with it (``rs``: rollup
        rows of the scan ranges, or the metric query itself), then the ratios of those sums."""
        r, p = self.rule, self.p
        keys = self.keys("s")
        cols = ", ".join(q(c) for c in (*r.keys, "bucket", *r.metrics))
        if self.slices:
            ranges = " OR ".join(f"(x.bucket >= :{p}scan_{i}_start AND x.bucket < :{p}scan_{i}_end)"
                                 for i in range(ctx.n_ranges))
            rs = self.cte("rs", f"SELECT {', '.join(f'x.{c}' for c in cols.split(', '))} FROM {self.slices} x"
                                f"{self.only_entities('x')} WHERE {ranges}")
        else:
            for name, value in r.params.items():
                self.params[f"p_{name}"] = value
            picked = ", ".join(f"x.{c}" for c in cols.split(", "))
            rs = self.cte("rs", f"SELECT {picked} FROM ({render(self.template, ctx)}) x{self.only_entities('x')}")
        if self.running_sums():
            return self.rolling_by_differences(rs)
        offsets = history_offsets(r)
        # an offset's number k (0: the evaluated bucket itself; k: history_offsets(r)[k - 1]): the
        # windows are grouped and picked by it (an integer compares faster than an interval)
        self.offset_k = {o: k + 1 for k, o in enumerate(offsets)}
        values = ", ".join(["(0, CAST(" + self.bind("o_now", timedelta(0)) + " AS INTERVAL))"]
                           + [f"({k + 1}, CAST({self.bind(f'o_{k}', o)} AS INTERVAL))" for k, o in enumerate(offsets)])
        grain = self.bind("grain", r.grain_delta)
        # every bucket the cycle evaluates (cur_bucket), at offset 0 and at each baseline offset
        pts = self.cte("pts", f"SELECT CAST(g.b AS TIMESTAMPTZ) AS cur_bucket, o.k, CAST(g.b AS TIMESTAMPTZ) - o.off "
                              f"AS bucket FROM generate_series("
                              f"CAST(:{p}grid_first AS TIMESTAMPTZ), CAST(:{p}last_bucket AS TIMESTAMPTZ), "
                              f"CAST({grain} AS INTERVAL)) AS g(b) CROSS JOIN (VALUES {values}) AS o(k, off)")
        width = self.bind("window", r.window - r.grain_delta)
        sums = ", ".join(f"SUM(s.{q(c)}) AS {q(c)}" for c in r.metrics)
        win = self.cte("win", f"SELECT {keys}, t.cur_bucket, t.k, {sums} FROM {rs} s JOIN {pts} t "
                              f"ON s.bucket >= t.bucket - CAST({width} AS INTERVAL) AND s.bucket <= t.bucket "
                              f"GROUP BY {keys}, t.cur_bucket, t.k")
        ratios = "".join(f", {_f(f'w.{q(x.numerator)}')} / NULLIF(w.{q(x.denominator)}, 0) AS {q(name)}"
                         for name, x in r.ratios.items() if name in r.measures)
        self.rs = rs
        # mx: the windows at every offset, keyed by the bucket they are the baseline of; m: offset 0
        self.mx = self.seen = self.cte("mx", f"SELECT w.*{ratios} FROM {win} w")
        cols = ", ".join(f"x.{q(c)}" for c in (*r.metrics, *(n for n in r.ratios if n in r.measures)))
        return self.cte("m", f"SELECT {self.keys('x')}, x.cur_bucket AS bucket, {cols} FROM {self.mx} x "
                             f"WHERE x.k = 0")

    def running_sums(self) -> bool:
        """Whether every baseline of this rolling rule is a mean of counts over offsets, zeros
        where history is missing (what ``rolling_by_differences`` computes): then the windows and
        their baselines need no join of slices and buckets."""
        r = self.rule
        if not RUNNING_SUMS:
            return False
        for cond in r.conditions:
            b = cond.baseline
            if b is None:
                continue
            if b.kind == "trailing":  # a window's sums at an offset: counts, or a ratio of two of them
                ratio = r.ratios.get(cond.metric)
                if cond.metric not in r.metrics and not (
                        ratio and ratio.numerator in r.metrics and ratio.denominator in r.metrics):
                    return False
                continue
            if (b.stat != "mean" or cond.metric not in r.metrics
                    or not (r.no_data == "zero" or b.missing == "zero")):
                return False
        return True

    def rolling_by_differences(self, rs: str) -> str:
        """A rolling rule's window sums and count baselines by running sums, in time linear in the
        slices read and the buckets evaluated (not their product).

        A slice ``s`` is in the window of bucket ``t`` when ``s <= t <= s + width``; for the
        evaluated buckets t_j = first + j x grain (j = 0 .. jmax) and an offset o (the baseline's
        history: the window ending at t_j - o), that is j0 <= j <= j0 + w, with j0 = (s + o -
        first) / grain and w = width / grain. So each slice adds its counts at j0 and takes them
        away after j0 + w (``ev``, ``dl``), and a running sum over j per entity (``run``) is every
        window's sum: at offset 0 the value (``cur_*``), over a condition's offsets the sum its
        mean divides (``bsum_*``). ``n_rows`` counts the slices in the current window: a bucket
        with none has no row, as a window of no slices has none in the joined form.

        A trailing baseline is one more window of its own width: the ``window`` of slices before
        the rule's window, i.e. at offset ``window`` (the rule's) with width ``b.window``; its sums
        (``tsum_*``: the metric, or a ratio's numerator and denominator) and the slices found in it
        (``tpts_*``) run the same way."""
        r, p = self.rule, self.p
        keys = self.keys("e")
        offsets = history_offsets(r)
        g = self.bind("rd_grain_s", r.grain_delta.total_seconds())
        w = self.bind("rd_w", int((r.window - r.grain_delta) / r.grain_delta))
        first = f"CAST(:{p}grid_first AS TIMESTAMPTZ)"
        epoch = "EXTRACT(EPOCH FROM {})"
        index = f"CAST(ROUND(({epoch.format('{t}')} - {epoch.format(first)}) / {g}) AS BIGINT)"
        jmax = index.format(t=f"CAST(:{p}last_bucket AS TIMESTAMPTZ)")
        k_of = {o: k + 1 for k, o in enumerate(offsets)}
        rows = ["(0, 0.0, " + w + ")"] + [f"({k_of[o]}, {self.bind(f'rd_o{k}', o.total_seconds())}, {w})"
                                          for k, o in enumerate(offsets)]
        # a trailing baseline's window: offset the rule's window, its own width (k after the offsets)
        trailing: dict[int, int] = {}  # condition -> its k
        for i, cond in enumerate(r.conditions):
            if cond.baseline is not None and cond.baseline.kind == "trailing":
                trailing[i] = len(offsets) + 1 + len(trailing)
                tw = self.bind(f"rd_t{i}_w", int((cond.baseline.window - r.grain_delta) / r.grain_delta))
                rows.append(f"({trailing[i]}, {self.bind(f'rd_t{i}_o', r.window.total_seconds())}, {tw})")
        values = ", ".join(rows)
        ev = self.cte("ev", (
            f"SELECT {self.keys('s')}, o.k, o.w, {', '.join(f's.{q(c)}' for c in r.metrics)}, "
            f"CAST(ROUND(({epoch.format('s.bucket')} + o.off_s - {epoch.format(first)}) / {g}) AS BIGINT) AS j0 "
            f"FROM {rs} s CROSS JOIN (VALUES {values}) AS o(k, off_s, w)"))
        # what each slice adds to the running sums: its metrics at offset 0, its metrics at each
        # condition's offsets, one row
        adds: list[tuple[str, str]] = [(f"cur_{c}", f"CASE WHEN e.k = 0 THEN e.{q(c)} ELSE 0 END") for c in r.metrics]
        adds.append(("n_rows", "CASE WHEN e.k = 0 THEN 1 ELSE 0 END"))
        self.bsums: dict[tuple[str, str], str] = {}
        for cond in r.conditions:
            if cond.baseline is None or cond.baseline.kind == "trailing":
                continue
            shared = (cond.metric, cond.baseline.model_dump_json())
            if shared in self.bsums:
                continue
            name = f"bsum_{len(self.bsums)}"
            ks = ", ".join(str(k_of[o]) for o in baseline_offsets(cond.baseline, r.grain_delta))
            adds.append((name, f"CASE WHEN e.k IN ({ks}) THEN COALESCE(e.{q(cond.metric)}, 0) ELSE 0 END"))
            self.bsums[shared] = name
        self.tsums: dict[int, tuple[str, ...]] = {}  # condition -> its trailing sums, then its points
        for i, k in trailing.items():
            cond = r.conditions[i]
            ratio = r.ratios.get(cond.metric)
            parts = (ratio.numerator, ratio.denominator) if ratio is not None else (cond.metric,)
            for n, c in enumerate(parts):  # a sum of no slices is NULL, as SUM over an empty join
                adds.append((f"tsum_{i}_{n}", f"CASE WHEN e.k = {k} THEN e.{q(c)} ELSE 0 END"))
            adds.append((f"tpts_{i}", f"CASE WHEN e.k = {k} AND e.{q(parts[-1])} IS NOT NULL THEN 1 ELSE 0 END"))
            self.tsums[i] = (*(f"tsum_{i}_{n}" for n in range(len(parts))), f"tpts_{i}")
        live = f"e.j0 <= {jmax} AND e.j0 + e.w >= 0"
        plus = ", ".join(f"{expr} AS {name}" for name, expr in adds)
        minus = ", ".join(f"-({expr}) AS {name}" for name, expr in adds)
        dl = self.cte("dl", (
            f"SELECT {', '.join(q(k) for k in r.keys)}, j, {', '.join(f'SUM({n}) AS {n}' for n, _ in adds)} FROM ("
            f"SELECT {keys}, GREATEST(e.j0, 0) AS j, {plus} FROM {ev} e WHERE {live} "
            f"UNION ALL SELECT {keys}, e.j0 + e.w + 1 AS j, {minus} FROM {ev} e WHERE {live} "
            f"AND e.j0 + e.w + 1 <= {jmax}) x GROUP BY {', '.join(q(k) for k in r.keys)}, j"))
        grain = self.bind("grain", r.grain_delta)
        grid = self.cte("rgrid", (
            f"SELECT CAST(g.b AS TIMESTAMPTZ) AS bucket, {index.format(t='CAST(g.b AS TIMESTAMPTZ)')} AS j "
            f"FROM generate_series({first}, CAST(:{p}last_bucket AS TIMESTAMPTZ), CAST({grain} AS INTERVAL)) AS g(b)"))
        # the entities whose buckets are computed: with no_data: skip, those with a slice in a current
        # window (an entity without one has no row to evaluate); else every entity seen in any window
        now_only = " AND e.k = 0" if r.no_data == "skip" else ""
        if trailing and not now_only:  # the trailing windows' slices are not the rule's windows
            now_only = f" AND e.k NOT IN ({', '.join(str(k) for k in trailing.values())})"
        ents = self.cte("rents", f"SELECT DISTINCT {keys} FROM {ev} e WHERE {live}{now_only}")
        over = f"OVER (PARTITION BY {self.keys('e')} ORDER BY t.j ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
        sums = ", ".join(f"SUM(COALESCE(d.{n}, 0)) {over} AS {n}" for n, _ in adds)
        self.run = self.cte("run", (
            f"SELECT {keys}, t.bucket, {sums} FROM {ents} e CROSS JOIN {grid} t "
            f"LEFT JOIN {dl} d ON {self.on('d', 'e')} AND d.j = t.j"))
        self.seen = ents  # the entities with a slice in any window read (the no-data grid's entities)
        ratios = "".join(f", {_f(f'x.cur_{x.numerator}')} / NULLIF(x.cur_{x.denominator}, 0) AS {q(name)}"
                         for name, x in r.ratios.items() if name in r.measures)
        cols = ", ".join(f"x.cur_{c} AS {q(c)}" for c in r.metrics)
        return self.cte("m", f"SELECT {self.keys('x')}, x.bucket, {cols}{ratios} FROM {self.run} x WHERE x.n_rows > 0")

    def current(self, m: str) -> str:
        r, p = self.rule, self.p
        metrics = ", ".join(f"x.{q(c)}" for c in (*r.measures, *r.attributes))
        if r.no_data == "skip":
            return self.cte("cur", f"SELECT {self.keys('x')}, x.bucket, {metrics}, 0 AS no_data FROM {m} x "
                                   f"WHERE x.bucket > :{p}candidates_from AND x.bucket <= :{p}last_bucket")
        ents = self.cte("ents", f"SELECT DISTINCT {self.keys('x')} FROM {self.seen or m} x")
        step = "INTERVAL '1 hour'" if r.grain == "hour" else f"CAST({self.bind('grid_step', r.grain_delta)} AS INTERVAL)"
        grid = self.cte("grid", f"SELECT CAST(g.b AS TIMESTAMPTZ) AS bucket FROM generate_series("
                                f"CAST(:{p}grid_first AS TIMESTAMPTZ), CAST(:{p}last_bucket AS TIMESTAMPTZ), "
                                f"{step}) AS g(b)")
        # a silent entity's counts are zeros; its ratios have no value (0/0)
        filled = ", ".join([f"COALESCE(x.{q(c)}, 0) AS {q(c)}" for c in r.metrics]
                           + [f"x.{q(c)}" for c in (*(m for m in r.measures if m not in r.metrics), *r.attributes)])
        return self.cte("cur", f"SELECT {self.keys('e')}, t.bucket, {filled}, "
                               f"CASE WHEN x.bucket IS NULL THEN 1 ELSE 0 END AS no_data "
                               f"FROM {ents} e CROSS JOIN {grid} t LEFT JOIN {m} x ON {self.on('x', 'e')} "
                               f"AND x.bucket = t.bucket")

    def baseline(self, i: int, cond: Condition, m: str, cur: str) -> str:
        b, r = cond.baseline, self.rule
        fill = r.no_data == "zero" or b.missing == "zero"
        hv = f"COALESCE(h.{q(cond.metric)}, 0)" if fill else f"h.{q(cond.metric)}"
        points = "COUNT(*)" if fill else f"COUNT(h.{q(cond.metric)})"
        group = f"GROUP BY {self.keys('c')}, c.bucket"
        if b.kind == "trailing" and r.rolling and self.run is not None:
            return self.cte(f"b{i}", self.trailing_from_run(i, cond, cur))
        if b.kind == "trailing" and r.rolling:
            return self.cte(f"b{i}", self.rolling_trailing(i, cond, cur))
        if r.rolling and self.run is not None:  # rolling_by_differences: the running sum over the offsets
            n = self.bind(f"b{i}_n", len(baseline_offsets(b, r.grain_delta)))
            total = self.bsums[(cond.metric, b.model_dump_json())]
            return self.cte(f"b{i}", (
                f"SELECT {self.keys('c')}, c.bucket, COALESCE({_f(f'h.{total}')}, 0) / {n} AS baseline, "
                f"{n} AS points FROM {cur} c LEFT JOIN {self.run} h ON {self.on('h', 'c')} AND h.bucket = c.bucket"))
        if b.kind == "trailing":
            w = self.bind(f"b{i}_window", b.window)
            if fill:
                n = self.bind(f"b{i}_n", max(1, int(b.window / r.grain_delta)))
                stat = f"SUM({_f(hv)}) / {n}"
            else:
                stat = f"AVG({_f(hv)})"
            body = (f"SELECT {self.keys('c')}, c.bucket, {stat} AS baseline, {points} AS points FROM {cur} c "
                    f"LEFT JOIN {m} h ON {self.on('h', 'c')} AND h.bucket < c.bucket "
                    f"AND h.bucket >= c.bucket - CAST({w} AS INTERVAL) {group}")
        elif r.rolling and b.stat == "mean":
            # the windows at the baseline's offsets, from mx (computed once for every offset): no
            # cross product of the evaluated buckets and the offsets
            offsets = baseline_offsets(b, r.grain_delta)
            listed = ", ".join(str(self.offset_k[o]) for o in offsets)
            if fill:
                n = self.bind(f"b{i}_n", len(offsets))
                stat, points = f"SUM({_f(hv)}) / {n}", f"{n}"
            else:
                stat = f"AVG({_f(hv)})"
            body = (f"SELECT {self.keys('c')}, c.bucket, {stat} AS baseline, {points} AS points FROM {cur} c "
                    f"LEFT JOIN {self.mx} h ON {self.on('h', 'c')} AND h.cur_bucket = c.bucket AND h.k IN ({listed}) "
                    f"{group}")
        else:
            offsets = baseline_offsets(b, r.grain_delta)
            if r.rolling:
                values = ", ".join(f"({self.offset_k[o]}, NULL)" for o in offsets)
            else:
                values = ", ".join(f"(0, CAST({self.bind(f'b{i}_o{k}', o)} AS INTERVAL))" for k, o in enumerate(offsets))
            stat = (f"AVG({_f(hv)})" if b.stat == "mean"
                    else f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {_f(hv)})")
            at = "h.cur_bucket = c.bucket AND h.k = o.k" if r.rolling else "h.bucket = c.bucket - o.off"
            body = (f"SELECT {self.keys('c')}, c.bucket, {stat} AS baseline, {points} AS points FROM {cur} c "
                    f"CROSS JOIN (VALUES {values}) AS o(k, off) "
                    f"LEFT JOIN {self.mx if r.rolling else m} h ON {self.on('h', 'c')} AND {at} {group}")
        return self.cte(f"b{i}", body)

    def inline_rollup(self, path: str) -> str:
        from threshold_operators.engine.rollups import read_query

        prefix = f"{self.p}ru{len(self.inline)}_"
        self.inline.append(prefix)
        return f"({render(read_query(path), RenderContext(n_ranges=1, prefix=prefix))})"

    def trailing_from_run(self, i: int, cond: Condition, cur: str) -> str:
        """``rolling_trailing`` from the running sums: the same baseline and points, no join (a
        window of no slices sums to 0: a count's baseline 0, a ratio's none)."""
        r, b = self.rule, cond.baseline
        *sums, pts = self.tsums[i]
        if len(sums) == 2:
            stat = f"{_f(f'h.{sums[0]}')} / NULLIF({_f(f'h.{sums[1]}')}, 0)"
        else:
            scale = self.bind(f"b{i}_scale", r.window / b.window)
            stat = f"COALESCE({_f(f'h.{sums[0]}')}, 0) * {scale}"
        return (f"SELECT {self.keys('c')}, c.bucket, {stat} AS baseline, COALESCE(h.{pts}, 0) AS points "
                f"FROM {cur} c LEFT JOIN {self.run} h ON {self.on('h', 'c')} AND h.bucket = c.bucket")

    def rolling_trailing(self, i: int, cond: Condition, cur: str) -> str:
        """A rolling rule's trailing baseline: the slices of the ``window`` before the rule's window,
        summed and scaled to the rule's window (a ratio: the ratio of the two sums)."""
        r, b = self.rule, cond.baseline
        lo = self.bind(f"b{i}_lo", r.window + b.window - r.grain_delta)
        hi = self.bind(f"b{i}_hi", r.window)
        ratio = r.ratios.get(cond.metric)
        if ratio is not None:
            stat = (f"SUM({_f(f'h.{q(ratio.numerator)}')}) / NULLIF(SUM({_f(f'h.{q(ratio.denominator)}')}), 0)")
            points = f"COUNT(h.{q(ratio.denominator)})"
        else:
            scale = self.bind(f"b{i}_scale", r.window / b.window)
            stat = f"COALESCE(SUM({_f(f'h.{q(cond.metric)}')}), 0) * {scale}"
            points = f"COUNT(h.{q(cond.metric)})"
        return (f"SELECT {self.keys('c')}, c.bucket, {stat} AS baseline, {points} AS points FROM {cur} c "
                f"LEFT JOIN {self.rs} h ON {self.on('h', 'c')} AND h.bucket >= c.bucket - CAST({lo} AS INTERVAL) "
                f"AND h.bucket <= c.bucket - CAST({hi} AS INTERVAL) GROUP BY {self.keys('c')}, c.bucket")

    def planned(self, cond: Condition, b: str, cur: str) -> str:
        """The baseline ``b`` times the plan's factor for the entity and bucket (planned_events;
        no event: 1), when the rule scales by plans and the condition compares against its baseline.
        The plan CTEs, made once per rule: ``plan_events``, each event overlapping an entity's
        bucket with its factor weighted by the share of the bucket it covers (1 + (factor - 1) x
        covered / bucket); ``plan``, per entity and bucket, the factor of the most specific scope
        (SKU, then category, then shop; among overlapping events of that scope, the largest)."""
        if not self.scale_by_plans or cond.compare == "value":
            return b
        r, keys = self.rule, self.rule.keys
        if self.plan is None:
            # the span a bucket's value covers: the bucket, or a rolling rule's window ending with it
            span = r.window if r.rolling else r.grain_delta
            g = self.bind("plan_grain", r.grain_delta)
            w = self.bind("plan_span", span)
            g_s = self.bind("plan_grain_s", span.total_seconds())
            lo, hi = f"c.bucket + CAST({g} AS INTERVAL) - CAST({w} AS INTERVAL)", f"c.bucket + CAST({g} AS INTERVAL)"
            covered = (f"(EXTRACT(EPOCH FROM LEAST(e.ends_at, {hi})) - "
                       f"EXTRACT(EPOCH FROM GREATEST(e.starts_at, {lo}))) / {g_s}")
            factor = f"(1.0 + ({_f('e.uplift')} - 1.0) * {_f(covered)})"
            sku = "sku" in keys
            scoped = " OR ".join(["e.scope = 'shop'"] + ([
                "(e.scope = 'category' AND e.scope_value = pr.category)",
                f"(e.scope = 'sku' AND e.scope_value = c.{q('sku')})"] if sku else []))
            products = f" LEFT JOIN products pr ON pr.shop_id = c.{q('shop_id')} AND pr.sku = c.{q('sku')}" if sku else ""
            events = self.cte("plan_events", (
                f"SELECT {self.keys('c')}, c.bucket, e.scope, {factor} AS factor FROM {cur} c "
                f"JOIN planned_events e ON e.shop_id = c.{q('shop_id')} AND e.starts_at < {hi} AND e.ends_at > {lo}"
                f"{products} WHERE {scoped}"))
            pick = ", ".join(f"MAX(CASE WHEN pe.scope = '{s}' THEN pe.factor END)"
                             for s in (("sku", "category", "shop") if sku else ("shop",)))
            self.plan = self.cte("plan", (f"SELECT {self.keys('pe')}, pe.bucket, COALESCE({pick}) AS factor "
                                          f"FROM {events} pe GROUP BY {self.keys('pe')}, pe.bucket"))
        return self.cte(f"{b.removeprefix(self.p)}_planned", (
            f"SELECT {self.keys('x')}, x.bucket, x.baseline * COALESCE(pl.factor, 1.0) AS baseline, x.points, "
            f"pl.factor AS plan_factor FROM {b} x LEFT JOIN {self.plan} pl ON {self.on('pl', 'x')} "
            f"AND pl.bucket = x.bucket"))

    def reference(self, j: int, cond: Condition) -> tuple[str, tuple[str, ...]]:
        """The buckets at which the referenced rule (or any of a list of them) breaches, per entity."""
        finals, keys = [], ()
        asked: dict[tuple[str, ...], str] = {}  # the referenced keys -> the CTE of this rule's entities
        for k, target in enumerate(cond.rules):
            loaded = self.lookup(target)
            sub_prefix = f"r{j}_" if k == 0 else f"r{j}x{k}_"
            sub = _Builder(loaded.rule, loaded.template, self.p + sub_prefix, self.lookup,
                           _slices_of(loaded, self.source), self.source)
            sub.scale_by_plans = sub.scale_by_plans and self.scale_by_plans
            # only the entities this rule evaluates: a breach of another entity joins no row of cur
            ref_keys = loaded.rule.keys
            if ref_keys not in asked:
                asked[ref_keys] = self.cte(f"ask{j}x{k}", f"SELECT DISTINCT {', '.join(f'c.{q(c)}' for c in ref_keys)} "
                                                          f"FROM {self.cur} c")
            sub.only = (asked[ref_keys], ref_keys)
            finals.append(sub.build())
            self.ctes.extend(sub.ctes)
            self.tables_read |= sub.tables_read
            self.referenced[sub_prefix] = CompiledRule(loaded.rule, "", sub.params, sub.referenced,
                                                       inline=tuple(sub.inline))
            keys = loaded.rule.keys  # the catalogue checks that every rule of a list has the same entity
        cols = ", ".join(f"f.{q(k)}" for k in keys)
        union = " UNION ALL ".join(f"SELECT {', '.join(q(k) for k in keys)}, bucket, level FROM {f} WHERE level > 0"
                                   for f in finals)
        source = finals[0] if len(finals) == 1 else f"({union})"
        name = self.cte(f"ref{j}", f"SELECT {cols}, f.bucket, MAX(f.level) AS level FROM {source} f "
                                   f"WHERE f.level > 0 GROUP BY {cols}, f.bucket")
        return name, keys

    def build(self) -> str:
        r = self.rule
        m = self.metric()
        cur = self.cur = self.current(m)
        joins, values, tiers, selects = [], {}, [], []
        for i, cond in enumerate(r.conditions):
            if cond.rule is not None:
                ref, keys = self.reference(i, cond)
                joins.append(f"LEFT JOIN {ref} ref{i} ON {self.on(f'ref{i}', 'c', keys)} AND ref{i}.bucket = c.bucket")
                tiers.append(f"CASE WHEN ref{i}.level > 0 THEN {GATE} ELSE 0 END")
                continue
            v = f"c.{q(cond.metric)}"
            if cond.baseline is not None:
                shared = (cond.metric, cond.baseline.model_dump_json())
                if shared not in self.baselines:  # two conditions on one baseline read it once
                    self.baselines[shared] = self.planned(cond, self.baseline(i, cond, m, cur), cur)
                b = self.baselines[shared]
                joins.append(f"LEFT JOIN {b} b{i} ON {self.on(f'b{i}', 'c')} AND b{i}.bucket = c.bucket")
                mp = self.bind(f"b{i}_min_points", cond.baseline.min_points)
                known = f"b{i}.points >= {mp} AND b{i}.baseline IS NOT NULL"
                selects += [f"b{i}.baseline AS base_{i}", f"b{i}.points AS points_{i}"]
                if self.plan is not None and b.endswith("_planned"):
                    selects.append(f"b{i}.plan_factor AS plan_factor_{i}")
                if cond.compare != "value":
                    expr = {"ratio": f"{_f(v)} / b{i}.baseline",
                            "pct_change": f"({_f(v)} - b{i}.baseline) * 100.0 / b{i}.baseline",
                            "delta": f"{_f(v)} - b{i}.baseline",
                            "poisson_z": f"({_f(v)} - b{i}.baseline) / SQRT(GREATEST(b{i}.baseline, 1.0))",
                            "poisson_tail": _poisson_tail(_f(v), f"(GREATEST({_f(f'b{i}.baseline')}, 0.0) + 0.5 / "
                                                                  f"GREATEST(b{i}.points, 1))"),
                            }[cond.compare]
                    nonzero = "" if cond.compare in ("delta", "poisson_z", "poisson_tail") \
                        else f" AND b{i}.baseline <> 0"
                    v = f"CASE WHEN {known}{nonzero} THEN {expr} END"
                    if cond.compare in ("ratio", "pct_change"):
                        selects.append(f"CASE WHEN {known} AND b{i}.baseline = 0 THEN 1 ELSE 0 END AS zero_base_{i}")
            values[i] = v
            selects.append(f"{v} AS v_{i}")
            tiers.append(self.tier(i, cond, v))
        level = self.combine(tiers)
        vol = self.volume_guard()
        hold = self.hold(values)
        # no_data: zero evaluates a silent bucket as zeros; alert makes it a breach of its own
        silent = f"WHEN c.no_data = 1 THEN {LEVEL[r.severity]} " if r.no_data == "alert" else ""
        scored = self.cte("scored", (
            f"SELECT {self.keys('c')}, c.bucket, {', '.join(f'c.{q(x)}' for x in (*r.measures, *r.attributes))}, c.no_data, "
            f"{', '.join(selects)}, {vol} AS volume_ok, "
            f"CASE {silent}WHEN NOT ({vol} = 1) THEN 0 ELSE {level} END AS level, "
            f"CASE WHEN NOT ({vol} = 1) THEN 0 ELSE {hold} END AS hold "
            f"FROM {cur} c {' '.join(joins)}"))
        return self.cte("final", f"SELECT * FROM {scored} WHERE level > 0 OR hold = 1")

    def tier(self, i: int, cond: Condition, v: str) -> str:
        op = ">" if cond.above is not None else "<"
        thresholds = cond.thresholds(self.rule.severity)
        zero = ""
        if cond.zero_baseline == "breach" and cond.compare in ("ratio", "pct_change"):
            lowest = next(s for s in SEVERITIES if s in thresholds)
            zero = f"WHEN zero_flag_{i} THEN {LEVEL[lowest] if cond.tiered else GATE} "
            zero = zero.replace(f"zero_flag_{i}", f"b{i}.points >= :{self.p}b{i}_min_points AND b{i}.baseline = 0")
        whens = []
        for sev in reversed(SEVERITIES):
            if sev in thresholds:
                t = self.bind(f"c{i}_{sev}", thresholds[sev])
                whens.append(f"WHEN {v} {op} {t} THEN {LEVEL[sev] if cond.tiered else GATE}")
        return f"CASE {zero}{' '.join(whens)} ELSE 0 END"

    def combine(self, tiers: list[str]) -> str:
        r = self.rule
        tiers = [f"({t})" for t in tiers]
        comb = tiers[0] if len(tiers) == 1 else (
            f"LEAST({', '.join(tiers)})" if r.match == "all" else f"GREATEST({', '.join(tiers)})")
        return f"(CASE WHEN {comb} = {GATE} THEN {LEVEL[r.severity]} ELSE {comb} END)"

    def volume_guard(self) -> str:
        if not self.rule.min_volume:
            return "1"
        parts = []
        for k, mv in enumerate(self.rule.min_volume):
            t = self.bind(f"vol{k}", mv.at_least)
            if mv.of == "value":
                parts.append(f"c.{q(mv.metric)} >= {t}")
            else:
                i = next(i for i, c in enumerate(self.rule.conditions) if c.metric == mv.metric and c.baseline)
                parts.append(f"COALESCE(b{i}.baseline, 0) >= {t}")
        return f"(CASE WHEN {' AND '.join(parts)} THEN 1 ELSE 0 END)"

    def hold(self, values: dict[int, str]) -> str:
        r = self.rule
        primary = r.primary
        if primary.rule is not None or primary.recover is None:
            return "0"
        i = r.conditions.index(primary)
        op = ">" if primary.above is not None else "<"
        t = self.bind(f"c{i}_recover", primary.recover)
        return f"CASE WHEN {values[i]} {op} {t} THEN 1 ELSE 0 END"


def _poisson_tail(x: str, b: str) -> str:
    """How surprising a count ``x`` is for a Poisson mean ``b``: the normal quantile z with
    P(X >= x | b) = 1 - Phi(z), by the Wilson-Hilferty approximation of that tail (the chi-square
    of 2x degrees of freedom at 2b), within about 0.1 of z from a count of 1. No value below a
    count of 1 (every count is at least 0). The caller passes the baseline plus half an event over
    its history windows (Jeffreys' estimate of a Poisson mean): a history of zeros is not proof
    that the mean is 0, so a SKU that never sold is not infinitely surprised by its first orders."""
    return (f"CASE WHEN {x} >= 1 THEN 3.0 * SQRT({x}) * ((1.0 - 1.0 / (9.0 * {x})) - POWER({b} / {x}, 1.0 / 3.0)) "
            f"END")


def _slices_of(loaded, source: str = "rollup") -> str | None:
    """Where a rolling rule's slices come from: its rollup table (``engine.rollups``), or None to
    read its metric query over the scan ranges (``source="query"``; a series file always)."""
    if not loaded.rule.rolling or source == "query" or tuple(loaded.tables) == ("series",):
        return None
    return rollup_table(loaded.rule.query, loaded.rule.params)


def compile_rule(loaded, lookup, source: str = "query") -> CompiledRule:
    """``loaded``: a catalogue entry (rule + template); ``lookup(rule_id)`` finds referenced rules.
    ``source``: where rolling rules and ``rollup()`` read their 5-minute slices: the metric query
    over the raw facts of the scan ranges (``"query"``: exact and read-only, for the analysis tools
    and replays), or the rollups (``"rollup"``: what a live cycle does, after ``engine.rollups``
    has maintained them; the same answer, without reading raw history)."""
    b = _Builder(loaded.rule, loaded.template, "", lookup, _slices_of(loaded, source), source)
    final = b.build()
    sql = "WITH " + ",\n".join(f"{name} AS (\n{body}\n)" for name, body in b.ctes) + f"\nSELECT * FROM {final}"
    read = set(loaded.tables).union(*(lookup(r).tables for r in loaded.rule.references))
    problems = statement_problems_of(sql, tuple(sorted((read & SCRATCH_TABLES) | b.tables_read)))
    if problems:
        raise RuleRefused(f"rule {loaded.rule.id}: refused, nothing was run: " + "; ".join(problems))
    return CompiledRule(loaded.rule, sql, b.params, b.referenced, bool(getattr(loaded, "current_state", False)),
                        tuple(b.inline))


# Tables of the analysis tools' own in-memory DuckDB (analysis.series replaces a rule's query by
# `SELECT ... FROM series`); a compiled rule may read one only when its catalogue entry says so.
SCRATCH_TABLES = frozenset({"series"})


# The code a statement's verdict depends on: a change to any of it invalidates the cached verdicts.
_CHECKING_CODE = ("rules/sql_check.py", "rules/sql_functions.py", "warehouse/schema.py", "engine/compile.py")


@lru_cache(maxsize=1)
def _checking_signature() -> str:
    import hashlib

    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in _CHECKING_CODE:
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=256)
def statement_problems_of(sql: str, scratch_tables: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Why a compiled statement may not run, in either warehouse dialect (empty: it may).

    Parsing a compound rule's statement in both dialects takes seconds, and every check task is a
    process of its own: a statement found fit is remembered on disk, in the catalogue's cache
    (``$AIRFLOW_HOME/storefence-cache/statements/``), under the hash of its text, the tables it may
    read and the checking code. Only a pass is remembered; a refusal is checked again every time."""
    import hashlib

    from threshold_operators.rules.catalogue import _cache_dir

    folder = _cache_dir()
    key = hashlib.sha256("\0".join([sql, *scratch_tables, _checking_signature()]).encode()).hexdigest()
    mark = folder / "statements" / f"{key}.ok" if folder is not None else None
    if mark is not None and mark.is_file():
        return ()
    problems = _statement_problems(sql, scratch_tables)
    if not problems and mark is not None:
        try:
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.touch()
        except OSError:
            pass  # a read-only home: checked every time
    return problems


def _statement_problems(sql: str, scratch_tables: tuple[str, ...]) -> tuple[str, ...]:
    import sqlglot
    from sqlglot.errors import ParseError

    from threshold_operators.rules.sql_check import _warehouse_schema, statement_problems

    out: list[str] = []
    for dialect in ("duckdb", "postgres"):
        try:
            statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
        except ParseError as exc:
            out.append(f"does not parse as {dialect} SQL: {str(exc).splitlines()[0]}")
            continue
        if len(statements) != 1:
            out.append(f"{len(statements)} statements ({dialect}); a rule is one SELECT")
            continue
        out += [msg for _, msg in statement_problems(statements[0], _warehouse_schema(), set(scratch_tables))]
    return tuple(dict.fromkeys(out))


def threshold_of(rule: Rule, severity: str | None) -> float | None:
    """The threshold of the primary condition that a breach at ``severity`` crossed."""
    cond = rule.primary
    if cond.rule is not None or severity is None:
        return None
    thresholds = cond.thresholds(rule.severity)
    if severity in thresholds:
        return thresholds[severity]
    return thresholds[max(thresholds, key=LEVEL.get)] if thresholds else None



def scored_sql(compiled: CompiledRule) -> str:
    """The compiled statement up to its ``scored`` step: every evaluated row with its metrics,
    baselines, compared values and level, before the final filter keeps the breaching ones (for
    plots and benchmarks; a cycle itself never needs it)."""
    tail = "SELECT * FROM final"
    sql = compiled.sql.rstrip()
    if not sql.endswith(tail):
        raise ValueError("not a compiled rule statement")
    return sql[: -len(tail)] + "SELECT * FROM scored"
