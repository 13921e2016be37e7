"""ThresholdCheckOperator: evaluate one rule in the warehouse; fail the task when it breaches.

Like common.sql's check operators it never opens a cursor itself: the warehouse is reached
through ``WarehouseHook`` (the Airflow connection ``storefence_warehouse`` by default), so any
warehouse the hook supports works.

The window: by default the buckets that completed since the rule's last evaluation, up to the
last complete hour (a 5-minute rule: 5-minute slice) of landed data
(``engine.record.next_window``); ``window_start`` and ``window_end`` (templated, ISO 8601) set
it explicitly, e.g. for a backfill. A rolling rule's rollups (``engine.rollups``) first take in
every slice the loads marked since, on the writing connection; the rule itself runs read-only.

What the task does with the outcome:

- nothing firing: success;
- a live rule firing: the details go to XCom (``evaluation``) and the task fails at once,
  without retries (``AirflowFailException``); the notification task downstream
  (``trigger_rule=all_done``) reads them;
- a shadow rule firing: recorded, logged, success;
- an entity firing after the last cycle (``rule_results``) that this cycle no longer returns
  resolves (rules over a current state, e.g. stock now, return only what breaches); a table the
  rule reads that failed its extract gate makes the cycle incomplete: it resolves nothing; the
  tables judged (``gates_checked``) and the failing ones go to the XCom for the notify task
  (a drop rule is held back, a spike rule fires "data incomplete": ``alerting.pipeline``);
- the warehouse unreachable or locked: retried (``AirflowException``); a rule whose SQL the
  warehouse rejects: failed at once. Either way the XCom says ``outcome: error`` with the kind,
  so the notification says "could not evaluate", never "breach".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator

from threshold_operators.warehouse import WAREHOUSE_CONN_ID

MAX_BREACHES_IN_XCOM = 200


def parse_time(value) -> datetime | None:
    """A window bound as a DAG gives it (ISO text, templated, or a datetime; naive is UTC); None if unset."""
    if value in (None, "", "None"):
        return None
    from datetime import UTC

    t = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class ThresholdCheckOperator(BaseOperator):
    """Evaluate the rule ``rule_id`` of the catalogue (``include/rules/``) for one cycle."""

    template_fields: Sequence[str] = ("rule_id", "conn_id", "window_start", "window_end")
    ui_color = "#fde2b8"

    def __init__(self, *, rule_id: str, conn_id: str = WAREHOUSE_CONN_ID, window_start: str | None = None,
                 window_end: str | None = None, max_catchup: timedelta = timedelta(hours=48), **kwargs: Any):
        super().__init__(**kwargs)
        self.rule_id = rule_id
        self.conn_id = conn_id
        self.window_start = window_start
        self.window_end = window_end
        self.max_catchup = max_catchup

    def get_db_hook(self):
        from threshold_operators.warehouse.hook import WarehouseHook

        return WarehouseHook(warehouse_conn_id=self.conn_id)

    def execute(self, context):
        from datetime import UTC

        from threshold_operators.engine.evaluate import Outcome
        from threshold_operators.operators.failures import FailureKind, kind_of, raise_for
        from threshold_operators.rules.catalogue import load_catalogue

        catalogue = load_catalogue()
        loaded = catalogue.rules.get(self.rule_id)
        if loaded is None:
            raise_for(FailureKind.RULE, f"rule {self.rule_id!r} is not in the catalogue (storefence lint shows why)")
        rule = loaded.rule
        ti = context["ti"]
        hook = self.get_db_hook()
        try:
            with hook.session():
                summary = evaluate_rule(hook, loaded, catalogue, datetime.now(UTC), context.get("run_id"),
                                        window_start=self.window_start, window_end=self.window_end,
                                        max_catchup=self.max_catchup, log=self.log)
        except Exception as exc:  # one place decides: retry or fail now
            kind = kind_of(exc)
            failed = error_summary(rule, kind, exc)
            self.log.error("%s (%s)", failed["error"]["message"], kind)
            ti.xcom_push(key="evaluation", value=failed)
            raise_for(kind, failed["error"]["message"], exc)
        ti.xcom_push(key="evaluation", value=summary)
        if summary["outcome"] == str(Outcome.BREACH):
            lines = [f"  {b['severity']:6} {b['entity_key']} at {b['bucket']}: {b['metric']} = {b['value']} "
                     f"(baseline {b['baseline']}, threshold {b['threshold']})" for b in summary["breaches"][:20]]
            if rule.mode == "shadow":
                self.log.info("shadow rule %s would have fired:\n%s", rule.id, "\n".join(lines))
            else:
                raise_for(FailureKind.BREACH, f"{rule.id} breached for {summary['firing']} entities:\n"
                          + "\n".join(lines))
        return summary

    @staticmethod
    def _summary(ev, rule) -> dict:
        breaches = ev.breaches(rule) if ev.results else []
        latest: dict[str, Any] = {}
        for r in ev.results:
            if r.entity_key not in latest or r.bucket > latest[r.entity_key].bucket:
                latest[r.entity_key] = r
        # resolved: entities whose latest state in the window is resolved (not one that fired again)
        resolved = sorted(k for k, r in latest.items() if r.state == "resolved")
        return {
            "rule_id": rule.id,
            "mode": rule.mode,
            "outcome": str(ev.outcome),
            "window_start": ev.window_start.isoformat() if ev.window_start != datetime.min else None,
            "window_end": ev.window_end.isoformat() if ev.window_end != datetime.min else None,
            "firing": len(breaches),
            "pending": len({r.entity_key for r in ev.results if r.state == "pending"}),
            "resolved": len(resolved),
            "resolved_entities": resolved[:MAX_BREACHES_IN_XCOM],
            "resolved_at": {k: latest[k].bucket.isoformat() for k in resolved[:MAX_BREACHES_IN_XCOM]},
            "breaches": breaches[:MAX_BREACHES_IN_XCOM],
            # more than the XCom carries: the notification task reads them all from rule_results
            "truncated": len(breaches) > MAX_BREACHES_IN_XCOM or len(resolved) > MAX_BREACHES_IN_XCOM,
            "detail": ev.detail,
        }


def error_summary(rule, kind, exc: BaseException, what: str = "could not evaluate") -> dict:
    """The XCom of a cycle that could not evaluate: the notification says "could not evaluate".
    ``what``: the step that failed, as the message says it."""
    message = f"{rule.id}: {what}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:500]}"
    return {"rule_id": rule.id, "mode": rule.mode, "outcome": "error", "error": {"kind": str(kind), "message": message}}


def told_in_full(hook, loaded, catalogue, breaches: list[dict], start: datetime, end: datetime, now: datetime,
                 log) -> list[dict]:
    """The breaches as the messages want them: the entities' names (``engine.names``), a rolling
    rule's last hours and a compound rule's referenced breaches (``engine.evidence``). A step that
    fails is logged and skipped: a message with less in it beats none."""
    from threshold_operators.engine.evidence import with_evidence, with_recent
    from threshold_operators.engine.names import with_names

    rule = loaded.rule
    steps = [("the entities' names were not looked up; messages show their keys",
              lambda b: with_names(hook, b, log))]
    if rule.rolling:
        steps.append(("the last hours' counts were not read", lambda b: with_recent(hook, loaded, b, end)))
    if rule.references:
        steps.append(("the referenced rules' breaches were not looked up; the message shows the rule's own metric",
                      lambda b: with_evidence(hook, loaded, catalogue, b, start, end, now, source="rollup")))
    for lost, step in steps:
        try:
            breaches = step(breaches)
        except Exception as exc:  # noqa: BLE001 - logged, not fatal
            log.warning("%s: %s (%s: %s)", rule.id, lost, type(exc).__name__, str(exc)[:200])
    return breaches


def evaluate_rule(hook, loaded, catalogue, now: datetime, run_id: str | None, *, window_start=None, window_end=None,
                  max_catchup: timedelta = timedelta(hours=48), maintain: bool = True, log=None,
                  facts=None, record_to: list | None = None) -> dict:
    """One cycle of one rule on an open ``hook``: the gates of its tables, its window (explicit, or
    the buckets completed since its last evaluation), its rollups (``maintain=False`` when the
    caller maintained them already), the evaluation, recorded; returns the summary the
    notification reads (``ThresholdCheckOperator._summary`` plus the gates judged). ``facts``: the
    domain cycle's ``engine.gates.CycleFacts`` (gates and landed marks asked once for all its
    rules); None asks for this rule alone. ``record_to``: a list the evaluation is appended to
    (with the rule), for the caller to record with the rest of its domain's
    (``engine.record.record_many``); None records it here. Raises what the warehouse raised: the
    caller classifies it (``operators.failures``)."""
    import logging

    from threshold_operators.engine.compile import compile_rule
    from threshold_operators.engine.evaluate import Evaluation, Outcome
    from threshold_operators.engine.gates import CycleFacts
    from threshold_operators.engine.record import (
        last_evaluation,
        live_evaluation,
        next_window,
        record,
    )
    from threshold_operators.engine.rollups import maintain_for, rollups_needed

    log = log or logging.getLogger(__name__)
    rule = loaded.rule
    facts = facts or CycleFacts(hook, loaded.tables)
    gates = facts.failing_tables(loaded.tables)
    # the gates judged, and when: a table that passes resolves its gate alert (alerting.data_gates)
    judged = {"failing_tables": gates, "gates_checked": sorted(loaded.tables), "gates_checked_at": now.isoformat()}
    start, end = parse_time(window_start), parse_time(window_end)
    note = "explicit window"
    last = last_evaluation(hook, rule.id)
    if start is None or end is None:
        start, end, note = next_window(rule, last.end, facts.landed_until(loaded.tables), max_catchup)
    if end <= start:
        log.info("%s: nothing to evaluate (%s)", rule.id, note)
        ev = Evaluation(rule.id, rule.mode, start, end, Outcome.UP_TO_DATE, evaluated_at=now, detail=note)
        return ThresholdCheckOperator._summary(ev, rule) | judged
    if maintain and rollups_needed(loaded, catalogue):  # a rolling rule: its rollups first take in what landed
        for done in maintain_for(hook, loaded, catalogue, start, end, now):
            log.info("rollup %s", done.describe())
    # the window continues the last recorded one, which was complete and of this definition: its
    # states are where the walk resumes (no lead-in)
    compiled = compile_rule(loaded, catalogue.get, source="rollup")
    ev = live_evaluation(hook, compiled, start, end, now, gates, resume=last.resumable(start, compiled.definition))
    ev.detail = note if ev.detail is None else f"{note}; {ev.detail}"
    if record_to is None:
        record(hook, ev, rule, run_id)
    summary = ThresholdCheckOperator._summary(ev, rule) | judged
    if summary["breaches"] and rule.mode == "live":  # what the messages say besides the numbers
        summary["breaches"] = told_in_full(hook, loaded, catalogue, summary["breaches"], start, end, now, log)
    if gates:
        log.warning("%s reads tables that failed their extract gates: %s", rule.id, gates)
    log.info("%s [%s] %s .. %s: %s, %d firing, %d pending, %d resolved (%d candidate rows, %d ms; %s)",
             rule.id, rule.mode, start.isoformat(), end.isoformat(), ev.outcome, summary["firing"],
             summary["pending"], summary["resolved"], ev.candidates, ev.duration_ms, note)
    if record_to is not None:  # last: a retry of a rule that failed before this point adds nothing twice
        record_to.append((ev, rule))
    return summary
