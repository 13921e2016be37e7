"""Held rows: a child row whose parent is not loaded yet waits, it is not refused.

An order line can reach the extract before its order: the API pages the tables separately and
the order lands in the next window. Its only fault is a ``references`` check whose parent is
missing, and that is lateness, not bad data. The gate (``quality_gate.validate_batch``) puts such
rows in ``waiting``; the load (``extract.load``) keeps them in ``held_rows`` with what they wait
for, when they were first seen and when to give up (the check's ``wait``, 30 minutes by
default). On every later load of the table, in the load's one transaction, each held row is
looked at again:

- its parents have landed: loaded (the usual upsert) and removed from ``held_rows``, so it is
  loaded once, however often the load is retried (all or nothing);
- a newer version of its key was delivered meanwhile: the newer one wins (loaded, refused or
  held in its place); the old one is dropped;
- it waited past ``give_up_at``: quarantined, reason ``<check>: parent never arrived within 30m``.

Held rows are not refused: they count neither in the gate's quarantine share nor as a
data-quality event. Held rows are looked at on their own table's load: a source loads a table
after the tables it references (``extract.dag_factory._load_order``), so the child's load of a
cycle always follows the parent's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from threshold_operators.durations import format_duration
from threshold_operators.warehouse.schema import arrow_table, as_utc, table_spec


def _when(value) -> datetime | None:
    if value is None:
        return None
    try:
        return as_utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        return None


def _not_older(new, old) -> bool:
    """Is the version ``new`` at least as recent as ``old`` (an unknown version counts as newer)?"""
    a, b = _when(new), _when(old)
    return a is None or b is None or a >= b


def record_key(record: dict, table: str) -> str | None:
    key = table_spec(table).key
    return "|".join(str(record.get(k)) for k in key) if all(k in record for k in key) else None


@dataclass
class Holding:
    """The held rows of one table during one load (read once, kept in step with what is written)."""

    table: str
    rows: dict[str, dict] = field(default_factory=dict)  # record_key -> held_rows row

    @classmethod
    def read(cls, loader, table: str) -> Holding:
        rows = loader.rows(f"SELECT * FROM held_rows WHERE table_name = '{table}'")  # a known table name
        return cls(table, {r["record_key"]: r for r in rows})

    def supersede(self, loader, records: list[dict], waiting: list[dict]) -> int:
        """Drop the held rows of which a version at least as recent was delivered (and is not held
        itself now: that one replaces it in ``hold``). Returns how many were dropped."""
        if not self.rows:
            return 0
        cursor = table_spec(self.table).updated_field
        again = {w["record_key"] for w in waiting}
        gone = []
        for rec in records:
            key = record_key(rec, self.table)
            old = self.rows.get(key)
            if old is not None and key not in again and _not_older(rec.get(cursor) if cursor else None, old["version"]):
                gone.append(key)
                del self.rows[key]
        loader.delete_keys("held_rows", [(self.table, k) for k in dict.fromkeys(gone)])
        return len(set(gone))

    def hold(self, loader, waiting: list[dict], *, source: str, run_id: str, now: datetime) -> int:
        """Hold rows that wait for a parent; a key already held keeps its first sighting (the
        wait runs from then) unless what is held is newer. Returns the rows held."""
        fresh = {}
        for w in waiting:
            old = self.rows.get(w["record_key"])
            if old is not None and not _not_older(w["version"], old["version"]):
                continue  # an older version than the one waiting already
            first = as_utc(old["first_seen"]) if old is not None else now
            give_up = as_utc(old["give_up_at"]) if old is not None else now + w["wait"]
            fresh[w["record_key"]] = {
                "table_name": self.table, "record_key": w["record_key"], "source": source, "run_id": run_id,
                "waiting_for": json.dumps(w["waiting_for"], default=str, ensure_ascii=False),
                "reason": w["failed_checks"], "raw_record": w["raw_record"], "version": w["version"],
                "first_seen": first, "give_up_at": give_up, "held_at": now}
        if fresh:
            rows = list(fresh.values())
            loader.upsert("held_rows", arrow_table("held_rows", {c: [r[c] for r in rows]
                                                                  for c in table_spec("held_rows").columns}))
            self.rows.update(fresh)
        return len(fresh)

    def release(self, loader, now: datetime) -> tuple[list[dict], list[dict]]:
        """The held rows whose parents have landed (records, to load now) and those that waited
        too long (quarantine rows: row_no, record_key, failed_checks, raw_record); both leave
        ``held_rows``."""
        if not self.rows:
            return [], []
        wanted: dict[tuple[str, str], set] = defaultdict(set)
        waits = {k: json.loads(r["waiting_for"]) for k, r in self.rows.items()}
        for refs in waits.values():
            for ref in refs:
                wanted[(ref["table"], ref["column"])].add(ref["value"])
        present = {tc: loader.existing(tc[0], tc[1], sorted(vals, key=str)) for tc, vals in wanted.items()}
        ready, expired = [], []
        for key, row in sorted(self.rows.items()):
            if all(ref["value"] in present[(ref["table"], ref["column"])] for ref in waits[key]):
                ready.append(json.loads(row["raw_record"]))
            elif now >= as_utc(row["give_up_at"]):
                waited = format_duration(as_utc(row["give_up_at"]) - as_utc(row["first_seen"]))
                expired.append({"row_no": 0, "record_key": key, "raw_record": row["raw_record"],
                                "failed_checks": f"{row['reason']}: parent never arrived within {waited}"})
            else:
                continue
            del self.rows[key]
        loader.delete_keys("held_rows", [(self.table, record_key(r, self.table)) for r in ready]
                           + [(self.table, e["record_key"]) for e in expired])
        return ready, expired
