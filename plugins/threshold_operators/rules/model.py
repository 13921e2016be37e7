"""The rule model: what an analyst writes in ``include/rules/<domain>.yaml``.

One pydantic model validates every rule file; ``rule_file_json_schema()`` publishes it as a
JSON Schema (``docs/rules.schema.json``) so editors autocomplete the YAML. Cross-file checks
(the SQL, the warehouse's tables, references between rules) live in ``rules.lint``.

Imported at DAG-parse time: pydantic and the standard library only.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from threshold_operators.durations import Duration

DOMAINS = ("sales", "inventory", "customer", "traffic", "finance", "compound")
Domain = Literal["sales", "inventory", "customer", "traffic", "finance", "compound"]

# Entities a rule fans out over, and the columns that identify one in a metric query's output.
ENTITY_KEYS: dict[str, tuple[str, ...]] = {
    "shop": ("shop_id",),
    "sku": ("shop_id", "sku"),
    "brand": ("shop_id", "brand"),
    "channel": ("shop_id", "channel"),
    "warehouse": ("shop_id", "warehouse_id"),
    "batch": ("shop_id", "batch_id"),
    "gateway": ("shop_id", "gateway"),
}
Entity = Literal["shop", "sku", "brand", "channel", "warehouse", "batch", "gateway"]

SEVERITIES = ("blue", "yellow", "red")  # ascending; the highest tier that holds wins
Severity = Literal["blue", "yellow", "red"]
SLICE = timedelta(minutes=5)  # the finest bucket: rolling rules sum 5-minute slices (``window``)
GRAINS: dict[str, timedelta] = {"5m": SLICE, "hour": timedelta(hours=1), "day": timedelta(days=1)}

_ID = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
# The one pattern of every name from a rule file that reaches SQL (metrics, attributes, param
# names, min_volume metrics): lower-case letters, digits and _, at most 63 characters (PostgreSQL's
# limit). The engine also quotes them (engine/compile.py).
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_NAME = IDENTIFIER
# query: a path below the SQL folder, e.g. sales/orders_by_sku_hour.sql (no .., no absolute path).
QUERY_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*\.sql$")
# An action's endpoint: a path on the connection's host, e.g. /v1/purchase-suggestions.
ENDPOINT = re.compile(r"^(/[A-Za-z0-9_~-][A-Za-z0-9_.~-]*)*/?$")
CONN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
# Storefence's own connections (the acknowledge-link key, the state store, the warehouse): never an action's.
RESERVED_CONN_IDS = frozenset({"storefence_ack", "storefence_state", "storefence_warehouse"})


def _identifier(v: str, what: str = "column name") -> str:
    if not isinstance(v, str) or not IDENTIFIER.match(v):
        raise ValueError(f"{v!r} is not a {what} (lower-case letters, digits and _, starting with a letter or _, "
                         f"at most 63 characters)")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Names(_Strict):
    zh: str = Field(min_length=1, description="Chinese display name (what operations teams read)")
    en: str = Field(min_length=1, description="English display name")


class Localized(_Strict):
    """A text people read, in each language: ``{zh: ..., en: ...}``, or one string, which is the
    text in both (the older form). A channel's ``language`` (routing.yaml) picks one."""

    zh: str = Field(min_length=1, description="Chinese (sent to channels of language zh, the default)")
    en: str = Field(min_length=1, description="English (sent to channels of language en)")

    @model_validator(mode="before")
    @classmethod
    def _one_string_is_both(cls, data):
        if isinstance(data, str):
            if not data:
                raise ValueError("String should have at least 1 character")
            return {"zh": data, "en": data}
        if not isinstance(data, dict | Localized):
            raise ValueError("give a text, or one text per language: {zh: ..., en: ...}")
        return data

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler):
        """One string, or the object with both languages."""
        return {"anyOf": [{"type": "string", "minLength": 1}, handler(core_schema)]}

    def in_language(self, language: str | None) -> str:
        """The text in ``language``: en is English; anything else, Chinese (the default)."""
        return self.en if language == "en" else self.zh

    def __str__(self) -> str:  # in a text that has no language of its own: the default's
        return self.zh


METRIC_FORMATS = ("int", "1f", "2f", "percent", "money")
MetricFormat = Literal["int", "1f", "2f", "percent", "money"]


class Unit(_Strict):
    """A metric's unit in each language: ``{zh: 天, en: days}``; one string is both ("%"); a
    language may have none (``{zh: 单}``: "订单 48 单", "orders 48")."""

    zh: str = Field("", description="the unit in Chinese (天, 单, 条, 小时)")
    en: str = Field("", description="the unit in English (days, hours); empty: a plain count")

    @model_validator(mode="before")
    @classmethod
    def _one_string_is_both(cls, data):
        if isinstance(data, str):
            return {"zh": data, "en": data}
        if not isinstance(data, dict | Unit):
            raise ValueError("give a unit, or one unit per language: {zh: ..., en: ...}")
        return data

    @model_validator(mode="after")
    def _some_unit(self):
        if not (self.zh or self.en):
            raise ValueError("give the unit in at least one language (or leave unit out)")
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler):
        return {"anyOf": [{"type": "string", "minLength": 1}, handler(core_schema)]}

    def in_language(self, language: str | None) -> str:
        return self.en if language == "en" else self.zh


class MetricLabel(_Strict):
    """How people say a metric column (``metrics:`` of a rule): its name, unit and number format in
    messages, e.g. ``cover_days: {label: {zh: 库存可售, en: stock cover}, unit: {zh: 天, en: days},
    format: 1f}`` reads ``库存可售 6.6 天`` / ``stock cover 6.6 days``."""

    label: Localized = Field(description="the metric's name as people say it: {zh: ..., en: ...}")
    unit: Unit | None = Field(None, description="its unit after the number ({zh: 天, en: days}; {zh: 单}: none in "
                                                "English); none for a percent")
    format: MetricFormat = Field(description="int: a whole number (48); 1f / 2f: one / two decimals (6.6); percent: "
                                             "a 0..1 share shown in % with one decimal (0.314: 31.4%); money: two "
                                             "decimals with thousands separators (1,234.50)")

    @model_validator(mode="after")
    def _percent_has_its_unit(self):
        if self.format == "percent" and self.unit is not None and {self.unit.zh, self.unit.en} != {"%"}:
            raise ValueError("format: percent shows the share with %; give no other unit")
        return self


class Baseline(_Strict):
    """What "normal" is for a metric at a bucket, computed from the same entity's history.

    - ``same_hour``: the same hour of the previous ``periods`` days.
    - ``same_weekday_hour``: the same weekday and hour of the previous ``periods`` weeks.
    - ``trailing``: every bucket of the ``window`` before this one (a trailing 7-day average).
    - ``previous_period``: the bucket ``window`` earlier, for ``periods`` periods (month over month: 28d).
    - ``year_over_year``: the same weekday 52 weeks earlier (364 days), ``periods`` years.
    """

    kind: Literal["same_hour", "same_weekday_hour", "trailing", "previous_period", "year_over_year"]
    # (rolling rules, ``window:``) same_hour: the same window at the same time of day, previous
    # ``periods`` days; same_weekday_hour: the same time of week, previous weeks; neighbours: the
    # windows 1, 2, 3 hours earlier and later; trailing: the ``window`` before the rule's window,
    # scaled to the rule's window length.
    periods: int = Field(1, ge=1, le=366, description="how many days / weeks / periods / years to average")
    window: Duration | None = Field(None, description="trailing: the window's length; previous_period: the period")
    stat: Literal["mean", "median"] = "mean"
    min_points: int = Field(1, ge=1, description="fewer history points than this: no baseline, not evaluated")
    neighbours: int = Field(0, ge=0, le=3, description="same_hour / same_weekday_hour: also average the hours either "
                                                       "side (1: the hour before and after), steadier at small counts")
    missing: Literal["skip", "zero"] = Field(
        "skip", description="a history bucket with no row: left out of the average, or counted as zero "
        "(counts: zero; ratios: skip). no_data: zero implies zero")

    @model_validator(mode="after")
    def _window_where_needed(self):
        if self.kind in ("trailing", "previous_period") and self.window is None:
            raise ValueError(f"a {self.kind} baseline needs a window (e.g. 7d)")
        if self.kind not in ("trailing", "previous_period") and self.window is not None:
            raise ValueError(f"a {self.kind} baseline takes no window (it uses periods)")
        if self.kind == "trailing" and self.stat == "median":
            raise ValueError("a trailing baseline supports stat: mean only")
        if self.neighbours and self.kind not in ("same_hour", "same_weekday_hour"):
            raise ValueError("neighbours applies to same_hour and same_weekday_hour baselines")
        return self


Tiers = dict[Severity, float]


class Condition(_Strict):
    """One test: a metric (optionally against its baseline) above or below a threshold,
    or another rule breaching for the same entity (``rule:``, compound rules)."""

    metric: str | None = Field(None, description="a column of the rule's metric query")
    rule: str | list[str] | None = Field(None, description="id of another rule that must breach for the same entity "
                                                           "and bucket (a list: any of them)")
    baseline: Baseline | None = None
    compare: Literal["value", "ratio", "pct_change", "delta", "poisson_z", "poisson_tail"] = Field(
        "value", description="value: the metric itself; ratio: value / baseline; pct_change: "
        "(value - baseline) / baseline * 100; delta: value - baseline; poisson_z: (value - baseline) / "
        "sqrt(max(baseline, 1)), how unusual a count is for its baseline (a noise guard for small counts); "
        "poisson_tail: the chance of a count at least this high if the baseline is its Poisson mean, as a "
        "normal quantile (4.75 is a chance of 1 in a million; exact enough from a count of 1: docs/rules.md)")
    above: float | Tiers | None = Field(None, description="breach when the compared value is above this (or per tier)")
    below: float | Tiers | None = Field(None, description="breach when the compared value is below this (or per tier)")
    recover: float | None = Field(None, description="once firing, resolve only when the value is back past this")
    zero_baseline: Literal["skip", "breach"] = Field(
        "skip", description="a ratio or percent change against a zero baseline: skip the bucket, or count it as a breach")

    @field_validator("metric")
    @classmethod
    def _metric_name(cls, v):
        return v if v is None else _identifier(v)

    @field_validator("rule")
    @classmethod
    def _rule_ids(cls, v):
        if isinstance(v, list):
            if not v:
                raise ValueError("give at least one rule id")
            if len(set(v)) != len(v):
                raise ValueError(f"a rule is named twice: {v}")
            if len(v) == 1:
                return v[0]
        return v

    @property
    def rules(self) -> list[str]:
        """The referenced rule ids ([] for a metric condition)."""
        return [] if self.rule is None else [self.rule] if isinstance(self.rule, str) else list(self.rule)

    @field_validator("above", "below")
    @classmethod
    def _tiers_ascend(cls, v, info):
        if isinstance(v, dict):
            if not v:
                raise ValueError("give at least one tier (blue, yellow, red)")
            values = [v[s] for s in SEVERITIES if s in v]
            rising = info.field_name == "above"
            ordered = all((a < b) if rising else (a > b) for a, b in zip(values, values[1:], strict=False))
            if not ordered:
                want = "rise" if rising else "fall"
                raise ValueError(f"tier thresholds must {want} from blue to yellow to red: {v}")
        return v

    @model_validator(mode="after")
    def _shape(self):
        if (self.metric is None) == (self.rule is None):
            raise ValueError("a condition names either a metric or a rule")
        if self.rule is not None:
            extra = [f for f in ("baseline", "above", "below", "recover") if getattr(self, f) is not None]
            if extra or self.compare != "value":
                raise ValueError(f"a rule condition takes no {', '.join(extra) or 'compare'}")
            return self
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above or below")
        if self.compare != "value" and self.baseline is None:
            raise ValueError(f"compare: {self.compare} needs a baseline")
        if self.recover is not None:
            bound = self.above if self.above is not None else self.below
            lowest = min(bound.values()) if isinstance(bound, dict) else bound
            highest = max(bound.values()) if isinstance(bound, dict) else bound
            if self.above is not None and self.recover >= lowest:
                raise ValueError(f"recover ({self.recover}) must be below the lowest above threshold ({lowest})")
            if self.below is not None and self.recover <= highest:
                raise ValueError(f"recover ({self.recover}) must be above the highest below threshold ({highest})")
        return self

    @property
    def tiered(self) -> bool:
        return isinstance(self.above if self.above is not None else self.below, dict)

    def thresholds(self, severity: str) -> dict[str, float]:
        """Severity -> threshold (a plain threshold counts as the rule's severity)."""
        bound = self.above if self.above is not None else self.below
        return dict(bound) if isinstance(bound, dict) else {severity: bound}


class MinVolume(_Strict):
    """Do not evaluate a bucket unless ``metric`` (or its baseline) reaches ``at_least``."""

    metric: str
    at_least: float = Field(ge=0)
    of: Literal["value", "baseline"] = "value"

    @field_validator("metric")
    @classmethod
    def _metric_name(cls, v):
        return _identifier(v)


class Ratio(_Strict):
    """A rate of a rolling rule, computed from the window's sums (not an average of rates)."""

    numerator: str
    denominator: str

    @field_validator("numerator", "denominator")
    @classmethod
    def _names(cls, v):
        return _identifier(v)


class Notify(_Strict):
    """How often people hear of a rule's alerts beyond the first message."""

    repeat: Duration | None = Field(None, description="re-tell a still-firing, unacknowledged alert this often "
                                                      "(default: escalation.repeat in routing.yaml)")
    resolved: bool = Field(True, description="tell people when the alert resolves")


class Action(_Strict):
    """Something done, not only said, when the rule fires (sent once per alert, like a notification)."""

    kind: Literal["purchase_suggestion", "ads_pause", "cs_task"] = Field(
        description="purchase_suggestion: POST a suggested purchase order to procurement; ads_pause: POST a "
                    "pause request for the channel to the ads platform; cs_task: create a customer-service task")
    conn_id: str = Field(description="Airflow connection of the endpoint (type http)")
    endpoint: str = Field("", description="path appended to the connection's host")
    severities: list[Severity] = Field(default_factory=lambda: ["blue", "yellow", "red"],
                               description="severities that trigger it")
    execute: bool = Field(False, description="ads_pause only: false (the default) is a dry run, recorded "
                                             "and announced, never sent")
    params: dict[str, float | int | str] = Field(default_factory=dict,
                                                 description="purchase_suggestion: target_cover_days")

    @field_validator("conn_id")
    @classmethod
    def _conn_id(cls, v):
        if not CONN_ID.match(v):
            raise ValueError(f"{v!r} is not a connection id")
        if v in RESERVED_CONN_IDS:
            raise ValueError(f"{v!r} is Storefence's own connection; an action may not use it (declare the "
                             f"action's own connection under action_connections in routing.yaml)")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_a_path(cls, v):
        if v and (not ENDPOINT.match(v) or ".." in v.split("/") or "//" in v):
            raise ValueError(f"{v!r} is not a path on the connection's host (e.g. /v1/tasks): no scheme, host, "
                             f"'@', '//', '..', query or fragment; the host is the connection's")
        return v


class Rule(_Strict):
    id: str = Field(description="<domain>.<name>; part of the interface (alerts, routing, history)")
    name: Names
    description: Localized = Field(description="what the rule watches: one text, or {zh: ..., en: ...}")
    query: str = Field(description="metric query, relative to include/sql/ (e.g. sales/orders_by_sku_hour.sql)")
    entity: Entity = Field(description="what the rule fans out over; its key columns must be in the query's output")
    grain: Literal["5m", "hour", "day"] = Field(
        "hour", description="the query's bucket: 5-minute slices (rolling rules, current states every 5 minutes), "
                            "hours (UTC = shop hours) or shop-local days")
    window: Duration | None = Field(
        None, description="a rolling rule: the metrics are summed over this window (30m, 1h, 24h) ending at the "
                          "newest complete 5-minute slice; the query returns 5-minute slices (slice()) of additive "
                          "metrics, kept in a rollup; implies grain: 5m")
    ratios: dict[str, Ratio] = Field(default_factory=dict, description="rolling rules: rates computed from the "
                                     "window's sums, e.g. refund_rate: {numerator: refunds, denominator: orders}")
    every: Duration = Field(timedelta(hours=1), description="evaluation interval (a multiple of the grain)")
    lookback: Duration = Field(timedelta(0), description="history before each bucket the query itself reads "
                                                        "(a rolling 24h count: 24h); widens every scan range")
    match: Literal["all", "any"] = Field("all", description="all conditions must hold (AND) or any (OR)")
    conditions: list[Condition] = Field(min_length=1)
    severity: Severity = Field("yellow", description="severity of a breach when no condition has tiers")
    for_: int = Field(1, alias="for", ge=1, le=288, description="breach for this many consecutive buckets (evaluations) "
                                                           "before firing, or for a duration of data time (15m, 2h)")
    hold_for: Duration = Field(timedelta(hours=24), description="longest a firing alert is held between its recover "
                                                                "and breach thresholds before it resolves")
    min_volume: list[MinVolume] = Field(default_factory=list)
    no_data: Literal["skip", "zero", "alert"] = Field(
        "skip", description="an entity with history but no row in a bucket: not evaluated, counted as zero, or an alert")
    plans: Literal["scale_baseline", "ignore"] = Field(
        "scale_baseline", description="during a planned event (planned_events, include/rules/plans.yaml): "
        "scale_baseline compares each condition against its baseline times the plan's factor for the entity "
        "(SKU, then category, then shop); ignore compares against the plain baseline (rates, counts that lag "
        "sales). A compound rule with ignore also judges the rules it refers to without plans")
    params: dict[str, float | int | str] = Field(default_factory=dict, description="values bound into the query")
    owner: str = Field(min_length=1, description="team that owns the rule and acts on it")
    audience: list[str] = Field(default_factory=list, description="who is told (roles); routing is in routing.yaml")
    runbook: Localized = Field(description="what to do when it fires, in the alert's message: one text, or "
                                           "{zh: ..., en: ...}, of which a channel gets its language's")
    mode: Literal["live", "shadow"] = Field("live", description="shadow: evaluated and recorded, never notifies")
    labels: dict[str, str] = Field(default_factory=dict)
    attributes: list[str] = Field(default_factory=list, description="more query columns carried into the alert "
                                                                    "as they are (supplier, stock): for messages "
                                                                    "and actions")
    notify: Notify = Notify()
    actions: list[Action] = Field(default_factory=list)
    metric_labels: dict[str, MetricLabel] = Field(
        default_factory=dict, alias="metrics", description="how messages say the metrics: metric column -> {label: {zh, en}, unit: "
        "{zh, en}, format: int | 1f | 2f | percent | money} (e.g. cover_days: 库存可售 6.6 天)")

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v):
        if not _ID.match(v):
            raise ValueError(f"{v!r} is not <domain>.<name> in lower case")
        return v

    @model_validator(mode="before")
    @classmethod
    def _rolling_defaults(cls, data):
        """``window:`` implies 5-minute slices and, unless given, a 5-minute cadence; ``for: 15m`` is
        a number of buckets of the rule's grain."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("window") is not None:
            data.setdefault("grain", "5m")
            data.setdefault("every", "5m")
        duration = data.get("for")
        if isinstance(duration, str) and not duration.strip().isdigit():
            from threshold_operators.durations import parse_duration

            grain = GRAINS.get(data.get("grain", "hour"), GRAINS["hour"])
            d = parse_duration(duration)
            if d <= timedelta(0) or d % grain:
                raise ValueError(f"for: {duration} is not a whole number of {data.get('grain', 'hour')} buckets")
            data["for"] = d // grain
        return data

    @field_validator("params")
    @classmethod
    def _param_names(cls, v):
        bad = [k for k in v if not _NAME.match(k)]
        if bad:
            raise ValueError(f"parameter names must be lower-case identifiers: {', '.join(bad)}")
        return v

    @field_validator("attributes")
    @classmethod
    def _attribute_names(cls, v):
        for name in v:
            _identifier(name, "column name (attributes are columns of the metric query)")
        return v

    @field_validator("metric_labels")
    @classmethod
    def _metric_label_names(cls, v, info):
        """A key is a column the rule reads: of a condition, a ratio (or its parts), min_volume or
        attributes (the fields before it; a misspelt column is refused here, at its line)."""
        d = info.data
        known = {c.metric for c in d.get("conditions", ()) if c.metric} | {m.metric for m in d.get("min_volume", ())}
        known |= {x for name, r in d.get("ratios", {}).items() for x in (name, r.numerator, r.denominator)}
        known |= set(d.get("attributes", ()))
        for name in v:
            _identifier(name, "column name (metrics: are columns of the metric query)")
            if "conditions" in d and name not in known:
                raise ValueError(f"{name!r} is not a metric of the rule's conditions, ratios, min_volume or attributes")
        return v

    def metric_label(self, metric: str | None) -> MetricLabel | None:
        """How messages say ``metric`` (``metrics:``), or None: the column's name as it is."""
        return self.metric_labels.get(metric) if metric else None

    @field_validator("query")
    @classmethod
    def _query_path(cls, v):
        if not QUERY_PATH.match(v) or ".." in v.split("/"):
            raise ValueError(f"{v!r} is not a path inside the SQL folder such as sales/orders_by_sku_hour.sql "
                             f"(no '..', not absolute, ending in .sql)")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        tiered = [c for c in self.conditions if c.rule is None and c.tiered]
        if len(tiered) > 1:
            raise ValueError("at most one condition may have severity tiers")
        if self.no_data != "skip" and self.grain == "day":
            raise ValueError("no_data: zero or alert needs grain: hour or 5m")
        if self.window is not None:
            if self.grain != "5m":
                raise ValueError(f"window: a rolling rule sums 5-minute slices; grain must be 5m, not {self.grain}")
            if self.window < SLICE or self.window % SLICE or self.window > timedelta(days=7):
                raise ValueError(f"window: {self.window} is not a whole number of 5-minute slices up to 7 days")
            if self.lookback:
                raise ValueError("lookback: a rolling rule's window is its lookback; leave lookback out")
            parts = {x for r in self.ratios.values() for x in (r.numerator, r.denominator)}
            clash = sorted(set(self.ratios) & parts)
            if clash:
                raise ValueError(f"ratios: {', '.join(clash)} is both a ratio and a part of one")
        elif self.ratios:
            raise ValueError("ratios: only a rolling rule (window:) computes rates from its window's sums")
        if self.every < SLICE or self.every % SLICE:
            raise ValueError(f"every: {self.every} is not a whole number of 5-minute slices")
        if self.grain == "5m" and self.every % self.grain_delta:
            raise ValueError(f"every: {self.every} is not a whole number of {self.grain} buckets")
        if self.grain == "hour" and self.every < timedelta(hours=1):
            raise ValueError("every: an hourly rule is evaluated at most hourly (grain: 5m or window: for more often)")
        if any(c.compare == "poisson_tail" and c.below is not None for c in self.conditions):
            raise ValueError("compare: poisson_tail measures how surprisingly HIGH a count is; use above")
        return self

    def runbook_in(self, language: str | None) -> str:
        """What to do, in ``language`` (en; anything else: zh)."""
        return self.runbook.in_language(language)

    def description_in(self, language: str | None) -> str:
        """What the rule watches, in ``language`` (en; anything else: zh)."""
        return self.description.in_language(language)

    @property
    def rolling(self) -> bool:
        """Summed over a rolling ``window`` of 5-minute slices kept in a rollup."""
        return self.window is not None

    @property
    def domain(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def keys(self) -> tuple[str, ...]:
        return ENTITY_KEYS[self.entity]

    @property
    def grain_delta(self) -> timedelta:
        return GRAINS[self.grain]

    @property
    def primary(self) -> Condition:
        """The condition whose value, baseline and threshold an alert reports."""
        metric = [c for c in self.conditions if c.rule is None]
        return next((c for c in metric if c.tiered), metric[0] if metric else self.conditions[0])

    @property
    def metrics(self) -> list[str]:
        """The metric columns the rule reads: of a rolling rule, the query's additive columns (a
        ratio's numerator and denominator in place of the ratio)."""
        names = [c.metric for c in self.conditions if c.metric] + [v.metric for v in self.min_volume]
        out: list[str] = []
        for name in names:
            out += [self.ratios[name].numerator, self.ratios[name].denominator] if name in self.ratios else [name]
        return list(dict.fromkeys(out))

    @property
    def measures(self) -> list[str]:
        """Every value a bucket carries after the window sums: the metrics and the ratios used."""
        names = [c.metric for c in self.conditions if c.metric] + [v.metric for v in self.min_volume]
        return list(dict.fromkeys([*self.metrics, *(n for n in names if n in self.ratios)]))

    @property
    def references(self) -> list[str]:
        return [r for c in self.conditions for r in c.rules]

    @property
    def fires_on(self) -> Literal["low", "high"]:
        """Which way the rule's breach goes. ``low``: every condition fires below its threshold
        (a drop, low stock, low cover: missing rows can cause it); ``high``: any condition fires
        above (a spike, a rate above), or refers to another rule's breach (a compound rule), which
        missing rows cannot explain. A failing data gate holds back low rules only; high rules
        still fire, marked "data incomplete" (``alerting.mute``, ``alerting.pipeline``)."""
        low = all(c.rule is None and c.below is not None for c in self.conditions)
        return "low" if low else "high"


class RuleFile(_Strict):
    """``include/rules/<domain>.yaml``."""

    domain: Domain
    rules: list[Rule] = Field(default_factory=list)


def rule_file_json_schema() -> dict:
    schema = RuleFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Storefence rule file (include/rules/<domain>.yaml)"
    return schema
