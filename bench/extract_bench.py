"""Extraction benchmark: N orders through the shop API into DuckDB and PostgreSQL, gate on and off.

The source is a simulated shop (about N orders, generated once and cached under
$TMPDIR/storefence-bench) served by `storefence shop-api` in a process of its own. Each run is a
fresh process that fetches the orders table page by page through an Airflow HTTP connection
(HttpHook), stages it, and loads it with the Great Expectations gate on or off. Runs are
interleaved; medians are reported; the gate's cost is the ratio on/off per warehouse.

    .venv/bin/python bench/extract_bench.py                    # 1M orders, 3 runs
    .venv/bin/python bench/extract_bench.py --orders 200000 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
from warehouses import PG_URL, fresh_warehouse  # noqa: E402 - bench/ is on the path when run as a script

END = datetime(2026, 9, 30, tzinfo=UTC)
CACHE = Path(tempfile.gettempdir()) / "storefence-bench"


def source_file(orders: int) -> Path:
    from threshold_operators.simulator.run import SimulationSpec, simulate
    from threshold_operators.warehouse.hook import WarehouseHook

    path = CACHE / f"shop-{orders}.duckdb"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        days = 365
        # ~5% of orders are cancelled or pending; the simulator counts all orders placed
        simulate(SimulationSpec(shops=1, skus=2000, days=days, orders_per_day=round(orders / days), seed=5,
                                end=END, incidents="none"), WarehouseHook(url=f"duckdb:///{path}.tmp"))
        Path(f"{path}.tmp").rename(path)
    return path


def worker(target: str, gate: bool, port: int, pg_url: str) -> dict:
    os.environ["AIRFLOW_CONN_SHOP_API_BENCH"] = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port})
    os.environ["AIRFLOW__STOREFENCE__STORAGE_URL"] = tempfile.mkdtemp(prefix="sf-storage-")
    from airflow.providers.http.hooks.http import HttpHook

    from threshold_operators.extract.fetch import fetch_http_table
    from threshold_operators.extract.load import load_staged
    from threshold_operators.extract.sources import SOURCES_DIR, load_source

    spec = load_source(SOURCES_DIR / "shop_api.yaml").model_copy(update={"conn_id": "shop_api_bench", "page_size": 5000})
    orders = next(t for t in spec.tables if t.table == "orders")
    http = HttpHook(method="GET", http_conn_id="shop_api_bench")
    with fresh_warehouse(target, pg_url) as hook:
        t0 = time.perf_counter()
        manifest = fetch_http_table(spec, orders, session=http.get_conn(), base_url=http.base_url, warehouse=hook,
                                    run_id="bench")
        t1 = time.perf_counter()
        result = load_staged(spec, orders, warehouse=hook, run_id="bench", now=END, gate=gate)
        t2 = time.perf_counter()
    return {"target": target, "gate": "on" if gate else "off", "rows": result.loaded, "fetched": manifest.rows,
            "quarantined": result.quarantined, "pages": manifest.pages,
            "fetch_s": round(t1 - t0, 2), "load_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2),
            "rows_per_s": round(result.loaded / (t2 - t0)),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--targets", default="duckdb,postgres")
    ap.add_argument("--pg-url", default=PG_URL)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "extract.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--gate", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--make-source", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make_source:
        print(source_file(args.orders))
        return 0
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.gate == "on", args.port, args.pg_url)), flush=True)
        return 0

    # In a process of its own: Linux keeps a parent's peak RSS in its children's ru_maxrss.
    made = subprocess.run([sys.executable, __file__, "--make-source", "--orders", str(args.orders)],
                          capture_output=True, text=True, check=True)
    src = Path(made.stdout.strip().splitlines()[-1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("storefence")), "shop-api", "--source", str(src),
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import requests

        for _ in range(300):
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        configs = [(t, g) for t in args.targets.split(",") for g in ("on", "off")]
        runs: dict[tuple, list[dict]] = {c: [] for c in configs}
        for r in range(args.runs):
            for target, gate in configs:
                out = subprocess.run([sys.executable, __file__, "--worker", target, "--gate", gate, "--port", str(port),
                                      "--pg-url", args.pg_url], capture_output=True, text=True)
                line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
                if out.returncode or not line:
                    print(out.stderr[-3000:], file=sys.stderr)
                    return 1
                res = json.loads(line[0][7:])
                runs[(target, gate)].append(res)
                print(f"run {r + 1}/{args.runs} {target:<9} gate {gate:<3} {res['rows']:,} rows  fetch {res['fetch_s']:6.1f} s  "
                      f"load {res['load_s']:6.1f} s  {res['rows_per_s']:>7,} rows/s  peak {res['peak_rss_mb']:,} MB", flush=True)
    finally:
        server.terminate()
        server.wait()

    med = {c: {k: statistics.median(x[k] for x in runs[c]) for k in ("fetch_s", "load_s", "total_s", "rows_per_s", "peak_rss_mb")}
           for c in configs}
    print(f"\nOrders through the API ({runs[configs[0]][0]['rows']:,} rows, {runs[configs[0]][0]['pages']} pages of 5,000), "
          f"median of {args.runs} runs:")
    print("| warehouse | gate | fetch s | load s | total s | rows/s | peak RSS MB | total vs gate off |")
    print("|---|---|---|---|---|---|---|---|")
    for target, gate in configs:
        m = med[(target, gate)]
        ratio = m["total_s"] / med[(target, "off")]["total_s"]
        print(f"| {target} | {gate} | {m['fetch_s']:.1f} | {m['load_s']:.1f} | {m['total_s']:.1f} | {m['rows_per_s']:,.0f} | "
              f"{m['peak_rss_mb']:,.0f} | {ratio:.2f}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "extract", "orders_asked": args.orders, "runs": args.runs,
        "finished": datetime.now(UTC).isoformat(),
        "results": [{"target": t, "gate": g, **med[(t, g)], "runs": runs[(t, g)]} for t, g in configs],
    }, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
