"""The double alert says both facts in one line, the spike first: the compound rule's breach carries
its referenced rule's breach (``engine.evidence``), on the simulated shop's formula incident."""

from __future__ import annotations

from datetime import datetime, timedelta

from threshold_operators.alerting.messages import alert_message
from threshold_operators.engine.compile import compile_rule
from threshold_operators.engine.evaluate import evaluate, warehouse_query
from threshold_operators.engine.evidence import with_evidence
from threshold_operators.rules.catalogue import load_catalogue

M5 = timedelta(minutes=5)


def _first_firing_cycle(catalogue, hook, start, skus):
    compiled = compile_rule(catalogue.get("compound.spike_low_stock"), catalogue.get)
    query = warehouse_query(hook)
    for k in range(8 * 12):
        t = start + k * M5
        ev = evaluate(compiled, query, t, t + M5, now=t + M5)
        breaches = ev.breaches(compiled.rule)
        if any(b["entity"]["sku"] in skus for b in breaches):
            return t, breaches
    raise AssertionError("the double alert never fired")


def test_the_double_alert_line_says_the_spike_then_the_stock(incident_shop_duckdb):
    hook, labels = incident_shop_duckdb
    catalogue = load_catalogue()
    inc = next(i for i in labels["incidents"] if i["id"] == "formula_spike_low_stock")
    skus = {inc["entity"], *inc.get("skus", [])}  # a brand's incident names its SKUs
    t, breaches = _first_firing_cycle(catalogue, hook, datetime.fromisoformat(inc["start"]).replace(minute=0), skus)
    loaded = catalogue.get("compound.spike_low_stock")
    told = with_evidence(hook, loaded, catalogue, breaches, t, t + M5, t + M5)
    target = next(b for b in told if b["entity"]["sku"] in skus)
    [evidence] = target["evidence"]
    assert evidence["rule_id"] in loaded.rule.references
    text = alert_message(loaded.rule, "fired", "red", told, (t.isoformat(), (t + M5).isoformat()), 3, ["王总"])
    sku = target["entity"]["sku"]
    line = next(x for x in text.text.split("\n") if sku in x)
    spike, _, stock = line.partition(" ＋ ")
    assert "订单 " in spike and "平时" in spike and "库存可售 " in stock and " 小时" in stock, line
    line_en = next(x for x in text.text_en.split("\n") if sku in x)
    assert "orders " in line_en.split(" ＋ ")[0] and "stock cover " in line_en.split(" ＋ ")[1], line_en
    hours = [float(x.split("库存可售 ")[1].split(" ")[0]) for x in text.text.split("\n") if "库存可售" in x]
    assert hours == sorted(hours)  # the least stock first: the worst past its threshold


def test_a_rule_without_references_is_left_as_it_is(incident_shop_duckdb):
    hook, _ = incident_shop_duckdb
    catalogue = load_catalogue()
    loaded = catalogue.get("inventory.stock_cover")
    breaches = [{"entity_key": "shop_id=shop-01/sku=X", "severity": "red"}]
    t = datetime.fromisoformat("2026-09-01T00:00:00+00:00")
    assert with_evidence(hook, loaded, catalogue, breaches, t, t + M5, t + M5) is breaches


# --- a spike's last hours, from the rule's rollup (DuckDB and PostgreSQL) ---------------------------
T0 = datetime.fromisoformat("2026-09-10T02:00:00+00:00")


def test_a_spike_carries_its_last_three_hours_counted_from_the_rollup(warehouse):
    from tests.engine.test_rolling import _items, _load, _spread
    from threshold_operators.engine.evidence import with_recent
    from threshold_operators.engine.rollups import maintain_for

    catalogue = load_catalogue()
    loaded = catalogue.get("sales.order_spike")
    _load(warehouse, _items(_spread(T0, [1] * 12 + [2] * 12 + [4] * 12), sku="A")
          + _items(_spread(T0, [1] * 36), sku="B", first=1000))
    end = T0 + timedelta(hours=3)
    maintain_for(warehouse, loaded, catalogue, T0, end, end)
    breaches = [{"entity": {"shop_id": "s1", "sku": s}, "entity_key": f"shop_id=s1/sku={s}", "metric": "orders",
                 "value": 4.0, "baseline": 12.0, "threshold": 3.0, "severity": "red"} for s in ("A", "C")]
    told = with_recent(warehouse, loaded, breaches, end)
    assert told[0]["recent"] == {"hours": 3, "counts": [12.0, 24.0, 48.0]}
    assert "recent" not in told[1]  # nothing sold: no line
    text = alert_message(loaded.rule, "fired", "red", told[:1], (T0.isoformat(), end.isoformat()), 2, ["李伟"])
    assert "；近 3 小时每小时 12 → 24 → 48 单" in text.text
    assert "last 3 hours by hour 12 → 24 → 48" in text.text_en
    stock = catalogue.get("inventory.stock_cover")  # not a rolling count: nothing read
    assert with_recent(warehouse, stock, breaches, end) is breaches
