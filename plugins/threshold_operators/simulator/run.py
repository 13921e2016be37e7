"""``simulate``: fill a warehouse with a realistic, deterministic shop and its labelled incidents.

The window is generated one day at a time; rows are buffered as Arrow tables and flushed to the
warehouse's bulk loader every ``flush_rows`` rows, so memory stays bounded whatever the volume.
Each flush is committed (a single transaction for the whole load would keep every row and key
in DuckDB's memory); a run that fails empties the canonical tables again, so the warehouse is
never left half-simulated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from threshold_operators.shop_api.versions import HISTORY_TABLE, versions_table_name
from threshold_operators.simulator.catalogue import build_catalogue
from threshold_operators.simulator.demand import expected_orders
from threshold_operators.simulator.incidents import compile_effects, labels, load_incidents, place
from threshold_operators.simulator.inventory import Inventory
from threshold_operators.simulator.seasonality import LocalClock, Window, planned_event_rows, planned_events
from threshold_operators.simulator.shop_day import ShopDay
from threshold_operators.simulator.versions import VALID_FROM, VERSIONED
from threshold_operators.warehouse.bulk_load import bulk_loader
from threshold_operators.warehouse.schema import LATEST_TABLE_NAMES, TABLE_NAMES, create_schema


class SimulationError(ValueError):
    """Arguments or a warehouse state the simulator cannot work with."""


@dataclass
class SimulationSpec:
    shops: int = 1
    skus: int = 500
    days: int = 400
    orders_per_day: int = 2000
    seed: int = 7
    end: datetime | None = None  # exclusive; default: the start of the current UTC hour
    incidents: str | list = "default"  # default | none | path to a YAML file | a list of IncidentSpec
    timezone: str = "Asia/Shanghai"
    currency: str = "CNY"
    # Keep every version of the rows that change from this moment on (simulator.versions), so
    # the shop API can serve the shop as it was at any as_of after it. DuckDB files only.
    history_from: datetime | None = None

    def validate(self) -> None:
        problems = []
        for name, low in (("shops", 1), ("skus", 24), ("days", 1), ("orders_per_day", 1)):
            if getattr(self, name) < low:
                problems.append(f"--{name.replace('_', '-')} must be at least {low}")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.timezone)
        except Exception:
            problems.append(f"--timezone {self.timezone!r} is not an IANA timezone")
        if problems:
            raise SimulationError("; ".join(problems))

    def resolved_end(self) -> datetime:
        end = self.end or datetime.now(UTC)
        return end.replace(tzinfo=end.tzinfo or UTC).astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass
class SimulationResult:
    rows: dict[str, int]
    seconds: float
    window_start: datetime
    window_end: datetime
    labels: dict = field(repr=False, default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)  # rows per versions table (history_from)

    @property
    def order_lines(self) -> int:
        return self.rows.get("order_items", 0)


def _existing_rows(hook) -> dict[str, int]:
    from sqlalchemy import text

    with hook.engine.connect() as con:
        return {t: con.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in TABLE_NAMES}


def _truncate(hook) -> None:
    from sqlalchemy import text

    with hook.engine.begin() as con:
        for t in (*TABLE_NAMES, *LATEST_TABLE_NAMES):
            con.execute(text(f"DELETE FROM {t}"))
        con.execute(text("DELETE FROM planned_events WHERE source = 'simulator'"))  # what it planned goes too
        if hook.is_duckdb:  # the platform file's history goes with its rows
            for t in (HISTORY_TABLE, *(versions_table_name(v) for v in VERSIONED)):
                con.execute(text(f"DROP TABLE IF EXISTS {t}"))


class CountingSink:
    """Counts rows instead of loading them: ``simulate(spec, None)`` (a dry run, and the
    benchmark's floor: generation alone)."""

    def __init__(self):
        self.rows_written: dict[str, int] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def append(self, table: str, data: pa.Table) -> None:
        self.rows_written[table] = self.rows_written.get(table, 0) + data.num_rows

    def commit(self) -> None:
        pass


def _prepare(hook, replace: bool) -> None:
    """Create the schema; refuse to mix with existing rows unless ``replace`` empties them."""
    create_schema(hook.engine)
    existing = {t: n for t, n in _existing_rows(hook).items() if n}
    if existing and not replace:
        raise SimulationError(
            f"the warehouse {hook.describe()} already holds rows ({', '.join(f'{t}={n}' for t, n in existing.items())}); "
            "pass --replace to empty the canonical tables first"
        )
    if existing:
        _truncate(hook)
    hook.engine.dispose()


def simulate(
    spec: SimulationSpec,
    hook,
    *,
    labels_out: str | Path | None = None,
    replace: bool = False,
    flush_rows: int = 500_000,
    progress: Callable[[str], None] | None = None,
) -> SimulationResult:
    """Generate the shop described by ``spec`` into the warehouse behind ``hook`` (None: count only)."""
    spec.validate()
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    rng = np.random.default_rng(spec.seed)
    window = Window(spec.resolved_end(), spec.days)
    incident_specs = spec.incidents if isinstance(spec.incidents, list) else load_incidents(spec.incidents)
    history_from = None if spec.history_from is None else int(spec.history_from.timestamp())
    if history_from is not None and hook is not None and not hook.is_duckdb:
        raise SimulationError("history_from: row versions are kept in a DuckDB platform file only")

    catalogue = build_catalogue(rng, spec.shops, spec.skus, spec.timezone,
                                customers_per_shop=max(2000, min(200_000, spec.orders_per_day * 20)))
    clock_by_tz = {tz: LocalClock.build(window, tz) for tz in set(catalogue.timezones)}
    clocks = [clock_by_tz[tz] for tz in catalogue.timezones]
    shop_base = spec.orders_per_day * np.concatenate([[1.0], rng.uniform(0.7, 1.3, spec.shops - 1)])
    lam = expected_orders(rng, window, clocks, shop_base)
    placed = place(incident_specs, window, catalogue, shop_base)
    effects = compile_effects(placed, window, catalogue)
    described = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(spec).items()}
    if isinstance(spec.incidents, list):
        described["incidents"] = [i.id for i in spec.incidents]
    planned = planned_events(window, spec.timezone)
    label_doc = labels(placed, window, catalogue, planned, described | {"end": window.end.isoformat()})
    day = ShopDay(rng, window, catalogue, clocks, lam, effects, spec.currency, history_from=history_from)
    inventory = Inventory(rng, window, catalogue, clocks, lam, effects)

    if hook is not None:
        _prepare(hook, replace)

    try:
        rows = _generate(spec, hook, day, inventory, catalogue, window, flush_rows, say)
        if hook is not None:  # what the shop planned, as its planning system would declare it
            from threshold_operators.warehouse.planned_events import SIMULATOR_SOURCE, replace_planned_events

            replace_planned_events(hook.engine, SIMULATOR_SOURCE,
                                   planned_event_rows(planned, catalogue.shop_ids, spec.timezone, window.end))
            hook.engine.dispose()
    except BaseException:
        if hook is not None:
            _truncate(hook)
            hook.engine.dispose()
        raise
    if labels_out:
        Path(labels_out).parent.mkdir(parents=True, exist_ok=True)
        Path(labels_out).write_text(yaml.safe_dump(label_doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return SimulationResult({t: rows.get(t, 0) for t in TABLE_NAMES}, time.perf_counter() - started, window.start,
                            window.end, label_doc, {t: n for t, n in rows.items() if t not in TABLE_NAMES})


def write_history(hook, versions: dict[str, list[pa.Table]], history_from: int) -> dict[str, int]:
    """The versions tables and ``platform_history`` (read by ``shop_api.versions``) of the tables in
    ``versions`` (an empty list: none of its rows changes after ``history_from``); rows per table."""
    from datetime import timedelta

    con = hook.get_conn()
    written = {}
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(f"CREATE OR REPLACE TABLE {HISTORY_TABLE} (table_name VARCHAR PRIMARY KEY, "
                    "versions_table VARCHAR NOT NULL, history_from TIMESTAMPTZ NOT NULL)")
        for table, parts in versions.items():
            lead_s = VERSIONED.get(table, 0)
            name = versions_table_name(table)
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT *, CAST(NULL AS TIMESTAMPTZ) AS {VALID_FROM} "
                        f"FROM {table} WHERE false")
            for part in parts:
                con.register("_storefence_versions", part)
                try:
                    con.execute(f"INSERT INTO {name} SELECT * FROM _storefence_versions")
                finally:
                    con.unregister("_storefence_versions")
            written[name] = sum(p.num_rows for p in parts)
            since = datetime.fromtimestamp(history_from, UTC) - timedelta(seconds=lead_s)
            con.execute(f"INSERT INTO {HISTORY_TABLE} VALUES (?, ?, ?)", [table, name, since])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    return written


def _generate(spec, hook, day, inventory, catalogue, window, flush_rows, say) -> dict[str, int]:
    buffered: dict[str, list[pa.Table]] = {t: [] for t in TABLE_NAMES}
    versions: dict[str, list[pa.Table]] = {t: [] for t in VERSIONED}
    pending = 0
    with bulk_loader(hook) if hook is not None else CountingSink() as loader:

        def flush():
            nonlocal pending
            for t in TABLE_NAMES:
                if buffered[t]:
                    loader.append(t, pa.concat_tables(buffered[t]))
                    buffered[t] = []
            pending = 0
            loader.commit()  # bounded memory: DuckDB keeps a transaction's rows and keys in RAM

        loader.append("shops", catalogue.shops_table(spec.currency))
        loader.append("products", catalogue.products_table(window.start_s))
        loader.append("warehouses", catalogue.warehouses_table())
        buffered["inventory_snapshots"].append(inventory.initial_snapshot())
        step = max(1, spec.days // 10)
        for d in range(spec.days):
            out = day.generate(d * 24)
            out.tables["inventory_snapshots"] = inventory.advance(d * 24, out.units_sold)
            for t, tbl in out.tables.items():
                buffered[t].append(tbl)
                pending += tbl.num_rows
            for t, tbl in out.versions.items():
                if tbl.num_rows:
                    versions[t].append(tbl)
            if pending >= flush_rows:
                flush()
            if (d + 1) % step == 0 or d + 1 == spec.days:
                say(f"  day {d + 1}/{spec.days}: {sum(loader.rows_written.values()) + pending:,} rows")
        flush()
        rows = dict(loader.rows_written)
    if day.history_from is not None and hook is not None:
        rows |= write_history(hook, versions, day.history_from)
    elif day.history_from is not None:
        rows |= {versions_table_name(t): sum(p.num_rows for p in parts) for t, parts in versions.items()}
    return rows
