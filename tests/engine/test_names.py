"""Names, not keys: the evaluate task looks the breaching entities up in the warehouse's shops and
products (``engine.names``), on DuckDB and PostgreSQL, and the message shows the product's title,
brand and category with its key kept small."""

from __future__ import annotations

import sqlalchemy as sa

from threshold_operators.alerting.messages import who
from threshold_operators.engine.names import with_names


def _breach(shop, sku=None):
    entity = {"shop_id": shop, **({"sku": sku} if sku else {})}
    key = "/".join(f"{k}={v}" for k, v in entity.items())
    return {"entity_key": key, "entity": entity, "severity": "red"}


def test_breaches_carry_the_names_the_dimensions_know(warehouse):
    from threshold_operators.warehouse.schema import create_schema

    hook = warehouse
    create_schema(hook.engine)
    with hook.engine.begin() as con:
        con.execute(sa.text("INSERT INTO shops VALUES ('shop-01', 'Storefence 旗舰店', 'Asia/Shanghai', 'CNY')"))
        con.execute(sa.text("INSERT INTO products (shop_id, sku, name, brand, category, batch_id, unit_cost, "
                            "lead_time_days, supplier_id, updated_at) VALUES ('shop-01', 'SKU-BEA-000419', "
                            "'婴儿配方奶粉 1段 800g', 'Brand A', 'infant_formula', 'b1', 5, 7, 'SUP-1', "
                            "TIMESTAMP '2026-01-01 00:00:00')"))
    sku, shop, unknown = (_breach("shop-01", "SKU-BEA-000419"), _breach("shop-01"), _breach("shop-09", "SKU-X"))
    named = {b["entity_key"]: b for b in with_names(hook, [sku, shop, unknown])}
    assert named[sku["entity_key"]]["names"] == {"entity": "婴儿配方奶粉 1段 800g", "about": "Brand A · infant_formula",
                                                 "shop": "Storefence 旗舰店"}
    assert named[shop["entity_key"]]["names"] == {"shop": "Storefence 旗舰店"}
    assert "names" not in named[unknown["entity_key"]]  # unknown to the dimensions: its key alone
    assert who(named[sku["entity_key"]], "zh") == "婴儿配方奶粉 1段 800g（Brand A · infant_formula）shop-01/SKU-BEA-000419"
    assert who(named[sku["entity_key"]], "en") == "婴儿配方奶粉 1段 800g (Brand A · infant_formula) shop-01/SKU-BEA-000419"
    assert who(named[shop["entity_key"]], "zh") == "Storefence 旗舰店 shop-01"
    assert who(named[unknown["entity_key"]], "zh") == "shop_id=shop-09/sku=SKU-X"
