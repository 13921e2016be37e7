"""The floor of a 5-minute cycle, and that it does not grow with the length of history.

The floor: for each fact table the rules read, one scan-aggregate of the newly landed 5-minute
slice, grouped by the table's entity keys (what any evaluation of that slice must at least
read). Each warehouse (bench/scale_warehouse.py, built once and cached) is copied, the first
``--slices`` slices after its END are landed into the copy with the warehouse's bulk loader
(each load timed), then the floor of the last landed slice is timed: every run opens the file
read-only (as a cycle's evaluation session does) and runs the scans in turn; runs alternate
between the warehouses; medians of ``--runs`` after one warm-up. DuckDB's ``EXPLAIN ANALYZE``
of each scan gives the row groups it read: the tables are kept in the order of their time
column, so the zone maps (min/max per row group) let it skip all history.

    PYTHONPATH=$PWD/plugins STOREFENCE_HOME=$PWD .venv/bin/python bench/floor_scan.py \\
        --days 30,365 [--runs 7] [--slices 3] [--shops 10 --skus 20000 --orders-per-day 3000] \\
        [--work-dir /tmp/sf-floor] [--out bench/results/floor_scan.json]

``floor_queries(t0, t1)`` and ``time_queries(path, queries, runs)`` are importable: the cycle
benchmark can add the rollup reads of its baselines to the same timing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_warehouse import (  # noqa: E402
    END,
    TIME_COLUMN,
    ScaleSpec,
    SliceSource,
    build,
    land_slice,
    working_copy,
)

# table: (entity keys, aggregates) - the keys the catalogue's queries group the table by
FLOOR = {
    "order_items": ("shop_id, sku", "count(*) AS lines, sum(quantity) AS units"),
    "orders": ("shop_id", "count(*) AS orders"),
    "payments": ("shop_id, gateway", "count(*) AS attempts, sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failures"),
    "refunds": ("shop_id, sku", "count(*) AS refunds"),
    "complaints": ("shop_id, batch_id", "count(*) AS complaints"),
    "reviews": ("shop_id, sku", "count(*) AS reviews, sum(CASE WHEN rating <= 3 THEN 1 ELSE 0 END) AS negative"),
    "shipments": ("shop_id, warehouse_id",
                  "count(*) AS parcels, sum(CASE WHEN status = 'in_transit' THEN 1 ELSE 0 END) AS in_transit"),
    "tracking_events": ("shop_id, warehouse_id",
                        "count(*) AS scans, sum(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END) AS delivered"),
    "inventory_snapshots": ("shop_id, sku, warehouse_id",
                            "max(snapshot_at) AS latest, sum(greatest(on_hand - reserved, 0)) AS stock"),
    "traffic": ("shop_id, channel, source", "sum(visitors) AS visitors"),
    "ad_spend": ("shop_id, channel", "sum(spend) AS spend, sum(clicks) AS clicks, sum(orders) AS orders"),
}


def floor_queries(t0: datetime, t1: datetime) -> dict[str, str]:
    """Per fact table, the scan-aggregate of the slice [t0, t1) on its time column (hourly tables:
    the hour rows the slice restates, from the start of t0's hour)."""
    out = {}
    for table, (keys, aggs) in FLOOR.items():
        col = TIME_COLUMN[table]
        lo = t0.replace(minute=0, second=0, microsecond=0) if col == "hour" else t0
        out[table] = (f"SELECT {keys}, {aggs} FROM {table} "  # noqa: S608 - schema names
                      f"WHERE {col} >= TIMESTAMPTZ '{lo.isoformat()}' AND {col} < TIMESTAMPTZ '{t1.isoformat()}' "
                      f"GROUP BY {keys}")
    return out


def _open(path: Path):
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


def time_once(path: Path, queries: dict[str, str]) -> dict:
    """One pass: open the file, each query in turn (fetching its rows), close. Seconds per query,
    ``connect`` and ``total`` (connect + queries + close), and the rows each returned."""
    t = time.perf_counter()
    con = _open(path)
    out = {"connect": time.perf_counter() - t}
    groups = {}
    for name, sql in queries.items():
        tt = time.perf_counter()
        groups[name] = len(con.execute(sql).fetchall())
        out[name] = time.perf_counter() - tt
    con.close()
    out["total"] = time.perf_counter() - t
    return {"seconds": out, "groups": groups}


def explain(path: Path, queries: dict[str, str]) -> dict:
    """Per query: row groups read of those in the table, and rows scanned (DuckDB's profile)."""
    con = _open(path)
    out = {}
    try:
        for name, sql in queries.items():
            plan = json.loads(con.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).fetchone()[-1])
            q = plan.get("query", {})
            out[name] = {"row_groups": f"{q.get('total_row_groups_scanned')}/{q.get('total_row_groups_to_scan')}",
                         "rows_scanned": q.get("total_rows_scanned")}
    finally:
        con.close()
    return out


def time_queries(paths: dict[str, Path], queries: dict[str, dict[str, str]], runs: int) -> dict:
    """Medians of ``runs`` passes per warehouse (after one warm-up each), the warehouses alternating."""
    samples: dict[str, list[dict]] = {k: [] for k in paths}
    for k in paths:
        time_once(paths[k], queries[k])
    groups = {}
    for _ in range(runs):
        for k, path in paths.items():
            r = time_once(path, queries[k])
            samples[k].append(r["seconds"])
            groups[k] = r["groups"]
    return {k: {"median_ms": {q: round(1000 * statistics.median(s[q] for s in v), 2) for q in v[0]},
                "groups": groups[k]} for k, v in samples.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", default="30,365", help="history lengths to compare (comma-separated)")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--slices", type=int, default=3, help="slices landed after END; the floor reads the last")
    p.add_argument("--shops", type=int, default=10)
    p.add_argument("--skus", type=int, default=20_000)
    p.add_argument("--orders-per-day", type=int, default=3_000)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--work-dir", type=Path, default=None, help="where the copies go (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the copies")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "floor_scan.json")
    a = p.parse_args()
    days = [int(d) for d in a.days.split(",")]
    work = a.work_dir or Path(tempfile.mkdtemp(prefix="sf-floor-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    out: dict = {"benchmark": "floor_scan", "runs": a.runs, "slices_landed": a.slices, "warehouses": {}}
    paths, queries = {}, {}
    try:
        for d in days:
            spec = ScaleSpec(shops=a.shops, skus=a.skus, days=d, orders_per_day=a.orders_per_day, end=END)
            info = build(spec, a.cache_dir)
            print(f"{d} days: {info.path.name} ({info.size_bytes / 1e9:.2f} GB, "
                  f"{'cached' if info.cached else f'built in {info.build_seconds:.0f} s'})", flush=True)
            t = time.perf_counter()
            copy = working_copy(info, work / f"floor-{d}d.duckdb")
            copy_s = time.perf_counter() - t
            source = SliceSource(spec, a.slices)
            loads = []
            for k in range(a.slices):
                loads.append(land_slice(copy, spec, k, source.rows(k)))
                print(f"  slice {k}: {sum(v['rows'] for v in loads[-1]['tables'].values()):,} rows landed "
                      f"in {loads[-1]['load_seconds']:.2f} s", flush=True)
            source.close()
            t0, t1 = spec.slice_bounds(a.slices - 1)
            key = f"{d} days"
            paths[key], queries[key] = copy, floor_queries(t0, t1)
            out["warehouses"][key] = {"build": {k: v for k, v in info.as_dict().items() if k != "sku_sales"},
                                      "sku_sales": info.sku_sales, "copy_seconds": round(copy_s, 1),
                                      "slice": [t0.isoformat(), t1.isoformat()],
                                      "loads": loads}
        timed = time_queries(paths, queries, a.runs)
        for key in paths:
            out["warehouses"][key]["floor_median_ms"] = timed[key]["median_ms"]
            out["warehouses"][key]["floor_groups"] = timed[key]["groups"]
            out["warehouses"][key]["scans"] = explain(paths[key], queries[key])
    finally:
        if not a.keep and a.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    keys = list(paths)
    first, last = keys[0], keys[-1]
    tables = [*FLOOR, "connect", "total"]
    out["ratio_total_longest_vs_shortest"] = round(
        out["warehouses"][last]["floor_median_ms"]["total"] / out["warehouses"][first]["floor_median_ms"]["total"], 3)
    out["finished"] = datetime.now(UTC).isoformat()
    out["wall_s"] = round(time.time() - started)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")

    print(f"\nFloor of one 5-minute slice, median of {a.runs} (ms; row groups read / in table):\n")
    print("| table | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for t in tables:
        cells = []
        for k in keys:
            w = out["warehouses"][k]
            scan = w["scans"].get(t)
            cells.append(f"{w['floor_median_ms'][t]:.2f}" + (f" ({scan['row_groups']})" if scan else ""))
        print(f"| {t} | " + " | ".join(cells) + " |")
    print(f"\ntotal, {last} vs {first}: {out['ratio_total_longest_vs_shortest']}x; written to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
