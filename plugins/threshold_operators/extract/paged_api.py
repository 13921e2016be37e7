"""Reading a paginated platform API through an Airflow HTTP connection, politely and patiently.

One retry policy for every source (``RetryPolicy``): a 429 waits for its ``Retry-After``; a 5xx,
a timeout or a dropped connection waits with exponential backoff; after ``max_attempts`` the
page fails (``PageFailed``, retryable: Airflow retries the task). A 4xx other than 429 is our
mistake or bad credentials and will not heal by waiting: it fails at once (``PageRefused``).
The clock and the sleep are injected, so tests need not wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class PageFailed(AirflowException):
    """A page kept failing (5xx, timeouts, 429 past the budget): retryable by Airflow."""


class PageRefused(AirflowFailException):
    """The API refused the request itself (400, 401, 403, 404): retrying will not help."""


@dataclass
class RetryPolicy:
    max_attempts: int = 6
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 120.0  # a Retry-After beyond this fails the page instead of sleeping

    def backoff(self, attempt: int) -> float:
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)


@dataclass
class PageStats:
    pages: int = 0
    rows: int = 0
    throttled: int = 0
    server_errors: int = 0
    waited_s: float = 0.0


class PagedApiReader:
    """Follow a table's cursors from ``updated_since`` to the end.

    :param session: a ``requests.Session`` from ``HttpHook.get_conn()`` (auth and headers from
        the connection); ``base_url`` is ``HttpHook.base_url``.
    """

    def __init__(self, session, base_url: str, *, policy: RetryPolicy | None = None, timeout_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.session, self.base_url = session, base_url.rstrip("/")
        self.policy = policy or RetryPolicy()
        self.timeout_s, self.sleep = timeout_s, sleep
        self.stats = PageStats()

    def _get(self, endpoint: str, params: dict[str, Any]) -> dict:
        import requests

        url = f"{self.base_url}/{endpoint.lstrip('/')}"
        for attempt in range(1, self.policy.max_attempts + 1):
            try:
                resp = self.session.get(url, params=params, timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                why, wait = f"{type(exc).__name__}", self.policy.backoff(attempt)
                self.stats.server_errors += 1
            else:
                if resp.status_code == 200:
                    return resp.json()
                if resp.status_code == 429:
                    self.stats.throttled += 1
                    why = "429 Too Many Requests"
                    try:
                        wait = float(resp.headers.get("Retry-After", self.policy.backoff(attempt)))
                    except ValueError:
                        wait = self.policy.backoff(attempt)
                    if wait > self.policy.max_retry_after_s:
                        raise PageFailed(f"GET {url}: the API asks to wait {wait:.0f} s (Retry-After), more than "
                                         f"{self.policy.max_retry_after_s:.0f} s; the task will be retried")
                elif resp.status_code >= 500:
                    self.stats.server_errors += 1
                    why, wait = f"{resp.status_code}", self.policy.backoff(attempt)
                else:
                    raise PageRefused(f"GET {url} params={params}: {resp.status_code} {resp.text[:300]}")
            if attempt == self.policy.max_attempts:
                raise PageFailed(f"GET {url}: {why} on all {attempt} attempts; the task will be retried")
            self.stats.waited_s += wait
            self.sleep(wait)
        raise AssertionError("unreachable")

    def pages(self, endpoint: str, params: dict[str, Any], page_size: int = 1000) -> Iterator[list[dict]]:
        """Yield the rows of every page, following ``next_cursor`` until ``has_more`` is false."""
        cursor = None
        while True:
            query = {**params, "limit": page_size} | ({"cursor": cursor} if cursor else {})
            page = self._get(endpoint, query)
            rows = page.get("data", [])
            self.stats.pages += 1
            self.stats.rows += len(rows)
            yield rows
            if not page.get("has_more"):
                return
            cursor = page.get("next_cursor")
            if not cursor:
                raise PageFailed(f"{endpoint}: has_more without next_cursor after {self.stats.pages} page(s)")
