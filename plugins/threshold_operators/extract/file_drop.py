"""File-drop sources: CSV exports picked up from a folder (many small shops export from their
platform's back end instead of offering an API).

``fetch_file_table`` takes the files matching a table's pattern, oldest first, and stages their
rows. A file that cannot be read as a whole (not UTF-8, no header, no key columns) is moved to
``rejected/`` at once with a ``<name>.reason.txt`` beside it; its rows are not guessed at. After
the load has committed, ``finish`` moves the staged files to ``done/``; if the load fails they
stay where they are and the retry reads them again. Row-level problems go through the same
quality gate and quarantine as any other source.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

from threshold_operators.extract import staging
from threshold_operators.extract.sources import SourceSpec, TableSource
from threshold_operators.warehouse.schema import table_spec


def drop_folder(source: SourceSpec) -> Path:
    folder = Path(source.folder)
    if not folder.is_absolute():
        folder = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / folder
    return folder


def _reject(path: Path, reason: str) -> None:
    target = path.parent / "rejected"
    target.mkdir(exist_ok=True)
    shutil.move(str(path), target / path.name)
    (target / f"{path.name}.reason.txt").write_text(reason + "\n", encoding="utf-8")


def _read(path: Path, table: TableSource) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise ValueError("the file has no header row")
        fields = [table.mapping.get(f, f) for f in reader.fieldnames]
        missing = [k for k in table_spec(table.table).key if k not in fields]
        if missing:
            raise ValueError(f"the header lacks the key column(s) {missing} of {table.table}")
        # empty cells are missing values, as in every platform export we have seen
        return [{k: (v if v != "" else None) for k, v in row.items()} for row in reader]


def fetch_file_table(source: SourceSpec, table: TableSource, *, run_id: str) -> staging.Manifest:
    folder = drop_folder(source)
    folder.mkdir(parents=True, exist_ok=True)
    accepted, pages = [], []
    for path in sorted(folder.glob(table.pattern), key=lambda p: (p.stat().st_mtime, p.name)):
        if not path.is_file():
            continue
        try:
            rows = _read(path, table)
        except (UnicodeDecodeError, csv.Error, ValueError) as exc:
            _reject(path, f"{path.name}: {exc}")
            continue
        accepted.append(path.name)
        pages.append(rows)
    target = staging.staging_dir(run_id, source.source, table.table)
    manifest = staging.write(target, pages, {"source": source.source, "table": table.table, "run_id": run_id,
                                             "updated_since": None, "updated_before": None})
    manifest.files = accepted
    manifest.pages = len(accepted)
    staging.complete(target, manifest)
    return manifest


def finish(source: SourceSpec, manifest: staging.Manifest) -> None:
    """Move the files of a committed load to done/."""
    folder = drop_folder(source)
    done = folder / "done"
    done.mkdir(exist_ok=True)
    for name in manifest.files:
        if (folder / name).exists():
            shutil.move(str(folder / name), done / name)
