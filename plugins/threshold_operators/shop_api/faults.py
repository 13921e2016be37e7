"""Faults the shop API injects: a global rate limit (token bucket) and random server errors.

A real platform API throttles and fails now and then; extract code must cope with both. The
policy is deterministic: errors come from a seeded ``random.Random`` and the bucket reads an
injected clock, so tests can step time without sleeping.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Statuses of the injected server errors.
ERROR_STATUSES: tuple[int, ...] = (500, 502, 503)


@dataclass
class FaultPolicy:
    """What goes wrong with a data request, decided per request by ``check``.

    :param rate_limit: requests per second allowed over all clients (a token bucket holding
        ``max(1, rate_limit)`` tokens); ``None`` for no limit.
    :param error_rate: share of admitted requests, 0 to 1, answered with a random 500, 502 or 503.
    :param seed: seed of the random generator that picks the errors.
    :param clock: monotonic seconds; injected by tests.
    """

    rate_limit: float | None = None
    error_rate: float = 0.0
    seed: int = 0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    _rng: random.Random = field(init=False, repr=False, compare=False)
    _tokens: float = field(init=False, repr=False, compare=False)
    _last: float | None = field(init=False, repr=False, compare=False)
    _lock: threading.Lock = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise ValueError(
                f"rate_limit must be a positive number of requests per second, got {self.rate_limit!r}"
            )
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be between 0 and 1, got {self.error_rate!r}")
        self._rng = random.Random(self.seed)
        self._tokens = self.burst
        self._last = None
        self._lock = threading.Lock()

    @property
    def burst(self) -> float:
        """Requests the bucket lets through at once (its capacity)."""
        return max(1.0, float(self.rate_limit)) if self.rate_limit is not None else math.inf

    def check(self) -> tuple[int, int | None] | None:
        """``None`` to serve the request, else ``(status, retry_after_seconds)``.

        A throttled request gets ``(429, seconds until a token is free, at least 1)``; an
        injected error gets ``(500 | 502 | 503, None)``. A throttled request takes no token.
        """
        with self._lock:
            if self.rate_limit is not None:
                self._refill()
                if self._tokens < 1.0:
                    wait = (1.0 - self._tokens) / self.rate_limit
                    return 429, max(1, math.ceil(wait))
                self._tokens -= 1.0
            if self.error_rate > 0.0 and self._rng.random() < self.error_rate:
                return self._rng.choice(ERROR_STATUSES), None
            return None

    def _refill(self) -> None:
        now = self.clock()
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_limit)
        self._last = now
