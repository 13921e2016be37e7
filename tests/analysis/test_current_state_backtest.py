"""A current-state rule's backtest episodes end when the entity is no longer returned (issue 11,
part 3), `evaluate --labels` scores them so, and `storefence evaluate` shows the cycle that
resolves: inventory.stock_cover (every 5 minutes) on the hand-made shop of tests/engine/stock_shop.py."""

from __future__ import annotations

from datetime import timedelta

from tests.engine.stock_shop import LOW, T0, H, load_stock_shop, replenish
from threshold_operators.analysis.backtest import backtest
from threshold_operators.analysis.scoring import score
from threshold_operators.engine.evaluate import warehouse_query
from threshold_operators.rules.catalogue import load_catalogue

M = timedelta(minutes=1)


def test_the_episode_of_a_replenished_sku_ends_and_scores_as_one_alert(warehouse):
    load_stock_shop(warehouse)
    replenish(warehouse, T0 + 2 * H + timedelta(minutes=30), 600)
    replenish(warehouse, T0 + 5 * H + timedelta(minutes=30), 40)  # sold out again: a second episode
    catalogue = load_catalogue()
    bt = backtest(catalogue.get("inventory.stock_cover"), catalogue.get, warehouse_query(warehouse), T0, T0 + 8 * H)
    # every 5 minutes: the bucket 19:25-19:30 sees the snapshot of 19:30 (the state at its end)
    assert [(e.entity_key, e.severity, e.start, e.end) for e in bt.episodes] == [
        (LOW, "yellow", T0, T0 + 2 * H + 25 * M),  # ends at the first cycle that no longer returns it
        (LOW, "yellow", T0 + 5 * H + 25 * M, None),  # 40 units, 12 a day: 3.3 days, still firing at the end
    ]
    assert bt.summary["alerts"] == 2 and bt.summary["hours_in_alert"] == 5.0  # 2 h 25 min and 2 h 35 min
    labels = {"incidents": [{"id": "low", "start": T0.isoformat(), "end": (T0 + H).isoformat(), "entity_type": "sku",
                             "entity": "SKU-LOW", "shop_id": "shop-01", "expect": ["inventory.stock_cover"]}]}
    s = score(catalogue.get("inventory.stock_cover").rule, bt.episodes, labels, T0, T0 + 8 * H)
    assert s.caught == ["low"] and s.false_alerts == 1  # the second episode touches no labelled incident


def test_storefence_evaluate_shows_the_sku_resolve_cycle_by_cycle(tmp_path):
    from tests.analysis.test_cli import storefence
    from threshold_operators.warehouse.hook import WarehouseHook

    hook = WarehouseHook(url=f"duckdb:///{tmp_path / 'w.duckdb'}")
    load_stock_shop(hook)
    replenish(hook, T0 + 2 * H + timedelta(minutes=30), 600)
    hook.engine.dispose()
    # the 5-minute cycles of one hour: the cycles before it are known (its lead-in)
    out = storefence("evaluate", "inventory.stock_cover", "--start", (T0 + 2 * H).isoformat(),
                     "--end", (T0 + 3 * H).isoformat(), "--warehouse", f"duckdb:///{tmp_path / 'w.duckdb'}")
    assert out.returncode == 0, out.stderr
    assert f"{(T0 + 2 * H + 25 * M).isoformat()} resolved" in out.stdout and "sku=SKU-LOW" in out.stdout
    out = storefence("evaluate", "inventory.stock_cover", "--start", T0.isoformat(), "--end", (T0 + 4 * H).isoformat(),
                     "--warehouse", f"duckdb:///{tmp_path / 'w.duckdb'}")
    lines = [line.split()[:3] for line in out.stdout.splitlines() if "SKU-LOW" in line]
    assert lines == [[(T0 + k * 5 * M).isoformat(), "firing", "yellow"] for k in range(29)] + [
        [(T0 + 2 * H + 25 * M).isoformat(), "resolved", "shop_id=shop-01/sku=SKU-LOW"]]
