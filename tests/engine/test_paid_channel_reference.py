"""traffic.paid_cost_quality against its reference, on DuckDB and PostgreSQL (docs/rules.md, "The
paid-channel rule and a shop's history"): the same 24 hours a year earlier where the channel has a
year of paid traffic, else the same 24 hours of the previous 4 weeks (at least 2 of them), else
nothing. Every window is pinned: no test reads the clock.

The incident shop (tests/conftest.py) starts on 2025-08-26 00:00 UTC: a year of history from
2026-08-25, two weeks from 2025-09-09; its paid-channel incident (douyin) has a year behind it. The
young shop below is 35 days old: the same incident, caught through the fallback.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from threshold_operators.engine.compile import compile_rule, scored_sql
from threshold_operators.engine.evaluate import evaluate, warehouse_query
from threshold_operators.rules.catalogue import load_catalogue

RULE = "traffic.paid_cost_quality"
H = timedelta(hours=1)
SHOP_START = datetime(2025, 8, 26, tzinfo=UTC)  # the incident shop's first hour
# Data time from the incident's start to the end of the first alerting bucket (docs/rules.md):
# the 24-hour rates cross +50% / -30% once about 80% of the window's paid clicks are degraded.
MAX_DELAY = timedelta(hours=24)


@pytest.fixture(scope="module")
def catalogue():
    cat = load_catalogue()
    assert not cat.all_problems()
    return cat


def _scored(catalogue, hook, start: datetime, end: datetime) -> list[dict]:
    """Every evaluated channel-hour of [start, end) with its reference and changes (firing or not)."""
    compiled = compile_rule(catalogue.get(RULE), catalogue.get)
    rows = warehouse_query(hook)(scored_sql(compiled), compiled.params(start, end))
    return sorted((r for r in rows if start <= _utc(r["bucket"]) < end), key=lambda r: (r["channel"], _utc(r["bucket"])))


def _utc(ts) -> datetime:
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


def _first_alert(catalogue, hook, inc: dict):
    start = datetime.fromisoformat(inc["start"])
    end = datetime.fromisoformat(inc["end"])
    compiled = compile_rule(catalogue.get(RULE), catalogue.get)
    ev = evaluate(compiled, warehouse_query(hook), start.replace(minute=0), end + 2 * H, now=end + 2 * H)
    firing = sorted((r for r in ev.firing if r.entity.get("channel") == inc["entity"]
                     and r.entity.get("shop_id") == inc["shop_id"]), key=lambda r: r.bucket)
    others = {r.entity_key for r in ev.firing} - {r.entity_key for r in firing}
    return firing, others, start


def test_the_incident_is_caught_year_over_year(catalogue, incident_shop):
    hook, labels = incident_shop
    inc = next(i for i in labels["incidents"] if i["id"] == "paid_channel_quality")
    firing, others, start = _first_alert(catalogue, hook, inc)
    assert firing, "the paid-channel incident was not caught"
    assert not others
    first = firing[0]
    assert first.row["reference"] == "year_over_year"
    assert first.severity == "yellow"
    assert first.row["cost_change_pct"] > 50 and first.row["conversion_change_pct"] < -30
    assert first.bucket + H - start <= MAX_DELAY


def test_a_year_of_history_gives_year_over_year(catalogue, incident_shop):
    hook, _ = incident_shop
    day = datetime(2026, 8, 27, tzinfo=UTC)
    rows = _scored(catalogue, hook, day, day + 6 * H)
    assert {r["channel"] for r in rows} == {"app", "web", "douyin", "wechat"}
    assert {r["reference"] for r in rows} == {"year_over_year"}


def test_less_than_a_year_falls_back_to_the_previous_four_weeks(catalogue, incident_shop):
    hook, _ = incident_shop
    day = datetime(2026, 7, 6, tzinfo=UTC)  # 314 days after the first hour: no year-ago data
    rows = _scored(catalogue, hook, day, day + 6 * H)
    assert len(rows) == 4 * 6
    assert {r["reference"] for r in rows} == {"previous_4_weeks"}
    # the same 24 hours 1-4 weeks earlier, pooled: an ordinary week's cost is close to it
    assert all(abs(r["cost_change_pct"]) < 15 and r["conversion_change_pct"] is not None for r in rows)


def test_the_first_two_weeks_have_no_reference(catalogue, incident_shop):
    """The rule cannot fire before a channel's 15th day: the hour two weeks after its first."""
    hook, _ = incident_shop
    first = SHOP_START + timedelta(days=14)
    rows = _scored(catalogue, hook, first - 4 * H, first + 4 * H)
    before = [r for r in rows if _utc(r["bucket"]) < first]
    after = [r for r in rows if _utc(r["bucket"]) >= first]
    assert before and after
    assert all(r["reference"] is None and r["cost_change_pct"] is None and r["v_0"] is None for r in before)
    assert {r["reference"] for r in after} == {"previous_4_weeks"}


# --- a young shop: 35 days of history, the seed's paid-channel incident on its 25th day, at the
# catalogue test shop's volume (2,500 orders a day: about 270 paid douyin orders a day; at 1,200 a
# day the 24-hour conversion is noisy enough that a seed can take 35 hours to show the -30%) ------
YOUNG_END = datetime(2026, 9, 30, tzinfo=UTC)


@pytest.fixture
def young_shop(warehouse, tmp_path):
    from threshold_operators.simulator.incidents import load_incidents
    from threshold_operators.simulator.run import SimulationSpec, simulate

    paid = next(i for i in load_incidents("default") if i.id == "paid_channel_quality")
    labels_path = tmp_path / "labels.yaml"
    simulate(SimulationSpec(shops=1, skus=24, days=35, orders_per_day=2500, seed=11, end=YOUNG_END,
                            incidents=[paid.model_copy(update={"day": 10})]),
             warehouse, labels_out=labels_path)
    return warehouse, yaml.safe_load(labels_path.read_text(encoding="utf-8"))


def test_a_young_shop_is_protected_by_the_fallback(catalogue, young_shop):
    hook, labels = young_shop
    [inc] = labels["incidents"]
    assert datetime.fromisoformat(inc["start"]) - datetime.fromisoformat(labels["window"]["start"]) < timedelta(days=30)
    firing, others, start = _first_alert(catalogue, hook, inc)
    assert firing, "the young shop's paid-channel incident was not caught"
    assert not others
    assert {r.row["reference"] for r in firing} == {"previous_4_weeks"}
    assert firing[0].bucket + H - start <= MAX_DELAY
