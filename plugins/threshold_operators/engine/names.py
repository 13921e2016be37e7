"""Names, not keys: what a person calls the entities of a rule's breaches.

After a cycle the evaluate task looks the breaching entities up, once per rule, and the breaches
carry what it found to the messages as ``names`` (only the keys found; an entity nothing knows
keeps its key alone, and the key stays in the message, small, for search):

- a SKU, in ``products`` (title; brand · category):
  ``{"entity": "婴儿配方奶粉 1段 800g", "about": "Brand A · infant_formula"}``;
- a warehouse, in ``warehouses`` (the platform's name; the region it serves):
  ``{"entity": "上海仓", "about": "华东"}``;
- a production batch, by the products made in it (``products.batch_id``; a batch no product is
  sold from any more, by the SKUs its complaints name): ``{"entity": "<title> 等 4 款",
  "entity_en": "<title> and 3 more", "about": "批次 · Brand C · clothing", "about_en": "batch ·
  Brand C · clothing"}``;
- a sales channel or payment gateway, in ``GLOSSARY``: ``{"entity": "抖音", "entity_en": "Douyin"}``;
- and any entity of a known shop, in ``shops``: ``"shop": "Storefence 旗舰店"``.

``entity`` and ``about`` are the names as the shop writes them (the glossary's and the batch's
are Chinese); ``entity_en`` and ``about_en``, where present, are the English for an English
message. Bound parameters only, on the hook's read-only evaluation connection; each lookup on a
connection of its own, so one that fails (a warehouse not yet given the ``warehouses`` table) is
logged and leaves its entities their keys while the others still name theirs.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

CHUNK = 500  # keys per IN (...) list
BATCH_LOOKBACK = timedelta(days=30)  # a batch's complaints read for its SKUs, before the breach's bucket

# The well-known codes of sales channels (orders, traffic, ad_spend) and payment gateways
# (payments): code -> (Chinese, English). A code not listed keeps its key.
GLOSSARY: dict[str, dict[str, tuple[str, str]]] = {
    "channel": {
        "app": ("App", "app"),
        "web": ("网站", "website"),
        "h5": ("H5 商城", "mobile web"),
        "wechat": ("微信", "WeChat"),
        "miniprogram": ("微信小程序", "WeChat mini program"),
        "douyin": ("抖音", "Douyin"),
        "kuaishou": ("快手", "Kuaishou"),
        "xiaohongshu": ("小红书", "Xiaohongshu"),
        "taobao": ("淘宝", "Taobao"),
        "tmall": ("天猫", "Tmall"),
        "jd": ("京东", "JD.com"),
        "pinduoduo": ("拼多多", "Pinduoduo"),
        "offline": ("线下门店", "offline stores"),
    },
    "gateway": {
        "alipay": ("支付宝", "Alipay"),
        "wechatpay": ("微信支付", "WeChat Pay"),
        "unionpay": ("银联", "UnionPay"),
        "jdpay": ("京东支付", "JD Pay"),
        "douyinpay": ("抖音支付", "Douyin Pay"),
        "applepay": ("Apple Pay", "Apple Pay"),
        "paypal": ("PayPal", "PayPal"),
        "stripe": ("Stripe", "Stripe"),
        "cod": ("货到付款", "cash on delivery"),
    },
}

_PRODUCTS_OF_BATCHES = "SELECT shop_id, batch_id, sku, name, brand, category FROM products WHERE batch_id IN :ids"
_PRODUCTS_COMPLAINED = ("SELECT DISTINCT c.shop_id, c.batch_id, p.sku, p.name, p.brand, p.category FROM complaints c "
                        "JOIN products p ON p.shop_id = c.shop_id AND p.sku = c.sku "
                        "WHERE c.batch_id IN :ids AND c.created_at >= :since")


def _rows(hook, sql: str, keys: list[str], param: str, **params) -> list[dict]:
    from sqlalchemy import bindparam, text

    out = []
    stmt = text(sql).bindparams(bindparam(param, expanding=True))
    with hook.evaluation_connection() as con:
        for i in range(0, len(keys), CHUNK):
            out += [dict(r._mapping) for r in con.execute(stmt, {param: keys[i:i + CHUNK], **params})]
    return out


def _lookup(hook, log, what: str, sql: str, keys: list[str], **params) -> list[dict]:
    """The rows of one lookup, on a connection of its own; none, logged, when it fails (a message
    with keys beats none)."""
    if not keys:
        return []
    return _guarded(log, what, lambda: _rows(hook, sql, keys, "ids", **params))


def _guarded(log, what: str, read) -> list[dict]:
    """``read()``'s rows; none, logged, when it fails (a message with keys beats none)."""
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - logged, not fatal: the entities keep their keys
        log.warning("%s were not looked up (%s: %s); their entities keep their keys",
                    what, type(exc).__name__, str(exc)[:200])
        return []


# A SKU's product row by its key: the (shop, SKU) pairs as two array parameters, unnested side by
# side and joined to products on its primary key. One statement whatever the number of SKUs, and
# no scan of products per 500 keys (an IN list of SKUs alone, which no index serves: 40 ms for
# the 541 SKUs stock_cover fires for at 10 shops x 20,000 SKUs, 10 ms this way).
_PRODUCTS_BY_KEY = ("SELECT p.shop_id, p.sku, p.name, p.brand, p.category FROM products p JOIN ("
                    "SELECT unnest(CAST(:shops AS VARCHAR[])) AS shop_id, unnest(CAST(:skus AS VARCHAR[])) AS sku) k "
                    "ON k.shop_id = p.shop_id AND k.sku = p.sku")


def _product_rows(hook, log, rule: str, breaches: list[dict]) -> list[dict]:
    """The products of the breaches' SKUs (on a warehouse without arrays: by an IN list of SKUs)."""
    pairs = sorted({(str(e["shop_id"]), str(e["sku"])) for b in breaches
                    if (e := b.get("entity") or {}).get("sku") and e.get("shop_id")})
    if not pairs or hook.dialect_name not in ("duckdb", "postgresql"):
        return _lookup(hook, log, f"{rule}: the products", "SELECT shop_id, sku, name, brand, category FROM products "
                       "WHERE sku IN :ids", _keys(breaches, "sku"))
    from sqlalchemy import text

    def read() -> list[dict]:
        with hook.evaluation_connection() as con:
            return [dict(r._mapping) for r in con.execute(text(_PRODUCTS_BY_KEY), {
                "shops": [s for s, _ in pairs], "skus": [k for _, k in pairs]})]

    return _guarded(log, f"{rule}: the products", read)


def _keys(breaches: list[dict], column: str) -> list[str]:
    return sorted({str(b["entity"][column]) for b in breaches if (b.get("entity") or {}).get(column)})


def _since(breaches: list[dict]) -> datetime:
    """How far back a batch's complaints are read: ``BATCH_LOOKBACK`` before the earliest bucket."""
    buckets = [datetime.fromisoformat(b["bucket"]) for b in breaches if b.get("bucket")]
    return min(buckets) - BATCH_LOOKBACK if buckets else datetime(1970, 1, 1, tzinfo=UTC)


def _grouped(rows: list[dict]) -> dict[tuple, list[dict]]:
    """A batch's product rows by (shop_id, batch_id)."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault((r["shop_id"], r["batch_id"]), []).append(r)
    return out


def batch_names(products: list[dict]) -> dict:
    """A batch's names from the products made in it (``sku``, ``name``, ``brand``, ``category``):
    the first title by SKU and how many more, then 批次/batch · brand · category. Pure."""
    rows = sorted({str(r["sku"]): r for r in products if r.get("name")}.items())
    if not rows:
        return {}
    title, more = rows[0][1]["name"], len(rows) - 1
    about = ["/".join(dict.fromkeys(str(r[k]) for _, r in rows if r.get(k))) for k in ("brand", "category")]
    about = [x for x in about if x]
    return {"entity": title + (f" 等 {len(rows)} 款" if more else ""),
            "entity_en": title + (f" and {more} more" if more else ""),
            "about": " · ".join(["批次", *about]), "about_en": " · ".join(["batch", *about])}


def glossary_names(kind: str, code: str) -> dict:
    """A channel's or gateway's names from ``GLOSSARY``; {} for a code it does not list. Pure."""
    found = GLOSSARY.get(kind, {}).get(str(code).strip().lower())
    return {"entity": found[0], "entity_en": found[1]} if found else {}


def entity_names(hook, breaches: list[dict], log: logging.Logger | None = None) -> dict[str, dict]:
    """entity key -> its names (see the module's docstring; only those found)."""
    log = log or logging.getLogger(__name__)
    rule = next((str(b["rule_id"]) for b in breaches if b.get("rule_id")), "names")

    def lookup(what: str, sql: str, column: str, of: list[dict] = breaches, **params) -> list[dict]:
        return _lookup(hook, log, f"{rule}: the {what}", sql, _keys(of, column), **params)

    shops = {r["shop_id"]: r["name"] for r in lookup(
        "shops' names", "SELECT shop_id, name FROM shops WHERE shop_id IN :ids", "shop_id")}
    products = {(r["shop_id"], r["sku"]): r for r in _product_rows(hook, log, rule, breaches)}
    warehouses = {(r["shop_id"], r["warehouse_id"]): r for r in lookup(
        "warehouses", "SELECT shop_id, warehouse_id, name, region FROM warehouses WHERE warehouse_id IN :ids",
        "warehouse_id")}
    batches = _grouped(lookup("batches' products", _PRODUCTS_OF_BATCHES, "batch_id"))
    unsold = [b for b in breaches if (b.get("entity") or {}).get("batch_id")
              and (b["entity"].get("shop_id"), b["entity"]["batch_id"]) not in batches]
    if unsold:  # no product is made of the batch now: the SKUs its recent complaints name
        complained = _grouped(lookup("batches' complaints", _PRODUCTS_COMPLAINED, "batch_id", unsold, since=_since(unsold)))
        batches |= {k: v for k, v in complained.items() if k not in batches}
    out = {}
    for b in breaches:
        names = named(b.get("entity") or {}, shops, products, warehouses, batches)
        if names:
            out[b["entity_key"]] = names
    return out


def named(entity: dict, shops: dict, products: dict, warehouses: dict, batches: dict) -> dict:
    """An entity's names from what the lookups found (keyed as in ``entity_names``). Pure."""
    shop = entity.get("shop_id")
    names = {"shop": shops[shop]} if shop in shops else {}
    if "sku" in entity:
        product = products.get((shop, entity["sku"]))
        if product is not None and product["name"]:
            names["entity"] = product["name"]
            names["about"] = " · ".join(str(x) for x in (product["brand"], product["category"]) if x)
    elif "warehouse_id" in entity:
        warehouse = warehouses.get((shop, entity["warehouse_id"]))
        if warehouse is not None and warehouse["name"]:
            names["entity"] = warehouse["name"]
            if warehouse["region"]:
                names["about"] = warehouse["region"]
    elif "batch_id" in entity:
        names |= batch_names(batches.get((shop, entity["batch_id"]), []))
    elif "channel" in entity:
        names |= glossary_names("channel", entity["channel"])
    elif "gateway" in entity:
        names |= glossary_names("gateway", entity["gateway"])
    return names


def with_names(hook, breaches: list[dict], log: logging.Logger | None = None) -> list[dict]:
    """The breaches, each with its ``names`` when something knows it."""
    if not breaches:
        return breaches
    found = entity_names(hook, breaches, log)
    return [{**b, "names": found[b["entity_key"]]} if b["entity_key"] in found else b for b in breaches]
