"""The mute stage: silences, inhibition and quiet hours, one idea behind one stage.

As in Alertmanager (``notify/mute.go``), every reason to keep quiet is a ``Muter``: given an alert
(and the team it would go to) at ``now``, it answers ``None`` (not muted) or a ``Mute`` saying why,
and whether the alert is held back (a silence, an inhibition: told later if still firing when the
mute ends) or only deferred (quiet hours: told when they end). ``MuteStage`` asks each muter in
turn and keeps the first answer.

- **Silences** (``Silence``): by rule (glob), entity (glob on the entity key), shop; with author,
  reason, start and expiry. A maintenance window is a silence that starts later.
- **Inhibition** (``Inhibition``): a failed quality or freshness gate on a table holds back the
  business rules that read it *and fire on low values* (``Rule.fires_on``: missing data can explain
  a drop, never a spike; the data engineers are told instead, and the alert records why); rules
  that fire on high values are never held back by a gate (the pipeline marks them "data
  incomplete"); a red alert holds back yellow
  and blue alerts of the same entity; an active compound alert holds back its components' alerts
  of the same entity.
- **Quiet hours** (``QuietHours``): per team, at night only red goes out; the rest waits for morning.

Pure: no clock, no store. The pipeline gathers the facts (silences, active alerts, failing gates)
and passes them in.
"""

from __future__ import annotations

import fnmatch
import uuid
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from threshold_operators.alerting.lifecycle import SEVERITY_ORDER, Alert


@dataclass(frozen=True)
class Mute:
    reason: str  # for people: "silenced by li.wei until ...: 大促压测", "inhibited: orders freshness"
    until: datetime | None = None  # set: deferred until then (quiet hours); None: held back
    kind: str = "silence"  # silence, inhibition, quiet_hours


class Muter(Protocol):
    def mutes(self, alert: Alert, team: str | None, now: datetime) -> Mute | None: ...


# --- silences ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Silence:
    """Keep quiet about what matches, between ``starts_at`` and ``ends_at``. Empty matchers match all."""

    author: str
    reason: str
    starts_at: datetime
    ends_at: datetime
    rule: str = "*"  # glob on the rule id: "inventory.*"
    entity: str = "*"  # glob on the entity key: "*sku=SKU-0042*"
    shop: str | None = None  # a shop id
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created_at: datetime | None = None

    def __post_init__(self):
        if self.ends_at <= self.starts_at:
            raise ValueError(f"a silence must end after it starts ({self.starts_at} .. {self.ends_at})")
        if not self.author.strip() or not self.reason.strip():
            raise ValueError("a silence needs an author and a reason")

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, rule_id: str, entity_key: str) -> bool:
        if not fnmatch.fnmatchcase(rule_id, self.rule) or not fnmatch.fnmatchcase(entity_key, self.entity):
            return False
        return self.shop is None or f"shop_id={self.shop}" in entity_key.split("/")

    def describe(self) -> str:
        what = f"rule {self.rule}" + (f", entity {self.entity}" if self.entity != "*" else "") + (
            f", shop {self.shop}" if self.shop else "")
        return f"{self.id}: {what} from {self.starts_at:%Y-%m-%d %H:%M} to {self.ends_at:%Y-%m-%d %H:%M} UTC " \
               f"by {self.author} ({self.reason})"


@dataclass(frozen=True)
class Silences:
    silences: tuple[Silence, ...]

    def mutes(self, alert: Alert, team: str | None, now: datetime) -> Mute | None:
        for s in self.silences:
            if s.active(now) and s.matches(alert.rule_id, alert.entity_key):
                return Mute(f"silenced by {s.author} until {s.ends_at:%Y-%m-%d %H:%M} UTC: {s.reason} [{s.id}]")
        return None


# --- inhibition --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Inhibition:
    """The three inhibitions of the pack.

    ``failing_tables``: table -> what failed (from ``data_quality_events``); ``rule_tables``: rule id
    -> the fact tables its query reads; ``active``: the alerts currently firing or acknowledged;
    ``components``: compound rule id -> the rule ids it refers to; ``low_rules``: the rules that
    fire on low values, the only ones a failing table holds back (None: every rule, when the
    caller does not know).
    """

    failing_tables: Mapping[str, str] = field(default_factory=dict)
    rule_tables: Mapping[str, Iterable[str]] = field(default_factory=dict)
    active: Iterable[Alert] = ()
    components: Mapping[str, Iterable[str]] = field(default_factory=dict)
    low_rules: Container[str] | None = None

    def __post_init__(self):
        red, compound = {}, {}
        parents = {c: p for p, cs in self.components.items() for c in cs}
        for a in self.active:
            if a.severity == "red":
                red.setdefault(a.entity_key, a.rule_id)
            if a.rule_id in self.components:
                compound.setdefault((a.rule_id, a.entity_key), a)
        object.__setattr__(self, "_red", red)
        object.__setattr__(self, "_compound", compound)
        object.__setattr__(self, "_parents", parents)

    def mutes(self, alert: Alert, team: str | None, now: datetime) -> Mute | None:
        broken = sorted(t for t in self.rule_tables.get(alert.rule_id, ()) if t in self.failing_tables)
        if broken and (self.low_rules is None or alert.rule_id in self.low_rules):
            return Mute(f"inhibited: the data it reads failed its checks ({', '.join(broken)}: "
                        f"{self.failing_tables[broken[0]]}); a low value may be missing data, so it waits "
                        f"until the table passes", kind="inhibition")
        red_rule = self._red.get(alert.entity_key)
        if red_rule and red_rule != alert.rule_id and SEVERITY_ORDER.get(alert.severity or "", 0) < 3:
            return Mute(f"inhibited: red alert {red_rule} on the same entity", kind="inhibition")
        parent = self._parents.get(alert.rule_id)
        if parent and (parent, alert.entity_key) in self._compound:
            return Mute(f"inhibited: compound alert {parent} covers it", kind="inhibition")
        return None


# --- quiet hours -------------------------------------------------------------------------------
def parse_quiet_hours(spec: str) -> tuple[time, time]:
    """``"23:00-08:00"`` -> (23:00, 08:00); ValueError otherwise."""
    try:
        start, end = (time.fromisoformat(part.strip()) for part in spec.split("-"))
    except ValueError as exc:
        raise ValueError(f"quiet hours {spec!r}: expected HH:MM-HH:MM") from exc
    if start == end:
        raise ValueError(f"quiet hours {spec!r}: start and end are the same")
    return start, end


def quiet_until(spec: str, tz: str, now: datetime) -> datetime | None:
    """When the quiet hours around ``now`` end (UTC), or None when ``now`` is not in them."""
    start, end = parse_quiet_hours(spec)
    local = now.astimezone(ZoneInfo(tz))
    t = local.time().replace(tzinfo=None)
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside:
        return None
    day = local.date() if (start < end or t < end) else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=ZoneInfo(tz)).astimezone(now.tzinfo)


@dataclass(frozen=True)
class QuietHours:
    """``hours``: team -> "HH:MM-HH:MM" in ``tz``. Red is never held back."""

    hours: Mapping[str, str]
    tz: str = "Asia/Shanghai"

    def mutes(self, alert: Alert, team: str | None, now: datetime) -> Mute | None:
        spec = self.hours.get(team or "")
        if not spec or alert.severity == "red":
            return None
        until = quiet_until(spec, self.tz, now)
        if until is None:
            return None
        return Mute(f"quiet hours of {team} ({spec} {self.tz}): delivered at {until:%Y-%m-%d %H:%M} UTC",
                    until=until, kind="quiet_hours")


@dataclass(frozen=True)
class MuteStage:
    muters: tuple[Muter, ...]

    def check(self, alert: Alert, team: str | None, now: datetime) -> Mute | None:
        for muter in self.muters:
            mute = muter.mutes(alert, team, now)
            if mute is not None:
                return mute
        return None

    def split(self, alerts: Iterable[Alert], team: str | None, now: datetime
              ) -> tuple[list[Alert], list[tuple[Alert, Mute]]]:
        """(alerts to tell now, alerts muted with why)."""
        passed, muted = [], []
        for a in alerts:
            m = self.check(a, team, now)
            (passed.append(a) if m is None else muted.append((a, m)))
        return passed, muted
