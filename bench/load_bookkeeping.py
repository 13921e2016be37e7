"""What the rollups' bookkeeping adds to a load: the lookup of the versions an upsert replaces.

A load marks the 5-minute slices its rows fall in (``rollup_dirty``) and, on a table where an
update can move a row's event time, the slices of the stored versions its rows replace
(``BulkLoader._replaced_slices``: one lookup by key per table and batch). This lands the same
slices of the scale warehouse (``bench/scale_warehouse.py``) into two copies, one with the lookup
and one without, alternating slice by slice, and reports the medians after the first two.

    PYTHONPATH=$PWD/plugins STOREFENCE_HOME=$PWD .venv/bin/python bench/load_bookkeeping.py \\
        [--days 30] [--slices 12] [--out bench/results/load_bookkeeping.json]

It also records each table's lookups (keys asked, stored versions found, milliseconds).
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
    from threshold_operators.warehouse.bulk_load import BulkLoader, DuckDBBulkLoader

    spec = ScaleSpec(shops=10, skus=20_000, days=args.days, orders_per_day=3_000)
    info = build(spec)
    source = SliceSource(spec, args.slices)
    work = Path(tempfile.mkdtemp(prefix="sf-load-bookkeeping-"))
    lookup = BulkLoader._replaced_slices
    seconds: dict[str, list[float]] = {"with the lookup": [], "without": []}
    per_table: dict[str, list[tuple[int, int, float]]] = {}
    values_where = DuckDBBulkLoader._values_where

    def timed(self, table, column, where, values):  # each table's lookup, in the copy that has it
        t = time.perf_counter()
        found = values_where(self, table, column, where, values)
        per_table.setdefault(table, []).append((len(values), len(found), round((time.perf_counter() - t) * 1000, 1)))
        return found

    DuckDBBulkLoader._values_where = timed
    try:
        copies = {name: working_copy(info, work / f"{i}.duckdb") for i, name in enumerate(seconds)}
        for k in range(args.slices):
            rows = source.rows(k)
            for name, path in copies.items():
                BulkLoader._replaced_slices = lookup if name == "with the lookup" else (lambda self, table, data: set())
                seconds[name].append(land_slice(path, spec, k, rows)["load_seconds"])
            print(f"slice {k}: " + ", ".join(f"{n} {s[-1]:.3f} s" for n, s in seconds.items()), flush=True)
    finally:
        BulkLoader._replaced_slices = lookup
        DuckDBBulkLoader._values_where = values_where
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: round(statistics.median(s[WARM_UP:]), 4) for name, s in seconds.items()}
    added = medians["with the lookup"] - medians["without"]
    out = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "days": args.days, "slices": args.slices,
           "median_load_s": medians, "lookup_s": round(added, 4),
           "lookup_share_of_load": round(added / medians["without"], 3), "samples": seconds,
           "per_table_median_ms": {t: statistics.median(ms for _, _, ms in xs[WARM_UP:] or xs)
                                   for t, xs in per_table.items()},
           "per_table": {t: [{"keys": k, "found": f, "ms": ms} for k, f, ms in xs] for t, xs in per_table.items()}}
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"load {medians['without']:.3f} s, with the lookup {medians['with the lookup']:.3f} s: "
          f"+{added:.3f} s ({out['lookup_share_of_load']:.0%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
