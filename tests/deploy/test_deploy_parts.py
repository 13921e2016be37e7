"""The deploy package's parts on their own: airflow.cfg edits, the metadata DB choice, background
processes (real ones: started, found again, stopped with their group), the local inbox process."""

from __future__ import annotations

import json
import smtplib
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests

from threshold_operators.deploy import airflow_cfg, metadata_db
from threshold_operators.deploy.processes import ManagedProcess, start, stop
from threshold_operators.deploy.stack import free_port

DEFAULT_CFG = """[core]
# The folder where your airflow pipelines live
dags_folder = /somewhere/dags
executor = LocalExecutor

[database]
# sql_alchemy_conn = commented out
sql_alchemy_conn = sqlite:////old/airflow.db
"""


def test_options_are_set_in_place_keeping_comments_and_order():
    out = airflow_cfg.set_options(DEFAULT_CFG, {("core", "dags_folder"): "/repo/dags", ("core", "parallelism"): "4",
                                                ("database", "sql_alchemy_conn"): "postgresql://x/y",
                                                ("api", "port"): "8081"})
    assert "# The folder where your airflow pipelines live\ndags_folder = /repo/dags\n" in out
    assert "[core]\nparallelism = 4\n" in out  # a new option goes under its section's header
    assert "# sql_alchemy_conn = commented out\nsql_alchemy_conn = postgresql://x/y" in out
    assert out.rstrip().endswith("[api]\nport = 8081")  # a new section at the end
    assert out.count("sql_alchemy_conn = ") == 2  # the comment is kept, not rewritten


def test_read_options_and_update_round_trip(tmp_path):
    path = tmp_path / "airflow.cfg"
    path.write_text(DEFAULT_CFG)
    airflow_cfg.update(path, {("database", "sql_alchemy_conn"): "sqlite:////new.db", ("api_auth", "jwt_secret"): "k"})
    options = airflow_cfg.read_options(path)
    assert options[("database", "sql_alchemy_conn")] == "sqlite:////new.db"
    assert options[("api_auth", "jwt_secret")] == "k" and options[("core", "executor")] == "LocalExecutor"
    assert path.stat().st_mode & 0o077 == 0  # it holds keys: its owner's only


def test_metadata_db_choice(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    nowhere = "postgresql+psycopg2://postgres@127.0.0.1:1/postgres"  # nothing listens on port 1
    chosen = metadata_db.choose(tmp_path, None, server=nowhere)
    assert chosen.url == f"sqlite:///{tmp_path / 'airflow.db'}" and "no PostgreSQL" in chosen.reason
    assert metadata_db.choose(tmp_path, "mysql://u@h/db", server=nowhere).url == "mysql://u@h/db"  # the home keeps its own
    assert metadata_db.choose(tmp_path, None, "sqlite").kind == "SQLite"
    assert metadata_db.choose(tmp_path, None, "postgresql://me@db/x").reason == "given with --metadata-db"
    # one PostgreSQL database per home: two checkouts never share connections
    assert metadata_db.database_name(tmp_path / "a") != metadata_db.database_name(tmp_path / "b")
    assert metadata_db.database_name(tmp_path / "a").startswith("storefence_airflow_")
    with pytest.raises(RuntimeError, match="unreachable"):
        metadata_db.choose(tmp_path, None, "postgres", server=nowhere)
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://env/db")
    assert metadata_db.choose(tmp_path, None, server=nowhere).url == "postgresql://env/db"


@pytest.mark.postgres
def test_metadata_db_on_postgres_is_created_once(pg_server, pg_admin_url, tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    name = f"sf_choice_{int(time.time() * 1000) % 10**9}"
    try:
        first = metadata_db.choose(tmp_path, None, database=name, server=pg_admin_url)
        assert first.kind == "PostgreSQL" and first.url.endswith(f"/{name}")
        # a home configured with it (or with its SQLite default) gets it again, the database kept
        assert metadata_db.choose(tmp_path, first.url, database=name, server=pg_admin_url).url == first.url
    finally:
        metadata_db.drop_database(pg_admin_url, name)


def test_a_process_group_is_stopped_whole_and_a_reused_pid_is_not_ours(tmp_path):
    # a leader that ignores SIGTERM and has a child: both stop (SIGTERM to the group, then SIGKILL)
    script = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); print('up', flush=True); time.sleep(600)")
    p = start("stubborn", [sys.executable, "-c", script], env={}, log=tmp_path / "logs" / "stubborn.log")
    deadline = time.monotonic() + 20
    while len(p.members()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert p.alive() and len(p.members()) == 2
    again = ManagedProcess.from_dict(json.loads(json.dumps(p.as_dict())))  # as a later `down` reads it
    assert again.alive()
    assert stop([p], timeout=2) == {"stubborn": "killed (still running 2 s after SIGTERM)"}
    assert not again.members()
    assert "up" in p.log_tail()
    impostor = ManagedProcess("old", p.pid, again.started - 3600, p.log)  # the same pid, recorded an hour earlier
    assert not impostor.alive() and stop([impostor]) == {"old": "not running"}


def test_the_inbox_process_records_what_it_receives_and_tail_prints_it(tmp_path, capsys):
    from threshold_operators.deploy import inbox

    http_port, smtp_port = free_port(), free_port()
    argv = [sys.executable, "-m", "threshold_operators.cli", "inbox", "serve", "--port", str(http_port),
            "--smtp-port", str(smtp_port)]
    env = {"AIRFLOW_HOME": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "plugins"),
           "PATH": "/usr/bin:/bin"}
    p = start("inbox", argv, env=env, log=tmp_path / "inbox.log")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = requests.post(f"http://127.0.0.1:{http_port}/dingtalk_ops/robot/send",
                                  json={"msgtype": "markdown", "markdown": {"title": "[Storefence] 爆单 SKU-1", "text": "..."}},
                                  timeout=2)
                break
            except requests.ConnectionError:
                assert p.alive() and time.monotonic() < deadline, p.log_tail()
                time.sleep(0.3)
        assert r.json()["errcode"] == 0
        mail = EmailMessage()
        mail["Subject"], mail["From"], mail["To"] = "[Storefence] gate failed", "sf@localhost", "data@example.com"
        mail.set_content("body")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.send_message(mail)
    finally:
        assert stop([p], timeout=10) == {"inbox": "stopped"}  # SIGTERM ends it cleanly
    inbox.tail(tmp_path)
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("dingtalk_ops [Storefence] 爆单 SKU-1")
    assert out[1].endswith("email       data@example.com: [Storefence] gate failed")
    saved = [json.loads(line) for line in (tmp_path / "inbox" / "messages.jsonl").read_text().splitlines()]
    assert saved[0]["channel"] == "dingtalk_ops" and saved[0]["received_at"]


_WORKER_PROBE = """
import multiprocessing, sys
from airflow.utils.process_utils import set_component_mp_start_method

def probe(q, names):  # runs in a worker, as the LocalExecutor's do
    q.put({n: n in sys.modules for n in names})

if __name__ == "__main__":
    set_component_mp_start_method("scheduler")  # what `airflow scheduler` does before its executor starts
    names = sys.argv[1].split(",")
    q = multiprocessing.Queue()
    p = multiprocessing.Process(target=probe, args=(q, names))
    p.start()
    print(multiprocessing.get_start_method(), q.get(timeout=120))
    p.join()
"""


def test_the_schedulers_workers_start_with_the_heavy_libraries_imported(tmp_path):
    """The LocalExecutor's workers come from a forkserver that imported PRELOAD once (Airflow's
    [scheduler] mp_start_method / mp_forkserver_preload, as written by StackConfig); a task process,
    forked from a worker, inherits them instead of importing them again."""
    import os
    import subprocess

    from threshold_operators.deploy.stack import PRELOAD, StackConfig

    config = StackConfig(home=tmp_path, dags_folder=tmp_path, plugins_folder=tmp_path, metadata_db="sqlite://")
    options = config.options()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update({f"AIRFLOW__{s.upper()}__{k.upper()}": v for (s, k), v in options.items()
                if s == "scheduler" and k.startswith("mp_")})
    env["AIRFLOW_HOME"] = str(tmp_path)
    script = tmp_path / "probe.py"
    script.write_text(_WORKER_PROBE, encoding="utf-8")
    out = subprocess.run([sys.executable, str(script), ",".join(PRELOAD)], env=env, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    method, _, found = out.stdout.strip().splitlines()[-1].partition(" ")
    assert method == "forkserver"
    assert found == str(dict.fromkeys(PRELOAD, True)), found
