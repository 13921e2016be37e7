"""One simulated day of every shop: traffic, orders and everything that follows from them.

``ShopDay.generate(h0)`` draws the 24 window hours from ``h0`` and returns Arrow tables for the
fact tables plus the units sold per hour and SKU (for the inventory). Events that follow an
order (payment, shipment, tracking scans, delivery, refund, complaint, review) are drawn with the order and
kept when they happen before the end of the window: the warehouse holds every row as it
stands at the end of the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from threshold_operators.simulator.catalogue import LINES_P, QUANTITY_P, WAREHOUSES_PER_SHOP, Catalogue
from threshold_operators.simulator.demand import (
    BASE_CONVERSION,
    CAMPAIGN_SPLIT,
    CHANNEL_SHARE,
    CLICK_THROUGH_RATE,
    COST_PER_CLICK,
    visitors_expected,
)
from threshold_operators.simulator.incidents import CHANNELS, GATEWAYS, Effects, TimedFactor
from threshold_operators.simulator.seasonality import HOUR_S, YEARLY_TREND, LocalClock, Window
from threshold_operators.simulator.tracking import scan_step, tracking_event_rows
from threshold_operators.simulator.versions import hourly_versions, order_versions, shipment_versions
from threshold_operators.warehouse.schema import arrow_table

NEVER = np.int64(2**62)
DAY_S = 24 * HOUR_S
GATEWAY_P = np.array([0.55, 0.40, 0.05])
CARRIERS = np.array(["sf", "zto", "yto", "jd"], dtype=object)
BASE_FAILURE = 0.02
FAILURE_CODES = np.array(["insufficient_funds", "card_declined", "risk_rejected", "gateway_timeout"], dtype=object)
FAILURE_CODE_P = np.array([0.4, 0.3, 0.2, 0.1])
REFUND_REASONS = np.array(["quality", "size", "not_as_described", "damaged", "late", "changed_mind"], dtype=object)
REFUND_REASON_P = np.array([0.2, 0.25, 0.15, 0.1, 0.05, 0.25])
COMPLAINT_CATEGORIES = np.array(["quality", "damaged", "wrong_item", "delivery", "service"], dtype=object)
COMPLAINT_P = np.array([0.35, 0.2, 0.1, 0.25, 0.1])
REVIEW_P = 0.25
RATING_P = np.array([0.03, 0.02, 0.05, 0.15, 0.75])  # 1..5 stars
NEGATIVE_RATING_P = np.array([0.45, 0.30, 0.25])  # 1..3 stars in a burst
REVIEW_TEXT = {
    1: ["质量太差了,和描述完全不符", "收到就坏了,非常失望", "客服不理人,差评"],
    2: ["不太满意,做工一般", "物流太慢了,包装也破了"],
    3: ["一般般吧,凑合用", "还行,但有点小问题"],
    4: ["不错,挺满意的", "质量可以,物流快"],
    5: ["非常好,会回购!", "宝贝很好,五星好评", "质量超出预期,推荐"],
}


def ts(seconds: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """UTC microsecond timestamps from epoch seconds; ``valid`` False gives NULL."""
    us = seconds.astype(np.int64) * 1_000_000
    return pa.array(us, type=pa.timestamp("us", tz="UTC"), mask=None if valid is None else ~valid)


def ids(prefix: pa.Array, number: np.ndarray, width: int, sep: str = "-") -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(number), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, sep)


def suffixed(base: pa.Array, suffix: str) -> pa.Array:
    return pc.binary_join_element_wise(base, pa.array([suffix] * len(base), pa.string()), "-")


def money(x: np.ndarray) -> pa.Array:
    return pa.array(np.round(x, 2))


def timed_factor(effects: list[TimedFactor], shop: np.ndarray, at_s: np.ndarray, g: np.ndarray | None = None) -> np.ndarray:
    """Product of the factors whose shop and time window (and SKU set) match each event."""
    out = np.ones(len(shop))
    for e in effects:
        m = (shop == e.shop) & (at_s >= e.t0) & (at_s < e.t1)
        if e.skus is not None and g is not None:
            m &= np.isin(g, e.skus)
        out[m] *= e.factor
    return out


@dataclass
class UnitsSold:
    """Units sold per hour and SKU, sparse: ``key = hour_offset * n_skus + sku``, sorted."""

    hours: int
    n_skus: int
    key: np.ndarray
    qty: np.ndarray

    def hour(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(SKUs, units) sold in hour offset k."""
        lo, hi = np.searchsorted(self.key, [k * self.n_skus, (k + 1) * self.n_skus])
        return self.key[lo:hi] - k * self.n_skus, self.qty[lo:hi]


@dataclass
class DayOutput:
    tables: dict[str, pa.Table]
    units_sold: UnitsSold
    versions: dict[str, pa.Table] = field(default_factory=dict)  # see simulator.versions


class ShopDay:
    """Generates the window day by day; with ``history_from`` (epoch seconds), also the versions
    of the rows that change from then on (``simulator.versions``)."""

    def __init__(self, rng: np.random.Generator, window: Window, catalogue: Catalogue,
                 clocks: list[LocalClock], lam: np.ndarray, effects: Effects, currency: str,
                 history_from: int | None = None):
        self.history_from = history_from
        self.rng, self.window, self.cat, self.clocks = rng, window, catalogue, clocks
        self.lam, self.fx, self.currency = lam, effects, currency
        self.shops = len(catalogue.shop_ids)
        self.shop_ids = pa.array(catalogue.shop_ids)
        self.order_seq = np.zeros(self.shops, dtype=np.int64)
        self.customers = pa.concat_arrays(catalogue.customer_ids)
        self.pool = len(catalogue.customer_ids[0])
        self.discount = np.stack([c.discount for c in clocks])
        self.review_text = pa.array([t for r in range(1, 6) for t in REVIEW_TEXT[r]])
        self.review_text_count = np.array([0] + [len(REVIEW_TEXT[r]) for r in range(1, 6)])
        self.review_text_start = np.concatenate([[0], np.cumsum(self.review_text_count)])[:-1]
        self.warehouse_ids = pa.array([catalogue.warehouse_id(s, w) for s in range(self.shops) for w in range(WAREHOUSES_PER_SHOP)])

    # ---- traffic ---------------------------------------------------------------------------
    def _traffic(self, hrs: np.ndarray):
        rng, fx = self.rng, self.fx
        vis = rng.poisson(visitors_expected(self.lam[:, hrs], fx.visitors_mult[:, hrs]))
        conversion = np.clip(BASE_CONVERSION[None, None] * fx.cr_mult[:, hrs], 0, 1)
        orders = rng.binomial(vis, conversion)
        return vis, orders

    def _spike_orders(self, hrs: np.ndarray, vis: np.ndarray):
        """Extra orders of incident spikes: (shop, hour offset, channel, forced first SKU, the
        part [lo, hi) of the hour, in seconds, they fall in, and whether the order is that SKU alone). A spike starts and ends at its
        second: an hour it covers in part gets that part of the extra orders, placed within it."""
        out = []
        W = self.window
        for sp in self.fx.spikes:
            for h in range(max(sp.h0, hrs[0]), min(sp.h1, hrs[-1] + 1)):
                hour_s = W.start_s + h * HOUR_S
                lo, hi = max(sp.t0, hour_s) - hour_s, min(sp.t1, hour_s + HOUR_S) - hour_s
                if hi <= lo:
                    continue
                base = self.lam[sp.shop, h] * float(LINES_P @ np.arange(1, 5)) * self.cat.popularity[sp.skus].sum()
                n = self.rng.poisson((sp.multiplier - 1) * base * (hi - lo) / HOUR_S)
                if n == 0:
                    continue
                ch = np.full(n, sp.channel) if sp.channel is not None else self.rng.choice(len(CHANNELS), n, p=CHANNEL_SHARE)
                first = self.rng.choice(sp.skus, n, p=sp.weights)
                off = h - hrs[0]
                np.add.at(vis, (sp.shop, off, ch, 0), np.ceil(1 / BASE_CONVERSION[ch, 0]).astype(np.int64))
                out.append((np.full(n, sp.shop), np.full(n, off), ch, first, np.full(n, lo), np.full(n, hi),
                            np.full(n, int(sp.single_line))))
        if not out:
            e = np.array([], dtype=np.int64)
            return e, e, e, e, e, e, e
        return tuple(np.concatenate(x) for x in zip(*out, strict=True))

    # ---- the day -----------------------------------------------------------------------------
    def generate(self, h0: int) -> DayOutput:
        rng, cat, W = self.rng, self.cat, self.window
        hrs = np.arange(h0, min(h0 + 24, W.n_hours))
        vis, conv = self._traffic(hrs)
        sp_shop, sp_off, sp_ch, sp_first, sp_lo, sp_hi, sp_single = self._spike_orders(hrs, vis)

        # Orders: one per conversion, plus the spikes' extra orders.
        cells = np.flatnonzero(conv.ravel())
        counts = conv.ravel()[cells]
        s_idx, off_idx, c_idx, src_idx = np.unravel_index(np.repeat(cells, counts), conv.shape)
        shop = np.concatenate([s_idx, sp_shop]).astype(np.int64)
        off = np.concatenate([off_idx, sp_off]).astype(np.int64)
        channel = np.concatenate([c_idx, sp_ch]).astype(np.int64)
        source = np.concatenate([src_idx, np.zeros(len(sp_shop), dtype=np.int64)])
        forced = np.concatenate([np.full(len(s_idx), -1), sp_first]).astype(np.int64)
        single = np.concatenate([np.zeros(len(s_idx), dtype=np.int64), sp_single]).astype(bool)
        second = rng.integers(0, HOUR_S, len(shop))
        second[len(s_idx):] = sp_lo + second[len(s_idx):] * (sp_hi - sp_lo) // HOUR_S  # within the spike's part
        created = W.start_s + (hrs[0] + off) * HOUR_S + second
        order = np.lexsort((created, shop))
        shop, off, channel, source, forced, single, created = (
            a[order] for a in (shop, off, channel, source, forced, single, created))
        n = len(shop)
        per_shop = np.bincount(shop, minlength=self.shops)
        first_of_shop = np.concatenate([[0], np.cumsum(per_shop)[:-1]])
        seq = self.order_seq[shop] + np.arange(n) - first_of_shop[shop] + 1
        self.order_seq += per_shop
        shop_col = self.shop_ids.take(pa.array(shop))
        order_id = ids(shop_col, seq, 9)

        # Lines.
        n_lines = rng.choice(np.arange(1, 5), n, p=LINES_P)
        # A spike with ``single_line`` (the live shop's x100 rush): its extra orders are for its SKU
        # alone, or the baskets they carry would raise false spikes on the rest of the catalogue.
        n_lines[single] = 1
        line_order = np.repeat(np.arange(n), n_lines)
        starts = np.concatenate([[0], np.cumsum(n_lines)[:-1]])
        line_no = np.arange(len(line_order)) - starts[line_order] + 1
        g = cat.sample_skus(rng, shop[line_order])
        first_line = starts[forced >= 0]
        g[first_line] = forced[forced >= 0]
        qty = rng.choice(np.arange(1, 4), len(g), p=QUANTITY_P)
        line_shop = shop[line_order]
        unit_price = np.round(cat.price[g] * self.discount[line_shop, hrs[0] + off[line_order]], 2)
        amount = np.round(np.bincount(line_order, weights=qty * unit_price, minlength=n), 2)

        # Payments: 95% try to pay; 2% of attempts fail (more on a degraded gateway); 60% retry.
        def attempt(at_s):
            gw = rng.choice(len(GATEWAYS), n, p=GATEWAY_P)
            p_fail = np.full(n, BASE_FAILURE)
            incident = np.zeros(n, dtype=bool)
            for e in self.fx.gateway_failures:
                m = (shop == e.shop) & (gw == e.extra["gateway"]) & (at_s >= e.t0) & (at_s < e.t1)
                p_fail[m] = e.factor
                incident |= m
            failed = rng.random(n) < p_fail
            code = np.where(incident, "gateway_timeout", rng.choice(FAILURE_CODES, n, p=FAILURE_CODE_P))
            return gw, failed, code

        tries = rng.random(n) < 0.95
        t1 = created + rng.integers(10, 600, n)
        gw1, fail1, code1 = attempt(t1)
        retry = tries & fail1 & (rng.random(n) < 0.6)
        t2 = t1 + rng.integers(30, 600, n)
        gw2, fail2, code2 = attempt(t2)
        paid_at = np.where(tries & ~fail1, t1, np.where(retry & ~fail2, t2, NEVER))
        paid_at[paid_at >= W.end_s] = NEVER
        paid = paid_at < NEVER
        tries &= t1 < W.end_s
        retry &= t2 < W.end_s

        # Shipments of paid orders; the carrier scans each at pickup, 2-4 times on the way and at
        # delivery (simulator.tracking).
        wh = cat.warehouse[g[starts]]
        shipped = np.where(paid, paid_at + np.clip(rng.lognormal(np.log(10 * HOUR_S), 0.6, n), HOUR_S, 72 * HOUR_S).astype(np.int64), NEVER)
        delivered = np.where(paid, shipped + rng.integers(20 * HOUR_S, 96 * HOUR_S, n), NEVER)
        draw = rng.integers(2 * HOUR_S, 6 * HOUR_S, n)  # drawn as before, so the other draws stay the same
        stalled = np.zeros(n, dtype=bool)
        for e in self.fx.tracking_stalls:
            m = paid & (shop == e.shop) & (wh == e.extra["warehouse"]) & (shipped >= e.t0) & (shipped < e.t1)
            stalled |= m
            delivered[m] = np.maximum(delivered[m], e.t1 + rng.integers(4 * HOUR_S, 24 * HOUR_S, m.sum()))
        tick = scan_step(shipped, delivered, draw)
        has_ship = shipped < W.end_s
        is_delivered = delivered < W.end_s
        since = np.where(has_ship, W.end_s - shipped, 0)
        last_tracking = np.where(is_delivered, delivered, np.where(stalled, shipped, shipped + (since // tick) * tick))

        # Per-line aftermath of a delivery: refunds, complaints, reviews.
        l_deliv = delivered[line_order]
        got = l_deliv < W.end_s
        req = l_deliv + rng.integers(HOUR_S * 12, 7 * DAY_S, len(g))
        p_ref = cat.refund_rate[g] * timed_factor(self.fx.refund_surges, line_shop, req)
        for e in self.fx.complaint_surges:
            m = (line_shop == e.shop) & np.isin(g, e.skus) & (req >= e.t0) & (req < e.t1)
            p_ref[m] *= e.extra["refund_factor"]
        refunded = got & (req < W.end_s) & (rng.random(len(g)) < p_ref)
        c_at = l_deliv + rng.integers(HOUR_S * 6, 5 * DAY_S, len(g))
        p_c = cat.complaint_rate[g] * timed_factor(self.fx.complaint_surges, line_shop, c_at, g)
        complained = got & (c_at < W.end_s) & (rng.random(len(g)) < p_c)
        r_at = l_deliv + rng.integers(HOUR_S * 4, 6 * DAY_S, len(g))
        rating = rng.choice(np.arange(1, 6), len(g), p=RATING_P)
        p_r = np.full(len(g), REVIEW_P)
        for e in self.fx.review_bursts:
            m = (line_shop == e.shop) & np.isin(g, e.skus) & (r_at >= e.t0) & (r_at < e.t1)
            p_r[m] *= e.factor
            neg = m & (rng.random(len(g)) < e.extra["negative_share"])
            rating[neg] = rng.choice([1, 2, 3], neg.sum(), p=NEGATIVE_RATING_P)
        reviewed = got & (r_at < W.end_s) & (rng.random(len(g)) < np.minimum(p_r, 1.0))

        # Order status as it stands at the end of the window.
        any_refund = np.bincount(line_order, weights=refunded, minlength=n) > 0
        last_refund = np.full(n, -1, dtype=np.int64)
        np.maximum.at(last_refund, line_order[refunded], req[refunded])
        auto_cancel = created + 1800
        status = np.select(
            [any_refund, is_delivered, has_ship, paid, auto_cancel < W.end_s],
            ["refunded", "completed", "shipped", "paid", "cancelled"],
            "pending",
        )
        updated = np.select(
            [any_refund, is_delivered, has_ship, paid, auto_cancel < W.end_s],
            [last_refund, delivered, shipped, paid_at, auto_cancel],
            np.where(retry, t2, np.where(tries, t1, created)),
        )

        tables: dict[str, pa.Table] = {}
        cust = self.customers.take(pa.array(shop * self.pool + rng.integers(0, self.pool, n)))
        tables["orders"] = arrow_table("orders", {
            "order_id": order_id, "shop_id": shop_col, "channel": pa.array(np.array(CHANNELS, dtype=object)[channel]),
            "customer_id": cust, "status": pa.array(status), "amount": money(amount),
            "currency": pa.array([self.currency] * n), "created_at": ts(created), "paid_at": ts(paid_at, paid),
            "updated_at": ts(updated),
        })
        line_oid = order_id.take(pa.array(line_order))
        tables["order_items"] = arrow_table("order_items", {
            "order_id": line_oid, "line_no": pa.array(line_no.astype(np.int16)), "shop_id": shop_col.take(pa.array(line_order)),
            "sku": pa.array(cat.sku[g]), "quantity": pa.array(qty.astype(np.int32)), "unit_price": money(unit_price),
            "created_at": ts(created[line_order]),
        })
        p1, p2 = np.flatnonzero(tries), np.flatnonzero(retry)
        gws = np.array(GATEWAYS, dtype=object)
        tables["payments"] = pa.concat_tables([
            arrow_table("payments", {
                "payment_id": suffixed(order_id.take(pa.array(ix)), tag), "order_id": order_id.take(pa.array(ix)),
                "shop_id": shop_col.take(pa.array(ix)), "gateway": pa.array(gws[gw[ix]]),
                "status": pa.array(np.where(fl[ix], "failed", "succeeded")),
                "failure_code": pa.array(code[ix], mask=~fl[ix]), "attempted_at": ts(at[ix]),
            })
            for ix, tag, gw, fl, code, at in ((p1, "P1", gw1, fail1, code1, t1), (p2, "P2", gw2, fail2, code2, t2))
        ])
        si = np.flatnonzero(has_ship)
        s_oid = order_id.take(pa.array(si))
        tables["shipments"] = arrow_table("shipments", {
            "shipment_id": suffixed(s_oid, "S"), "order_id": s_oid, "shop_id": shop_col.take(pa.array(si)),
            "warehouse_id": self.warehouse_ids.take(pa.array(shop[si] * WAREHOUSES_PER_SHOP + wh[si])),
            "carrier": pa.array(CARRIERS[seq[si] % 4]),
            "tracking_no": ids(pa.array(np.char.upper(CARRIERS[seq[si] % 4].astype(str)).astype(object)), (seq[si] * 7919 + shop[si]) % 10**12, 12, ""),
            "status": pa.array(np.where(is_delivered[si], "delivered", "in_transit")),
            "shipped_at": ts(shipped[si]), "last_tracking_at": ts(last_tracking[si]),
            "delivered_at": ts(delivered[si], is_delivered[si]), "updated_at": ts(last_tracking[si]),
        })
        e_row, e_at, e_status = tracking_event_rows(shipped[si], delivered[si], is_delivered[si], stalled[si],
                                                    tick[si], W.end_s)
        shipments = tables["shipments"]
        tables["tracking_events"] = arrow_table("tracking_events", {
            "shipment_id": shipments["shipment_id"].take(pa.array(e_row)), "event_at": ts(e_at),
            "shop_id": shipments["shop_id"].take(pa.array(e_row)),
            "warehouse_id": shipments["warehouse_id"].take(pa.array(e_row)),
            "tracking_no": shipments["tracking_no"].take(pa.array(e_row)), "status": pa.array(e_status),
        })
        ri = np.flatnonzero(refunded)
        r_oid = line_oid.take(pa.array(ri))
        tables["refunds"] = arrow_table("refunds", {
            "refund_id": ids(r_oid, line_no[ri], 2, "-R"), "order_id": r_oid, "shop_id": shop_col.take(pa.array(line_order[ri])),
            "sku": pa.array(cat.sku[g[ri]]), "amount": money(qty[ri] * unit_price[ri]),
            "reason": pa.array(np.where(timed_factor(self.fx.complaint_surges, line_shop[ri], req[ri], g[ri]) > 1, "quality",
                                        rng.choice(REFUND_REASONS, len(ri), p=REFUND_REASON_P))),
            "requested_at": ts(req[ri]),
        })
        ci = np.flatnonzero(complained)
        c_oid = line_oid.take(pa.array(ci))
        tables["complaints"] = arrow_table("complaints", {
            "complaint_id": ids(c_oid, line_no[ci], 2, "-C"), "shop_id": shop_col.take(pa.array(line_order[ci])), "order_id": c_oid,
            "sku": pa.array(cat.sku[g[ci]]), "batch_id": pa.array(cat.batch_id[g[ci]]),
            "category": pa.array(rng.choice(COMPLAINT_CATEGORIES, len(ci), p=COMPLAINT_P)), "created_at": ts(c_at[ci]),
        })
        vi = np.flatnonzero(reviewed)
        v_oid = line_oid.take(pa.array(vi))
        rt = rating[vi]
        body = self.review_text.take(pa.array(self.review_text_start[rt] + vi % self.review_text_count[rt]))
        tables["reviews"] = arrow_table("reviews", {
            "review_id": ids(v_oid, line_no[vi], 2, "-V"), "shop_id": shop_col.take(pa.array(line_order[vi])), "order_id": v_oid,
            "sku": pa.array(cat.sku[g[vi]]), "rating": pa.array(rt.astype(np.int16)), "body": body,
            "created_at": ts(r_at[vi]),
        })
        tables["traffic"], tables["ad_spend"] = self._marketing(hrs, vis, shop, off, channel, source, amount)

        key, inverse = np.unique(off[line_order] * cat.n + g, return_inverse=True)
        out = DayOutput(tables, UnitsSold(len(hrs), cat.n, key, np.bincount(inverse, weights=qty).astype(np.int64)))
        if self.history_from is not None:
            h = self.history_from
            out.versions["orders"] = order_versions(
                tables["orders"], h, created=created, t1=t1, tries=tries, fail1=fail1, t2=t2, retry=retry, fail2=fail2,
                paid_at=paid_at, paid=paid, cancel_at=auto_cancel, cancelled=~paid & (auto_cancel < W.end_s),
                shipped=shipped, has_ship=has_ship, delivered=delivered, is_delivered=is_delivered,
                refund_row=line_order[refunded], refund_at=req[refunded], updated=updated)
            out.versions["shipments"] = shipment_versions(
                tables["shipments"], h, W.end_s, shipped=shipped[si], delivered=delivered[si],
                is_delivered=is_delivered[si], stalled=stalled[si], tick=tick[si], last_tracking=last_tracking[si])
            for name in ("traffic", "ad_spend"):
                hour_s = tables[name]["hour"].cast(pa.int64()).to_numpy() // 1_000_000
                out.versions[name] = hourly_versions(tables[name], hour_s, h)
        return out

    def _marketing(self, hrs, vis, shop, off, channel, source, amount):
        rng, W = self.rng, self.window
        S, T, C, _ = vis.shape
        s_i, t_i, c_i, src_i = np.meshgrid(np.arange(S), np.arange(T), np.arange(C), np.arange(2), indexing="ij")
        hour_s = W.start_s + (hrs[0] + t_i.ravel()) * HOUR_S
        traffic = arrow_table("traffic", {
            "shop_id": self.shop_ids.take(pa.array(s_i.ravel())),
            "channel": pa.array(np.array(CHANNELS, dtype=object)[c_i.ravel()]),
            "source": pa.array(np.where(src_i.ravel() == 1, "paid", "organic")),
            "hour": ts(hour_s), "visitors": pa.array(vis.ravel().astype(np.int32)),
        })
        # Paid visitors are the clicks of two campaigns per channel; attributed orders follow.
        paid = source == 1
        cell = (shop[paid] * T + off[paid]) * C + channel[paid]
        p_orders = np.bincount(cell, minlength=S * T * C)
        p_revenue = np.bincount(cell, weights=amount[paid], minlength=S * T * C)
        clicks = vis[..., 1].ravel()
        s2, t2, c2 = np.meshgrid(np.arange(S), np.arange(T), np.arange(C), indexing="ij")
        s2, t2, c2 = s2.ravel(), t2.ravel(), c2.ravel()
        years = (hrs[0] + t2) / (24 * 365)
        cpc = COST_PER_CLICK[c2] * self.fx.cpc_mult[s2, hrs[0] + t2, c2] * (1 + 0.5 * YEARLY_TREND * years)
        parts = []
        for k, frac in enumerate(CAMPAIGN_SPLIT):
            ck = np.floor(clicks * frac).astype(np.int64) if k == 0 else clicks - np.floor(clicks * CAMPAIGN_SPLIT[0]).astype(np.int64)
            ok = np.floor(p_orders * frac).astype(np.int64) if k == 0 else p_orders - np.floor(p_orders * CAMPAIGN_SPLIT[0]).astype(np.int64)
            parts.append(arrow_table("ad_spend", {
                "shop_id": self.shop_ids.take(pa.array(s2)),
                "channel": pa.array(np.array(CHANNELS, dtype=object)[c2]),
                "campaign_id": pa.array(np.array([f"{c}-cmp{k + 1}" for c in CHANNELS], dtype=object)[c2]),
                "hour": ts(W.start_s + (hrs[0] + t2) * HOUR_S),
                "impressions": pa.array(rng.poisson(ck / CLICK_THROUGH_RATE).astype(np.int32)),
                "clicks": pa.array(ck.astype(np.int32)),
                "spend": money(ck * cpc * rng.lognormal(0, 0.08, len(ck))),
                "orders": pa.array(ok.astype(np.int32)),
                "revenue": money(p_revenue * frac),
            }))
        return traffic, pa.concat_tables(parts)
