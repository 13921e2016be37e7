"""The seed's literal rule variants against the shipped defaults, on ordinary weeks (docs/rules.md).

- sales.order_spike (same weekday and hour, 6 weeks, neighbouring hours) against
  sales.order_spike_7d (the seed's "same hour over the previous 7 days"): how far each baseline
  is from the truth on weekends and on weekdays (mean of value / baseline over every SKU-hour
  with a baseline of at least 3 orders), and the alerts each raises.
- sales.order_drop (same weekday and hour, median of 4 weeks) against sales.order_drop_daily_avg
  (the seed's "below 50% of the daily average"): firing hours, and how many of them at night.
- traffic.paid_cost_quality (24-hour cost per paid visitor +50% AND paid conversion -30% against a
  reference): its alerts, the channel-hours it could evaluate (those with a reference), which
  reference they had, and how close it came to firing (the larger of the two changes' shares of
  their thresholds that both reach: 1.0 fires); and, from ad_spend directly, the candidate
  references side by side (year over year; the same 24 hours of the previous 4 weeks, the shipped
  fallback; the 28 days before the 24 hours): the spread of each change, alerts, closest approach.
  Run it with STOREFENCE_RULES_DIR / STOREFENCE_SQL_DIR of another checkout for that catalogue.

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


def _paid(catalogue, hook, weeks) -> dict:
    """traffic.paid_cost_quality as shipped: what it could evaluate and how close it came to firing."""
    from collections import Counter

    from threshold_operators.engine.compile import compile_rule, scored_sql
    from threshold_operators.engine.evaluate import warehouse_query

    rule_id = "traffic.paid_cost_quality"
    loaded = catalogue.get(rule_id)
    compiled = compile_rule(loaded, catalogue.get)
    (t0,), (t1,) = (c.thresholds(loaded.rule.severity).values() for c in loaded.rule.conditions[:2])
    query = warehouse_query(hook)
    evaluated, closest, references = 0, 0.0, Counter()
    for week in weeks:
        for r in query(scored_sql(compiled), compiled.params(week, week + timedelta(days=7))):
            bucket = r["bucket"] if r["bucket"].tzinfo else r["bucket"].replace(tzinfo=UTC)
            if not week <= bucket < week + timedelta(days=7) or r["v_0"] is None or r["v_1"] is None \
                    or not r["volume_ok"]:
                continue
            evaluated += 1
            references[r.get("reference") or loaded.rule.conditions[0].baseline.kind] += 1
            closest = max(closest, min(float(r["v_0"]) / t0, float(r["v_1"]) / t1))
    return {**_alerts(catalogue, hook, rule_id, weeks), "evaluated_channel_hours_per_week": round(evaluated / len(weeks), 1),
            "references": dict(references), "closest_to_firing": round(closest, 3)}


def _paid_references(hook, weeks) -> dict:
    """The candidate references of the paid-channel rule, computed from ad_spend in pandas, over the
    channel-hours of the ordinary weeks that have each: spread (standard deviation) of the cost and
    conversion changes, channel-hours that would fire, the closest approach."""
    import numpy as np
    import pandas as pd
    from sqlalchemy import text

    with hook.engine.connect() as con:
        df = pd.DataFrame(con.execute(text(
            "SELECT shop_id, channel, hour, SUM(spend) AS spend, SUM(clicks) AS clicks, SUM(orders) AS orders "
            "FROM ad_spend GROUP BY shop_id, channel, hour")).mappings().all())
    df["hour"] = pd.to_datetime(df["hour"], utc=True)
    cols = ["spend", "clicks", "orders"]
    df[cols] = df[cols].astype(float)

    def usable(ref: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
        ref = ref.copy()
        ref.loc[~mask.fillna(False).to_numpy(dtype=bool)] = np.nan
        return ref

    parts: dict[str, list] = {"year_over_year": [], "previous_4_weeks": [], "previous_28_days": []}
    for _, g in df.groupby(["shop_id", "channel"]):
        g = g.set_index("hour").sort_index()[cols]
        g = g.reindex(pd.date_range(g.index[0], g.index[-1], freq="h"), fill_value=0.0)
        roll = g.rolling(24, min_periods=1).sum()
        year = roll.shift(364 * 24)
        weekly = [roll.shift(168 * k).fillna(0.0) for k in range(1, 5)]
        n = sum((w["clicks"] > 0).astype(int) for w in weekly)
        pooled = sum(w.mul((w["clicks"] > 0).astype(float), axis=0) for w in weekly)
        trailing = g.rolling(28 * 24, min_periods=7 * 24).sum().shift(24)
        refs = {"year_over_year": usable(year, year["clicks"] >= 500),
                "previous_4_weeks": usable(pooled, (n >= 2) & (pooled["clicks"] >= 500)),
                "previous_28_days": usable(trailing, trailing["clicks"] >= 500)}
        in_weeks = np.zeros(len(roll), dtype=bool)
        for w in weeks:
            in_weeks |= (roll.index >= pd.Timestamp(w)) & (roll.index < pd.Timestamp(w + timedelta(days=7)))
        ok = in_weeks & (roll["clicks"] >= 500).to_numpy()
        for name, ref in refs.items():
            cost = (roll["spend"] / roll["clicks"]) / (ref["spend"] / ref["clicks"]) * 100 - 100
            conv = (roll["orders"] / roll["clicks"]) / (ref["orders"] / ref["clicks"]) * 100 - 100
            keep = ok & np.isfinite(cost.to_numpy()) & np.isfinite(conv.to_numpy())
            parts[name].append(pd.DataFrame({"cost": cost[keep], "conv": conv[keep]}))
    out = {}
    for name, frames in parts.items():
        d = pd.concat(frames)
        close = np.minimum(d["cost"] / 50, d["conv"] / -30)
        out[name] = {"channel_hours": int(len(d)),
                     "cost_change_sd": round(float(d["cost"].std()), 2) if len(d) > 1 else None,
                     "conversion_change_sd": round(float(d["conv"].std()), 2) if len(d) > 1 else None,
                     "firing_channel_hours": int(((d["cost"] > 50) & (d["conv"] < -30)).sum()),
                     "closest_to_firing": round(float(close.max()), 3) if len(d) else None}
    return out


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
    out["traffic.paid_cost_quality"] = _paid(catalogue, hook, weeks)
    out["paid_references"] = _paid_references(hook, weeks)
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
    a = out["traffic.paid_cost_quality"]
    print("\n| rule | alerts a week | channel-hours evaluated a week | references | closest to firing |")
    print("|---|---|---|---|---|")
    print(f"| `traffic.paid_cost_quality` | {a['alerts_per_week']} | {a['evaluated_channel_hours_per_week']} | "
          f"{a['references']} | {a['closest_to_firing']} |")
    print("\n| reference (from ad_spend) | channel-hours | sd of cost change, % | sd of conversion change, % | "
          "firing channel-hours | closest to firing |")
    print("|---|---|---|---|---|---|")
    for name, r in out["paid_references"].items():
        print(f"| {name} | {r['channel_hours']} | {r['cost_change_sd']} | {r['conversion_change_sd']} | "
              f"{r['firing_channel_hours']} | {r['closest_to_firing']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
