"""Fixtures of the API tests: a SQLite state store of the test's own, a frozen clock, the app on
them (``client``), Airflow's auth manager with two users, and ``bearer`` (a real JWT)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from threshold_operators.alerting.ack_link import LinkSettings
from threshold_operators.alerting.store import StateStore

T0 = datetime(2026, 11, 11, 2, 0, tzinfo=UTC)
SECRET = "s3cret-for-tests"
LINKS = LinkSettings("https://airflow.example.com", SECRET, timedelta(hours=24))
USERS = "li.wei:op,guest:viewer"


class Clock:
    def __init__(self, t: datetime):
        self.t = t

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
def store(tmp_path):
    s = StateStore(url=f"sqlite:///{tmp_path / 'state.sqlite'}")
    s.create()
    yield s
    s.engine.dispose()


@pytest.fixture
def clock():
    return Clock(T0 + timedelta(minutes=5))


@pytest.fixture
def client(store, clock):
    from threshold_operators.api.app import create_app

    with TestClient(create_app(store_factory=lambda: store, now=clock, settings=lambda: LINKS)) as c:
        yield c


def bearer(auth_manager, username: str, role: str | None) -> dict:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    token = auth_manager.generate_jwt(SimpleAuthManagerUser(username=username, role=role))
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def auth_manager(airflow_db):
    """Airflow's configured auth manager (SimpleAuthManager by default), initialised as the API
    server does, with two users of our own."""
    from airflow.api_fastapi.app import init_auth_manager

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", USERS)
        mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "storefence-tests-" * 4)
        yield init_auth_manager()
