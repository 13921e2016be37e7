"""Fault points on the alert path, for the fault-injection suite (``tests/alerting/test_faults.py``).

The pipeline, the escalation cycle and delivery call ``point(step)`` between their steps ("alert
recorded", "message queued", "claimed", "sent", ...). Normally it does nothing (one environment
lookup). With ``STOREFENCE_FAULT=<step>:<action>[@<n>]`` it injects, at the n-th time the step
is reached in this process (default the first):

- ``raise``: an ``InjectedFault`` exception (a bug, a lost database connection);
- ``kill``: ``SIGKILL`` to this process (a worker killed by the OOM killer or a deploy), so
  nothing after it runs: no ``finally``, no rollback but the database's own.

In-process tests may also register ``hooks[step] = callable`` (run when the step is reached:
e.g. an acknowledgement made between a cycle's read and its write). The steps are listed in
``STEPS`` (docs/alerting.md says where each sits).
"""

from __future__ import annotations

import os
import signal

ENV = "STOREFENCE_FAULT"
STEPS = (
    "notify.decided",      # the evaluation's alerts and messages decided, nothing written
    "notify.recorded",     # inside the transaction: alert states written, no outbox row yet
    "notify.queued",       # inside the transaction: messages queued, actions not yet
    "notify.committed",    # the transaction committed, delivery not started
    "cycle.decided",       # a cycle step's message decided from the alerts it read, nothing written
    "cycle.told",          # inside a cycle step's transaction: message queued, alerts not yet written
    "deliver.claimed",     # a batch claimed, not sent
    "deliver.sent",        # the receiver accepted it, not recorded (at-least-once sits here)
    "deliver.recorded",    # recorded sent
)
_seen: dict[str, int] = {}
hooks: dict = {}  # step -> callable(step), for in-process tests


class InjectedFault(RuntimeError):
    """The exception ``raise`` injects."""


def point(step: str) -> None:
    if hooks and step in hooks:
        hooks[step](step)
    spec = os.environ.get(ENV)
    if not spec:
        return
    where, _, action = spec.partition(":")
    if where != step:
        return
    action, _, nth = action.partition("@")
    _seen[step] = _seen.get(step, 0) + 1
    if _seen[step] != int(nth or 1):
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"fault injected at {step}")


def reset() -> None:
    """Forget how often each step was reached, and the hooks (between in-process test cases)."""
    _seen.clear()
    hooks.clear()
