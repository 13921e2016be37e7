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


# --- the last hours' counts of a spike ------------------------------------------------------------
RECENT_HOURS = 3


def recent_counts(hook, loaded, breaches: list[dict], end: datetime, hours: int = RECENT_HOURS) -> dict[str, list]:
    """entity key -> the rule's primary metric summed over each of the last ``hours`` hours ending at
    ``end`` (oldest first), from the rule's rollup: for a rolling rule whose metric is a count
    (``format: int``), the line "近 3 小时每小时 12 → 30 → 48 单" that shows a spike building. One
    read of the rollup's rows, bound parameters, on the evaluation connection."""
    from datetime import timedelta

    from sqlalchemy import bindparam, text

    from threshold_operators.rules.sql_template import rollup_table

    rule = loaded.rule
    metric = rule.primary.metric if rule.primary is not None else None
    spec = rule.metric_label(metric) if metric else None
    if not rule.rolling or spec is None or spec.format != "int" or metric not in rule.measures:
        return {}
    keys = list(rule.keys)
    wanted = {tuple(str(b["entity"].get(k)) for k in keys): b["entity_key"] for b in breaches if b.get("entity")}
    if not wanted or any(not k.isidentifier() for k in [*keys, metric]):
        return {}
    first = keys[-1]  # the most selective key (sku, batch_id, ...), then filtered on all in Python
    table = rollup_table(rule.query, rule.params)
    start = end - timedelta(hours=hours)
    stmt = text(f'SELECT {", ".join(f"{chr(34)}{k}{chr(34)}" for k in keys)}, bucket, "{metric}" AS v FROM {table} '
                f'WHERE bucket >= :start AND bucket < :end AND "{first}" IN :ids'
                ).bindparams(bindparam("ids", expanding=True))
    ids = sorted({k[-1] for k in wanted})
    counts: dict[str, list[float]] = {}  # only entities with rows: a count of nothing says nothing
    with hook.evaluation_connection() as con:
        for row in con.execute(stmt, {"start": start, "end": end, "ids": ids}):
            m = row._mapping
            key = wanted.get(tuple(str(m[k]) for k in keys))
            if key is None or m["v"] is None:
                continue
            bucket = m["bucket"] if m["bucket"].tzinfo else m["bucket"].replace(tzinfo=end.tzinfo)
            i = int((bucket - start).total_seconds() // 3600)
            if 0 <= i < hours:
                counts.setdefault(key, [0.0] * hours)[i] += float(m["v"])
    return counts


def with_recent(hook, loaded, breaches: list[dict], end: datetime) -> list[dict]:
    """The breaches, each with ``recent`` (``{"hours": 3, "counts": [...]}``) when the rule has them."""
    counts = recent_counts(hook, loaded, breaches, end) if breaches else {}
    if not counts:
        return breaches
    return [{**b, "recent": {"hours": len(counts[b["entity_key"]]), "counts": counts[b["entity_key"]]}}
            if b["entity_key"] in counts else b for b in breaches]
