"""The suite passes on any day at any hour: the tests that read the wall clock somewhere (marked
``clock_sensitive``: a DAG run, a CLI) run again under pinned clocks, each in a pytest process of
its own travelled to that instant (``STOREFENCE_TEST_CLOCK``, tests/conftest.py), two at a time.
A failure names the clock. ``make test-clocks`` runs the same from the shell, one clock at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLOCKS = {  # (UTC) what each is: the shop is in Asia/Shanghai (UTC+8)
    "just after midnight in the shop (00:05 Shanghai)": "2026-12-02T16:05:00Z",
    "a Monday morning (09:30 Shanghai)": "2026-12-07T01:30:00Z",
    "the end of a month (23:59:30 Shanghai, 30 November)": "2026-11-30T15:59:30Z",
    "a UTC day and year boundary (07:59:30 Shanghai, quiet hours ending)": "2026-12-31T23:59:30Z",
}


def run_under(clock: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STOREFENCE_TEST_CLOCK": clock, "PYTHONPATH": str(REPO / "plugins")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "clock_sensitive", "-p", "no:cacheprovider",
                           str(REPO / "tests")],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=900)


@pytest.mark.slow
def test_the_time_sensitive_tests_pass_under_every_pinned_clock():
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(zip(CLOCKS, pool.map(run_under, CLOCKS.values()), strict=True))
    failed = {name: r for name, r in runs.items() if r.returncode != 0}
    report = "\n\n".join(f"under {CLOCKS[name]} ({name}), exit {r.returncode}:\n{r.stdout[-3000:]}{r.stderr[-1000:]}"
                         for name, r in failed.items())
    assert not failed, report
    assert all(" passed" in r.stdout for r in runs.values())


@pytest.mark.clock_sensitive
@pytest.mark.pinned_clock_only
def test_the_session_runs_at_the_pinned_clock():
    """Under STOREFENCE_TEST_CLOCK the process really is at that instant (the check above relies on
    it; without a pinned clock the test is deselected, tests/conftest.py)."""
    from datetime import UTC, datetime, timedelta

    clock = os.environ["STOREFENCE_TEST_CLOCK"]
    pinned = datetime.fromisoformat(clock.replace("Z", "+00:00"))
    assert pinned <= datetime.now(UTC) < pinned + timedelta(minutes=15)  # the clock read is the pinned one
