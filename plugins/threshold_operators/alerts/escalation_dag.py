"""``storefence_escalation``: the alerting cycle every few minutes, whether or not data landed.

One task, ``escalate_and_deliver`` (``alerting.escalation.run_cycle``): release alerts whose
silence or inhibition ended, escalate the ones nobody acknowledged within their SLA, repeat the
ones still firing, and deliver the outbox (retries after a channel outage, the throttled rest of
a burst, fallbacks). It never touches the warehouse, so it runs outside the warehouse pool and
keeps going while an extract or the warehouse is down. Every step is idempotent: a retried or
overlapping run repeats nothing.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, CronTriggerTimetable, task

from threshold_operators.alerting.notifier import StorefenceNotifier

DAG_ID = "storefence_escalation"
EVERY = "*/2 * * * *"  # every two minutes: delivery retries start at 30 s, SLAs are 30 min or more


def build_escalation_dag(cron: str = EVERY) -> DAG:
    with DAG(
        dag_id=DAG_ID,
        schedule=CronTriggerTimetable(cron, timezone="UTC"),
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(minutes=10),
        tags=["storefence", "alerts"],
        doc_md=__doc__,
        default_args={"owner": "storefence", "retries": 1, "retry_delay": timedelta(seconds=20),
                      "on_failure_callback": [StorefenceNotifier(team="data_engineering", deliver=False)]},
    ) as dag:

        @task(execution_timeout=timedelta(minutes=8))
        def escalate_and_deliver() -> dict:
            from datetime import UTC, datetime

            from threshold_operators.alerting.escalation import run_cycle
            from threshold_operators.alerting.routing import load_routing
            from threshold_operators.alerting.store import StateStore
            from threshold_operators.rules.catalogue import load_catalogue

            store = StateStore()
            store.create()
            rules = {rid: r.rule for rid, r in load_catalogue().rules.items()}
            report = run_cycle(store, load_routing(), rules, datetime.now(UTC),
                               clock=lambda: datetime.now(UTC))  # delivery claims at the current time
            print(report.summary())
            d = report.delivery
            return {"released": len(report.released), "escalated": len(report.escalated),
                    "repeated": len(report.repeated), "queued": report.queued, "sent": len(d.sent),
                    "retrying": len(d.retrying), "failed": len(d.failed), "waiting": d.held_back + d.throttled}

        escalate_and_deliver()
    return dag
