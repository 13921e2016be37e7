"""The one place that decides what an evaluation failure means for the task.

- A **breach** is not a failure of Storefence: the check task fails at once, without retries
  (``AirflowFailException``), so the notification task downstream runs with the details.
- An **infrastructure error** (warehouse unreachable, a DuckDB file locked by another process,
  a dropped connection, a timeout) may pass: the task is retried (``AirflowException``).
- A **rule or configuration error** (the warehouse rejects the rule's SQL, a missing
  connection) will not pass by retrying: the task fails at once, and says so.

Each error is logged and reported with its kind, so the log, the task state and the
notification tell "the rule breached" from "Storefence could not evaluate the rule".
"""

from __future__ import annotations

from enum import StrEnum

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class FailureKind(StrEnum):
    BREACH = "breach"
    INFRASTRUCTURE = "infrastructure"  # retried
    RULE = "rule"  # not retried: fix the rule or the configuration


def kind_of(exc: BaseException) -> FailureKind:
    """Classify an exception raised while evaluating a rule."""
    import sqlalchemy.exc as sa_exc

    from threshold_operators.warehouse.hook import WarehouseConfigError

    if isinstance(exc, WarehouseConfigError):
        return FailureKind.RULE
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError
                  | sa_exc.DisconnectionError | ConnectionError | TimeoutError | OSError):
        return FailureKind.INFRASTRUCTURE
    if isinstance(exc, sa_exc.ProgrammingError | sa_exc.DataError | sa_exc.IntegrityError
                  | sa_exc.NotSupportedError | sa_exc.CompileError | KeyError | ValueError):
        return FailureKind.RULE
    text = f"{type(exc).__name__}: {exc}".lower()
    if any(s in text for s in ("could not set lock", "connection", "timeout", "io error", "unreachable")):
        return FailureKind.INFRASTRUCTURE
    if any(s in text for s in ("binder error", "parser error", "catalog error", "conversion error")):
        return FailureKind.RULE
    return FailureKind.INFRASTRUCTURE  # unknown: give it the retries rather than lose a cycle


def raise_for(kind: FailureKind, message: str, cause: BaseException | None = None):
    """Raise the Airflow exception that makes the task do the right thing for ``kind``."""
    if kind is FailureKind.INFRASTRUCTURE:
        raise AirflowException(f"[infrastructure, will retry] {message}") from cause
    if kind is FailureKind.RULE:
        raise AirflowFailException(f"[rule or configuration error, not retried] {message}") from cause
    raise AirflowFailException(f"[breach] {message}") from cause
