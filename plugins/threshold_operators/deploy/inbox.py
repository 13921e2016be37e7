"""The local inbox as a process of its own, for a deployment that keeps running (``storefence up``).

``storefence inbox serve`` runs ``LocalInbox`` (alerting/local_inbox.py: one HTTP server for the
chat robots, SMS, webhooks and action APIs, one SMTP server) in the foreground and appends
everything it receives, one JSON object a line with the time it arrived, to
``$AIRFLOW_HOME/inbox/messages.jsonl`` (HTTP) and ``inbox/mail.jsonl`` (email): the files
survive the process, and ``storefence inbox tail`` prints them as one line per message. It is
a demo inbox: it checks no signature and accepts everything.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

FILES = {"http": "messages.jsonl", "mail": "mail.jsonl"}


def inbox_dir(home: Path) -> Path:
    return home / "inbox"


def serve(home: Path, port: int, smtp_port: int, say=print) -> int:
    """Run until SIGTERM or SIGINT."""
    from threshold_operators.alerting.local_inbox import LocalInbox

    folder = inbox_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def record(kind: str, item: dict) -> None:
        line = json.dumps({"received_at": datetime.now(UTC).isoformat(timespec="seconds"), **item}, ensure_ascii=False)
        with lock, open(folder / FILES[kind], "a", encoding="utf-8") as out:
            out.write(line + "\n")

    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    with LocalInbox(port=port, smtp_port=smtp_port, record=record) as inbox:
        say(f"local inbox: HTTP {inbox.url}, SMTP 127.0.0.1:{inbox.smtp_port}; writing to {folder}", flush=True)
        while not stopping.is_set():
            time.sleep(0.5)
    return 0


def summary(kind: str, item: dict) -> str:
    """One line: when, which channel (or who for mail), the title or first line of the text."""
    when = item.get("received_at", "")[11:19]
    if kind == "mail":
        return f"{when}  email       {', '.join(item.get('to', []))}: {item.get('subject', '')}"
    text = _title(item.get("body") or {})
    return f"{when}  {item.get('channel', ''):<11} {text.splitlines()[0][:140] if text else ''}"


_TITLE_PATHS = (("markdown", "title"), ("title",), ("markdown", "content"), ("text", "content"), ("text",),
                ("content", "text"), ("card", "header", "title", "content"), ("schema",))


def _title(body: dict) -> str:
    """The title a vendor's message carries (DingTalk, WeCom, Feishu, Slack, SMS, webhook, action)."""
    for path in _TITLE_PATHS:
        value = body
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
    return json.dumps(body, ensure_ascii=False)


def tail(home: Path, follow: bool = False, last: int = 20, say=print) -> int:
    """The last ``last`` messages of both files in order of arrival; with ``follow``, then every new one."""
    folder = inbox_dir(home)
    seen = {kind: 0 for kind in FILES}

    def read_new() -> list[tuple[str, str, dict]]:
        out = []
        for kind, name in FILES.items():
            path = folder / name
            if not path.is_file():
                continue
            lines = path.read_text(encoding="utf-8").splitlines()
            for line in lines[seen[kind]:]:
                if line.strip():
                    item = json.loads(line)
                    out.append((item.get("received_at", ""), kind, item))
            seen[kind] = len(lines)
        return sorted(out, key=lambda x: x[0])

    items = read_new()
    if not items and not follow:
        say(f"(nothing received yet in {folder})")
    for _, kind, item in items[-last:]:
        say(summary(kind, item))
    while follow:
        time.sleep(1)
        for _, kind, item in read_new():
            say(summary(kind, item), flush=True)
    return 0
