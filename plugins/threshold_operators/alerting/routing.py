"""Who hears of what, on which channel: ``include/rules/routing.yaml``.

- ``channels``: a name for each way out, its kind and its Airflow connection (secrets stay in
  the connection: never in this file).
- ``people``: handles only (DingTalk mobile, email, phone).
- ``teams``: the escalation ladder (level 1 executor, 2 supervisor, 3 director) and the channels
  per severity; a rule's ``owner`` names its team.
- ``escalation``: how long an alert may stay unacknowledged at a level (``sla``, per rule or by
  default), the level a severity starts at (red may start at the supervisor) and the highest
  level it may climb to by time (``ceiling``: the seed's ladder, "一级警报只通知执行人员……三级警报
  才惊动总监": blue stays with the people who act, yellow may reach the supervisor, only red the
  director); a rule in ``start_at`` starts at its level whatever its severity (the double alert
  goes to the director at once).
- ``action_connections``: the Airflow connections rules' ``actions:`` may post to (a rule naming
  another is refused by lint and never sent; Storefence's own connections and the channels'
  connections may not be listed).

Routes that go nowhere are refused: every team has a channel for every severity (directly, or
through the yellow list a missing severity falls back to), and a team using email, SMS or voice
has someone at level 1.

Validated like the rule files: every problem with file, line and field.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from threshold_operators import located_yaml
from threshold_operators.durations import Duration
from threshold_operators.rules.model import Localized

# A vendor's documented limit per robot / webhook (messages a minute); the throttle keeps under it.
VENDOR_PER_MINUTE = {"dingtalk": 20, "wecom": 20, "feishu": 100, "slack": 60}
ChannelKind = Literal["dingtalk", "wecom", "feishu", "slack", "email", "sms", "voice", "webhook"]
Severity = Literal["blue", "yellow", "red"]
Level = Annotated[int, Field(ge=1, le=3)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Channel(_Strict):
    kind: ChannelKind
    conn_id: str = Field(description="Airflow connection holding the endpoint and its secret")
    language: Literal["zh", "en"] = Field("zh", description="language of the messages: Chinese or English")
    per_minute: int | None = Field(None, ge=1, description="messages a minute the channel accepts (default: the "
                                                          "vendor's limit, e.g. 20 for a DingTalk robot)")

    @property
    def rate_limit(self) -> int | None:
        return self.per_minute or VENDOR_PER_MINUTE.get(self.kind)


class Person(_Strict):
    name: Localized = Field(description="as messages name them: one text, or {zh: ..., en: ...} (English "
                                        "messages use en)")
    mobile: str | None = Field(None, description="for DingTalk @, SMS and voice")
    email: str | None = None


class Team(_Strict):
    levels: dict[Level, list[str]] = Field(description="1 executor, 2 supervisor, 3 director: people ids")
    channels: dict[Severity, list[str]] = Field(description="channel names per severity")
    fallback: str | None = Field(None, description="channel used when a channel keeps failing")
    quiet_hours: str | None = Field(None, description="HH:MM-HH:MM local: only red goes out")


class Escalation(_Strict):
    sla: Duration = Field(timedelta(minutes=30), description="unacknowledged this long at a level: the next level")
    rules: dict[str, Duration] = Field(default_factory=dict, description="rule id -> its own SLA")
    start_level: dict[Severity, Level] = Field(default_factory=lambda: {"blue": 1, "yellow": 1, "red": 1})
    start_at: dict[str, Level] = Field(default_factory=dict, description="rule id -> the level it starts at "
                                                                         "whatever its severity")
    ceiling: dict[Severity, Level] = Field(default_factory=lambda: {"blue": 1, "yellow": 2, "red": 3},
                                           description="the highest level an unacknowledged alert of a severity "
                                                       "climbs to by time (the seed: only red reaches the director)")
    rule_ceiling: dict[str, Level] = Field(default_factory=dict, description="rule id -> its own ceiling, whatever "
                                           "its severity (a blue rule whose story has the supervisor act)")

    @model_validator(mode="after")
    def _ceiling_above_start(self):
        low = [f"escalation.ceiling.{sev}: {self.ceiling[sev]} is below start_level.{sev} ({self.start_level[sev]}): "
               f"an alert would start above the level it may reach" for sev in self.ceiling
               if sev in self.start_level and self.ceiling[sev] < self.start_level[sev]]
        if low:
            raise ValueError("; ".join(low))
        return self
    repeat: Duration = Field(timedelta(hours=4), description="re-tell a firing, unacknowledged alert this often "
                                                             "(a rule's notify.repeat overrides it)")


class Routing(_Strict):
    timezone: str = "Asia/Shanghai"
    channels: dict[str, Channel]
    people: dict[str, Person]
    teams: dict[str, Team]
    escalation: Escalation = Escalation()
    action_connections: list[str] = Field(default_factory=list, description="Airflow connections (type http) "
                                          "that rules' actions may post to")

    @model_validator(mode="after")
    def _references(self):
        problems = []
        for name, team in self.teams.items():
            for level, ids in team.levels.items():
                problems += [f"teams.{name}.levels.{level}: unknown person {p!r}" for p in ids if p not in self.people]
            for sev, chans in team.channels.items():
                problems += [f"teams.{name}.channels.{sev}: unknown channel {c!r}" for c in chans if c not in self.channels]
            if team.fallback and team.fallback not in self.channels:
                problems.append(f"teams.{name}.fallback: unknown channel {team.fallback!r}")
            if team.quiet_hours:
                from threshold_operators.alerting.mute import parse_quiet_hours

                try:
                    parse_quiet_hours(team.quiet_hours)
                except ValueError as exc:
                    problems.append(f"teams.{name}.quiet_hours: {exc}")
        from threshold_operators.alerting.actions import RESERVED_CONN_IDS

        channel_conns = {c.conn_id for c in self.channels.values()}
        for conn_id in self.action_connections:
            if conn_id in RESERVED_CONN_IDS:
                problems.append(f"action_connections: {conn_id!r} is Storefence's own connection; actions may not use it")
            elif conn_id in channel_conns:
                problems.append(f"action_connections: {conn_id!r} is a channel's connection; give actions their own")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def dead_ends(self) -> list[tuple[tuple, str]]:
        """(location in the file, problem) for each way an alert would reach nobody."""
        out = []
        for name, team in self.teams.items():
            missing = [s for s in ("blue", "yellow", "red") if not self.channels_for(name, s)]
            if missing:
                out.append((("teams", name, "channels"), f"no channel for {', '.join(missing)}: those alerts of "
                            f"team {name} would reach nobody (list a channel per severity, or a yellow list)"))
            personal = {self.channels[c].kind for chans in team.channels.values() for c in chans
                        if c in self.channels} & {"email", "sms", "voice"}
            if personal and not self.recipients(name, 1):
                out.append((("teams", name, "levels"), f"nobody at level 1, yet the team's alerts go by "
                            f"{', '.join(sorted(personal))}: they would reach nobody"))
        return out

    def sla_of(self, rule_id: str) -> timedelta:
        return self.escalation.rules.get(rule_id, self.escalation.sla)

    def start_level(self, severity: str | None, rule_id: str | None = None) -> int:
        if rule_id in self.escalation.start_at:
            return self.escalation.start_at[rule_id]
        return self.escalation.start_level.get(severity or "blue", 1)

    def ceiling(self, severity: str | None, rule_id: str | None = None) -> int:
        """The highest level an alert of ``severity`` climbs to by time: its rule's own ceiling
        (``rule_ceiling``), else its severity's (default 3); never below the level its rule starts
        at (``start_at``)."""
        top = self.escalation.rule_ceiling.get(rule_id or "", self.escalation.ceiling.get(severity or "blue", 3))
        return max(top, self.escalation.start_at.get(rule_id, 0)) if rule_id else top

    def ladder_summary(self) -> list[str]:
        """The escalation ladder in words, a line each: what ``storefence lint`` shows of the routing."""
        e = self.escalation
        lines = []
        for sev in ("blue", "yellow", "red"):
            start, top = e.start_level.get(sev, 1), e.ceiling.get(sev, 3)
            climb = (f"stays at L{start}" if top <= start else
                     f"climbs to L{top} after {_span(e.sla * (top - start))} unacknowledged")
            lines.append(f"{sev}: starts at L{start}, {climb}")
        lines += [f"{rule}: starts at L{level} (start_at)" for rule, level in sorted(e.start_at.items())]
        lines += [f"{rule}: climbs to L{level} at most (rule_ceiling)" for rule, level in sorted(e.rule_ceiling.items())]
        lines += [f"{rule}: SLA {_span(sla)} a level" for rule, sla in sorted(e.rules.items())]
        return lines

    def team_of(self, owner: str | None) -> str:
        """The team a rule's owner names; the data engineers (or the first team) when it names none."""
        if owner in self.teams:
            return owner
        return "data_engineering" if "data_engineering" in self.teams else next(iter(self.teams))

    def quiet_hours(self) -> dict[str, str]:
        return {name: t.quiet_hours for name, t in self.teams.items() if t.quiet_hours}

    def fallbacks(self) -> dict[str, str]:
        """channel -> the fallback of the team(s) that use it (the first team's, when teams differ)."""
        out: dict[str, str] = {}
        for t in self.teams.values():
            if t.fallback:
                for chans in t.channels.values():
                    for c in chans:
                        out.setdefault(c, t.fallback)
        return out

    def recipients(self, team: str, level: int) -> list[Person]:
        """The people told at ``level``: that level's, or the highest level the team has below it."""
        t = self.teams[team]
        for lv in range(level, 0, -1):
            if lv in t.levels:
                return [self.people[p] for p in t.levels[lv]]
        return []

    def channels_for(self, team: str, severity: str | None) -> list[str]:
        t = self.teams[team]
        return list(t.channels.get(severity or "blue") or t.channels.get("yellow") or [])


def _span(d: timedelta) -> str:
    minutes = int(d.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 and minutes % 60 else (
        f"{minutes // 60}h" if minutes >= 60 else f"{minutes}m")


def routing_path() -> Path:
    from threshold_operators.rules.catalogue import rules_dir

    return Path(os.environ.get("STOREFENCE_ROUTING", rules_dir() / "routing.yaml"))


def load_routing(path: Path | None = None) -> Routing:
    """The routing file, or ConfigFileError with every problem (file, line, field), including
    routes that go nowhere."""
    path = path or routing_path()
    routing = located_yaml.validate(Routing, path)
    dead = routing.dead_ends()
    if dead:
        _, lines = located_yaml.load(path)
        raise located_yaml.ConfigFileError([f"{path}:{located_yaml.line_of(lines, loc)}: {'.'.join(map(str, loc))}: {msg}"
                                            for loc, msg in dead])
    return routing
