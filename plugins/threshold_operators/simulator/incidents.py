"""Incidents: what goes wrong in the simulated shop, where it lands, and what it does to the data.

An incident file (YAML) is parsed into ``IncidentSpec`` models (pydantic, so every problem is
reported with its incident and field), placed on the window (``place``), and compiled into
``Effects``: multipliers and event lists that the generators read. ``labels`` writes where each
incident landed, for the alert-quality evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from threshold_operators.simulator.catalogue import CATEGORY_CODES, LINES_P, Catalogue
from threshold_operators.simulator.seasonality import HOUR_S, PROMOTION_CALENDAR, Window

DEFAULT_INCIDENTS = Path(__file__).resolve().parents[3] / "include" / "simulator" / "incidents" / "default.yaml"
CHANNELS = ("app", "web", "douyin", "wechat")
GATEWAYS = ("alipay", "wechatpay", "unionpay")
MEAN_LINES = float((np.arange(1, 5) * LINES_P).sum())  # order lines per order: a SKU's lines a day ~ its orders
# A promotion inflates the baselines of the week after it; incidents keep out of both.
PROMO_SHADOW_DAYS = 8

Kind = Literal[
    "demand_spike",
    "batch_quality",
    "payment_failure",
    "paid_channel_degradation",
    "conversion_drop",
    "review_burst",
    "refund_surge",
    "traffic_decline",
    "tracking_stall",
]


class IncidentError(ValueError):
    """An incident file that cannot be used; the message names the file, incident and field."""


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shop: int = Field(1, ge=1, description="1-based shop number")
    category: str | None = None
    brand: str | None = None
    top: int | None = Field(None, ge=1, description="the N most popular SKUs matching")
    daily_orders: float | None = Field(None, gt=0, description="the one SKU (among those matching) whose usual "
                                                               "orders a day are nearest this: a small seller")
    channel: str | None = None
    gateway: str | None = None
    warehouse: int | None = Field(None, ge=1)

    @field_validator("category", "channel", "gateway")
    @classmethod
    def _known(cls, v, info):
        allowed = {"category": CATEGORY_CODES, "channel": CHANNELS, "gateway": GATEWAYS}[info.field_name]
        if v is not None and v not in allowed:
            raise ValueError(f"unknown {info.field_name} {v!r}; one of {', '.join(allowed)}")
        return v


class IncidentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    kind: Kind
    description: str = ""
    day: int | None = Field(None, ge=0, description="days before the end of the window")
    at: str = Field("00:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="local start time HH:MM")
    start: datetime | None = Field(
        None, description="absolute start (ISO 8601; UTC unless an offset is given), instead of day and at"
    )
    hours: float = Field(gt=0)
    target: Target = Field(default_factory=Target)
    params: dict[str, Any] = Field(default_factory=dict)
    expect: list[str] = Field(default_factory=list)
    anchor: Literal["start", "end"] = Field(
        "start", description="end: stays at its day before the end of the window when the schedule moves"
    )

    @field_validator("start")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return None if v is None else (v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC))

    @model_validator(mode="after")
    def _placed_once(self) -> IncidentSpec:
        if (self.day is None) == (self.start is None):
            raise ValueError("give either day (and at) or start, not both")
        return self

    @property
    def absolute(self) -> bool:
        """Placed at a given moment (``start``): never moved off a promotion."""
        return self.start is not None


class IncidentFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    incidents: list[IncidentSpec]


def load_incidents(source: str | Path | None) -> list[IncidentSpec]:
    """``default``, ``none`` or a path to an incident YAML file."""
    if source in (None, "none"):
        return []
    path = DEFAULT_INCIDENTS if source == "default" else Path(source)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IncidentError(f"{path}: no such incident file (use default, none or a YAML path)") from None
    except yaml.YAMLError as exc:
        raise IncidentError(f"{path}: not valid YAML: {exc}") from None
    try:
        parsed = IncidentFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise IncidentError(f"{path}: {problems}") from None
    ids = [i.id for i in parsed.incidents]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise IncidentError(f"{path}: incident ids used twice: {', '.join(dupes)}")
    return parsed.incidents


@dataclass
class PlacedIncident:
    spec: IncidentSpec
    shop: int  # 0-based
    start_s: int
    end_s: int
    skus: np.ndarray  # global SKU indices concerned (may be empty)
    entity_type: str
    entity: str

    def hours_range(self, window: Window) -> tuple[int, int]:
        return (self.start_s - window.start_s) // HOUR_S, -(-(self.end_s - window.start_s) // HOUR_S)


def _blocked_dates(first: date, last: date) -> set[date]:
    blocked: set[date] = set()
    for year in range(first.year - 1, last.year + 1):
        promo = [date(year, p.month, p.day) for p in PROMOTION_CALENDAR]
        d, stop = min(promo) - timedelta(days=1), max(promo) + timedelta(days=PROMO_SHADOW_DAYS)
        while d <= stop:
            blocked.add(d)
            d += timedelta(days=1)
    return blocked


def _local_days(spec: IncidentSpec, end_local: pd.Timestamp, shift_days: int) -> list[date]:
    first = (end_local - pd.Timedelta(days=spec.day + shift_days)).date()
    return [first + timedelta(days=k) for k in range(int(np.ceil(spec.hours / 24)) + 1)]


def schedule_shift(specs: list[IncidentSpec], window: Window, tz: str) -> int:
    """Whole weeks by which the schedule moves earlier so no incident lands on a promotion.

    The whole schedule moves together (keeping weekdays and the order of incidents); incidents
    with ``anchor: end`` stay where they are (they are about the end of the window).
    """
    end_local = pd.Timestamp(window.end).tz_convert(tz)
    blocked = _blocked_dates((end_local - pd.Timedelta(days=window.days + 400)).date(), end_local.date())
    movable = [s for s in specs if s.anchor == "start" and not s.absolute]
    shift = 0
    while any(d in blocked for s in movable for d in _local_days(s, end_local, shift)):
        shift += 7
        if shift > 366:
            break
    return shift


def place(specs: list[IncidentSpec], window: Window, catalogue: Catalogue,
          orders_per_day=None) -> list[PlacedIncident]:
    """Each incident on the window, with its shop, SKUs and entity. ``orders_per_day``: each shop's
    usual orders a day (for ``target.daily_orders``)."""
    placed = []
    shops = len(catalogue.shop_ids)
    shift = schedule_shift(specs, window, catalogue.timezones[0])
    for spec in specs:
        t = spec.target
        if t.shop > shops:
            raise IncidentError(f"incident {spec.id}: target.shop {t.shop} but only {shops} shop(s) are simulated")
        shop = t.shop - 1
        if spec.absolute:
            start_s = int(spec.start.timestamp())
            where = f"start {spec.start.isoformat()}"
        else:
            tz = catalogue.timezones[shop]
            end_local = pd.Timestamp(window.end).tz_convert(tz)
            hh, mm = (int(x) for x in spec.at.split(":"))
            local_day = _local_days(spec, end_local, shift if spec.anchor == "start" else 0)[0]
            start = pd.Timestamp(datetime(local_day.year, local_day.month, local_day.day, hh, mm)).tz_localize(tz)
            start_s = int(start.tz_convert("UTC").timestamp())
            where = f"day {spec.day} at {spec.at}"
        end_s = min(start_s + int(spec.hours * HOUR_S), window.end_s)
        if start_s < window.start_s or start_s >= window.end_s:
            raise IncidentError(
                f"incident {spec.id}: {where} falls outside the {window.days}-day window"
                " (simulate more --days or move the incident)"
            )
        skus = np.array([], dtype=np.int64)
        entity_type, entity = "shop", catalogue.shop_ids[shop]
        if t.category or t.brand:
            skus = catalogue.select(shop, t.category, t.brand, t.top)
            if t.daily_orders is not None and len(skus):
                if orders_per_day is None:
                    raise IncidentError(f"incident {spec.id}: target.daily_orders needs the shop's orders a day")
                usual = catalogue.popularity[skus] * orders_per_day[shop] * MEAN_LINES
                skus = skus[[int(np.argmin(np.abs(usual - t.daily_orders)))]]
            if len(skus) == 0:
                raise IncidentError(f"incident {spec.id}: no SKU of shop {t.shop} matches target {t.model_dump(exclude_none=True)}")
            if spec.kind == "batch_quality":
                batch = catalogue.batch_id[skus[0]]
                skus = np.flatnonzero((catalogue.batch_id == batch) & (catalogue.shop_of == shop))
                entity_type, entity = "batch", str(batch)
            elif t.brand:
                entity_type, entity = "brand", t.brand
            else:
                entity_type, entity = "sku", str(catalogue.sku[skus[0]])
        if spec.kind == "payment_failure":
            entity_type, entity = "gateway", t.gateway or "alipay"
        elif spec.kind == "paid_channel_degradation":
            entity_type, entity = "channel", t.channel or "douyin"
        elif spec.kind == "tracking_stall":
            entity_type, entity = "warehouse", catalogue.warehouse_id(shop, (t.warehouse or 1) - 1)
        placed.append(PlacedIncident(spec, shop, start_s, end_s, skus, entity_type, entity))
    return placed


@dataclass
class Spike:
    shop: int
    h0: int
    h1: int
    t0: int  # epoch seconds: the spike's first and last (exclusive) second
    t1: int
    skus: np.ndarray
    weights: np.ndarray  # within the targets, by popularity
    multiplier: float
    channel: int | None
    single_line: bool = False  # the extra orders carry the spiking SKU alone (no basket companions)


@dataclass
class TimedFactor:
    """A factor applied to events of a shop whose own timestamp falls in [t0, t1)."""

    shop: int
    t0: int
    t1: int
    factor: float
    skus: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Effects:
    visitors_mult: np.ndarray  # [shop, hour]
    cr_mult: np.ndarray  # [shop, hour, channel, source(0 organic, 1 paid)]
    cpc_mult: np.ndarray  # [shop, hour, channel]
    spikes: list[Spike] = field(default_factory=list)
    gateway_failures: list[TimedFactor] = field(default_factory=list)  # factor = failure rate
    refund_surges: list[TimedFactor] = field(default_factory=list)
    complaint_surges: list[TimedFactor] = field(default_factory=list)
    review_bursts: list[TimedFactor] = field(default_factory=list)
    tracking_stalls: list[TimedFactor] = field(default_factory=list)
    stock_shortfalls: list[PlacedIncident] = field(default_factory=list)


def compile_effects(placed: list[PlacedIncident], window: Window, catalogue: Catalogue) -> Effects:
    shops, H, C = len(catalogue.shop_ids), window.n_hours, len(CHANNELS)
    fx = Effects(np.ones((shops, H)), np.ones((shops, H, C, 2)), np.ones((shops, H, C)))
    for inc in placed:
        h0, h1 = inc.hours_range(window)
        s, p, t = inc.shop, inc.spec.params, inc.spec.target
        match inc.spec.kind:
            case "demand_spike":
                w = catalogue.popularity[inc.skus]
                ch = CHANNELS.index(p["channel"]) if p.get("channel") else None
                fx.spikes.append(Spike(s, h0, h1, inc.start_s, inc.end_s, inc.skus, w / w.sum(), float(p.get("multiplier", 5.0)), ch,
                                         bool(p.get("single_line", False))))
                if p.get("stock_hours_left") is not None:
                    fx.stock_shortfalls.append(inc)
            case "conversion_drop":
                fx.cr_mult[s, h0:h1] *= float(p.get("conversion_factor", 0.5))
            case "paid_channel_degradation":
                c = CHANNELS.index(t.channel or "douyin")
                fx.cr_mult[s, h0:h1, c, 1] *= float(p.get("conversion_factor", 0.6))
                fx.cpc_mult[s, h0:h1, c] *= float(p.get("cost_factor", 1.6))
            case "traffic_decline":
                floor, ramp = float(p.get("floor", 0.35)), max(1, int(p.get("ramp_hours", 3)))
                for k, h in enumerate(range(h0, h1)):
                    fx.visitors_mult[s, h] *= max(floor, 1 - (1 - floor) * (k + 1) / ramp)
            case "payment_failure":
                fx.gateway_failures.append(
                    TimedFactor(s, inc.start_s, inc.end_s, float(p.get("failure_rate", 0.25)), extra={"gateway": GATEWAYS.index(t.gateway or "alipay")})
                )
            case "refund_surge":
                fx.refund_surges.append(TimedFactor(s, inc.start_s, inc.end_s, float(p.get("factor", 3.5))))
            case "batch_quality":
                fx.complaint_surges.append(
                    TimedFactor(s, inc.start_s, inc.end_s, float(p.get("complaint_factor", 15.0)), inc.skus,
                                extra={"refund_factor": float(p.get("refund_factor", 6.0))})
                )
            case "review_burst":
                fx.review_bursts.append(
                    TimedFactor(s, inc.start_s, inc.end_s, float(p.get("review_factor", 2.5)), inc.skus,
                                extra={"negative_share": float(p.get("negative_share", 0.85))})
                )
            case "tracking_stall":
                fx.tracking_stalls.append(TimedFactor(s, inc.start_s, inc.end_s, 1.0, extra={"warehouse": (t.warehouse or 1) - 1}))
    return fx


def labels(placed: list[PlacedIncident], window: Window, catalogue: Catalogue, planned: list[dict], spec: dict) -> dict:
    """The labels document: the window, the planned events and every incident as it landed."""

    def iso(s: int) -> str:
        return datetime.fromtimestamp(s, tz=UTC).isoformat()

    return {
        "version": 1,
        "simulation": spec,
        "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
        "planned_events": planned,
        "incidents": [
            {
                "id": inc.spec.id,
                "kind": inc.spec.kind,
                "description": inc.spec.description,
                "shop_id": catalogue.shop_ids[inc.shop],
                "timezone": catalogue.timezones[inc.shop],
                "entity_type": inc.entity_type,
                "entity": inc.entity,
                "skus": [str(catalogue.sku[g]) for g in inc.skus],
                "start": iso(inc.start_s),
                "end": iso(inc.end_s),
                "start_local": pd.Timestamp(inc.start_s, unit="s", tz="UTC").tz_convert(catalogue.timezones[inc.shop]).isoformat(),
                "expect": list(inc.spec.expect),
                "params": inc.spec.params,
            }
            for inc in placed
        ],
    }
