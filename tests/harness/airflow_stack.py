"""A real Airflow for a test: api-server, scheduler and dag-processor as processes, started with
the deploy package (``threshold_operators.deploy.stack``, what ``storefence up`` runs).

``running_airflow(home, pg_server_url)`` (a context manager) gives each use

- a fresh ``AIRFLOW_HOME`` (``home``: a tmp folder), with ``storefence airflow-setup`` run in it
  (migrated metadata DB, the warehouse pool, the DuckDB warehouse connection);
- a PostgreSQL metadata database of its own (``sf_stack_<pid>_<random>``), dropped afterwards;
- free loopback ports for the API server and the task log server;
- the repo's ``dags/`` and ``plugins/``, the LocalExecutor (``executor``, ``components``,
  ``extra_config`` and ``extra_env`` are the scale-out issue's levers);
- ``prepare(stack)``, called after the set-up and before any component starts (seed the
  warehouse there: DuckDB takes one process at a time);

and yields an ``AirflowDeployment``: the stack, a logged-in REST client, and how long the start
took. Every process it started is stopped when the block ends, passed or failed. Inherited
``AIRFLOW_*`` variables of the test process are not passed on: the deployment is only what
the config says.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness.rest import AirflowClient
from threshold_operators.deploy.metadata_db import drop_database, ensure_database
from threshold_operators.deploy.stack import ADMIN, COMPONENTS, Stack, StackConfig, free_port
from threshold_operators.deploy.up import wait_parsed

REPO = Path(__file__).resolve().parents[2]


@dataclass
class AirflowDeployment:
    stack: Stack
    client: AirflowClient
    home: Path
    seconds_to_start: float  # components started -> healthy and every DAG file parsed

    @property
    def warehouse_path(self) -> Path:
        return self.home / "storefence.duckdb"


@contextmanager
def running_airflow(home: Path, pg_server_url: str, *, executor: str = "LocalExecutor",
                    components: tuple[str, ...] = COMPONENTS, extra_config: dict | None = None,
                    extra_env: dict[str, str] | None = None, prepare: Callable[[Stack], None] | None = None,
                    timeout: float = 300) -> Iterator[AirflowDeployment]:
    database = f"sf_stack_{os.getpid()}_{secrets.token_hex(3)}"
    url = ensure_database(pg_server_url, database)
    config = StackConfig(home=home, dags_folder=REPO / "dags", plugins_folder=REPO / "plugins", metadata_db=url,
                         executor=executor, api_port=free_port(), log_server_port=free_port("0.0.0.0"),  # the log server binds every address
                         components=components, extra_config=dict(extra_config or {}),
                         extra_env=dict(extra_env or {}), inherit_airflow_env=False)
    stack = Stack(config)
    try:
        password = stack.configure()
        stack.run(*stack.storefence_argv("airflow-setup"))
        if prepare is not None:
            prepare(stack)
        t0 = time.monotonic()
        stack.start_components()
        stack.wait_healthy(timeout=timeout)
        client = AirflowClient(config.api_url, ADMIN, password)
        wait_parsed(client, config.dags_folder, timeout=timeout)
        yield AirflowDeployment(stack, client, home, time.monotonic() - t0)
    finally:
        try:
            stack.stop(timeout=30)
        finally:
            drop_database(pg_server_url, database)

