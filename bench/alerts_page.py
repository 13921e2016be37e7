"""The alerts page with 100 and 10,000 active alerts: first render, a refreshed list, an alert's
chart, the API behind them and the bundle's size, each against Airflow's own in the same run.

One real Airflow (``tests/harness/airflow_stack.running_airflow``: api-server and the scheduler its
health check waits for, a PostgreSQL metadata DB of its own on 127.0.0.1:5432, an empty DAG folder;
the state store the SQLite file ``AIRFLOW_CONN_STOREFENCE_STATE`` names, as in ``tests/ui/conftest.py``)
is started once. For each size (``--sizes``) the store is emptied (``tests/ui/seed.clear_state_store``)
and written with the alerting bench's burst (``bench/alerting_bench.evaluation(n)``: n SKUs of 20
shops under their stock cover) through ``pipeline.queue_notifications``, as the notify task does,
on a pinned clock: 24 hourly evaluations before the burst's hour with varying values, then the burst
itself, so each alert has 25 chart points and the outbox its grouped messages. Then, medians of
``--runs`` after one warm-up, the cases of a run interleaved:

1. **API** (``requests``, a bearer token from ``POST /auth/token``): the page's first call,
   ``GET storefence/api/alerts?tab=firing&limit=300`` (the page's first page of rows; the counts
   are of all n), an alert's detail with its chart's points ``GET storefence/api/alerts/{fp}``;
   baseline: Airflow's ``GET /api/v2/version`` (authenticated, trivial). Milliseconds and ratios.
2. **Browser** (Debian's Chromium through Playwright, headless, ``--no-sandbox``, 1440x900, logged in
   once through Airflow's form; warm cache after the warm-up, as for someone who uses the page).
   Times come from the page's own clock (``performance.now()``, zero at the navigation's start),
   stamped by a MutationObserver installed before any script runs, so Playwright's polling adds
   nothing; the wall time seen from Python is kept in the runs as a check.
   - first render: ``page.goto(<base>/plugin/storefence?tab=firing)`` to the first
     ``[data-testid=alert-row]`` visible, and to every row of the answer attached; baseline:
     Airflow's home page ``page.goto(<base>/)`` to its first stats card (``[data-testid=stats-card]``,
     drawn from the dashboard's own API answer) visible;
   - refreshed list: the page opened afresh (so its own 30-second refresh cannot come between; a
     run where it did is a failure), one new red alert written to the store (the newest red is the
     first row), then from the click on ``[data-testid=refresh]`` to its row visible;
   - for both, when the page asked for the list and when its answer arrived (the page's resource
     timing): how much of the time is the API and how much the page's own work;
   - the detail: ``page.goto(...?alert=<fp>)`` to ``[data-testid=metric-chart]`` visible.
3. **Bundle**: ``storefence-alerts.umd.js`` in bytes and gzip -9 bytes, beside Airflow's own main
   bundle.

A measurement that fails is recorded with its error (in the JSON and on stdout), the others go on,
and the exit status is 1. Everything started (Airflow, its database, Chromium) is stopped at the end.

    PYTHONPATH=$PWD/plugins STOREFENCE_HOME=$PWD .venv/bin/python bench/alerts_page.py \\
        [--sizes 100,10000] [--runs 5] [--history-hours 24]

Results: ``bench/results/alerts_page.json`` and a table on stdout (about 4 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO), str(Path(__file__).resolve().parent)]

from alerting_bench import RULE, T0, evaluation  # noqa: E402

BUNDLE = REPO / "plugins" / "threshold_operators" / "ui" / "dist" / "storefence-alerts.umd.js"
RESULT = REPO / "bench" / "results" / "alerts_page.json"
HOME_READY = '[data-testid="stats-card"]'  # Airflow's dashboard: its stats cards, from its own API call
ROW = '[data-testid="alert-row"]'
PAGE_ROWS = 300  # the rows the page asks for at first (ui/src/components/AlertsPage.tsx: PAGE_ROWS)
WAIT_MS = 60_000

# Stamps performance.now() on the page's own clock when each thing first shows; installed before
# any of the page's scripts (add_init_script), so it sees the first mutation.
MARKS_JS = ("""(() => {
  if (window.__sf) return;
  const sf = window.__sf = {marks: {}, rows: [], want: null};
  const now = () => performance.now();
  const visible = (el) => !!el && (el.checkVisibility ? el.checkVisibility() : el.getClientRects().length > 0);
  const watch = {first_row: '__ROW__', chart: '[data-testid="metric-chart"]', home: '__HOME__'};
  let count = -1;
  const check = (fromMutation) => {
    const t = now();
    for (const [name, selector] of Object.entries(watch)) {
      if (sf.marks[name] === undefined && visible(document.querySelector(selector))) sf.marks[name] = t;
    }
    if (sf.want && sf.marks.wanted === undefined
        && visible(document.querySelector(`__ROW__[data-fingerprint="${sf.want}"]`))) sf.marks.wanted = t;
    if (fromMutation) {
      const n = document.querySelectorAll('__ROW__').length;
      if (n !== count) { sf.rows.push([t, n]); count = n; }
    }
  };
  new MutationObserver(() => check(true)).observe(document, {childList: true, subtree: true});
  const frame = () => { check(false); requestAnimationFrame(frame); };  // what shows without a mutation
  requestAnimationFrame(frame);
  document.addEventListener("click", (e) => {
    if (e.target instanceof Element && e.target.closest('[data-testid="refresh"]')) sf.marks.click = now();
  }, true);
})();""").replace("__ROW__", ROW).replace("__HOME__", HOME_READY)


# --- the state store ------------------------------------------------------------------------------

def burst_at(n: int, end: datetime, value: float) -> dict:
    """The alerting bench's burst (``evaluation(n)``), its window ending at ``end``, every SKU at ``value``."""
    ev = evaluation(n)
    start, bucket = (end - timedelta(hours=1)).isoformat(), (end - timedelta(hours=1)).isoformat()
    ev |= {"window_start": start, "window_end": end.isoformat()}
    for b in ev["breaches"]:
        b["bucket"], b["value"] = bucket, value
    return ev


def seed(store, n: int, history_hours: int) -> dict:
    """Empty the store, then queue ``history_hours`` hourly evaluations of the burst and the burst at T0."""
    from tests.ui.seed import clear_state_store
    from threshold_operators.alerting.pipeline import _link_settings, queue_notifications
    from threshold_operators.alerting.routing import load_routing
    from threshold_operators.rules.catalogue import load_catalogue

    clear_state_store(store)
    routing, rule = load_routing(), load_catalogue().rules[RULE].rule
    _link_settings()
    end = T0.replace(minute=0)
    t = time.perf_counter()
    for h in range(history_hours, -1, -1):  # cover days drifting between 1.5 and 6.5 (threshold 7), 4.0 at T0
        value = 4.0 if h == 0 else round(4.0 + 2.5 * math.sin(h / 3), 2)
        queue_notifications(rule, burst_at(n, end - timedelta(hours=h), value), store, routing,
                            T0 - timedelta(hours=h))
    seconds = time.perf_counter() - t
    from sqlalchemy import func, select

    from threshold_operators.alerting import store as sm

    with store.engine.connect() as con:
        counts = {name: con.execute(select(func.count()).select_from(sm.metadata.tables[name])).scalar_one()
                  for name in sorted(sm.metadata.tables)}
    return {"seconds": round(seconds, 2), "evaluations": history_hours + 1, "rows": counts}


def new_red_alert(store, tag: str, minutes: int) -> str:
    """One more firing red alert (as ``tests/ui/test_alerts_page.py`` fires one), opened ``minutes``
    after T0 so it is the newest red, the first row; its fingerprint."""
    from threshold_operators.alerting.lifecycle import Observation, transition

    at = T0 + timedelta(minutes=minutes)
    obs = Observation(RULE, f"shop_id=shop-00/sku=SKU-NEW-{tag}", "firing", "red", at - timedelta(hours=1), at,
                      {"metric": "cover_days", "value": 0.4, "baseline": None, "threshold": 3.0})
    alert = transition(None, obs, at).alert
    store.save(alert)
    return alert.fingerprint


# --- the stack --------------------------------------------------------------------------------------

@contextmanager
def chromium_page(stack):
    """A logged-in page in Debian's Chromium (``tests/ui/conftest``'s launch options and ``Browser``)."""
    from playwright.sync_api import sync_playwright

    from tests.ui.conftest import CHROMIUM, Browser

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage", "--font-render-hinting=none"])
        b = Browser(browser)
        try:
            page = b.new_page()
            page.context.add_init_script(MARKS_JS)
            page.goto(f"{stack.base}/auth/login?next=/")
            page.locator("input[name=username]").fill("admin")
            page.locator("input[name=password]").fill(stack.passwords["admin"])
            page.locator("form button[type=submit]").click()
            page.wait_for_url(lambda url: "/auth/login" not in url)
            assert "_token" in {c["name"] for c in page.context.cookies(stack.base)}, "no _token cookie after login"
            yield page, browser.version
        finally:
            b.close_contexts()
            browser.close()


# --- measurements -------------------------------------------------------------------------------------

class LoadSampler:
    """The 1-minute load average every 2 s in a thread: how busy the machine was meanwhile, this
    bench's own processes (api-server, Chromium, itself: 1.8-2.8 in a quiet run) included; well above that,
    something else shared the two cores."""

    def __init__(self):
        import threading

        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(2):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {"median": None, "max": None, "samples": 0}
        return {"median": round(statistics.median(self.samples), 2), "max": round(max(self.samples), 2),
                "samples": len(self.samples)}


def run_cases(name: str, runs: int, cases: dict, errors: list) -> dict:
    """One warm-up, then ``runs`` rounds of ``cases`` (name -> function returning a dict of figures),
    interleaved; a failing case is recorded and the others go on."""
    out = {case: [] for case in cases}
    for i in range(runs + 1):
        for case, fn in cases.items():
            try:
                figures = fn(f"{i}")
            except Exception as exc:  # noqa: BLE001 - recorded, printed, exit status 1
                msg = f"{name}/{case} run {i}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                print(f"FAILED {msg}", file=sys.stderr, flush=True)
                errors.append({"measurement": f"{name}/{case}", "run": i, "error": msg,
                               "traceback": traceback.format_exc()})
                continue
            if i > 0:  # run 0 warms up
                out[case].append({k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()})
    return out


def medians(rows: list[dict]) -> dict:
    keys = [k for k in (rows[0] if rows else {}) if all(isinstance(r.get(k), (int, float)) for r in rows)]
    return {k: round(statistics.median(r[k] for r in rows), 2) for k in keys}


def api_cases(stack, token: str, fp_holder: dict) -> dict:
    import requests

    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"

    def get(path: str) -> tuple[float, requests.Response]:
        t = time.perf_counter()
        r = s.get(f"{stack.base}/{path}", timeout=120)
        ms = (time.perf_counter() - t) * 1000
        r.raise_for_status()
        return ms, r

    def version(_):
        ms, r = get("api/v2/version")
        return {"ms": ms, "bytes": len(r.content)}

    def listing(_):
        ms, r = get(f"storefence/api/alerts?tab=firing&limit={PAGE_ROWS}")
        body = r.json()
        fp_holder["rows"], fp_holder["total"] = len(body["alerts"]), body["total"]
        fp_holder.setdefault("fp", body["alerts"][-1]["fingerprint"])  # the last row of the page
        return {"ms": ms, "bytes": len(r.content), "rows": len(body["alerts"]), "total": body["total"]}

    def detail(_):
        if "fp" not in fp_holder:
            raise RuntimeError("no fingerprint: the list answered nothing")
        ms, r = get(f"storefence/api/alerts/{fp_holder['fp']}")
        body = r.json()
        return {"ms": ms, "bytes": len(r.content), "points": len(body["points"]),
                "notifications": len(body["notifications"])}

    return {"list": listing, "detail": detail, "baseline_version": version}


def marks(page) -> dict:
    """The page's stamps, its row counts over time and its list requests ([start, response end], ms)."""
    return page.evaluate("""() => ({marks: window.__sf.marks, rows: window.__sf.rows,
        lists: performance.getEntriesByType("resource").filter(e => /\\/storefence\\/api\\/alerts(\\?|$)/.test(e.name))
                                                   .map(e => [e.startTime, e.responseEnd])})""")


def goto_until(page, url: str, condition: str) -> tuple[dict, float]:
    """Navigate, wait until ``condition`` (JS on ``window.__sf``) holds; the marks and the wall ms."""
    t = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_function(f"() => window.__sf && ({condition})", timeout=WAIT_MS)
    return marks(page), (time.perf_counter() - t) * 1000


def browser_cases(stack, page, expected: dict) -> dict:
    firing = stack.url(tab="firing")

    def full_at(rows: list, n: int) -> float | None:
        return next((t for t, count in rows if count >= n), None)

    def home(_):
        m, wall = goto_until(page, f"{stack.base}/", "window.__sf.marks.home !== undefined")
        return {"visible_ms": m["marks"]["home"], "wall_ms": wall}

    def first_render(_):
        n = expected["rows"]
        m, wall = goto_until(page, firing, f"window.__sf.rows.some(([t, c]) => c >= {n})"
                                           " && window.__sf.marks.first_row !== undefined")
        first = m["marks"]["first_row"]
        drawn = max((e for e in m["lists"] if e[1] <= first), key=lambda e: e[1], default=None)  # the list it drew
        asked, answered = drawn if drawn else (None, None)
        return {"first_row_ms": first, "full_list_ms": full_at(m["rows"], n), "api_asked_ms": asked,
                "api_answered_ms": answered,
                "render_after_answer_ms": first - answered if answered is not None else None, "rows": n,
                "wall_ms": wall}

    def detail(_):
        m, wall = goto_until(page, stack.url(tab="firing", alert=expected["fp"]),
                             "window.__sf.marks.chart !== undefined")
        return {"chart_ms": m["marks"]["chart"], "wall_ms": wall}

    def refresh(tag):
        # a freshly opened page each time, so the page's own 30-second refresh does not come between
        n = expected["rows"]
        goto_until(page, firing, f"window.__sf.rows.some(([t, c]) => c >= {n})")
        page.evaluate("() => { window.__sf.marks.reset = performance.now(); }")
        fp = new_red_alert(stack.store, f"{expected['n']}-{tag}", int(tag) + 1)
        page.evaluate("fp => { window.__sf.want = fp; }", fp)
        t = time.perf_counter()
        page.get_by_test_id("refresh").click()
        page.wait_for_function("() => window.__sf.marks.wanted !== undefined", timeout=WAIT_MS)
        wall = (time.perf_counter() - t) * 1000
        got = marks(page)
        m, click = got["marks"], got["marks"]["click"]
        between = [start for start, _ in got["lists"] if m["reset"] <= start < click]
        if between:
            raise RuntimeError(f"the page asked for the list on its own {click - between[0]:.0f} ms before the click "
                               f"(its 30-second refresh): not a refresh's time")
        asked, answered = min((e for e in got["lists"] if e[0] >= click), default=(None, None))
        first = page.locator(ROW).first.get_attribute("data-fingerprint")
        if first != fp:
            raise AssertionError(f"the new red alert {fp} is not the first row ({first})")
        return {"new_row_ms": m["wanted"] - click,
                "api_asked_ms": asked - click if asked is not None else None,
                "api_answered_ms": answered - click if answered is not None else None,
                "render_after_answer_ms": m["wanted"] - answered if answered is not None else None, "wall_ms": wall}

    return {"baseline_home": home, "first_render": first_render, "detail": detail, "refresh": refresh}


def bundle_figures() -> dict:
    import airflow

    data = BUNDLE.read_bytes()
    out = {"file": str(BUNDLE.relative_to(REPO)), "bytes": len(data), "gzip9_bytes": len(gzip.compress(data, 9))}
    main = sorted((Path(airflow.__file__).parent / "ui" / "dist" / "assets").glob("index-*.js"))
    if main:
        big = max(main, key=lambda p: p.stat().st_size).read_bytes()
        out["airflow_ui_main"] = {"file": f"airflow/ui/dist/assets/{max(main, key=lambda p: p.stat().st_size).name}",
                                  "bytes": len(big), "gzip9_bytes": len(gzip.compress(big, 9))}
        out["ratio_gzip_to_airflow_main"] = round(out["gzip9_bytes"] / out["airflow_ui_main"]["gzip9_bytes"], 4)
    return out


def measure_size(stack, page, token: str, n: int, size: dict, args, errors: list) -> None:
    """Seed ``n`` alerts, then the API's and the browser's cases into ``size``."""
    print(f"== n={n:,}: seeding", flush=True)
    try:
        size["seed"] = seed(stack.store, n, args.history_hours)
    except Exception as exc:  # noqa: BLE001
        errors.append({"measurement": f"{n}/seed", "error": f"{type(exc).__name__}: {exc}",
                       "traceback": traceback.format_exc()})
        print(f"FAILED seeding {n}: {exc}", file=sys.stderr)
        return
    expected = {"n": n}
    all_runs = run_cases(f"{n}/api", args.runs, api_cases(stack, token, expected), errors)
    size["api"] = {"median": {c: medians(r) for c, r in all_runs.items()}, "runs": all_runs}
    if "rows" not in expected:
        return  # no list: the browser cases have nothing to wait for (the error is recorded)
    print(f"== n={n:,}: browser", flush=True)
    all_runs = run_cases(f"{n}/browser", args.runs, browser_cases(stack, page, expected), errors)
    size["browser"] = {"median": {c: medians(r) for c, r in all_runs.items()}, "runs": all_runs}
    api, web = size["api"]["median"], size["browser"]["median"]
    version, home = api["baseline_version"].get("ms"), web["baseline_home"].get("visible_ms")
    size["ratios"] = {
        "api_list_to_version": ratio(api["list"].get("ms"), version),
        "api_detail_to_version": ratio(api["detail"].get("ms"), version),
        "first_row_to_home": ratio(web["first_render"].get("first_row_ms"), home),
        "full_list_to_home": ratio(web["first_render"].get("full_list_ms"), home),
        "chart_to_home": ratio(web["detail"].get("chart_ms"), home),
    }


# --- report ----------------------------------------------------------------------------------------------

HOME = ("browser", "baseline_home", "visible_ms")


def ratio(a, b):
    return round(a / b, 2) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def table(results: dict) -> str:
    sizes = list(results["sizes"])
    lines = ["| measure (median ms) | " + " | ".join(f"n={int(s):,}" for s in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]

    def med(s, group, case, key):
        return results["sizes"][s].get(group, {}).get("median", {}).get(case, {}).get(key)

    rows = [  # label, (group, case, key), the baseline's (group, case, key) or None
        (f"API list `alerts?tab=firing&limit={PAGE_ROWS}`", ("api", "list", "ms"), ("api", "baseline_version", "ms")),
        ("API detail + chart `alerts/{fp}`", ("api", "detail", "ms"), ("api", "baseline_version", "ms")),
        ("baseline: API `/api/v2/version`", ("api", "baseline_version", "ms"), None),
        ("first row visible", ("browser", "first_render", "first_row_ms"), HOME),
        ("full list attached", ("browser", "first_render", "full_list_ms"), HOME),
        ("  list asked for", ("browser", "first_render", "api_asked_ms"), None),
        ("  list answer received", ("browser", "first_render", "api_answered_ms"), None),
        ("baseline: Airflow home, stats card visible", HOME, None),
        ("refresh click -> new red row visible", ("browser", "refresh", "new_row_ms"), None),
        ("  list asked for (after the click)", ("browser", "refresh", "api_asked_ms"), None),
        ("  list answer received (after the click)", ("browser", "refresh", "api_answered_ms"), None),
        ("`?alert=fp` -> chart visible", ("browser", "detail", "chart_ms"), HOME),
    ]
    for label, what, base in rows:
        cells = []
        for s in sizes:
            v = med(s, *what)
            r = ratio(v, med(s, *base)) if base else None
            cells.append("failed" if v is None else f"{v:,.1f}" + (f" (x{r})" if r is not None else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    extra = []
    for s in sizes:
        api = results["sizes"][s].get("api", {}).get("median", {})
        extra.append(f"{api.get('list', {}).get('rows', '?'):,.0f} of {api.get('list', {}).get('total', 0):,.0f} / "
                     f"{api.get('list', {}).get('bytes', 0) / 1024:,.0f} KiB / {api.get('detail', {}).get('points', '?'):.0f} pts"
                     if api.get("list") and api.get("detail") else "failed")
    lines.append("| rows shown of total / list answer / chart points | " + " | ".join(extra) + " |")
    loads = [results["sizes"][s].get("load_1min") or {} for s in sizes]
    lines.append("| 1-min load meanwhile, this bench included (median / max; 2 cores) | "
                 + " | ".join(f"{x.get('median')} / {x.get('max')}" for x in loads) + " |")
    b = results["bundle"]
    main = b.get("airflow_ui_main", {})
    lines.append("")
    lines.append(f"Bundle `{Path(b['file']).name}`: {b['bytes']:,} bytes, {b['gzip9_bytes']:,} gzip -9 "
                 f"(Airflow's main bundle: {main.get('bytes', 0):,} / {main.get('gzip9_bytes', 0):,} gzip -9, "
                 f"x{b.get('ratio_gzip_to_airflow_main')}).")
    lines.append("Ratios (xN) against the same run's baseline: API to `/api/v2/version`, page to Airflow's home page.")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,10000", help="active alerts, comma-separated")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--history-hours", type=int, default=24, help="hourly evaluations before the burst (chart points)")
    ap.add_argument("--out", type=Path, default=RESULT, help="where the JSON goes")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    wall0 = time.monotonic()
    errors: list[dict] = []
    # first: tests.conftest points AIRFLOW_HOME at a scratch folder (removed at the end) before Airflow is imported
    from tests import conftest as tests_conftest  # noqa: I001
    import importlib.metadata

    import airflow
    import requests

    from tests.ui.conftest import alerts_page_airflow

    chromium = subprocess.run([os.environ.get("STOREFENCE_CHROMIUM", "/usr/bin/chromium"), "--version"],
                              capture_output=True, text=True).stdout.strip()
    results = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": {"cpus": os.cpu_count(), "load_before": [round(x, 2) for x in os.getloadavg()],
                           "python": platform.python_version(), "platform": platform.platform(),
                           "airflow": airflow.__version__, "chromium": chromium,
                           "playwright": importlib.metadata.version("playwright")},
               "settings": {"sizes": sizes, "runs": args.runs, "warm_up": 1, "history_hours": args.history_hours,
                            "burst_t0": T0.isoformat(), "rule": RULE, "page_limit": PAGE_ROWS},
               "bundle": bundle_figures(), "sizes": {}, "errors": errors}
    try:
        with tempfile.TemporaryDirectory(prefix="sf-bench-page-") as tmp, alerts_page_airflow(Path(tmp)) as stack:
            results["stack_start_s"] = round(stack.seconds_to_start, 1)
            print(f"Airflow up at {stack.base} in {stack.seconds_to_start:.0f} s", flush=True)
            token = stack.deployment.client.token()
            with chromium_page(stack) as (page, version):
                results["machine"]["chromium_playwright"] = version
                results["machine"]["airflow_api"] = requests.get(
                    f"{stack.base}/api/v2/version", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
                for n in sizes:
                    key = str(n)
                    size: dict = {}
                    results["sizes"][key] = size
                    with LoadSampler() as load:
                        measure_size(stack, page, token, n, size, args, errors)
                    size["load_1min"] = load.summary()
    except Exception as exc:  # noqa: BLE001 - the stack or the browser: recorded, the rest is still written
        errors.append({"measurement": "stack", "error": f"{type(exc).__name__}: {exc}",
                       "traceback": traceback.format_exc()})
        print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        shutil.rmtree(tests_conftest._HOME, ignore_errors=True)
    results["wall_s"] = round(time.monotonic() - wall0, 1)
    results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    print()
    print(table(results))
    print(f"\nwall time {results['wall_s']:.0f} s (Airflow's start {results.get('stack_start_s', '?')} s); "
          f"{len(errors)} failed measurement(s); written {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
