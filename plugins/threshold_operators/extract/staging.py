"""Staging: fetched records wait in storage every worker reaches, between the fetch and the load.

Fetching does not hold the warehouse (a DuckDB file can be open in one process only), and a
load that fails can be retried without fetching again. A staging folder per run and table holds
JSON-lines parts of at most ``part_rows`` records, exactly as the source delivered them (the
raw record is what quarantine keeps), plus ``manifest.json`` once every page has arrived. A
fetch that fails leaves no manifest, so nothing half-fetched is ever loaded.

Where: ``[storefence] storage_url`` (environment ``AIRFLOW__STOREFENCE__STORAGE_URL``), with
``staging/`` and ``validations/`` (the Great Expectations results of each run) below it:

- a local folder (a path, or ``file:///...``), by default ``$AIRFLOW_HOME/storefence``: right
  when every task runs on one host (the LocalExecutor), or when the folder is a mount every
  worker shares (NFS, EFS);
- any other URL is Airflow's ``ObjectStoragePath`` (``s3://bucket/storefence``,
  ``gs://...``; install the provider of the scheme), with the credentials of the Airflow
  connection ``[storefence] storage_conn_id``.

The fetch and the load of one table may run on different workers (CeleryExecutor, Kubernetes):
there the default, a folder in each worker's own home, would leave the load without the fetch's
manifest, so under a remote executor an unset ``storage_url`` is refused at the first fetch,
with what to set (``executor.refuse_per_host``).

Staging of a run that never loaded (its load failed for good) is kept for a retry, and removed
by ``sweep`` once older than ``RETENTION`` (the extract's ``publish`` sweeps its source).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

MANIFEST = "manifest.json"
STARTED = "started.json"  # written first: how old a folder without a manifest (a fetch that died) is
RETENTION = timedelta(days=2)
SECTION = "storefence"


def _setting(key: str) -> str | None:
    from airflow.sdk.configuration import conf

    return conf.get(SECTION, key, fallback=None) or None


def storage_root():
    """The storage root: a ``Path`` for a local folder, an ``ObjectStoragePath`` for a URL."""
    url = _setting("storage_url")
    if not url:
        root = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "storefence"
        from threshold_operators.executor import refuse_per_host

        refuse_per_host(f"[storefence] storage_url is not set, so staging would be {root} on each worker's disk",
                        "set [storefence] storage_url (AIRFLOW__STOREFENCE__STORAGE_URL) to storage every worker "
                        "reaches: s3://bucket/prefix, gs://..., or a shared mount file:///mnt/...")
        return root
    if url.startswith("file://"):
        return Path(url.removeprefix("file://"))
    if "://" not in url:
        return Path(url).expanduser()
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url, conn_id=_setting("storage_conn_id"))


def staging_root():
    return storage_root() / "staging"


class StagingPathError(ValueError):
    """A run id, source or table name that would put files outside the staging root."""


def _safe(run_id: str) -> str:
    """One path component from a run id: only letters, digits, _ . - and never '.' or '..'
    (a leading dot becomes _), so a run id cannot name a parent folder."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    return re.sub(r"^\.", "_", name)[:200] or "_"


def _below(root, *parts: str):
    """``root / parts``, checked to stay inside ``root`` (symbolic links resolved on a local disk)."""
    path = root.joinpath(*parts)
    if any(p in ("", ".", "..") or "/" in p or "\\" in p for p in parts) \
            or (isinstance(root, Path) and not path.resolve().is_relative_to(root.resolve())):
        raise StagingPathError(f"{'/'.join(parts)!r} would leave the staging root {root}")
    return path


def staging_dir(run_id: str, source: str, table: str, root=None):
    return _below(root if root is not None else staging_root(), _safe(run_id), source, table)


def validations_dir(run_id: str, source: str, root=None):
    """Where the Great Expectations results of a run are kept (beside staging, not removed)."""
    return _below(root if root is not None else storage_root() / "validations", _safe(run_id), source)


@dataclass
class Manifest:
    source: str
    table: str
    run_id: str
    updated_since: str | None
    updated_before: str | None
    rows: int
    parts: list[str]
    pages: int = 0
    throttled: int = 0
    server_errors: int = 0
    waited_s: float = 0.0
    files: list[str] = field(default_factory=list)  # file sources: the files staged
    rejected: list[dict] = field(default_factory=list)  # file sources: {file, reason} of files refused whole
    waiting: list[dict] = field(default_factory=list)  # file sources: {file, reason[, stuck_since, version]} not yet finished
    staged_at: str | None = None  # when the fetch started writing (ISO 8601): what ``sweep`` ages by


def write(folder, pages: Iterable[list[dict]], manifest: dict, part_rows: int = 50_000,
          now: datetime | None = None) -> Manifest:
    """Write the pages' records in parts. The caller then calls ``complete`` with the manifest."""
    remove(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staged_at = (now or datetime.now(UTC)).isoformat()
    (folder / STARTED).write_text(json.dumps({"staged_at": staged_at}), encoding="utf-8")
    parts, buf, total = [], [], 0

    def flush():
        if buf:
            name = f"part-{len(parts) + 1:05d}.jsonl"
            (folder / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in buf), encoding="utf-8")
            parts.append(name)
            buf.clear()

    for page in pages:
        buf.extend(page)
        total += len(page)
        if len(buf) >= part_rows:
            flush()
    flush()
    return Manifest(rows=total, parts=parts, staged_at=staged_at, **manifest)


def complete(folder, manifest: Manifest) -> None:
    """Write the manifest, atomically: its presence means every page arrived (a rename on a local
    disk; one object written whole on an object store)."""
    text = json.dumps(asdict(manifest), indent=1)
    if not isinstance(folder, Path):
        (folder / MANIFEST).write_text(text, encoding="utf-8")
        return
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(folder / MANIFEST)


def read_manifest(folder) -> Manifest:
    path = folder / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{folder}: no manifest, the fetch did not complete")
    return Manifest(**json.loads(path.read_text(encoding="utf-8")))


def read_parts(folder, manifest: Manifest) -> Iterator[list[dict]]:
    for name in manifest.parts:
        with (folder / name).open("r", encoding="utf-8") as fh:
            yield [json.loads(line) for line in fh if line.strip()]


def remove(folder) -> None:
    if isinstance(folder, Path):
        shutil.rmtree(folder, ignore_errors=True)
    elif folder.exists():
        folder.rmdir(recursive=True)


def _staged_at(folder) -> datetime | None:
    for name in (MANIFEST, STARTED):
        path = folder / name
        try:
            if path.exists():
                return datetime.fromisoformat(json.loads(path.read_text(encoding="utf-8"))["staged_at"])
        except (ValueError, KeyError, TypeError):
            continue  # an older manifest without staged_at, or a torn write: judged by the other file
    return None


def sweep(source: str, now: datetime, retention: timedelta = RETENTION, root=None) -> list[str]:
    """Remove ``source``'s staging older than ``retention``: runs whose load never finished (it
    failed for good, or the fetch died). A folder whose age cannot be read (neither file) is
    removed too once its run is swept. Returns the removed folders."""
    root = root if root is not None else staging_root()
    if not root.exists():
        return []
    removed = []
    for run in root.iterdir():
        folder = run / source
        if not folder.is_dir():
            continue
        ages = [_staged_at(table) for table in folder.iterdir() if table.is_dir()]
        if all(at is None or now - at > retention for at in ages):
            remove(folder)
            removed.append(str(folder))
            if not any(run.iterdir()):
                remove(run)
    return removed
