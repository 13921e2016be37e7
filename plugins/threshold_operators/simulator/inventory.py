"""Stock positions of every SKU, hour by hour, under a reorder-point policy.

Each SKU is replenished when on-hand plus in-transit stock falls below its lead time plus 25
days of expected sales, up to lead time plus 45 days; so a normal week keeps every SKU above
the 15-day "blue" cover and only incidents (or promotions) push it lower. A demand-spike
incident with ``stock_hours_left`` also delays the brand's purchase order, so the spike finds
about that many hours of stock (the seed's "stock left for 5 hours").

Snapshots are written at the end of every hour in which a SKU's stock changed, plus a full
snapshot of every SKU at the start of the window and at 00:00 local time on the first of each
month (the stocktake). The latest row per SKU and warehouse is its stock at any time.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from threshold_operators.simulator.catalogue import MEAN_LINES, MEAN_QUANTITY, Catalogue
from threshold_operators.simulator.incidents import Effects
from threshold_operators.simulator.seasonality import HOUR_S, LocalClock, Window
from threshold_operators.simulator.shop_day import UnitsSold, ts
from threshold_operators.warehouse.schema import arrow_table

REORDER_DAYS = 25
ORDER_UP_TO_DAYS = 45
RESERVED_HOURS = 12  # orders wait about half a day between purchase and shipment


class Inventory:
    def __init__(self, rng: np.random.Generator, window: Window, catalogue: Catalogue, clocks: list[LocalClock],
                 lam: np.ndarray, effects: Effects):
        self.rng, self.window, self.cat = rng, window, catalogue
        n = catalogue.n
        s = catalogue.shop_of
        # Expected units per hour of each SKU at each window hour would be lam[s, h] * share; keep
        # only what is needed: the planning rate (units/day) and the rate at given hours.
        self.share = MEAN_LINES * catalogue.popularity * MEAN_QUANTITY
        self.lam = lam
        # Purchasing plans on the higher of the window's mean demand and the last 8 weeks' (the
        # +10% a year trend makes the window's mean too low towards its end).
        recent = lam[:, -56 * 24:].mean(axis=1)
        self.rate = np.maximum(lam.mean(axis=1), recent)[s] * 24 * self.share
        self.lead_h = catalogue.lead_time_days * 24
        self.available = np.ceil(self.rate * rng.uniform(28, 50, n)).astype(np.int64) + 3
        self.in_transit = np.zeros(n, dtype=np.int64)
        self.arrival = np.full(n, -1, dtype=np.int64)
        self.blocked_until = np.full(n, -1, dtype=np.int64)
        self.reorder_point = self.rate * (catalogue.lead_time_days + REORDER_DAYS)
        self.order_up_to = np.ceil(self.rate * (catalogue.lead_time_days + ORDER_UP_TO_DAYS)).astype(np.int64) + 3
        empty = np.array([], dtype=np.int64)
        self.ring = [(empty, empty)] * RESERVED_HOURS  # (SKUs, units) sold in each of the last hours
        self.arrivals: dict[int, list[np.ndarray]] = {}  # hour -> SKUs whose purchase order arrives
        self.reserved = np.zeros(n, dtype=np.int64)
        # The monthly stocktake: a full snapshot at 00:00 local on the 1st, per shop.
        self.full_at = np.stack([(c.date.astype("datetime64[M]").astype("datetime64[D]") == c.date) & (c.hour == 0) for c in clocks])
        self.shop_ids = pa.array(catalogue.shop_ids)
        self.warehouse_ids = pa.array([catalogue.warehouse_id(sh, w) for sh, w in zip(s, catalogue.warehouse, strict=True)])
        self.shortfalls = self._plan_shortfalls(effects)

    def _plan_shortfalls(self, effects: Effects) -> dict[int, list]:
        """Hour -> [(skus, stock level, release hour, restock quantity)] for delayed purchase orders."""
        plan: dict[int, list] = {}
        W = self.window
        for inc in effects.stock_shortfalls:
            p = inc.spec.params
            h_spike, h_end = inc.hours_range(W)
            h_delay = max(0, h_spike - int(p.get("supplier_delay_hours", 36)))
            g = inc.skus
            s = inc.shop
            before = self.lam[s, h_delay:h_spike].sum() * self.share[g]
            at_spike = float(p.get("multiplier", 5.0)) * self.lam[s, h_spike] * self.share[g]
            level = np.ceil(before + float(p["stock_hours_left"]) * at_spike).astype(np.int64)
            release = min(h_end + 18, W.n_hours - 1)
            plan.setdefault(h_delay, []).append((g, level, release, np.ceil(self.rate[g] * 30).astype(np.int64)))
        return plan

    def initial_snapshot(self) -> pa.Table:
        g = np.arange(self.cat.n)
        return self._rows(g, self.window.start_s, self.available + self.reserved, self.reserved, self.in_transit)

    def _rows(self, g, at_s, on_hand, reserved, in_transit) -> pa.Table:
        gi = pa.array(g)
        return arrow_table("inventory_snapshots", {
            "shop_id": self.shop_ids.take(pa.array(self.cat.shop_of[g])),
            "sku": pa.array(self.cat.sku[g]),
            "warehouse_id": self.warehouse_ids.take(gi),
            "on_hand": pa.array(on_hand[g].astype(np.int32)),
            "reserved": pa.array(reserved[g].astype(np.int32)),
            "in_transit": pa.array(in_transit[g].astype(np.int32)),
            "snapshot_at": ts(np.full(len(g), at_s, dtype=np.int64)),
        })

    def _schedule(self, g: np.ndarray, hours: np.ndarray) -> None:
        self.arrival[g] = hours
        for h in np.unique(hours):
            self.arrivals.setdefault(int(h), []).append(g[hours == h])

    def advance(self, h0: int, units_sold: UnitsSold) -> pa.Table:
        """Run the hours from h0 with the units sold per hour; return the snapshots written.

        Work per hour is proportional to the SKUs that sold, received or reordered in it, not
        to the size of the catalogue.
        """
        out = []
        W, cat = self.window, self.cat
        for k in range(units_sold.hours):
            t = h0 + k
            touched = []
            for g, level, release, restock in self.shortfalls.get(t, []):
                self.available[g] = level
                self.in_transit[g] = restock
                self.blocked_until[g] = release
                self._schedule(g, np.full(len(g), release))
                touched.append(g)
            for g in self.arrivals.pop(t, []):
                g = g[self.arrival[g] == t]
                self.available[g] += self.in_transit[g]
                self.in_transit[g] = 0
                self.arrival[g] = -1
                touched.append(g)
            sold, qty = units_sold.hour(k)
            self.available[sold] = np.maximum(0, self.available[sold] - qty)
            slot = t % RESERVED_HOURS
            old_g, old_q = self.ring[slot]
            self.reserved[old_g] -= old_q
            self.reserved[sold] += qty
            self.ring[slot] = (sold, qty)
            touched.append(sold)
            cand = np.unique(np.concatenate(touched))
            need = cand[(self.available[cand] + self.in_transit[cand] < self.reorder_point[cand])
                        & (self.arrival[cand] < 0) & (t >= self.blocked_until[cand])]
            if len(need):
                self.in_transit[need] += np.maximum(self.order_up_to[need] - self.available[need] - self.in_transit[need], 1)
                self._schedule(need, t + self.lead_h[need] + self.rng.integers(-12, 13, len(need)))
            nxt = t + 1
            if nxt < W.n_hours and self.full_at[:, nxt].any():
                cand = np.union1d(cand, np.flatnonzero(np.isin(cat.shop_of, np.flatnonzero(self.full_at[:, nxt]))))
            if len(cand):
                out.append(self._rows(cand, W.start_s + nxt * HOUR_S, self.available + self.reserved, self.reserved, self.in_transit))
        if not out:
            return self._rows(np.array([], dtype=np.int64), 0, self.available, self.reserved, self.in_transit)
        return pa.concat_tables(out)
