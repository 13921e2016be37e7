"""Where a live cycle resumes from, as the results history grows: ``rule_states`` (each entity's
newest result, kept with the results) against grouping ``rule_results`` (the history query, what
every cycle read before ``rule_states``).

A rule evaluated every 5 minutes with ``--entities`` entities, of which ``--firing`` fire in every
cycle (each cycle writes one result row per firing entity; the others fired once and resolved), for
``--days`` of cycles: the rows are written through the warehouse's bulk loader, so ``rule_states``
is kept as a live DAG keeps it. Then, on each warehouse and history length, both lookups of the
next cycle's prior (``engine.record.previous_states`` and ``history_states``) are timed in turn,
``--runs`` times after one warm-up; the medians and their ratio, and the two answers compared.

    PYTHONPATH=$PWD/plugins STOREFENCE_HOME=$PWD .venv/bin/python bench/state_resume.py \\
        [--days 1,7,30] [--entities 5000] [--firing 500] [--runs 7] [--warehouses duckdb,postgres] \\
        [--out bench/results/state_resume.json]

PostgreSQL: the server at 127.0.0.1:5432 (database ``test``), in a schema of its own, dropped after.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
END = datetime(2026, 10, 1, tzinfo=UTC)
SLICE = timedelta(minutes=5)
RULE = "inventory.stock_cover"


def _results(days: int, entities: int, firing: int, start_day: int):
    """The result rows of days [start_day, days) of 5-minute cycles before END, one Arrow table a day."""
    from threshold_operators.warehouse.schema import arrow_table

    first = END - timedelta(days=days)
    for day in range(start_day, days):
        buckets = [first + timedelta(days=day) + k * SLICE for k in range(288)]
        keys, bucket, state = [], [], []
        for b in buckets:
            for e in range(firing):  # the same entities fire in every cycle
                keys.append(f"shop_id=shop-01/sku=SKU-{e:06d}")
                bucket.append(b)
                state.append("firing")
        if day == 0:  # the rest fired once, long ago, and resolved
            for e in range(firing, entities):
                for k, s in ((0, "firing"), (1, "resolved")):
                    keys.append(f"shop_id=shop-01/sku=SKU-{e:06d}")
                    bucket.append(buckets[k])
                    state.append(s)
        n = len(keys)
        walk = json.dumps({"cover_days": 3.2, "level": "yellow", "streak": 12, "last_breach": None})
        yield arrow_table("rule_results", {
            "rule_id": [RULE] * n, "entity_key": keys, "bucket": bucket, "state": state,
            "severity": [("yellow" if s == "firing" else None) for s in state], "value": [3.2] * n,
            "baseline": [None] * n, "threshold": [7.0] * n,
            "entity": [json.dumps({"shop_id": "shop-01", "sku": k.rsplit("=", 1)[1]}) for k in keys],
            "metrics": [walk] * n, "mode": ["live"] * n,
            "window_end": [b + SLICE for b in bucket], "evaluated_at": [b + SLICE for b in bucket],
        })


def _write(hook, days: int, entities: int, firing: int) -> None:
    """The results of ``days`` of cycles, a day a transaction, as the live cycles' ``record`` writes
    them: through the loader, which keeps ``rule_states``."""
    from threshold_operators.warehouse.bulk_load import bulk_loader

    for data in _results(days, entities, firing, 0):
        with bulk_loader(hook) as loader:
            loader.upsert("rule_results", data)


def _time(lookup, hook, rule, runs: int) -> tuple[float, object]:
    answer = lookup(hook, rule, END)  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        lookup(hook, rule, END)
        times.append(time.perf_counter() - t)
    return statistics.median(times), answer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", default="1,7,30")
    parser.add_argument("--entities", type=int, default=5000)
    parser.add_argument("--firing", type=int, default=500)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warehouses", default="duckdb,postgres")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "state_resume.json"))
    args = parser.parse_args(argv)

    import sqlalchemy as sa

    from threshold_operators.engine.record import history_states, previous_states
    from threshold_operators.rules.catalogue import load_catalogue
    from threshold_operators.warehouse.hook import WarehouseHook
    from threshold_operators.warehouse.schema import create_schema

    rule = load_catalogue().get(RULE).rule
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.warehouses.split(","):
            for days in sorted(int(d) for d in args.days.split(",")):
                schema = admin = None
                if kind == "duckdb":
                    hook = WarehouseHook(url=f"duckdb:///{Path(tmp) / f'results-{days}.duckdb'}")
                else:
                    schema, admin = f"sf_bench_states_{secrets.token_hex(3)}", sa.create_engine(PG_URL)
                    with admin.begin() as con:
                        con.execute(sa.text(f"CREATE SCHEMA {schema}"))
                    hook = WarehouseHook(url=PG_URL, search_path=schema)
                try:
                    create_schema(hook.engine)
                    _write(hook, days, args.entities, args.firing)
                    with hook.engine.connect() as con:
                        if kind == "postgres":
                            con.execute(sa.text("ANALYZE rule_results"))
                            con.execute(sa.text("ANALYZE rule_states"))
                            con.commit()
                        n = con.execute(sa.text("SELECT COUNT(*) FROM rule_results")).scalar()
                    states_s, states = _time(previous_states, hook, rule, args.runs)
                    history_s, history = _time(history_states, hook, rule, args.runs)
                    row = {"warehouse": kind, "days": days, "result_rows": n, "firing": len(states),
                           "states_s": round(states_s, 4), "history_s": round(history_s, 4),
                           "history_over_states": round(history_s / states_s, 1), "same_answer": states == history}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                finally:
                    hook.engine.dispose()
                    if admin is not None:
                        with admin.begin() as con:
                            con.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        admin.dispose()
    out = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "rule": RULE, "entities": args.entities,
           "firing_every_cycle": args.firing, "runs": args.runs, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"{'warehouse':<10} {'days':>4} {'result rows':>12} {'rule_states s':>14} {'history s':>10} {'ratio':>6}")
    for r in rows:
        print(f"{r['warehouse']:<10} {r['days']:>4} {r['result_rows']:>12,} {r['states_s']:>14.4f} "
              f"{r['history_s']:>10.4f} {r['history_over_states']:>5.1f}x")
    return 0 if all(r["same_answer"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
