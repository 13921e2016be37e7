"""The hash of the sources the committed UI bundle (dist/storefence-alerts.umd.js) was built from.

``npm run build`` ends with ``python3 sources_hash.py``, which writes the hash to
``dist/SOURCES.sha256``; ``tests/ui/test_bundle.py`` recomputes it, so a change to the sources
without a rebuild (``make ui``) fails the tests. Standard library only.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

SOURCE_FILES = ("package.json", "package-lock.json", "tsconfig.json", "vite.config.ts")
HASH_FILE = Path("dist") / "SOURCES.sha256"


def source_paths(ui_dir: Path) -> list[Path]:
    """Every file under ``src/`` and the build's configuration files, in sorted path order."""
    paths = [p for p in (ui_dir / "src").rglob("*") if p.is_file()]
    paths += [ui_dir / name for name in SOURCE_FILES]
    return sorted(paths, key=lambda p: p.relative_to(ui_dir).as_posix())


def sources_hash(ui_dir: Path) -> str:
    """sha256 over each source's path (relative, POSIX) and bytes."""
    digest = hashlib.sha256()
    for path in source_paths(ui_dir):
        relative = path.relative_to(ui_dir).as_posix().encode()
        data = path.read_bytes()
        # Lengths first, so no two different trees give the same stream of bytes.
        digest.update(b"%d:%s%d:" % (len(relative), relative, len(data)))
        digest.update(data)
    return digest.hexdigest()


def main() -> int:
    ui_dir = Path(__file__).resolve().parent
    target = ui_dir / HASH_FILE
    target.parent.mkdir(exist_ok=True)
    value = sources_hash(ui_dir)
    target.write_text(value + "\n")
    print(f"{HASH_FILE}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
