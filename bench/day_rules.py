"""False alerts of the day and event-count rules on ordinary weeks, and how close they came.

For each rule (default: the rules issue 13 moved from hours and local days to rolling windows
evaluated every 5 minutes: finance.refund_rate and its fast window, finance.complaint_spike, finance.payment_failure,
customer.negative_review, customer.negative_review_burst), over the ordinary weeks of
``bench/rule_variants.py`` (the catalogue tests' shop, Singles' Day weeks left out, before the
first incident): alert episodes a week (``storefence backtest``'s episodes, yellow and red apart
from blue), and the highest value each condition reached with its volume guard met (the margin
below the threshold). Run it on the rule files of another branch to compare:

    .venv/bin/python bench/day_rules.py --warehouse duckdb:////tmp/storefence-variants.duckdb
    STOREFENCE_RULES_DIR=old/include/rules STOREFENCE_SQL_DIR=old/include/sql .venv/bin/python bench/day_rules.py
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(REPO / "bench"))

RULES = ("finance.refund_rate", "finance.refund_rate_fast", "finance.complaint_spike", "finance.payment_failure", "customer.negative_review",
         "customer.negative_review_burst")


def _closest(catalogue, hook, rule_id: str, weeks) -> dict:
    """Per condition, the highest compared value over every evaluated bucket whose volume guard held."""
    from sqlalchemy import text

    from threshold_operators.engine.compile import compile_rule, scored_sql

    loaded = catalogue.get(rule_id)
    compiled = compile_rule(loaded, catalogue.get)
    n = len(loaded.rule.conditions)
    sql = scored_sql(compiled).replace("SELECT * FROM scored", "SELECT " + ", ".join(
        f"MAX(CASE WHEN volume_ok = 1 THEN v_{i} END) AS v_{i}" for i in range(n)) + " FROM scored")
    top = [None] * n
    with hook.engine.connect() as con:
        for week in weeks:
            row = con.execute(text(sql), compiled.params(week, week + timedelta(days=7))).one()
            top = [v if t is None else (t if v is None else max(t, float(v))) for t, v in zip(top, row, strict=True)]
    return {f"{c.metric} ({c.compare})": None if v is None else round(v, 3)
            for c, v in zip(loaded.rule.conditions, top, strict=True)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--warehouse", default="duckdb:////tmp/storefence-variants.duckdb")
    p.add_argument("--rules", default=",".join(RULES))
    p.add_argument("--out", help="write the figures as JSON")
    args = p.parse_args()

    from rule_variants import _warehouse, _weeks

    from threshold_operators.analysis.backtest import backtest
    from threshold_operators.durations import format_duration
    from threshold_operators.engine.evaluate import warehouse_query
    from threshold_operators.rules.catalogue import load_catalogue

    hook = _warehouse(args.warehouse)
    catalogue = load_catalogue()
    weeks = _weeks(datetime(2026, 8, 10, tzinfo=UTC))
    query = warehouse_query(hook)
    out = {"weeks": len(weeks), "from": weeks[0].date().isoformat(),
           "to": (weeks[-1] + timedelta(days=7)).date().isoformat(), "rules": {}}
    print(f"{len(weeks)} ordinary weeks ({out['from']} .. {out['to']})")
    print("| rule | window, cadence | alerts a week (yellow/red) | blue a week | highest value reached (volume guard met) |")
    print("|---|---|---|---|---|")
    for rid in args.rules.split(","):
        loaded = catalogue.get(rid)
        rule = loaded.rule
        paging = blue = 0
        for week in weeks:
            eps = backtest(loaded, catalogue.get, query, week, week + timedelta(days=7)).episodes
            paging += sum(e.severity in ("yellow", "red") for e in eps)
            blue += sum(e.severity == "blue" for e in eps)
        closest = _closest(catalogue, hook, rid, weeks)
        every = format_duration(rule.every)
        shape = f"{format_duration(rule.window)} every {every}" if rule.rolling else f"{rule.grain} every {every}"
        out["rules"][rid] = {"shape": shape, "paging_per_week": round(paging / len(weeks), 3),
                             "blue_per_week": round(blue / len(weeks), 2), "closest": closest}
        print(f"| `{rid}` | {shape} | {paging / len(weeks):.2f} | {blue / len(weeks):.1f} | "
              f"{'; '.join(f'{k}: {v}' for k, v in closest.items())} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
