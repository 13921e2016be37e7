"""The compiled SQL on small, hand-made data, on DuckDB and PostgreSQL: exact states expected.

The rules are in tests/engine/testdata/rules (purpose-built: tiers, persistence, recovery,
no-data, median baselines, day grain, zero baselines, a compound reference).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from threshold_operators.engine.compile import compile_rule
from threshold_operators.engine.evaluate import Outcome, evaluate, warehouse_query
from threshold_operators.rules.catalogue import load_catalogue
from threshold_operators.warehouse.schema import create_schema

DATA = Path(__file__).parent / "testdata"
H = timedelta(hours=1)
T0 = datetime(2026, 9, 10, 2, tzinfo=UTC)  # 10:00 in Asia/Shanghai


@pytest.fixture(scope="module")
def catalogue():
    cat = load_catalogue(DATA / "rules", DATA / "sql")
    assert not cat.all_problems()
    return cat


def _load_orders(hook, per_hour: dict[datetime, int], shop: str = "s1") -> None:
    create_schema(hook.engine)
    rows, n = [], 0
    for hour, count in per_hour.items():
        for k in range(count):
            n += 1
            t = hour + timedelta(minutes=1 + (k * 7) % 58)
            rows.append({"order_id": f"{shop}-{n}", "shop_id": shop, "channel": "app", "customer_id": "c",
                         "status": "paid", "amount": 10, "currency": "CNY", "created_at": t, "paid_at": t,
                         "updated_at": t})
    with hook.engine.begin() as con:
        if not con.execute(sa.text("SELECT COUNT(*) FROM shops WHERE shop_id = :s"), {"s": shop}).scalar():
            con.execute(sa.text("INSERT INTO shops VALUES (:s, 'Shop', 'Asia/Shanghai', 'CNY')"), {"s": shop})
        if rows:
            con.execute(sa.text("INSERT INTO orders (order_id, shop_id, channel, customer_id, status, amount, currency, "
                                "created_at, paid_at, updated_at) VALUES (:order_id, :shop_id, :channel, :customer_id, "
                                ":status, :amount, :currency, :created_at, :paid_at, :updated_at)"), rows)


def _run(catalogue, hook, rule_id, start, end):
    compiled = compile_rule(catalogue.get(rule_id), catalogue.get)
    return evaluate(compiled, warehouse_query(hook), start, end, now=end)


def _states(ev) -> list[tuple]:
    return [(r.bucket, str(r.state), r.severity) for r in ev.results]


def test_tiers_persistence_and_recovery(catalogue, warehouse):
    counts = [6, 11, 4, 4, 2, 6, 0, 6]
    _load_orders(warehouse, {T0 + i * H: c for i, c in enumerate(counts)})
    ev = _run(catalogue, warehouse, "sales.high", T0, T0 + 8 * H)
    assert _states(ev) == [
        (T0, "pending", "yellow"),  # one bucket above 5: not yet for 2
        (T0 + H, "firing", "red"),  # second in a row, above 10
        (T0 + 2 * H, "firing", "red"),  # 4: between recover (3) and breach (5): held, severity kept
        (T0 + 3 * H, "firing", "red"),
        (T0 + 4 * H, "resolved", None),  # 2 <= 3: recovered
        (T0 + 5 * H, "pending", "yellow"),
        (T0 + 7 * H, "pending", "yellow"),  # the silent hour between broke the streak
    ]
    assert ev.outcome == Outcome.BREACH
    b = ev.breaches(catalogue.get("sales.high").rule)[0]
    assert (b["entity"], b["severity"], b["value"], b["threshold"]) == ({"shop_id": "s1"}, "red", 4.0, 10)


def test_hourly_cycles_give_the_backfill_answer(catalogue, warehouse):
    """Live cycles (one hour each) and one backfill of the whole window agree bucket for bucket."""
    counts = [6, 11, 4, 4, 2, 6, 0, 6]
    _load_orders(warehouse, {T0 + i * H: c for i, c in enumerate(counts)})
    whole = _states(_run(catalogue, warehouse, "sales.high", T0, T0 + 8 * H))
    hourly = [s for i in range(8) for s in _states(_run(catalogue, warehouse, "sales.high", T0 + i * H, T0 + (i + 1) * H))]
    assert hourly == whole


def test_silence_counts_as_zero_against_a_median_baseline(catalogue, warehouse):
    day = timedelta(days=1)
    history = {T0 - 3 * day: 10, T0 - 2 * day: 30, T0 - day: 8}  # median 10; the mean (16) would differ
    _load_orders(warehouse, {**history, T0 + H: 9})  # T0 itself: no order at all
    ev = _run(catalogue, warehouse, "sales.drop", T0, T0 + 2 * H)
    # 0 / 10 fires; at T0 + 1h there is no history (baseline 0 < the volume guard): resolved
    assert _states(ev) == [(T0, "firing", "yellow"), (T0 + H, "resolved", None)]
    row = ev.results[0].row
    assert float(row["base_0"]) == 10.0 and float(row["v_0"]) == 0.0 and row["no_data"] == 1


def test_day_buckets_are_shop_local_and_evaluated_once_complete(catalogue, warehouse):
    local_midnight = datetime(2026, 9, 1, 16, tzinfo=UTC)  # 2026-09-02 00:00 in Asia/Shanghai
    _load_orders(warehouse, {local_midnight - H: 5,  # 23:xx on 1 September, local: the day before
                             local_midnight + 3 * H: 2, local_midnight + 20 * H: 2})
    not_complete = _run(catalogue, warehouse, "sales.daily", local_midnight, local_midnight + 23 * H)
    assert not_complete.results == []
    ev = _run(catalogue, warehouse, "sales.daily", local_midnight + 23 * H, local_midnight + 24 * H)
    assert _states(ev) == [(local_midnight, "firing", "red")]
    assert int(ev.results[0].row["orders"]) == 4  # the 5 orders of 1 September are another day


def test_zero_baseline_breaches_only_above_the_volume_guard(catalogue, warehouse):
    _load_orders(warehouse, {T0: 3, T0 + H: 4})  # nothing the day before
    ev = _run(catalogue, warehouse, "sales.spike_from_nothing", T0, T0 + 2 * H)
    assert _states(ev) == [(T0 + H, "firing", "yellow")]


def test_compound_rule_fires_in_the_cycle_of_its_part(catalogue, warehouse):
    _load_orders(warehouse, {T0: 12, T0 + H: 8, T0 + 2 * H: 6})
    part = _states(_run(catalogue, warehouse, "sales.high", T0 + H, T0 + 3 * H))
    both = _states(_run(catalogue, warehouse, "compound.high_and_many_shops", T0 + H, T0 + 3 * H))
    assert part == [(T0 + H, "firing", "yellow"), (T0 + 2 * H, "firing", "yellow")]
    assert both == [(T0 + H, "firing", "yellow"), (T0 + 2 * H, "resolved", None)]  # 6 orders: not above 7


def test_an_empty_window_is_up_to_date(catalogue, warehouse):
    ev = _run(catalogue, warehouse, "sales.high", T0, T0)
    assert ev.outcome == Outcome.UP_TO_DATE and ev.results == []


def _recorded_cycles(catalogue, hook, monkeypatch, hours: int, incomplete=(), edited=None) -> list[bool]:
    """``evaluate_rule`` of ``sales.high`` hour by hour, as the check task runs it (recorded, each
    resuming from the states the one before recorded); ``incomplete``: the hours whose gate on
    ``orders`` fails; ``edited``: (hour, the rule as edited then). Whether each cycle resumed (read
    no lead-in)."""
    from threshold_operators.engine import evaluate as evaluate_module
    from threshold_operators.engine.gates import CycleFacts
    from threshold_operators.operators.threshold_check import evaluate_rule

    resumed: list[bool] = []
    real = evaluate_module.evaluate

    def spy(*args, **kwargs):
        resumed.append(kwargs.get("resume", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate", spy)
    loaded = catalogue.get("sales.high")
    for i in range(hours):
        start = T0 + i * H
        if edited is not None and i == edited[0]:
            loaded = edited[1]
        failing = {"orders": {"kind": "freshness", "detail": "late", "observed_at": start}} if i in incomplete else {}
        monkeypatch.setattr(CycleFacts, "failing_tables", lambda self, tables, failing=failing: failing)
        evaluate_rule(hook, loaded, catalogue, start + 2 * H, "resume-test", window_start=start.isoformat(),
                      window_end=(start + H).isoformat())
    return resumed


def _recorded(hook, since: datetime = T0) -> list[tuple]:
    with hook.engine.connect() as con:
        got = con.execute(sa.text("SELECT bucket, state, severity FROM rule_results WHERE rule_id = 'sales.high' "
                                  "ORDER BY bucket")).all()
    got = [(b if b.tzinfo else b.replace(tzinfo=UTC), s, sev) for b, s, sev in got]
    return [r for r in got if r[0] >= since]


def test_recorded_cycles_resume_from_their_states_without_the_lead_in(catalogue, warehouse, monkeypatch):
    """The check task's cycles read no lead-in once a cycle continues the last recorded one, and
    give the backfill's answer bucket for bucket (persistence 2, the recovery hold, a gap)."""
    counts = [6, 11, 4, 4, 2, 6, 0, 6, 6, 2]
    _load_orders(warehouse, {T0 + i * H: c for i, c in enumerate(counts)})
    whole = _states(_run(catalogue, warehouse, "sales.high", T0, T0 + 10 * H))
    assert _recorded_cycles(catalogue, warehouse, monkeypatch, 10) == [False] + [True] * 9  # the first: nothing before
    assert _recorded(warehouse) == whole
    assert any(s == "resolved" for _, s, _ in whole) and any(s == "pending" for _, s, _ in whole)


def test_a_cycle_after_an_incomplete_one_reads_the_lead_in_again(catalogue, warehouse, monkeypatch):
    """An incomplete cycle (a failing gate) resolves nothing and its states are not where the next
    walk resumes: the next cycle reads the lead-in, so rows that landed late count as they would
    have; the cycles after it resume again."""
    counts = [6, 11, 4, 4, 2, 6, 0, 6]
    _load_orders(warehouse, {T0 + i * H: c for i, c in enumerate(counts)})
    assert _recorded_cycles(catalogue, warehouse, monkeypatch, 8, incomplete={4}) == \
        [False, True, True, True, True, False, True, True]
    got = _recorded(warehouse)
    assert (T0 + 4 * H, "resolved", None) not in got  # the held alert's end, in the incomplete hour: not told
    whole = _states(_run(catalogue, warehouse, "sales.high", T0, T0 + 8 * H))
    assert (T0 + 4 * H, "resolved", None) in whole
    assert [r for r in got if r[0] >= T0 + 5 * H] == [r for r in whole if r[0] >= T0 + 5 * H]


def test_the_first_cycle_after_an_edit_reads_the_lead_in_again(catalogue, warehouse, monkeypatch):
    """States walked under one definition are not resumed from under another: after the yellow
    threshold goes from 5 to 7, the breach of the hour before the edit (6 orders, pending under
    the old rule with for: 2) is no breach, so the edited rule fires an hour later than a resumed
    streak would have it; the cycles after the edit resume again. A change of the texts alone
    keeps the definition (and the resume)."""
    import dataclasses

    from threshold_operators.engine.compile import compile_rule
    from threshold_operators.rules.model import Rule

    original = catalogue.get("sales.high")
    fields = original.rule.model_dump(by_alias=True, exclude_unset=True)
    fields["conditions"][0]["above"] = {"yellow": 7, "red": 10}
    edited = dataclasses.replace(original, rule=Rule.model_validate(fields))
    reworded = dataclasses.replace(original, rule=original.rule.model_copy(update={"runbook": "call the supplier"}))
    assert compile_rule(reworded, catalogue.get).definition == compile_rule(original, catalogue.get).definition
    assert compile_rule(edited, catalogue.get).definition != compile_rule(original, catalogue.get).definition

    counts = [2, 2, 2, 2, 6, 8, 8, 2]
    _load_orders(warehouse, {T0 + i * H: c for i, c in enumerate(counts)})
    assert _recorded_cycles(catalogue, warehouse, monkeypatch, 8, edited=(5, edited)) == \
        [False, True, True, True, True, False, True, True]
    compiled = compile_rule(edited, catalogue.get)
    whole = _states(evaluate(compiled, warehouse_query(warehouse), T0, T0 + 8 * H, now=T0 + 8 * H))
    assert [r for r in whole if r[0] >= T0 + 5 * H] == \
        [(T0 + 5 * H, "pending", "yellow"), (T0 + 6 * H, "firing", "yellow"), (T0 + 7 * H, "resolved", None)]
    assert _recorded(warehouse, since=T0 + 5 * H) == [r for r in whole if r[0] >= T0 + 5 * H]
