"""Reading and setting options of ``$AIRFLOW_HOME/airflow.cfg``, keeping everything else as it is.

The deployment's settings are written there (not only passed to the processes it starts) so
the venv's ``airflow`` commands, ``make demo`` and a later ``make up`` see the same deployment:
its metadata database, executor, API server and keys. Airflow writes a long commented default
file the first time it runs; ``configparser`` would drop its comments, so options are replaced
line by line: an existing ``key = value`` line of the section is rewritten in place, a missing
one is added under the section's header, a missing section at the end.
"""

from __future__ import annotations

import re
from pathlib import Path

_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_OPTION = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*=")


def read_options(path: Path) -> dict[tuple[str, str], str]:
    """(section, key) -> value of every option set in the file (none if there is no file)."""
    out: dict[tuple[str, str], str] = {}
    if not path.is_file():
        return out
    section = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := _SECTION.match(line):
            section = m.group(1).strip().lower()
        elif section and (m := _OPTION.match(line)) and not line.lstrip().startswith(("#", ";")):
            out[(section, m.group(1).lower())] = line.split("=", 1)[1].strip()
    return out


def set_options(text: str, options: dict[tuple[str, str], str]) -> str:
    """``text`` (an ini file) with each (section, key) set to its value."""
    lines = text.splitlines()
    todo = {(s.lower(), k.lower()): v for (s, k), v in options.items()}
    section = None
    headers: dict[str, int] = {}
    for i, line in enumerate(lines):
        if m := _SECTION.match(line):
            section = m.group(1).strip().lower()
            headers.setdefault(section, i)
        elif section and (m := _OPTION.match(line)) and not line.lstrip().startswith(("#", ";")):
            key = (section, m.group(1).lower())
            if key in todo:
                lines[i] = f"{m.group(1)} = {todo.pop(key)}"
    by_section: dict[str, list[str]] = {}
    for (s, k), v in todo.items():
        by_section.setdefault(s, []).append(f"{k} = {v}")
    # insert under existing headers, last section first so earlier line numbers stay right
    for s in sorted((s for s in by_section if s in headers), key=lambda s: -headers[s]):
        lines[headers[s] + 1:headers[s] + 1] = by_section.pop(s)
    for s, new in by_section.items():
        lines += ["", f"[{s}]", *new]
    return "\n".join(lines) + "\n"


def update(path: Path, options: dict[tuple[str, str], str]) -> None:
    """Set ``options`` in the file (created if missing; readable by its owner only: it holds keys)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    new = set_options(text, options)
    if new != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".cfg.tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(path)
