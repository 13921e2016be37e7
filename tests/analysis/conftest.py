"""What the analysis tests share: a metric CSV with a burst (the CLI's --series)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta

import pytest

T0 = datetime(2026, 8, 3, tzinfo=UTC)  # the CSV's first hour


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """50 days of one SKU at 12 orders an hour, 40 at 10:00 on day 45 (red), 35 on day 46 (yellow)."""
    path = tmp_path_factory.mktemp("series") / "orders.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["ts", "entity", "orders"])
        for h in range(24 * 50):
            t = (T0 + timedelta(hours=h)).isoformat()
            w.writerow([t, "A", 40 if h == 24 * 45 + 10 else 35 if h == 24 * 46 + 10 else 12])
    return path
