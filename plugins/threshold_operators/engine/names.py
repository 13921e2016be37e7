"""Names, not keys: what a person calls the entities of a rule's breaches.

After a cycle the evaluate task looks the breaching entities up in the warehouse's dimensions,
once per rule (``products``: the SKU's title, brand and category; ``shops``: the shop's name),
and the breaches carry them to the messages as ``names``:
``{"entity": "婴儿配方奶粉 1段 800g", "about": "Brand A · infant_formula", "shop": "Storefence 旗舰店"}``.
The entity key stays in the message, small, for search. An entity the dimensions do not know keeps
its key alone. Bound parameters only, on the hook's read-only evaluation connection.
"""

from __future__ import annotations

CHUNK = 500  # keys per IN (...) list


def _rows(hook, sql: str, keys: list[str], param: str) -> list[dict]:
    from sqlalchemy import bindparam, text

    out = []
    stmt = text(sql).bindparams(bindparam(param, expanding=True))
    with hook.evaluation_connection() as con:
        for i in range(0, len(keys), CHUNK):
            out += [dict(r._mapping) for r in con.execute(stmt, {param: keys[i:i + CHUNK]})]
    return out


def entity_names(hook, breaches: list[dict]) -> dict[str, dict]:
    """entity key -> its names (``entity``, ``about``, ``shop``; only those found)."""
    shops = sorted({str(b["entity"]["shop_id"]) for b in breaches if (b.get("entity") or {}).get("shop_id")})
    skus = sorted({str(b["entity"]["sku"]) for b in breaches if (b.get("entity") or {}).get("sku")})
    shop_names = {r["shop_id"]: r["name"] for r in _rows(
        hook, "SELECT shop_id, name FROM shops WHERE shop_id IN :ids", shops, "ids")} if shops else {}
    products = {(r["shop_id"], r["sku"]): r for r in _rows(
        hook, "SELECT shop_id, sku, name, brand, category FROM products WHERE sku IN :ids", skus, "ids")} if skus else {}
    out = {}
    for b in breaches:
        entity = b.get("entity") or {}
        names = {}
        if entity.get("shop_id") in shop_names:
            names["shop"] = shop_names[entity["shop_id"]]
        product = products.get((entity.get("shop_id"), entity.get("sku")))
        if product is not None and product["name"]:
            names["entity"] = product["name"]
            names["about"] = " · ".join(str(x) for x in (product["brand"], product["category"]) if x)
        if names:
            out[b["entity_key"]] = names
    return out


def with_names(hook, breaches: list[dict]) -> list[dict]:
    """The breaches, each with its ``names`` when the dimensions know it."""
    if not breaches:
        return breaches
    found = entity_names(hook, breaches)
    return [{**b, "names": found[b["entity_key"]]} if b["entity_key"] in found else b for b in breaches]
