"""The extract DAGs, run for real with dag.test(): HTTP connection, warehouse connection, Assets."""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta

import pytest

from tests.dags.test_dag_integrity import DAGS
from threshold_operators.shop_api.server import ShopApiServer


@pytest.fixture
def extract_dags(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "storefence_extract.py"))
    assert bag.import_errors == {}
    return bag


def _events(asset_name):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as s:
        return [e.extra for e in s.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .filter(AssetModel.name == asset_name).order_by(AssetEvent.id)]


def test_one_dag_per_source_with_fetch_then_load(extract_dags):
    assert set(extract_dags.dags) == {"storefence_extract_shop_api", "storefence_extract_ads_api",
                                      "storefence_extract_reviews_api", "storefence_extract_shop_exports"}
    shop = extract_dags.dags["storefence_extract_shop_api"]
    publish = shop.get_task("publish")  # one event per cycle, after every load, whatever their outcome
    assert publish.upstream_task_ids == {t.task_id for t in shop.tasks if t.task_id.startswith("load_")}
    assert publish.is_teardown and not publish.on_failure_fail_dagrun and publish.pool != "storefence_warehouse"
    assert [a.name for a in publish.inlets] == ["storefence.source.shop_api"]
    shop = extract_dags.get_dag("storefence_extract_shop_api")
    assert shop.get_task("load_orders").downstream_task_ids >= {"load_order_items", "load_payments", "load_refunds", "load_shipments"}
    assert shop.get_task("fetch_orders").downstream_task_ids == {"load_orders"}
    assert shop.get_task("load_orders").pool == "storefence_warehouse"
    assert shop.get_task("fetch_orders").pool != "storefence_warehouse"  # fetching does not hold the DuckDB file


def test_reviews_dag_loads_and_emits_its_asset_once(extract_dags, shop_file, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_WAREHOUSE", json.dumps({"conn_type": "duckdb", "host": str(tmp_path / "w.duckdb")}))
    dag = extract_dags.get_dag("storefence_extract_reviews_api")
    before = len(_events("storefence.reviews"))
    with ShopApiServer(shop_file, token="t0k3n") as api:
        port = int(api.url.rsplit(":", 1)[1])
        monkeypatch.setenv("AIRFLOW_CONN_REVIEWS_API_DEFAULT", json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http",
             "extra": {"Authorization": "Bearer t0k3n"}}))  # the credential lives in the connection only
        cycles = len(_events("storefence.source.reviews_api"))
        first = dag.test()
        assert first.state == "success", {ti.task_id: ti.state for ti in first.get_task_instances()}
        events = _events("storefence.reviews")[before:]
        assert len(events) == 1 and events[0]["rows"] > 1000 and events[0]["source"] == "reviews_api"
        cycle = _events("storefence.source.reviews_api")[cycles:]  # the one event the alert DAGs wait for
        assert len(cycle) == 1 and cycle[0]["advanced"] == ["reviews"] and cycle[0]["failed"] == []
        assert cycle[0]["tables"]["reviews"]["rows"] == events[0]["rows"] and cycle[0]["cycle"] == first.run_after.isoformat()
        second = dag.test()  # nothing new at the source: a new cycle all the same
        assert second.state == "success"
        assert len(_events("storefence.reviews")) == before + 1  # the table did not advance
        cycle = _events("storefence.source.reviews_api")[cycles:]
        assert len(cycle) == 2 and cycle[1]["advanced"] == [] and cycle[1]["latest_cycle"] == second.run_after.isoformat()
        old = dag.test(run_after=first.run_after - timedelta(days=1))  # a re-run of an old interval
        assert old.state == "success"
        assert len(_events("storefence.source.reviews_api")) == cycles + 2  # triggers nothing

    import duckdb

    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    loaded = con.execute("SELECT COUNT(*), COUNT(DISTINCT review_id) FROM reviews").fetchone()
    con.close()
    src = duckdb.connect(str(shop_file), read_only=True)
    expected = src.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]
    src.close()
    assert loaded == (expected, expected)


def test_an_unreachable_api_fails_the_fetch_and_loads_nothing(extract_dags, tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_WAREHOUSE", json.dumps({"conn_type": "duckdb", "host": str(tmp_path / "w.duckdb")}))
    monkeypatch.setenv("AIRFLOW_CONN_REVIEWS_API_DEFAULT", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port}))
    from threshold_operators.extract import paged_api

    monkeypatch.setattr(paged_api.RetryPolicy, "backoff", lambda self, attempt: 0.01)
    dag = extract_dags.get_dag("storefence_extract_reviews_api")
    for t in dag.tasks:
        t.retries = 0
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_STATE", json.dumps({"conn_type": "sqlite",
                                                                    "host": str(tmp_path / "state.sqlite")}))
    cycles = len(_events("storefence.source.reviews_api"))
    run = dag.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"fetch_reviews": "failed", "load_reviews": "upstream_failed", "publish": "success"}
    assert run.state == "failed"  # publish is a teardown: the failed load decides the run's state
    event = _events("storefence.source.reviews_api")[cycles:]  # the cycle happened: the domains are not held
    assert len(event) == 1 and event[0]["failed"] == ["reviews"] and event[0]["advanced"] == []

    # the task's StorefenceNotifier told the data engineers once, on their channels
    from threshold_operators.alerting.notifier import StorefenceNotifier
    from threshold_operators.alerting.store import StateStore

    def told():
        return [(r["route"], r["payload"]["data"]["task_id"]) for r in StateStore().notifications()
                if r["event"] == "task_failed"]

    assert sorted(told()) == [("data_webhook", "fetch_reviews"), ("email", "fetch_reviews")]
    failed = next(ti for ti in run.get_task_instances() if ti.task_id == "fetch_reviews")
    StorefenceNotifier(deliver=False)({"ti": failed, "run_id": run.run_id, "exception": RuntimeError("again")})
    assert len(told()) == 2  # the same task of the same run: not told twice


def test_a_broken_source_file_breaks_only_its_own_dag(airflow_db, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from threshold_operators.extract.sources import SOURCES_DIR

    folder = tmp_path / "sources"
    shutil.copytree(SOURCES_DIR, folder)
    (folder / "marketplace.yaml").write_text("source: marketplace\ntype: http\ntables:\n  - {table: nope, endpoint: /x}\n", encoding="utf-8")
    monkeypatch.setenv("STOREFENCE_SOURCES_DIR", str(folder))
    bag = DagBag(dag_folder=str(DAGS / "storefence_extract.py"))
    assert bag.import_errors == {}
    assert {"storefence_extract_shop_api", "storefence_extract_ads_api", "storefence_extract_reviews_api"} <= set(bag.dags)
    broken = bag.get_dag("storefence_extract_marketplace")
    assert "config-error" in broken.tags and "marketplace.yaml:4: tables.0.table" in broken.doc_md
    run = broken.test()
    assert run.state == "failed"


ORDERS_CSV = """订单号,店铺,渠道,买家,状态,金额,币种,下单时间,付款时间,更新时间
X-1,shop-09,web,c1,paid,120.50,CNY,2026-09-28T10:00:00Z,2026-09-28T10:02:00Z,2026-09-28T10:02:00Z
X-2,shop-09,app,c2,pending,80.00,CNY,2026-09-28T11:00:00Z,,2026-09-28T11:00:00Z
X-3,shop-09,app,c3,paid,-5.00,CNY,2026-09-28T12:00:00Z,2026-09-28T12:01:00Z,2026-09-28T12:01:00Z
"""
ITEMS_CSV = """order_id,line_no,shop_id,sku,quantity,unit_price,created_at
X-1,1,shop-09,SKU-A,1,120.50,2026-09-28T10:00:00Z
X-2,1,shop-09,SKU-B,2,40.00,2026-09-28T11:00:00Z
X-404,1,shop-09,SKU-C,1,10.00,2026-09-28T11:30:00Z
"""


def test_csv_drop_loads_good_rows_quarantines_bad_ones_and_files_move(extract_dags, airflow_home, tmp_path, monkeypatch,
                                                                      pinned_now):
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_WAREHOUSE", json.dumps({"conn_type": "duckdb", "host": str(tmp_path / "w.duckdb")}))
    monkeypatch.setenv("AIRFLOW_CONN_STOREFENCE_STATE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "s.sqlite")}))
    drop = airflow_home / "storefence" / "drop" / "shop_exports"
    shutil.rmtree(drop, ignore_errors=True)
    drop.mkdir(parents=True)
    (drop / "orders_0928.csv").write_text(ORDERS_CSV, encoding="utf-8")
    (drop / "order_items_0928.csv").write_text(ITEMS_CSV, encoding="utf-8")
    (drop / "orders_garbled.csv").write_bytes("订单号,金额\n".encode("gbk"))  # an export saved in GBK
    (drop / "orders_nokey.csv").write_text("amount,status\n1,paid\n", encoding="utf-8")
    finished = (pinned_now - timedelta(hours=1)).timestamp()  # written an hour before the task runs: finished
    for p in drop.glob("*.csv"):
        os.utime(p, (finished, finished))
    still = drop / "orders_still_writing.csv"
    still.write_text(ORDERS_CSV[:120], encoding="utf-8")  # written as the task runs
    os.utime(still, (pinned_now.timestamp(), pinned_now.timestamp()))
    run = extract_dags.get_dag("storefence_extract_shop_exports").test()
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}

    assert sorted(p.name for p in (drop / "done").iterdir()) == ["order_items_0928.csv", "orders_0928.csv"]
    rejected = drop / "rejected"
    assert sorted(p.name for p in rejected.iterdir() if p.suffix == ".csv") == ["orders_garbled.csv", "orders_nokey.csv"]
    assert "key column" in (rejected / "orders_nokey.csv.reason.txt").read_text(encoding="utf-8")
    assert "codec" in (rejected / "orders_garbled.csv.reason.txt").read_text(encoding="utf-8")
    assert [p.name for p in drop.glob("*.csv")] == ["orders_still_writing.csv"]  # left for the next run
    fetched = next(ti for ti in run.get_task_instances() if ti.task_id == "fetch_orders").xcom_pull(task_ids="fetch_orders")
    assert [w["file"] for w in fetched["waiting"]] == ["orders_still_writing.csv"]
    assert sorted(r["file"] for r in fetched["rejected"]) == ["orders_garbled.csv", "orders_nokey.csv"]

    import duckdb

    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    orders = dict(con.execute("SELECT order_id, amount FROM orders").fetchall())
    items = [r[0] for r in con.execute("SELECT order_id FROM order_items ORDER BY 1").fetchall()]
    refused = dict(con.execute("SELECT record_key, failed_checks FROM quarantine").fetchall())
    held = dict(con.execute("SELECT record_key, reason FROM held_rows").fetchall())
    con.close()
    assert {k: float(v) for k, v in orders.items()} == {"X-1": 120.5, "X-2": 80.0}
    assert items == ["X-1", "X-2"]
    assert refused == {"X-3": "between(amount, 0.0, None)"}
    assert held == {"X-404|1": "references(order_id -> orders)"}  # its order may come later: held, not refused

    # each rejection is a data-quality event of the run, and the data engineers are told once
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    events = con.execute("SELECT table_name, kind, detail FROM data_quality_events WHERE kind = 'rejected' "
                         "ORDER BY detail").fetchall()
    con.close()
    assert [(t, k) for t, k, _ in events] == [("orders", "rejected"), ("orders", "rejected")]
    assert "orders_garbled.csv" in events[0][2] and "orders_nokey.csv" in events[1][2]
    from threshold_operators.alerting.store import StateStore

    told = [r for r in StateStore().notifications() if r["event"] == "file_rejected"]
    assert told and {r["payload"]["data"]["table"] for r in told} == {"orders"}
    assert len({r["route"] for r in told}) == len(told)  # one message per channel, not one per file
    assert "orders_nokey.csv" in told[0]["payload"]["text_en"] and "key column" in told[0]["payload"]["text_en"]
