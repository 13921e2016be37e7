"""The shop API, served for real on loopback over a real DuckDB file."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import duckdb
import pytest
import requests
import sqlalchemy

from threshold_operators.shop_api.app import filters_hash
from threshold_operators.shop_api.faults import ERROR_STATUSES, FaultPolicy
from threshold_operators.shop_api.server import ShopApiServer
from threshold_operators.warehouse.schema import TABLE_NAMES, create_schema

T0 = datetime(2024, 3, 1, 0, 0, tzinfo=UTC)
SHOPS = [
    ("s1", "Shop One", "Asia/Shanghai", "CNY"),
    ("s2", "Shop Two", "Asia/Shanghai", "CNY"),
    ("s3", "Shop Three", "Europe/Berlin", "EUR"),
]
N_ORDERS = 300


def make_orders() -> list[tuple]:
    """Orders whose ids do not follow time, four to a timestamp, so ties need the key."""
    rows = []
    for i in range(N_ORDERS):
        created = T0 + timedelta(minutes=i)
        updated = T0 + timedelta(minutes=5 * (i // 4), microseconds=250000 if i % 50 == 0 else 0)
        rows.append(
            (
                f"o{(i * 37) % N_ORDERS:04d}",
                SHOPS[i % 3][0],
                ("app", "web", "douyin", "wechat")[i % 4],
                f"c{i % 41:03d}",
                "paid" if i % 5 else "pending",
                Decimal(i * 1371 % 100000) / 100 + Decimal("0.10"),
                SHOPS[i % 3][3],
                created,
                created + timedelta(seconds=30) if i % 5 else None,
                updated,
            )
        )
    return rows


def make_items(orders: list[tuple]) -> list[tuple]:
    rows = []
    for i, order in enumerate(orders):
        for line in range(1, 1 + i % 3 + 1):
            rows.append(
                (order[0], line, order[1], f"sku{(i + line) % 17}", line, Decimal("19.90") + line, order[7])
            )
    return rows


ORDERS = make_orders()
ITEMS = make_items(ORDERS)


def order_key(row: tuple) -> tuple:
    return (row[9], row[0])


@pytest.fixture(scope="module")
def shop_db(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("shop") / "shop.duckdb")
    engine = sqlalchemy.create_engine("duckdb:///" + path)
    try:
        create_schema(engine)
    finally:
        engine.dispose()
    con = duckdb.connect(path)
    try:
        con.executemany("INSERT INTO shops VALUES (?, ?, ?, ?)", SHOPS)
        con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ORDERS)
        con.executemany("INSERT INTO order_items VALUES (?, ?, ?, ?, ?, ?, ?)", ITEMS)
    finally:
        con.close()
    return path


@pytest.fixture(scope="module")
def api(shop_db):
    with ShopApiServer(shop_db) as server:
        yield server


def fetch_all(
    url: str, table: str, params: dict | None = None, *, headers=None, log: list | None = None, sleep=time.sleep
) -> list[dict]:
    """Follow next_cursor to the end, retrying 5xx at once and honouring 429's Retry-After."""
    rows: list[dict] = []
    params = dict(params or {})
    for _ in range(1000):
        resp = requests.get(f"{url}/v1/{table}", params=params, headers=headers, timeout=10)
        if log is not None:
            log.append(resp)
        if resp.status_code == 429:
            sleep(int(resp.headers["Retry-After"]))
            continue
        if resp.status_code >= 500:
            continue
        assert resp.status_code == 200, resp.text
        page = resp.json()
        rows.extend(page["data"])
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return rows
        params["cursor"] = page["next_cursor"]
    raise AssertionError("pagination did not end")


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- reading -----------------------------------------------------------------------------------
def test_healthz_and_tables(api):
    assert requests.get(api.url + "/healthz", timeout=5).json() == {"status": "ok"}
    tables = {t["name"]: t for t in requests.get(api.url + "/v1/tables", timeout=5).json()}
    assert tuple(tables) == TABLE_NAMES
    assert tables["orders"]["key"] == ["order_id"]
    assert tables["orders"]["updated_field"] == "updated_at"
    assert tables["order_items"]["key"] == ["order_id", "line_no"]
    assert tables["shops"]["updated_field"] is None
    assert "paid_at" in tables["orders"]["columns"]


@pytest.mark.parametrize("limit", [7, 64, 5000])
def test_pagination_returns_every_row_once_in_order(api, limit):
    rows = fetch_all(api.url, "orders", {"limit": limit})
    expected = sorted(ORDERS, key=order_key)
    assert [r["order_id"] for r in rows] == [o[0] for o in expected]
    assert len({r["order_id"] for r in rows}) == N_ORDERS


def test_pagination_with_composite_key(api):
    rows = fetch_all(api.url, "order_items", {"limit": 33})
    expected = sorted(ITEMS, key=lambda r: (r[6], r[0], r[1]))
    assert [(r["order_id"], r["line_no"]) for r in rows] == [(r[0], r[1]) for r in expected]


def test_default_limit_and_page_shape(api):
    page = requests.get(api.url + "/v1/order_items", timeout=5).json()
    assert len(ITEMS) > 500
    assert page["table"] == "order_items"
    assert len(page["data"]) == 500
    assert page["has_more"] is True
    assert isinstance(page["next_cursor"], str)


def test_shops_ordered_by_key_and_time_filters_ignored(api):
    page = requests.get(
        api.url + "/v1/shops", params={"updated_since": "2030-01-01T00:00:00Z", "limit": 2}, timeout=5
    )
    assert page.status_code == 200
    body = page.json()
    assert [s["shop_id"] for s in body["data"]] == ["s1", "s2"]
    assert body["has_more"] is True
    rows = fetch_all(api.url, "shops", {"limit": 1})
    assert rows == [{"shop_id": s[0], "name": s[1], "timezone": s[2], "currency": s[3]} for s in SHOPS]


def test_updated_since_and_before(api):
    since, before = T0 + timedelta(minutes=100), T0 + timedelta(minutes=200)
    rows = fetch_all(
        api.url, "orders", {"updated_since": iso(since), "updated_before": iso(before), "limit": 9}
    )
    expected = [o[0] for o in sorted(ORDERS, key=order_key) if since <= o[9] < before]
    assert expected and len(expected) < N_ORDERS
    assert [r["order_id"] for r in rows] == expected
    # an offset other than Z is understood, and the bound is inclusive
    plus8 = (since + timedelta(hours=8)).replace(tzinfo=None).isoformat() + "+08:00"
    only_since = fetch_all(api.url, "orders", {"updated_since": plus8, "limit": 5000})
    assert len(only_since) == sum(1 for o in ORDERS if o[9] >= since)
    assert min(r["updated_at"] for r in only_since) == iso(since)


def test_shop_id_filter(api):
    rows = fetch_all(api.url, "orders", {"shop_id": "s2", "limit": 40})
    assert {r["shop_id"] for r in rows} == {"s2"}
    assert len(rows) == sum(1 for o in ORDERS if o[1] == "s2")
    assert fetch_all(api.url, "orders", {"shop_id": "nope"}) == []


def test_values_format(api):
    rows = {r["order_id"]: r for r in fetch_all(api.url, "orders", {"limit": 5000})}
    first = ORDERS[0]  # i == 0: pending, unpaid, updated with microseconds
    row = rows[first[0]]
    assert row["created_at"] == "2024-03-01T00:00:00Z"
    assert row["updated_at"] == "2024-03-01T00:00:00.250000Z"
    assert row["paid_at"] is None
    assert row["amount"] == "0.10"
    paid = ORDERS[7]
    assert rows[paid[0]]["paid_at"] == iso(paid[8])
    assert rows[paid[0]]["amount"] == f"{paid[5]:.2f}"
    assert Decimal(rows[paid[0]]["amount"]) == paid[5]
    items = fetch_all(api.url, "order_items", {"limit": 5000})
    assert isinstance(items[0]["line_no"], int) and isinstance(items[0]["quantity"], int)
    assert items[0]["unit_price"] in ("20.90", "21.90", "22.90")


# --- refusals ----------------------------------------------------------------------------------
def test_cursor_with_other_filters_is_refused(api):
    page = requests.get(api.url + "/v1/orders", params={"shop_id": "s1", "limit": 10}, timeout=5).json()
    cursor = page["next_cursor"]
    same = requests.get(
        api.url + "/v1/orders", params={"shop_id": "s1", "limit": 20, "cursor": cursor}, timeout=5
    )
    assert same.status_code == 200  # page size may change
    for other in ({"shop_id": "s2"}, {}, {"shop_id": "s1", "updated_since": "2024-03-01T00:00:00Z"}):
        resp = requests.get(api.url + "/v1/orders", params={**other, "cursor": cursor}, timeout=5)
        assert resp.status_code == 400
        assert "other filters" in resp.json()["error"]
    resp = requests.get(api.url + "/v1/order_items", params={"shop_id": "s1", "cursor": cursor}, timeout=5)
    assert resp.status_code == 400


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "%%%",
        base64.urlsafe_b64encode(b'{"after": [1], "filters": "x"}').decode(),
        base64.urlsafe_b64encode(
            json.dumps(
                {"after": ["garbage", "o1"], "filters": filters_hash("orders", None, None, None)}
            ).encode()
        ).decode(),
        base64.urlsafe_b64encode(
            json.dumps(
                {"after": ["2024-03-01T00:00:00Z", 1.5], "filters": filters_hash("orders", None, None, None)}
            ).encode()
        ).decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
    ],
)
def test_malformed_cursor_is_refused(api, cursor):
    resp = requests.get(api.url + "/v1/orders", params={"cursor": cursor}, timeout=5)
    assert resp.status_code == 400
    assert resp.json()["error"].startswith("cursor is malformed")


@pytest.mark.parametrize("param", ["updated_since", "updated_before"])
def test_bad_timestamp_names_the_parameter(api, param):
    resp = requests.get(api.url + "/v1/orders", params={param: "yesterday"}, timeout=5)
    assert resp.status_code == 400
    assert resp.json()["error"].startswith(param)


def test_unknown_table(api):
    resp = requests.get(api.url + "/v1/customers", timeout=5)
    assert resp.status_code == 404
    assert "customers" in resp.json()["error"]


@pytest.mark.parametrize(
    "limit,status", [("0", 400), ("5001", 400), ("-3", 400), ("ten", 400), ("1", 200), ("5000", 200)]
)
def test_limit_bounds(api, limit, status):
    resp = requests.get(api.url + "/v1/orders", params={"limit": limit}, timeout=5)
    assert resp.status_code == status
    if status == 200:
        assert len(resp.json()["data"]) == min(int(limit), N_ORDERS)
    else:
        assert resp.json()["error"].startswith("limit")


# --- the shop as it was --------------------------------------------------------------------------
def test_as_of_hides_later_rows_and_the_admin_clock_moves_it(shop_db):
    cut = T0 + timedelta(minutes=150)
    with ShopApiServer(shop_db, as_of=cut) as server:
        early = fetch_all(server.url, "orders", {"limit": 5000})
        assert len(early) == sum(1 for o in ORDERS if o[9] <= cut)
        assert max(r["updated_at"] for r in early) <= iso(cut)
        assert requests.get(server.url + "/v1/_admin/clock", timeout=5).json() == {"as_of": iso(cut)}

        later = cut + timedelta(minutes=100)
        resp = requests.put(server.url + "/v1/_admin/clock", json={"as_of": iso(later)}, timeout=5)
        assert resp.status_code == 200 and resp.json() == {"as_of": iso(later)}
        new = fetch_all(
            server.url, "orders", {"updated_since": iso(cut + timedelta(microseconds=1)), "limit": 5000}
        )
        assert len(new) == sum(1 for o in ORDERS if cut < o[9] <= later) > 0

        assert (
            requests.put(server.url + "/v1/_admin/clock", json={"as_of": "soon"}, timeout=5).status_code
            == 400
        )
        assert requests.put(server.url + "/v1/_admin/clock", json={"as_of": None}, timeout=5).json() == {
            "as_of": None
        }
        assert len(fetch_all(server.url, "orders", {"limit": 5000})) == N_ORDERS
        # a dimension without updated_field is never hidden
        requests.put(server.url + "/v1/_admin/clock", json={"as_of": "2000-01-01T00:00:00Z"}, timeout=5)
        assert len(fetch_all(server.url, "shops")) == len(SHOPS)
        assert fetch_all(server.url, "orders") == []


def test_token(shop_db):
    with ShopApiServer(shop_db, token="s3cret") as server:
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            resp = requests.get(server.url + "/v1/orders", headers=headers, timeout=5)
            assert resp.status_code == 401
            assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert requests.get(server.url + "/v1/tables", timeout=5).status_code == 401
        assert (
            requests.put(server.url + "/v1/_admin/clock", json={"as_of": None}, timeout=5).status_code == 401
        )
        good = {"Authorization": "Bearer s3cret"}
        resp = requests.get(server.url + "/v1/orders", headers=good, params={"limit": 3}, timeout=5)
        assert resp.status_code == 200 and len(resp.json()["data"]) == 3


# --- faults --------------------------------------------------------------------------------------
def test_rate_limit_answers_429_and_a_patient_client_gets_everything(shop_db):
    # the bucket's clock moves only when the client sleeps: as throttled on a loaded CI runner as here
    clock = FakeClock()

    def sleep(seconds):
        clock.now += seconds

    with ShopApiServer(shop_db, faults=FaultPolicy(rate_limit=10, clock=clock)) as server:
        log: list = []
        rows = fetch_all(server.url, "orders", {"limit": 10}, log=log, sleep=sleep)
        assert [r["order_id"] for r in rows] == [o[0] for o in sorted(ORDERS, key=order_key)]
        throttled = [r for r in log if r.status_code == 429]
        assert throttled, "30 pages at 10 requests/s should be throttled"
        for resp in throttled:
            assert int(resp.headers["Retry-After"]) >= 1
            assert "rate limit" in resp.json()["error"]
        # health and the catalogue are never throttled
        assert all(requests.get(server.url + "/healthz", timeout=5).status_code == 200 for _ in range(15))


def test_server_errors_and_a_retrying_client_gets_every_row_once(shop_db):
    with ShopApiServer(shop_db, faults=FaultPolicy(error_rate=0.3, seed=11)) as server:
        log: list = []
        rows = fetch_all(server.url, "orders", {"limit": 10}, log=log)
        assert [r["order_id"] for r in rows] == [o[0] for o in sorted(ORDERS, key=order_key)]
        failed = [r for r in log if r.status_code >= 500]
        assert failed and {r.status_code for r in failed} <= set(ERROR_STATUSES)
        assert all("error" in r.json() for r in failed)
        assert len(log) == 30 + len(failed)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_fault_policy_token_bucket():
    clock = FakeClock()
    policy = FaultPolicy(rate_limit=4, clock=clock)
    assert [policy.check() for _ in range(4)] == [None] * 4
    assert policy.check() == (429, 1)
    clock.now += 0.5  # two tokens back
    assert [policy.check() for _ in range(3)] == [None, None, (429, 1)]
    clock.now += 100  # never more than the burst
    assert [policy.check() for _ in range(5)] == [None] * 4 + [(429, 1)]


def test_fault_policy_slow_rate_retry_after():
    clock = FakeClock()
    policy = FaultPolicy(rate_limit=0.2, clock=clock)  # burst 1, a token every 5 s
    assert policy.burst == 1
    assert policy.check() is None
    assert policy.check() == (429, 5)
    clock.now += 2.5
    assert policy.check() == (429, 3)  # 2.5 s left, rounded up
    clock.now += 2.5
    assert policy.check() is None


def test_fault_policy_errors_are_seeded():
    def run(seed: int) -> list:
        policy = FaultPolicy(error_rate=0.3, seed=seed)
        return [policy.check() for _ in range(1000)]

    first = run(5)
    assert first == run(5)
    assert first != run(6)
    errors = [f for f in first if f is not None]
    assert 200 < len(errors) < 400
    assert {status for status, _ in errors} == set(ERROR_STATUSES)
    assert all(retry is None for _, retry in errors)
    assert all(FaultPolicy(error_rate=1.0).check()[0] in ERROR_STATUSES for _ in range(10))
    assert FaultPolicy().check() is None


@pytest.mark.parametrize(
    "kwargs", [{"rate_limit": 0}, {"rate_limit": -1}, {"error_rate": 1.5}, {"error_rate": -0.1}]
)
def test_fault_policy_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        FaultPolicy(**kwargs)
