"""The shop API serves each row as it was at ``as_of`` (shop_api.versions), over a real DuckDB file.

An order placed at 17:11 and cancelled at 17:41 is ``pending`` at 17:20 and ``cancelled`` at
17:45; an order placed after ``as_of`` is hidden; incremental reads deliver each version at the
``as_of`` of its life, and keyset pages stay exact, also while a live clock moves ``as_of``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
import requests

from threshold_operators.shop_api.server import ShopApiServer
from threshold_operators.simulator.run import write_history
from threshold_operators.simulator.versions import VALID_FROM
from threshold_operators.warehouse.bulk_load import bulk_loader
from threshold_operators.warehouse.hook import WarehouseHook
from threshold_operators.warehouse.schema import arrow_schema, create_schema

DAY = datetime(2026, 10, 1, tzinfo=UTC)
HISTORY_FROM = DAY.replace(hour=17)


def at(hh_mm: str) -> datetime:
    hh, mm = (int(x) for x in hh_mm.split(":"))
    return DAY.replace(hour=hh, minute=mm)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def order(order_id: str, created: datetime, status: str, updated: datetime, paid_at: datetime | None = None) -> dict:
    return {"order_id": order_id, "shop_id": "shop-01", "channel": "app", "customer_id": "c1", "status": status,
            "amount": 99.5, "currency": "CNY", "created_at": created, "paid_at": paid_at,
            "updated_at": updated}


# Each order's life: its versions in order; the last is the row the table holds.
LIVES = {
    "o-cancelled": [order("o-cancelled", at("17:11"), "pending", at("17:11")),
                    order("o-cancelled", at("17:11"), "cancelled", at("17:41"))],
    "o-shipped": [order("o-shipped", at("17:05"), "pending", at("17:05")),
                  order("o-shipped", at("17:05"), "paid", at("17:06"), at("17:06")),
                  order("o-shipped", at("17:05"), "shipped", at("19:00"), at("17:06"))],
    "o-later": [order("o-later", at("18:00"), "pending", at("18:00")),
                order("o-later", at("18:00"), "paid", at("18:03"), at("18:03"))],
}
SETTLED = order("o-settled", at("15:00"), "completed", at("16:30"), at("15:02"))  # last change before history


def platform_file(path, lives: dict[str, list[dict]], settled: list[dict]) -> str:
    """A platform file: ``orders`` as they stand at the end, plus the versions of the orders
    last changed at or after HISTORY_FROM (written by the simulator's own writer)."""
    hook = WarehouseHook(url=f"duckdb:///{path}")
    create_schema(hook.engine)
    hook.engine.dispose()
    schema = arrow_schema("orders")
    finals = [life[-1] for life in lives.values()] + settled
    with bulk_loader(hook) as loader:
        loader.append("orders", pa.Table.from_pylist(finals, schema=schema))
    versions = pa.Table.from_pylist(
        [v | {VALID_FROM: v["updated_at"]} for life in lives.values() for v in life],
        schema=schema.append(pa.field(VALID_FROM, pa.timestamp("us", tz="UTC"))),
    )
    write_history(hook, {"orders": [versions]}, int(HISTORY_FROM.timestamp()))
    return str(path)


def served(lives: dict[str, list[dict]], settled: list[dict], as_of: datetime) -> dict[str, dict]:
    """What a platform shows at ``as_of``: each order's latest version by then."""
    out = {o["order_id"]: o for o in settled if o["updated_at"] <= as_of}
    for key, life in lives.items():
        seen = [v for v in life if v["updated_at"] <= as_of]
        if seen:
            out[key] = seen[-1]
    return out


def fetch_all(url: str, params: dict | None = None, between_pages=None) -> list[dict]:
    rows, params = [], dict(params or {})
    while True:
        page = requests.get(f"{url}/v1/orders", params=params, timeout=10).json()
        rows += page["data"]
        if not page["has_more"]:
            return rows
        params["cursor"] = page["next_cursor"]
        if between_pages:
            between_pages()


def set_clock(url: str, as_of: datetime | str | None) -> dict:
    value = iso(as_of) if isinstance(as_of, datetime) else as_of
    resp = requests.put(url + "/v1/_admin/clock", json={"as_of": value}, timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> str:
    return platform_file(tmp_path_factory.mktemp("versions") / "shop.duckdb", LIVES, [SETTLED])


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["order_id"]: r for r in rows}


def test_a_row_cancelled_later_is_served_as_it_was(shop):
    with ShopApiServer(shop, as_of=at("17:20")) as api:
        early = by_id(fetch_all(api.url))
        assert set(early) == {"o-cancelled", "o-shipped", "o-settled"}  # o-later is not placed yet
        assert early["o-cancelled"]["status"] == "pending" and early["o-cancelled"]["updated_at"] == "2026-10-01T17:11:00Z"
        assert early["o-shipped"]["status"] == "paid" and early["o-shipped"]["paid_at"] == "2026-10-01T17:06:00Z"
        assert early["o-settled"]["status"] == "completed"

        set_clock(api.url, at("17:45"))
        later = by_id(fetch_all(api.url))
        assert later["o-cancelled"]["status"] == "cancelled" and later["o-cancelled"]["updated_at"] == "2026-10-01T17:41:00Z"
        assert later["o-shipped"]["status"] == "paid"

        set_clock(api.url, at("18:01"))
        assert by_id(fetch_all(api.url))["o-later"]["status"] == "pending"
        set_clock(api.url, None)  # no clock: the table as it stands
        final = by_id(fetch_all(api.url))
        assert {k: v["status"] for k, v in final.items()} == {
            "o-cancelled": "cancelled", "o-shipped": "shipped", "o-later": "paid", "o-settled": "completed"}


def test_incremental_reads_deliver_each_version_at_its_time(shop):
    """An extract reading every 10 minutes from its high-water mark minus an overlap gets the
    pending order at 17:20 and its cancellation at 17:50: both versions, each in its turn."""
    with ShopApiServer(shop) as api:
        seen: list[tuple[str, str]] = []
        high_water = at("17:00")
        for minute in range(20, 200, 10):
            set_clock(api.url, at("17:00") + timedelta(minutes=minute))
            rows = fetch_all(api.url, {"updated_since": iso(high_water - timedelta(minutes=5)), "limit": 1})
            seen += [(r["order_id"], r["status"]) for r in rows]
            if rows:
                high_water = max(high_water, max(datetime.fromisoformat(r["updated_at"]) for r in rows))
        firsts = list(dict.fromkeys(seen))
        assert firsts == [("o-shipped", "paid"), ("o-cancelled", "pending"), ("o-cancelled", "cancelled"),
                          ("o-later", "pending"), ("o-later", "paid"), ("o-shipped", "shipped")]
        # an interval read (updated_before) never gets a version from after as_of
        set_clock(api.url, at("17:45"))
        window = by_id(fetch_all(api.url, {"updated_since": iso(at("17:00")), "updated_before": iso(at("17:40"))}))
        assert set(window) == {"o-shipped"}  # o-cancelled's version of 17:45 is from 17:41


def random_lives(seed: int, n: int = 150) -> tuple[dict[str, list[dict]], list[dict]]:
    """Orders with 1-4 versions from 16:00 on, some settled before HISTORY_FROM, ties included."""
    rng = random.Random(seed)
    lives, settled = {}, []
    for i in range(n):
        oid = f"r{(i * 53) % n:04d}"
        created = at("16:00") + timedelta(minutes=rng.randrange(0, 240))
        times = sorted({created, *(created + timedelta(minutes=rng.randrange(1, 120)) for _ in range(rng.randrange(0, 4)))})
        life = [order(oid, created, s, t) for s, t in zip(("pending", "paid", "shipped", "completed"), times, strict=False)]
        if life[-1]["updated_at"] < HISTORY_FROM:
            settled.append(life[-1])
        else:
            lives[oid] = life
    return lives, settled


@pytest.mark.parametrize("limit", [1, 7, 500])
def test_pages_are_exact_at_any_as_of(tmp_path, limit):
    lives, settled = random_lives(limit)
    path = platform_file(tmp_path / "shop.duckdb", lives, settled)
    with ShopApiServer(path) as api:
        for as_of in (at("17:00"), at("17:33"), at("19:00"), at("21:00")):
            set_clock(api.url, as_of)
            expected = served(lives, settled, as_of)
            rows = fetch_all(api.url, {"limit": limit})
            assert [r["order_id"] for r in rows] == sorted(expected, key=lambda k: (expected[k]["updated_at"], k))
            assert {r["order_id"]: r["status"] for r in rows} == {k: v["status"] for k, v in expected.items()}
            since = as_of - timedelta(minutes=45)
            rows = fetch_all(api.url, {"limit": limit, "updated_since": iso(since)})
            assert {r["order_id"] for r in rows} == {k for k, v in expected.items() if v["updated_at"] >= since}


def test_a_moving_clock_skips_no_row_between_pages(tmp_path):
    """as_of moves on between pages (a live shop): every row served when the read began is
    delivered, and a row that changed meanwhile comes again in its newer version."""
    lives, settled = random_lives(11)
    path = platform_file(tmp_path / "shop.duckdb", lives, settled)
    clock = {"t": at("17:30")}

    def tick():
        clock["t"] += timedelta(minutes=3)
        set_clock(api.url, clock["t"])

    with ShopApiServer(path) as api:
        set_clock(api.url, clock["t"])
        at_start = served(lives, settled, clock["t"])
        rows = fetch_all(api.url, {"limit": 5}, between_pages=tick)
        assert {r["order_id"] for r in rows} >= set(at_start)
        last = {}
        for r in rows:
            last[r["order_id"]] = r["status"]
        # the latest version delivered of each row is at least as new as the one at the start
        rank = {"pending": 0, "paid": 1, "shipped": 2, "completed": 3}
        assert all(rank[last[k]] >= rank[v["status"]] for k, v in at_start.items())


class FakeClock:
    def __init__(self, t: datetime):
        self.t = t

    def now(self) -> datetime:
        return self.t

    def describe(self) -> dict:
        return {"fake": True}


def test_a_live_clock_moves_as_of_on_every_request_and_a_put_pins_it(shop):
    clock = FakeClock(at("17:20"))
    with ShopApiServer(shop, clock=clock) as api:
        assert by_id(fetch_all(api.url))["o-cancelled"]["status"] == "pending"
        clock.t = at("17:45")
        assert by_id(fetch_all(api.url))["o-cancelled"]["status"] == "cancelled"
        assert requests.get(api.url + "/v1/_admin/clock", timeout=5).json() == {
            "as_of": "2026-10-01T17:45:00Z", "live": True, "clock": {"fake": True}}

        assert set_clock(api.url, at("17:20"))["live"] is False  # pinned: the clock is not read
        clock.t = at("23:00")
        assert by_id(fetch_all(api.url))["o-cancelled"]["status"] == "pending"
        assert set_clock(api.url, "live") == {"as_of": "2026-10-01T23:00:00Z", "live": True, "clock": {"fake": True}}
        assert "o-later" in by_id(fetch_all(api.url))


def test_live_needs_a_clock(shop):
    with ShopApiServer(shop) as api:
        resp = requests.put(api.url + "/v1/_admin/clock", json={"as_of": "live"}, timeout=5)
        assert resp.status_code == 400 and "live" in resp.json()["error"]
