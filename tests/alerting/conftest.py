"""Fixtures of the alerting tests: ``store`` a SQLite file of the test's own; ``state_store`` the same
tests on SQLite (the default) and on PostgreSQL (production), both required in CI; ``clock`` a
frozen clock the senders and receivers share (``Clock``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import PG_ADMIN_URL
from threshold_operators.alerting.store import StateStore


@pytest.fixture
def store(tmp_path):
    s = StateStore(url=f"sqlite:///{tmp_path / 'state.sqlite'}")
    s.create()
    yield s
    s.engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def state_store(request, tmp_path):
    if request.param == "sqlite":
        s = StateStore(url=f"sqlite:///{tmp_path / 'state.sqlite'}")
    else:
        s = StateStore(url=PG_ADMIN_URL, schema=request.getfixturevalue("pg_schema"))
    s.create()
    yield s
    s.engine.dispose()


START = datetime(2026, 8, 16, 7, 31, tzinfo=UTC)


class Clock:
    """A clock that moves only when told: call it for epoch seconds, as senders and receivers do."""

    def __init__(self, now: datetime = START):
        self.now = now

    def __call__(self) -> float:
        return self.now.timestamp()

    def advance(self, **kw):
        self.now += timedelta(**kw)


@pytest.fixture
def clock():
    return Clock()


def pytest_terminal_summary(terminalreporter):
    """The fault suite's figures (tests/alerting/test_faults.py), when it ran."""
    import sys

    for name, module in list(sys.modules.items()):
        if name.endswith("test_faults") and getattr(module, "SUMMARY", None):
            for line in module.SUMMARY:
                terminalreporter.write_line(line)
