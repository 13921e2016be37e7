"""A real CeleryExecutor deployment for a test: one home for the API server, the scheduler and the
DAG processor, and one home per Celery worker, each as if on a host of its own.

``running_celery(home_root, pg_server_url, broker_url, workers=("fetch", "load"))`` (a context
manager) sets up

- the main home ``home_root/main``: the CeleryExecutor, ``[celery] broker_url`` (a Redis database
  of the test's own, ``free_redis_db``), ``[celery] result_backend`` (the metadata DB with the
  ``db+`` prefix), ``storefence airflow-setup``, then ``prepare(stack)``, then api-server,
  scheduler and dag-processor, as ``airflow_stack.running_airflow`` does;
- one home per worker, ``home_root/worker-<queue>``: its own ``AIRFLOW_HOME``, ``logs/`` and pid
  file, the same DAG and plugin folders, metadata DB, broker and API server, and the main home's
  keys (``stack.shared_secrets``: the Fernet key, the JWT secret the execution API's task tokens
  are signed with, the API's secret key the log requests are signed with), copied from its
  airflow.cfg. The worker runs ``airflow celery worker --queues <queue> --concurrency N
  --celery-hostname storefence-<queue>-<token>`` (the Celery node ``celery@storefence-...``);
- a host identity per worker: a loopback address of its own (127.0.0.2, 127.0.0.3, ...) is its
  tasks' hostname (``[core] hostname_callable``, a module written into the home's ``config/``)
  and the address of its log server, at the port every home names (``[logging]
  worker_log_server_port``). The API server reads a task's log at ``http://<ti.hostname>:<its own
  worker_log_server_port>/log/...``: one port for every worker, so two workers on one machine
  can be told apart only by address, as two machines are. Airflow's own log server binds every
  address, so the worker is started with ``--skip-serve-logs`` and the harness runs that log
  server (``airflow.utils.serve_logs.log_server``, the same app) bound to the worker's address;
- routing: ``$AIRFLOW_HOME/config/airflow_local_settings.py`` in every home (Airflow puts
  ``config/`` on ``sys.path`` and imports it), with a ``task_policy`` that sends a task whose
  id starts with one of ``routes``' prefixes to that queue and any other to ``default_queue``
  (also ``[operators] default_queue``: without the policy, everything lands there);

and waits until the API server is healthy, every worker's Celery node answers on its queue
(``celery inspect active_queues`` through the broker) and every DAG file is parsed. It yields a
``CeleryDeployment``. When the block ends, passed or failed, every process is stopped (the
workers, the scheduler and the DAG processor first, then the API server, then the log servers),
the metadata DB is dropped and the Redis database flushed.

``connections`` are given to every process as ``AIRFLOW_CONN_<ID>`` variables: they must exist
before ``storefence airflow-setup`` (which, under a remote executor, creates the stores' tables
and refuses a per-host file) and on every worker. ``extra_env`` and ``extra_config`` go to every
home (e.g. the shared staging storage).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.rest import AirflowClient
from threshold_operators.deploy.metadata_db import drop_database, ensure_database
from threshold_operators.deploy.processes import stop as stop_processes
from threshold_operators.deploy.stack import ADMIN, COMPONENTS, Stack, StackConfig, free_port, shared_secrets
from threshold_operators.deploy.up import wait_parsed

REPO = Path(__file__).resolve().parents[2]
REDIS = ("127.0.0.1", 6379)
WORKER = "celery worker"
LOG_SERVER = "log-server"
HOST_MODULE = "storefence_worker_host"  # the worker home's config/storefence_worker_host.py
LOCAL_SETTINGS = "airflow_local_settings.py"


# --- Redis ------------------------------------------------------------------------------------
def redis_unavailable(host: str = REDIS[0], port: int = REDIS[1]) -> str | None:
    """None when Redis answers PING, else why not (one line)."""
    import redis

    try:
        redis.Redis(host=host, port=port, socket_connect_timeout=2).ping()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def free_redis_db(host: str = REDIS[0], port: int = REDIS[1]) -> int:
    """A Redis database number (1-15, random order) that holds no key now: the test's own."""
    import redis

    for n in random.sample(range(1, 16), 15):
        if redis.Redis(host=host, port=port, db=n).dbsize() == 0:
            return n
    raise RuntimeError(f"every Redis database 1-15 on {host}:{port} holds keys: none is free for a test")


def flush_redis(broker_url: str) -> None:
    import redis

    redis.Redis.from_url(broker_url).flushdb()


# --- what is written into the homes -------------------------------------------------------------
def local_settings_source(routes: Mapping[str, str], default_queue: str) -> str:
    """``airflow_local_settings.py`` with a ``task_policy`` routing by task id prefix."""
    return f'''"""Written by tests/harness/celery_stack.py: which Celery queue each task goes to."""

ROUTES = {dict(routes)!r}  # task id prefix -> queue
DEFAULT_QUEUE = {default_queue!r}


def task_policy(task):
    for prefix, queue in ROUTES.items():
        if task.task_id.startswith(prefix):
            task.queue = queue
            return
    task.queue = DEFAULT_QUEUE
'''


def host_module_source(hostname: str) -> str:
    return f'''"""Written by tests/harness/celery_stack.py: this worker's host name ([core] hostname_callable)."""


def hostname():
    return {hostname!r}
'''


def _write_config_module(home: Path, name: str, text: str) -> None:
    folder = home / "config"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def connection_env(connections: Mapping[str, Mapping]) -> dict[str, str]:
    """``AIRFLOW_CONN_<ID>`` variables (Airflow's JSON form) for the connections."""
    env = {}
    for conn_id, fields in connections.items():
        doc = {k: v for k, v in fields.items() if v is not None}
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(doc)
    return env


# --- the deployment -----------------------------------------------------------------------------
@dataclass
class CeleryWorker:
    queue: str
    home: Path
    hostname: str  # the tasks' ``hostname`` (REST: a task instance's ``hostname``): its loopback address
    node: str  # the Celery node name, celery@storefence-<queue>-<token>
    stack: Stack

    @property
    def log_folder(self) -> Path:
        return self.home / "logs"

    def task_logs(self, dag_id: str, run_id: str, task_id: str) -> list[Path]:
        """The log files of a task's tries on this worker's disk (read without the API server)."""
        folder = self.log_folder / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return sorted(folder.glob("attempt=*.log"))


@dataclass
class CeleryDeployment:
    stack: Stack  # the main home's: api-server, scheduler, dag-processor
    client: AirflowClient
    home: Path
    broker_url: str
    workers: dict[str, CeleryWorker]  # name (the queue, unless given as "name:queue") -> worker
    seconds_to_start: float  # components started -> healthy, every worker answering, every DAG file parsed
    routes: dict[str, str] = field(default_factory=dict)
    default_queue: str = ""

    def queue_for(self, task_id: str) -> str:
        return next((q for p, q in self.routes.items() if task_id.startswith(p)), self.default_queue)

    def worker_of(self, hostname: str | None) -> CeleryWorker | None:
        return next((w for w in self.workers.values() if w.hostname == hostname), None)

    def stacks(self) -> list[Stack]:
        return [self.stack, *(w.stack for w in self.workers.values())]

    def logs_summary(self, lines: int = 20) -> str:
        return "\n".join(s.logs_summary(lines) for s in self.stacks())


def worker_nodes(broker_url: str, timeout: float = 1.0) -> dict[str, list[str]]:
    """Celery node -> the queues it consumes, of every worker answering on the broker now."""
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        answers = app.control.inspect(timeout=timeout).active_queues() or {}
    finally:
        app.close()
    return {node: sorted(q["name"] for q in queues) for node, queues in answers.items()}


def wait_workers(deployment_stacks: list[Stack], broker_url: str, wanted: Mapping[str, str],
                 timeout: float = 120) -> dict[str, list[str]]:
    """Until each Celery node of ``wanted`` (node -> queue) answers and consumes its queue; what
    answered. A process of the deployment that exits meanwhile fails at once with its log."""
    deadline = time.monotonic() + timeout
    seen: dict[str, list[str]] = {}
    while True:
        for stack in deployment_stacks:
            stack.check_alive()
        seen = worker_nodes(broker_url)
        if all(queue in seen.get(node, []) for node, queue in wanted.items()):
            return seen
        if time.monotonic() > deadline:
            logs = "\n".join(s.logs_summary() for s in deployment_stacks)
            raise TimeoutError(f"Celery workers not answering after {timeout:.0f} s: wanted {dict(wanted)}, "
                               f"answering {seen}\n{logs}")
        time.sleep(1)


def _wait_listening(address: str, port: int, stack: Stack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive((LOG_SERVER,))
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((address, port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"log server on {address}:{port} not listening after {timeout:.0f} s\n{stack.logs_summary()}")


def _stop_all(main: Stack, workers: list[Stack], timeout: float = 30) -> None:
    """Workers, scheduler and DAG processor first (running tasks finish and report through the
    API server), then the API server, then the log servers and anything else; each stack's
    state is cleared."""
    everything = [p for s in (main, *workers) for p in s.processes.values()]
    waves = [[p for p in everything if p.name in (WORKER, "scheduler", "dag-processor")],
             [p for p in everything if p.name == "api-server"]]
    waves.append([p for p in everything if not any(p in w for w in waves)])
    for wave in waves:
        stop_processes(wave, timeout)
    for s in (main, *workers):
        s.stop(timeout=5)  # nothing left to stop: forgets the processes


@contextmanager
def running_celery(home_root: Path, pg_server_url: str, broker_url: str, *,
                   workers: tuple[str, ...] = ("fetch", "load"), routes: Mapping[str, str] | None = None,
                   default_queue: str | None = None, concurrency: int = 2,
                   components: tuple[str, ...] = COMPONENTS, connections: Mapping[str, Mapping] | None = None,
                   extra_config: dict | None = None, extra_env: dict[str, str] | None = None,
                   prepare: Callable[[Stack], None] | None = None,
                   timeout: float = 300) -> Iterator[CeleryDeployment]:
    """A CeleryExecutor deployment, one worker (and home) per entry of ``workers``: ``"q"`` (a
    worker named ``q`` consuming queue ``q``) or ``"name:q"`` (several workers may share a queue:
    ``("w1:default", "w2:default")`` is two workers taking turns at the same tasks).

    ``routes``: task id prefix -> queue (default: ``fetch_`` -> ``fetch`` when there is such a
    worker); ``default_queue``: every other task (default: the last worker's queue)."""
    specs = [tuple(w.split(":", 1)) if ":" in w else (w, w) for w in workers]
    queues = {q for _, q in specs}
    routes = dict(routes if routes is not None else {"fetch_": "fetch"} if "fetch" in queues else {})
    default_queue = default_queue or specs[-1][1]
    unserved = sorted({*routes.values(), default_queue} - queues)
    if unserved:
        raise ValueError(f"queues {unserved} have no worker (workers: {workers})")
    if len(workers) > 250:
        raise ValueError("one loopback address per worker: at most 250")

    database = f"sf_stack_{os.getpid()}_{secrets.token_hex(3)}"
    url = ensure_database(pg_server_url, database)
    token = secrets.token_hex(3)
    env = {**connection_env(connections or {}), **(extra_env or {})}
    celery_config = {
        ("celery", "broker_url"): broker_url,
        ("celery", "result_backend"): f"db+{url}",
        ("celery", "worker_concurrency"): str(concurrency),
        # longer than the longest task, as docs/deploy.md sets it (Airflow warns without it)
        ("celery_broker_transport_options", "visibility_timeout"): "21600",
        ("operators", "default_queue"): default_queue,
    }
    log_port = free_port("0.0.0.0")  # every home names it; each worker's log server binds its own address
    common = dict(dags_folder=REPO / "dags", plugins_folder=REPO / "plugins", metadata_db=url,
                  executor="CeleryExecutor", log_server_port=log_port, extra_env=env, inherit_airflow_env=False)
    main = Stack(StackConfig(home=home_root / "main", api_port=free_port(), components=components,
                             extra_config={**celery_config, **(extra_config or {})}, **common))
    worker_stacks: list[Stack] = []
    try:
        password = main.configure()
        main.run(*main.storefence_argv("airflow-setup"))
        keys = shared_secrets(main.home)  # after the set-up: it may have strengthened them
        policy = local_settings_source(routes, default_queue)
        _write_config_module(main.home, LOCAL_SETTINGS, policy)
        crew: dict[str, CeleryWorker] = {}
        for i, (name, queue) in enumerate(specs):
            address = f"127.0.0.{2 + i}"
            stack = Stack(StackConfig(
                home=home_root / f"worker-{name}", api_port=main.config.api_port, components=(WORKER,),
                extra_config={**celery_config, **keys, ("core", "hostname_callable"): f"{HOST_MODULE}.hostname",
                              **(extra_config or {})}, **common))
            stack.configure()
            _write_config_module(stack.home, LOCAL_SETTINGS, policy)  # a worker parses the DAG files too
            _write_config_module(stack.home, f"{HOST_MODULE}.py", host_module_source(address))
            worker_stacks.append(stack)
            crew[name] = CeleryWorker(queue, stack.home, address, f"celery@storefence-{name}-{token}", stack)
        if prepare is not None:
            prepare(main)

        t0 = time.monotonic()
        main.start_components()
        for w in crew.values():
            w.stack.launch(WORKER, w.stack.airflow_argv(
                "celery", "worker", "--queues", w.queue, "--concurrency", str(concurrency),
                "--celery-hostname", w.node.removeprefix("celery@"), "--skip-serve-logs"))
            w.stack.launch(LOG_SERVER, [w.stack.config.python, "-m", "uvicorn", "--factory",
                                        "airflow.utils.serve_logs.log_server:get_app", "--host", w.hostname,
                                        "--port", str(log_port), "--no-access-log", "--log-level", "warning"])
        main.wait_healthy(timeout=timeout)
        wait_workers([main, *worker_stacks], broker_url, {w.node: w.queue for w in crew.values()}, timeout=timeout)
        for w in crew.values():
            _wait_listening(w.hostname, log_port, w.stack)
        client = AirflowClient(main.config.api_url, ADMIN, password)
        wait_parsed(client, main.config.dags_folder, timeout=timeout)
        yield CeleryDeployment(main, client, main.home, broker_url, crew, time.monotonic() - t0,
                               routes, default_queue)
    finally:
        try:
            _stop_all(main, worker_stacks)
        finally:
            try:
                drop_database(pg_server_url, database)
            finally:
                flush_redis(broker_url)
