"""Airflow connections, looked up the Airflow 3 way wherever Storefence's code runs.

``get_connection(conn_id)`` asks ``airflow.sdk.Connection.get`` first, the Task SDK's lookup
(``BaseHook.get_connection`` of ``airflow.sdk`` does the same):

- **in a task** (a worker, ``dag.test()``) it asks the supervisor, which reads environment
  variables, the secrets backends and the metadata DB: its answer is final;
- **outside a task** (the ``storefence`` CLI, the API server serving the plugin, tests) it reads
  only ``AIRFLOW_CONN_*`` variables and the configured external secrets backends (Airflow 3.3's
  ``ensure_secrets_backend_loaded`` "fallback chain", without the metadata DB). A connection made
  with ``airflow connections add`` or in the UI lives in the metadata DB, so there, and only
  there, the DB is read through Airflow's ``MetastoreBackend``.

The lookup on ``airflow.models``' Connection class is not used: inside a task it emits a
DeprecationWarning on every call (the flood in the task logs).
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)


def in_task() -> bool:
    """Whether this process runs a task (the Task SDK's supervisor channel is set up): the same
    test Airflow's own connection lookup makes."""
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return getattr(runner, "SUPERVISOR_COMMS", None) is not None


def get_connection(conn_id: str):
    """The connection ``conn_id``; ``AirflowNotFoundException`` ("... isn't defined") when there is none."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        if in_task():
            raise
    conn = _from_metadata_db(conn_id)
    if conn is None:
        raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined")
    return conn


def _from_metadata_db(conn_id: str):
    from airflow.secrets.metastore import MetastoreBackend

    try:
        return MetastoreBackend().get_connection(conn_id)
    except Exception:  # noqa: BLE001 - no metadata DB here (not migrated, not reachable): not defined, as Airflow says
        log.debug("connection %s: the metadata DB could not be read", conn_id, exc_info=True)
        return None
