"""Background processes that outlive the command that started them, and stop exactly.

Each process runs in a session (so a process group) of its own, with its output appended to a
log file. What identifies it afterwards is ``(pid, started)``, the kernel's start time of the
leader: a recorded pid that now belongs to another program is never signalled. Stopping sends
SIGTERM to the leader, which stops its own children (Airflow's components fork workers: the
LocalExecutor's, uvicorn's, the log server), then to whatever is left of the group, and at last
SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ManagedProcess:
    name: str
    pid: int
    started: float  # the leader's start time (psutil's create_time): the pid's identity
    log: str
    argv: list[str] = field(default_factory=list)
    _popen: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        return {"name": self.name, "pid": self.pid, "started": self.started, "log": self.log, "argv": self.argv}

    @classmethod
    def from_dict(cls, d: dict) -> ManagedProcess:
        return cls(name=d["name"], pid=int(d["pid"]), started=float(d["started"]), log=d["log"], argv=list(d.get("argv", [])))

    def members(self) -> list[int]:
        """The pids of this process's group still running (its own first), none if it is not ours."""
        import psutil

        self._reap()
        out = []
        for p in psutil.process_iter(["pid", "create_time", "status"]):
            try:
                if os.getpgid(p.info["pid"]) != self.pid or p.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
            except (ProcessLookupError, PermissionError):
                continue
            # a group is only joined by descendants (a new session): one started before the
            # leader belongs to a program that reused the pid
            if p.info["create_time"] >= self.started - 0.01:
                out.append(p.info["pid"])
        return sorted(out, key=lambda pid: pid != self.pid)

    def alive(self) -> bool:
        """The leader itself runs (the component is up, not only a leftover worker)."""
        return self.pid in self.members()

    def _reap(self) -> None:
        if self._popen is not None:
            self._popen.poll()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = Path(self.log).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def start(name: str, argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> ManagedProcess:
    """Start ``argv`` in a session of its own, output appended to ``log``."""
    import psutil

    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(argv)}\n".encode())
        out.flush()
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                 cwd=cwd, start_new_session=True)
    try:
        started = psutil.Process(popen.pid).create_time()
    except psutil.NoSuchProcess:  # it died at once: its log says why
        started = time.time()
    return ManagedProcess(name, popen.pid, started, str(log), list(argv), popen)


def stop(processes: list[ManagedProcess], timeout: float = 30.0) -> dict[str, str]:
    """Stop each process and its group; name -> what happened.

    SIGTERM to the leader first: Airflow's components shut down their own children (the
    scheduler tells its running tasks and waits for them). Whatever of the group is left after
    half of ``timeout`` gets SIGTERM, and after ``timeout`` SIGKILL.
    """
    outcome: dict[str, str] = {}
    pending = []
    for p in processes:
        if p.members():
            _signal(p, signal.SIGTERM, group=False)
            pending.append(p)
        else:
            outcome[p.name] = "not running"
    start_at = time.monotonic()
    second_term = False
    while pending and time.monotonic() - start_at < timeout:
        time.sleep(0.2)
        for p in list(pending):
            if not p.members():
                outcome[p.name] = "stopped"
                pending.remove(p)
        if not second_term and time.monotonic() - start_at > timeout / 2:
            second_term = True
            for p in pending:
                _signal(p, signal.SIGTERM, group=True)
    for p in pending:
        _signal(p, signal.SIGKILL, group=True)
        outcome[p.name] = f"killed (still running {timeout:.0f} s after SIGTERM)"
    kill_deadline = time.monotonic() + 10
    while any(p.members() for p in pending) and time.monotonic() < kill_deadline:
        time.sleep(0.1)
    for p in processes:
        if p._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p._popen.wait(timeout=5)
    return outcome


def _signal(p: ManagedProcess, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(p.pid, sig)
        elif p.alive():
            os.kill(p.pid, sig)
    except ProcessLookupError:
        pass
