"""Rule unit tests as data, in the manner of Prometheus' ``promtool test rules``.

A test file (``tests/rules/*.yaml``) holds cases; each gives a rule, input metric series, and
the alerts expected at evaluation times::

    tests:
      - name: a busy SKU at three times its usual hour fires red
        rule: sales.order_spike
        start: 2026-08-03T00:00:00Z          # the first hour of the series
        step: 1h                            # optional: a value an hour (the default; 5m: every 5 minutes)
        series:
          - entity: shop_id=s1/sku=A        # the entity's key columns, as alerts show them
            orders: "12x1008 40 12x3"       # values hour by hour: VxN repeats V N times; _ is missing;
                                            # (V W)xN repeats a group (a day's profile)
        set: [min_volume.0.at_least=5]      # optional overrides, as `storefence backtest --set`
        eval:
          - at: 2026-09-14T01:00:00Z        # the cycle ending here, [at - every, at)
            alerts: [{entity: shop_id=s1/sku=A, severity: red}]
          - at: 2026-09-14T03:00:00Z
            alerts: []                      # nothing firing: a quiet case

The series replace the rule's metric query (``analysis.series``); everything else is the rule
as written, compiled by the engine the DAGs use. The alerts at ``at`` are the entities whose
latest state in that cycle is firing, with their severity; the expected list must match exactly.

A series gives one value per ``step`` (an optional case field, a duration): by default the rule's
grain (an hour, a local day), except an hour for a 5-minute rule, so hourly series read as they
always did. A 5-minute rule takes any whole number of 5-minute buckets (``step: 5m`` for a value
every 5 minutes). A coarser value becomes the rule's 5-minute buckets (``series.to_grain``): the
count of a rolling rule (``window:``) is spread evenly over the 12 slices of its hour, so
``orders: "12x1008 40"`` is one order every 5 minutes, then 40 in the hour; a current state
(stock cover, hours of stock) holds for each 5 minutes of its hour. ``at`` is on a bucket
boundary of the rule (any 5 minutes for a 5-minute rule) and evaluates the cycle ``[at - every,
at)``: for a rule evaluated every 5 minutes, the bucket ending at ``at``, which for a rolling rule
is the window ending at ``at`` (``at: 03:00`` with a 1-hour window: the orders of 02:00-03:00).
Run them with ``storefence test-rules [PATH]``; pytest collects them too (``tests/rules/conftest.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path


class RuleTestError(ValueError):
    pass


@dataclass
class Case:
    file: Path
    line: int
    name: str
    rule: str
    start: datetime
    series: list[dict]
    evals: list[dict]
    settings: list[str] = field(default_factory=list)
    step: timedelta | None = None  # spacing of the series' values (None: series.default_step)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


_GROUP = re.compile(r"\(([^()]*)\)x(\d+)")


def expand(values: str, where: str) -> list[float | None]:
    """``"12x3 40 _ _x2"`` -> [12, 12, 12, 40, None, None, None]; ``"(0x8 1.25x16)x2"`` repeats the
    group: a day's profile over several days."""
    text = str(values)
    while _GROUP.search(text):
        text = _GROUP.sub(lambda m: " ".join([m.group(1)] * int(m.group(2))), text)
    out: list[float | None] = []
    for token in text.split():
        value, _, times = token.partition("x")
        try:
            n = int(times) if times else 1
            v = None if value == "_" else float(value)
        except ValueError:
            raise RuleTestError(f"{where}: {token!r} is not a value, VxN, (group)xN or _") from None
        out += [v] * n
    return out


def load_cases(path: Path) -> list[Case]:
    """The cases of one test file; RuleTestError names the file, line and field of a problem."""
    from threshold_operators import located_yaml
    from threshold_operators.durations import parse_duration

    try:
        doc, lines = located_yaml.load(path)
    except located_yaml.ConfigFileError as exc:
        raise RuleTestError(str(exc)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
        raise RuleTestError(f"{path}:1: tests: expected a list of test cases")
    cases = []
    for i, t in enumerate(doc["tests"]):
        line = lines.get(("tests", i), 1)
        where = f"{path}:{line}"
        for key in ("name", "rule", "start", "series", "eval"):
            if key not in t:
                raise RuleTestError(f"{where}: tests.{i}.{key}: required")
        unknown = set(t) - {"name", "rule", "start", "series", "eval", "set", "step"}
        if unknown:
            raise RuleTestError(f"{where}: tests.{i}.{sorted(unknown)[0]}: unknown field")
        step = None
        if t.get("step") is not None:
            try:
                step = parse_duration(t["step"])
            except ValueError as exc:
                raise RuleTestError(f"{path}:{lines.get(('tests', i, 'step'), line)}: tests.{i}.step: {exc}") from None
        start = _ts(t["start"], where)
        for j, ev in enumerate(t["eval"]):
            if "at" not in ev or "alerts" not in ev:
                raise RuleTestError(f"{path}:{lines.get(('tests', i, 'eval', j), line)}: tests.{i}.eval.{j}: "
                                    "needs at and alerts")
        cases.append(Case(path, line, str(t["name"]), str(t["rule"]), start, list(t["series"]), list(t["eval"]),
                          list(t.get("set") or []), step))
    return cases


def _ts(value, where: str, resolution: timedelta = timedelta(minutes=5)) -> datetime:
    """A case's ``start`` or ``at`` (YAML may have parsed it already), on a whole ``resolution``."""
    from threshold_operators.analysis.series import parse_ts

    return parse_ts(value if isinstance(value, str) else value.isoformat(), where, resolution)


def rows_of(case: Case, rule, lookup) -> list[dict]:
    """The case's series as rows of the rule's buckets: a value every ``step`` from ``start``,
    made into the rule's grain by ``series.to_grain``."""
    from threshold_operators.analysis.series import check_step, default_step, entity_keys, to_grain

    step = check_step(rule, case.step or default_step(rule), case.where)
    rows: dict[tuple, dict] = {}
    for s in case.series:
        keys = entity_keys(rule, str(s.get("entity") or "all"))
        for metric, values in s.items():
            if metric == "entity":
                continue
            for h, v in enumerate(expand(values, f"{case.where}: series {metric}")):
                t = case.start + h * step  # hour by hour, day by day for a day-grain rule, or every step
                row = rows.setdefault((t, *keys.values()), {"bucket": t, **keys})
                row[metric] = v
    return to_grain(list(rows.values()), rule, lookup, step)


def run_case(case: Case, catalogue) -> list[str]:
    """The case's failures (empty: it passed)."""
    from threshold_operators.analysis.overrides import apply_overrides
    from threshold_operators.analysis.series import SeriesError, warehouse_for
    from threshold_operators.engine.compile import compile_rule
    from threshold_operators.engine.evaluate import evaluate

    if case.rule not in catalogue.rules:
        return [f"{case.where}: unknown rule {case.rule!r}"]
    loaded = apply_overrides(catalogue.get(case.rule), case.settings)
    try:
        rows = rows_of(case, loaded.rule, catalogue.get)
        ats = [_ts(ev["at"], case.where, loaded.rule.grain_delta) for ev in case.evals]
    except (SeriesError, RuleTestError) as exc:
        return [str(exc)]
    wh, rule, lookup = warehouse_for(loaded, catalogue.get, rows)
    failures = []
    try:
        compiled = compile_rule(rule, lookup, source="query")
        for ev, at in zip(case.evals, ats, strict=True):
            result = evaluate(compiled, wh.query, at - loaded.rule.every, at, now=at)
            latest: dict[str, object] = {}
            for r in sorted(result.results, key=lambda r: r.bucket):
                latest[r.entity_key] = r
            got = sorted((k, r.severity) for k, r in latest.items() if str(r.state) == "firing")
            want = sorted((str(a["entity"]), str(a["severity"])) for a in ev["alerts"])
            if got != want:
                failures.append(f"{case.where}: {case.name}: at {at.isoformat()} expected {_show(want)}, got {_show(got)}")
    finally:
        wh.dispose()
    return failures


def _show(alerts) -> str:
    return "[" + ", ".join(f"{k} {s}" for k, s in alerts) + "]" if alerts else "no alert"


def test_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.yaml")) if path.is_dir() else [path]
