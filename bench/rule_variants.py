"""The seed's literal rule variants against the shipped defaults, on ordinary weeks (docs/rules.md).

- sales.order_spike (same weekday and hour, 6 weeks, neighbouring hours) against
  sales.order_spike_7d (the seed's "same hour over the previous 7 days"): how far each baseline
  is from the truth on weekends and on weekdays (mean of value / baseline over every SKU-hour
  with a baseline of at least 3 orders), and the alerts each raises.
- sales.order_drop (same weekday and hour, median of 4 weeks) against sales.order_drop_daily_avg
  (the seed's "below 50% of the daily average"): firing hours, and how many of them at night.

The warehouse is the catalogue tests' shop (1 shop, 60 SKUs, 400 days, 2,500 orders a day,
seed 7, default incidents), built if missing. Ordinary weeks: Monday to Monday, from the first
with six weeks of history to the last before the first incident, Singles' Day weeks excluded.

    .venv/bin/python bench/rule_variants.py [--warehouse duckdb:////tmp/storefence-variants.duckdb]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

END = datetime(2026, 9, 30, tzinfo=UTC)
SPEC = dict(shops=1, skus=60, days=400, orders_per_day=2500, incidents="default", end=END, seed=7)
WEEKEND = (5, 6)  # Saturday, Sunday (shop-local)


def _warehouse(url: str):
    from threshold_operators.simulator.run import SimulationSpec, simulate
    from threshold_operators.warehouse.hook import WarehouseHook

    hook = WarehouseHook(url=url)
    path = Path(hook.duckdb_path) if hook.is_duckdb else None
    if path is not None and not path.exists():
        print(f"simulating the test shop into {path} ...", flush=True)
        simulate(SimulationSpec(**SPEC), hook)
    return hook


def _weeks(labels_first_incident: datetime) -> list[datetime]:
    start = datetime(2025, 8, 26, tzinfo=UTC) + timedelta(weeks=7)
    start -= timedelta(days=start.weekday())
    weeks, t = [], start
    while t + timedelta(days=7) <= labels_first_incident:
        if not (t.month == 11 and t.day <= 20) and not (t.month == 10 and t.day > 25):
            weeks.append(t)
        t += timedelta(days=7)
    return weeks


def _baseline_bias(catalogue, hook, rule_id: str, weeks) -> dict:
    """Mean of value / baseline, weekend and weekday hours, over SKU-hours with baseline >= 3."""
    from sqlalchemy import text

    from threshold_operators.engine.compile import compile_rule

    compiled = compile_rule(catalogue.get(rule_id), catalogue.get)
    sql = compiled.sql.replace("SELECT * FROM final", "SELECT * FROM scored WHERE base_0 >= 3")
    acc = {"weekend": [0.0, 0], "weekday": [0.0, 0]}
    with hook.engine.connect() as con:
        for week in weeks:
            for r in con.execute(text(sql), compiled.params(week, week + timedelta(days=7))):
                local = r.bucket + timedelta(hours=8)
                key = "weekend" if local.weekday() in WEEKEND else "weekday"
                acc[key][0] += float(r.orders) / float(r.base_0)
                acc[key][1] += 1
    return {k: round(s / n, 3) if n else None for k, (s, n) in acc.items()} | {"sku_hours": acc["weekend"][1] + acc["weekday"][1]}


def _alerts(catalogue, hook, rule_id: str, weeks) -> dict:
    from threshold_operators.engine.compile import compile_rule
    from threshold_operators.engine.evaluate import evaluate, warehouse_query

    compiled = compile_rule(catalogue.get(rule_id), catalogue.get)
    query = warehouse_query(hook)
    firing_hours = episodes = weekend = night = 0
    for week in weeks:
        ev = evaluate(compiled, query, week, week + timedelta(days=7), now=week)
        last: dict[str, datetime] = {}
        for r in ev.firing:
            firing_hours += 1
            local = r.bucket + timedelta(hours=8)
            weekend += local.weekday() in WEEKEND
            night += local.hour < 7
            if last.get(r.entity_key) != r.bucket - timedelta(hours=1):
                episodes += 1
            last[r.entity_key] = r.bucket
    n = len(weeks)
    return {"weeks": n, "alerts_per_week": round(episodes / n, 2), "firing_hours_per_week": round(firing_hours / n, 2),
            "weekend_share": round(weekend / firing_hours, 2) if firing_hours else None,
            "night_share": round(night / firing_hours, 2) if firing_hours else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--warehouse", default="duckdb:////tmp/storefence-variants.duckdb")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "rule_variants.json"))
    args = p.parse_args()

    from threshold_operators.rules.catalogue import load_catalogue

    hook = _warehouse(args.warehouse)
    catalogue = load_catalogue()
    weeks = _weeks(datetime(2026, 8, 10, tzinfo=UTC))
    out = {"spec": {k: str(v) for k, v in SPEC.items()}, "weeks": [w.date().isoformat() for w in weeks]}
    for rid in ("sales.order_spike", "sales.order_spike_7d"):
        out[rid] = {"baseline_bias": _baseline_bias(catalogue, hook, rid, weeks), **_alerts(catalogue, hook, rid, weeks)}
    for rid in ("sales.order_drop", "sales.order_drop_daily_avg"):
        out[rid] = _alerts(catalogue, hook, rid, weeks)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"{len(weeks)} ordinary weeks ({weeks[0].date()} .. {weeks[-1].date() + timedelta(days=7)})")
    print("| rule | value / baseline, weekends | weekdays | alerts a week | weekend share |")
    print("|---|---|---|---|---|")
    for rid in ("sales.order_spike", "sales.order_spike_7d"):
        b, a = out[rid]["baseline_bias"], out[rid]
        print(f"| `{rid}` | {b['weekend']} | {b['weekday']} | {a['alerts_per_week']} | {a['weekend_share']} |")
    print("\n| rule | alerts a week | firing hours a week | share at night (00-07 local) |")
    print("|---|---|---|---|")
    for rid in ("sales.order_drop", "sales.order_drop_daily_avg"):
        a = out[rid]
        print(f"| `{rid}` | {a['alerts_per_week']} | {a['firing_hours_per_week']} | {a['night_share']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
