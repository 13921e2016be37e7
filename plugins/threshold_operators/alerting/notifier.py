"""``StorefenceNotifier``: Airflow's notifier interface onto Storefence's routes.

A ``BaseNotifier`` subclass, usable as a task-level callback in any DAG, so a data engineer's own
DAG failure reaches the same people and channels as the alerts, with the same guarantees:

    from threshold_operators.alerting.notifier import StorefenceNotifier

    @task(on_failure_callback=StorefenceNotifier(team="data_engineering"))
    def load_orders(): ...

The notification is stored in the outbox under the key (DAG, task, run, event), so a failure is
told once however many times the callback runs (retries call ``on_retry_callback``, not this; a
cleared and re-run task that fails again is the same failure of the same run), then delivered at
once when the team's channels are reachable, or by the ``storefence_escalation`` DAG otherwise.
Use it at task level: DAG-level notifier callbacks fail under ``dag.test()`` in Airflow 3.3.2
(apache/airflow#64649).
"""

from __future__ import annotations

from airflow.sdk import BaseNotifier


class StorefenceNotifier(BaseNotifier):
    """Tell ``team`` (a team of ``routing.yaml``) that a task failed, on its ``severity`` channels."""

    template_fields = ("team", "severity", "note")

    def __init__(self, team: str = "data_engineering", severity: str = "yellow", note: str = "",
                 deliver: bool = True, state_url: str | None = None):
        super().__init__()
        self.team, self.severity, self.note = team, severity, note
        self.deliver, self.state_url = deliver, state_url

    def notify(self, context) -> None:
        from datetime import UTC, datetime

        from threshold_operators.alerting.lifecycle import fingerprint
        from threshold_operators.alerting.messages import task_failure_message
        from threshold_operators.alerting.pipeline import QueueReport, _key, enqueue_message
        from threshold_operators.alerting.routing import load_routing
        from threshold_operators.alerting.store import StateStore

        now = datetime.now(UTC)
        ti = context.get("ti") or context.get("task_instance")
        dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
        task_id = getattr(ti, "task_id", "?")
        run_id = context.get("run_id") or getattr(ti, "run_id", "?")
        exc = context.get("exception")
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}" if exc else "failed"
        if self.note:
            error = f"{error}\n{self.note}"
        log_url = getattr(ti, "log_url", None)
        routing = load_routing()
        store = StateStore(url=self.state_url)
        store.create()
        text = task_failure_message(dag_id, task_id, run_id, error, log_url)
        text.severity = self.severity
        report = QueueReport()
        enqueue_message(store, routing, routing.team_of(self.team), 1, text, _key("task_failed", dag_id, task_id, run_id),
                        fingerprint(f"task:{dag_id}", task_id), "task_failed", now, report,
                        data={"dag_id": dag_id, "task_id": task_id, "run_id": run_id, "error": error})
        self.log.info("Storefence: task failure of %s.%s (%s) queued for %s: %d new, %d already queued",
                      dag_id, task_id, run_id, self.team, report.queued, report.duplicates)
        if self.deliver and report.queued:
            from threshold_operators.alerting.delivery import deliver

            deliver(store, routing, log=self.log)  # the real clock at each claim
