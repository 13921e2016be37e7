"""A state store of the test's own: a SQLite file (test_store.py also runs on PostgreSQL)."""

from __future__ import annotations

import pytest

from threshold_operators.alerting.store import StateStore


@pytest.fixture
def store(tmp_path):
    s = StateStore(url=f"sqlite:///{tmp_path / 'state.sqlite'}")
    s.create()
    yield s
    s.engine.dispose()
