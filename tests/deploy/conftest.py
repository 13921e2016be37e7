"""Fixtures of the deployment tests: the small live shop the real-scheduler and Celery tests serve."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest


def afternoon_timezone(end: datetime) -> str:
    """A fixed-offset zone in which ``end`` is 15:00: the shop's last hours are busy whatever the
    hour the test runs (a shop at 03:00 local time sells next to nothing)."""
    offset = (15 - end.hour + 12) % 24 - 12  # -12 .. +11 hours
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # the Etc zones' sign is inverted


@pytest.fixture
def small_shop(tmp_path):
    """(platform file, end of its data): one shop, 30 SKUs, 10 days up to the start of this hour."""
    from threshold_operators.simulator.run import SimulationSpec, simulate
    from threshold_operators.warehouse.hook import WarehouseHook

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    path = tmp_path / "shop.duckdb"
    hook = WarehouseHook(url=f"duckdb:///{path}")
    simulate(SimulationSpec(shops=1, skus=30, days=10, orders_per_day=800, incidents="none", end=end, seed=5,
                            timezone=afternoon_timezone(end)), hook)
    hook.engine.dispose()
    return path, end
