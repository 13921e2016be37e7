"""One DAG factory for every rule domain: ``storefence_alerts_<domain>`` from include/rules/<domain>.yaml.

Two tasks, whatever the number of rules (under the scheduler each task is a process start, and
a domain evaluated every 5 minutes must not queue behind itself):

- ``evaluate``: a ``DomainEvaluateOperator``. It evaluates each rule's buckets that completed
  since the rule's last cycle, in turn, on one warehouse session, and records every evaluation.
  A rule's error (an infrastructure error retried in the task first) is its recorded outcome,
  not the end of the loop; the task returns the summaries of the rules with something to tell
  (a live breach, an error, a resolution, a data gate failing or passing again) and keeps every
  rule's summary in the XCom ``evaluations``;
- ``notify``, mapped over those summaries (one instance per rule with news, named
  ``<rule>: <outcome>`` in the grid; none in a quiet cycle): runs the alerting pipeline on the
  rule's outcome (``alerting.pipeline``: record, mute, group, route, dedup, actions): the alerts
  go to the state store (``storefence_state``), the messages to its outbox once per alert, event
  and data window, and are delivered at once; the ``storefence_escalation`` DAG retries what
  could not go and escalates what nobody acknowledged. An instance telling an evaluation error
  fails after queuing the message, so the rule is red in the grid.

A run triggered with ``{"window_start": "...", "window_end": "..."}`` as its conf evaluates that
window instead (a backfill; the results are upserted, so a repeated window changes nothing).

Schedule: once per extract cycle. Each extract run ends with one event of its source's Asset
(``storefence.source.<source>``, ``extract.dag_factory``); a domain is scheduled on
``AssetAll`` of the sources that feed the fact tables its rules read (``domain_sources``), or
at minute 10 of every hour whatever arrived (the fallback).

Why ``AssetAll`` and not ``AssetAny``: the sources run on the same cron, so with ``AssetAny`` a
domain reading two sources (customer: tracking_events from shop_api and reviews from reviews_api;
traffic: ads_api and shop_api; and every domain reading orders, fed by shop_api and the
shop_exports file drop) would run once per source per cycle, the duplicate runs competing for
the warehouse slot. With ``AssetAll`` the scheduler queues each source's event
(AssetDagRunQueue) and creates one run when every source's event of the cycle is in; a run
still going when the next cycle's events arrive makes the scheduler wait and then start one run
for all of them (max_active_runs=1). It also matches how the rules read: an hourly bucket is
complete only when the slowest table it reads has landed, so an earlier run could not have
evaluated it. The price: a source whose cycle does not come (its DAG paused or stuck) holds back
the domains that read it, so every extract run publishes, even when nothing advanced or a table
failed, and the hourly fallback evaluates whatever has landed (a stalled extract must not
silence the rules that would notice). To stop using a source, remove its file from
include/sources/ rather than pausing its DAG. Dimension tables (shops, products) trigger nothing.

Pools: ``evaluate`` opens the warehouse and runs in the ``storefence_warehouse`` pool; a notify task
needs only the state store and runs outside it, except that an evaluation too large for XCom
(``truncated``) is re-read from the warehouse's ``rule_results``: one short read (on DuckDB the
hook waits out the file's lock).

Parse time: the rule files are read and validated (``rules.catalogue``, cached per process);
no pandas, GX, driver import and no database access. A domain whose rule files have problems
raises ``RuleFileError``: the DAG file shows an import error with every problem (file, line,
field) and the other domains' DAGs are untouched.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, AssetAll, AssetOrTimeSchedule, CronTriggerTimetable, task

from threshold_operators.alerting.notifier import StorefenceNotifier
from threshold_operators.extract.dag_factory import source_asset
from threshold_operators.operators.domain_evaluate import DomainEvaluateOperator
from threshold_operators.rules.catalogue import domain_rules
from threshold_operators.warehouse import WAREHOUSE_CONN_ID, WAREHOUSE_POOL

START = pendulum.datetime(2025, 1, 1, tz="UTC")
FALLBACK_CRON = "10 * * * *"
DIMENSIONS = ("shops", "products", "warehouses")
# A run triggered with {"window_start": ..., "window_end": ...} (ISO 8601) re-evaluates that window
# (a backfill, or a replay after a late extract); otherwise each rule takes up where it left off.
WINDOW_FROM_CONF = "{{{{ (dag_run.conf or {{}}).get('{}', '') if dag_run else '' }}}}"


def outcome_label(evaluation: dict) -> str:
    """A notify task's name in the grid: the rule and what it tells. Pure."""
    what = evaluation.get("outcome") or "?"
    if what == "breach":
        what = f"breach, {evaluation.get('firing', 0)} firing"
    elif what == "error":
        what = f"could not evaluate ({(evaluation.get('error') or {}).get('kind', '?')})"
    if evaluation.get("resolved"):
        what += f", {evaluation['resolved']} resolved"
    if evaluation.get("failing_tables"):
        what += ", data gate failing"
    return f"{evaluation.get('rule_id', '?')}: {what}"


def _notify_task(conn_id: str):
    @task(task_id="notify", retries=2, map_index_template="{{ rule_outcome }}")
    def notify(evaluation: dict) -> dict | None:
        from datetime import UTC, datetime

        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        from threshold_operators.alerting.delivery import deliver
        from threshold_operators.alerting.pipeline import queue_notifications
        from threshold_operators.alerting.routing import load_routing
        from threshold_operators.alerting.store import StateStore
        from threshold_operators.rules.catalogue import load_catalogue

        context = get_current_context()
        context["rule_outcome"] = outcome_label(evaluation)
        ti = context["ti"]  # the alerts page links each alert to the task instance that evaluated it
        evaluation = {**evaluation, "evaluated_by": {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": "evaluate",
                                                     "notify_map_index": ti.map_index}}
        rule_id = evaluation["rule_id"]
        catalogue = load_catalogue()
        rule = catalogue.get(rule_id).rule
        if evaluation.get("truncated"):  # more entities than the XCom carries: all of them
            from threshold_operators.engine.record import window_results
            from threshold_operators.warehouse.hook import WarehouseHook

            hook = WarehouseHook(warehouse_conn_id=conn_id)
            end = datetime.fromisoformat(evaluation["window_end"])
            evaluation = {**evaluation}
            evaluation["breaches"], evaluation["resolved_at"] = window_results(hook, rule, end)
            evaluation["resolved_entities"] = list(evaluation["resolved_at"])
            hook.engine.dispose()
        store = StateStore()
        store.create()
        routing = load_routing()
        now = datetime.now(UTC)
        components = {r.id: list(r.rule.references) for r in catalogue.rules.values() if r.rule.references}
        queued = queue_notifications(rule, evaluation, store, routing, now, components=components)
        print(f"{rule_id}: outcome {evaluation.get('outcome')}, alerts {queued.events or 'unchanged'}, "
              f"muted {queued.muted or 'none'}; {queued.queued} message(s) and {queued.actions} action(s) queued, "
              f"{queued.duplicates} already there")
        if queued.queued or queued.actions:  # at once; what cannot go now, the escalation DAG retries
            d = deliver(store, routing, rules=[rule])  # the real clock at each claim, not the task's start
            print(f"delivered {len(d.sent)}, dry runs {len(d.dry_run)}, retrying {len(d.retrying)}, "
                  f"failed {len(d.failed)}, waiting {d.held_back + d.throttled}")
        if evaluation.get("outcome") == "error":  # told to the data engineers; the rule is red in the grid
            raise AirflowFailException((evaluation.get("error") or {}).get("message", f"{rule_id}: could not evaluate"))
        return {"rule_id": rule_id, "events": queued.events, "queued": queued.queued, "actions": queued.actions,
                "muted": queued.muted}

    return notify


def domain_sources(tables, sources) -> list[str]:
    """The sources whose cycles a domain reading ``tables`` waits for: those feeding one of its
    fact tables (``sources``: the valid SourceSpecs). Pure."""
    facts = set(tables) - set(DIMENSIONS)
    return sorted({s.source for s in sources for t in s.tables if t.table in facts})


def schedule_for(source_ids: list[str]):
    """One run per extract cycle of all the sources (``AssetAll``), or the hourly fallback."""
    timetable = CronTriggerTimetable(FALLBACK_CRON, timezone="UTC")
    if not source_ids:
        return timetable
    return AssetOrTimeSchedule(timetable=timetable, assets=AssetAll(*(source_asset(s) for s in source_ids)))


def build_alert_dag(domain: str, conn_id: str = WAREHOUSE_CONN_ID, keep_results: timedelta | None = None) -> DAG:
    """The DAG of ``domain``; raises RuleFileError (an import error) when its rules have problems.
    ``keep_results``: how long the warehouse keeps the rules' ``rule_results`` and
    ``rule_evaluations`` (None: 90 days, ``engine.record.KEEP_RESULTS``; ``timedelta(0)``: always)."""
    from threshold_operators.extract.sources import load_sources

    rules = domain_rules(domain)
    sources = domain_sources({t for r in rules for t in r.tables}, load_sources()[0])
    schedule = schedule_for(sources)
    lines = [f"**Threshold rules of the {domain} domain** (`include/rules/{domain}.yaml`, reference in docs/rules.md).",
             "", "| rule | mode | entity | grain | owner |", "|---|---|---|---|---|"]
    lines += [f"| `{r.id}` {r.rule.name.zh} / {r.rule.name.en} | {r.rule.mode} | {r.rule.entity} | {r.rule.grain} "
              f"| {r.rule.owner} |" for r in rules]
    lines += ["", f"Runs once per extract cycle of {', '.join(sources) or 'no source'} (all of them), "
                  f"and at minute 10 of every hour (`{FALLBACK_CRON}`) whatever arrived."]
    with DAG(
        dag_id=f"storefence_alerts_{domain}",
        schedule=schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=["storefence", "alerts", domain],
        doc_md="\n".join(lines),
        default_args={
            "owner": "storefence",
            "retries": 3,
            "retry_delay": timedelta(seconds=30),
            "retry_exponential_backoff": True,
            "max_retry_delay": timedelta(minutes=5),
        },
    ) as dag:
        evaluate = DomainEvaluateOperator(task_id="evaluate", rule_ids=[r.id for r in rules], conn_id=conn_id,
                                          pool=WAREHOUSE_POOL, keep_results=keep_results,
                                          window_start=WINDOW_FROM_CONF.format("window_start"),
                                          window_end=WINDOW_FROM_CONF.format("window_end"),
                                          doc_md=f"Every rule of the {domain} domain, one cycle, one warehouse session.",
                                          # a rule's failure is its outcome (told by notify); the task's own
                                          # failure (no rule evaluated at all) reaches the data engineers once
                                          on_failure_callback=[StorefenceNotifier(
                                              team="data_engineering", severity="yellow",
                                              note=f"no rule of the {domain} domain was evaluated in this run")])
        _notify_task(conn_id).expand(evaluation=evaluate.output)
    return dag
