"""The simulated window's hours and the demand rhythms laid over them.

Demand = base x hour-of-day profile x day-of-week factor x promotion calendar x trend x day noise.
The rhythms are local to each shop (its IANA timezone), the hours are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

HOUR_S = 3600

# Relative orders per local hour (mean 1): a quiet night, a morning rise, a lunch bump and
# the evening peak of Chinese e-commerce (20:00-22:00).
HOUR_PROFILE = np.array(
    [0.9, 0.5, 0.3, 0.2, 0.15, 0.15, 0.25, 0.5, 0.9, 1.2, 1.4, 1.4,
     1.3, 1.2, 1.25, 1.3, 1.3, 1.25, 1.3, 1.5, 1.8, 1.9, 1.7, 1.3]
)
HOUR_PROFILE = HOUR_PROFILE * 24 / HOUR_PROFILE.sum()

# Day-of-week factors, Monday first: weekends sell about 33% more than weekdays.
WEEKDAY_FACTOR = np.array([0.92, 0.90, 0.92, 0.95, 1.05, 1.25, 1.22])

YEARLY_TREND = 0.10  # +10% a year
DAY_NOISE_SIGMA = 0.05  # day-to-day weather, news, competitors


@dataclass(frozen=True)
class PromotionDay:
    month: int
    day: int
    factor: float
    name: str


# Singles' Day: pre-sale from 1 November, the peak on the 11th, a tail on the 12th.
PROMOTION_CALENDAR: tuple[PromotionDay, ...] = (
    *(PromotionDay(11, d, 1.15, "Singles' Day pre-sale") for d in range(1, 11)),
    PromotionDay(11, 11, 4.0, "Singles' Day"),
    PromotionDay(11, 12, 1.5, "Singles' Day tail"),
)
PROMO_DISCOUNT = {4.0: 0.80, 1.5: 0.90, 1.15: 0.95}


def promotion_factor(d: date) -> tuple[float, str | None]:
    for p in PROMOTION_CALENDAR:
        if d.month == p.month and d.day == p.day:
            return p.factor, p.name
    return 1.0, None


@dataclass
class Window:
    """The simulated hours: ``n_hours`` UTC hours ending (exclusive) at ``end``."""

    end: datetime
    days: int

    def __post_init__(self):
        if self.end.tzinfo is None:
            self.end = self.end.replace(tzinfo=UTC)
        self.end = self.end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)

    @property
    def n_hours(self) -> int:
        return self.days * 24

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)

    @property
    def start_s(self) -> int:
        return int(self.start.timestamp())

    @property
    def end_s(self) -> int:
        return int(self.end.timestamp())

    def hour_starts_s(self) -> np.ndarray:
        return self.start_s + HOUR_S * np.arange(self.n_hours, dtype=np.int64)

    def hour_index(self, ts: datetime) -> int:
        return int((ts.astimezone(UTC) - self.start).total_seconds() // HOUR_S)


@dataclass
class LocalClock:
    """For one timezone: the local hour, weekday and date of every window hour."""

    hour: np.ndarray  # 0..23
    weekday: np.ndarray  # 0 = Monday
    date: np.ndarray  # datetime64[D], local calendar date
    promo: np.ndarray  # promotion factor of the local date
    discount: np.ndarray  # price factor on promotion days

    @classmethod
    def build(cls, window: Window, tz: str) -> LocalClock:
        idx = pd.DatetimeIndex(pd.to_datetime(window.hour_starts_s(), unit="s", utc=True)).tz_convert(tz)
        dates = idx.tz_localize(None).normalize().values.astype("datetime64[D]")
        promo = np.ones(window.n_hours)
        discount = np.ones(window.n_hours)
        for d in np.unique(dates):
            factor, _ = promotion_factor(pd.Timestamp(d).date())
            if factor != 1.0:
                mask = dates == d
                promo[mask] = factor
                discount[mask] = PROMO_DISCOUNT.get(factor, 1.0)
        return cls(
            hour=idx.hour.values.astype(np.int64),
            weekday=idx.day_of_week.values.astype(np.int64),
            date=dates,
            promo=promo,
            discount=discount,
        )

    def local_to_utc_s(self, window: Window, local_date: date, hh: int, mm: int, tz: str) -> int:
        local = pd.Timestamp(datetime(local_date.year, local_date.month, local_date.day, hh, mm)).tz_localize(tz)
        return int(local.tz_convert("UTC").timestamp())


def planned_event_rows(events: list[dict], shop_ids, tz: str, written_at: datetime) -> list[dict]:
    """The ``planned_events`` rows of the simulator's promotions (``planned_events``): what the shop
    planned, for every shop, with the uplift it planned (its demand factor), as a shop would
    declare them in include/rules/plans.yaml."""
    import re

    rows = []
    for e in events:
        start = pd.Timestamp(e["start"])
        slug = re.sub(r"[^a-z0-9]+", "_", e["name"].lower().replace("'", "")).strip("_")
        for shop in shop_ids:
            rows.append({"event_id": f"{slug}_{start.tz_convert(tz):%Y%m%d}"[:64],
                         "name": e["name"], "shop_id": str(shop), "scope": "shop", "scope_value": "",
                         "uplift": float(e["demand_factor"]), "starts_at": start.to_pydatetime(),
                         "ends_at": pd.Timestamp(e["end"]).to_pydatetime(), "updated_at": written_at})
    return rows


def planned_events(window: Window, tz: str) -> list[dict]:
    """Promotions inside the window, for the labels file (alerts there are expected, not false).

    Consecutive days of the same promotion make one event.
    """
    events: list[dict] = []
    first = pd.Timestamp(window.start).tz_convert(tz).date()
    last = pd.Timestamp(window.end).tz_convert(tz).date()
    d = first
    while d <= last:
        factor, name = promotion_factor(d)
        if name:
            start = pd.Timestamp(datetime(d.year, d.month, d.day)).tz_localize(tz).tz_convert("UTC")
            end = (start + pd.Timedelta(days=1)).isoformat()
            if events and events[-1]["name"] == name and events[-1]["end"] == start.isoformat():
                events[-1]["end"] = end
            else:
                events.append({"name": name, "demand_factor": factor, "start": start.isoformat(), "end": end})
        d += timedelta(days=1)
    return events
