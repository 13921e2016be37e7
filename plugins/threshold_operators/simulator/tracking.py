"""A parcel's tracking scans: picked up, 2 to 4 scans on the way, delivered (none while stalled).

The carrier scans a parcel when it picks it up, at evenly spaced points on its way, and when it
delivers it: 4 to 6 events a parcel, so the history stays a few rows per order. The scans on the
way split the time to delivery into equal steps (at most 32 hours: delivery comes 20 to 96
hours after shipping), so an ordinary parcel is never 48 hours without an update; a parcel of a
tracking stall gets no scan after its pickup. ``shipments.last_tracking_at`` is the latest of
them, and ``tracking_events`` holds each one (``tracking_event_rows``).
"""

from __future__ import annotations

import numpy as np

from threshold_operators.simulator.seasonality import HOUR_S

MIN_SCANS, MAX_SCANS = 2, 4  # scans on the way, between the pickup and the delivery


def scan_step(shipped: np.ndarray, delivered: np.ndarray, draw: np.ndarray) -> np.ndarray:
    """Seconds between a parcel's scans on the way: its time to delivery over (scans + 1), the
    number of scans chosen from ``draw`` (an integer drawn per parcel), so no new random number
    is drawn and the rest of the simulation stays as it was."""
    scans = MIN_SCANS + draw % (MAX_SCANS - MIN_SCANS + 1)
    span = np.clip(delivered - shipped, 0, 200 * 24 * HOUR_S)  # unshipped parcels: NEVER - NEVER
    return np.maximum(-(-span // (scans + 1)), HOUR_S)


def scans_on_the_way(shipped: np.ndarray, delivered: np.ndarray, is_delivered: np.ndarray,
                     stalled: np.ndarray, step: np.ndarray, end: int, keep: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(row, time) of every scan between pickup and delivery that happened before ``end``:
    ``shipped + k * step`` for k = 1, 2, ... before the delivery; none for a stalled parcel (or a
    row ``keep`` leaves out)."""
    n = np.where(is_delivered, -(-(delivered - shipped) // step) - 1, (end - shipped) // step)
    n = np.where(stalled if keep is None else stalled | ~keep, 0, np.maximum(n, 0))
    row = np.repeat(np.arange(len(shipped)), n)
    k = np.arange(len(row)) - np.repeat(np.cumsum(n) - n, n) + 1
    return row, shipped[row] + k * step[row]


def tracking_event_rows(shipped: np.ndarray, delivered: np.ndarray, is_delivered: np.ndarray,
                        stalled: np.ndarray, step: np.ndarray, end: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, time, status) of every tracking event before ``end`` of shipped parcels (rows of
    ``shipments``), ordered by row and time."""
    every = np.arange(len(shipped))
    scan_row, scan_at = scans_on_the_way(shipped, delivered, is_delivered, stalled, step, end)
    done = every[is_delivered]
    row = np.concatenate([every, scan_row, done])
    at = np.concatenate([shipped, scan_at, delivered[done]])
    status = np.concatenate([np.full(len(every), "picked_up", dtype=object),
                             np.full(len(scan_row), "in_transit", dtype=object),
                             np.full(len(done), "delivered", dtype=object)])
    order = np.lexsort((at, row))
    return row[order], at[order], status[order]
