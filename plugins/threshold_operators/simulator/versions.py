"""Every version of the rows that change: what the platform showed at each moment, not only at the end.

The generators write each row as it stands at the end of the window. A live clock looks at the
shop at earlier moments, when an order later cancelled was still ``pending`` and a parcel later
delivered was ``in_transit`` with an older tracking time; the shop API serves those versions
(``shop_api.versions``). They are derived here from the timestamps drawn with each order, so the
last version of a row is exactly the row the table holds:

- ``orders``: placed (``pending``), each payment attempt (``pending`` after a failure, ``paid``
  after a success), the auto-cancel 30 minutes after an unpaid order was placed (``cancelled``),
  shipped, delivered (``completed``), each refund request (``refunded``);
- ``shipments``: picked up (``in_transit``), each tracking update, delivered;
- ``traffic`` and ``ad_spend``: an hour's row is published when the hour is over (the platform
  reports an hour once it is complete), so its one version is valid from the end of its hour.

Only rows whose change-tracking column is at or after ``history_from`` get versions: older rows
reached their last state before any moment the live clock shows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from threshold_operators.simulator.seasonality import HOUR_S
from threshold_operators.simulator.tracking import scans_on_the_way

VALID_FROM = "valid_from"
#: The tables with versions, and how far before ``history_from`` their rows need one (an hourly
#: row published at the end of its hour is still unpublished an hour before).
VERSIONED = {"orders": 0, "shipments": 0, "traffic": HOUR_S, "ad_spend": HOUR_S}


def _ts(seconds: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    us = seconds.astype(np.int64) * 1_000_000
    return pa.array(us, type=pa.timestamp("us", tz="UTC"), mask=None if valid is None else ~valid)


def _events(*slots: tuple[np.ndarray, np.ndarray, np.ndarray, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, time, status) of the events of every slot where it happens, one per (row, time).

    Each slot is (rows, times, happens, status); slots are given in the order of a row's life,
    so at equal times the later slot wins.
    """
    rows, times, ranks, statuses = [], [], [], []
    for rank, (row, at, happens, status) in enumerate(slots):
        row, at = row[happens], at[happens]
        rows.append(row)
        times.append(at)
        ranks.append(np.full(len(row), rank))
        statuses.append(np.full(len(row), status, dtype=object))
    row, at, rank, status = (np.concatenate(x) for x in (rows, times, ranks, statuses))
    order = np.lexsort((rank, at, row))
    row, at, status = row[order], at[order], status[order]
    last = np.ones(len(row), dtype=bool)
    last[:-1] = (row[1:] != row[:-1]) | (at[1:] != at[:-1])
    return row[last], at[last], status[last]


def _replace(table: pa.Table, columns: dict[str, pa.Array], valid_from: np.ndarray) -> pa.Table:
    for name, values in columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, values.cast(table.schema.field(name).type))
    return table.append_column(VALID_FROM, _ts(valid_from))


def order_versions(orders: pa.Table, history_from: int, *, created, t1, tries, fail1, t2, retry, fail2,
                   paid_at, paid, cancel_at, cancelled, shipped, has_ship, delivered, is_delivered,
                   refund_row, refund_at, updated) -> pa.Table:
    """The versions of the orders last changed at or after ``history_from`` (seconds).

    Arrays are per order (row of ``orders``), except ``refund_row``/``refund_at``: the order and
    time of each refunded line. ``tries``, ``retry``, ``cancelled``, ``has_ship`` and
    ``is_delivered`` say which events happened within the window.
    """
    keep = updated >= history_from
    every = np.arange(len(created))
    row, at, status = _events(
        (every, created, keep, "pending"),
        (every, t1, keep & tries, "pending"),
        (every, t1, keep & tries & ~fail1, "paid"),
        (every, t2, keep & retry, "pending"),
        (every, t2, keep & retry & ~fail2, "paid"),
        (every, cancel_at, keep & cancelled, "cancelled"),
        (every, shipped, keep & has_ship, "shipped"),
        (every, delivered, keep & is_delivered, "completed"),
        (refund_row, refund_at, keep[refund_row], "refunded"),
    )
    is_paid = paid[row] & (at >= paid_at[row])
    return _replace(orders.take(pa.array(row)), {
        "status": pa.array(status.astype(str)),
        "paid_at": _ts(np.where(is_paid, paid_at[row], 0), is_paid),
        "updated_at": _ts(at),
    }, at)


def shipment_versions(shipments: pa.Table, history_from: int, end: int, *, shipped, delivered, is_delivered,
                      stalled, tick, last_tracking) -> pa.Table:
    """The versions of the shipments last changed at or after ``history_from``: picked up, every
    tracking update (none while stalled), delivered (``simulator.tracking``; ``tick`` is the
    step between scans). Arrays are per row of ``shipments``."""
    keep = last_tracking >= history_from
    every = np.arange(len(shipped))
    t_row, t_at = scans_on_the_way(shipped, delivered, is_delivered, stalled, tick, end, keep)
    row, at, status = _events(
        (every, shipped, keep, "in_transit"),
        (t_row, t_at, np.ones(len(t_row), dtype=bool), "in_transit"),
        (every, delivered, keep & is_delivered, "delivered"),
    )
    done = status == "delivered"
    return _replace(shipments.take(pa.array(row)), {
        "status": pa.array(status.astype(str)),
        "last_tracking_at": _ts(at),
        "delivered_at": _ts(np.where(done, at, 0), done),
        "updated_at": _ts(at),
    }, at)


def hourly_versions(table: pa.Table, hour_s: np.ndarray, history_from: int) -> pa.Table:
    """An hourly row's one version, published at the end of its hour."""
    row = np.flatnonzero(hour_s + HOUR_S >= history_from)
    return table.take(pa.array(row)).append_column(VALID_FROM, _ts(hour_s[row] + HOUR_S))
