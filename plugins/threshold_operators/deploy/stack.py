"""Airflow's own processes for one Airflow home: configure, start, wait, stop.

``StackConfig`` is the whole deployment as data: the home, the DAG and plugin folders, the
metadata DB URL, the executor, the API server's address, the log server's port, the
components to run and any further options. ``Stack`` turns it into

- options written to ``$AIRFLOW_HOME/airflow.cfg`` (so the venv's ``airflow`` commands see the
  same deployment) and the same options as ``AIRFLOW__SECTION__KEY`` variables for the
  processes it starts (so nothing in the caller's environment overrides them);
- one background process per component (``processes.py``: a process group each, logs in
  ``$AIRFLOW_HOME/logs/storefence-up/<name>.log``), recorded in a state file,
  ``$AIRFLOW_HOME/storefence-up.json``, so that ``stop`` stops exactly what was started, from
  this process or a later one, and a second start finds what already runs.

Used by ``storefence up`` / ``down`` (``deploy/up.py``) and by the tests' harness
(``tests/harness/airflow_stack.py``); CeleryExecutor is a matter of ``executor``,
``extra_config`` and ``components`` (add ``celery worker``). A worker on another host is a
``Stack`` of its own home whose ``extra_config`` carries the shared keys of the API server's
home (``shared_secrets``): they are kept, not generated anew (``tests/harness/celery_stack.py``).

The components: ``api-server`` (UI, REST API, and the execution API the tasks talk to),
``scheduler`` (with the LocalExecutor, it runs the tasks too, and serves their logs),
``dag-processor``. No Storefence task defers, so there is no ``triggerer`` by default.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from threshold_operators.deploy import airflow_cfg
from threshold_operators.deploy.processes import ManagedProcess, start, stop

COMPONENTS = ("api-server", "scheduler", "dag-processor")
# What every task process would otherwise import for itself, a few seconds of CPU each on a small
# machine: Airflow's task runner (every task), Great Expectations with pandas (every load that has
# rows: about 6 s), SQLAlchemy, DuckDB, sqlglot, httpx. Third-party libraries only: the pack's own
# modules stay fresh in each task (a forkserver keeps what it imported until the scheduler restarts).
PRELOAD = ("airflow.sdk.execution_time.task_runner", "pandas", "great_expectations", "sqlalchemy", "duckdb",
           "sqlglot", "httpx")
STATE_FILE = "storefence-up.json"
LOG_FOLDER = "logs/storefence-up"
ADMIN = "admin"
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"  # Airflow's default name for it


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """``preferred`` when it can be bound on ``host``, else a port the system picks."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError(f"no free port on {host}")


@dataclass
class StackConfig:
    home: Path
    dags_folder: Path
    plugins_folder: Path
    metadata_db: str
    executor: str = "LocalExecutor"
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    log_server_port: int = 8793  # the task log server (on every address: Celery workers serve theirs)
    parallelism: int = 4  # two cores: a few HTTP fetches overlap; warehouse tasks queue on their pool anyway
    # The LocalExecutor's workers start from a forkserver that has imported these once; every task
    # process, forked from a worker, inherits them instead of importing them again (PRELOAD).
    mp_start_method: str = "forkserver"
    preload: tuple[str, ...] = PRELOAD
    parsing_processes: int = 2
    # Airflow re-parses every DAG file each 30 s by default: 12-13% of a core here with nothing to
    # run, 4% at 120 s (bench/idle_cost.py). A task re-reads the rule files when it starts anyway;
    # only a rule added or removed shows as a task in the UI up to two minutes later.
    min_file_process_interval: int = 120
    components: tuple[str, ...] = COMPONENTS
    extra_config: dict[tuple[str, str], str] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    inherit_airflow_env: bool = True  # False: the caller's AIRFLOW_* variables are not passed on (tests)
    python: str = sys.executable

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    def options(self) -> dict[tuple[str, str], str]:
        """The deployment's settings, as (section, key) -> value."""
        return {
            ("core", "executor"): self.executor,
            ("core", "parallelism"): str(self.parallelism),
            ("core", "dags_folder"): str(self.dags_folder),
            ("core", "plugins_folder"): str(self.plugins_folder),
            ("core", "load_examples"): "False",
            ("core", "auth_manager"): "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            ("core", "simple_auth_manager_users"): f"{ADMIN}:admin",
            ("core", "simple_auth_manager_passwords_file"): str(self.home / PASSWORDS_FILE),
            ("core", "execution_api_server_url"): f"{self.api_url}/execution/",
            ("database", "sql_alchemy_conn"): self.metadata_db,
            ("api", "host"): self.api_host,
            ("api", "port"): str(self.api_port),
            ("api", "workers"): "1",
            ("logging", "worker_log_server_port"): str(self.log_server_port),
            ("dag_processor", "parsing_processes"): str(self.parsing_processes),
            ("dag_processor", "min_file_process_interval"): str(self.min_file_process_interval),
            ("scheduler", "mp_start_method"): self.mp_start_method,
            ("scheduler", "mp_forkserver_preload"): ",".join(self.preload),
            **self.extra_config,
        }


def _generated_secrets(existing: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    """Keys every component must share, generated once and kept in airflow.cfg: the Fernet key of
    connection passwords, the JWT secret (64 bytes, what HS512 wants), the API server's secret."""
    from cryptography.fernet import Fernet

    wanted = {
        ("core", "fernet_key"): lambda: Fernet.generate_key().decode(),
        ("api_auth", "jwt_secret"): lambda: base64.b64encode(secrets.token_bytes(64)).decode(),
        ("api", "secret_key"): lambda: base64.b64encode(secrets.token_bytes(64)).decode(),  # HS512 too (log tokens)
    }
    return {k: make() for k, make in wanted.items() if not existing.get(k)}


SECRETS = (("core", "fernet_key"), ("api_auth", "jwt_secret"), ("api", "secret_key"))


def shared_secrets(home: Path) -> dict[tuple[str, str], str]:
    """The keys every component of a deployment must share, as the home's airflow.cfg has them
    (for a worker's home: its tasks' tokens, connection passwords and log requests must verify)."""
    options = airflow_cfg.read_options(home / "airflow.cfg")
    missing = [f"[{s}] {k}" for s, k in SECRETS if not options.get((s, k))]
    if missing:
        raise RuntimeError(f"{home / 'airflow.cfg'} has no {', '.join(missing)}: configure that home first")
    return {key: options[key] for key in SECRETS}


class Stack:
    def __init__(self, config: StackConfig):
        self.config = config
        self.home = config.home
        self.state_path = self.home / STATE_FILE
        self.processes: dict[str, ManagedProcess] = {}
        self.state: dict = {}
        self._load_state()

    # --- configuration --------------------------------------------------------------------
    def configure(self) -> str:
        """Write the options to airflow.cfg (keeping the rest of it), the admin's password to the
        simple auth manager's file (generated once). Returns the password."""
        self.home.mkdir(parents=True, exist_ok=True)
        cfg = self.home / "airflow.cfg"
        existing = airflow_cfg.read_options(cfg)
        # a key given in ``extra_config`` (another home's, e.g. a Celery worker's) is kept, not regenerated
        options = self.config.options()
        airflow_cfg.update(cfg, {**options, **_generated_secrets({**existing, **options})})
        return self.admin_password()

    def admin_password(self) -> str:
        path = self.home / PASSWORDS_FILE
        passwords = json.loads(path.read_text(encoding="utf-8") or "{}") if path.is_file() else {}
        if not passwords.get(ADMIN):
            passwords[ADMIN] = secrets.token_urlsafe(12)
            path.write_text(json.dumps(passwords) + "\n", encoding="utf-8")
            path.chmod(0o600)
        return passwords[ADMIN]

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of every process of the deployment: the caller's, the home, every option
        (and the shared keys) as AIRFLOW__SECTION__KEY, and ``extra_env``."""
        env = dict(os.environ if base is None else base)
        if not self.config.inherit_airflow_env:
            env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW_")}
        options = {**airflow_cfg.read_options(self.home / "airflow.cfg"), **self.config.options()}
        for (section, key), value in options.items():
            if (section, key) in self.config.options() or key in ("fernet_key", "jwt_secret", "secret_key"):
                env[f"AIRFLOW__{section.upper()}__{key.upper()}"] = value
        env["AIRFLOW_HOME"] = str(self.home)
        # the home's config/ first, as Airflow itself orders them: a deployment's own
        # airflow_local_settings.py (a task policy) wins over the pack's (plugins/airflow_local_settings.py)
        paths = [str(self.home / "config"), str(self.config.plugins_folder),
                 *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env.update(self.config.extra_env)
        return env

    def run(self, *argv: str, timeout: float = 600) -> str:
        """Run a command to completion in the deployment's environment; its output. Fails loudly."""
        import subprocess

        done = subprocess.run(list(argv), env=self.environment(), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return done.stdout

    def airflow_argv(self, *args: str) -> list[str]:
        return [self.config.python, "-m", "airflow", *args]

    def storefence_argv(self, *args: str) -> list[str]:
        return [self.config.python, "-m", "threshold_operators.cli", *args]

    # --- processes ------------------------------------------------------------------------
    @staticmethod
    def read_state(home: Path) -> dict:
        path = home / STATE_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def _load_state(self) -> None:
        self.state = self.read_state(self.home)
        if self.state:
            self.processes = {n: ManagedProcess.from_dict(d) for n, d in self.state.get("processes", {}).items()}

    def save_state(self, **extra) -> None:
        self.state.update(extra)
        self.state["processes"] = {n: p.as_dict() for n, p in self.processes.items()}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.state_path)

    def running(self) -> dict[str, bool]:
        return {n: p.alive() for n, p in self.processes.items()}

    def launch(self, name: str, argv: list[str]) -> tuple[ManagedProcess, bool]:
        """Start ``name`` unless it already runs; (its process, whether it was started now)."""
        current = self.processes.get(name)
        if current is not None and current.alive():
            return current, False
        if current is not None:  # its leader is gone: stop what is left of its group first
            stop([current], timeout=10)
        proc = start(name, argv, self.environment(), self.home / LOG_FOLDER / f"{name}.log", cwd=self.home)
        self.processes[name] = proc
        self.save_state()
        return proc, True

    def start_components(self) -> dict[str, bool]:
        """Start each Airflow component not running yet; name -> started now."""
        started = {}
        for name in self.config.components:
            args = ["api-server", "--host", self.config.api_host, "--port", str(self.config.api_port)] \
                if name == "api-server" else name.split()
            _, started[name] = self.launch(name, self.airflow_argv(*args))
        return started

    def wait_healthy(self, timeout: float = 180) -> dict:
        """Wait until the API server answers /api/v2/monitor/health with a healthy metadata DB and
        scheduler (and DAG processor when it runs); the health document. A component that exits
        meanwhile fails at once with the end of its log."""
        import requests

        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                r = requests.get(f"{self.config.api_url}/api/v2/monitor/health", timeout=5)
                if r.status_code == 200:
                    health = r.json()
                    wanted = ["metadatabase", "scheduler"] + (["dag_processor"] if "dag-processor" in self.config.components else [])
                    sick = [k for k in wanted if (health.get(k) or {}).get("status") != "healthy"]
                    if not sick:
                        return health
                    last = f"not healthy yet: {', '.join(sick)}"
                else:
                    last = f"HTTP {r.status_code}"
            except requests.RequestException as exc:
                last = type(exc).__name__
            time.sleep(1)
        raise TimeoutError(f"Airflow at {self.config.api_url} not healthy after {timeout:.0f} s ({last})\n"
                           + self.logs_summary())

    def check_alive(self, names: tuple[str, ...] | None = None) -> None:
        for name in names or tuple(self.processes):
            p = self.processes.get(name)
            if p is not None and not p.alive():
                raise RuntimeError(f"{name} exited; the end of {p.log}:\n{p.log_tail()}")

    def logs_summary(self, lines: int = 20) -> str:
        return "\n".join(f"--- {n} ({p.log}):\n{p.log_tail(lines)}" for n, p in self.processes.items())

    def stop(self, timeout: float = 30) -> dict[str, str]:
        """Stop every recorded process and forget them, in three waves: the components that run
        tasks (the scheduler lets its running tasks finish, and they report through the API
        server's execution API), then the API server, then the rest (the shop, the inbox)."""
        procs = list(self.processes.values())
        waves = [[p for p in procs if p.name in self.config.components and p.name != "api-server"],
                 [p for p in procs if p.name == "api-server"],
                 [p for p in procs if p.name not in self.config.components]]
        outcome: dict[str, str] = {}
        for wave in waves:
            outcome.update(stop(wave, timeout))
        self.processes = {}
        self.state = {}
        self.state_path.unlink(missing_ok=True)
        return outcome
