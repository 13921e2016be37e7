"""File-drop sources: CSV exports picked up from a folder (many small shops export from their
platform's back end instead of offering an API).

Three stages, each with its own job:

1. **finished?** (``unfinished``, pure): only a file its writer is done with is read. By default a
   file is finished when its size and modification time have not changed for
   ``finished_when.unchanged_for`` (60 s); with ``finished_when.ready_marker: .ready`` a file is
   finished once ``<name>.ready`` exists (the writer makes the marker last). A file not yet
   finished stays where it is for a later run: it is recorded in the manifest (``waiting``), it is
   not an error. A file that changes while it is read is left the same way.
2. **read** (``fetch_file_table``): a finished file that cannot be read as a whole (empty, only a
   header, not UTF-8, no key columns, columns the table does not have, a row with more or fewer
   fields than the header) is *rejected*: its rows are not guessed at. Rows of readable files
   are staged; row-level problems go through the same quality gate and quarantine as any source.
3. **finish** (after the load has committed, which also wrote each rejection as a
   ``data_quality_events`` row of kind ``rejected``): read files move to ``done/``, rejected ones
   to ``rejected/`` with a ``<name>.reason.txt`` beside them, markers with their files. Nothing
   moves before the load commits: a failed load leaves every file where it was, and the retry
   classifies them again. ``tell_data_engineers`` then queues one message per run and table for
   the ``data_engineering`` team (told once, however often the task is retried), and one per file
   stuck waiting for its ready marker longer than ``finished_when.stuck_after`` (1 h; told once
   per version of the file, however many runs find it waiting).

Files are taken oldest first. ``now`` is passed in (the task's clock; tests pin it and set the
files' times with ``os.utime``).
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from threshold_operators.extract import staging
from threshold_operators.extract.sources import FinishedWhen, SourceSpec, TableSource
from threshold_operators.warehouse.schema import table_spec

REASON_SUFFIX = ".reason.txt"


def drop_folder(source: SourceSpec) -> Path:
    """The source's folder; a relative one is below ``[storefence] drops_root`` (default
    ``$AIRFLOW_HOME``). The folder is listed by the fetch and its files moved after the load,
    which may run on another worker: under a remote executor a relative folder without a
    ``drops_root`` (each worker's own home) is refused; the folder must be a mount every worker
    shares."""
    from airflow.sdk.configuration import conf

    folder = Path(source.folder)
    if folder.is_absolute():
        return folder
    root = conf.get("storefence", "drops_root", fallback=None)
    if not root:
        from threshold_operators.executor import refuse_per_host

        root = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()
        refuse_per_host(f"source {source.source}'s drop folder {source.folder} is relative and [storefence] drops_root "
                        f"is not set, so it would be {root / folder} on each worker's disk",
                        "set [storefence] drops_root (AIRFLOW__STOREFENCE__DROPS_ROOT) to a folder every worker "
                        "mounts, or give the source an absolute folder on one")
    return Path(root).expanduser() / folder


# --- 1. finished? -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Seen:
    """What the finished-file rule looks at: the file's size and modification time, and whether
    its ready marker exists."""

    size: int
    mtime: datetime
    mtime_ns: int
    marker: bool = False

    @classmethod
    def of(cls, path: Path, rule: FinishedWhen) -> Seen:
        st = path.stat()
        marker = bool(rule.ready_marker) and (path.parent / f"{path.name}{rule.ready_marker}").is_file()
        return cls(st.st_size, datetime.fromtimestamp(st.st_mtime, UTC), st.st_mtime_ns, marker)

    def same_file(self, other: Seen) -> bool:
        return (self.size, self.mtime_ns) == (other.size, other.mtime_ns)


def unfinished(seen: Seen, rule: FinishedWhen, now: datetime) -> str | None:
    """Why the file is not finished yet, or None when it may be read."""
    if rule.ready_marker:
        return None if seen.marker else f"waiting for its marker <name>{rule.ready_marker}"
    quiet = now - seen.mtime
    if quiet < rule.unchanged_for:
        return (f"changed {max(quiet.total_seconds(), 0):.0f} s ago (at {seen.mtime:%Y-%m-%d %H:%M:%S} UTC); "
                f"read once unchanged for {rule.unchanged_for.total_seconds():.0f} s")
    return None


# --- 2. read --------------------------------------------------------------------------------------
class Rejected(ValueError):
    """The file cannot be read as a whole; the message says why, for people."""


def _read(path: Path, table: TableSource, *, accept_header_only: bool = False) -> list[dict]:
    if path.stat().st_size == 0:
        raise Rejected("the file is empty")
    with open(path, encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh)
        header = next(rows, None)
        if not header or not any(h.strip() for h in header):
            raise Rejected("the file has no header row")
        fields = [table.mapping.get(f, f) for f in header]
        spec = table_spec(table.table)
        twice = sorted({f for f in fields if fields.count(f) > 1})
        if twice:
            raise Rejected(f"the header names the column(s) {twice} more than once")
        missing = [k for k in spec.key if k not in fields]
        if missing:
            raise Rejected(f"the header lacks the key column(s) {missing} of {table.table}")
        unknown = [h for h, f in zip(header, fields, strict=True) if f not in spec.columns]
        if unknown:
            raise Rejected(f"the header has column(s) {unknown} that {table.table} does not have "
                           f"(and no mapping in the source file); a changed export format?")
        out = []
        for row in rows:
            if not row:
                continue  # a blank line
            if len(row) != len(fields):
                raise Rejected(f"line {rows.line_num}: {len(row)} fields, the header has {len(fields)} "
                               f"(a truncated file, or a separator inside a value without quotes)")
            # empty cells are missing values, as in every platform export we have seen
            out.append({k: (v if v != "" else None) for k, v in zip(fields, row, strict=True)})
    if not out and not accept_header_only:
        raise Rejected("the file has a header but no rows (set accept_header_only: true in the source file "
                       "if an empty export is normal)")
    return out


def _candidates(folder: Path, table: TableSource, rule: FinishedWhen) -> list[Path]:
    paths = [p for p in folder.glob(table.pattern) if p.is_file()
             and not p.name.endswith(REASON_SUFFIX)
             and not (rule.ready_marker and p.name.endswith(rule.ready_marker))]
    return sorted(paths, key=lambda p: (p.stat().st_mtime, p.name))


def fetch_file_table(source: SourceSpec, table: TableSource, *, run_id: str, now: datetime) -> staging.Manifest:
    """Stage the rows of ``table``'s finished files; list the rejected and the waiting ones.
    Nothing is moved here (``finish`` does, after the load)."""
    folder = drop_folder(source)
    folder.mkdir(parents=True, exist_ok=True)
    rule = source.finished_when
    accepted, pages, rejected, waiting = [], [], [], []
    for path in _candidates(folder, table, rule):
        before = Seen.of(path, rule)
        why = unfinished(before, rule, now)
        if why:
            entry = {"file": path.name, "reason": why}
            if rule.ready_marker and now - before.mtime >= rule.stuck_after:
                # its writer died before the marker, or forgot it: somebody must look (told once)
                entry |= {"stuck_since": before.mtime.isoformat(), "version": before.mtime_ns}
            waiting.append(entry)
            continue
        try:
            rows = _read(path, table, accept_header_only=source.accept_header_only)
        except UnicodeDecodeError as exc:
            problem = f"not UTF-8 ({exc.reason} at byte {exc.start}; the 'utf-8' codec cannot decode it)"
        except (csv.Error, Rejected) as exc:
            problem = str(exc)
        else:
            problem = None
        if not before.same_file(Seen.of(path, rule)):  # still being written after all: next run
            waiting.append({"file": path.name, "reason": "changed while it was read"})
            continue
        if problem:
            rejected.append({"file": path.name, "reason": problem})
            continue
        accepted.append(path.name)
        pages.append(rows)
    target = staging.staging_dir(run_id, source.source, table.table)
    manifest = staging.write(target, pages, {"source": source.source, "table": table.table, "run_id": run_id,
                                             "updated_since": None, "updated_before": None})
    manifest.files, manifest.rejected, manifest.waiting = accepted, rejected, waiting
    manifest.pages = len(accepted)
    staging.complete(target, manifest)
    return manifest


# --- 3. finish ------------------------------------------------------------------------------------
def _move(path: Path, target: Path, marker: str | None) -> Path:
    """Move ``path`` (and its marker) into ``target``; a name already there gets a numbered twin."""
    target.mkdir(exist_ok=True)
    dest, n = target / path.name, 1
    while dest.exists():
        dest, n = target / f"{path.stem}.{n}{path.suffix}", n + 1
    shutil.move(str(path), dest)
    if marker and (path.parent / f"{path.name}{marker}").exists():
        shutil.move(str(path.parent / f"{path.name}{marker}"), target / f"{dest.name}{marker}")
    return dest


def finish(source: SourceSpec, manifest: staging.Manifest) -> None:
    """After the load committed: read files to done/, rejected ones to rejected/ with their reason."""
    folder = drop_folder(source)
    marker = source.finished_when.ready_marker
    for name in manifest.files:
        if (folder / name).exists():
            _move(folder / name, folder / "done", marker)
    for r in manifest.rejected:
        if (folder / r["file"]).exists():
            dest = _move(folder / r["file"], folder / "rejected", marker)
            (dest.parent / f"{dest.name}{REASON_SUFFIX}").write_text(f"{r['file']}: {r['reason']}\n", encoding="utf-8")


def rejection_events(manifest: staging.Manifest) -> list[tuple[str, str]]:
    """(event id suffix, detail) of each rejected file, for ``data_quality_events`` (kind ``rejected``)."""
    return [(r["file"], f"file {r['file']} rejected, moved to rejected/: {r['reason']}") for r in manifest.rejected]


def tell_data_engineers(source: SourceSpec, manifest: staging.Manifest, now: datetime, *,
                        state_url: str | None = None, deliver: bool = True, log=None) -> int:
    """Queue (and deliver) what the data engineers must hear of one table's run: one message about
    its rejected files (keyed by source, table and run: told once however often the task is
    retried), and one about each file stuck waiting for its ready marker (keyed by the file and its
    version: told once however many runs find it still waiting). Returns the rows queued."""
    stuck = [w for w in manifest.waiting if w.get("stuck_since")]
    if not manifest.rejected and not stuck:
        return 0
    from threshold_operators.alerting.lifecycle import fingerprint
    from threshold_operators.alerting.pipeline import QueueReport, _key, enqueue_message
    from threshold_operators.alerting.routing import load_routing
    from threshold_operators.alerting.store import StateStore

    routing = load_routing()
    store = StateStore(url=state_url)
    store.create()
    report = QueueReport()
    team = routing.team_of("data_engineering")
    fp = fingerprint(f"(file:{source.source})", manifest.table)
    if manifest.rejected:
        enqueue_message(store, routing, team, 1, _rejected_text(source, manifest),
                        _key("file_rejected", source.source, manifest.table, manifest.run_id), fp, "file_rejected",
                        now, report, data={"source": source.source, "table": manifest.table,
                                           "rejected": manifest.rejected})
    for w in stuck:
        enqueue_message(store, routing, team, 1, _stuck_text(source, manifest.table, w, now),
                        _key("file_stuck", source.source, manifest.table, w["file"], w["version"]), fp, "file_stuck",
                        now, report, data={"source": source.source, "table": manifest.table, **w})
    if deliver and report.queued:
        from threshold_operators.alerting.delivery import deliver as send

        send(store, routing, now, **({"log": log} if log is not None else {}))
    return report.queued


def _rejected_text(source: SourceSpec, manifest: staging.Manifest):
    from threshold_operators.alerting.messages import Text

    folder = drop_folder(source)
    lines = "\n".join(f"- {r['file']}: {r['reason']}" for r in manifest.rejected)
    n = len(manifest.rejected)
    return Text(f"[文件被拒收] {source.source}.{manifest.table}: {n}",
                f"【数据文件被拒收】{source.source} → {manifest.table}：{n} 个文件无法整体读取，未加载，"
                f"已移到 {folder / 'rejected'}（原因见同名 .reason.txt）：\n{lines}\n请修正后重新放入目录。",
                f"[file rejected] {source.source}.{manifest.table}: {n}",
                f"[file rejected] {source.source} -> {manifest.table}: {n} file(s) could not be read as a whole; "
                f"nothing of them was loaded. Moved to {folder / 'rejected'} (reason in <name>.reason.txt):\n"
                f"{lines}\nFix and drop them again.", "yellow")


def _stuck_text(source: SourceSpec, table: str, waiting: dict, now: datetime):
    from threshold_operators.alerting.messages import Text

    marker = source.finished_when.ready_marker
    since = datetime.fromisoformat(waiting["stuck_since"])
    hours = (now - since).total_seconds() / 3600
    where = drop_folder(source) / waiting["file"]
    return Text(f"[文件等待标记] {source.source}.{table}: {waiting['file']}",
                f"【数据文件未完成】{where} 最后修改于 {since:%Y-%m-%d %H:%M} UTC（{hours:.1f} 小时前），"
                f"仍没有标记文件 {waiting['file']}{marker}，因此未加载。写入方是否中断？"
                f"确认文件完整后创建标记文件即可加载。",
                f"[file waiting] {source.source}.{table}: {waiting['file']}",
                f"[file waiting for its marker] {where} last changed {since:%Y-%m-%d %H:%M} UTC ({hours:.1f} h ago) "
                f"and has no {waiting['file']}{marker}, so it is not loaded. Did its writer stop? Once the file "
                f"is complete, create the marker and the next run loads it.", "yellow")
