"""What the configured executor allows: per-host storage only where every task runs on one host.

An embedded DuckDB warehouse and the default SQLite state store are files on the disk of the
process that opens them. Under the LocalExecutor every task runs on the scheduler's host, so
they are one warehouse and one outbox. Under CeleryExecutor (or Kubernetes, or a list of
executors one of which is remote) each worker would open a file of its own: an empty warehouse
per host, an outbox per host (messages sent twice, acknowledgements lost, a throttle per host).
So a connection naming such a file is refused there, at the first use, with a message naming the
connection and what to set, and ``storefence airflow-setup`` refuses it at the deployment's start.

Whether an executor is local is Airflow's own answer (``BaseExecutor.is_local``, True for the
LocalExecutor); the configured executors are read with Airflow's ``ExecutorLoader``, as the
scheduler reads them. An explicit URL given to the CLI (``--warehouse``, an analyst's backtest
on a copied file) is not a deployment's connection and is not checked.
"""

from __future__ import annotations

from functools import lru_cache

from airflow.sdk.exceptions import AirflowFailException

POSTGRES_HINT = ("point it at PostgreSQL (conn-type postgres), which every worker reaches: "
                 "see docs/deploy.md, 'Scale-out'")


# Airflow's executors by class name -> is_local, as their classes say (checked by the tests)
KNOWN = {"LocalExecutor": True, "CeleryExecutor": False, "KubernetesExecutor": False,
         "CeleryKubernetesExecutor": False, "EdgeExecutor": False}


class PerHostStorageError(AirflowFailException):
    """A per-host file (DuckDB, SQLite) configured where tasks run on several hosts. A
    configuration error: the task fails at once, without retries."""


@lru_cache(maxsize=1)
def remote_executors() -> tuple[str, ...]:
    """The configured executors that may run a task on another host than the scheduler's (their
    names); empty when every configured executor is local (the LocalExecutor)."""
    from airflow.executors.executor_loader import ExecutorLoader

    remote = []
    for name in ExecutorLoader.get_executor_names():
        short = name.module_path.rsplit(".", 1)[-1]
        if short in KNOWN:  # not imported: the Celery executor's module alone takes a second and logs
            if not KNOWN[short]:
                remote.append(name.alias or short)
            continue
        try:
            cls, _ = ExecutorLoader.import_executor_cls(name)
        except Exception:  # noqa: BLE001 - an executor that cannot be imported here is not known to be local
            remote.append(name.alias or name.module_path)
            continue
        if not getattr(cls, "is_local", False):
            remote.append(name.alias or name.module_path)
    return tuple(remote)


def refuse_per_host(subject: str, hint: str = POSTGRES_HINT) -> None:
    """Raise ``PerHostStorageError`` when a remote executor is configured. ``subject`` says what
    is on one host's disk (the connection and its file); ``hint``: what to set instead."""
    remote = remote_executors()
    if remote:
        raise PerHostStorageError(f"{subject}, but the executor {', '.join(remote)} runs tasks on several hosts "
                                  f"(each would use a copy of its own): {hint}")
