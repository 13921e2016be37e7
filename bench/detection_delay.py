"""Detection delay per incident: data time from an incident's start to its first alert, for the
hourly catalogue Storefence had before issue 13 and for the current one, side by side.

The demo shop (``storefence demo``'s: 500 SKUs, 400 days, 2,000 orders a day, the default
incidents, seed 7) is simulated once into a DuckDB file (kept in ``$TMPDIR`` for later runs).
For each labelled incident and each rule it expects, the rule's live cycles are replayed as the
check task runs them: windows of the rule's ``every`` (an hour, or 5 minutes), each resuming
from what the one before left pending or firing (``engine.evaluate.evaluate_cycles``), from a
few hours before the incident to two days after its end. The delay is the end of the first
cycle in which the rule fires on the incident's entity (the data time at which the alert is
raised), minus the incident's start. Scheduling and delivery come on top (``bench/live_bench.py``
measures those).

The earlier catalogue is read from git (``--baseline-ref``, default the last commit of issue 12)
and compiled by today's engine, on the same data.

    .venv/bin/python bench/detection_delay.py                # both catalogues
    .venv/bin/python bench/detection_delay.py --only new     # the current catalogue only
    .venv/bin/python bench/detection_delay.py --incidents negative_review_burst warehouse_tracking_stall
                                   # re-measure these incidents' rows; the others stay as recorded

Results: ``bench/results/detection_delay.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

BASELINE_REF = "8978939"  # issue 12's last commit: the hourly catalogue
END = datetime(2026, 9, 30, tzinfo=UTC)
DEMO = {"shops": 1, "skus": 500, "days": 400, "orders_per_day": 2000, "seed": 7}
# Targets of issue 13 (minutes of data time from the incident's start), where it sets one.
# The day rules' target is 2 hours: the rules that replaced a local day's count or rate.
TARGETS = {
    ("formula_spike_low_stock", "compound.spike_low_stock"): 15,
    ("refund_surge", "finance.refund_rate_fast"): 120,
    ("clothing_batch_quality", "finance.complaint_spike"): 120,
    ("negative_review_burst", "customer.negative_review_burst"): 120,
}


def demo_shop(folder: Path):
    """(hook, labels) of the demo shop, simulated once into ``folder``."""
    import yaml

    from threshold_operators.simulator.run import SimulationSpec, simulate
    from threshold_operators.warehouse.hook import WarehouseHook

    db, labels = folder / "demo-shop.duckdb", folder / "labels.yaml"
    hook = WarehouseHook(url=f"duckdb:///{db}")
    if not (db.exists() and labels.exists()):
        db.unlink(missing_ok=True)
        t0 = time.perf_counter()
        simulate(SimulationSpec(**DEMO, incidents="default", end=END), hook, labels_out=str(labels))
        print(f"simulated the demo shop in {time.perf_counter() - t0:.0f} s: {db}", flush=True)
    return hook, yaml.safe_load(labels.read_text(encoding="utf-8"))


def catalogue_at(ref: str, folder: Path):
    """The rule and SQL files of ``ref``, checked out into ``folder``, loaded."""
    from threshold_operators.rules.catalogue import load_catalogue

    for sub in ("include/rules", "include/sql"):
        files = subprocess.run(["git", "-C", str(REPO), "ls-tree", "-r", "--name-only", ref, sub],
                               capture_output=True, text=True, check=True).stdout.split()
        for name in files:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:{name}"],
                                              capture_output=True, check=True).stdout)
    catalogue = load_catalogue(folder / "include/rules", folder / "include/sql")
    if catalogue.all_problems():
        print(f"{ref}: problems in its catalogue under today's engine:", *catalogue.all_problems(), sep="\n  ")
    return catalogue


def first_alert(catalogue, hook, rule_id: str, incident: dict) -> dict:
    from threshold_operators.analysis.detection import first_alert as replay
    from threshold_operators.engine.evaluate import warehouse_query

    if rule_id not in catalogue.rules:
        return {"status": "not in the catalogue"}
    t0 = time.perf_counter()
    d = replay(catalogue, warehouse_query(hook), rule_id, incident)
    out = {"status": "fired" if d.fired else "did not fire", "every_min": int(d.every / timedelta(minutes=1)),
           "cycles": d.cycles, "replay_s": round(time.perf_counter() - t0, 1)}
    if d.fired:
        out |= {"delay_min": round(d.delay / timedelta(minutes=1)), "severity": d.severity}
    return out


def fmt(cell: dict | None) -> str:
    if cell is None:
        return "-"
    if cell["status"] != "fired":
        return cell["status"]
    m = cell["delay_min"]
    return (f"+{m} min" if m < 120 else f"+{m / 60:.1f} h") + f" ({cell['severity']}, every {cell['every_min']} min)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-ref", default=BASELINE_REF, help="git revision of the earlier catalogue")
    ap.add_argument("--only", choices=("new", "old"), help="one catalogue only")
    ap.add_argument("--shop-dir", default=str(Path(tempfile.gettempdir()) / "storefence-detection-shop"),
                    help="where the simulated demo shop is kept between runs")
    ap.add_argument("--incidents", nargs="+", metavar="ID",
                    help="re-measure only these incidents' rows; the other rows of the results file stay as recorded "
                         "(each row says when it was measured)")
    args = ap.parse_args()
    from threshold_operators.rules.catalogue import load_catalogue

    folder = Path(args.shop_dir)
    folder.mkdir(parents=True, exist_ok=True)
    hook, labels = demo_shop(folder)
    catalogues = {}
    if args.only != "new":
        catalogues["old"] = catalogue_at(args.baseline_ref, Path(tempfile.mkdtemp(prefix="sf-old-catalogue-")))
    if args.only != "old":
        catalogues["new"] = load_catalogue()
    path = REPO / "bench" / "results" / "detection_delay.json"
    kept = {}
    if args.incidents:
        unknown = set(args.incidents) - {i["id"] for i in labels["incidents"]}
        if unknown:
            ap.error(f"no such incident: {', '.join(sorted(unknown))}")
        recorded = json.loads(path.read_text(encoding="utf-8"))
        kept = {(r["incident"], r["rule"]): r | {"measured": r.get("measured", recorded["when"])}
                for r in recorded["rows"]}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows = []
    for inc in labels["incidents"]:
        for rule_id in inc["expect"]:
            if args.incidents and inc["id"] not in args.incidents and (inc["id"], rule_id) in kept:
                rows.append(kept[(inc["id"], rule_id)])
                continue
            row = {"incident": inc["id"], "rule": rule_id, "start": inc["start"], "measured": now}
            for name, catalogue in catalogues.items():
                row[name] = first_alert(catalogue, hook, rule_id, inc)
            rows.append(row)
            print(f"{inc['id']:<26} {rule_id:<32} old {fmt(row.get('old')):<34} new {fmt(row.get('new'))}",
                  flush=True)
    hook.engine.dispose()
    for row in rows:
        target = TARGETS.get((row["incident"], row["rule"]))
        if target is not None:
            row["target_min"] = target
            row["met"] = row.get("new", {}).get("status") == "fired" and row["new"]["delay_min"] <= target
    out = {"when": now, "shop": DEMO | {"end": END.isoformat()}, "baseline_ref": args.baseline_ref, "rows": rows}
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print("\n| incident | rule | hourly catalogue (before) | current catalogue | target |\n|---|---|---|---|---|")
    for r in rows:
        target = "" if "target_min" not in r else f"{r['target_min']} min: {'met' if r['met'] else 'missed'}"
        print(f"| {r['incident']} | {r['rule']} | {fmt(r.get('old'))} | {fmt(r.get('new'))} | {target} |")
    print(f"\n{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
