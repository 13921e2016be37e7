"""Each default incident leaves the signature its story says, and normal weeks look normal.

One simulated shop (400 days, the default incidents) in a real DuckDB file; every check is a
SQL query on the warehouse, the way the rules will read it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from threshold_operators.simulator.run import SimulationSpec, simulate
from threshold_operators.warehouse.hook import WarehouseHook

END = datetime(2026, 9, 30, tzinfo=UTC)
SPEC = SimulationSpec(shops=1, skus=120, days=400, orders_per_day=800, seed=11, end=END)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "shop.duckdb"
    result = simulate(SPEC, WarehouseHook(url=f"duckdb:///{path}"))
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    incidents = {i["id"]: i for i in result.labels["incidents"]}
    yield con, incidents, result
    con.close()


def ts(s: str) -> datetime:
    return datetime.fromisoformat(s)


def one(con, sql, *params):
    return con.execute(sql, list(params)).fetchone()[0]


def test_every_default_incident_is_labelled_inside_the_window(shop):
    _, incidents, result = shop
    assert len(incidents) == 11
    for inc in incidents.values():
        assert result.window_start <= ts(inc["start"]) < ts(inc["end"]) <= result.window_end
        assert inc["expect"], inc["id"]
    # 45 days before the end (2026-09-30 08:00 in Shanghai), at 15:30 local time
    assert incidents["formula_spike_low_stock"]["start_local"] == "2026-08-16T15:30:00+08:00"
    assert incidents["formula_spike_low_stock"]["entity"] == "Brand A"


def _orders_with_skus(con, skus, t0, t1):
    return one(con, "SELECT COUNT(DISTINCT order_id) FROM order_items WHERE sku IN (SELECT unnest(?)) "
                    "AND created_at >= ? AND created_at < ?", skus, t0, t1)


def _previous_days(con, f, days=7):
    return sum(f(d) for d in range(1, days + 1)) / days


def test_formula_spike_is_five_fold_with_about_five_hours_of_stock(shop):
    con, inc, _ = shop
    i = inc["formula_spike_low_stock"]
    t0, t1 = ts(i["start"]), ts(i["start"]) + timedelta(hours=2)
    during = _orders_with_skus(con, i["skus"], t0, t1)
    normal = _previous_days(con, lambda d: _orders_with_skus(con, i["skus"], t0 - timedelta(days=d), t1 - timedelta(days=d)))
    assert during / normal >= 3.5, (during, normal)
    stock = one(con, "SELECT SUM(on_hand - reserved) FROM (SELECT *, row_number() OVER (PARTITION BY sku ORDER BY snapshot_at DESC) r "
                     "FROM inventory_snapshots WHERE sku IN (SELECT unnest(?)) AND snapshot_at <= ?) WHERE r = 1", i["skus"], t0)
    units_per_hour = one(con, "SELECT SUM(quantity) FROM order_items WHERE sku IN (SELECT unnest(?)) AND created_at >= ? AND created_at < ?",
                         i["skus"], t0, t1) / 2
    assert 2 <= stock / units_per_hour <= 10, (stock, units_per_hour)


def test_influencer_spike_on_one_fresh_food_sku_through_douyin(shop):
    con, inc, _ = shop
    i = inc["influencer_fresh_food"]
    t0, t1 = ts(i["start"]), ts(i["end"])
    during = _orders_with_skus(con, i["skus"], t0, t1)
    normal = _previous_days(con, lambda d: _orders_with_skus(con, i["skus"], t0 - timedelta(days=d), t1 - timedelta(days=d)))
    assert during / max(normal, 1) >= 2.5
    douyin = one(con, "SELECT AVG((o.channel = 'douyin')::INT) FROM orders o JOIN order_items l USING (order_id) "
                      "WHERE l.sku = ? AND o.created_at >= ? AND o.created_at < ?", i["skus"][0], t0, t1)
    assert douyin > 0.5


def test_clothing_batch_complaints_surge(shop):
    con, inc, _ = shop
    i = inc["clothing_batch_quality"]
    t0, t1 = ts(i["start"]), ts(i["end"])
    during = one(con, "SELECT COUNT(*) FROM complaints WHERE batch_id = ? AND created_at >= ? AND created_at < ?", i["entity"], t0, t1)
    before = one(con, "SELECT COUNT(*) FROM complaints WHERE batch_id = ? AND created_at >= ? AND created_at < ?",
                 i["entity"], t0 - timedelta(days=56), t0) / 8
    quality_refunds = one(con, "SELECT COUNT(*) FROM refunds WHERE sku IN (SELECT unnest(?)) AND reason = 'quality' "
                               "AND requested_at >= ? AND requested_at < ?", i["skus"], t0, t1)
    assert during >= 5 * max(before, 1) and quality_refunds > 0


def test_payment_gateway_fails_over_15_percent_only_in_its_window(shop):
    con, inc, _ = shop
    i = inc["payment_gateway_degraded"]
    rate = "SELECT AVG((status = 'failed')::INT) FROM payments WHERE gateway = 'alipay' AND attempted_at >= ? AND attempted_at < ?"
    t0, t1 = ts(i["start"]), ts(i["end"])
    assert one(con, rate, t0, t1) > 0.15
    assert one(con, rate, t0 - timedelta(days=7), t1 - timedelta(days=7)) < 0.06


def test_paid_channel_costs_more_and_converts_less_than_a_year_ago(shop):
    con, inc, _ = shop
    i = inc["paid_channel_quality"]
    q = ("SELECT SUM(spend) / SUM(clicks), SUM(orders) / SUM(clicks) FROM ad_spend "
         "WHERE channel = 'douyin' AND hour >= ? AND hour < ?")
    t0, t1 = ts(i["start"]), ts(i["end"])
    cpv, cr = con.execute(q, [t0, t1]).fetchone()
    cpv_ly, cr_ly = con.execute(q, [t0 - timedelta(days=364), t1 - timedelta(days=364)]).fetchone()
    assert cpv / cpv_ly >= 1.5 and cr / cr_ly <= 0.7


def _conversion(con, t0, t1):
    orders = one(con, "SELECT COUNT(*) FROM orders WHERE created_at >= ? AND created_at < ?", t0, t1)
    visitors = one(con, "SELECT SUM(visitors) FROM traffic WHERE hour >= ? AND hour < ?", t0, t1)
    return orders / visitors


def test_site_slowdown_halves_conversion(shop):
    con, inc, _ = shop
    i = inc["site_slowdown"]
    t0, t1 = ts(i["start"]), ts(i["end"])
    assert _conversion(con, t0, t1) / _conversion(con, t0 - timedelta(days=7), t1 - timedelta(days=7)) < 0.65


def test_slow_decline_takes_orders_below_half_of_the_same_hours(shop):
    con, inc, _ = shop
    i = inc["slow_sales_decline"]
    t0, t1 = ts(i["start"]) + timedelta(hours=3), ts(i["end"])
    n = "SELECT COUNT(*) FROM orders WHERE created_at >= ? AND created_at < ?"
    # two weeks back: one week back is the site slowdown's day (default incidents, days 26 and 19)
    back = timedelta(days=14)
    assert one(con, n, t0, t1) / one(con, n, t0 - back, t1 - back) < 0.5
    # conversion stays normal: it is traffic that fell, not the site
    assert _conversion(con, t0, t1) / _conversion(con, t0 - back, t1 - back) > 0.75


def test_one_warehouse_stops_tracking_and_only_that_one(shop):
    con, inc, result = shop
    i = inc["warehouse_tracking_stall"]
    stale = con.execute(
        "SELECT warehouse_id, COUNT(*) FROM shipments WHERE status = 'in_transit' AND last_tracking_at <= ? GROUP BY 1",
        [result.window_end - timedelta(hours=48)],
    ).fetchall()
    assert dict(stale).keys() == {i["entity"]} and dict(stale)[i["entity"]] > 10


def test_negative_review_burst_on_one_sku(shop):
    con, inc, _ = shop
    i = inc["negative_review_burst"]
    t0, t1 = ts(i["start"]), ts(i["end"])
    neg = "SELECT COUNT(*) FROM reviews WHERE sku = ? AND rating <= 3 AND created_at >= ? AND created_at < ?"
    during = one(con, neg, i["entity"], t0, t1)
    per_day_before = one(con, neg, i["entity"], t0 - timedelta(days=28), t0) / 28
    assert during >= 5 and during >= 5 * max(per_day_before, 0.2)


def test_refund_surge_day_is_over_twice_the_monthly_average(shop):
    con, inc, _ = shop
    i = inc["refund_surge"]
    t0, t1 = ts(i["start"]), ts(i["end"])
    n = "SELECT COUNT(*) FROM refunds WHERE requested_at >= ? AND requested_at < ?"
    assert one(con, n, t0, t1) / (one(con, n, t0 - timedelta(days=30), t0) / 30) > 2.5


def test_normal_weeks_have_the_documented_rates(shop):
    con, _, result = shop
    t0 = result.window_start + timedelta(days=30)
    t1 = t0 + timedelta(days=28)  # four incident-free weeks, no promotion (Dec-Jan of the first year)
    assert 0.02 <= _conversion(con, t0, t1) <= 0.04
    fail = one(con, "SELECT AVG((status = 'failed')::INT) FROM payments WHERE attempted_at >= ? AND attempted_at < ?", t0, t1)
    assert 0.012 <= fail <= 0.03
    delivered = one(con, "SELECT COUNT(*) FROM orders WHERE status IN ('completed', 'refunded') AND created_at >= ? AND created_at < ?", t0, t1)
    refunded = one(con, "SELECT COUNT(*) FROM orders WHERE status = 'refunded' AND created_at >= ? AND created_at < ?", t0, t1)
    assert 0.03 <= refunded / delivered <= 0.05
    ratings = dict(con.execute("SELECT rating, COUNT(*) FROM reviews GROUP BY 1").fetchall())
    assert ratings[5] > ratings[4] > ratings[3] and ratings[5] / sum(ratings.values()) > 0.6
    by_day = dict(con.execute(
        "SELECT isodow(created_at AT TIME ZONE 'Asia/Shanghai') >= 6, COUNT(*) / COUNT(DISTINCT CAST(created_at AT TIME ZONE 'Asia/Shanghai' AS DATE)) "
        "FROM orders WHERE created_at >= ? AND created_at < ? GROUP BY 1", [t0, t1]).fetchall())
    assert 1.2 <= by_day[True] / by_day[False] <= 1.4
    night, evening = (one(con, "SELECT COUNT(*) FROM orders WHERE hour(created_at AT TIME ZONE 'Asia/Shanghai') = ? "
                               "AND created_at >= ? AND created_at < ?", h, t0, t1) for h in (4, 21))
    assert evening > 5 * night


def test_singles_day_is_the_yearly_peak(shop):
    con, _, result = shop
    top = con.execute("SELECT CAST(created_at AT TIME ZONE 'Asia/Shanghai' AS DATE) d, COUNT(*) n FROM orders "
                      "GROUP BY 1 ORDER BY n DESC LIMIT 1").fetchone()
    assert (top[0].month, top[0].day) == (11, 11)


def test_the_data_is_consistent(shop):
    con, _, result = shop
    assert one(con, "SELECT COUNT(*) FROM order_items l LEFT JOIN orders o USING (order_id) WHERE o.order_id IS NULL") == 0
    assert one(con, "SELECT COUNT(*) FROM order_items l JOIN orders o USING (order_id) WHERE l.created_at <> o.created_at") == 0
    assert one(con, "SELECT COUNT(*) FROM shipments s JOIN orders o USING (order_id) WHERE o.paid_at IS NULL OR s.shipped_at < o.paid_at") == 0
    assert one(con, "SELECT COUNT(*) FROM orders WHERE status IN ('paid', 'shipped', 'completed') AND paid_at IS NULL") == 0
    assert one(con, "SELECT COUNT(*) FROM inventory_snapshots WHERE on_hand < 0 OR reserved < 0 OR in_transit < 0") == 0
    assert one(con, "SELECT COUNT(*) FROM reviews WHERE rating NOT BETWEEN 1 AND 5") == 0
    for table, col in (("orders", "updated_at"), ("payments", "attempted_at"), ("shipments", "updated_at"),
                       ("reviews", "created_at"), ("refunds", "requested_at"), ("complaints", "created_at")):
        assert one(con, f"SELECT MAX({col}) FROM {table}") <= result.window_end, table
    amount_gap = one(con, "SELECT MAX(ABS(o.amount - l.total)) FROM orders o JOIN "
                          "(SELECT order_id, SUM(quantity * unit_price) total FROM order_items GROUP BY 1) l USING (order_id)")
    assert amount_gap < 0.05


def test_the_tracking_history_tells_each_parcels_latest_state(shop):
    """tracking_events holds every scan (pickup, 2-4 on the way, delivery); shipments is its
    latest: the first scan is the pickup, the latest the last tracking time, the delivery the
    delivered time. Outside the stall no parcel goes 32 hours without a scan."""
    con, inc, _ = shop
    per_parcel = dict(con.execute(
        "SELECT n, COUNT(*) FROM (SELECT e.shipment_id, COUNT(*) AS n FROM tracking_events e "
        "JOIN shipments s USING (shipment_id) WHERE s.status = 'delivered' GROUP BY 1) GROUP BY 1").fetchall())
    assert {4, 5, 6} <= set(per_parcel) <= {2, 4, 5, 6}  # 2: a parcel of the stall, delivered after it
    assert con.execute(
        "SELECT COUNT(*) FROM shipments s LEFT JOIN (SELECT shipment_id, MIN(event_at) AS first_at, MAX(event_at) AS last_at, "
        "  MAX(CASE WHEN status = 'delivered' THEN event_at END) AS delivered_at, "
        "  MIN(CASE WHEN status = 'picked_up' THEN event_at END) AS picked_up_at FROM tracking_events GROUP BY 1) e "
        "USING (shipment_id) WHERE e.first_at IS DISTINCT FROM s.shipped_at OR e.picked_up_at IS DISTINCT FROM s.shipped_at "
        "OR e.last_at IS DISTINCT FROM s.last_tracking_at OR e.delivered_at IS DISTINCT FROM s.delivered_at").fetchone()[0] == 0
    gap = con.execute(
        "SELECT MAX(gap) FROM (SELECT event_at - lag(event_at) OVER (PARTITION BY shipment_id ORDER BY event_at) AS gap "
        "FROM tracking_events WHERE warehouse_id <> ?)", [inc["warehouse_tracking_stall"]["entity"]]).fetchone()[0]
    assert gap <= timedelta(hours=32)
