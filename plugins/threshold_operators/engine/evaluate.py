"""One evaluation cycle of one rule: compiled SQL in the warehouse, states in Python.

``evaluate(compiled, query, start, end, now)`` takes the query function and the clock as
arguments (the engine opens no connection and reads no clock itself), so tests and backfills
are exact. ``query(sql, params) -> list[dict]`` is normally ``WarehouseQuery(hook)``.

``prior`` is what the engine knew before this cycle: each entity pending or firing after the
previous complete evaluation (``engine.states.Prior``; the check task reads it from
``rule_results``, a replay carries ``Evaluation.carry`` from one cycle to the next). A rule over
a current state needs it to see an entity recover (it is no longer returned); ``complete=False``
(a table the rule reads failed its extract gate) resolves nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from threshold_operators.engine.compile import CompiledRule, threshold_of
from threshold_operators.engine.states import BucketResult, Prior, State, carry, entity_states

Query = Callable[[str, dict], list[dict]]


class Outcome(StrEnum):
    OK = "ok"  # evaluated, nothing firing
    BREACH = "breach"  # at least one entity firing
    UP_TO_DATE = "up_to_date"  # no new complete bucket since the last cycle
    ERROR = "error"  # the warehouse or the rule failed


@dataclass
class Evaluation:
    rule_id: str
    mode: str
    window_start: datetime
    window_end: datetime
    outcome: Outcome
    results: list[BucketResult] = field(default_factory=list)
    candidates: int = 0
    duration_ms: int = 0
    evaluated_at: datetime | None = None
    detail: str | None = None
    carry: dict[str, Prior] = field(default_factory=dict, repr=False)  # the next cycle's prior
    complete: bool = True  # False: a data gate failed; nothing was resolved
    definition: str | None = None  # CompiledRule.definition: what the recorded states were walked under
    _described: list[dict] | None = field(default=None, init=False, repr=False, compare=False)

    def described(self, rule) -> list[dict]:
        """``describe`` of every result, in order, made once: the record and the notification's
        breaches read the same dicts (a rule with hundreds of firing entities made them twice)."""
        if self._described is None:
            self._described = [describe(rule, r) for r in self.results]
        return self._described

    def entities(self, state: State) -> set[str]:
        return {r.entity_key for r in self.results if r.state == state}

    @property
    def firing(self) -> list[BucketResult]:
        return [r for r in self.results if r.state == State.FIRING]

    def breaches(self, rule) -> list[dict]:
        """The latest firing bucket of each entity, for the notification: what, where, how bad."""
        latest: dict[str, tuple[BucketResult, dict]] = {}
        for r, d in zip(self.results, self.described(rule), strict=True):
            if r.state == State.FIRING and (d["entity_key"] not in latest or r.bucket > latest[d["entity_key"]][0].bucket):
                latest[d["entity_key"]] = (r, d)
        return [d for _, (_, d) in sorted(latest.items())]


def describe(rule, r: BucketResult) -> dict:
    """A result as plain JSON-able data (XCom, notification, rule_results.metrics)."""
    primary = rule.primary
    i = rule.conditions.index(primary)
    row = r.row
    return {
        "rule_id": rule.id,
        "entity": {k: str(v) for k, v in r.entity.items()},
        "entity_key": r.entity_key,
        "bucket": r.bucket.isoformat(),
        "state": str(r.state),
        "severity": r.severity,
        "metric": primary.metric,
        "value": _num(row.get(f"v_{i}")),
        "baseline": _num(row.get(f"base_{i}")),
        "threshold": threshold_of(rule, r.severity),
        "metrics": {k: _num(v) for k, v in row.items()
                    if k not in r.entity and k not in ("bucket", "level", "hold", *rule.attributes)
                    and _num(v) is not None},
        "attributes": {k: _plain(row.get(k)) for k in rule.attributes},
    }


def _plain(v):
    if v is None or isinstance(v, (int, float, str, bool)):
        return v
    n = _num(v)
    return n if n is not None else str(v)


def _num(v):
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def warehouse_query(hook) -> Query:
    """The query function over a WarehouseHook: bound parameters, rows as dicts."""

    def query(sql: str, params: dict) -> list[dict]:
        from sqlalchemy import text

        with hook.evaluation_connection() as con:  # read-only, no files, settings locked
            return [dict(r._mapping) for r in con.execute(text(sql), params)]

    return query


def evaluate(compiled: CompiledRule, query: Query, start: datetime, end: datetime,
             now: datetime, clock: Callable[[], float] = time.perf_counter, *,
             prior: dict[str, Prior] | None = None, complete: bool = True, resume: bool = False) -> Evaluation:
    """Evaluate the buckets completing in ``[start, end)``, resuming from ``prior``. ``resume``: the
    window continues the one ``prior`` was left by, so the lead-in is not read again
    (``engine.states``: the walk starts from ``prior``). Errors propagate to the caller, which
    decides between retrying and failing (see ``alerting.failures``)."""
    rule = compiled.rule
    if end <= start:
        return Evaluation(rule.id, rule.mode, start, end, Outcome.UP_TO_DATE, evaluated_at=now,
                          detail="no new complete bucket", carry=dict(prior or {}), complete=complete,
                          definition=compiled.definition)
    t0 = clock()
    rows = query(compiled.sql, compiled.params(start, end, resume=resume))
    results = entity_states(rule, rows, start, end, prior, current_state=compiled.current_state, complete=complete,
                            resume=resume)
    outcome = Outcome.BREACH if any(r.state == State.FIRING for r in results) else Outcome.OK
    return Evaluation(rule.id, rule.mode, start, end, outcome, results, len(rows),
                      int((clock() - t0) * 1000), now,
                      carry=carry(prior, results, complete), complete=complete, definition=compiled.definition)


def evaluate_cycles(compiled: CompiledRule, query: Query, windows, prior: dict[str, Prior] | None = None):
    """Evaluate consecutive ``windows`` ((start, end) pairs) as the live cycles would, each resuming
    from what the one before left pending or firing (``Evaluation.carry``): a replay. Yields each
    cycle's Evaluation. A window that starts where the one before ended resumes from its carry
    without reading the lead-in again (``evaluate(resume=True)``); the first, and one after a gap,
    read it."""
    last_end = None
    for start, end in windows:
        ev = evaluate(compiled, query, start, end, now=end, prior=prior, resume=start == last_end)
        prior, last_end = ev.carry, end
        yield ev
