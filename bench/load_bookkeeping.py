"""What the rollups' bookkeeping adds to a load: the marks and the lookup of the versions an upsert replaces.

A load marks in ``rollup_dirty`` the 5-minute slices a rollup can see change: for a table some
rollup reads (``rollup_reads``, written by the rollups of the catalogue), the slices of new rows,
and of stored versions its rows replace that moved or changed in a column a rollup reads (one
lookup by key per table and batch: ``BulkLoader._changed_slices``); nothing for a table no rollup
reads. This registers the catalogue's rollups in two copies of the scale warehouse
(``bench/scale_warehouse.py``), lands the same slices into both, one with the bookkeeping and
one without, alternating slice by slice, and reports the medians after the first two.

    PYTHONPATH=$PWD/plugins STOREFENCE_HOME=$PWD .venv/bin/python bench/load_bookkeeping.py \\
        [--days 30] [--slices 12] [--out bench/results/load_bookkeeping.json]

It also records each table's lookups (keys asked, stored versions found, milliseconds) and the
slices marked per table and load.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(REPO / "bench"))

from scale_warehouse import ScaleSpec, SliceSource, build, land_slice, working_copy  # noqa: E402

WARM_UP = 2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--slices", type=int, default=12)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "load_bookkeeping.json")
    args = ap.parse_args()
    from threshold_operators.engine.rollups import catalogue_rollups
    from threshold_operators.rules.catalogue import load_catalogue
    from threshold_operators.warehouse.bulk_load import BulkLoader, DuckDBBulkLoader
    from threshold_operators.warehouse.hook import WarehouseHook
    from threshold_operators.warehouse.rollup_tables import register_reads

    spec = ScaleSpec(shops=10, skus=20_000, days=args.days, orders_per_day=3_000)
    info = build(spec)
    source = SliceSource(spec, args.slices)
    rollups = catalogue_rollups(load_catalogue()).values()
    work = Path(tempfile.mkdtemp(prefix="sf-load-bookkeeping-"))
    changed, insert_dirty = BulkLoader._changed_slices, DuckDBBulkLoader._insert_dirty
    seconds: dict[str, list[float]] = {"with the bookkeeping": [], "without": []}
    per_table: dict[str, list[tuple[int, int, float]]] = {}
    marked: dict[str, list[int]] = {}
    select_where = DuckDBBulkLoader._select_where

    def timed(self, table, columns, where, values):  # each table's lookup, in the copy that has it
        t = time.perf_counter()
        found = select_where(self, table, columns, where, values)
        per_table.setdefault(table, []).append((len(values), len(found), round((time.perf_counter() - t) * 1000, 1)))
        return found

    def counted(self, rows):
        for table in {t for t, _ in rows}:
            marked.setdefault(table, []).append(sum(1 for t, _ in rows if t == table))
        return insert_dirty(self, rows)

    DuckDBBulkLoader._select_where, DuckDBBulkLoader._insert_dirty = timed, counted
    try:
        copies = {name: working_copy(info, work / f"{i}.duckdb") for i, name in enumerate(seconds)}
        for path in copies.values():  # the catalogue's rollups, as their first cycle registers them
            hook = WarehouseHook(url=f"duckdb:///{path}")
            with hook.engine.begin() as con:
                for rollup in rollups:
                    register_reads(con, rollup.name, rollup.query_hash, lambda r=rollup: r.reads)
            hook.engine.dispose()
        for k in range(args.slices):
            rows = source.rows(k)
            for name, path in copies.items():
                with_it = name == "with the bookkeeping"
                BulkLoader._changed_slices = changed if with_it else (lambda self, table, data: set())
                DuckDBBulkLoader._insert_dirty = counted if with_it else (lambda self, rows: None)
                seconds[name].append(land_slice(path, spec, k, rows)["load_seconds"])
            print(f"slice {k}: " + ", ".join(f"{n} {s[-1]:.3f} s" for n, s in seconds.items()), flush=True)
    finally:
        BulkLoader._changed_slices, DuckDBBulkLoader._insert_dirty = changed, insert_dirty
        DuckDBBulkLoader._select_where = select_where
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: round(statistics.median(s[WARM_UP:]), 4) for name, s in seconds.items()}
    added = medians["with the bookkeeping"] - medians["without"]
    out = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "days": args.days, "slices": args.slices,
           "median_load_s": medians, "bookkeeping_s": round(added, 4),
           "bookkeeping_share_of_load": round(added / medians["without"], 3), "samples": seconds,
           "marks_per_load_median": {t: statistics.median(xs) for t, xs in marked.items()},
           "per_table_median_ms": {t: statistics.median(ms for _, _, ms in xs[WARM_UP:] or xs)
                                   for t, xs in per_table.items()},
           "per_table": {t: [{"keys": k, "found": f, "ms": ms} for k, f, ms in xs] for t, xs in per_table.items()}}
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"load {medians['without']:.3f} s, with the bookkeeping {medians['with the bookkeeping']:.3f} s: "
          f"+{added:.3f} s ({out['bookkeeping_share_of_load']:.0%}); slices marked per load: "
          f"{out['marks_per_load_median']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
