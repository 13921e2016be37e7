"""The live shop: a simulated platform whose clock moves with real time, with an incident on the way.

``make up`` runs the pack on Airflow's scheduler against a shop that behaves like a live
platform: orders keep arriving, change state and become visible as time passes. The whole
window is simulated up front into a platform file whose rows run ``hours_ahead`` into the
future; the shop API serves it at the live clock's data time (``shop_api.versions``: each row as
it was then, rows not yet created hidden), so nothing is generated while serving.

``LiveClock(w0, d0, speed)``: data time ``d0 + speed * (wall - w0)``, never ahead of the wall
clock: the shop starts ``behind`` real time and catches up at ``speed`` times real time (by
default an hour behind at 6x: an hour of data every 10 minutes, real time after 12 minutes),
then runs at real time. ``wall_time`` is its inverse: when a row of a given data time became
visible (the benchmark measures latency from there).

``prepare_live_shop`` simulates the platform file, seeds the warehouse with the history up to
``d0`` (as a platform read at ``d0`` would have left it) and writes the state file
(``storefence-live-shop.json``); ``LiveShopServer`` serves it with the clock (a background
thread, for tests and the benchmark); ``serve_live`` does so in the foreground
(``storefence live-shop serve``). The scheduled incident is the seed's formula spike at 100x
with about 3 hours of stock, starting 5 minutes of data time after ``d0``; the history carries
no other incident, so the baselines the rules compare it with are clean.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

STATE_FILE = "storefence-live-shop.json"
PLATFORM_FILE = "storefence-live-shop.duckdb"
LABELS_FILE = "storefence-live-labels.yaml"

DEFAULT_SPEED = 6.0
DEFAULT_BEHIND = timedelta(hours=1)
DEFAULT_HOURS_AHEAD = timedelta(hours=24)
# 200 SKUs x 60 days: 8 weeks of history before d0 (sales.order_spike compares 6 same-weekday
# hours), prepared in a few seconds on two cores (docs/simulator.md has the figures).
DEFAULT_SKUS = 200
DEFAULT_DAYS = 60
MIN_HISTORY = timedelta(days=50)
INCIDENT_AFTER = timedelta(minutes=5)  # data time from d0 to the spike
LIVE_INCIDENT = {  # the seed's formula spike, as the live run of issue 12 met it
    "id": "live_formula_spike",
    "multiplier": 100.0,
    "stock_hours_left": 3,
    "target": {"category": "infant_formula", "brand": "Brand A", "top": 1},
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _iso(ts: datetime) -> str:
    return _utc(ts).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class LiveClock:
    """Data time from wall time: ``d0 + speed * (wall - w0)``, never ahead of the wall clock.

    :param w0: the wall time the clock started at.
    :param d0: the data time at ``w0`` (at or before ``w0``).
    :param speed: data seconds per wall second until the data time reaches the wall clock.
    :param wall: the wall clock, injected by tests; ``now()`` reads it.
    """

    w0: datetime
    d0: datetime
    speed: float = 1.0
    wall: Callable[[], datetime] = field(default=_utcnow, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "w0", _utc(self.w0))
        object.__setattr__(self, "d0", _utc(self.d0))
        if not self.speed > 0:
            raise ValueError(f"speed must be positive, got {self.speed!r}")
        if self.d0 > self.w0:
            raise ValueError(f"d0 {_iso(self.d0)} is ahead of w0 {_iso(self.w0)}: a live shop cannot show the future")

    def data_time(self, wall: datetime) -> datetime:
        """The data time shown at wall time ``wall``."""
        wall = _utc(wall)
        return min(self.d0 + (wall - self.w0) * self.speed, wall)

    def wall_time(self, data: datetime) -> datetime:
        """The wall time at which data time ``data`` is shown (the inverse of ``data_time``)."""
        data = _utc(data)
        return max(self.w0 + (data - self.d0) / self.speed, data)

    @property
    def caught_up_at(self) -> datetime | None:
        """The wall time from which data time is real time (None: never, at speed <= 1 behind)."""
        if self.d0 == self.w0:
            return self.w0
        if self.speed <= 1:
            return None
        return self.w0 + (self.w0 - self.d0) / (self.speed - 1)

    def now(self) -> datetime:
        return self.data_time(self.wall())

    def describe(self) -> dict[str, Any]:
        caught = self.caught_up_at
        return {"w0": _iso(self.w0), "d0": _iso(self.d0), "speed": self.speed,
                "caught_up_at": _iso(caught) if caught else None}


def live_incident(start: datetime, hours: float | None = None):
    """The seed's formula spike (``formula_spike_low_stock`` of the default incidents) placed at
    ``start``: one Brand A formula SKU at 100x its orders with about 3 hours of stock."""
    from threshold_operators.simulator.incidents import load_incidents

    seed = next(i for i in load_incidents("default") if i.id == "formula_spike_low_stock")
    params = seed.params | {k: LIVE_INCIDENT[k] for k in ("multiplier", "stock_hours_left")} | {"single_line": True}
    return seed.model_copy(update={
        "id": LIVE_INCIDENT["id"], "day": None, "start": _utc(start), "params": params,
        "hours": hours or seed.hours, "target": seed.target.model_copy(update=LIVE_INCIDENT["target"]),
        "description": f"{seed.description}; live: one SKU at x{params['multiplier']:g}, "
                       f"{params['stock_hours_left']} h of stock",
    })


@dataclass
class LiveShop:
    """The state file's content: what ``serve`` and ``make up`` need to know."""

    platform: str
    w0: datetime
    d0: datetime
    speed: float
    incident: dict[str, Any]
    labels: str
    window: dict[str, str]
    history_from: datetime
    warehouse: str
    url: str | None = None
    prepared_seconds: float | None = None
    rows: dict[str, int] = field(default_factory=dict)

    def clock(self, wall: Callable[[], datetime] | None = None) -> LiveClock:
        return LiveClock(self.w0, self.d0, self.speed, **({"wall": wall} if wall else {}))

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform, "w0": _iso(self.w0), "d0": _iso(self.d0), "speed": self.speed,
            "incident": self.incident, "labels": self.labels, "window": self.window,
            "history_from": _iso(self.history_from), "warehouse": self.warehouse, "url": self.url,
            "prepared_seconds": self.prepared_seconds, "rows": self.rows,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LiveShop:
        ts = {k: datetime.fromisoformat(doc[k].replace("Z", "+00:00")) for k in ("w0", "d0", "history_from")}
        return cls(**(doc | ts))

    def write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)  # a reader never sees half a file

    @classmethod
    def read(cls, path: Path) -> LiveShop:
        try:
            return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no live shop here; run 'storefence live-shop prepare' first") from None


def default_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()


def prepare_live_shop(
    home: str | Path | None = None,
    *,
    speed: float = DEFAULT_SPEED,
    behind: timedelta = DEFAULT_BEHIND,
    hours_ahead: timedelta = DEFAULT_HOURS_AHEAD,
    skus: int = DEFAULT_SKUS,
    days: int = DEFAULT_DAYS,
    seed: int = 7,
    orders_per_day: int = 2000,
    conn_id: str | None = None,
    warehouse=None,
    now: datetime | None = None,
    timezone: str = "Asia/Shanghai",
    incident_at: datetime | None = None,
    say: Callable[[str], None] = lambda _msg: None,
) -> LiveShop:
    """Simulate the live platform file, seed the warehouse up to ``d0``, write the state file.

    :param home: where the platform, labels and state files go (default ``$AIRFLOW_HOME``).
    :param warehouse: a ``WarehouseHook``; default ``WarehouseHook(conn_id)``. It is disposed of
        before returning (DuckDB admits one writing process at a time).
    :param now: the wall time the clock starts at (``w0``); tests pin it.
    :param incident_at: when the live spike starts (data time; default five minutes after ``d0``).
    :param timezone: the shop's time zone (its day and its busy hours); the real-scheduler tests
        pick a fixed offset in which the live window is the shop's afternoon whatever the hour.
    """
    import time

    from threshold_operators.demo import seed_history
    from threshold_operators.simulator.run import SimulationError, SimulationSpec, simulate
    from threshold_operators.warehouse import WAREHOUSE_CONN_ID
    from threshold_operators.warehouse.hook import WarehouseHook

    started = time.perf_counter()
    if behind < timedelta(0) or hours_ahead <= timedelta(0):
        raise SimulationError("--behind must be 0 or more and --hours-ahead more than 0")
    home = Path(home) if home is not None else default_home()
    home.mkdir(parents=True, exist_ok=True)
    w0 = _utc(now) if now is not None else _utcnow()
    d0 = w0 - behind
    clock = LiveClock(w0, d0, speed)  # validates speed
    end = (w0 + hours_ahead).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    if end - timedelta(days=days) > d0 - MIN_HISTORY:
        raise SimulationError(f"--days {days} leaves less than {MIN_HISTORY.days} days of history before the "
                              f"live start (the rules' baselines need them): use --days "
                              f"{-(-(end - d0 + MIN_HISTORY) // timedelta(days=1))} or more")
    history_from = d0.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    incident = live_incident(_utc(incident_at) if incident_at is not None else d0 + INCIDENT_AFTER)

    warehouse = warehouse or WarehouseHook(warehouse_conn_id=conn_id or WAREHOUSE_CONN_ID)
    target = warehouse.describe()  # a missing connection stops here, before the simulation
    platform = home / PLATFORM_FILE
    labels_path = home / LABELS_FILE
    for stale in (platform, platform.with_name(platform.name + ".wal"), home / STATE_FILE):
        stale.unlink(missing_ok=True)
    say(f"Simulating the live shop ({skus} SKUs, {days} days to {end:%Y-%m-%d %H:%M} UTC) into {platform}")
    spec = SimulationSpec(shops=1, skus=skus, days=days, orders_per_day=orders_per_day, seed=seed, end=end,
                          incidents=[incident], history_from=history_from, timezone=timezone)
    result = simulate(spec, WarehouseHook(url=f"duckdb:///{platform}"), labels_out=labels_path)
    say(f"  {sum(result.rows.values()):,} rows and {sum(result.versions.values()):,} row versions "
        f"in {result.seconds:.1f} s")
    say(f"Seeding {target} with the history up to {d0:%Y-%m-%d %H:%M:%S} UTC")
    try:
        seeded = seed_history(platform, warehouse, d0)
    finally:
        warehouse.engine.dispose()
    say(f"  {seeded:,} rows")
    landed = next(i for i in result.labels["incidents"] if i["id"] == incident.id)
    shop = LiveShop(
        platform=str(platform), w0=w0, d0=d0, speed=clock.speed,
        incident={k: landed[k] for k in ("id", "kind", "shop_id", "entity_type", "entity", "skus", "start", "end",
                                         "expect")} | {"sku": landed["skus"][0] if landed["skus"] else None},
        labels=str(labels_path),
        window={"start": result.window_start.isoformat(), "end": result.window_end.isoformat()},
        history_from=history_from, warehouse=target,
        prepared_seconds=round(time.perf_counter() - started, 2),
        rows={"platform": sum(result.rows.values()), "versions": sum(result.versions.values()), "seeded": seeded},
    )
    shop.write(home / STATE_FILE)
    return shop


class LiveShopServer:
    """The live shop's API on loopback, in a background thread, its clock started from the state file.

    >>> with LiveShopServer(home) as shop:
    ...     requests.get(shop.url + "/v1/orders")

    :param state: the state file, or the folder holding it (default ``$AIRFLOW_HOME``).
    :param wall: the wall clock (tests pin it).
    :param write_url: record ``url`` in the state file once healthy (``make up`` reads it).
    """

    def __init__(self, state: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 wall: Callable[[], datetime] | None = None, write_url: bool = True, faults=None,
                 token: str | None = None, log_level: str = "warning"):
        path = Path(state) if state is not None else default_home()
        self.state_file = path / STATE_FILE if path.is_dir() else path
        self.shop = LiveShop.read(self.state_file)
        self.clock = self.shop.clock(wall)
        self.write_url = write_url
        from threshold_operators.shop_api.server import ShopApiServer

        self._api = ShopApiServer(self.shop.platform, host=host, port=port, clock=self.clock, faults=faults,
                                  token=token, log_level=log_level)
        self.url: str | None = None

    def start(self) -> LiveShopServer:
        self._api.start()
        self.url = self._api.url
        if self.write_url:
            current = LiveShop.read(self.state_file)  # keep what another writer may have added
            current.url = self.url
            current.write(self.state_file)
        return self

    def stop(self) -> None:
        self._api.stop()

    def __enter__(self) -> LiveShopServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def serve_live(state: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 0,
               token: str | None = None) -> None:
    """Serve the live shop in the foreground until SIGINT or SIGTERM (``storefence live-shop serve``)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with LiveShopServer(state, host=host, port=port, token=token) as server:
            c = server.clock
            caught = c.caught_up_at
            print(server.url, flush=True)
            print(f"storefence live-shop: serving {server.shop.platform} on {server.url}; data time "
                  f"{_iso(c.now())} at {c.speed:g}x, real time from {_iso(caught) if caught else 'never'}; "
                  f"incident {server.shop.incident['id']} at {server.shop.incident['start']} (Ctrl+C to stop)",
                  file=sys.stderr, flush=True)
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
