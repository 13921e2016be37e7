"""The hostile rule files (tests/rules/testdata/hostile/) and their canaries, for the hostile-rules
suite and bench/hostile_rules.py.

Every attack is marked where it is refused: ``# case: <name>`` on the line of a rule or routing
file, ``-- case: <name>`` on the line of a metric query. ``plant(folder)`` copies the attacks
into ``folder`` and arms them: ``@SECRET@`` becomes the path of a file holding a random token
(the SQL tries to read it), ``@CANARY@`` a path that must never be written (the template and
COPY try to), ``@PORT@`` the port of a loopback server that must never be reached (the action
endpoints try to), and ``sql/finance/escape.sql`` a symbolic link to a query outside the SQL folder.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

HOSTILE = Path(__file__).parent / "testdata" / "hostile"
MARK = re.compile(r"(?:#|--) case: (\w+)")
# the class of attack of each case, by its name's prefix (the headings)
CLASSES = {"t": "template code execution", "f": "file access / writes from SQL", "y": "SQL from YAML fields",
           "s": "secrets sent elsewhere", "p": "paths", "r": "routes that go nowhere", "b": "timestamp without a time zone"}


def marked_cases(root: Path) -> dict[str, tuple[Path, int]]:
    """case name -> (file, line) of every ``case:`` mark under ``root``."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = MARK.search(line)
            if m:
                out[m.group(1)] = (path, n)
    return out


class Canary:
    """A TCP port on loopback that counts every connection made to it (any protocol, any method)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self):
        self.sock.close()


@dataclass
class Planted:
    root: Path  # holds rules/ and sql/
    secret: Path
    token: str
    canary_file: Path
    canary: Canary
    cases: dict[str, tuple[Path, int]] = field(default_factory=dict)

    @property
    def rules(self) -> Path:
        return self.root / "rules"

    @property
    def sql(self) -> Path:
        return self.root / "sql"

    def leaked(self, *texts: str) -> bool:
        """Whether the secret, the canary file or the canary port shows that an attack ran."""
        return any(self.token in (t or "") for t in texts) or self.canary_file.exists() or self.canary.connections > 0


def plant(folder: Path) -> Planted:
    folder.mkdir(parents=True, exist_ok=True)
    token = f"TOPSECRET-{secrets.token_hex(8)}"
    secret = folder / "secret.txt"
    secret.write_text(token + "\n", encoding="utf-8")
    canary_file = folder / "canary-written"
    canary = Canary()
    root = folder / "attacks"
    shutil.copytree(HOSTILE / "attacks", root)
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            armed = text.replace("@SECRET@", str(secret)).replace("@CANARY@", str(canary_file)) \
                .replace("@PORT@", str(canary.port))
            if armed != text:
                path.write_text(armed, encoding="utf-8")
    outside = folder / "outside"
    outside.mkdir()
    (outside / "escape.sql").write_text(f"SELECT shop_id, created_at AS bucket, 1 AS orders, "
                                        f"'{token}' AS leak FROM orders\n", encoding="utf-8")
    (root / "sql" / "finance" / "escape.sql").symlink_to(outside / "escape.sql")
    cases = marked_cases(root) | marked_cases(HOSTILE / "nowhere")
    return Planted(root, secret, token, canary_file, canary, cases)
