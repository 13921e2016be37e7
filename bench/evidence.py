"""What the data holds in an event-count incident's first hours: can any rule see it by then?

For the incidents whose rules count events (a bad batch's complaints and quality returns, a
burst of 1-3 star reviews, a refund surge), the events on the incident's entity landed in the
first 1, 2, 3, 4, 6 and 8 hours, against the entity's usual count in the same hours of the day
(their mean over the 28, 7 or 14 days before), and the chance of at least that many (the Poisson
tail). A count whose chance is above one in a million at 2 hours cannot raise a rule held to one
false alert in a million windows by then, whatever its window: the delay is the evidence's, not
the cycle's.

    .venv/bin/python bench/evidence.py          # the demo shop (bench/detection_delay.py's)
    .venv/bin/python bench/evidence.py --warehouse duckdb:////tmp/shop.duckdb --labels /tmp/labels.yaml

Results: ``bench/results/evidence.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from threshold_operators.warehouse.schema import as_utc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(REPO / "bench"))

HOURS = (1, 2, 3, 4, 6, 8)
# incident -> (events on the entity, how many days before make the usual count)
EVENTS = {
    "clothing_batch_quality": ("""
        SELECT ts FROM (
            SELECT created_at AS ts FROM complaints WHERE shop_id = :shop AND batch_id = :entity
            UNION ALL
            SELECT r.requested_at FROM refunds r JOIN products p ON p.shop_id = r.shop_id AND p.sku = r.sku
            WHERE r.shop_id = :shop AND p.batch_id = :entity AND r.reason IN ('quality', 'damaged', 'not_as_described')
        ) e WHERE ts >= :a AND ts < :z""", 28),
    "negative_review_burst": ("""
        SELECT created_at FROM reviews
        WHERE shop_id = :shop AND sku = :entity AND rating <= 3 AND created_at >= :a AND created_at < :z""", 7),
    "refund_surge": ("""
        SELECT requested_at FROM refunds WHERE shop_id = :shop AND requested_at >= :a AND requested_at < :z""", 14),
}


def poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam)."""
    from scipy.stats import poisson

    return float(poisson.sf(k - 1, lam))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shop-dir", default=str(Path(tempfile.gettempdir()) / "storefence-detection-shop"),
                    help="where bench/detection_delay.py keeps the simulated demo shop")
    ap.add_argument("--warehouse", help="another simulated shop (with --labels) instead of the demo shop")
    ap.add_argument("--labels", help="the labels file the simulator wrote for --warehouse")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "evidence.json"))
    args = ap.parse_args()
    if bool(args.warehouse) != bool(args.labels):
        ap.error("--warehouse and --labels go together")
    import sqlalchemy as sa
    import yaml
    from detection_delay import demo_shop

    from threshold_operators.warehouse.hook import WarehouseHook

    if args.warehouse:
        hook = WarehouseHook(url=args.warehouse)
        labels = yaml.safe_load(Path(args.labels).read_text(encoding="utf-8"))
    else:
        hook, labels = demo_shop(Path(args.shop_dir))
    out = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "incidents": {}}
    print("| incident | entity | " + " | ".join(f"{h} h: events (usual, chance)" for h in HOURS) + " |")
    print("|---|---|" + "---|" * len(HOURS))
    with hook.engine.connect() as con:
        for inc in labels["incidents"]:
            if inc["id"] not in EVENTS:
                continue
            sql, days = EVENTS[inc["id"]]
            start = datetime.fromisoformat(inc["start"])
            p = {"shop": inc["shop_id"], "entity": inc["entity"]}
            times = [as_utc(t) for (t,) in con.execute(
                sa.text(sql), p | {"a": start - timedelta(days=days), "z": start + timedelta(hours=max(HOURS))})]
            cells = {}
            for h in HOURS:
                n = sum(start <= t < start + timedelta(hours=h) for t in times)
                usual = sum(start - timedelta(days=d) <= t < start - timedelta(days=d) + timedelta(hours=h)
                            for t in times for d in range(1, days + 1)) / days
                cells[h] = {"events": n, "usual": round(usual, 2), "chance": poisson_sf(n, usual)}
            out["incidents"][inc["id"]] = {"entity": inc["entity"], "usual_over_days": days, "hours": cells}
            print(f"| {inc['id']} | {inc['entity']} | " + " | ".join(
                f"{c['events']} ({c['usual']:.1f}, {c['chance']:.0e})" for c in cells.values()) + " |")
    hook.engine.dispose()
    path = Path(args.out)
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"\n{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
