"""`storefence airflow-setup`: the pool follows the warehouse, the warehouse path travels with the
home, the API secrets are strong. The decisions on values; the command in fresh homes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest

from tests.test_cli import run
from threshold_operators.airflow_home import (
    DEFAULT_CONN_DESCRIPTION,
    MIN_SECRET_BYTES,
    SERVER_POOL_SLOTS,
    plan_pool,
    stale_default_path,
    weak_secrets,
)
from threshold_operators.deploy.airflow_cfg import read_options


# --- the pool ------------------------------------------------------------------------------------
def test_the_pool_is_sized_for_the_warehouse():
    assert plan_pool("duckdb", None, None).slots == 1
    assert plan_pool("postgresql", None, None).slots == SERVER_POOL_SLOTS == 8


def test_a_set_up_pool_follows_the_warehouse_when_it_changes_kind():
    duck = plan_pool("duckdb", None, None)
    assert plan_pool("postgresql", None, (duck.slots, duck.description)).slots == 8
    pg = plan_pool("postgresql", None, (duck.slots, duck.description))
    assert plan_pool("duckdb", None, (pg.slots, pg.description)).slots == 1


def test_slots_set_by_hand_are_kept_and_asked_ones_win():
    duck = plan_pool("duckdb", None, None)
    by_hand = plan_pool("postgresql", None, (3, duck.description))  # `airflow pools set ... 3` after set-up
    assert by_hand.slots == 3 and "kept" in by_hand.note
    assert plan_pool("postgresql", None, (5, "made in the UI")).slots == 5
    asked = plan_pool("postgresql", 12, (3, "made in the UI"))
    assert asked.slots == 12 and plan_pool("duckdb", None, (asked.slots, asked.description)).slots == 12
    assert "wait for the file's lock" in plan_pool("duckdb", 4, None).note


# --- the warehouse path ------------------------------------------------------------------------
def test_only_an_earlier_set_ups_absolute_default_path_is_made_relative(tmp_path):
    old_home = tmp_path / "old"
    old_home.mkdir()
    (old_home / "airflow.cfg").write_text("", encoding="utf-8")
    here = tmp_path / "here"
    assert stale_default_path(str(here / "storefence.duckdb"), DEFAULT_CONN_DESCRIPTION, here)
    assert stale_default_path(str(old_home / "storefence.duckdb"), DEFAULT_CONN_DESCRIPTION, here)  # copied home
    assert not stale_default_path(str(tmp_path / "data" / "storefence.duckdb"), DEFAULT_CONN_DESCRIPTION, here)
    assert not stale_default_path(str(here / "storefence.duckdb"), "my warehouse", here)
    assert not stale_default_path("storefence.duckdb", DEFAULT_CONN_DESCRIPTION, here)


# --- the secrets -------------------------------------------------------------------------------
def test_weak_secrets_are_replaced_once_and_nothing_else_changes(tmp_path):
    from threshold_operators.airflow_home import write_strong_secrets
    from threshold_operators.deploy.airflow_cfg import read_options

    cfg = tmp_path / "airflow.cfg"
    cfg.write_text("[core]\n# a comment\ndags_folder = /x\n\n[api]\nsecret_key = c2hvcnQ=\n\n"
                   "[api_auth]\njwt_secret = c2hvcnQgdG9v\njwt_algorithm =\n", encoding="utf-8")
    assert write_strong_secrets(cfg) == ["[api_auth] jwt_secret", "[api] secret_key"]
    options = read_options(cfg)
    assert min(len(options[k]) for k in (("api_auth", "jwt_secret"), ("api", "secret_key"))) >= MIN_SECRET_BYTES
    assert options[("core", "dags_folder")] == "/x" and "# a comment" in cfg.read_text(encoding="utf-8")
    kept = cfg.read_text(encoding="utf-8")
    assert write_strong_secrets(cfg) == [] and cfg.read_text(encoding="utf-8") == kept  # generated once, kept


def test_only_missing_or_short_secrets_are_generated():
    strong = "s" * MIN_SECRET_BYTES
    assert weak_secrets({("api_auth", "jwt_secret"): strong, ("api", "secret_key"): strong}) == {}
    assert set(weak_secrets({("api_auth", "jwt_secret"): strong})) == {("api", "secret_key")}
    assert weak_secrets({}, generate=lambda: "g") == {("api_auth", "jwt_secret"): "g", ("api", "secret_key"): "g"}


def test_the_generated_secret_is_long_enough_for_airflows_tokens_and_the_default_is_not():
    """What PyJWT checks when Airflow signs a token (HS512 with a shared secret)."""
    import jwt

    for secret, warns in ((weak_secrets({})[("api_auth", "jwt_secret")], False), ("UGsKc5nX8M3g6hipy/KPpg==", True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            jwt.encode({"sub": "storefence"}, secret, algorithm="HS512")
        assert any("recommended" in str(w.message) for w in caught) == warns, secret


# --- the command -------------------------------------------------------------------------------
@pytest.mark.slow
def test_set_up_a_fresh_home_then_copy_it_and_move_to_postgresql(tmp_path, pg_admin_url):
    home = tmp_path / "home"
    env = {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    first = run("airflow-setup", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "1 slot(s) for duckdb" in first.stdout and "new random [api_auth] jwt_secret, [api] secret_key" in first.stdout
    cfg = read_options(home / "airflow.cfg")
    secret = cfg[("api_auth", "jwt_secret")]
    assert len(secret) >= MIN_SECRET_BYTES and cfg[("core", "fernet_key")]  # Airflow's own defaults too

    copy = tmp_path / "copy"
    shutil.copytree(home, copy)
    where = subprocess.run([sys.executable, "-c", "from threshold_operators.warehouse.hook import WarehouseHook; "
                            "print(WarehouseHook().duckdb_path)"], capture_output=True, text=True,
                           env={**os.environ, "AIRFLOW_HOME": str(copy)})
    assert where.stdout.strip().splitlines()[-1] == str(copy / "storefence.duckdb"), where.stderr[-2000:]

    pg = {**env, "AIRFLOW_CONN_STOREFENCE_WAREHOUSE": json.dumps({"conn_type": "postgres", "host": "127.0.0.1",
                                                                   "login": "postgres", "schema": "test"})}
    again = run("airflow-setup", env=pg)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "8 slot(s) for postgresql" in again.stdout and "secrets kept" in again.stdout
    assert read_options(home / "airflow.cfg")[("api_auth", "jwt_secret")] == secret
    bad = run("airflow-setup", "--pool-slots", "0", env=env)
    assert bad.returncode == 2 and "at least one slot" in bad.stderr


@pytest.mark.slow
def test_an_earlier_absolute_path_is_made_relative(tmp_path):
    home = tmp_path / "home"
    env = {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    assert run("airflow-setup", env=env).returncode == 0
    old_style = ("from airflow.models import Connection; from airflow.utils.session import create_session\n"
                 "with create_session() as s:\n"
                 "    c = s.query(Connection).filter(Connection.conn_id == 'storefence_warehouse').one()\n"
                 f"    c.host = {str(home / 'storefence.duckdb')!r}\n")  # as an earlier set-up stored it
    done = subprocess.run([sys.executable, "-c", old_style], capture_output=True, text=True,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-2000:]
    again = run("airflow-setup", env=env)
    assert "made relative (storefence.duckdb" in again.stdout, again.stdout
