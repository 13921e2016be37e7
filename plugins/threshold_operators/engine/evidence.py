"""The facts behind a compound rule's breach: what its referenced rules saw, for the message.

The double alert (``compound.spike_low_stock``) fires when a SKU's orders spike and its stock is
short; its own metric is the stock (hours left). The seed's director reads both facts in one line:
the spike ("订单 48 单，平时 12 单，×4.0") and the stock. After a compound rule breaches, the evaluate
task evaluates its referenced rules over the same window (the same statements the compound
embeds, read-only, not recorded: the referenced rules record their own cycles), and each breach
carries ``evidence``: the referenced breach of its entity that weighs most (highest level, then
latest), said in both languages by ``messages.said``. Only when the compound breaches, so the cost
is a few queries on the rare cycle with a red double alert.
"""

from __future__ import annotations

from datetime import datetime


def referenced_breaches(hook, loaded, catalogue, keys: set[str], start: datetime, end: datetime,
                        now: datetime, source: str = "query") -> dict[str, tuple]:
    """entity key -> (referenced rule, its breach as ``describe`` tells it), the one weighing most.
    ``source``: as the compound rule was compiled (``engine.compile.compile_rule``)."""
    from threshold_operators.engine.compile import compile_rule
    from threshold_operators.engine.evaluate import describe, evaluate, warehouse_query

    query = warehouse_query(hook)
    best: dict[str, tuple] = {}
    for rule_id in loaded.rule.references:
        ref = catalogue.get(rule_id)
        ev = evaluate(compile_rule(ref, catalogue.get, source=source), query, start, end, now=now)
        for r in ev.results:
            if r.entity_key not in keys or r.level <= 0 or not r.row or r.severity is None:
                continue
            rank = (r.level, r.bucket)
            if r.entity_key not in best or rank > best[r.entity_key][0]:
                best[r.entity_key] = (rank, ref.rule, describe(ref.rule, r))
    return {k: (rule, b) for k, (_, rule, b) in best.items()}


def with_evidence(hook, loaded, catalogue, breaches: list[dict], start: datetime, end: datetime,
                  now: datetime, source: str = "query") -> list[dict]:
    """The breaches of a compound rule, each with ``evidence`` (a list of one referenced breach:
    ``rule_id``, ``severity``, ``value``, ``baseline`` and ``said`` per language) when found."""
    from threshold_operators.alerting.messages import said

    if not breaches or not loaded.rule.references:
        return breaches
    found = referenced_breaches(hook, loaded, catalogue, {b["entity_key"] for b in breaches}, start, end, now,
                                source)
    out = []
    for b in breaches:
        if b["entity_key"] not in found:
            out.append(b)
            continue
        rule, ref = found[b["entity_key"]]
        words = {lang: said(rule, ref, lang) for lang in ("zh", "en")}
        if not all(words.values()):
            out.append(b)
            continue
        out.append({**b, "evidence": [{"rule_id": rule.id, "severity": ref["severity"], "value": ref["value"],
                                       "baseline": ref["baseline"], "said": words}]})
    return out
