"""State stores for the alerting tests: ``store`` a SQLite file of the test's own; ``state_store``
the same tests on SQLite (the default) and on PostgreSQL (production), both required in CI."""

from __future__ import annotations

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
