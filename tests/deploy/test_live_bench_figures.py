"""The live bench's split of a task's wait between the pool and the executor (bench/live_bench.py)."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "live_bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("live_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def at(s: float) -> datetime:
    return datetime(2026, 11, 30, 15, tzinfo=UTC) + timedelta(seconds=s)


def test_the_pool_is_full_only_while_every_slot_is_held(bench):
    held = [(at(0), at(10)), (at(5), at(20)), (at(8), at(30))]
    assert bench.full_spans(held, 2) == [(at(5), at(20))]
    assert bench.full_spans(held, 3) == [(at(8), at(10))]
    assert bench.full_spans(held, 4) == []


def test_a_wait_counts_for_the_pool_only_while_it_was_full(bench):
    full = [(at(5), at(20)), (at(40), at(50))]
    assert bench.overlap_s(at(0), at(12), full) == 7.0  # 5..12
    assert bench.overlap_s(at(21), at(39), full) == 0.0  # waited for the executor only
    assert bench.overlap_s(at(0), at(60), full) == 25.0


def test_a_slot_freed_and_taken_at_the_same_instant_leaves_the_pool_full(bench):
    # one task ends at 10 as the next is queued at 10: the pool stays full without a gap
    held = [(at(0), at(10)), (at(10), at(20)), (at(0), at(20))]
    assert bench.full_spans(held, 2) == [(at(0), at(20))]
