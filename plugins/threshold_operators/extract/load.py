"""Load step: staged records through the quality gate into the warehouse, in one transaction.

Good rows are upserted (a re-run, a retry or a backfill never duplicates a row); refused rows
go to ``quarantine`` with the checks they failed and the raw record; rows whose only fault is a
parent not loaded yet are held (``extract.holding``) and loaded when it lands, or quarantined
when it has not within the check's ``wait``; the run is recorded in
``extract_runs``; quality and freshness failures, and dropped files rejected whole, become
``data_quality_events``, which the alerting uses to hold back the rules that read the table.
Either all of it lands or none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from threshold_operators.extract import staging
from threshold_operators.extract.file_drop import rejection_events
from threshold_operators.extract.holding import Holding
from threshold_operators.extract.quality_gate import load_suite, typed_batch, validate_batch
from threshold_operators.extract.sources import SourceSpec, TableSource
from threshold_operators.warehouse.schema import arrow_table, as_utc, table_spec


@dataclass
class LoadResult:
    source: str
    table: str
    run_id: str
    fetched: int
    loaded: int
    quarantined: int
    superseded: int
    high_water_mark: str | None
    fresh: bool
    quality_ok: bool
    advanced: bool  # the high-water mark moved: new data landed (what triggers the alert DAGs)
    held: int = 0  # rows of this batch waiting for their parent (not refused)
    released: int = 0  # rows held earlier whose parent landed: loaded now
    expired: int = 0  # rows held earlier whose parent never came: quarantined now (in ``quarantined``)

    def as_dict(self) -> dict:
        return asdict(self)


def map_fields(record: dict, mapping: dict[str, str]) -> dict:
    if not mapping:
        return record
    return {mapping.get(k, k): v for k, v in record.items()}


def _to_arrow(table: str, df):
    import pyarrow as pa

    return arrow_table(table, {c: pa.array(df[c].tolist(), from_pandas=True) for c in table_spec(table).columns})


def load_staged(source: SourceSpec, table: TableSource, *, warehouse, run_id: str, now: datetime,
                folder=None, gate: bool | None = None) -> LoadResult:
    """Load one staged table. ``gate`` overrides the source's ``quality_gate`` (the benchmark's switch)."""
    from threshold_operators.warehouse.bulk_load import bulk_loader
    from threshold_operators.warehouse.schema import ensure_schema

    folder = folder or staging.staging_dir(run_id, source.source, table.table)
    manifest = staging.read_manifest(folder)
    suite = load_suite(table.suite) if (source.quality_gate if gate is None else gate) else None
    ensure_schema(warehouse.engine)
    warehouse.engine.dispose()
    loaded = quarantined = superseded = held = 0
    offset, offsets = 0, []
    cursor = table.cursor_field
    with bulk_loader(warehouse) as loader:
        before = as_utc(loader.scalar(f"SELECT MAX({cursor}) FROM {table.table}")) if cursor else None
        holding = Holding.read(loader, table.table)
        for part in staging.read_parts(folder, manifest):
            records = [map_fields(r, table.mapping) for r in part]
            gate = (validate_batch(records, table.table, suite, now=now, known_keys=loader.existing, source=source.source)
                    if suite is not None else typed_batch(records, table.table))
            loader.upsert(table.table, _to_arrow(table.table, gate.good))
            _quarantine(loader, run_id, source.source, table.table, gate.refused, offset, now)
            holding.supersede(loader, records, gate.waiting)
            held += holding.hold(loader, gate.waiting, source=source.source, run_id=run_id, now=now)
            _keep_validation(run_id, source.source, table.table, len(offsets), gate.validation)
            offsets.append(offset)
            loaded += len(gate.good)
            quarantined += len(gate.refused)
            superseded += gate.superseded
            offset += len(part)
        # rows held earlier (or just now): their parent landed, or they waited long enough
        ready, expired = holding.release(loader, now)
        if ready:
            loader.upsert(table.table, _to_arrow(table.table, typed_batch(ready, table.table).good))
        _quarantine(loader, run_id, source.source, table.table,
                    [{**e, "row_no": i} for i, e in enumerate(expired)], offset, now)
        quarantined += len(expired)
        hwm = as_utc(loader.scalar(f"SELECT MAX({cursor}) FROM {table.table}")) if cursor else None
        max_lag = source.max_lag_of(table)
        fresh = cursor is None or max_lag is None or (hwm is not None and now - hwm <= max_lag)
        loader.upsert("extract_runs", arrow_table("extract_runs", {
            "run_id": [run_id], "source": [source.source], "table_name": [table.table],
            "updated_since": [_ts(manifest.updated_since)], "updated_before": [_ts(manifest.updated_before)],
            "rows_fetched": [manifest.rows], "rows_loaded": [loaded + len(ready)], "rows_quarantined": [quarantined],
            "high_water_mark": [hwm], "finished_at": [now],
        }))
        events = []
        if quarantined:
            late = f", {len(expired)} of them held rows whose parent never arrived" if expired else ""
            events.append(("quality", f"{quarantined} of {manifest.rows} rows refused into quarantine{late} (run {run_id})"))
        if not fresh:
            last = hwm.isoformat() if hwm else "never"
            events.append(("freshness", f"nothing newer than {last}; max_lag is {max_lag} (checked at {now.isoformat()})"))
        for name, detail in rejection_events(manifest):  # file drops: a file refused whole
            events.append(("rejected", detail, name))
        if events:
            loader.upsert("data_quality_events", arrow_table("data_quality_events", {
                "event_id": [f"{run_id}|{table.table}|{'|'.join(e[:1] + e[2:])}" for e in events],
                "source": [source.source] * len(events), "table_name": [table.table] * len(events),
                "kind": [e[0] for e in events], "detail": [e[1] for e in events], "observed_at": [now] * len(events),
            }))
    advanced = hwm is not None and (before is None or hwm > before)
    return LoadResult(source.source, table.table, run_id, manifest.rows, loaded + len(ready), quarantined, superseded,
                      hwm.isoformat() if hwm else None, fresh, quarantined == 0, advanced, held, len(ready), len(expired))


def _quarantine(loader, run_id: str, source: str, table: str, refused: list[dict], offset: int, now: datetime) -> None:
    """Refused rows into ``quarantine``, numbered from ``offset`` within the run."""
    if not refused:
        return
    loader.upsert("quarantine", arrow_table("quarantine", {
        "run_id": [run_id] * len(refused),
        "table_name": [table] * len(refused),
        "row_no": [offset + r["row_no"] for r in refused],
        "source": [source] * len(refused),
        "record_key": [r["record_key"] for r in refused],
        "failed_checks": [r["failed_checks"] for r in refused],
        "raw_record": [r["raw_record"] for r in refused],
        "quarantined_at": [now] * len(refused),
    }))


def _keep_validation(run_id: str, source: str, table: str, part: int, validation: dict | None) -> None:
    """GX's result of one part, as JSON, for the record of the run."""
    import json

    if validation is None:
        return
    folder = staging.validations_dir(run_id, source)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{table}-part{part + 1:04d}.json").write_text(json.dumps(validation, default=str, indent=1), encoding="utf-8")


def _ts(value: str | None):
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
