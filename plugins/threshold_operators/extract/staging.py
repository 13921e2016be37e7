"""Staging: fetched records wait on local disk between the fetch and the load.

Fetching does not hold the warehouse (a DuckDB file can be open in one process only), and a
load that fails can be retried without fetching again. A staging folder per run and table holds
JSON-lines parts of at most ``part_rows`` records, exactly as the source delivered them (the
raw record is what quarantine keeps), plus ``manifest.json`` once every page has arrived. A
fetch that fails leaves no manifest, so nothing half-fetched is ever loaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST = "manifest.json"


def staging_root() -> Path:
    return Path(os.environ.get("STOREFENCE_STAGING", Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "storefence" / "staging"))


class StagingPathError(ValueError):
    """A run id, source or table name that would put files outside the staging root."""


def _safe(run_id: str) -> str:
    """One path component from a run id: only letters, digits, _ . - and never '.' or '..'
    (a leading dot becomes _), so a run id cannot name a parent folder."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    return re.sub(r"^\.", "_", name)[:200] or "_"


def _below(root: Path, *parts: str) -> Path:
    """``root / parts``, checked (symbolic links resolved) to stay inside ``root``."""
    path = root.joinpath(*parts)
    if any(p in ("", ".", "..") or "/" in p or "\\" in p for p in parts) \
            or not path.resolve().is_relative_to(root.resolve()):
        raise StagingPathError(f"{'/'.join(parts)!r} would leave the staging root {root}")
    return path


def staging_dir(run_id: str, source: str, table: str, root: Path | None = None) -> Path:
    return _below(Path(root or staging_root()), _safe(run_id), source, table)


def validations_dir(run_id: str, source: str) -> Path:
    """Where the Great Expectations results of a run are kept (beside staging, not removed)."""
    base = os.environ.get("STOREFENCE_VALIDATIONS") or staging_root().parent / "validations"
    return _below(Path(base), _safe(run_id), source)


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


def write(folder: Path, pages: Iterable[list[dict]], manifest: dict, part_rows: int = 50_000) -> Manifest:
    """Write the pages' records in parts. The caller then calls ``complete`` with the manifest."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
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
    return Manifest(rows=total, parts=parts, **manifest)


def complete(folder: Path, manifest: Manifest) -> None:
    """Write the manifest, atomically: its presence means every page arrived."""
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(asdict(manifest), indent=1), encoding="utf-8")
    tmp.replace(folder / MANIFEST)


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{folder}: no manifest, the fetch did not complete")
    return Manifest(**json.loads(path.read_text(encoding="utf-8")))


def read_parts(folder: Path, manifest: Manifest) -> Iterator[list[dict]]:
    for name in manifest.parts:
        with open(folder / name, encoding="utf-8") as fh:
            yield [json.loads(line) for line in fh if line.strip()]


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
