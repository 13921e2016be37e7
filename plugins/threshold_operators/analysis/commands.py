"""The analyst commands of ``storefence``: backtest, preview --backtest, tune, evaluate --labels,
report --shadow, test-rules.

Thin: each parses its arguments into the analysis functions and prints text or ``--json``. Bad
input (an unknown rule, a bad ``--set``, a CSV without ``ts`` or a needed column, a timestamp that
does not parse) raises ``UsageError`` with one line; the CLI prints it and exits with status 2.
Files (``--plot``) are written only when the run succeeded, through a temporary file.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

DEFAULT_RANGE = timedelta(weeks=8)


def _usage(message: str):
    from threshold_operators.usage_error import UsageError

    return UsageError(message)


def _catalogue():
    from threshold_operators.rules.catalogue import load_catalogue

    return load_catalogue()


def _rule(catalogue, rule_id: str):
    if rule_id not in catalogue.rules:
        raise _usage(f"unknown rule {rule_id!r}; `storefence rules list` shows the catalogue")
    return catalogue.get(rule_id)


def _overridden(loaded, settings):
    from threshold_operators.analysis.overrides import OverrideError, apply_overrides

    try:
        return apply_overrides(loaded, settings or [])
    except OverrideError as exc:
        raise _usage(str(exc)) from None


def _span(args) -> timedelta:
    """How far before --end a range starts without --start: --days N (``storefence preview
    --backtest``), else 8 weeks."""
    days = getattr(args, "days", None)
    if days is None:
        return DEFAULT_RANGE
    if days <= 0:
        raise _usage(f"--days {days}: give a number of days above 0")
    return timedelta(days=days)


def _range(args, hook, loaded) -> tuple[datetime, datetime]:
    """--start (or --days) and --end, or the 8 weeks of landed data up to its last complete hour (of a
    5-minute rule: its last complete 5 minutes)."""
    from threshold_operators.engine.record import floor_to, landed_until

    end = args.end
    if end is None:
        landed = landed_until(hook, loaded.tables) if hook is not None else None
        if landed is None:
            raise _usage(f"the warehouse has no data for {loaded.rule.id} ({', '.join(loaded.tables)}); "
                         "give --start and --end, or --series")
        end = floor_to(landed, min(loaded.rule.grain_delta, timedelta(hours=1)))
    return _start_before(args, end), end


def _start_before(args, end: datetime) -> datetime:
    """--start, else the --days (8 weeks) before ``end``; a usage error unless before ``end``."""
    start = args.start or end - _span(args)
    if start >= end:
        raise _usage(f"--start {start.isoformat()} is not before the end {end.isoformat()}")
    return start


def _series_range(args, loaded, rows) -> tuple[datetime, datetime]:
    """The range a --series run evaluates, the same for backtest, preview and tune: --end or the
    series' end; --start, else the --days before the end, else the series' start less the rule's
    warm-up (the history its baselines need)."""
    from threshold_operators.analysis.backtest import warm_up

    end = args.end or max(r["bucket"] for r in rows) + loaded.rule.grain_delta
    if args.start or getattr(args, "days", None) is not None:
        return _start_before(args, end), end
    start = min(r["bucket"] for r in rows) + warm_up(loaded.rule)
    if start >= end:
        raise _usage(f"{args.series}: the series is shorter than the history {loaded.rule.id} "
                     f"needs before its first evaluation ({warm_up(loaded.rule)})")
    return start, end


def _series_rows(args, loaded, catalogue):
    from threshold_operators.analysis.series import SeriesError, read_csv

    try:
        return read_csv(Path(args.series), loaded.rule, catalogue.get)
    except SeriesError as exc:
        raise _usage(str(exc)) from None


def _run_backtest(args, catalogue, loaded, settings, hook):
    """(Backtest, query function, lookup, windows, rule as evaluated) on the warehouse or the series."""
    from threshold_operators.analysis.backtest import backtest, windows
    from threshold_operators.analysis.series import warehouse_for
    from threshold_operators.engine.evaluate import warehouse_query

    if args.series:
        rows = _series_rows(args, loaded, catalogue)
        start, end = _series_range(args, loaded, rows)
        wh, rule, lookup = warehouse_for(loaded, catalogue.get, rows)
        bt = backtest(rule, lookup, wh.query, start, end, settings, f"series {args.series}", stepwise=False)
        return bt, wh.query, lookup, rule, windows(rule, start, end, stepwise=False), wh
    start, end = _range(args, hook, loaded)
    query = warehouse_query(hook)
    bt = backtest(loaded, catalogue.get, query, start, end, settings)
    return bt, query, catalogue.get, loaded, windows(loaded, start, end), None


def _write_atomically(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def cmd_backtest(args, hook_of) -> int:
    from threshold_operators.analysis.backtest import render_text

    catalogue = _catalogue()
    loaded = _overridden(_rule(catalogue, args.rule), args.set)
    if args.plot and Path(args.plot).suffix.lower() not in (".png", ".svg", ".html"):
        raise _usage(f"--plot {args.plot}: use a .png, .svg or .html file")
    hook = None if args.series else hook_of(args)
    bt, query, lookup, rule, wins, wh = _run_backtest(args, catalogue, loaded, args.set or [], hook)
    try:
        if args.plot:
            from threshold_operators.analysis.plots import write_plot

            out = Path(args.plot)
            _write_atomically(out, lambda tmp: write_plot(bt, rule, lookup, query, tmp, wins, top=args.top))
        print(json.dumps(bt.as_json(), ensure_ascii=False, indent=1) if args.json else render_text(bt))
        if args.plot and not args.json:
            print(f"\nplot: {args.plot}")
    finally:
        if wh is not None:
            wh.dispose()
    return 0


EPISODES_LISTED = 20  # the latest episodes listed above a preview (and the one shown)


def cmd_preview_backtest(args, hook_of) -> int:
    """``storefence preview RULE --backtest``: what each channel of the rule's team would have sent
    first about an episode of a backtest (the latest, or ``--episode N`` of those listed): the
    "fired" message of its first firing cycle (``analysis.episodes.first_firing``), the entities
    named from the warehouse's dimensions as the evaluate task names them. Nothing is sent."""
    from threshold_operators.alerting.preview import as_text, preview_breaches
    from threshold_operators.alerting.routing import load_routing
    from threshold_operators.analysis.episodes import first_firing

    catalogue = _catalogue()
    loaded = _overridden(_rule(catalogue, args.rule), args.set)
    hook = None if args.series else hook_of(args)
    bt, _, _, _, _, wh = _run_backtest(args, catalogue, loaded, args.set or [], hook)
    if wh is not None:
        wh.dispose()
    rule, eps = bt.rule, bt.episodes
    over = f"{bt.start:%Y-%m-%d %H:%M} .. {bt.end:%Y-%m-%d %H:%M} UTC [{bt.source}]"
    if not eps:
        raise _usage(f"{rule.id} has no alert episode over {over}: nothing to preview; widen the range "
                     "(--start/--end, --days) or loosen the rule (--set)")
    n = len(eps) if args.episode is None else args.episode
    if not 1 <= n <= len(eps):
        raise _usage(f"--episode {args.episode}: {rule.id} has {len(eps)} episode(s) over {over} (1 .. {len(eps)})")
    episode = eps[n - 1]
    breaches, window = first_firing(rule, bt.results, eps, episode)
    if hook is not None:  # names, not keys, as the evaluate task gives them (engine.names)
        from threshold_operators.engine.names import with_names

        breaches = with_names(hook, breaches)
    shown = preview_breaches(rule, breaches, window, load_routing(), kind=args.channel, language=args.lang)
    severity = breaches[0]["severity"]
    if not shown:
        raise _usage(f"the team of {rule.id} has no {args.channel} channel for {severity} alerts")
    print(render_episodes(bt, n))
    later = f"; it reached {episode.severity} later: a \"worsened\" message" if episode.severity != severity else ""
    k = len(breaches) - 1
    others = f", with {k} other {'entity' if k == 1 else 'entities'} that fired then" if k else ""
    begun = " It fires from the range's first bucket: it may have begun before (an earlier --start shows)."
    before = begun if episode.start == bt.start else ""
    print(f"\nEpisode {n} of {len(eps)}: the first message people get, at its first firing "
          f"{episode.start:%Y-%m-%d %H:%M} UTC ({severity}{others}{later}).{before} Nothing is sent.\n")
    print(as_text(shown))
    return 0


def render_episodes(bt, chosen: int, limit: int = EPISODES_LISTED) -> str:
    """The backtest's episodes, numbered as ``--episode`` takes them: the latest ``limit`` and the
    ``chosen`` one (marked)."""
    eps = bt.episodes
    lines = [f"{bt.rule.id} ({bt.rule.mode}) over {bt.start:%Y-%m-%d %H:%M} .. {bt.end:%Y-%m-%d %H:%M} UTC"
             + (f" with {', '.join(bt.overrides)}" if bt.overrides else "") + f" [{bt.source}]: "
             f"{len(eps)} alert episode(s)",
             f"  {'#':>5}  {'start (UTC)':<16}  {'end':<16}  {'severity':<8}  entity"]
    last = -1
    for i in sorted({*range(max(0, len(eps) - limit), len(eps)), chosen - 1}):
        if i > last + 1:
            lines.append(f"  ... {i - last - 1} more (--episode {last + 2} .. {i}; `storefence backtest --json` "
                         "lists them all)")
        e = eps[i]
        end = f"{e.end:%Y-%m-%d %H:%M}" if e.end else "(firing)"
        lines.append(f"{'->' if i == chosen - 1 else '  '}{i + 1:>5}  {e.start:%Y-%m-%d %H:%M}  {end:<16}  "
                     f"{e.severity:<8}  {e.entity_key}")
        last = i
    return "\n".join(lines)


def cmd_tune(args, hook_of) -> int:
    from threshold_operators.analysis import tune
    from threshold_operators.analysis.backtest import backtest, backtest_series
    from threshold_operators.engine.evaluate import warehouse_query

    catalogue = _catalogue()
    loaded = _rule(catalogue, args.rule)
    values = [v.strip() for v in args.values.split(",") if v.strip()]
    if not values:
        raise _usage("--values: give at least one value, e.g. --values 1.5,2,2.5,3")
    labels = _labels(args.labels) if args.labels else None
    _overridden(loaded, [f"{args.param}={values[0]}"])  # a bad --param fails before any run
    if args.series:
        rows = _series_rows(args, loaded, catalogue)
        start, end = _series_range(args, loaded, rows)

        def run(variant, settings):
            return backtest_series(variant, catalogue.get, rows, start, end, settings)
    else:
        hook = hook_of(args)
        start, end = _range(args, hook, loaded)
        query = warehouse_query(hook)

        def run(variant, settings):
            return backtest(variant, catalogue.get, query, start, end, settings)
    from threshold_operators.analysis.overrides import OverrideError
    from threshold_operators.analysis.series import SeriesError

    try:
        result = tune.sweep(loaded, catalogue.get, run, args.param, values, labels, args.start, args.end,
                            args.max_alerts_per_week)
    except (OverrideError, SeriesError) as exc:
        raise _usage(str(exc)) from None
    print(json.dumps(result.as_json(), ensure_ascii=False, indent=1, default=str) if args.json else tune.render(result))
    return 0


def _labels(path):
    from threshold_operators.analysis.scoring import LabelsError, load_labels

    try:
        return load_labels(path)
    except LabelsError as exc:
        raise _usage(str(exc)) from None


def sampled(loaded, state_every):
    """``loaded`` with its cadence widened to ``state_every`` if it is a current-state rule evaluated
    more often (``--state-every``); else ``loaded`` itself."""
    from threshold_operators.analysis.overrides import apply_overrides
    from threshold_operators.durations import format_duration

    if state_every is None or not loaded.current_state or loaded.rule.every >= state_every:
        return loaded
    if state_every % loaded.rule.grain_delta:
        raise _usage(f"--state-every {format_duration(state_every)}: not a whole number of {loaded.rule.id}'s "
                     f"{loaded.rule.grain} buckets")
    return apply_overrides(loaded, [f"every={format_duration(state_every)}"])


def evaluate_all(catalogue, hook, labels, start, end, rule_ids=None, state_every=None) -> tuple[list, dict]:
    """Scores of every rule (or ``rule_ids``) over [start, end), and each rule's false alerts per
    incident-free week. ``state_every``: replay current-state rules evaluated more often than this
    (stock cover every 5 minutes) at this cadence instead: a replay cycle by cycle costs one query
    per cycle, 16,128 over 8 weeks every 5 minutes."""
    from threshold_operators.analysis.backtest import backtest
    from threshold_operators.analysis.scoring import incident_free_weeks, score
    from threshold_operators.engine.evaluate import warehouse_query

    query = warehouse_query(hook)
    quiet = incident_free_weeks(labels, start, end)
    scores, quiet_rates = [], {}
    for rule_id in rule_ids or sorted(catalogue.rules):
        loaded = sampled(catalogue.get(rule_id), state_every)
        bt = backtest(loaded, catalogue.get, query, start, end)
        s = score(loaded.rule, bt.episodes, labels, start, end)
        scores.append(s)
        if quiet:
            in_quiet = [e for e in bt.episodes if any(a <= e.start < b for a, b in quiet)]
            quiet_rates[rule_id] = len(in_quiet) / len(quiet)
    return scores, quiet_rates


def cmd_evaluate_labels(args, hook_of) -> int:
    from threshold_operators.analysis.scoring import _ts, render_scores
    from threshold_operators.durations import format_duration

    catalogue = _catalogue()
    labels = _labels(args.labels)
    rule_ids = None
    if args.rule:
        _rule(catalogue, args.rule)
        rule_ids = [args.rule]
    end = args.end or _ts(labels.get("window", {}).get("end") or max(i["end"] for i in labels["incidents"]))
    start = _start_before(args, end)
    state_every = getattr(args, "state_every", None)
    scores, quiet = evaluate_all(catalogue, hook_of(args), labels, start, end, rule_ids, state_every)
    widened = [s.rule_id for s in scores if sampled(catalogue.get(s.rule_id), state_every) is not catalogue.get(s.rule_id)]
    if args.json:
        print(json.dumps({"start": start.isoformat(), "end": end.isoformat(),
                          "rules": [s.as_json() | {"false_alerts_per_quiet_week": quiet.get(s.rule_id),
                                                   "sampled_every": format_duration(state_every) if s.rule_id in widened
                                                   else None}
                                    for s in scores]}, ensure_ascii=False, indent=1))
        return 0
    print(f"Rules against {args.labels}, {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC "
          f"({(end - start) / timedelta(days=7):.1f} weeks):\n")
    print(render_scores(scores, quiet))
    caught = sum(len(s.caught) for s in scores)
    expected = sum(len(s.expected) for s in scores)
    print(f"\n{caught} of {expected} expected detections; quiet wk = false alerts per incident-free week.")
    if widened:
        print(f"Current states replayed every {format_duration(state_every)} (--state-every), not as often as they run: "
              f"{', '.join(widened)}; their delays are up to that much later than live.")
    return 0


def cmd_report(args, hook_of) -> int:
    from threshold_operators.analysis import shadow

    if not args.shadow:
        raise _usage("storefence report: say what to report (--shadow)")
    messages = shadow.would_send(shadow.recorded(hook_of(args), args.since, args.until))
    print(json.dumps([m.as_json() for m in messages], ensure_ascii=False, indent=1) if args.json
          else shadow.render(messages))
    return 0


def cmd_test_rules(args) -> int:
    from threshold_operators.analysis.rule_tests import RuleTestError, load_cases, run_case, test_files

    path = Path(args.path) if args.path else Path(os.environ.get("STOREFENCE_HOME", ".")) / "tests" / "rules"
    if not path.exists():
        raise _usage(f"{path}: no such file or folder of rule tests")
    catalogue = _catalogue()
    failed = passed = 0
    for f in test_files(path):
        try:
            cases = load_cases(f)
        except RuleTestError as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        for case in cases:
            problems = run_case(case, catalogue)
            if problems:
                failed += 1
                print("\n".join(f"FAIL {p}" for p in problems))
            else:
                passed += 1
                print(f"ok   {case.rule}: {case.name}")
    print(f"\n{passed} passed, {failed} failed")
    return 1 if failed else 0
