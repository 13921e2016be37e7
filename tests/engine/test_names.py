"""Names, not keys: the evaluate task looks the breaching entities up (``engine.names``: the
warehouse's shops, products, warehouses and the batches' products; the glossary of channels and
gateways), on DuckDB and PostgreSQL, and the message shows the name with its key kept small."""

from __future__ import annotations

import logging
from datetime import datetime

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


def _entity(shop, column, code, bucket="2026-09-29T12:00:00+00:00"):
    entity = {"shop_id": shop, column: code}
    return {"rule_id": "test.rule", "entity_key": f"shop_id={shop}/{column}={code}", "entity": entity,
            "bucket": bucket, "severity": "red"}


def _product(con, sku, name, batch, brand="Brand A", category="infant_formula"):
    con.execute(sa.text("INSERT INTO products (shop_id, sku, name, brand, category, batch_id, unit_cost, lead_time_days, "
                        "supplier_id, updated_at) VALUES ('shop-01', :sku, :name, :brand, :category, :batch, 5, 7, "
                        "'SUP-1', TIMESTAMP '2026-01-01 00:00:00')"),
                {"sku": sku, "name": name, "brand": brand, "category": category, "batch": batch})


def _complaint(con, cid, sku, batch, at):
    con.execute(sa.text("INSERT INTO complaints VALUES (:cid, 'shop-01', 'o1', :sku, :batch, 'quality', :at)"),
                {"cid": cid, "sku": sku, "batch": batch, "at": datetime.fromisoformat(at)})


def test_warehouses_channels_gateways_and_batches_are_named(warehouse):
    from threshold_operators.warehouse.schema import create_schema

    hook = warehouse
    create_schema(hook.engine)
    with hook.engine.begin() as con:
        con.execute(sa.text("INSERT INTO shops VALUES ('shop-01', 'Storefence 旗舰店', 'Asia/Shanghai', 'CNY')"))
        con.execute(sa.text("INSERT INTO warehouses VALUES ('shop-01', 'WH-SH', '上海仓', '华东'), "
                            "('shop-01', 'WH-GZ', '广州仓', NULL)"))
        _product(con, "SKU-INF-000002", "婴儿配方奶粉 2段 800g", "B-7")
        _product(con, "SKU-INF-000001", "婴儿配方奶粉 1段 800g", "B-7")
        _product(con, "SKU-CLO-000001", "女士针织开衫 M", "B-9", "Brand C", "clothing")  # made in B-9 now
        _complaint(con, "c1", "SKU-CLO-000001", "B-8", "2026-09-29T10:00:00+00:00")  # an earlier batch of it
        _complaint(con, "c2", "SKU-INF-000001", "B-8", "2026-07-01T10:00:00+00:00")  # before the look-back
    breaches = [_entity("shop-01", "warehouse_id", "WH-SH"), _entity("shop-01", "warehouse_id", "WH-GZ"),
                _entity("shop-01", "channel", "douyin"), _entity("shop-01", "gateway", "alipay"),
                _entity("shop-01", "batch_id", "B-7"), _entity("shop-01", "batch_id", "B-8"),
                _entity("shop-01", "gateway", "bitcoin"), _entity("shop-01", "batch_id", "B-0"),
                _entity("shop-02", "warehouse_id", "WH-SH")]
    named = {b["entity_key"]: b.get("names") for b in with_names(hook, breaches)}
    shop = {"shop": "Storefence 旗舰店"}
    assert named == {
        "shop_id=shop-01/warehouse_id=WH-SH": {"entity": "上海仓", "about": "华东"} | shop,
        "shop_id=shop-01/warehouse_id=WH-GZ": {"entity": "广州仓"} | shop,
        "shop_id=shop-01/channel=douyin": {"entity": "抖音", "entity_en": "Douyin"} | shop,
        "shop_id=shop-01/gateway=alipay": {"entity": "支付宝", "entity_en": "Alipay"} | shop,
        # the batch's products, first by SKU; the same brand and category once
        "shop_id=shop-01/batch_id=B-7": {"entity": "婴儿配方奶粉 1段 800g 等 2 款", "entity_en": "婴儿配方奶粉 1段 800g and 1 more",
                                         "about": "批次 · Brand A · infant_formula",
                                         "about_en": "batch · Brand A · infant_formula"} | shop,
        # no product is made in B-8 now: the SKU its complaint of the last 30 days names
        "shop_id=shop-01/batch_id=B-8": {"entity": "女士针织开衫 M", "entity_en": "女士针织开衫 M",
                                         "about": "批次 · Brand C · clothing", "about_en": "batch · Brand C · clothing"} | shop,
        "shop_id=shop-01/gateway=bitcoin": shop,  # not in the glossary: the shop's name only
        "shop_id=shop-01/batch_id=B-0": shop,
        "shop_id=shop-02/warehouse_id=WH-SH": None,  # another shop's WH-SH: unknown
    }
    by_key = {b["entity_key"]: b for b in with_names(hook, breaches)}
    assert who(by_key["shop_id=shop-01/warehouse_id=WH-SH"], "zh") == "上海仓（华东）shop-01/WH-SH"
    assert who(by_key["shop_id=shop-01/channel=douyin"], "zh") == "抖音 shop-01/douyin"
    assert who(by_key["shop_id=shop-01/gateway=alipay"], "zh") == "支付宝 shop-01/alipay"
    assert who(by_key["shop_id=shop-01/batch_id=B-8"], "zh") == "女士针织开衫 M（批次 · Brand C · clothing）shop-01/B-8"


def test_a_failed_lookup_is_logged_and_leaves_the_others(warehouse, caplog):
    from threshold_operators.warehouse.schema import create_schema

    hook = warehouse
    create_schema(hook.engine)
    with hook.engine.begin() as con:  # a warehouse from before the warehouses table
        con.execute(sa.text("INSERT INTO shops VALUES ('shop-01', 'Storefence 旗舰店', 'Asia/Shanghai', 'CNY')"))
        con.execute(sa.text("DROP TABLE warehouses"))
    breaches = [_entity("shop-01", "warehouse_id", "WH-SH"), _entity("shop-01", "channel", "wechat")]
    with caplog.at_level(logging.WARNING):
        named = {b["entity_key"]: b.get("names") for b in with_names(hook, breaches)}
    assert named == {"shop_id=shop-01/warehouse_id=WH-SH": {"shop": "Storefence 旗舰店"},
                     "shop_id=shop-01/channel=wechat": {"entity": "微信", "entity_en": "WeChat", "shop": "Storefence 旗舰店"}}
    assert "test.rule: the warehouses were not looked up" in caplog.text


def test_the_glossary_knows_every_code_the_simulator_uses():
    from threshold_operators.engine.names import GLOSSARY, glossary_names
    from threshold_operators.simulator.incidents import CHANNELS, GATEWAYS

    assert set(CHANNELS) <= set(GLOSSARY["channel"]) and set(GATEWAYS) <= set(GLOSSARY["gateway"])
    assert glossary_names("gateway", "WechatPay") == {"entity": "微信支付", "entity_en": "WeChat Pay"}
    assert glossary_names("channel", "alipay") == {}  # a gateway's code is no channel


def test_batch_names_are_pure():
    from threshold_operators.engine.names import batch_names

    made = [{"sku": "S2", "name": "B", "brand": "Brand D", "category": "diapers"},
            {"sku": "S1", "name": "A", "brand": "Brand E", "category": "diapers"},
            {"sku": "S1", "name": "A", "brand": "Brand E", "category": "diapers"}]  # one SKU twice
    assert batch_names(made) == {"entity": "A 等 2 款", "entity_en": "A and 1 more",
                                 "about": "批次 · Brand E/Brand D · diapers", "about_en": "batch · Brand E/Brand D · diapers"}
    assert batch_names([]) == {}


def test_the_simulated_shop_names_its_incidents_entities(incident_shop):
    """The simulator writes the warehouses (as a platform's API serves them) and the batches'
    products: every incident's warehouse, batch, channel and gateway reads by a name."""
    hook, labels = incident_shop
    column = {"warehouse": "warehouse_id", "batch": "batch_id", "channel": "channel", "gateway": "gateway"}
    hit = [inc for inc in labels["incidents"] if inc["entity_type"] in column]
    assert {inc["entity_type"] for inc in hit} == set(column)
    breaches = [_entity(inc["shop_id"], column[inc["entity_type"]], inc["entity"], bucket=str(inc["start"]))
                for inc in hit]
    for b in with_names(hook, breaches):
        assert b["names"]["entity"] and b["names"]["shop"], b
    warehouse = next(b for b in with_names(hook, breaches) if "warehouse_id" in b["entity"])
    assert warehouse["names"]["entity"].endswith("仓") and warehouse["names"]["about"]


def test_products_are_found_by_shop_and_sku_in_one_lookup(warehouse, monkeypatch):
    """Two shops selling the same SKU code under different titles each get their own; 1,200
    SKUs are found in one statement (not a scan of products per 500 SKUs)."""
    from threshold_operators.warehouse.schema import create_schema

    hook = warehouse
    create_schema(hook.engine)
    with hook.engine.begin() as con:
        for shop in ("shop-01", "shop-02"):
            con.execute(sa.text("INSERT INTO shops VALUES (:s, :s, 'Asia/Shanghai', 'CNY')"), {"s": shop})
        con.execute(sa.text("INSERT INTO products (shop_id, sku, name, brand, category, batch_id, unit_cost, "
                            "lead_time_days, supplier_id, updated_at) VALUES (:shop, :sku, :name, 'B', 'c', 'b1', 5, "
                            "7, 'SUP-1', TIMESTAMP '2026-01-01 00:00:00')"),
                    [{"shop": shop, "sku": f"SKU-{i:04d}", "name": f"{shop} title {i}"}
                     for shop in ("shop-01", "shop-02") for i in range(600)])
    statements = []
    monkeypatch.setattr(hook, "evaluation_connection", _counting(hook.evaluation_connection, statements))
    breaches = [_breach(shop, f"SKU-{i:04d}") for shop in ("shop-01", "shop-02") for i in range(600)]
    named = {b["entity_key"]: b["names"]["entity"] for b in with_names(hook, breaches)}
    assert named["shop_id=shop-01/sku=SKU-0007"] == "shop-01 title 7"
    assert named["shop_id=shop-02/sku=SKU-0007"] == "shop-02 title 7"
    assert len(named) == 1200
    assert sum("FROM products" in s for s in statements) == 1


def _counting(connect, statements: list):
    """``evaluation_connection`` noting the statements each connection runs."""
    from contextlib import contextmanager

    @contextmanager
    def counted():
        with connect() as con:
            real = con.execute

            def execute(stmt, *args, **kwargs):
                statements.append(str(stmt))
                return real(stmt, *args, **kwargs)

            con.execute = execute
            yield con

    return counted
