"""A rule built in memory for the engine's unit tests: one absolute condition unless overridden."""

from __future__ import annotations

from threshold_operators.rules.model import Rule


def rule(**over) -> Rule:
    spec = {"id": "sales.t", "name": {"zh": "测", "en": "T"}, "description": "d", "query": "q.sql",
            "entity": "shop", "conditions": [{"metric": "orders", "above": 5}], "owner": "o", "runbook": "r"}
    return Rule.model_validate({**spec, **over})
