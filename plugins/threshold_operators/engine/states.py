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
data: a backfill of a window gives what the live run gave.
"""

from __future__ import annotations

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

    @property
    def entity_key(self) -> str:
        return "/".join(f"{k}={v}" for k, v in self.entity.items())


def _in_window(rule: Rule, bucket: datetime, start: datetime, end: datetime) -> bool:
    return start < bucket + rule.grain_delta <= end


def entity_states(rule: Rule, rows: list[dict], start: datetime, end: datetime) -> list[BucketResult]:
    """Every (entity, bucket) of the window ``[start, end)`` that is pending, firing or resolved."""
    by_entity: dict[tuple, list[dict]] = {}
    for row in rows:
        by_entity.setdefault(tuple(row[k] for k in rule.keys), []).append(row)
    out: list[BucketResult] = []
    for key, entity_rows in sorted(by_entity.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        entity_rows.sort(key=lambda r: r["bucket"])
        out.extend(_walk(rule, dict(zip(rule.keys, key, strict=True)), entity_rows, start, end))
    return out


def _walk(rule: Rule, entity: dict, rows: list[dict], start: datetime, end: datetime) -> list[BucketResult]:
    g = rule.grain_delta
    out: list[BucketResult] = []
    streak, firing, severity = 0, False, None
    prev: datetime | None = None
    last_breach: datetime | None = None

    def emit(bucket, state, sev, row):
        if _in_window(rule, bucket, start, end):
            out.append(BucketResult(entity, bucket, state, sev, row))

    for row in rows:
        t = row["bucket"]
        if prev is not None and t - prev != g:  # quiet buckets in between
            if firing:
                emit(prev + g, State.RESOLVED, None, {})
            streak, firing, severity = 0, False, None
        level = int(row["level"] or 0)
        if level > 0:
            streak += 1
            last_breach = t
            if firing or streak >= rule.for_:
                firing, severity = True, SEVERITY_OF_LEVEL[level]
                emit(t, State.FIRING, severity, row)
            else:
                emit(t, State.PENDING, SEVERITY_OF_LEVEL[level], row)
        else:  # held between the recover and breach thresholds
            streak = 0
            if firing and last_breach is not None and t - last_breach <= rule.hold_for:
                emit(t, State.FIRING, severity, row)
            elif firing:
                emit(t, State.RESOLVED, None, row)
                firing, severity = False, None
        prev = t
    if firing and prev is not None:
        emit(prev + g, State.RESOLVED, None, {})
    return out
