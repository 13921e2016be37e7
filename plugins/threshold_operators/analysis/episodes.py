"""Alert episodes: what people would have lived through, from the engine's bucket results.

An episode is one entity firing from its first firing bucket until it resolves (``end`` is the
bucket that resolved it; ``None`` while it still fires at the end of the range). Its severity is
the highest it reached; its peak is the most extreme compared value (the highest for an
``above`` condition, the lowest for ``below``), with the baseline and threshold of that bucket.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

ORDER = {"blue": 1, "yellow": 2, "red": 3}


@dataclass
class Episode:
    entity: dict
    entity_key: str
    severity: str
    start: datetime
    end: datetime | None
    peak_value: float | None
    baseline: float | None
    threshold: float | None

    def hours(self, until: datetime) -> float:
        return ((self.end or until) - self.start) / timedelta(hours=1)

    def as_json(self) -> dict:
        d = asdict(self)
        d["start"] = self.start.isoformat()
        d["end"] = self.end.isoformat() if self.end else None
        return d


def episodes(rule, results) -> list[Episode]:
    from threshold_operators.engine.compile import threshold_of
    from threshold_operators.engine.evaluate import _num

    i = rule.conditions.index(rule.primary)
    lowest = rule.primary.below is not None
    by_entity = defaultdict(list)
    for r in results:
        by_entity[r.entity_key].append(r)
    out: list[Episode] = []
    for key in sorted(by_entity):
        current: Episode | None = None
        for r in sorted(by_entity[key], key=lambda r: r.bucket):
            if str(r.state) == "firing":
                value = _num(r.row.get(f"v_{i}"))
                if current is None:
                    current = Episode(dict(r.entity), key, r.severity, r.bucket, None, value,
                                      _num(r.row.get(f"base_{i}")), threshold_of(rule, r.severity))
                    out.append(current)
                    continue
                if ORDER.get(r.severity, 0) > ORDER.get(current.severity, 0):
                    current.severity = r.severity
                better = value is not None and (current.peak_value is None or
                                                (value < current.peak_value if lowest else value > current.peak_value))
                if better:
                    current.peak_value, current.baseline = value, _num(r.row.get(f"base_{i}"))
                    current.threshold = threshold_of(rule, r.severity)
            elif str(r.state) == "resolved" and current is not None:
                current.end = r.bucket
                current = None
    return sorted(out, key=lambda e: (e.start, e.entity_key))


def summary(episodes_: list[Episode], start: datetime, end: datetime) -> dict:
    """Alerts per week by severity, hours in alert, entities."""
    weeks = max((end - start) / timedelta(days=7), 1e-9)
    by_sev = {s: sum(1 for e in episodes_ if e.severity == s) for s in ORDER}
    return {
        "weeks": round(weeks, 3),
        "alerts": len(episodes_),
        "alerts_per_week": round(len(episodes_) / weeks, 3),
        "alerts_per_week_by_severity": {s: round(n / weeks, 3) for s, n in by_sev.items()},
        "hours_in_alert": round(sum(e.hours(end) for e in episodes_), 1),
        "entities": len({e.entity_key for e in episodes_}),
    }


def first_firing(rule, results, episodes_: list[Episode], episode: Episode) -> tuple[list[dict], tuple[str, str]]:
    """The breaches and data window of the first message people get about ``episode``: the "fired"
    message of the cycle of its first firing bucket (not its worst moment, which comes later as a
    "worsened" message if it comes at all). As the notify task groups news, by event and severity,
    it lists every entity that started an episode in that bucket at the same severity. Each breach
    is the check task's (``engine.evaluate.describe``) with the ``fired_window`` (the bucket's data)
    and the alert's ``fingerprint``; no ``names`` (the caller looks them up). Pure."""
    from threshold_operators.alerting.lifecycle import fingerprint
    from threshold_operators.engine.evaluate import describe

    at = episode.start
    started = {e.entity_key for e in episodes_ if e.start == at}
    firing = {r.entity_key: r for r in results if r.bucket == at and str(r.state) == "firing" and r.entity_key in started}
    severity = firing[episode.entity_key].severity
    window = (at.isoformat(), (at + rule.grain_delta).isoformat())
    breaches = [{**describe(rule, r), "fired_window": list(window), "fingerprint": fingerprint(rule.id, key)}
                for key, r in sorted(firing.items()) if r.severity == severity]
    return breaches, window
