"""Alert states from the warehouse's candidate rows: one pure function, no clock, no database.

The compiled SQL returns, per entity, only the buckets that breach (``level > 0``) or are held
between the recover and breach thresholds (``hold``). Walking those buckets in data-time order
gives each entity's state at every bucket of the window, as Prometheus' alerting rules do:

- a breach starts a streak; ``for`` consecutive breaching buckets make it **firing** (before
  that it is **pending**); the severity is the breaching bucket's level;
- a firing alert stays firing while the value sits between the recover and breach thresholds,
  for at most ``hold_for`` after its last breach;
- a bucket that is neither (absent from the rows), or a held bucket past ``hold_for``,
  **resolves** a firing alert.

Because the lead-in before the window is part of the rows, the answer depends only on the
data: a backfill of a window gives what the live run gave. A window that continues the one
evaluated last (a live cycle after the cycle before, each cycle of a replay after the first) is
**resumed** instead (``resume=True``): its query computes the window's buckets only, without the
lead-in (``windows.plan_cycle``), and each entity's walk starts where the last one left it
(``Prior``: streak, firing, severity, last breach, the bucket it was at), which is what walking the
lead-in again would rebuild; a gap after the prior's bucket is quiet buckets, as within a walk.

A rule over a **current state** (stock now, parcels in transit now: ``LoadedRule.current_state``)
cannot re-read its past: its query sees one bucket, the window's last, and returns only the
entities that breach or are held there. Its walk therefore starts from ``prior``, each entity's
state after the previous complete evaluation (``Prior``: the live check reads it from
``rule_results``, a replay carries it from cycle to cycle), and an entity of ``prior`` that the
rows no longer contain is quiet at that bucket: a firing alert **resolves** there. A cycle that
is not ``complete`` (a table it reads failed its extract gate) resolves nothing: its entities
keep their prior state until a complete cycle sees them again. Rules over a series use
``prior`` only for an alert their lead-in can no longer see (its last firing bucket lies before
the window's lead-in, e.g. after an incomplete cycle): one that a complete evaluation does not
return as firing resolves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from threshold_operators.rules.model import SEVERITIES, Rule

SEVERITY_OF_LEVEL = {i + 1: s for i, s in enumerate(SEVERITIES)}


class State(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class BucketResult:
    """One entity at one bucket of the window."""

    entity: dict
    bucket: datetime
    state: State
    severity: str | None
    row: dict = field(compare=False, repr=False)  # the candidate row (metrics, baselines); {} when resolved
    level: int = field(default=0, compare=False)  # the bucket's breach level (0: held or resolved)
    last_breach: datetime | None = field(default=None, compare=False, repr=False)  # the streak's latest breach
    streak: int = field(default=0, compare=False, repr=False)  # consecutive breaching buckets up to here

    @property
    def entity_key(self) -> str:
        return entity_key(self.entity)


def entity_key(entity: dict) -> str:
    return "/".join(f"{k}={v}" for k, v in entity.items())


@dataclass(frozen=True)
class Prior:
    """An entity pending or firing after the last complete evaluation: where a walk resumes."""

    entity: dict
    bucket: datetime  # the last bucket observed
    state: State  # pending or firing
    severity: str | None
    streak: int = 1  # consecutive breaching buckets up to ``bucket``
    last_breach: datetime | None = None  # the latest breaching bucket (the recovery hold counts from it)

    @property
    def entity_key(self) -> str:
        return entity_key(self.entity)


def carry(prior: Mapping[str, Prior] | None, results: list[BucketResult], complete: bool = True) -> dict[str, Prior]:
    """The entities pending or firing after an evaluation, for the next one: ``prior`` updated by
    the evaluation's results. An entity a ``complete`` evaluation no longer returns drops out (it
    is quiet now); after an incomplete one it keeps its prior state."""
    out: dict[str, Prior] = {}
    latest: dict[str, BucketResult] = {}
    for r in results:
        if r.entity_key not in latest or r.bucket >= latest[r.entity_key].bucket:
            latest[r.entity_key] = r
    if not complete:
        out.update({key: p for key, p in (prior or {}).items() if key not in latest})
    for key, r in latest.items():
        if r.state == State.RESOLVED:
            out.pop(key, None)
        else:
            out[key] = Prior(dict(r.entity), r.bucket, r.state, r.severity, r.streak, r.last_breach)
    return out


def _in_window(rule: Rule, bucket: datetime, start: datetime, end: datetime) -> bool:
    return start < bucket + rule.grain_delta <= end


def entity_states(rule: Rule, rows: list[dict], start: datetime, end: datetime,
                  prior: Mapping[str, Prior] | None = None, *, current_state: bool = False,
                  complete: bool = True, resume: bool = False) -> list[BucketResult]:
    """Every (entity, bucket) of the window ``[start, end)`` that is pending, firing or resolved.

    ``current_state``: the rows are the rule's observation of the window's last bucket, and the
    walk resumes from ``prior``; an entity of ``prior`` missing from the rows is quiet there.
    ``prior`` of a rule over a series: a firing alert that the window does not show firing or
    resolving resolves at the window's first breaching bucket of the entity, else its last bucket.
    ``complete=False``: nothing resolves (the results carry no resolved state). ``resume``: a rule
    over a series whose rows hold the window's buckets only (no lead-in): each entity's walk
    resumes from ``prior`` (see the module's docstring)."""
    prior = prior or {}
    resume = resume and not current_state
    by_entity: dict[tuple, list[dict]] = {}
    for row in rows:
        by_entity.setdefault(tuple(row[k] for k in rule.keys), []).append(row)
    entities = {entity_key(dict(zip(rule.keys, key, strict=True))): key for key in by_entity}
    last = end - rule.grain_delta
    out: list[BucketResult] = []
    for key, entity_rows in sorted(by_entity.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        entity_rows.sort(key=lambda r: r["bucket"])
        entity = dict(zip(rule.keys, key, strict=True))
        before = prior.get(entity_key(entity))
        if current_state:
            out.extend(_walk(rule, entity, entity_rows, start, end, before, contiguous=False))
        else:
            if resume:
                results = _walk(rule, entity, [r for r in entity_rows if _in_window(rule, r["bucket"], start, end)],
                                start, end, before, resumed=True)
            else:
                results = _walk(rule, entity, entity_rows, start, end)
            out.extend(results)
            if before is not None and before.state == State.FIRING and not any(
                    r.state in (State.FIRING, State.RESOLVED) for r in results):
                at = min((r.bucket for r in results), default=last)
                out.append(BucketResult(entity, at, State.RESOLVED, None, {}))
    for key, before in sorted(prior.items()):  # gone from the rows: quiet at the window's last bucket
        if key not in entities and before.state == State.FIRING and before.bucket < last:
            # resumed: quiet from the bucket after the prior's, as the lead-in's walk would find it
            walked = _walk(rule, dict(before.entity), [], start, end, before, resumed=True) if resume else []
            out.extend(walked or [BucketResult(dict(before.entity), last, State.RESOLVED, None, {})])
    if not complete:
        out = [r for r in out if r.state != State.RESOLVED]
    return sorted(out, key=lambda r: (tuple(str(v) for v in r.entity.values()), r.bucket))


def _walk(rule: Rule, entity: dict, rows: list[dict], start: datetime, end: datetime,
          before: Prior | None = None, contiguous: bool = True, resumed: bool = False) -> list[BucketResult]:
    """One entity's buckets in data-time order. ``contiguous``: the rows are every bucket evaluated,
    so a gap between two rows is quiet buckets; otherwise each row is one observation and the walk
    starts from ``before``. ``resumed``: contiguous rows that continue ``before`` (from its bucket)."""
    g = rule.grain_delta
    out: list[BucketResult] = []
    streak, firing, severity = 0, False, None
    prev: datetime | None = None
    last_breach: datetime | None = None
    if before is not None:
        streak, last_breach = before.streak, before.last_breach
        firing = before.state == State.FIRING
        severity = before.severity if firing else None
        if resumed:
            prev = before.bucket

    def emit(bucket, state, sev, row, level=0):
        if _in_window(rule, bucket, start, end):
            out.append(BucketResult(entity, bucket, state, sev, row, level, last_breach,
                                    streak if state != State.RESOLVED else 0))

    for row in rows:
        t = row["bucket"]
        if contiguous and prev is not None and t - prev != g:  # quiet buckets in between
            if firing:
                emit(prev + g, State.RESOLVED, None, {})
            streak, firing, severity = 0, False, None
        level = int(row["level"] or 0)
        if level > 0:
            streak += 1
            last_breach = t
            if firing or streak >= rule.for_:
                firing, severity = True, SEVERITY_OF_LEVEL[level]
                emit(t, State.FIRING, severity, row, level)
            else:
                emit(t, State.PENDING, SEVERITY_OF_LEVEL[level], row, level)
        else:  # held between the recover and breach thresholds
            streak = 0
            if firing and last_breach is not None and t - last_breach <= rule.hold_for:
                emit(t, State.FIRING, severity, row)
            elif firing:
                emit(t, State.RESOLVED, None, row)
                firing, severity = False, None
        prev = t
    if contiguous and firing and prev is not None:
        emit(prev + g, State.RESOLVED, None, {})
    return out
