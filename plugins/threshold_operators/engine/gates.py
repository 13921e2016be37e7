"""Are the tables a rule reads trustworthy right now? The extract's quality and freshness gates.

The extract (``extract.load``) writes a ``data_quality_events`` row when a table's latest load
refused rows into quarantine, found nothing newer than the source's ``max_lag``, or (file drops)
rejected a whole file. A table is *failing* when its latest extract run raised such an event: a
freshness failure or a rejected file always (the rows of a whole file are missing), a quality
failure when it refused more than ``QUARANTINE_SHARE`` of the rows fetched (a few bad rows in a
good batch do not make the rest wrong). The alerting pipeline holds back the business
rules that read a failing table and tells the data engineers instead (``alerting.mute``).
"""

from __future__ import annotations

QUARANTINE_SHARE = 0.05

_SQL = """
SELECT e.table_name, e.kind, e.detail, e.observed_at
FROM data_quality_events e
JOIN (SELECT table_name, MAX(finished_at) AS last_run FROM extract_runs GROUP BY table_name) r
  ON r.table_name = e.table_name AND e.observed_at >= r.last_run
JOIN extract_runs x ON x.table_name = r.table_name AND x.finished_at = r.last_run
WHERE e.table_name IN ({tables})
  AND (e.kind IN ('freshness', 'rejected') OR x.rows_quarantined > :share * x.rows_fetched)
ORDER BY e.table_name, e.kind
"""


def failing_tables(hook, tables) -> dict[str, dict]:
    """table -> {"kind", "detail", "observed_at"} for each of ``tables`` whose latest extract failed a gate."""
    from sqlalchemy import text

    from threshold_operators.warehouse.schema import as_utc

    tables = sorted(set(tables))
    if not tables:
        return {}
    names = {f"t{i}": t for i, t in enumerate(tables)}
    sql = text(_SQL.format(tables=", ".join(f":{k}" for k in names)))
    out: dict[str, dict] = {}
    with hook.engine.connect() as con:
        for r in con.execute(sql, {**names, "share": QUARANTINE_SHARE}).mappings():
            out.setdefault(r["table_name"], {"kind": r["kind"], "detail": r["detail"],
                                             "observed_at": as_utc(r["observed_at"]).isoformat()})
    return out
