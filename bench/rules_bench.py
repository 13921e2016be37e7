"""One evaluation cycle of the whole rule catalogue, against its floor and two plain alternatives.

The warehouse: 10 shops x 20,000 SKUs x 365 days (about 10 million order lines, the default
incidents) in DuckDB, built once into ``--data-dir`` and reused. The cycle evaluates every rule of
the catalogue (live and shadow) over the hour that ends the data, 2026-09-30 16:00 UTC
(midnight in Shanghai, so the day-grain rules have a day to evaluate).

Cases, each run in a fresh process (its own peak RSS), interleaved, medians of ``--runs``:

- ``engine``: the engine's cycle (compile + evaluate every rule; one warehouse connection);
- ``floor``: one plain scan-and-aggregate (rows per shop and hour) of each fact table the rules
  read, over the time ranges the cycle reads from it;
- ``pandas``: the same rules written plainly in pandas over the raw rows of those ranges;
- ``gx``: the same thresholds as Great Expectations expectations over the metric tables (each
  rule's metric, baseline and compared values, computed in SQL), GX Core on pandas.

Also: the cycle on 24 months of history against 1 month (10 shops x 20,000 SKUs, no incidents),
and the parse time of ``dags/storefence_alerts_sales.py`` with the catalogue plus 200 generated
rules against a one-task DAG file.

    .venv/bin/python bench/rules_bench.py [--runs 5] [--data-dir /tmp/sfbench]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

END = datetime(2026, 9, 30, 16, tzinfo=UTC)
H = timedelta(hours=1)
SHOPS, SKUS = 10, 20_000
TIME_COLUMN = {"orders": "created_at", "order_items": "created_at", "payments": "attempted_at",
               "refunds": "requested_at", "complaints": "created_at", "reviews": "created_at", "traffic": "hour",
               "ad_spend": "hour", "inventory_snapshots": "snapshot_at", "shipments": "shipped_at"}
# What the current-state queries read (their SQL bounds them by window_end, not in_window).
CURRENT_STATE_READS = {
    "inventory.stock_cover": {"inventory_snapshots": timedelta(days=32), "order_items": timedelta(days=14)},
    "compound.spike_low_stock": {"inventory_snapshots": timedelta(days=32), "order_items": H},
    "customer.logistics_stale": {"shipments": timedelta(days=30)},
}


# --- the warehouses --------------------------------------------------------------------------

def build(data_dir: Path, days: int) -> Path:
    from threshold_operators.simulator.catalogue import MEAN_LINES
    from threshold_operators.simulator.run import SimulationSpec, simulate
    from threshold_operators.warehouse.hook import WarehouseHook

    path = data_dir / f"w{days}.duckdb"
    if path.exists():
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    per_day = round(10_000_000 / (SHOPS * 365 * MEAN_LINES))
    spec = SimulationSpec(shops=SHOPS, skus=SKUS, days=days, orders_per_day=per_day, seed=1, end=END,
                          incidents="default" if days == 365 else "none")
    print(f"building {path} ({days} days) ...", flush=True)
    part = path.with_suffix(".duckdb.part")
    part.unlink(missing_ok=True)
    simulate(spec, WarehouseHook(url=f"duckdb:///{part}"))
    part.rename(path)
    return path


def scan_ranges(catalogue) -> dict[str, list[tuple[datetime, datetime]]]:
    """Per fact table, the time ranges the cycle reads (on the table's time column)."""
    from threshold_operators.engine.windows import plan_cycle

    out: dict[str, list] = {}
    for rid, loaded in catalogue.rules.items():
        if loaded.current_state:
            for table, span in CURRENT_STATE_READS[rid].items():
                out.setdefault(table, []).append((END - span, END + H))
            continue
        plan = plan_cycle(loaded.rule, END - H, END)
        for table in loaded.tables:
            if table in TIME_COLUMN:
                out.setdefault(table, []).extend(plan.scans)
    return {t: _merge(r) for t, r in out.items()}


def _merge(ranges):
    merged = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _where(column: str, ranges) -> str:
    return "(" + " OR ".join(f"({column} >= TIMESTAMPTZ '{lo.isoformat()}' AND {column} < TIMESTAMPTZ '{hi.isoformat()}')"
                             for lo, hi in ranges) + ")"


# --- the cases (each in its own process) ---------------------------------------------------------

def case_engine(path: Path) -> dict:
    from sqlalchemy import text

    from threshold_operators.engine.compile import compile_rule
    from threshold_operators.engine.evaluate import evaluate
    from threshold_operators.rules.catalogue import load_catalogue
    from threshold_operators.warehouse.hook import WarehouseHook

    catalogue = load_catalogue()
    hook = WarehouseHook(url=f"duckdb:///{path}")
    per_rule, firing = {}, {}
    t0 = time.perf_counter()
    with hook.engine.connect() as con:
        def query(sql, params):
            return [dict(r._mapping) for r in con.execute(text(sql), params)]

        for rid, loaded in sorted(catalogue.rules.items()):
            t = time.perf_counter()
            ev = evaluate(compile_rule(loaded, catalogue.get), query, END - H, END, now=END)
            per_rule[rid] = round(time.perf_counter() - t, 3)
            firing[rid] = sorted({r.entity_key for r in ev.firing if r.bucket == _last_bucket(loaded)})
    return {"seconds": time.perf_counter() - t0, "per_rule": per_rule, "firing": firing}


def _last_bucket(loaded):
    return END - (timedelta(days=1) if loaded.rule.grain == "day" else H)


def case_floor(path: Path) -> dict:
    import duckdb

    from threshold_operators.rules.catalogue import load_catalogue

    ranges = scan_ranges(load_catalogue())
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    t0 = time.perf_counter()
    rows = {}
    for table, rr in sorted(ranges.items()):
        col = TIME_COLUMN[table]
        rows[table] = len(con.execute(f"SELECT shop_id, date_trunc('hour', {col}) AS h, COUNT(*) FROM {table} "
                                      f"WHERE {_where(col, rr)} GROUP BY 1, 2").fetchall())
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    for table in sorted(ranges):
        col = TIME_COLUMN[table]
        con.execute(f"SELECT shop_id, date_trunc('hour', {col}), COUNT(*) FROM {table} GROUP BY 1, 2").fetchall()
    full = time.perf_counter() - t1
    con.close()
    return {"seconds": seconds, "full_table_seconds": full, "groups": rows,
            "ranges": {t: [[lo.isoformat(), hi.isoformat()] for lo, hi in r] for t, r in ranges.items()}}


def case_gx(path: Path) -> dict:
    import logging

    import pandas as pd
    from sqlalchemy import text

    from threshold_operators.engine.compile import compile_rule
    from threshold_operators.rules.catalogue import load_catalogue
    from threshold_operators.warehouse.hook import WarehouseHook

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    catalogue = load_catalogue()
    hook = WarehouseHook(url=f"duckdb:///{path}")
    t0 = time.perf_counter()
    tables = {}
    with hook.engine.connect() as con:
        for rid, loaded in sorted(catalogue.rules.items()):
            compiled = compile_rule(loaded, catalogue.get)
            sql = compiled.sql.replace("SELECT * FROM final", "SELECT * FROM scored")
            result = con.execute(text(sql), compiled.params(END - H, END))
            tables[rid] = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    sql_seconds = time.perf_counter() - t0
    import great_expectations as gx

    from threshold_operators.extract.quality_gate import _quiet_gx_context

    t1 = time.perf_counter()
    ctx = _quiet_gx_context()
    source = ctx.data_sources.add_pandas("metrics")
    failing = {}
    for rid, loaded in sorted(catalogue.rules.items()):
        frame = tables[rid]
        frame = frame[frame["bucket"] == _last_bucket(loaded)].reset_index(drop=True)
        batch = source.add_dataframe_asset(rid).add_batch_definition_whole_dataframe("b").get_batch(
            batch_parameters={"dataframe": frame})
        suite = gx.ExpectationSuite(name=rid)
        for i, cond in enumerate(loaded.rule.conditions):
            if cond.rule is not None:
                continue
            low = min(cond.thresholds(loaded.rule.severity).values())
            high = max(cond.thresholds(loaded.rule.severity).values())
            kwargs = {"max_value": low} if cond.above is not None else {"min_value": high}
            suite.add_expectation(gx.expectations.ExpectColumnValuesToBeBetween(
                column=f"v_{i}", **kwargs, row_condition="volume_ok == 1", condition_parser="pandas"))
        result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
        failing[rid] = sum(len(r.result.get("unexpected_index_list") or []) for r in result.results if not r.success)
    gx_seconds = time.perf_counter() - t1
    return {"seconds": sql_seconds + gx_seconds, "sql_seconds": sql_seconds, "gx_seconds": gx_seconds,
            "unexpected_rows": failing}


# --- pandas: the rules written plainly over the raw rows -----------------------------------------

def case_pandas(path: Path) -> dict:
    import duckdb

    from threshold_operators.engine.windows import baseline_offsets, plan_cycle
    from threshold_operators.rules.catalogue import load_catalogue

    catalogue = load_catalogue()
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    b = END - H
    t0 = time.perf_counter()
    per_rule, firing = {}, {}

    def rows(table, columns, rid, where="TRUE"):
        loaded = catalogue.get(rid)
        if loaded.current_state:
            rr = [(END - CURRENT_STATE_READS[rid][table], END + H)]
        else:
            rr = _merge(plan_cycle(loaded.rule, END - H, END).scans)
        df = con.execute(f"SELECT {columns} FROM {table} WHERE {_where(TIME_COLUMN[table], rr)} AND {where}").df()
        df[TIME_COLUMN[table]] = df[TIME_COLUMN[table]].dt.tz_convert("UTC")
        return df

    def hourly(df, col, keys, value=None, how="size"):
        df = df.assign(bucket=df[col].dt.floor("h"))
        g = df.groupby([*keys, "bucket"])
        return (g.size() if how == "size" else g[value].agg(how)).rename("v")

    def offsets_mean(series, keys_frame, offsets, fill_zero=True, stat="mean"):
        import numpy as np
        import pandas as pd

        vals = []
        for off in offsets:
            idx = pd.MultiIndex.from_frame(keys_frame.assign(bucket=b - off))
            v = series.reindex(idx).to_numpy(dtype=float)
            vals.append(np.nan_to_num(v) if fill_zero else v)
        arr = np.vstack(vals)
        return np.nanmedian(arr, axis=0) if stat == "median" else np.nanmean(arr, axis=0)

    def timed(rid, fn):
        t = time.perf_counter()
        firing[rid] = sorted(fn())
        per_rule[rid] = round(time.perf_counter() - t, 3)

    def spike(rid):
        import numpy as np

        rule = catalogue.get(rid).rule
        df = rows("order_items", "shop_id, sku, order_id, created_at", rid)
        m = hourly(df.drop_duplicates(["order_id", "sku"]), "created_at", ["shop_id", "sku"])
        cur = m.xs(b, level="bucket").reset_index()
        cur = cur[cur["v"] >= 10]
        base = offsets_mean(m, cur[["shop_id", "sku"]], baseline_offsets(rule.conditions[0].baseline, H))
        ratio = np.where(base > 0, cur["v"] / np.where(base > 0, base, 1), np.inf)
        z = (cur["v"] - base) / np.sqrt(np.maximum(base, 1))
        hit = cur[(ratio > 2.0) & (z > 6.0)]
        return {f"shop_id={s}/sku={k}" for s, k in zip(hit["shop_id"], hit["sku"], strict=True)}

    def drop(rid):
        import numpy as np
        import pandas as pd

        rule = catalogue.get(rid).rule
        df = rows("orders", "shop_id, created_at", rid)
        m = hourly(df, "created_at", ["shop_id"])
        shops = pd.DataFrame({"shop_id": sorted(df["shop_id"].unique())})
        ok = np.ones(len(shops), dtype=bool)
        for k in range(rule.for_):  # every bucket of the persistence window must breach
            t = b - k * H
            cur = m.reindex(pd.MultiIndex.from_frame(shops.assign(bucket=t))).fillna(0).to_numpy()
            cond = rule.conditions[0]
            if cond.baseline.kind == "trailing":
                n = int(cond.baseline.window / H)
                hist = [m.reindex(pd.MultiIndex.from_frame(shops.assign(bucket=t - j * H))).fillna(0).to_numpy()
                        for j in range(1, n + 1)]
                base = np.mean(hist, axis=0)
            else:
                hist = [m.reindex(pd.MultiIndex.from_frame(shops.assign(bucket=t - off))).fillna(0).to_numpy()
                        for off in baseline_offsets(cond.baseline, H)]
                base = np.median(hist, axis=0) if cond.baseline.stat == "median" else np.mean(hist, axis=0)
            guard = base >= 10 if rule.min_volume else np.ones(len(shops), dtype=bool)
            ok &= guard & (base > 0) & (cur / np.where(base > 0, base, 1) < 0.5)
        return {f"shop_id={s}" for s in shops["shop_id"][ok]}

    def payment():
        df = rows("payments", "shop_id, gateway, status, attempted_at", "finance.payment_failure")
        df = df[df["attempted_at"].dt.floor("h") == b]
        g = df.groupby(["shop_id", "gateway"]).agg(attempts=("status", "size"),
                                                   failures=("status", lambda s: (s == "failed").sum()))
        g = g[(g["attempts"] >= 40) & (g["failures"] / g["attempts"] > 0.15)].reset_index()
        return {f"shop_id={s}/gateway={k}" for s, k in zip(g["shop_id"], g["gateway"], strict=True)}

    def conversion():
        import pandas as pd

        rid = "traffic.conversion_drop"
        v = rows("traffic", "shop_id, hour, visitors", rid).groupby(["shop_id", "hour"])["visitors"].sum()
        o = hourly(rows("orders", "shop_id, created_at", rid), "created_at", ["shop_id"])
        o.index = o.index.set_names(["shop_id", "hour"])
        conv = (o.reindex(v.index).fillna(0) / v).rename("c").reset_index()
        out = set()
        for shop, g in conv.groupby("shop_id"):
            g = g.set_index("hour")["c"]
            visitors = v.xs(shop, level="shop_id")
            hits = 0
            for t in (b - H, b):
                hist = g[(g.index < t) & (g.index >= t - timedelta(days=7))]
                if len(hist) >= 48 and t in g.index and visitors.get(t, 0) >= 300 and g[t] / hist.mean() < 0.5:
                    hits += 1
            if hits == 2:
                out.add(f"shop_id={shop}")
        _ = pd  # plain pandas
        return out

    def reviews(rid):
        import numpy as np
        import pandas as pd

        df = rows("reviews", "shop_id, sku, rating, created_at", rid)
        df = df[df["rating"] <= 3].assign(bucket=lambda d: d["created_at"].dt.floor("h"))
        if rid == "customer.negative_review":
            cur = df[df["bucket"] == b]
            return {f"shop_id={s}/sku={k}" for s, k in set(zip(cur["shop_id"], cur["sku"], strict=True))}
        def count_24h(t):
            w = df[(df["bucket"] > t - 24 * H) & (df["bucket"] <= t)]
            return w.groupby(["shop_id", "sku"]).size()
        cur = count_24h(b)
        cur = cur[cur >= 6]
        hist = np.mean([count_24h(b - timedelta(days=k)).reindex(cur.index).fillna(0).to_numpy() for k in range(1, 8)], axis=0)
        z = (cur.to_numpy() - hist) / np.sqrt(np.maximum(hist, 1))
        ratio = np.where(hist > 0, cur.to_numpy() / np.where(hist > 0, hist, 1), np.inf)
        hit = cur[(z > 12) & (ratio > 4)]
        _ = pd
        return {f"shop_id={s}/sku={k}" for s, k in hit.index}

    def paid():
        rid = "traffic.paid_cost_quality"
        df = rows("ad_spend", "shop_id, channel, hour, spend, clicks, orders", rid)
        def window(t):
            w = df[(df["hour"] > t - 24 * H) & (df["hour"] <= t)].groupby(["shop_id", "channel"])[["spend", "clicks", "orders"]].sum()
            return w.assign(cpv=w["spend"].astype(float) / w["clicks"], conv=w["orders"] / w["clicks"])
        now, year = window(b), window(b - timedelta(days=364))
        j = now.join(year, rsuffix="_ly", how="inner")
        j = j[(j["clicks"] >= 500) & ((j["cpv"] - j["cpv_ly"]) / j["cpv_ly"] * 100 > 50)
              & ((j["conv"] - j["conv_ly"]) / j["conv_ly"] * 100 < -30)]
        return {f"shop_id={s}/channel={c}" for s, c in j.index}

    def local_day(series):
        return series.dt.tz_convert("Asia/Shanghai").dt.floor("D").dt.tz_convert("UTC")

    def refund_rate():
        rid = "finance.refund_rate"
        o = rows("orders", "shop_id, created_at", rid)
        r = rows("refunds", "shop_id, requested_at", rid)
        od = o.assign(day=local_day(o["created_at"])).groupby(["shop_id", "day"]).size()
        rd = r.assign(day=local_day(r["requested_at"])).groupby(["shop_id", "day"]).size().reindex(od.index).fillna(0)
        rate = (rd / od).rename("rate").reset_index()
        day = END - timedelta(days=1)
        out = set()
        for shop, g in rate.groupby("shop_id"):
            g = g.set_index("day")["rate"]
            hist = g[(g.index < day) & (g.index >= day - timedelta(days=30))]
            if day in g.index and len(hist) >= 14 and od[(shop, day)] >= 100 and g[day] / hist.mean() > 2:
                out.add(f"shop_id={shop}")
        return out

    def complaints():
        import numpy as np

        rid = "finance.complaint_spike"
        c = rows("complaints", "shop_id, batch_id, created_at", rid)
        r = rows("refunds", "shop_id, sku, reason, requested_at", rid)
        p = con.execute("SELECT shop_id, sku, batch_id FROM products").df()
        r = r[r["reason"].isin(["quality", "damaged", "not_as_described"])].merge(p, on=["shop_id", "sku"])
        import pandas as pd

        issues = pd.concat([c.assign(day=local_day(c["created_at"]))[["shop_id", "batch_id", "day"]],
                            r.assign(day=local_day(r["requested_at"]))[["shop_id", "batch_id", "day"]]]
                           ).groupby(["shop_id", "batch_id", "day"]).size()
        day = END - timedelta(days=1)
        cur = issues.xs(day, level="day") if day in issues.index.get_level_values("day") else issues.iloc[:0]
        cur = cur[cur >= 5]
        hist = issues.reset_index(name="n")
        hist = hist[(hist["day"] < day) & (hist["day"] >= day - timedelta(days=28))].groupby(["shop_id", "batch_id"])["n"].sum() / 28
        base = hist.reindex(cur.index).fillna(0).to_numpy()
        ratio = np.where(base > 0, cur.to_numpy() / np.where(base > 0, base, 1), np.inf)
        z = (cur.to_numpy() - base) / np.sqrt(np.maximum(base, 1))
        return {f"shop_id={s}/batch_id={k}" for (s, k) in cur.index[(ratio > 3) & (z > 6)]}

    def stock(rid):
        snaps = rows("inventory_snapshots", "shop_id, sku, warehouse_id, on_hand, reserved, snapshot_at", rid,
                     f"snapshot_at <= TIMESTAMPTZ '{END.isoformat()}'")
        latest = snaps.sort_values("snapshot_at").groupby(["shop_id", "sku", "warehouse_id"]).tail(1)
        available = (latest["on_hand"] - latest["reserved"]).clip(lower=0)
        stock = latest.assign(a=available).groupby(["shop_id", "sku"])["a"].sum()
        items = rows("order_items", "shop_id, sku, quantity, created_at", rid, f"created_at < TIMESTAMPTZ '{END.isoformat()}'")
        if rid == "inventory.stock_cover":
            avg14 = items.groupby(["shop_id", "sku"])["quantity"].sum() / 14.0
            last24 = items[items["created_at"] >= END - 24 * H].groupby(["shop_id", "sku"])["quantity"].sum()
            forecast = avg14.to_frame("avg").join(last24.rename("last"), how="left").fillna(0).max(axis=1)
            cover = (stock.reindex(forecast.index) / forecast)[avg14.reindex(forecast.index) >= 1]
            return {f"shop_id={s}/sku={k}" for (s, k) in cover.index[cover < 15]}
        rate = items.groupby(["shop_id", "sku"])["quantity"].sum()
        hours = stock.reindex(rate.index) / rate
        low = {f"shop_id={s}/sku={k}" for (s, k) in hours.index[hours < 8]}
        return low & set(firing.get("sales.order_spike", []))

    def stale():
        df = rows("shipments", "shop_id, warehouse_id, status, last_tracking_at, shipped_at", "customer.logistics_stale",
                  f"status = 'in_transit' AND shipped_at < TIMESTAMPTZ '{END.isoformat()}'")
        df = df.assign(stale=df["last_tracking_at"] < END - 48 * H)
        g = df.groupby(["shop_id", "warehouse_id"])["stale"].agg(["sum", "size"])
        g = g[(g["sum"] >= 5) & (g["sum"] / g["size"] > 0.05)]
        return {f"shop_id={s}/warehouse_id={w}" for s, w in g.index}

    timed("sales.order_spike", lambda: spike("sales.order_spike"))
    timed("sales.order_spike_7d", lambda: spike("sales.order_spike_7d"))
    timed("sales.order_drop", lambda: drop("sales.order_drop"))
    timed("sales.order_drop_daily_avg", lambda: drop("sales.order_drop_daily_avg"))
    timed("finance.payment_failure", payment)
    timed("traffic.conversion_drop", conversion)
    timed("customer.negative_review", lambda: reviews("customer.negative_review"))
    timed("customer.negative_review_burst", lambda: reviews("customer.negative_review_burst"))
    timed("traffic.paid_cost_quality", paid)
    timed("finance.refund_rate", refund_rate)
    timed("finance.complaint_spike", complaints)
    timed("inventory.stock_cover", lambda: stock("inventory.stock_cover"))
    timed("compound.spike_low_stock", lambda: stock("compound.spike_low_stock"))
    timed("customer.logistics_stale", stale)
    con.close()
    return {"seconds": time.perf_counter() - t0, "per_rule": per_rule, "firing": firing}


CASES = {"engine": case_engine, "floor": case_floor, "pandas": case_pandas, "gx": case_gx}


def worker(case: str, path: str) -> dict:
    out = CASES[case](Path(path))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_case(case: str, path: Path, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", case, "--warehouse", str(path)],
                          capture_output=True, text=True, env={**os.environ, **(env or {})})
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        raise RuntimeError(f"{case} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[-1][len("RESULT "):])


# --- parse time ---------------------------------------------------------------------------

ONE_TASK = '''from airflow.sdk import DAG, task
with DAG("one_task", schedule=None) as dag:
    @task
    def only():
        pass
    only()
'''


def parse_times(runs: int) -> dict:
    import yaml

    tmp = Path(tempfile.mkdtemp(prefix="sf-parse-"))
    try:
        shutil.copytree(REPO / "include", tmp / "include")
        sales = tmp / "include" / "rules" / "sales.yaml"
        doc = yaml.safe_load(sales.read_text(encoding="utf-8"))
        template = doc["rules"][0]
        for i in range(200):
            rule = json.loads(json.dumps(template))
            rule["id"] = f"sales.generated_{i:03d}"
            rule["conditions"][0]["above"] = {"yellow": 2.0 + i / 100, "red": 3.0 + i / 100}
            doc["rules"].append(rule)
        sales.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        (tmp / "one_task.py").write_text(ONE_TASK, encoding="utf-8")
        env = {"PYTHONPATH": str(REPO / "plugins"), "STOREFENCE_CACHE_DIR": str(tmp / "cache"),
               "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        cases = {
            "one-task DAG file": (str(tmp / "one_task.py"), {}),
            "storefence_alerts_sales, catalogue (4 rules)": (str(REPO / "dags" / "storefence_alerts_sales.py"), {}),
            "storefence_alerts_sales, catalogue + 200 rules": (
                str(REPO / "dags" / "storefence_alerts_sales.py"),
                {"STOREFENCE_RULES_DIR": str(tmp / "include" / "rules"), "STOREFENCE_SQL_DIR": str(tmp / "include" / "sql")}),
        }
        # As the DAG processor parses: Airflow is already imported; the time is the file's own.
        code = ("import time, runpy, sys, airflow.sdk; t = time.perf_counter(); runpy.run_path(sys.argv[1]); "
                "print('T=%f' % (time.perf_counter() - t))")
        times: dict[str, list[float]] = {k: [] for k in cases}
        in_file: dict[str, list[float]] = {k: [] for k in cases}
        first = {}
        for k, (path, extra) in cases.items():  # the first parse validates and fills the cache
            out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                                 env={**os.environ, **env, **extra})
            first[k] = float(out.stdout.strip().split("T=")[-1]) if "T=" in out.stdout else None
        for _ in range(runs):
            for k, (path, extra) in cases.items():
                wall = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                                     env={**os.environ, **env, **extra})
                wall = time.perf_counter() - wall
                if out.returncode:
                    raise RuntimeError(out.stderr[-2000:])
                times[k].append(wall)
                in_file[k].append(float(out.stdout.strip().split("T=")[-1]))
        return {k: {"median_parse_s": round(statistics.median(in_file[k]), 3),
                    "median_process_s": round(statistics.median(v), 3),
                    "first_parse_s (validates, fills the cache)": first[k]} for k, v in times.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--history-runs", type=int, default=3)
    p.add_argument("--data-dir", default="/tmp/sfbench")
    p.add_argument("--worker", choices=list(CASES))
    p.add_argument("--warehouse")
    p.add_argument("--skip-history", action="store_true")
    args = p.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.warehouse), default=str), flush=True)
        return 0

    data = Path(args.data_dir)
    main_path = build(data, 365)
    results: dict[str, list[dict]] = {c: [] for c in CASES}
    for i in range(args.runs):
        for case in CASES:
            results[case].append(run_case(case, main_path))
            print(f"run {i + 1} {case}: {results[case][-1]['seconds']:.2f} s", flush=True)
    med = {c: statistics.median(r["seconds"] for r in runs) for c, runs in results.items()}
    rss = {c: statistics.median(r["peak_rss_mb"] for r in runs) for c, runs in results.items()}
    engine_firing = results["engine"][0]["firing"]
    agreement = {rid: sorted(engine_firing.get(rid, [])) == sorted(f)
                 for rid, f in results["pandas"][0]["firing"].items()}
    out = {
        "benchmark": "rules", "runs": args.runs, "cycle_end": END.isoformat(),
        "warehouse": json.loads((data / "w365.json").read_text()) if (data / "w365.json").exists() else str(main_path),
        "median_seconds": med, "median_peak_rss_mb": rss,
        "ratios": {"engine_vs_floor": med["engine"] / med["floor"], "pandas_vs_engine": med["pandas"] / med["engine"],
                   "gx_vs_engine": med["gx"] / med["engine"]},
        "floor_full_table_seconds": statistics.median(r["full_table_seconds"] for r in results["floor"]),
        "gx_only_seconds": statistics.median(r["gx_seconds"] for r in results["gx"]),
        "engine_per_rule_seconds": {rid: statistics.median(r["per_rule"][rid] for r in results["engine"])
                                    for rid in results["engine"][0]["per_rule"]},
        "pandas_per_rule_seconds": {rid: statistics.median(r["per_rule"][rid] for r in results["pandas"])
                                    for rid in results["pandas"][0]["per_rule"]},
        "engine_firing_counts": {rid: len(v) for rid, v in engine_firing.items()},
        "pandas_agrees_with_engine": agreement,
    }
    if not args.skip_history:
        short, long_ = build(data, 31), build(data, 730)
        hist = {"1 month": [], "24 months": []}
        for _ in range(args.history_runs):
            hist["1 month"].append(run_case("engine", short)["seconds"])
            hist["24 months"].append(run_case("engine", long_)["seconds"])
        out["history"] = {k: statistics.median(v) for k, v in hist.items()}
        out["history"]["ratio_24_to_1"] = out["history"]["24 months"] / out["history"]["1 month"]
    out["parse"] = parse_times(args.runs)
    (REPO / "bench" / "results" / "rules.json").write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")

    print(f"\nOne cycle of the catalogue ({len(engine_firing)} rules), median of {args.runs}:\n")
    print("| case | seconds | peak RSS MB | vs engine |")
    print("|---|---|---|---|")
    for c in CASES:
        print(f"| {c} | {med[c]:.2f} | {rss[c]:.0f} | {med[c] / med['engine']:.2f}x |")
    r = out["ratios"]
    print(f"\nengine / floor {r['engine_vs_floor']:.2f} (target <= 1.5); pandas / engine {r['pandas_vs_engine']:.1f} "
          f"(>= 10); gx / engine {r['gx_vs_engine']:.1f} (>= 30); pandas agrees on "
          f"{sum(agreement.values())}/{len(agreement)} rules")
    if "history" in out:
        h = out["history"]
        print(f"history: 1 month {h['1 month']:.2f} s, 24 months {h['24 months']:.2f} s, ratio {h['ratio_24_to_1']:.2f} (<= 1.3)")
    for k, v in out["parse"].items():
        print(f"parse {k}: {v['median_parse_s']:.3f} s (a fresh process: {v['median_process_s']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
