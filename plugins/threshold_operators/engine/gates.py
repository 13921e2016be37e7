"""Are the tables a rule reads trustworthy right now? The extract's quality and freshness gates.

The extract (``extract.load``) writes a ``data_quality_events`` row when a table's latest load
refused rows into quarantine, found nothing newer than the source's ``max_lag``, or (file drops)
rejected a whole file. A table is *failing* when its latest extract run raised such an event: a
freshness failure or a rejected file always (the rows of a whole file are missing), a quality
failure when enough rows say so:

- the share is taken over the table's latest runs pooled, newest first, until they fetched at
  least ``min_rows`` rows (the suite's ``min_rows``, 200 by default; runs of the last
  ``LOOKBACK`` only). A 5-minute batch of 70 rows with 4 bad ones is noise, not a verdict; the
  same 6% over the last 300 rows is one. Pooling (rather than judging each batch alone) keeps a
  table of small batches from never getting a verdict at all;
- fewer rows than ``min_rows`` in the whole lookback: no verdict, the table is not failing (the
  bad rows are still quarantined and their event recorded, for people to see);
- failing when more than ``max_refused`` (5% by default) of the pooled rows were refused.

Rows held for a late parent (``extract.holding``) are not refused and count for nothing here.
The alerting pipeline holds back the rules that fire on low values and read a failing table,
marks the others "data incomplete", and tells the data engineers once per failure
(``alerting.data_gates``).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

QUARANTINE_SHARE = 0.05  # a suite's max_refused by default
MIN_ROWS = 200  # a suite's min_rows by default
LOOKBACK = timedelta(hours=24)  # runs older than this before the latest one are not pooled

_EVENTS = """
SELECT e.table_name, e.kind, e.detail, e.observed_at, r.last_run
FROM data_quality_events e
JOIN (SELECT table_name, MAX(finished_at) AS last_run FROM extract_runs GROUP BY table_name) r
  ON r.table_name = e.table_name AND e.observed_at >= r.last_run
WHERE e.table_name IN ({tables})
ORDER BY e.table_name, e.kind
"""
_RUNS = """
SELECT table_name, rows_fetched, rows_quarantined, finished_at
FROM extract_runs
WHERE table_name IN ({tables}) AND finished_at >= :since
ORDER BY table_name, finished_at DESC
"""


def quality_verdict(runs, min_rows: int = MIN_ROWS, share: float = QUARANTINE_SHARE) -> tuple[bool, int, int, int]:
    """(failing, rows pooled, rows refused, runs pooled) from ``runs``: (fetched, refused) newest first."""
    fetched = refused = n = 0
    for f, q in runs:
        fetched, refused, n = fetched + (f or 0), refused + (q or 0), n + 1
        if fetched >= min_rows:
            break
    return fetched >= min_rows and refused > share * fetched, fetched, refused, n


def _settings(table: str) -> tuple[int, float]:
    from threshold_operators.extract.quality_gate import load_suite

    try:
        suite = load_suite(table)
    except Exception:  # noqa: BLE001 - a broken suite is the extract's problem; judge with the defaults
        return MIN_ROWS, QUARANTINE_SHARE
    return suite.min_rows, suite.max_refused


def failing_tables(hook, tables, settings=_settings) -> dict[str, dict]:
    """table -> {"kind", "detail", "observed_at"} for each of ``tables`` whose latest extract failed a gate.
    ``settings``: table -> (min_rows, max_refused)."""
    from sqlalchemy import text

    from threshold_operators.warehouse.schema import as_utc

    tables = sorted(set(tables))
    if not tables:
        return {}
    names = {f"t{i}": t for i, t in enumerate(tables)}
    where = ", ".join(f":{k}" for k in names)
    out: dict[str, dict] = {}
    with hook.engine.connect() as con:
        events = list(con.execute(text(_EVENTS.format(tables=where)), names).mappings())
        quality = {r["table_name"] for r in events if r["kind"] == "quality"}
        runs: dict[str, list] = defaultdict(list)
        if quality:
            # each table's runs of the LOOKBACK before its own latest run
            since = {r["table_name"]: as_utc(r["last_run"]) - LOOKBACK for r in events if r["table_name"] in quality}
            for r in con.execute(text(_RUNS.format(tables=where)), {**names, "since": min(since.values())}).mappings():
                if r["table_name"] in since and as_utc(r["finished_at"]) >= since[r["table_name"]]:
                    runs[r["table_name"]].append((r["rows_fetched"], r["rows_quarantined"]))
    for r in events:
        table, detail = r["table_name"], r["detail"]
        if r["kind"] == "quality":
            min_rows, share = settings(table)
            failing, pooled, refused, n = quality_verdict(runs[table], min_rows, share)
            if not failing:
                continue
            detail = f"{detail}; {refused} of the last {pooled} rows refused ({n} run{'s' * (n > 1)}), " \
                     f"more than {share:.0%}"
        out.setdefault(table, {"kind": r["kind"], "detail": detail, "observed_at": as_utc(r["observed_at"]).isoformat()})
    return out


class CycleFacts:
    """What every rule of a domain's cycle asks the warehouse alike, asked once per cycle: the
    extract gates of the domain's tables (``failing_tables``) and how far each table has landed
    (``engine.record.table_mark``). A domain of six rules reading the same two tables asks twice,
    not six times; the answers are those of the cycle's start (a load landing meanwhile is the
    next cycle's)."""

    def __init__(self, hook, tables):
        self.hook = hook
        self.tables = sorted(set(tables))
        self._failing: dict[str, dict] | None = None
        self._marks: dict[str, object] = {}

    def failing_tables(self, tables) -> dict[str, dict]:
        if self._failing is None or not set(tables) <= set(self.tables):
            self.tables = sorted(set(self.tables) | set(tables))
            self._failing = failing_tables(self.hook, self.tables)
        return {t: v for t, v in self._failing.items() if t in set(tables)}

    def landed_until(self, tables):
        from threshold_operators.engine.record import landed_until

        return landed_until(self.hook, tables, marks=self._marks)
