"""customer.logistics_stale is told as of each cycle's end, not from the parcels' latest state: a
parcel delivered later was in transit before its delivery, and a scan later does not make a parcel
fresh earlier (its scans before the end are read from ``tracking_events``). On DuckDB and
PostgreSQL, with the scans and the parcels (``shipments``, their latest state, as the logistics
extract lands them) landed by the bulk loader (twice: the upsert keeps one row a scan)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
import sqlalchemy as sa

from threshold_operators.engine.compile import compile_rule
from threshold_operators.engine.evaluate import evaluate, warehouse_query
from threshold_operators.rules.catalogue import load_catalogue
from threshold_operators.warehouse.bulk_load import bulk_loader
from threshold_operators.warehouse.schema import arrow_table, create_schema

RULE = "customer.logistics_stale"
T0 = datetime(2026, 10, 4, 12, tzinfo=UTC)
H = timedelta(hours=1)
M5 = timedelta(minutes=5)
SHOP, WH = "shop-01", "shop-01-wh1"
ENTITY = f"shop_id={SHOP}/warehouse_id={WH}"

# (parcel, scan time, status): six parcels picked up 60 hours before T0 and never scanned again;
# DELIVERED-LATER stuck too until its delivery an hour after T0; SCANNED-LATER until a scan two
# hours after T0; FRESH picked up 10 hours before T0; LATE picked up half an hour after T0; OLD
# picked up 31 days before T0 (outside the 30 days the metric reads).
SCANS = [(f"STUCK-{i}", T0 - 60 * H, "picked_up") for i in range(6)] + [
    ("DELIVERED-LATER", T0 - 60 * H, "picked_up"),
    ("DELIVERED-LATER", T0 + H, "delivered"),
    ("SCANNED-LATER", T0 - 60 * H, "picked_up"),
    ("SCANNED-LATER", T0 + 2 * H, "in_transit"),
    ("FRESH", T0 - 10 * H, "picked_up"),
    ("LATE", T0 + 30 * timedelta(minutes=1), "picked_up"),
    ("OLD", T0 - timedelta(days=31), "picked_up"),
]


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


def _land_scans(hook) -> None:
    create_schema(hook.engine)
    with hook.engine.begin() as con:
        con.execute(sa.text("INSERT INTO shops VALUES (:s, 'Shop', 'Asia/Shanghai', 'CNY')"), {"s": SHOP})
    data = arrow_table("tracking_events", {
        "shipment_id": [s for s, _, _ in SCANS], "event_at": pa.array([t for _, t, _ in SCANS], pa.timestamp("us", "UTC")),
        "shop_id": [SHOP] * len(SCANS), "warehouse_id": [WH] * len(SCANS),
        "tracking_no": [f"SF{i:012d}" for i in range(len(SCANS))], "status": [st for _, _, st in SCANS],
    })
    parcels = sorted({s for s, _, _ in SCANS})
    picked = {s: t for s, t, st in SCANS if st == "picked_up"}
    delivered = {s: t for s, t, st in SCANS if st == "delivered"}
    latest = {s: max(t for p, t, _ in SCANS if p == s) for s in parcels}
    ts = lambda values: pa.array(values, pa.timestamp("us", "UTC"))  # noqa: E731
    shipments = arrow_table("shipments", {
        "shipment_id": parcels, "order_id": [f"O-{s}" for s in parcels], "shop_id": [SHOP] * len(parcels),
        "warehouse_id": [WH] * len(parcels), "carrier": ["sf"] * len(parcels),
        "tracking_no": [f"SF-{s}" for s in parcels],
        "status": ["delivered" if s in delivered else "in_transit" for s in parcels],
        "shipped_at": ts([picked[s] for s in parcels]), "last_tracking_at": ts([latest[s] for s in parcels]),
        "delivered_at": ts([delivered.get(s) for s in parcels]), "updated_at": ts([latest[s] for s in parcels]),
    })
    for _ in range(2):  # a re-delivered batch (the extract's overlap) upserts the same rows
        with bulk_loader(hook) as loader:
            loader.upsert("tracking_events", data)
            loader.upsert("shipments", shipments)


def _metrics_at(hook, catalogue, end: datetime) -> dict:
    """The rule's cycle ending at ``end``: the warehouse's metrics (it fires there)."""
    compiled = compile_rule(catalogue.get(RULE), catalogue.get)
    firing = evaluate(compiled, warehouse_query(hook), end - M5, end, now=end).firing
    assert [r.entity_key for r in firing] == [ENTITY]
    return {k: float(firing[0].row[k]) for k in ("stale_parcels", "stale_share")}


def test_stale_parcels_are_told_as_of_the_cycle_not_as_they_stand_now(catalogue, warehouse):
    _land_scans(warehouse)
    with warehouse.engine.connect() as con:
        assert con.execute(sa.text("SELECT COUNT(*) FROM tracking_events")).scalar_one() == len(SCANS)
        dirty = con.execute(sa.text("SELECT COUNT(*) FROM rollup_dirty WHERE table_name = 'tracking_events'"))
        assert dirty.scalar_one() == 0  # no rollup reads the scans: the loads mark nothing (rollup_reads)
    # At T0 the parcel delivered an hour later is in transit and stale, and so is the parcel
    # scanned two hours later: 6 stuck + those two are stale, FRESH is not; LATE is not picked up
    # yet and OLD is beyond the 30 days.
    assert _metrics_at(warehouse, catalogue, T0) == {"stale_parcels": 8, "stale_share": pytest.approx(8 / 9)}
    # Three hours on: delivered, scanned (fresh), LATE on its way; the six stuck parcels remain.
    assert _metrics_at(warehouse, catalogue, T0 + 3 * H) == {"stale_parcels": 6, "stale_share": pytest.approx(6 / 9)}


def test_the_rule_fires_in_the_cycle_in_which_parcels_cross_48_hours(catalogue, warehouse):
    _land_scans(warehouse)
    compiled = compile_rule(catalogue.get(RULE), catalogue.get)
    query = warehouse_query(warehouse)
    crossing = T0 - 60 * H + 48 * H  # the six stuck parcels and two more reach 48 h without a scan
    first = None
    t = crossing - 30 * timedelta(minutes=1)
    while first is None and t < crossing + H:
        if evaluate(compiled, query, t, t + M5, now=t + M5).firing:
            first = t + M5
        t += M5
    assert first == crossing + M5  # a scan exactly 48 h old is not yet older than 48 h
