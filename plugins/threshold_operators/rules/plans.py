"""Planned events: the calendar file ``include/rules/plans.yaml``.

A shop declares what it expects (双11, 618, a booked live stream): when, and how many times its
normal orders the whole shop, a category or a SKU should sell. During an event, rules that compare
a metric with its baseline compare it with the baseline scaled by the plan (``engine.compile``,
``Rule.plans``), so a promotion that goes as planned raises nothing and a SKU selling three times
its plan still fires.

The file is data, validated like the rule files (every problem at once, ``file:line: field:
message``); ``storefence plans load`` writes it to the warehouse table ``planned_events``
(``warehouse.planned_events``), which a planning system may also fill and which the compiled
rules read. Imported at DAG-parse time: pydantic and the standard library only.

```yaml
events:
  - id: double11_2026
    name: 双11
    start: 2026-11-11T00:00:00+08:00       # an offset is required: a naive time is ambiguous
    end: 2026-11-12T00:00:00+08:00         # exclusive
    uplifts:
      - {shop: shop-01, factor: 4}                              # the whole shop: 4x its normal orders
      - {shop: shop-01, category: infant_formula, factor: 6}    # a category: overrides the shop's
      - {shop: shop-01, sku: SKU-INF-000003, factor: 10}        # a SKU: overrides both
```
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from threshold_operators import located_yaml

EVENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SHOP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")  # shops.shop_id is VARCHAR(32)
SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # products.sku is VARCHAR(64)
CATEGORY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # products.category codes: infant_formula, ...
SCOPES = ("shop", "category", "sku")  # least to most specific: the most specific wins
MAX_FACTOR = 100.0
MAX_DURATION = timedelta(days=92)  # a season (618 runs for weeks), not a standing change of level


def _matches(pattern: re.Pattern, value: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"{value!r} is not {what} (pattern {pattern.pattern})")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Uplift(_Strict):
    """Expected orders during the event, as a multiple of normal, for a shop, a category or a SKU."""

    shop: str = Field(description="shop_id")
    category: str | None = Field(None, description="a category code (products.category); the SKUs of the category")
    sku: str | None = Field(None, description="one SKU of the shop")
    factor: float = Field(gt=0, le=MAX_FACTOR, description="expected orders / normal orders (4: four times normal; "
                                                           "0.5: half, e.g. a planned shutdown)")

    @field_validator("shop")
    @classmethod
    def _shop(cls, v):
        return _matches(SHOP_ID, v, "a shop id")

    @field_validator("sku")
    @classmethod
    def _sku(cls, v):
        return v if v is None else _matches(SKU, v, "a SKU")

    @field_validator("category")
    @classmethod
    def _category(cls, v):
        return v if v is None else _matches(CATEGORY, v, "a category code")

    @model_validator(mode="after")
    def _one_scope(self):
        if self.category is not None and self.sku is not None:
            raise ValueError("give a category or a sku, not both (a SKU's own factor already overrides its category's)")
        return self

    @property
    def scope(self) -> str:
        return "sku" if self.sku is not None else "category" if self.category is not None else "shop"

    @property
    def scope_value(self) -> str:
        return self.sku or self.category or ""


class PlannedEvent(_Strict):
    id: str = Field(description="unique in the file: lower-case letters, digits, _ and -")
    name: str = Field(min_length=1, max_length=200, description="what people call it (双11, 618, live stream)")
    start: datetime = Field(description="ISO 8601 with an offset")
    end: datetime = Field(description="exclusive; ISO 8601 with an offset")
    uplifts: list[Uplift] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _id(cls, v):
        return _matches(EVENT_ID, v, "an event id")

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: datetime):
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError(f"{v.isoformat()} has no offset: write it as 2026-11-11T00:00:00+08:00 (or Z for UTC)")
        return v

    @model_validator(mode="after")
    def _range(self):
        if self.end <= self.start:
            raise ValueError(f"end ({self.end.isoformat()}) is not after start ({self.start.isoformat()})")
        if self.end - self.start > MAX_DURATION:
            raise ValueError(f"the event lasts {self.end - self.start}; at most {MAX_DURATION.days} days "
                             f"(a lasting change of level is the baseline's job, not a plan's)")
        return self


class PlanFile(_Strict):
    """``include/rules/plans.yaml``."""

    events: list[PlannedEvent] = Field(default_factory=list)


PLANS_FILE = "plans.yaml"


def load_plans(path: str | Path) -> PlanFile:
    """The validated plans file; ``located_yaml.ConfigFileError`` with every problem at once."""
    path = Path(path)
    parsed: PlanFile = located_yaml.validate(PlanFile, path)
    _, lines = located_yaml.load(path)
    problems, seen = [], {}
    for i, event in enumerate(parsed.events):
        if event.id in seen:
            problems.append(f"{path}:{located_yaml.line_of(lines, ('events', i, 'id'))}: events.{i}.id: "
                            f"{event.id!r} is already used at line {seen[event.id]}")
        else:
            seen[event.id] = located_yaml.line_of(lines, ("events", i, "id"))
        targets: dict[tuple, int] = {}
        for j, u in enumerate(event.uplifts):
            key = (u.shop, u.scope, u.scope_value)
            if key in targets:
                problems.append(f"{path}:{located_yaml.line_of(lines, ('events', i, 'uplifts', j))}: "
                                f"events.{i}.uplifts.{j}: the same {u.scope} as uplifts.{targets[key]}; "
                                f"one factor per shop, category or SKU and event")
            targets.setdefault(key, j)
    if problems:
        raise located_yaml.ConfigFileError(problems)
    return parsed


def plan_rows(plans: PlanFile, source: str, now: datetime) -> list[dict]:
    """The ``planned_events`` rows of a plans file (one per event and uplift), all of ``source``."""
    from datetime import UTC

    return [{"source": source, "event_id": e.id, "name": e.name, "shop_id": u.shop, "scope": u.scope,
             "scope_value": u.scope_value, "uplift": u.factor, "starts_at": e.start.astimezone(UTC),
             "ends_at": e.end.astimezone(UTC), "updated_at": now}
            for e in plans.events for u in e.uplifts]
