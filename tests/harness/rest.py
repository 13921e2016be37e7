"""The REST API v2 client of the harness: ``threshold_operators.deploy.rest`` (``storefence up``
uses the same one), with what tests wait for.

- ``AirflowClient``: JWT from the simple auth manager; unpause, trigger with conf, DAG runs, task
  instances, XCom, task logs, connections; ``wait_for_run`` raises ``RunFailed`` with each task's
  state and the logs of the failed ones.
- ``wait_for_new_run``: the first run of a DAG (of a run type) that was not there before, e.g.
  the run an Asset event triggered.
"""

from __future__ import annotations

import time

from threshold_operators.deploy.rest import AirflowClient, ApiError, RunFailed

__all__ = ["AirflowClient", "ApiError", "RunFailed", "wait_for_new_run"]


def wait_for_new_run(client: AirflowClient, dag_id: str, known: set[str], run_type: str | None = None,
                     timeout: float = 180, poll: float = 2) -> dict:
    """The first run of ``dag_id`` whose id is not in ``known`` (and of ``run_type``, e.g.
    ``asset_triggered``); TimeoutError listing the runs seen when none comes."""
    deadline = time.monotonic() + timeout
    while True:
        runs = client.dag_runs(dag_id, **({"run_type": run_type} if run_type else {}))
        new = [r for r in runs if r["dag_run_id"] not in known]
        if new:
            return new[0]
        if time.monotonic() > deadline:
            seen = [(r["dag_run_id"], r["run_type"], r["state"]) for r in client.dag_runs(dag_id)]
            raise TimeoutError(f"no new {run_type or ''} run of {dag_id} after {timeout:.0f} s; runs: {seen}")
        time.sleep(poll)
