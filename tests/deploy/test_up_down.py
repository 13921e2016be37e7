"""``storefence up`` and ``down`` as a user runs them (``--no-shop``: the live shop is another
test's), on a home of the test's own with its own PostgreSQL metadata database: everything
starts and answers, a second ``up`` finds it running, ``down`` stops exactly what ``up``
started, and a connection the user made is never overwritten."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN_URL
from threshold_operators.deploy.metadata_db import drop_database, ensure_database
from threshold_operators.deploy.processes import ManagedProcess
from threshold_operators.deploy.rest import AirflowClient
from threshold_operators.deploy.stack import free_port
from threshold_operators.deploy.up import MARK

pytestmark = [pytest.mark.real_airflow, pytest.mark.postgres, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def storefence(home: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
    env.update(AIRFLOW_HOME=str(home), PYTHONPATH=str(REPO / "plugins"))
    done = subprocess.run([sys.executable, "-m", "threshold_operators.cli", *args], env=env, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_up_down_and_a_connection_of_the_user(pg_server, tmp_path):
    home = tmp_path / "airflow"
    database = f"sf_up_{os.getpid()}_{secrets.token_hex(3)}"
    url = ensure_database(PG_ADMIN_URL, database)
    port = free_port()
    try:
        out = storefence(home, "up", "--no-shop", "--metadata-db", url, "--port", str(port))
        assert f"Airflow UI   http://127.0.0.1:{port}   user admin, password " in out
        state = json.loads((home / "storefence-up.json").read_text())
        assert set(state["processes"]) == {"inbox", "api-server", "scheduler", "dag-processor"}
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        client = AirflowClient(f"http://127.0.0.1:{port}", "admin", password)
        dags = {d["dag_id"]: d for d in client.dags("storefence_%")}
        assert dags and not any(d["is_paused"] for d in dags.values())
        ours = client.connection("dingtalk_ops")
        assert ours["description"] == MARK and ours["host"].startswith(f"http://127.0.0.1:{state['settings']['inbox_port']}")
        assert client.connection("shop_api_default") is None  # --no-shop: the shop's connections are the user's

        assert "Already running" in storefence(home, "up", "--no-shop")

        # the user points a channel at their own robot: a later `up` keeps it
        client.put_connection({"connection_id": "dingtalk_ops", "conn_type": "http",
                               "host": "https://oapi.dingtalk.com", "description": "ops robot"})
        pids = [ManagedProcess.from_dict(p) for p in state["processes"].values()]
        out = storefence(home, "down")
        assert all(f"{name:<14} stopped" in out or f"{name:<14} killed" in out for name in state["processes"])
        assert not any(p.members() for p in pids) and not (home / "storefence-up.json").exists()

        out = storefence(home, "up", "--no-shop", "--port", str(port))
        assert "kept yours: dingtalk_ops" in out
        assert "PostgreSQL" in out and database in out  # the home keeps its metadata DB
        assert AirflowClient(f"http://127.0.0.1:{port}", "admin", password).connection("dingtalk_ops")["host"] == \
            "https://oapi.dingtalk.com"
    finally:
        storefence(home, "down")
        drop_database(PG_ADMIN_URL, database)
