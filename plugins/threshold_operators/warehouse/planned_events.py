"""Writing ``planned_events``: each source (the plans file, a planning system, the simulator)
replaces its own rows, in one transaction, and leaves the other sources' alone."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

PLANS_FILE_SOURCE = "plans.yaml"
SIMULATOR_SOURCE = "simulator"


def replace_planned_events(engine, source: str, rows: Iterable[dict]) -> int:
    """Make the rows of ``source`` exactly ``rows`` (creating the table if it is missing); returns
    how many were written. A reader sees the old rows or the new ones, never a mix."""
    from sqlalchemy import delete, insert

    from threshold_operators.warehouse.schema import planned_events

    rows = [dict(r, source=source) for r in rows]
    planned_events.create(engine, checkfirst=True)
    with engine.begin() as con:
        con.execute(delete(planned_events).where(planned_events.c.source == source))
        if rows:
            con.execute(insert(planned_events), rows)
    return len(rows)


def load_plans_file(engine, path, now: datetime) -> int:
    """Validate ``path`` (``rules.plans``) and make it the table's ``plans.yaml`` rows; raises
    ``located_yaml.ConfigFileError`` (nothing written) when the file has problems."""
    from threshold_operators.rules.plans import load_plans, plan_rows

    return replace_planned_events(engine, PLANS_FILE_SOURCE, plan_rows(load_plans(path), PLANS_FILE_SOURCE, now))


def read_planned_events(engine) -> list[dict]:
    """Every row, by start, for people (``storefence plans list``); none when the table is missing."""
    from sqlalchemy import inspect, select

    from threshold_operators.warehouse.schema import planned_events as t

    if not inspect(engine).has_table(t.name):
        return []
    with engine.connect() as con:
        return [dict(r._mapping) for r in con.execute(
            select(t).order_by(t.c.starts_at, t.c.source, t.c.event_id, t.c.shop_id, t.c.scope, t.c.scope_value))]
