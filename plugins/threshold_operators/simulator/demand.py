"""Expected demand: orders per shop and hour before noise and incidents, and the traffic model.

Visitors arrive per channel and source (Poisson); each converts with the channel's rate
(binomial), so orders, traffic and conversion are consistent with each other.
"""

from __future__ import annotations

import numpy as np

from threshold_operators.simulator.seasonality import (
    DAY_NOISE_SIGMA,
    HOUR_PROFILE,
    WEEKDAY_FACTOR,
    YEARLY_TREND,
    LocalClock,
    Window,
)

# channel order: app, web, douyin, wechat (incidents.CHANNELS)
CHANNEL_SHARE = np.array([0.35, 0.20, 0.30, 0.15])  # of visitors
PAID_SHARE = np.array([0.20, 0.35, 0.50, 0.25])  # of a channel's visitors
# conversion rate [channel, source]: organic, paid
BASE_CONVERSION = np.array([[0.034, 0.026], [0.030, 0.022], [0.028, 0.020], [0.032, 0.024]])
SOURCE_SHARE = np.stack([1 - PAID_SHARE, PAID_SHARE], axis=1)  # [channel, source]
BLENDED_CONVERSION = float((CHANNEL_SHARE[:, None] * SOURCE_SHARE * BASE_CONVERSION).sum())
COST_PER_CLICK = np.array([0.6, 1.2, 0.8, 0.9])  # CNY per paid visitor
CAMPAIGN_SPLIT = np.array([0.6, 0.4])  # two campaigns per channel
CLICK_THROUGH_RATE = 0.025


def expected_orders(
    rng: np.random.Generator, window: Window, clocks: list[LocalClock], shop_base: np.ndarray
) -> np.ndarray:
    """lambda[shop, hour]: expected orders in each window hour, incidents aside."""
    weekday = WEEKDAY_FACTOR / WEEKDAY_FACTOR.mean()
    years = np.arange(window.n_hours) / (24 * 365)
    lam = np.empty((len(clocks), window.n_hours))
    for s, clock in enumerate(clocks):
        day_index = (clock.date - clock.date[0]).astype(np.int64)
        noise = rng.lognormal(-DAY_NOISE_SIGMA**2 / 2, DAY_NOISE_SIGMA, day_index.max() + 1)[day_index]
        lam[s] = (
            shop_base[s] / 24
            * HOUR_PROFILE[clock.hour]
            * weekday[clock.weekday]
            * clock.promo
            * (1 + YEARLY_TREND * years)
            * noise
        )
    return lam


def visitors_expected(lam: np.ndarray, visitors_mult: np.ndarray) -> np.ndarray:
    """Expected visitors [shop, hour, channel, source] that convert into ``lam`` orders."""
    base = lam / BLENDED_CONVERSION * visitors_mult
    return base[:, :, None, None] * CHANNEL_SHARE[None, None, :, None] * SOURCE_SHARE[None, None, :, :]
