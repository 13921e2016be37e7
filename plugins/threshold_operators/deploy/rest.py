"""A small client of Airflow's REST API v2: what ``storefence up`` and the tests need, no more.

Authentication is the simple auth manager's: ``POST /auth/token`` with the user and password
gives a JWT, sent as a bearer token (fetched again once when a request answers 401). Every
method returns the API's JSON as it is; ``wait_for_run`` polls a DAG run until it ends and,
when it did not succeed, raises ``RunFailed`` with each task's state and the log of every
failed task (what a developer needs to see in a test report).
"""

from __future__ import annotations

import time
from urllib.parse import quote

TERMINAL = {"success", "failed"}


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str):
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status


class RunFailed(AssertionError):
    pass


def _log_line(record) -> str:
    if not isinstance(record, dict):
        return str(record)
    line = " ".join(str(x) for x in (record.get("timestamp", ""), record.get("level", ""), record.get("event", "")) if x)
    for err in record.get("error_detail") or []:
        frames = "".join(f"\n    {f.get('filename')}:{f.get('lineno')} in {f.get('name')}" for f in err.get("frames", []))
        line += f"\n  {err.get('exc_type')}: {err.get('exc_value')}{frames}"
    return line


def _q(value: str) -> str:
    return quote(value, safe="")


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30):
        import requests

        self.base_url = base_url.rstrip("/")
        self.username, self.password = username, password
        self.timeout = timeout
        self.session = requests.Session()
        self._token: str | None = None

    # --- plumbing ---------------------------------------------------------------------------
    def token(self) -> str:
        r = self.session.post(f"{self.base_url}/auth/token", json={"username": self.username, "password": self.password},
                              timeout=self.timeout)
        if r.status_code not in (200, 201):
            raise ApiError("POST", "/auth/token", r.status_code, r.text)
        self._token = r.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, *, expect: tuple[int, ...] = (200, 201, 204), raw: bool = False, **kw):
        for attempt in (1, 2):
            if self._token is None:
                self.token()
            headers = {"Authorization": f"Bearer {self._token}", **kw.pop("headers", {})}
            r = self.session.request(method, f"{self.base_url}{path}", headers=headers, timeout=self.timeout, **kw)
            if r.status_code == 401 and attempt == 1:
                self._token = None
                continue
            if r.status_code not in expect:
                raise ApiError(method, path, r.status_code, r.text)
            if raw:
                return r
            return r.json() if r.content else None
        raise AssertionError("unreachable")

    def health(self) -> dict:
        return self.session.get(f"{self.base_url}/api/v2/monitor/health", timeout=self.timeout).json()

    # --- DAGs -------------------------------------------------------------------------------
    def dags(self, pattern: str | None = None) -> list[dict]:
        """Every DAG (``pattern``: a SQL LIKE on the id, e.g. ``storefence_%``)."""
        out, offset = [], 0
        while True:
            params = {"limit": 100, "offset": offset, **({"dag_id_pattern": pattern} if pattern else {})}
            page = self.request("GET", "/api/v2/dags", params=params)
            out += page["dags"]
            offset += len(page["dags"])
            if not page["dags"] or offset >= page["total_entries"]:
                return out

    def set_paused(self, dag_id: str, paused: bool) -> dict:
        return self.request("PATCH", f"/api/v2/dags/{_q(dag_id)}", json={"is_paused": paused})

    def unpause(self, dag_id: str) -> dict:
        return self.set_paused(dag_id, False)

    def import_errors(self) -> list[dict]:
        return self.request("GET", "/api/v2/importErrors", params={"limit": 100})["import_errors"]

    # --- runs and tasks ---------------------------------------------------------------------
    def trigger(self, dag_id: str, conf: dict | None = None, run_id: str | None = None) -> dict:
        body = {"logical_date": None, "conf": conf or {}, **({"dag_run_id": run_id} if run_id else {})}
        return self.request("POST", f"/api/v2/dags/{_q(dag_id)}/dagRuns", json=body)

    def dag_runs(self, dag_id: str, **params) -> list[dict]:
        """Runs of a DAG, oldest first (``params``: the API's filters, e.g. ``run_type``, ``state``)."""
        params = {"limit": 100, "order_by": "run_after", **params}
        return self.request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns", params=params)["dag_runs"]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances",
                            params={"limit": 1000})["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
        """The XCom's value, deserialised (JSON as the task pushed it)."""
        entry = self.request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}"
                                    f"/xcomEntries/{_q(key)}", params={"deserialize": "true", "stringify": "false"})
        return entry["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The task's log as text: one line per record (time, level, message; an error's traceback).
        ``map_index``: one instance of a mapped task (``notify``)."""
        params = {"full_content": "true"} | ({"map_index": map_index} if map_index >= 0 else {})
        page = self.request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}"
                                   f"/logs/{try_number}", params=params)
        content = page.get("content") or []
        return "\n".join(_log_line(r) for r in content) if isinstance(content, list) else str(content)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300, poll: float = 2) -> dict:
        """Poll until the run ends; the run when it succeeded, else ``RunFailed`` with every task's
        state and the logs of the failed ones (``TimeoutError``, with the same, when it did not end)."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_run(dag_id, run_id)
            if run["state"] == "success":
                return run
            if run["state"] in TERMINAL or time.monotonic() > deadline:
                report = self.run_report(dag_id, run_id)
                if run["state"] in TERMINAL:
                    raise RunFailed(f"{dag_id} {run_id} ended {run['state']}\n{report}")
                raise TimeoutError(f"{dag_id} {run_id} still {run['state']} after {timeout:.0f} s\n{report}")
            time.sleep(poll)

    def wait_ended(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 2) -> str:
        """Poll until the run ends, whichever way; its state (``TimeoutError`` with the run's report if not)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.dag_run(dag_id, run_id)["state"]
            if state in TERMINAL:
                return state
            time.sleep(poll)
        raise TimeoutError(f"{dag_id} {run_id} did not end\n{self.run_report(dag_id, run_id)}")

    def run_report(self, dag_id: str, run_id: str, log_lines: int = 60) -> str:
        """Each task's state; the end of the log of each task that failed or is up for retry."""
        lines = []
        tis = sorted(self.task_instances(dag_id, run_id), key=lambda t: (t["task_id"], t.get("map_index", -1)))
        name = {id(ti): ti["task_id"] if ti.get("map_index", -1) < 0
                else f"{ti['task_id']}[{ti.get('rendered_map_index') or ti['map_index']}]" for ti in tis}
        for ti in tis:
            lines.append(f"  {name[id(ti)]:<36} {ti['state']} (try {ti.get('try_number')})")
        for ti in tis:
            if ti["state"] in ("failed", "up_for_retry", "upstream_failed") and ti.get("try_number"):
                for n in range(1, ti["try_number"] + 1):
                    try:
                        text = self.task_log(dag_id, run_id, ti["task_id"], n, ti.get("map_index", -1))
                    except ApiError as exc:
                        text = str(exc)
                    tail = "\n".join(text.splitlines()[-log_lines:])
                    lines.append(f"--- log of {name[id(ti)]}, try {n}:\n{tail}")
        return "\n".join(lines)

    # --- connections ------------------------------------------------------------------------
    def connection(self, conn_id: str) -> dict | None:
        try:
            return self.request("GET", f"/api/v2/connections/{_q(conn_id)}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def put_connection(self, conn: dict) -> dict:
        """Create or replace the connection ``conn["connection_id"]`` (the API's fields)."""
        if self.connection(conn["connection_id"]) is None:
            return self.request("POST", "/api/v2/connections", json=conn)
        return self.request("PATCH", f"/api/v2/connections/{_q(conn['connection_id'])}", json=conn)
