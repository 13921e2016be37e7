"""``--plot out.png|out.svg|out.html``: the metric, its baseline, each tier's threshold and the episodes.

One panel per entity (the ``top`` entities with the most alert hours, or the only ones there are),
drawn with matplotlib: the metric of the rule's primary condition, its baseline, the threshold of
each severity tier translated into the metric's own units (``ratio`` 2 over a baseline of 10 is a
line at 20; ``pct_change``, ``delta`` and ``poisson_z`` alike; ``poisson_tail`` the count whose tail
reaches the threshold), and the alert episodes shaded in
their severity's colour. The HTML is self-contained: the figure inline as SVG, the summary and the
episode table, no script and nothing fetched.
"""

from __future__ import annotations

import html
import io
import math
from collections import defaultdict
from pathlib import Path

COLOURS = {"blue": "#2f6fdf", "yellow": "#e0a800", "red": "#d62728"}


class PlotError(ValueError):
    pass


def threshold_in_metric_units(compare: str, threshold: float, baseline: float | None) -> float | None:
    if compare == "value":
        return threshold
    if baseline is None:
        return None
    if compare == "ratio":
        return baseline * threshold
    if compare == "pct_change":
        return baseline * (1 + threshold / 100)
    if compare == "delta":
        return baseline + threshold
    if compare == "poisson_z":
        return baseline + threshold * math.sqrt(max(baseline, 1.0))
    if compare == "poisson_tail":
        return poisson_tail_count(threshold, baseline)
    return None


def poisson_tail_z(x: float, b: float) -> float | None:
    """The engine's ``poisson_tail`` (Wilson-Hilferty) in Python: z of a count x for a Poisson mean b."""
    if x < 1:
        return None
    return 3.0 * math.sqrt(x) * ((1.0 - 1.0 / (9.0 * x)) - (max(b, 0.0) / x) ** (1.0 / 3.0))


def poisson_tail_count(threshold: float, baseline: float) -> float:
    """The count at which ``poisson_tail`` reaches ``threshold`` for ``baseline`` (z rises with the
    count from the baseline up): where the noise guard's line lies, in orders."""
    lo, hi = max(baseline, 1.0), max(baseline, 1.0) + 10.0 * (threshold + 1.0) * (math.sqrt(max(baseline, 1.0)) + 1.0)
    for _ in range(60):
        mid = (lo + hi) / 2
        if (poisson_tail_z(mid, baseline) or -math.inf) < threshold:
            lo = mid
        else:
            hi = mid
    return hi


def scored_rows(loaded, lookup, query, windows, keys: set[str] | None) -> dict[str, list[dict]]:
    """entity key -> every evaluated bucket's row (metric, baselines, compared values), in time order."""
    from threshold_operators.engine.compile import compile_rule, scored_sql

    compiled = compile_rule(loaded, lookup, source="query")
    sql = scored_sql(compiled)
    out: dict[str, dict] = defaultdict(dict)
    for a, b in windows:
        for row in query(sql, compiled.params(a, b)):
            key = "/".join(f"{k}={row[k]}" for k in loaded.rule.keys)
            if (keys is None or key in keys) and a < row["bucket"] + loaded.rule.grain_delta <= b:
                out[key][row["bucket"]] = row
    return {k: [v[t] for t in sorted(v)] for k, v in out.items()}


def top_entities(bt, top: int) -> list[str]:
    hours = defaultdict(float)
    for e in bt.episodes:
        hours[e.entity_key] += e.hours(bt.end)
    return [k for k, _ in sorted(hours.items(), key=lambda kv: -kv[1])[:top]]


def figure(bt, rows: dict[str, list[dict]], entities: list[str]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rule = bt.rule
    cond = rule.primary
    i = rule.conditions.index(cond)
    n = max(len(entities), 1)
    fig, axes = plt.subplots(n, 1, figsize=(11, 2.6 * n + 0.6), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], entities or ["(no alert)"], strict=False):
        data = rows.get(key, [])
        ts = [r["bucket"] for r in data]
        if cond.metric:
            ax.plot(ts, [_f(r.get(cond.metric)) for r in data], color="#333333", lw=1.1, label=cond.metric)
            if cond.baseline is not None:
                ax.plot(ts, [_f(r.get(f"base_{i}")) for r in data], color="#888888", lw=1, ls="--", label="baseline")
            for sev, thr in cond.thresholds(rule.severity).items():
                ax.plot(ts, [threshold_in_metric_units(cond.compare, thr, _f(r.get(f"base_{i}"))) for r in data],
                        color=COLOURS[sev], lw=0.9, ls=":", label=f"{sev} threshold")
        for e in bt.episodes:
            if e.entity_key == key:
                ax.axvspan(e.start, e.end or bt.end, color=COLOURS.get(e.severity, "#999999"), alpha=0.18, lw=0)
        ax.set_title(key, fontsize=9, loc="left")
        ax.grid(alpha=0.25)
    axes[0, 0].legend(fontsize=7, loc="upper right", ncols=5)
    fig.suptitle(f"{rule.id} ({rule.name.en}) {bt.start:%Y-%m-%d} .. {bt.end:%Y-%m-%d} UTC: "
                 f"{bt.summary['alerts']} episodes, {bt.summary['alerts_per_week']:.2f} a week", fontsize=10)
    fig.tight_layout()
    return fig


def _f(v):
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def write_plot(bt, loaded, lookup, query, path: Path, windows, top: int = 6) -> Path:
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg", ".html"):
        raise PlotError(f"--plot {path}: use a .png, .svg or .html file")
    entities = top_entities(bt, top)
    if not entities:  # nothing fired: show the first entities the rule evaluated
        rows = scored_rows(loaded, lookup, query, windows, None)
        entities = sorted(rows)[:top]
        rows = {k: rows[k] for k in entities}
    else:
        rows = scored_rows(loaded, lookup, query, windows, set(entities))
    fig = figure(bt, rows, entities)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".html":
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
        path.write_text(_html(bt, buf.getvalue()), encoding="utf-8")
    else:
        fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _html(bt, svg: str) -> str:
    svg = svg[svg.index("<svg"):]
    rows = "".join(
        f"<tr><td>{html.escape(e.entity_key)}</td><td class='{e.severity}'>{e.severity}</td>"
        f"<td>{e.start:%Y-%m-%d %H:%M}</td><td>{f'{e.end:%Y-%m-%d %H:%M}' if e.end else 'firing'}</td>"
        f"<td>{_g(e.peak_value)}</td><td>{_g(e.baseline)}</td><td>{_g(e.threshold)}</td></tr>" for e in bt.episodes)
    s = bt.summary
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(bt.rule.id)} backtest</title>
<style>body{{font:14px sans-serif;margin:2em}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;
padding:2px 6px}} .red{{color:#d62728}} .yellow{{color:#b08800}} .blue{{color:#2f6fdf}}</style></head><body>
<h1>{html.escape(bt.rule.id)}: {html.escape(bt.rule.name.zh)} / {html.escape(bt.rule.name.en)}</h1>
<p>{bt.start:%Y-%m-%d %H:%M} .. {bt.end:%Y-%m-%d %H:%M} UTC ({html.escape(bt.source)}){
    ' with ' + html.escape(', '.join(bt.overrides)) if bt.overrides else ''}: {s['alerts']} alert episodes on
{s['entities']} entities, {s['alerts_per_week']:.2f} a week, {s['hours_in_alert']:.0f} hours in alert.</p>
{svg}
<table><tr><th>entity</th><th>severity</th><th>start (UTC)</th><th>end</th><th>peak</th><th>baseline</th>
<th>threshold</th></tr>{rows}</table></body></html>
"""


def _g(v) -> str:
    return "-" if v is None else f"{v:.4g}"
