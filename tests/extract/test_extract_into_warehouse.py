"""Extraction end to end on DuckDB and PostgreSQL: the real shop API, the real gate, the real upsert."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import requests
import sqlalchemy as sa

from tests.extract.conftest import NOW
from threshold_operators.extract.dag_factory import _load_order
from threshold_operators.extract.fetch import fetch_http_table
from threshold_operators.extract.load import load_staged
from threshold_operators.shop_api.server import ShopApiServer


def extract(source, api_url, warehouse, run_id, now=NOW, interval=None, tables=None):
    """Run a source's tables the way its DAG does: fetch, then load, references first."""
    order = _load_order(source)
    done, results = set(), {}
    pending = [t for t in source.tables if tables is None or t.table in tables]
    while pending:
        ts = next(t for t in pending if all(d in done or d not in {p.table for p in pending} for d in order[t.table]))
        fetch_http_table(source, ts, session=requests.Session(), base_url=api_url, warehouse=warehouse,
                         run_id=run_id, interval=interval, sleep=lambda s: None)
        results[ts.table] = load_staged(source, ts, warehouse=warehouse, run_id=run_id, now=now)
        done.add(ts.table)
        pending.remove(ts)
    return results


def counts(hook, tables):
    with hook.engine.connect() as con:
        out = {t: con.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables}
    hook.engine.dispose()
    return out


def source_counts(path, tables):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        con.close()


def test_full_load_then_a_rerun_loads_each_row_once(warehouse, sources, api, shop_file):
    shop = sources["shop_api"]
    tables = [t.table for t in shop.tables]
    first = extract(shop, api.url, warehouse, "run-1")
    expected = source_counts(shop_file, tables)
    assert counts(warehouse, tables) == expected
    assert all(r.quarantined == 0 and r.loaded == expected[t] for t, r in first.items())
    assert all(r.advanced for t, r in first.items() if t not in ("shops", "warehouses"))  # read whole

    second = extract(shop, api.url, warehouse, "run-2")
    assert counts(warehouse, tables) == expected
    orders = second["orders"]
    assert 0 < orders.fetched < expected["orders"] / 10  # only the overlap is read again
    assert not orders.advanced  # nothing new: the alert DAGs are not triggered
    with warehouse.engine.connect() as con:
        runs = con.execute(sa.text("SELECT run_id, rows_fetched, updated_since FROM extract_runs WHERE table_name = 'orders' ORDER BY run_id")).all()
    warehouse.engine.dispose()
    assert [r.run_id for r in runs] == ["run-1", "run-2"]
    assert runs[0].updated_since is None and runs[1].updated_since is not None


def test_a_later_update_replaces_the_old_version(warehouse, sources, shop_copy):
    shop = sources["shop_api"]
    with ShopApiServer(shop_copy) as api:
        extract(shop, api.url, warehouse, "run-1", tables={"orders"})
    # days later the platform reports refunds on three paid orders
    con = duckdb.connect(str(shop_copy))
    changed = [r[0] for r in con.execute(
        "UPDATE orders SET status = 'refunded', updated_at = TIMESTAMPTZ '2026-09-29 23:59:00+00' "
        "WHERE order_id IN (SELECT order_id FROM orders WHERE status = 'completed' ORDER BY order_id LIMIT 3) "
        "RETURNING order_id").fetchall()]
    con.close()
    with ShopApiServer(shop_copy) as api:
        result = extract(shop, api.url, warehouse, "run-2", tables={"orders"})["orders"]
    assert result.advanced
    with warehouse.engine.connect() as con:
        statuses = dict(con.execute(sa.text("SELECT order_id, status FROM orders WHERE order_id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True)), {"ids": changed}).all())
        total = con.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar_one()
    warehouse.engine.dispose()
    assert statuses == dict.fromkeys(changed, "refunded")
    assert total == source_counts(shop_copy, ["orders"])["orders"]


def test_a_backfill_reads_its_interval_and_duplicates_nothing(warehouse, sources, api, shop_file):
    shop = sources["shop_api"]
    extract(shop, api.url, warehouse, "run-1", tables={"orders", "order_items"})
    before = counts(warehouse, ["orders", "order_items"])
    old = (NOW - timedelta(days=10), NOW - timedelta(days=9))
    result = extract(shop, api.url, warehouse, "backfill", interval=old, tables={"orders", "order_items"})
    assert counts(warehouse, ["orders", "order_items"]) == before
    con = duckdb.connect(str(shop_file), read_only=True)
    in_window = con.execute("SELECT COUNT(*) FROM orders WHERE updated_at >= ? AND updated_at < ?",
                            [old[0] - timedelta(minutes=15), old[1]]).fetchone()[0]
    con.close()
    assert result["orders"].fetched == in_window > 0
    assert not result["orders"].advanced


def test_bad_rows_are_quarantined_with_reasons_and_the_rest_loads(warehouse, sources, shop_copy):
    con = duckdb.connect(str(shop_copy))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("DROP TABLE IF EXISTS _r; CREATE TEMP TABLE _r AS SELECT * FROM reviews LIMIT 3")
    con.execute("UPDATE _r SET review_id = review_id || '-x', rating = 7 WHERE review_id = (SELECT MIN(review_id) FROM _r)")
    con.execute("UPDATE _r SET review_id = review_id || '-y', created_at = TIMESTAMPTZ '2099-01-01 00:00:00+00' WHERE review_id = (SELECT MAX(review_id) FROM _r)")
    con.execute("INSERT INTO reviews SELECT * FROM _r WHERE review_id LIKE '%-x' OR review_id LIKE '%-y'")
    con.execute("CREATE TEMP TABLE _s AS SELECT * FROM inventory_snapshots LIMIT 1")
    con.execute("UPDATE _s SET on_hand = -5, snapshot_at = snapshot_at + INTERVAL 1 SECOND")
    con.execute("INSERT INTO inventory_snapshots SELECT * FROM _s")
    con.close()
    with ShopApiServer(shop_copy) as api:
        reviews = extract(sources["reviews_api"], api.url, warehouse, "run-1")["reviews"]
        stock = extract(sources["shop_api"], api.url, warehouse, "run-1", tables={"inventory_snapshots"})["inventory_snapshots"]
    expected = source_counts(shop_copy, ["reviews", "inventory_snapshots"])
    assert (reviews.quarantined, stock.quarantined) == (2, 1)
    assert reviews.loaded == expected["reviews"] - 2 and stock.loaded == expected["inventory_snapshots"] - 1
    with warehouse.engine.connect() as con:
        q = con.execute(sa.text("SELECT table_name, record_key, failed_checks, raw_record FROM quarantine ORDER BY failed_checks")).all()
        events = con.execute(sa.text("SELECT table_name, kind FROM data_quality_events ORDER BY table_name")).all()
    warehouse.engine.dispose()
    reasons = {r.failed_checks for r in q}
    assert reasons == {"between(rating, 1.0, 5.0)", "not_in_future(created_at)", "between(on_hand, 0.0, None)"}
    assert all(r.record_key and '"' in r.raw_record for r in q)
    assert [tuple(e) for e in events] == [("inventory_snapshots", "quality"), ("reviews", "quality")]


def test_a_null_key_is_quarantined_not_loaded(warehouse, sources, shop_copy):
    con = duckdb.connect(str(shop_copy))
    # the platform sends what it sends: a copy of the table without its key constraint
    con.execute("CREATE TABLE ad_spend_raw AS SELECT * FROM ad_spend; DROP TABLE ad_spend; ALTER TABLE ad_spend_raw RENAME TO ad_spend")
    con.execute("UPDATE ad_spend SET campaign_id = NULL WHERE hour = (SELECT MAX(hour) FROM ad_spend) AND channel = 'web'")
    con.close()
    with ShopApiServer(shop_copy) as api:
        result = extract(sources["ads_api"], api.url, warehouse, "run-1", tables={"ad_spend"})["ad_spend"]
    assert result.quarantined == 2  # two web campaigns in that hour
    with warehouse.engine.connect() as con:
        assert con.execute(sa.text("SELECT COUNT(*) FROM ad_spend WHERE campaign_id IS NULL")).scalar_one() == 0
        checks = con.execute(sa.text("SELECT DISTINCT failed_checks FROM quarantine")).scalars().all()
    warehouse.engine.dispose()
    assert checks == ["not_null(campaign_id); unique(shop_id, channel, campaign_id, hour)"]


def test_a_source_that_stops_delivering_is_a_freshness_failure(warehouse, sources, api):
    reviews = sources["reviews_api"]
    fresh = extract(reviews, api.url, warehouse, "run-1")["reviews"]
    assert fresh.fresh
    later = NOW + reviews.max_lag + timedelta(minutes=1)  # nothing new arrives for longer than max_lag
    stale = extract(reviews, api.url, warehouse, "run-2", now=later)["reviews"]
    assert not stale.fresh and stale.quality_ok
    with warehouse.engine.connect() as con:
        events = con.execute(sa.text("SELECT table_name, kind, detail FROM data_quality_events")).all()
    warehouse.engine.dispose()
    assert [(e.table_name, e.kind) for e in events] == [("reviews", "freshness")]
    assert "max_lag is 6:00:00" in events[0].detail


def test_great_expectations_results_are_kept_for_the_run(tmp_path, monkeypatch, sources, api):
    import json

    from threshold_operators.warehouse.hook import WarehouseHook

    extract(sources["reviews_api"], api.url, WarehouseHook(url=f"duckdb:///{tmp_path / 'w.duckdb'}"), "run-7")
    kept = sorted((tmp_path / "validations" / "run-7" / "reviews_api").glob("*.json"))
    assert [p.name for p in kept] == ["reviews-part0001.json"]
    result = json.loads(kept[0].read_text(encoding="utf-8"))
    assert result["success"] is True and len(result["expectations"]) >= 10


def test_throttled_and_failing_api_still_delivers_every_row_once(warehouse, sources, shop_file):
    from threshold_operators.shop_api.faults import FaultPolicy

    shop = sources["shop_api"]
    with ShopApiServer(shop_file, faults=FaultPolicy(rate_limit=10, error_rate=0.2, seed=8)) as api:
        fetch = fetch_http_table(shop, next(t for t in shop.tables if t.table == "orders"), session=requests.Session(),
                                 base_url=api.url, warehouse=warehouse, run_id="run-1")  # real sleeps: Retry-After
        loaded = load_staged(shop, next(t for t in shop.tables if t.table == "orders"), warehouse=warehouse, run_id="run-1", now=NOW)
    assert fetch.throttled + fetch.server_errors > 0
    expected = source_counts(shop_file, ["orders"])["orders"]
    assert loaded.loaded == expected == counts(warehouse, ["orders"])["orders"]
