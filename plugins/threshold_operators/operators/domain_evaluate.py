"""DomainEvaluateOperator: one cycle of every rule of a domain, on one warehouse session.

What a domain's alert DAG runs once per extract cycle (``alerts.dag_factory``). Under the real
scheduler every task is a process start; a task per rule made a domain of six rules six
processes every 5 minutes (and six more to notify). This operator evaluates the domain's rules
in turn in one task, on one ``WarehouseHook`` in one ``session()`` (on DuckDB the file opened
once for the cycle; the rule catalogue read once; the rules' cycles recorded together after the
last, in one transaction: ``_record``); the rollups the domain's rules read are brought up to date
before the first rule, all in one write transaction (``_maintain_rollups``: one commit, not one a
rollup), so each rule finds them held; when that fails, each rule maintains its own as
``ThresholdCheckOperator`` does, and a failure is that rule's outcome.

Each rule is one ``threshold_check.evaluate_rule`` call, as ``ThresholdCheckOperator`` makes it,
and its outcome is a recorded state, never an exception that stops the loop:

- an infrastructure error (the warehouse unreachable, a dropped connection) is retried in the
  task, ``attempts`` times with a growing pause, then recorded as ``outcome: error`` (kind
  ``infrastructure``); a rule error (the warehouse rejects its SQL) at once (kind ``rule``);
  the next rule is evaluated either way;
- the task itself succeeds whatever the rules' outcomes: a breach is not a failure of
  Storefence, and an error is told per rule by its notification (which then fails: the rule is
  red in the grid).

What it returns (``return_value``, what the notify task is mapped over): the summaries of the
rules with something to tell: a live breach, an error, entities that resolved, a table that
failed its extract gate, or a gate alert still open on a table the rule read (a passing gate
resolves it). A quiet cycle returns nothing and starts no notification process. Every rule's
summary, told or not, is in the XCom ``evaluations`` (rule id -> summary) and in the task log's
closing table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator

from threshold_operators.warehouse import WAREHOUSE_CONN_ID


def has_news(summary: dict, open_gate_tables: set[str]) -> bool:
    """Whether the notification of this summary could change anything (``alerting.pipeline``). Pure."""
    if summary.get("outcome") == "error":
        return True
    if summary.get("failing_tables") or set(summary.get("gates_checked") or ()) & open_gate_tables:
        return True
    if summary.get("mode") == "shadow" or summary.get("outcome") in (None, "up_to_date"):
        return False
    return bool(summary.get("firing") or summary.get("breaches") or summary.get("resolved_entities")
                or summary.get("truncated"))


def open_gate_tables() -> set[str]:
    """The tables with a data-gate alert still open in the state store (a passing gate resolves it)."""
    from threshold_operators.alerting import data_gates
    from threshold_operators.alerting.store import StateStore

    store = StateStore()
    store.create()
    return {data_gates.table_of(a) for a in store.list(active_only=True) if data_gates.is_gate(a.rule_id)}


class DomainEvaluateOperator(BaseOperator):
    """Evaluate the rules ``rule_ids`` (of one domain) for one cycle, on one warehouse session."""

    template_fields: Sequence[str] = ("conn_id", "window_start", "window_end")
    ui_color = "#fde2b8"

    def __init__(self, *, rule_ids: Sequence[str], conn_id: str = WAREHOUSE_CONN_ID, window_start: str | None = None,
                 window_end: str | None = None, max_catchup: timedelta = timedelta(hours=48), attempts: int = 3,
                 retry_pause: float = 5.0, keep_results: timedelta | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.rule_ids = list(rule_ids)
        self.conn_id = conn_id
        self.window_start = window_start
        self.window_end = window_end
        self.max_catchup = max_catchup
        self.attempts = attempts
        self.retry_pause = retry_pause
        self.keep_results = keep_results  # None: record.KEEP_RESULTS; timedelta(0): never prune

    def get_db_hook(self):
        from threshold_operators.warehouse.hook import WarehouseHook

        return WarehouseHook(warehouse_conn_id=self.conn_id)

    def execute(self, context) -> list[dict]:
        from threshold_operators.bundle import include_digest, include_dir
        from threshold_operators.engine.gates import CycleFacts
        from threshold_operators.rules.catalogue import load_catalogue

        catalogue = load_catalogue()
        # which files this worker evaluates: equal digests on two workers, equal thresholds
        self.log.info("rules from %s (include/ digest %s)", include_dir(), include_digest())
        hook = self.get_db_hook()
        summaries: dict[str, dict] = {}
        tables = {t for r in self.rule_ids if (loaded := catalogue.rules.get(r)) is not None for t in loaded.tables}
        run_id = context.get("run_id")
        try:
            with hook.session():  # one warehouse session for the domain's cycle
                facts = CycleFacts(hook, tables)  # the gates and landed marks, asked once for every rule
                self._maintain_rollups(hook, catalogue, facts)
                evaluated: list = []  # (evaluation, rule), recorded together after the last rule
                for rule_id in self.rule_ids:
                    summaries[rule_id] = self._evaluate_one(hook, catalogue, rule_id, run_id, facts, evaluated)
                self._record(hook, evaluated, summaries, run_id)
                self._prune(hook, summaries)
        finally:
            hook.engine.dispose()
        context["ti"].xcom_push(key="evaluations", value=summaries)
        try:
            gated = open_gate_tables()
        except Exception as exc:  # noqa: BLE001 - the state store unreadable: tell every rule that read a table
            self.log.warning("state store unreadable (%s): every rule's gates are told", exc)
            gated = {t for s in summaries.values() for t in s.get("gates_checked") or ()}
        tell = [s for s in summaries.values() if has_news(s, gated)]
        self.log.info("%s", report(summaries, {s["rule_id"] for s in tell}))
        return tell

    def _maintain_rollups(self, hook, catalogue, facts) -> None:
        """Every rollup the domain's rules read, for their usual cycle (from the newest complete
        slice of landed data back one ``every``; an explicit window's start when the DAG gives one),
        in one write transaction. A failure is only logged: each rule's evaluation maintains what
        it reads itself, so an error there is that rule's recorded outcome, not the domain's."""
        from datetime import UTC

        from threshold_operators.engine.record import next_window
        from threshold_operators.engine.rollups import maintain_cycle, rollups_needed
        from threshold_operators.operators.threshold_check import parse_time

        try:
            cycles = []
            explicit = parse_time(self.window_start)
            for rule_id in self.rule_ids:
                loaded = catalogue.rules.get(rule_id)
                if loaded is None or not rollups_needed(loaded, catalogue):
                    continue
                start = explicit
                if start is None:
                    landed = facts.landed_until(loaded.tables)
                    if landed is None:
                        continue
                    start = next_window(loaded.rule, None, landed, self.max_catchup)[0]
                cycles.append((loaded, start))
            for done in maintain_cycle(hook, cycles, catalogue, datetime.now(UTC)):
                self.log.info("rollup %s", done.describe())
        except Exception as exc:  # noqa: BLE001 - the rules maintain their own, and record what fails
            self.log.warning("maintaining the domain's rollups together failed (%s: %s); each rule maintains its own",
                             type(exc).__name__, str(exc)[:200])

    def _record(self, hook, evaluated: list, summaries: dict[str, dict], run_id: str | None) -> None:
        """The domain's evaluations in one transaction (``record_many``: an upsert per table and
        one commit for all the rules), retried as a rule is; when it still fails, each rule's
        alone, so a rule whose record fails loses only its own cycle: its summary becomes that
        error ("evaluated, but its cycle could not be recorded"; the next cycle takes the same window)."""
        from threshold_operators.engine.record import record, record_many
        from threshold_operators.operators.failures import kind_of
        from threshold_operators.operators.threshold_check import error_summary

        try:
            self._retried("recording the domain's cycle", lambda attempt: record_many(hook, evaluated, run_id))
            return
        except Exception as exc:  # noqa: BLE001 - every failure is a recorded outcome
            self.log.warning("recording the domain's cycle in one transaction failed (%s: %s); each rule's alone",
                             type(exc).__name__, str(exc)[:200])
        for ev, rule in evaluated:
            try:
                record(hook, ev, rule, run_id)
            except Exception as exc:  # noqa: BLE001 - this rule's outcome, not the others'
                kind = kind_of(exc)
                summaries[rule.id] = error_summary(rule, kind, exc, "evaluated, but its cycle could not be recorded")
                self.log.error("%s (%s)", summaries[rule.id]["error"]["message"], kind)

    def _prune(self, hook, summaries: dict[str, dict]) -> None:
        """Once a day (the cycle whose windows cross a UTC midnight in data time), the domain's rules'
        history older than ``keep_results`` (``record.prune``). A failure is only logged: the
        rules' outcomes are recorded already, and the next day's prune takes what this one left."""
        from threshold_operators.engine.record import KEEP_RESULTS, crosses_midnight, prune

        keep = KEEP_RESULTS if self.keep_results is None else self.keep_results
        if not keep or not crosses_midnight(summaries.values()):
            return
        end = max(datetime.fromisoformat(s["window_end"]) for s in summaries.values() if s.get("window_end"))
        try:
            results, evaluations = prune(hook, list(summaries), end - keep)
            self.log.info("history before %s pruned: %d rule_results and %d rule_evaluations rows",
                          (end - keep).isoformat(), results, evaluations)
        except Exception as exc:  # noqa: BLE001 - housekeeping; the next day's prune catches up
            self.log.warning("pruning the history before %s failed (%s: %s); tried again tomorrow",
                             (end - keep).isoformat(), type(exc).__name__, str(exc)[:200])

    def _evaluate_one(self, hook, catalogue, rule_id: str, run_id: str | None, facts=None,
                      evaluated: list | None = None) -> dict:
        """One rule's summary; every failure is its recorded outcome, never an exception."""
        from datetime import UTC

        from threshold_operators.operators.failures import FailureKind, kind_of
        from threshold_operators.operators.threshold_check import error_summary, evaluate_rule

        loaded = catalogue.rules.get(rule_id)
        if loaded is None:  # the catalogue changed under a running DAG: told, not a crash
            return {"rule_id": rule_id, "mode": "live", "outcome": "error",
                    "error": {"kind": str(FailureKind.RULE), "message": f"{rule_id}: not in the catalogue (storefence lint)"}}
        try:  # the real clock at each rule: a cycle's rules do not share one stale "now"
            return self._retried(rule_id, lambda attempt: evaluate_rule(
                hook, loaded, catalogue, datetime.now(UTC), run_id, window_start=self.window_start,
                window_end=self.window_end, max_catchup=self.max_catchup, log=self.log,
                facts=facts if attempt == 1 else None, record_to=evaluated))
        except Exception as exc:  # noqa: BLE001 - every failure is a recorded outcome
            kind = kind_of(exc)
            summary = error_summary(loaded.rule, kind, exc)
            self.log.error("%s (%s)", summary["error"]["message"], kind)
            return summary

    def _retried(self, what: str, call):
        """``call(attempt)``, again after an infrastructure error (``attempts`` times in all, the
        pause growing); any other error, or the last, is raised for the caller to record."""
        from threshold_operators.operators.failures import FailureKind, kind_of

        for attempt in range(1, self.attempts + 1):
            try:
                return call(attempt)
            except Exception as exc:
                if kind_of(exc) is not FailureKind.INFRASTRUCTURE or attempt == self.attempts:
                    raise
                self.log.warning("%s: %s (attempt %d of %d); again in %.0f s", what, exc, attempt, self.attempts,
                                 self.retry_pause * attempt)
                time.sleep(self.retry_pause * attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")


def report(summaries: dict[str, dict], told: set[str]) -> str:
    """The task log's closing table: one line per rule. Pure."""
    lines = [f"{len(summaries)} rule(s) evaluated, {len(told)} with something to tell:"]
    for rule_id, s in summaries.items():
        what = s.get("outcome")
        if what == "error":
            what = f"error ({s['error']['kind']}): {s['error']['message'][:160]}"
        elif what == "breach":
            what = f"breach, {s.get('firing', 0)} firing" + (" (shadow)" if s.get("mode") == "shadow" else "")
        if s.get("resolved"):
            what += f", {s['resolved']} resolved"
        if s.get("failing_tables"):
            what += f", failing gates: {', '.join(sorted(s['failing_tables']))}"
        lines.append(f"  {'->' if rule_id in told else '  '} {rule_id:<34} {what}")
    return "\n".join(lines)
