"""Shops and their catalogues: categories, brands, production batches, prices, popularity.

SKUs of all shops share one global index ``g = shop_index * skus_per_shop + i``; every
per-SKU array here is indexed by it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from threshold_operators.warehouse.schema import arrow_table

# code, share of the catalogue, price range, refund rate, complaint rate, lead time (days), popularity
CATEGORIES: tuple[tuple[str, float, tuple[float, float], float, float, tuple[int, int], float], ...] = (
    ("infant_formula", 0.08, (180, 420), 0.015, 0.003, (5, 10), 2.0),
    ("diapers", 0.07, (60, 160), 0.015, 0.003, (5, 10), 1.6),
    ("fresh_food", 0.12, (20, 120), 0.02, 0.006, (1, 3), 1.5),
    ("clothing", 0.25, (60, 400), 0.05, 0.005, (10, 20), 1.0),
    ("furniture", 0.08, (300, 3000), 0.02, 0.004, (15, 30), 0.4),
    ("electronics", 0.10, (100, 2000), 0.03, 0.004, (7, 15), 0.8),
    ("beauty", 0.15, (50, 500), 0.02, 0.003, (5, 12), 1.2),
    ("home", 0.15, (20, 200), 0.02, 0.003, (5, 12), 1.0),
)
CATEGORY_CODES = tuple(c[0] for c in CATEGORIES)
BRANDS_PER_CATEGORY = 3  # infant_formula gets Brand A, B, C; diapers D, E, F; ...
SKUS_PER_BATCH = 4  # SKUs of one brand and category made in the same production run
WAREHOUSES_PER_SHOP = 3
# A warehouse's name and the region it serves; a shop's warehouses 1..3 take the next three from its own index
WAREHOUSE_SITES = (("上海仓", "华东"), ("广州仓", "华南"), ("北京仓", "华北"), ("成都仓", "西南"), ("武汉仓", "华中"))
QUANTITY_P = np.array([0.80, 0.15, 0.05])  # 1, 2 or 3 units per line
MEAN_QUANTITY = float((QUANTITY_P * np.arange(1, 4)).sum())
LINES_P = np.array([0.60, 0.25, 0.10, 0.05])  # 1..4 lines per order
MEAN_LINES = float((LINES_P * np.arange(1, 5)).sum())

SHOP_NAMES = ("Little Star Mother & Baby", "Golden Harvest Fresh", "Cloud Wardrobe", "Oak & Linen Home",
              "Bright Tech", "Silk Road Beauty", "Harbour Living", "Panda Kids", "Jade Garden", "Red Lantern Mall")


def brand_name(category_index: int, k: int) -> str:
    n = category_index * BRANDS_PER_CATEGORY + k
    letters = ""
    while True:
        letters = chr(ord("A") + n % 26) + letters
        n = n // 26 - 1
        if n < 0:
            return f"Brand {letters}"


@dataclass
class Catalogue:
    shop_ids: list[str]
    timezones: list[str]
    skus_per_shop: int
    # per global SKU
    shop_of: np.ndarray
    sku: np.ndarray  # str
    category: np.ndarray  # int index into CATEGORIES
    brand: np.ndarray  # str
    batch_id: np.ndarray  # str
    price: np.ndarray
    unit_cost: np.ndarray
    lead_time_days: np.ndarray
    supplier_id: np.ndarray  # str
    warehouse: np.ndarray  # int 0..WAREHOUSES_PER_SHOP-1
    popularity: np.ndarray  # probability of the SKU being picked for an order line, within its shop
    refund_rate: np.ndarray
    complaint_rate: np.ndarray
    popularity_cdf: np.ndarray  # shop index + cumulative popularity within the shop, for sampling
    customer_ids: list[pa.Array]  # hashed customer pool per shop

    @property
    def n(self) -> int:
        return len(self.sku)

    def sample_skus(self, rng: np.random.Generator, shop: np.ndarray) -> np.ndarray:
        """One SKU per element of ``shop``, by popularity within that shop."""
        u = shop + rng.random(len(shop))
        g = np.searchsorted(self.popularity_cdf, u, side="right")
        return np.minimum(g, (shop + 1) * self.skus_per_shop - 1)

    def warehouse_id(self, shop: int, w: int) -> str:
        return f"{self.shop_ids[shop]}-wh{w + 1}"

    def select(self, shop: int, category: str | None = None, brand: str | None = None, top: int | None = None) -> np.ndarray:
        """Global indices of a shop's SKUs matching a category and brand, most popular first."""
        mask = self.shop_of == shop
        if category:
            mask &= self.category == CATEGORY_CODES.index(category)
        if brand:
            mask &= self.brand == brand
        g = np.flatnonzero(mask)
        g = g[np.argsort(-self.popularity[g], kind="stable")]
        return g[:top] if top else g

    def products_table(self, updated_at_s: int) -> pa.Table:
        n = self.n
        return arrow_table(
            "products",
            {
                "shop_id": pa.array([self.shop_ids[s] for s in self.shop_of]),
                "sku": pa.array(self.sku),
                "name": pa.array([f"{b} {CATEGORY_CODES[c].replace('_', ' ')} #{s[-4:]}" for b, c, s in zip(self.brand, self.category, self.sku, strict=True)]),
                "brand": pa.array(self.brand),
                "category": pa.array([CATEGORY_CODES[c] for c in self.category]),
                "batch_id": pa.array(self.batch_id),
                "unit_cost": pa.array(np.round(self.unit_cost, 2)),
                "lead_time_days": pa.array(self.lead_time_days.astype(np.int16)),
                "supplier_id": pa.array(self.supplier_id),
                "updated_at": pa.array(np.full(n, updated_at_s * 1_000_000, dtype=np.int64), type=pa.timestamp("us", tz="UTC")),
            }
        )

    def warehouses_table(self) -> pa.Table:
        """Each shop's warehouses with the name and region the platform knows them by."""
        each = [(s, w) for s in range(len(self.shop_ids)) for w in range(WAREHOUSES_PER_SHOP)]
        sites = [WAREHOUSE_SITES[(s + w) % len(WAREHOUSE_SITES)] for s, w in each]
        return arrow_table(
            "warehouses",
            {
                "shop_id": [self.shop_ids[s] for s, _ in each],
                "warehouse_id": [self.warehouse_id(s, w) for s, w in each],
                "name": [name for name, _ in sites],
                "region": [region for _, region in sites],
            }
        )

    def shops_table(self, currency: str) -> pa.Table:
        return arrow_table(
            "shops",
            {
                "shop_id": self.shop_ids,
                "name": [SHOP_NAMES[i % len(SHOP_NAMES)] + ("" if i < len(SHOP_NAMES) else f" {i // len(SHOP_NAMES) + 1}") for i in range(len(self.shop_ids))],
                "timezone": self.timezones,
                "currency": [currency] * len(self.shop_ids),
            }
        )


def build_catalogue(rng: np.random.Generator, shops: int, skus: int, timezone: str, customers_per_shop: int) -> Catalogue:
    shares = np.array([c[1] for c in CATEGORIES])
    # Every category gets at least BRANDS_PER_CATEGORY SKUs so every brand exists in every shop.
    per_cat = np.maximum(np.floor(shares * skus).astype(int), BRANDS_PER_CATEGORY)
    per_cat[np.argmax(per_cat)] += skus - per_cat.sum()
    if skus < BRANDS_PER_CATEGORY * len(CATEGORIES) or per_cat.min() < BRANDS_PER_CATEGORY:
        raise ValueError(f"--skus must be at least {BRANDS_PER_CATEGORY * len(CATEGORIES)} (3 brands x 8 categories)")
    cat_one = np.repeat(np.arange(len(CATEGORIES)), per_cat)

    shop_of = np.repeat(np.arange(shops), skus)
    category = np.tile(cat_one, shops)
    n = shops * skus
    local = np.tile(np.arange(skus), shops)
    # Brands: round-robin inside each category, so each brand has SKUs of every popularity.
    rank_in_cat = np.concatenate([np.arange(k) for k in per_cat])
    brand_k = np.tile(rank_in_cat % BRANDS_PER_CATEGORY, shops)
    brand = np.array([brand_name(c, k) for c, k in zip(category, brand_k, strict=True)], dtype=object)
    batch_group = np.tile(rank_in_cat // (BRANDS_PER_CATEGORY * SKUS_PER_BATCH), shops)
    shop_ids = [f"shop-{i + 1:02d}" for i in range(shops)]
    batch_id = np.array(
        [f"{shop_ids[s][-2:]}-{CATEGORY_CODES[c][:3].upper()}-{brand[i][-1]}{k:03d}"
         for i, (s, c, k) in enumerate(zip(shop_of, category, batch_group, strict=True))],
        dtype=object,
    )
    lo = np.array([c[2][0] for c in CATEGORIES])[category]
    hi = np.array([c[2][1] for c in CATEGORIES])[category]
    price = np.round(np.exp(rng.uniform(np.log(lo), np.log(hi))), 0) - 0.1
    unit_cost = price * rng.uniform(0.4, 0.7, n)
    lt_lo = np.array([c[5][0] for c in CATEGORIES])[category]
    lt_hi = np.array([c[5][1] for c in CATEGORIES])[category]
    lead = rng.integers(lt_lo, lt_hi + 1)
    supplier_id = np.array([f"SUP-{CATEGORY_CODES[c][:3].upper()}-{b[-1]}" for c, b in zip(category, brand, strict=True)], dtype=object)
    warehouse = np.tile(np.arange(skus) % WAREHOUSES_PER_SHOP, shops)
    # Popularity: heavy-tailed (a few best sellers, a long tail), scaled by category appeal.
    weight = rng.lognormal(0.0, 1.2, n) * np.array([c[6] for c in CATEGORIES])[category]
    weight[category == 0] *= 1.5  # formula is a staple of the mother-and-baby shop
    popularity = np.empty(n)
    cdf = np.empty(n)
    for s in range(shops):
        sl = slice(s * skus, (s + 1) * skus)
        p = weight[sl] / weight[sl].sum()
        popularity[sl] = p
        cdf[sl] = s + np.cumsum(p)
        cdf[(s + 1) * skus - 1] = s + 1
    refund_rate = np.array([c[3] for c in CATEGORIES])[category]
    complaint_rate = np.array([c[4] for c in CATEGORIES])[category]
    sku = np.array([f"SKU-{CATEGORY_CODES[c][:3].upper()}-{i:06d}" for c, i in zip(category, local, strict=True)], dtype=object)
    customers = [
        pa.array([hashlib.blake2b(f"{sid}:{k}".encode(), digest_size=8).hexdigest() for k in range(customers_per_shop)])
        for sid in shop_ids
    ]
    return Catalogue(
        shop_ids=shop_ids,
        timezones=[timezone] * shops,
        skus_per_shop=skus,
        shop_of=shop_of,
        sku=sku,
        category=category,
        brand=brand,
        batch_id=batch_id,
        price=price,
        unit_cost=unit_cost,
        lead_time_days=lead,
        supplier_id=supplier_id,
        warehouse=warehouse,
        popularity=popularity,
        refund_rate=refund_rate,
        complaint_rate=complaint_rate,
        popularity_cdf=cdf,
        customer_ids=customers,
    )
