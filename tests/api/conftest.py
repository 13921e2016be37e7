"""Fixtures of the API tests."""

from __future__ import annotations

import pytest

USERS = "li.wei:op,guest:viewer"


@pytest.fixture(scope="module")
def auth_manager(airflow_db):
    """Airflow's configured auth manager (SimpleAuthManager by default), initialised as the API
    server does, with two users of our own."""
    from airflow.api_fastapi.app import init_auth_manager

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", USERS)
        mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "storefence-tests-" * 4)
        yield init_auth_manager()
