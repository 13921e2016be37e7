"""Where the analysts' files are: ``include/`` of the DAG bundle the running DAG was parsed from.

Rules and their SQL, sources, quality suites, routing and plans live in ``include/``, beside
``dags/``. Each DAG file calls ``use_bundle(__file__)`` before it builds its DAGs, so the files
are read from ``<the DAG file's folder>/../include``: the DAG processor reads the bundle it
parses, and a worker, which parses the DAG file of the task's bundle version before running
the task, reads that same version's files. With a versioned bundle (``GitDagBundle`` of the
repository) every worker evaluates the thresholds the DAG was parsed with, whatever checkout or
image it runs; with the local folder (``LocalDagBundle``, the default) every worker must have
the same files, which ``storefence lint`` prints a digest of (``include_digest``; the tasks log
it too).

Outside a DAG (the ``storefence`` CLI, tests) it is the pack's own ``include/``. The
``STOREFENCE_RULES_DIR`` / ``STOREFENCE_SQL_DIR`` / ``STOREFENCE_SOURCES_DIR`` variables still
point a single process elsewhere (an analyst's sandbox, the tests).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE_INCLUDE = Path(__file__).resolve().parents[2] / "include"
_bundle_include: Path | None = None


def use_bundle(dag_file: str) -> Path:
    """Read ``include/`` beside the DAG folder of ``dag_file`` (when there is one); its path."""
    global _bundle_include
    candidate = Path(dag_file).resolve().parent.parent / "include"
    if candidate.is_dir():
        _bundle_include = candidate
    return include_dir()


def include_dir() -> Path:
    return _bundle_include or PACKAGE_INCLUDE


def include_digest(folder: Path | None = None) -> str:
    """A digest of every file below ``include/`` (names and contents): equal on two hosts exactly
    when they read the same rules, SQL, sources, suites, routing and plans."""
    folder = folder or include_dir()
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]
