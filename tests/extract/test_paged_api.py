"""The paged reader against the real shop API: throttled, failing, refusing."""

from __future__ import annotations

import duckdb
import pytest
import requests

from threshold_operators.extract.paged_api import PagedApiReader, PageFailed, PageRefused, RetryPolicy
from threshold_operators.shop_api.faults import FaultPolicy
from threshold_operators.shop_api.server import ShopApiServer


def _all_ids(reader, endpoint="/v1/orders", key="order_id"):
    return [r[key] for page in reader.pages(endpoint, {}, page_size=1000) for r in page]


def _source_count(path, table="orders"):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def test_every_row_once_through_429s_and_5xx(shop_file):
    """The server's rate limit runs on a clock that moves only when the client sleeps: the 429s
    and their Retry-After are the same on a fast machine and a loaded CI runner."""
    expected = _source_count(shop_file)
    clock = [0.0]
    waits = []

    def sleep(s):
        waits.append(s)
        clock[0] += s

    faults = FaultPolicy(rate_limit=4, error_rate=0.25, seed=3, clock=lambda: clock[0])
    with ShopApiServer(shop_file, faults=faults) as api:
        reader = PagedApiReader(requests.Session(), api.url, policy=RetryPolicy(max_attempts=12, backoff_s=0.05), sleep=sleep)
        ids = _all_ids(reader)
    assert len(ids) == len(set(ids)) == expected
    assert reader.stats.throttled > 0 and reader.stats.server_errors > 0
    assert any(w >= 1 for w in waits)  # Retry-After was honoured, not guessed


def test_a_page_that_keeps_failing_fails_retryably(shop_file):
    with ShopApiServer(shop_file, faults=FaultPolicy(error_rate=1.0)) as api:
        reader = PagedApiReader(requests.Session(), api.url, policy=RetryPolicy(max_attempts=3, backoff_s=0.01), sleep=lambda s: None)
        with pytest.raises(PageFailed, match="on all 3 attempts"):
            _all_ids(reader)
    assert reader.stats.server_errors == 3


def test_bad_credentials_fail_at_once(shop_file):
    with ShopApiServer(shop_file, token="s3cret") as api:
        reader = PagedApiReader(requests.Session(), api.url, sleep=lambda s: pytest.fail("must not retry a 401"))
        with pytest.raises(PageRefused, match="401"):
            _all_ids(reader)
        session = requests.Session()
        session.headers["Authorization"] = "Bearer s3cret"
        assert len(_all_ids(PagedApiReader(session, api.url))) == _source_count(shop_file)


def test_a_dead_server_is_a_retryable_failure(shop_file):
    with ShopApiServer(shop_file) as api:
        url = api.url
    reader = PagedApiReader(requests.Session(), url, policy=RetryPolicy(max_attempts=2, backoff_s=0.01), timeout_s=2,
                            sleep=lambda s: None)
    with pytest.raises(PageFailed, match="ConnectionError"):
        _all_ids(reader)
