"""What the engine keeps in the warehouse, and where each rule's evaluation has got to.

- ``rule_evaluations``: one row per rule and cycle (window, outcome, counts, duration).
- ``rule_results``: one row per entity and bucket that was pending, firing or resolved, with
  value, baseline, threshold, severity and every metric (JSON). Keyed by (rule, entity,
  bucket), written by upsert: a retry or a backfill of the same window never duplicates.
- ``rule_states``: each rule and entity's newest ``rule_results`` row, moved by the loader in
  the same transaction (``schema.LATEST_OF``): what the next cycle resumes from.
  The metrics JSON of a pending or firing row also keeps where the state walk stood (``level``,
  ``streak``, ``last_breach``): ``previous_states`` reads it back as the next cycle's prior, so a
  rule over a current state resolves an entity the next complete cycle no longer returns.

Both histories are kept ``KEEP_RESULTS`` (90 days): once a day a domain's ``evaluate`` task
deletes its rules' older rows (``prune``; ``rule_states`` and each rule's newest evaluation stay).

``landed_until`` is how far the data of a rule's tables is complete: the oldest high-water
mark among them (from ``extract_runs``, a sparse table's raised to its source's latest run; or
the table itself when nothing was extracted, e.g. a simulated warehouse). A stalled extract therefore holds its rules back instead of
letting them read a half-loaded hour as a collapse in sales.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from threshold_operators.engine.evaluate import Evaluation
from threshold_operators.engine.states import BucketResult, Prior, State
from threshold_operators.rules.model import Rule
from threshold_operators.warehouse.schema import arrow_table, as_utc, table_spec

DIMENSIONS = ("shops", "products", "warehouses")  # read whole; they do not say how far the facts have landed
WALK_KEYS = ("level", "streak", "last_breach")  # the state walk's position, kept in rule_results.metrics
INCOMPLETE = "incomplete (failing data gates"  # how rule_evaluations.detail tells an incomplete cycle


def _scalar(hook, sql: str, params: dict):
    from sqlalchemy import text

    with hook.engine.connect() as con:
        return con.execute(text(sql), params).scalar()


def landed_until(hook, tables: tuple[str, ...], marks: dict | None = None) -> datetime | None:
    """The oldest high-water mark among the fact ``tables`` (None if one of them is empty).

    A table's mark is the latest change it holds, or, when its source read the other tables of
    the same run further (a sparse table: no complaint for an hour), the furthest of those: the
    source served them all at once, so the sparse table had nothing newer. Without that, a rule
    reading complaints would wait for the next complaint before evaluating anything."""
    found = []
    for table in tables:
        if table in DIMENSIONS:
            continue
        if marks is None or table not in marks:
            own = table_mark(hook, table)
            if marks is not None:
                marks[table] = own
        else:
            own = marks[table]
        if own is None:
            return None
        found.append(own)
    return min(found) if found else None


def table_mark(hook, table: str) -> datetime | None:
    """How far ``table`` has landed (``landed_until``, one table; None: nothing yet)."""
    mark = _scalar(hook, "SELECT MAX(s.high_water_mark) FROM extract_runs s JOIN ("
                         "  SELECT r.run_id, r.source FROM extract_runs r WHERE r.table_name = :t "
                         "  ORDER BY r.finished_at DESC LIMIT 1) latest "
                         "ON s.run_id = latest.run_id AND s.source = latest.source", {"t": table})
    own = _scalar(hook, "SELECT MAX(high_water_mark) FROM extract_runs WHERE table_name = :t", {"t": table})
    if own is None:
        column = table_spec(table).updated_field
        own = _scalar(hook, f"SELECT MAX({column}) FROM {table}", {})  # noqa: S608 - schema identifiers
    if own is None:
        return None
    return max(as_utc(own), as_utc(mark)) if mark is not None else as_utc(own)


@dataclass(frozen=True)
class LastEvaluation:
    """The rule's last recorded evaluation (not an error): where it ended, whether it was complete
    (no failing data gate), and the definition it evaluated (``CompiledRule.definition``)."""

    end: datetime | None = None
    complete: bool = False
    definition: str | None = None

    def resumable(self, start: datetime, definition: str) -> bool:
        """Whether a cycle from ``start`` under ``definition`` resumes from the recorded states
        (``live_evaluation(resume=...)``): it continues this evaluation, which was complete, of the
        same definition. After an incomplete one the lead-in is read again, so rows that landed
        late count for persistence as they would have; after an edit of the rule (or one recorded
        before definitions were), so a streak counted under the old thresholds does not carry over."""
        return self.complete and self.end == start and self.definition == definition


def last_evaluation(hook, rule_id: str) -> LastEvaluation:
    """The rule's last recorded evaluation (``LastEvaluation``; empty when there is none)."""
    from sqlalchemy import text

    sql = text("SELECT window_end, detail, definition FROM rule_evaluations WHERE rule_id = :r "
               "AND outcome <> 'error' ORDER BY window_end DESC LIMIT 1")
    with hook.engine.connect() as con:
        row = con.execute(sql, {"r": rule_id}).first()
    if row is None:
        return LastEvaluation()
    return LastEvaluation(as_utc(row[0]), INCOMPLETE not in (row[1] or ""), row[2])


def floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def floor_to(t: datetime, step: timedelta) -> datetime:
    """``t`` down to a whole ``step`` (5 minutes, an hour) of the UTC clock."""
    base = floor_hour(t) if step <= timedelta(hours=1) else t.replace(hour=0, minute=0, second=0, microsecond=0)
    return base + ((t - base) // step) * step


def next_window(rule: Rule, last_end: datetime | None, landed: datetime | None,
                max_catchup: timedelta) -> tuple[datetime, datetime, str | None]:
    """(start, end, note) of the next cycle: from where the last one ended to the last complete
    hour (of a 5-minute rule: the last complete 5-minute slice) of landed data, at most
    ``max_catchup`` long. start == end means nothing to do."""
    if landed is None:
        return (last_end, last_end, "no data landed yet") if last_end else (datetime.min, datetime.min, "no data")
    end = floor_to(landed, min(rule.grain_delta, timedelta(hours=1)))
    if last_end is None:
        return end - rule.every, end, "first evaluation"
    if end - last_end < rule.every:
        return last_end, last_end, f"less than {rule.every} of new data since {last_end.isoformat()}"
    if end - last_end > max_catchup:
        return end - max_catchup, end, (f"caught up from {last_end.isoformat()}; older buckets are left to a "
                                        f"backfill (storefence backtest)")
    return last_end, end, None


def record(hook, evaluation: Evaluation, rule: Rule, run_id: str | None) -> None:
    """Write the cycle and its entity results; idempotent for the same window."""
    record_many(hook, [(evaluation, rule)], run_id)


def record_many(hook, evaluations: list[tuple[Evaluation, Rule]], run_id: str | None) -> None:
    """Write several rules' cycles and results in one transaction (a domain's cycle: one upsert per
    table and one commit instead of one per rule); all or none, idempotent for the same windows."""
    from threshold_operators.warehouse.bulk_load import bulk_loader

    if not evaluations:
        return
    cycles: dict[str, list] = {}
    results: dict[str, list] = {}
    for ev, rule in evaluations:
        for column, values in _cycle_columns(ev, rule, run_id).items():
            cycles.setdefault(column, []).extend(values)
        for column, values in _result_columns(ev, rule).items():
            results.setdefault(column, []).extend(values)
    with bulk_loader(hook) as loader:
        loader.upsert("rule_evaluations", arrow_table("rule_evaluations", cycles))
        if results.get("rule_id"):
            loader.upsert("rule_results", arrow_table("rule_results", results))


KEEP_RESULTS = timedelta(days=90)  # how long rule_results and rule_evaluations keep a rule's history


def crosses_midnight(summaries) -> bool:
    """Whether an evaluated window of ``summaries`` (``window_start``/``window_end``, ISO) crosses a
    UTC midnight in data time: once a day for a rule evaluated every 5 minutes, whatever the clock.
    Pure."""
    for s in summaries:
        a, b = s.get("window_start"), s.get("window_end")
        if a and b and datetime.fromisoformat(a).date() != datetime.fromisoformat(b).date():
            return True
    return False


def prune(hook, rule_ids: list[str], before: datetime) -> tuple[int, int]:
    """Delete the history of ``rule_ids`` older than ``before``: ``rule_results`` rows of earlier
    buckets, and ``rule_evaluations`` rows that ended before it but each rule's newest (what the
    next cycle continues from). ``rule_states`` keeps every entity's newest state whatever its age,
    so a walk resumes as before. One transaction; (results, evaluations) deleted.

    A current-state rule writes every firing entity every cycle (``inventory.stock_cover`` with
    500 SKUs low: about 1,100 rows each 5 minutes, 117 million a year); without this nothing
    bounds the table."""
    from sqlalchemy import bindparam, text

    if not rule_ids:
        return 0, 0
    ids = bindparam("ids", expanding=True)
    with hook.engine.begin() as con:
        results = con.execute(text("DELETE FROM rule_results WHERE rule_id IN :ids AND bucket < :before")
                              .bindparams(ids), {"ids": list(rule_ids), "before": before}).rowcount
        evaluations = con.execute(text(
            "DELETE FROM rule_evaluations WHERE rule_id IN :ids AND window_end < :before AND window_end < "
            "(SELECT MAX(e.window_end) FROM rule_evaluations e WHERE e.rule_id = rule_evaluations.rule_id)")
            .bindparams(ids), {"ids": list(rule_ids), "before": before}).rowcount
    return max(results or 0, 0), max(evaluations or 0, 0)


def _cycle_columns(ev: Evaluation, rule: Rule, run_id: str | None) -> dict[str, list]:
    """The cycle's ``rule_evaluations`` row, column by column."""
    return {
        "rule_id": [rule.id], "window_start": [ev.window_start], "window_end": [ev.window_end],
        "mode": [rule.mode], "outcome": [str(ev.outcome)],
        "firing": [len({r.entity_key for r in ev.firing})],
        "pending": [len({r.entity_key for r in ev.results if r.state == "pending"})],
        "resolved": [len({r.entity_key for r in ev.results if r.state == "resolved"})],
        "candidates": [ev.candidates], "detail": [ev.detail], "duration_ms": [ev.duration_ms],
        "run_id": [run_id], "evaluated_at": [ev.evaluated_at], "definition": [ev.definition],
    }


def _result_columns(ev: Evaluation, rule: Rule) -> dict[str, list]:
    """The cycle's ``rule_results`` rows (an entity and bucket pending, firing or resolved), column by column."""
    if not ev.results:
        return {}
    rows = ev.described(rule)
    return {
        "rule_id": [rule.id] * len(rows),
        "entity_key": [d["entity_key"] for d in rows],
        "bucket": [r.bucket for r in ev.results],
        "state": [d["state"] for d in rows],
        "severity": [d["severity"] for d in rows],
        "value": [d["value"] for d in rows],
        "baseline": [d["baseline"] for d in rows],
        "threshold": [d["threshold"] for d in rows],
        "entity": [json.dumps(d["entity"], ensure_ascii=False) for d in rows],
        "metrics": [json.dumps({**d["metrics"], **d.get("attributes", {}), **_walk_position(r)},
                               ensure_ascii=False, default=str) for d, r in zip(rows, ev.results, strict=True)],
        "mode": [rule.mode] * len(rows),
        "window_end": [ev.window_end] * len(rows),
        "evaluated_at": [ev.evaluated_at] * len(rows),
    }


def _walk_position(r: BucketResult) -> dict:
    if r.state == State.RESOLVED:
        return {}
    return {"level": r.level, "streak": r.streak,
            "last_breach": r.last_breach.isoformat() if r.last_breach is not None else None}


def previous_states(hook, rule: Rule, before: datetime) -> dict[str, Prior]:
    """Each entity pending or firing according to its latest ``rule_results`` row before ``before``
    (the state the engine left it in; ``evaluate(prior=...)``). A pending entity counts only from
    the bucket just before: an older streak was broken by the cycles in between.

    A live cycle starts where the last one ended, so every entity's newest row is before it: the
    rows come from ``rule_states`` (one per entity, kept with the results), and the cost does not
    grow with the results history. A window evaluated again (a backfill, an explicit window) finds
    newer rows there and groups ``rule_results`` before ``before`` instead: the same answer."""
    from sqlalchemy import text

    now = text(f"SELECT {_PRIOR_COLUMNS} FROM rule_states r WHERE r.rule_id = :rule_id "  # noqa: S608 - constants
               "AND (r.state IN ('pending', 'firing') OR r.bucket >= :before)")
    with hook.engine.connect() as con:
        rows = [dict(r._mapping) for r in con.execute(now, {"rule_id": rule.id, "before": before})]
    if any(as_utc(r["bucket"]) >= before for r in rows):
        return history_states(hook, rule, before)
    return _priors(rows, rule, before)


_PRIOR_COLUMNS = "r.entity_key, r.entity, r.bucket, r.state, r.severity, r.metrics"


def history_states(hook, rule: Rule, before: datetime) -> dict[str, Prior]:
    """``previous_states`` from the results history: each entity's latest ``rule_results`` row
    before ``before`` (what a window evaluated again resumes from)."""
    from sqlalchemy import text

    sql = text(f"SELECT {_PRIOR_COLUMNS} FROM rule_results r "  # noqa: S608 - constant columns
               "JOIN (SELECT entity_key, MAX(bucket) AS bucket FROM rule_results "
               "      WHERE rule_id = :rule_id AND bucket < :before GROUP BY entity_key) m "
               "  ON m.entity_key = r.entity_key AND m.bucket = r.bucket "
               "WHERE r.rule_id = :rule_id AND r.state IN ('pending', 'firing')")
    with hook.engine.connect() as con:
        rows = [dict(r._mapping) for r in con.execute(sql, {"rule_id": rule.id, "before": before})]
    return _priors(rows, rule, before)


def _priors(rows: list[dict], rule: Rule, before: datetime) -> dict[str, Prior]:
    out: dict[str, Prior] = {}
    for r in rows:
        bucket, walk = as_utc(r["bucket"]), json.loads(r["metrics"] or "{}")
        if r["state"] == "pending" and bucket < before - rule.grain_delta:
            continue
        last = walk.get("last_breach")
        out[r["entity_key"]] = Prior(
            json.loads(r["entity"] or "{}"), bucket, State(r["state"]), r["severity"],
            int(walk.get("streak") or 1),
            # rows written before the walk kept its position: their bucket was a breach
            as_utc(datetime.fromisoformat(last)) if last else (bucket if "last_breach" not in walk else None))
    return out


def live_evaluation(hook, compiled, start: datetime, end: datetime, now: datetime,
                    failing_gates: dict | None = None, *, resume: bool = False) -> Evaluation:
    """The check task's cycle over ``[start, end)``: it resumes from what ``rule_results`` left
    pending or firing, so an entity a complete cycle no longer returns resolves; a table the rule
    reads that failed its extract gate (``failing_gates``) makes the cycle incomplete: it
    resolves nothing, and its entities keep their state until a complete cycle sees them.
    ``resume``: the last recorded evaluation ended at ``start`` and was complete
    (``last_evaluation``), so the walk resumes from its states without reading the lead-in
    (``engine.states``)."""
    from threshold_operators.engine.evaluate import evaluate, warehouse_query

    ev = evaluate(compiled, warehouse_query(hook), start, end, now=now,
                  prior=previous_states(hook, compiled.rule, start), complete=not failing_gates, resume=resume)
    if failing_gates:
        ev.detail = f"{INCOMPLETE}: " + ", ".join(sorted(failing_gates)) + "): nothing resolved"
    return ev


def window_results(hook, rule: Rule, window_end) -> tuple[list[dict], dict[str, str]]:
    """Every entity's outcome of the evaluation that ended at ``window_end``, as the check task's
    XCom would carry it (``breaches``, ``resolved_at``) but without its size cap: the latest
    firing bucket of each entity, and the entities whose latest state is resolved, with its bucket."""
    from sqlalchemy import text

    sql = text("SELECT entity_key, bucket, state, severity, value, baseline, threshold, entity, metrics "
               "FROM rule_results WHERE rule_id = :rule_id AND window_end = :window_end "
               "AND state IN ('firing', 'resolved') ORDER BY entity_key, bucket")
    with hook.engine.connect() as con:
        rows = [dict(r._mapping) for r in con.execute(sql, {"rule_id": rule.id, "window_end": window_end})]
    latest: dict[str, dict] = {}
    last: dict[str, dict] = {}
    for r in rows:  # ordered by entity and bucket
        last[r["entity_key"]] = r
        if r["state"] == "firing":
            latest[r["entity_key"]] = r
    resolved = {k: as_utc(r["bucket"]).isoformat() for k, r in last.items() if r["state"] == "resolved"}
    primary = rule.primary
    breaches = []
    for key, r in sorted(latest.items()):
        metrics = json.loads(r["metrics"] or "{}")
        breaches.append({
            "rule_id": rule.id, "entity": json.loads(r["entity"] or "{}"), "entity_key": key,
            "bucket": as_utc(r["bucket"]).isoformat(), "state": "firing", "severity": r["severity"],
            "metric": primary.metric, "value": _float(r["value"]), "baseline": _float(r["baseline"]),
            "threshold": _float(r["threshold"]),
            "metrics": {k: v for k, v in metrics.items() if k not in rule.attributes and k not in WALK_KEYS},
            "attributes": {k: metrics.get(k) for k in rule.attributes},
        })
    return breaches, dict(sorted(resolved.items()))


def _float(v):
    return None if v is None else float(v)
