"""The canonical e-commerce warehouse schema, defined once.

Everything else is derived from these definitions: the DDL for every dialect
(``create_schema``), the analysts' reference ``docs/warehouse.md`` (``render_markdown``),
the bulk loaders' column order and the shop API's endpoints.

Rules of the schema (also stated in the docs):
- every timestamp is stored in UTC (``TIMESTAMP WITH TIME ZONE``); a shop's IANA timezone is
  in ``shops.timezone`` and is used wherever a rule speaks of days or hours of the day;
- money is ``NUMERIC(14, 2)`` in the order's currency;
- tables and columns may be added, never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.ext.compiler import compiles

metadata = MetaData()

TS = DateTime(timezone=True)
MONEY = Numeric(14, 2)


def as_utc(value):
    """A timestamp read back from the warehouse, made timezone-aware. Every stored timestamp is
    UTC, but some drivers hand them back naive (SQLite), or as ISO text."""
    from datetime import UTC, datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _col(name: str, type_, doc: str, *, key: bool = False, nullable: bool = False, unit: str = "") -> Column:
    return Column(
        name,
        type_,
        primary_key=key,
        nullable=nullable,
        comment=doc,
        info={"unit": unit},
    )


def _table(name: str, doc: str, *columns: Column, updated_field: str | None = None,
           event_field: str | None = None) -> Table:
    """A table with its description and the column that tells when a row last changed.

    ``updated_field`` is what incremental extraction and the shop API's ``updated_since``
    filter read; ``None`` marks a small dimension that is always read whole. ``event_field``
    (default: ``updated_field``) is when the fact happened, never changed by an update: the
    5-minute slices of the rollups (``engine.rollups``) are slices of it, and a load marks the
    slices of the rows it writes for the rollups to recompute.
    """
    return Table(name, metadata, *columns, comment=doc,
                 info={"updated_field": updated_field, "event_field": event_field or updated_field})


shops = _table(
    "shops",
    "One row per shop (store front) the pack watches.",
    _col("shop_id", String(32), "Shop identifier, stable across platforms.", key=True),
    _col("name", String(200), "Display name."),
    _col("timezone", String(64), "IANA timezone of the shop; days and hours of the day in rules are local to it.", unit="IANA tz, default Asia/Shanghai"),
    _col("currency", String(3), "Currency of the shop's amounts.", unit="ISO 4217"),
)

products = _table(
    "products",
    "The catalogue: one row per SKU and shop, with its current production batch and supplier.",
    _col("shop_id", String(32), "Shop that sells the SKU.", key=True),
    _col("sku", String(64), "Stock keeping unit.", key=True),
    _col("name", String(200), "Product title."),
    _col("brand", String(100), "Brand."),
    _col("category", String(64), "Category code (infant_formula, fresh_food, clothing, ...)."),
    _col("batch_id", String(64), "Current production batch of the stock being sold."),
    _col("unit_cost", MONEY, "Purchase cost of one unit.", unit="shop currency"),
    _col("lead_time_days", SmallInteger, "Supplier lead time from purchase order to receipt.", unit="days"),
    _col("supplier_id", String(64), "Supplier of the SKU."),
    _col("updated_at", TS, "Last change of the catalogue entry.", unit="UTC"),
    updated_field="updated_at",
)

warehouses = _table(
    "warehouses",
    "One row per warehouse of a shop: what people call the warehouse_id of stock and shipments.",
    _col("shop_id", String(32), "Shop the warehouse ships for.", key=True),
    _col("warehouse_id", String(32), "Warehouse identifier (inventory_snapshots.warehouse_id, shipments.warehouse_id).", key=True),
    _col("name", String(200), "Display name (上海仓)."),
    _col("region", String(64), "Region it serves (华东); NULL when the platform does not say.", nullable=True),
)

orders = _table(
    "orders",
    "One row per order, in its latest state.",
    _col("order_id", String(64), "Order identifier from the platform.", key=True),
    _col("shop_id", String(32), "Shop."),
    _col("channel", String(32), "Sales channel the order came through (app, web, douyin, wechat)."),
    _col("customer_id", String(64), "Customer, hashed (no personal data in the warehouse)."),
    _col("status", String(16), "pending, paid, shipped, completed, cancelled or refunded."),
    _col("amount", MONEY, "Order total.", unit="order currency"),
    _col("currency", String(3), "Currency of amount.", unit="ISO 4217"),
    _col("created_at", TS, "When the order was placed.", unit="UTC"),
    _col("paid_at", TS, "When payment succeeded; NULL if never paid.", nullable=True, unit="UTC"),
    _col("updated_at", TS, "Last change of the order (status, payment, refund).", unit="UTC"),
    updated_field="updated_at",
    event_field="created_at",
)

order_items = _table(
    "order_items",
    "Order lines. created_at repeats the order's so SKU rollups need no join.",
    _col("order_id", String(64), "Order the line belongs to.", key=True),
    _col("line_no", SmallInteger, "Line number within the order, from 1.", key=True),
    _col("shop_id", String(32), "Shop."),
    _col("sku", String(64), "SKU ordered."),
    _col("quantity", Integer, "Units ordered.", unit="units"),
    _col("unit_price", MONEY, "Price of one unit.", unit="order currency"),
    _col("created_at", TS, "When the order was placed (copied from orders).", unit="UTC"),
    updated_field="created_at",
)

payments = _table(
    "payments",
    "Payment attempts; an order may have several (a failure, then a retry).",
    _col("payment_id", String(64), "Payment attempt identifier.", key=True),
    _col("order_id", String(64), "Order paid for."),
    _col("shop_id", String(32), "Shop."),
    _col("gateway", String(32), "Payment gateway (alipay, wechatpay, unionpay)."),
    _col("status", String(16), "succeeded or failed."),
    _col("failure_code", String(64), "Gateway's failure code; NULL when succeeded.", nullable=True),
    _col("attempted_at", TS, "When the attempt was made.", unit="UTC"),
    updated_field="attempted_at",
)

refunds = _table(
    "refunds",
    "Refund and return requests, one row per refunded order line.",
    _col("refund_id", String(64), "Refund identifier.", key=True),
    _col("order_id", String(64), "Order refunded."),
    _col("shop_id", String(32), "Shop."),
    _col("sku", String(64), "SKU refunded."),
    _col("amount", MONEY, "Amount refunded.", unit="order currency"),
    _col("reason", String(32), "quality, size, not_as_described, damaged, late, changed_mind."),
    _col("requested_at", TS, "When the buyer asked for the refund.", unit="UTC"),
    updated_field="requested_at",
)

complaints = _table(
    "complaints",
    "Customer complaints, tied to the production batch of the item.",
    _col("complaint_id", String(64), "Complaint identifier.", key=True),
    _col("shop_id", String(32), "Shop."),
    _col("order_id", String(64), "Order complained about."),
    _col("sku", String(64), "SKU complained about."),
    _col("batch_id", String(64), "Production batch of the item delivered."),
    _col("category", String(32), "quality, damaged, wrong_item, delivery, service."),
    _col("created_at", TS, "When the complaint was filed.", unit="UTC"),
    updated_field="created_at",
)

def _stock_position() -> tuple[Column, ...]:
    """A SKU's stock in a warehouse: the columns of a snapshot and of the latest one."""
    return (
        _col("shop_id", String(32), "Shop.", key=True),
        _col("sku", String(64), "SKU.", key=True),
        _col("warehouse_id", String(32), "Warehouse holding the stock.", key=True),
        _col("on_hand", Integer, "Units physically in the warehouse, never negative.", unit="units"),
        _col("reserved", Integer, "Units ordered by buyers and not yet shipped.", unit="units"),
        _col("in_transit", Integer, "Units on open purchase orders, not yet received.", unit="units"),
    )


inventory_snapshots = _table(
    "inventory_snapshots",
    "Stock positions. A row is written at the end of every hour in which a SKU's stock changed, "
    "and for every SKU at 00:00 shop time on the first of each month (the stocktake); the latest row "
    "per SKU and warehouse at or before a time is the stock at that time.",
    *_stock_position(),
    _col("snapshot_at", TS, "Time the position refers to.", key=True, unit="UTC"),
    updated_field="snapshot_at",
)

shipments = _table(
    "shipments",
    "Parcels, in their latest tracking state (every scan: tracking_events).",
    _col("shipment_id", String(64), "Shipment identifier.", key=True),
    _col("order_id", String(64), "Order shipped."),
    _col("shop_id", String(32), "Shop."),
    _col("warehouse_id", String(32), "Warehouse it left from."),
    _col("carrier", String(32), "Carrier (sf, zto, yto, jd)."),
    _col("tracking_no", String(64), "Carrier's tracking number."),
    _col("status", String(16), "in_transit or delivered."),
    _col("shipped_at", TS, "When the carrier picked it up.", unit="UTC"),
    _col("last_tracking_at", TS, "Latest tracking event from the carrier.", unit="UTC"),
    _col("delivered_at", TS, "When it was delivered; NULL while in transit.", nullable=True, unit="UTC"),
    _col("updated_at", TS, "Last change of the row (a tracking event or delivery).", unit="UTC"),
    updated_field="updated_at",
)

tracking_events = _table(
    "tracking_events",
    "The carrier's tracking history: one row per scan of a parcel (picked up, each scan on the way, "
    "delivered), so a parcel's state can be told at any past moment, not only now (shipments keeps the "
    "latest). warehouse_id repeats the shipment's so the stale-parcel metric needs no join.",
    _col("shipment_id", String(64), "Shipment scanned (shipments.shipment_id).", key=True),
    _col("event_at", TS, "When the carrier scanned the parcel.", key=True, unit="UTC"),
    _col("shop_id", String(32), "Shop."),
    _col("warehouse_id", String(32), "Warehouse the parcel left from (copied from shipments)."),
    _col("tracking_no", String(64), "Carrier's tracking number."),
    _col("status", String(16), "picked_up (the carrier took the parcel), in_transit (a scan on the way) or delivered."),
    updated_field="event_at",
)
# The stale-parcel metric reads the parcels picked up in the 30 days before a time (shipments) and,
# replayed, the scans of a time range (tracking_events); on PostgreSQL a btree on each time serves
# those ranges, covering the columns read (index-only scans), so a cycle's cost does not grow with
# the history kept. DuckDB's zone maps already skip what is outside a range; an ART index there
# would only slow loads.
Index("shipments_shipped_at", shipments.c.shipped_at,
      postgresql_include=["shipment_id", "shop_id", "warehouse_id", "delivered_at", "last_tracking_at"]
      ).ddl_if(dialect="postgresql")
Index("tracking_events_event_at", tracking_events.c.event_at,
      postgresql_include=["shipment_id", "shop_id", "warehouse_id", "status"]).ddl_if(dialect="postgresql")

reviews = _table(
    "reviews",
    "Product reviews written by buyers.",
    _col("review_id", String(64), "Review identifier.", key=True),
    _col("shop_id", String(32), "Shop."),
    _col("order_id", String(64), "Order reviewed."),
    _col("sku", String(64), "SKU reviewed."),
    _col("rating", SmallInteger, "Stars, 1 (worst) to 5 (best).", unit="1-5"),
    _col("body", Text, "Review text.", nullable=True),
    _col("created_at", TS, "When the review was posted.", unit="UTC"),
    updated_field="created_at",
)

traffic = _table(
    "traffic",
    "Visitors per shop, channel, source and hour.",
    _col("shop_id", String(32), "Shop.", key=True),
    _col("channel", String(32), "Channel (app, web, douyin, wechat).", key=True),
    _col("source", String(16), "paid or organic.", key=True),
    _col("hour", TS, "Start of the hour.", key=True, unit="UTC"),
    _col("visitors", Integer, "Unique visitors in the hour.", unit="visitors"),
    updated_field="hour",
)

ad_spend = _table(
    "ad_spend",
    "Paid advertising per campaign and hour, with the orders the platform attributes to it.",
    _col("shop_id", String(32), "Shop.", key=True),
    _col("channel", String(32), "Channel the campaign runs on.", key=True),
    _col("campaign_id", String(64), "Campaign.", key=True),
    _col("hour", TS, "Start of the hour.", key=True, unit="UTC"),
    _col("impressions", Integer, "Ad impressions.", unit="impressions"),
    _col("clicks", Integer, "Clicks; each is a paid visitor.", unit="clicks"),
    _col("spend", MONEY, "Cost of the hour.", unit="shop currency"),
    _col("orders", Integer, "Orders attributed to the campaign.", unit="orders"),
    _col("revenue", MONEY, "Revenue of the attributed orders.", unit="shop currency"),
    updated_field="hour",
)

#: Tables in load order (dimensions first, so references resolve).
TABLES: tuple[Table, ...] = (
    shops,
    products,
    warehouses,
    orders,
    order_items,
    payments,
    refunds,
    complaints,
    inventory_snapshots,
    shipments,
    tracking_events,
    reviews,
    traffic,
    ad_spend,
)


def _time_indexes(tables: tuple[Table, ...]) -> None:
    """On PostgreSQL, a btree on each fact table's change time and event time (when no index
    starts with it yet): a load's high-water mark (``MAX`` of the change time) and the rollups'
    recompute of the slices a load dirtied (a range of the event time) then read the index, not
    the table, so their cost follows the rows that changed, not the history kept (the shop-scaling
    bench found both scanning 9 GB at 100 shops). DuckDB's zone maps already skip what is outside a
    range there."""
    for table in tables:
        if table.info.get("updated_field") is None or table.name in ("products",):  # a dimension
            continue
        for name in dict.fromkeys((table.info["updated_field"], table.info["event_field"])):
            column = table.c[name]
            if any(ix.columns[0] is column for ix in table.indexes):
                continue
            Index(f"{table.name}_{name}", column).ddl_if(dialect="postgresql")


_time_indexes(TABLES)


def _lookup_indexes(tables: tuple[Table, ...]) -> list[Index]:
    """On DuckDB, an index on the first column of a compound key where an update can move a row's
    event time (the event time is not in the key): the loader looks up by that column the stored
    versions a batch replaces (``bulk_load._replaced_slices``), and DuckDB's index of a compound
    key serves no lookup by its first column alone, so ``order_items``' lookup scanned the table,
    a cost growing with the history (29 ms a load at 30 days, 334 ms at 365). PostgreSQL's btree of
    the key serves its first column."""
    from threshold_operators.warehouse.rollup_tables import DIMENSIONS

    out = []
    for table in tables:
        key = [c.name for c in table.primary_key.columns]
        event = table.info.get("event_field")
        if table.name not in DIMENSIONS and event and len(key) > 1 and event not in key:
            index = Index(f"{table.name}_{key[0]}", table.c[key[0]]).ddl_if(dialect="duckdb")
            index.info["dialect"] = "duckdb"
            out.append(index)
    return out


LOOKUP_INDEXES: list[Index] = _lookup_indexes(TABLES)


# --- The pack's own tables: what extraction did and refused. Not part of the canonical shop
# schema (simulations and summaries leave them alone), created alongside it.

quarantine = _table(
    "quarantine",
    "Rows an extract refused, with the reason; nothing is silently dropped.",
    _col("run_id", String(250), "Airflow run that refused the row.", key=True),
    _col("table_name", String(64), "Warehouse table the row was meant for.", key=True),
    _col("row_no", Integer, "Position of the row in the batch.", key=True),
    _col("source", String(64), "Source id (include/sources/<source>.yaml)."),
    _col("record_key", String(500), "The row's key values, as text, when it has them.", nullable=True),
    _col("failed_checks", Text, "The expectations the row failed, separated by '; '."),
    _col("raw_record", Text, "The record as the source delivered it (JSON)."),
    _col("quarantined_at", TS, "When the row was refused.", unit="UTC"),
    updated_field="quarantined_at",
)

held_rows = _table(
    "held_rows",
    "Rows waiting for their parent (a references check: an order line whose order is not loaded yet); "
    "loaded when it lands, quarantined when it has not within the check's wait.",
    _col("table_name", String(64), "Warehouse table the row is meant for.", key=True),
    _col("record_key", String(500), "The row's key values, as text.", key=True),
    _col("source", String(64), "Source id."),
    _col("run_id", String(250), "Airflow run that last delivered the row."),
    _col("waiting_for", Text, "The parents it waits for: [{table, column, value}] (JSON)."),
    _col("reason", Text, "Why it waits, for people (the references checks it failed)."),
    _col("raw_record", Text, "The record as the source delivered it (JSON, columns mapped)."),
    _col("version", String(40), "The row's change-tracking value (ISO 8601): a newer delivery of the key wins.",
         nullable=True),
    _col("first_seen", TS, "When the row was first held.", unit="UTC"),
    _col("give_up_at", TS, "When it goes to quarantine if its parent is still missing.", unit="UTC"),
    _col("held_at", TS, "When the row was last delivered and held.", unit="UTC"),
    updated_field="held_at",
)

extract_runs = _table(
    "extract_runs",
    "One row per table and extract run: the window read, what loaded, what was refused, the new high-water mark.",
    _col("run_id", String(250), "Airflow run.", key=True),
    _col("source", String(64), "Source id.", key=True),
    _col("table_name", String(64), "Warehouse table.", key=True),
    _col("updated_since", TS, "Start of the change window read; NULL for a full read.", nullable=True, unit="UTC"),
    _col("updated_before", TS, "End of the window read; NULL for open-ended.", nullable=True, unit="UTC"),
    _col("rows_fetched", Integer, "Rows delivered by the source.", unit="rows"),
    _col("rows_loaded", Integer, "Rows upserted into the table.", unit="rows"),
    _col("rows_quarantined", Integer, "Rows refused into quarantine.", unit="rows"),
    _col("high_water_mark", TS, "Latest change-tracking value in the table after the run.", nullable=True, unit="UTC"),
    _col("finished_at", TS, "When the run finished.", unit="UTC"),
    updated_field="finished_at",
)

data_quality_events = _table(
    "data_quality_events",
    "Quality and freshness failures of extracted tables; alerting holds back the rules that read a failing table.",
    _col("event_id", String(300), "Run, table and kind (and the file, for rejected).", key=True),
    _col("source", String(64), "Source id."),
    _col("table_name", String(64), "Warehouse table concerned."),
    _col("kind", String(16), "quality (rows refused), freshness (nothing new for longer than max_lag) or rejected (a dropped file refused whole)."),
    _col("detail", Text, "What failed, for people."),
    _col("observed_at", TS, "When the failure was observed.", unit="UTC"),
    updated_field="observed_at",
)

rule_evaluations = _table(
    "rule_evaluations",
    "One row per rule and evaluation cycle: the data window evaluated and what came of it. Kept 90 days (each "
    "rule's newest always; `DomainEvaluateOperator(keep_results=...)`, docs/rules.md step 5).",
    _col("rule_id", String(128), "Rule id (include/rules/<domain>.yaml).", key=True),
    _col("window_start", TS, "Start of the data window evaluated (buckets completing in it).", key=True, unit="UTC"),
    _col("window_end", TS, "End of the data window, exclusive.", key=True, unit="UTC"),
    _col("mode", String(8), "live or shadow."),
    _col("outcome", String(16), "ok, breach, up_to_date (no new data) or error."),
    _col("firing", Integer, "Entities firing at some bucket of the window.", unit="entities"),
    _col("pending", Integer, "Entities breaching, not yet for long enough.", unit="entities"),
    _col("resolved", Integer, "Entities that stopped firing in the window.", unit="entities"),
    _col("candidates", Integer, "Rows the warehouse returned (entity x bucket breaching or held).", unit="rows"),
    _col("detail", Text, "Error message, or what was skipped and why.", nullable=True),
    _col("duration_ms", Integer, "Time the evaluation took.", unit="ms"),
    _col("run_id", String(250), "Airflow run, or the tool that evaluated.", nullable=True),
    _col("evaluated_at", TS, "Wall-clock time of the evaluation.", unit="UTC"),
    _col("definition", String(16), "Digest of the rule definition evaluated (statement, conditions, persistence): "
         "the next cycle resumes from this cycle's states only under the same definition.", nullable=True),
    updated_field="evaluated_at",
)


def _result(bucket: Column, metrics: str) -> tuple[Column, ...]:
    """An entity's result at a bucket: the columns of rule_results and of rule_states."""
    return (
        _col("rule_id", String(128), "Rule id.", key=True),
        _col("entity_key", String(500), "The entity's key columns as text, e.g. shop_id=S01/sku=SKU-1.", key=True),
        bucket,
        _col("state", String(16), "pending, firing or resolved."),
        _col("severity", String(8), "blue, yellow or red; NULL when resolved.", nullable=True),
        _col("value", Numeric(20, 6), "Compared value of the rule's primary condition (metric, ratio, percent change).",
             nullable=True),
        _col("baseline", Numeric(20, 6), "Baseline of the primary condition, when it has one.", nullable=True),
        _col("threshold", Numeric(20, 6), "Threshold crossed (of the severity reported).", nullable=True),
        _col("entity", Text, "The entity's key columns (JSON object)."),
        _col("metrics", Text, metrics),
        _col("mode", String(8), "live or shadow."),
        _col("window_end", TS, "End of the window of the evaluation that wrote the row.", unit="UTC"),
        _col("evaluated_at", TS, "Wall-clock time of the evaluation.", unit="UTC"),
    )


rule_results = _table(
    "rule_results",
    "Entity-level results: every bucket at which an entity was pending, firing or resolved, with value, baseline, "
    "threshold and severity. Kept 90 days (`DomainEvaluateOperator(keep_results=...)`, docs/rules.md step 5).",
    *_result(_col("bucket", TS, "Data time: start of the hour or shop-local day evaluated.", key=True, unit="UTC"),
             "Every metric, baseline and condition value of the bucket (JSON object)."),
    updated_field="evaluated_at",
)
rule_results.info["time_key"] = "bucket"  # appended cycle after cycle, bucket by bucket: see time_key()

rule_states = _table(
    "rule_states",
    "Each rule and entity's latest rule_results row (the newest bucket), kept in the transaction that records the "
    "results (filled from rule_results when the table is created): where each entity's state walk stands, which the "
    "next cycle resumes from without grouping the results history.",
    *_result(_col("bucket", TS, "Data time of the entity's newest result (rule_results.bucket).", unit="UTC"),
             "Every metric and the state walk's position (level, streak, last breach; JSON object)."),
    updated_field="bucket",
)

PACK_TABLES: tuple[Table, ...] = (quarantine, held_rows, extract_runs, data_quality_events, rule_evaluations, rule_results,
                                  rule_states)
PACK_TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in PACK_TABLES)


# --- What the shop plans: inputs the rules read besides the shop's data (docs/rules.md, "Planned
# events"). Filled by `storefence plans load` (include/rules/plans.yaml), a planning system or the
# simulator, each replacing only its own rows (``source``); created alongside the other tables.

planned_events = _table(
    "planned_events",
    "Planned events (双11, 618, a booked live stream): when, and how many times its normal orders a shop, a "
    "category or a SKU is expected to sell. During one, rules comparing a metric with its baseline compare it "
    "with the baseline times the most specific factor (SKU, then category, then shop).",
    _col("source", String(64), "Who declared it: plans.yaml, simulator, or a planning system's name; a load "
                               "replaces the rows of its own source only.", key=True),
    _col("event_id", String(64), "Event identifier, unique within its source.", key=True),
    _col("name", String(200), "What people call the event."),
    _col("shop_id", String(32), "Shop.", key=True),
    _col("scope", String(16), "shop, category or sku: what the factor applies to.", key=True),
    _col("scope_value", String(64), "The category code or the SKU; empty for the whole shop.", key=True),
    _col("uplift", Numeric(10, 4), "Expected orders during the event as a multiple of normal (4: four times).",
         unit="x normal"),
    _col("starts_at", TS, "Start of the event.", unit="UTC"),
    _col("ends_at", TS, "End of the event, exclusive.", unit="UTC"),
    _col("updated_at", TS, "When the row was written.", unit="UTC"),
    updated_field="updated_at",
)

PLAN_TABLES: tuple[Table, ...] = (planned_events,)
PLAN_TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in PLAN_TABLES)


# --- Kept by the loader: the latest state of a history table, written in the transaction that
# loads the history (``warehouse.bulk_load``), so a cycle reads the state now without grouping the
# history; a state as of an earlier time still comes from the history.

inventory_latest = _table(
    "inventory_latest",
    "Each SKU's latest stock position per warehouse: the newest inventory_snapshots row of each SKU and "
    "warehouse, kept by the loader in the transaction that loads the snapshots (filled from "
    "inventory_snapshots when the table is created). The stock now, without grouping the snapshots; the "
    "stock as of an earlier time is the latest inventory_snapshots row at or before it.",
    *_stock_position(),
    _col("snapshot_at", TS, "Time of the newest position (inventory_snapshots.snapshot_at).", unit="UTC"),
    updated_field="snapshot_at",
)

LATEST_TABLES: tuple[Table, ...] = (inventory_latest,)
LATEST_TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in LATEST_TABLES)
# history -> its latest state, kept by the loader (``bulk_load``) and filled when created (``create_schema``)
LATEST_OF: dict[str, str] = {"inventory_snapshots": "inventory_latest", "rule_results": "rule_states"}


def fill_latest(con, history: str) -> None:
    """Fill the latest-state table of ``history`` from the whole history (when it is created)."""
    from sqlalchemy import text

    table = metadata.tables[LATEST_OF[history]]
    key = ", ".join(c.name for c in table.primary_key.columns)
    cols = ", ".join(c.name for c in table.columns)
    order = table.info["updated_field"]
    con.execute(text(f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER "
                     f"(PARTITION BY {key} ORDER BY {order} DESC) AS rn FROM {history}) x WHERE x.rn = 1"))


def time_key(name: str) -> str | None:
    """The key's time column of a table whose rows never move in it, else None: the fact tables
    whose event time is part of their key (a scan, a stock position, an hour of traffic or ad spend)
    and the rule results (a bucket). Every stored version of a batch's keys lies between the
    batch's earliest and latest value of that column, and the tables grow in its order.

    On DuckDB these tables are created **without** their primary key's index: an ART index over
    the largest, ever-growing tables made opening and closing the file cost more the more history
    it holds (on 365 days, about 60 and 76 ms for each of the five domain sessions of a cycle; a
    table without key is flat), and an index on them would only serve the upsert. The loader keeps
    the key unique (``bulk_load.DuckDBBulkLoader``): it replaces the batch's keys within the
    batch's time range, which the zone maps (min/max per row group) narrow to the row groups of
    that range, whatever the history. PostgreSQL keeps every key (its cost of opening a
    connection does not depend on the data)."""
    table = metadata.tables[name]
    explicit = table.info.get("time_key")
    if explicit:
        return explicit
    event = table.info.get("event_field")
    return event if name in TABLE_NAMES and event and event in table.primary_key.columns else None


@compiles(PrimaryKeyConstraint, "duckdb")
def _duckdb_primary_key(constraint, compiler, **kw):
    """DuckDB's DDL: no primary key (ART index) for the tables ``time_key`` names."""
    table = constraint.table
    if table.info.get("time_key") or (table.name in metadata.tables and time_key(table.name)):
        return None
    return compiler.visit_primary_key_constraint(constraint, **kw)


def drop_time_key_indexes(engine) -> list[str]:
    """On a DuckDB file created by an earlier version: rebuild each ``time_key`` table that still
    holds its primary key's index without it (same rows, same order), in one transaction; the
    tables rebuilt. Nothing to do on PostgreSQL or on a file created by this version
    (``storefence warehouse upgrade``)."""
    from sqlalchemy import text
    from sqlalchemy.schema import CreateTable

    if engine.dialect.name != "duckdb":
        return []
    done = []
    with engine.begin() as con:
        keyed = set(con.execute(text(
            "SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'")).scalars())
        for table in metadata.sorted_tables:
            column = time_key(table.name)
            if column is None or table.name not in keyed:
                continue
            rebuilt = table.to_metadata(MetaData(), name=f"{table.name}__rebuilt")
            rebuilt.info["time_key"] = column
            cols = ", ".join(c.name for c in table.columns)
            con.execute(CreateTable(rebuilt))
            con.execute(text(f"INSERT INTO {rebuilt.name} ({cols}) SELECT {cols} FROM {table.name}"))  # noqa: S608
            con.execute(text(f"DROP TABLE {table.name}"))
            con.execute(text(f"ALTER TABLE {rebuilt.name} RENAME TO {table.name}"))
            done.append(table.name)
    return done


@dataclass(frozen=True)
class TableSpec:
    """What the loaders and the shop API need to know of a table, without SQLAlchemy."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    updated_field: str | None
    timestamp_columns: tuple[str, ...]
    event_field: str | None = None
    time_key: str | None = None


def table_spec(name: str) -> TableSpec:
    table = metadata.tables[name]
    return TableSpec(
        name=name,
        columns=tuple(c.name for c in table.columns),
        key=tuple(c.name for c in table.primary_key.columns),
        updated_field=table.info["updated_field"],
        timestamp_columns=tuple(c.name for c in table.columns if isinstance(c.type, DateTime)),
        event_field=table.info.get("event_field"),
        time_key=time_key(name),
    )


TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)


def create_schema(engine) -> list[str]:
    """Create every missing table (canonical and the pack's), now, under the set-up lock; existing
    tables are left as they are. Returns the created names. The set-up commands call this; a task
    calls ``ensure_schema``, which does it only when the warehouse is behind."""
    from threshold_operators.schema_once import ensure

    return ensure(engine, "warehouse", schema_version(), _create_missing, force=True)


def ensure_schema(engine) -> list[str]:
    """What a task calls before it reads or writes the warehouse: one read of the schema's version,
    and ``create_schema`` only when the warehouse is behind it (``schema_once``)."""
    from threshold_operators.schema_once import ensure

    return ensure(engine, "warehouse", schema_version(), _create_missing) or []


@lru_cache(maxsize=1)
def schema_version() -> str:
    from threshold_operators.schema_once import digest
    from threshold_operators.warehouse.rollup_tables import BOOKKEEPING_VERSION

    return digest(metadata, BOOKKEEPING_VERSION)


def _create_missing(con) -> list[str]:
    """In one transaction (``con``), under the set-up lock."""
    from sqlalchemy import inspect

    from threshold_operators.schema_once import add_missing_columns
    from threshold_operators.warehouse.rollup_tables import create_rollup_bookkeeping

    existing = set(inspect(con).get_table_names())
    metadata.create_all(con, checkfirst=True)
    # a column a later version added to a table that exists (``rule_evaluations.definition``)
    add_missing_columns(con, [t for t in metadata.sorted_tables if t.name in existing])
    for history, latest in LATEST_OF.items():  # a latest-state table created now starts from its history
        if latest not in existing and history in existing:
            fill_latest(con, history)
    if con.dialect.name == "postgresql":  # an index a later version added to a table that exists
        for table in metadata.sorted_tables:
            if table.name in existing:
                for index in table.indexes:
                    index.create(con, checkfirst=True)
    if con.dialect.name == "duckdb":  # the same (duckdb-engine reflects no index: IF NOT EXISTS)
        from sqlalchemy import text

        for index in LOOKUP_INDEXES:
            con.execute(text(f"CREATE INDEX IF NOT EXISTS {index.name} ON {index.table.name} "
                             f"({', '.join(c.name for c in index.columns)})"))
    create_rollup_bookkeeping(con)
    return [name for name in (*TABLE_NAMES, *PACK_TABLE_NAMES, *PLAN_TABLE_NAMES, *LATEST_TABLE_NAMES)
            if name not in existing]


def render_markdown() -> str:
    """The analysts' reference, docs/warehouse.md. A test keeps the committed file in step."""
    lines = [
        "# The Storefence warehouse",
        "",
        "<!-- Generated by `storefence warehouse docs`; edit plugins/threshold_operators/warehouse/schema.py. -->",
        "",
        "The pack keeps its data in one warehouse, reached through the Airflow connection",
        "`storefence_warehouse`: an embedded DuckDB file by default, PostgreSQL in production",
        "(see the README). `storefence warehouse init` (and the `storefence_warehouse_setup` DAG)",
        "creates any missing table, and adds to an existing table a column a later version defines",
        "(always one that may be empty: `rule_evaluations.definition`); rows are never touched.",
        "",
        "**Upgrading a warehouse.** A version that adds tables (e.g. `tracking_events`, `planned_events`,",
        "`rollup_dirty` and `rollup_state` came with 5-minute rules) needs them created before its DAGs",
        "run: `storefence warehouse init --warehouse <url>` (or `--conn-id`) or a run of the",
        "`storefence_warehouse_setup` DAG (an extract's load runs that set-up itself when it finds the",
        "warehouse behind). Until then a rule reading a missing table is",
        "told as \"could not evaluate (rule)\" to the data engineers, never as a breach. A new table",
        "fills from the next extract on (its source's high-water mark starts empty: the first run reads",
        "the source's history as far back as it serves); the rollups build on the first cycle; a table kept",
        "by the loader (`inventory_latest`; the pack's `rule_states`, which every rule's cycle writes) is",
        "filled from its history when it is created. A DuckDB file created before the time-keyed tables",
        "lost their key index keeps it (the loader then upserts on it) until `storefence warehouse upgrade",
        "--warehouse <url>` rebuilds those tables without it, in one transaction: run it with the DAGs",
        "paused; it needs free disk for a copy of the largest of them (on the 365-day bench file,",
        "`tracking_events`). Set-up also adds to an existing DuckDB file the index on",
        "`order_items.order_id` that the loader's lookups read (25 s on the 365-day bench file, once).",
        "`rollup_reads` (what each rollup reads) came later: until set-up creates it, loads mark every",
        "row they write for the rollups, as before, and the rollups register on their next cycle after.",
        "`rule_evaluations.definition` came later too: the rows before it have none, so the first cycle",
        "of each rule after the upgrade reads its lead-in instead of resuming (docs/rules.md, step 4).",
        "",
        "Conventions:",
        "- Every timestamp is UTC (`TIMESTAMP WITH TIME ZONE`). Each shop has an IANA timezone in",
        "  `shops.timezone` (default `Asia/Shanghai`); rules that speak of days or hours of the day",
        "  use it: `created_at AT TIME ZONE s.timezone` works on both DuckDB and PostgreSQL.",
        "- Money is `NUMERIC(14, 2)` in the shop's currency.",
        "- Tables and columns may be added; none is ever renamed.",
        "- *Key* marks the primary key; loaders upsert on it, so a row is never stored twice. On DuckDB the",
        "  tables whose key holds their time (`inventory_snapshots`, `tracking_events`, `traffic`, `ad_spend`",
        "  and `rule_results`) are created without the key's index: an index over the largest, ever-growing",
        "  tables made every opening and closing of the file cost more with the history it holds (each",
        "  domain's cycle opens it once). The loader keeps their keys unique: it replaces a batch's keys",
        "  within the batch's time range, which DuckDB's zone maps narrow to the row groups of that range.",
        "  Write to these tables through the loader (`warehouse.bulk_load`), not with plain `INSERT`s.",
        "- *Changes tracked by* is the column incremental extraction reads (`updated_since`).",
        "",
        "## Rules read; they never write",
        "",
        "Rule evaluation runs on a connection of its own (`WarehouseHook.evaluation_connection`), behind",
        "the lint and the check of every compiled statement (docs/rules.md, \"Rule files are data\"):",
        "",
        "- DuckDB: the file is opened read-only with `enable_external_access = false` (no files, URLs,",
        "  `ATTACH`, `COPY`, `INSTALL`), extension autoload, autoinstall and community extensions off,",
        "  then `SET lock_configuration = true`: nothing the statement runs can change that. The",
        "  extract and load tasks keep the ordinary connection (they read staging files and write).",
        "  A domain's `evaluate` task opens the file once for its cycle (`WarehouseHook.session()`:",
        "  opening a file costs tens of milliseconds, and a cycle made about five opens a rule). Every",
        "  connection in the session is a cursor of one database, opened with the same settings off",
        "  and locked but not read-only: in place of that, DuckDB's own parser must find exactly one",
        "  `SELECT` in what the evaluation connection runs (no `ROLLBACK; DELETE ...`), and the",
        "  evaluation's transaction is rolled back after the query (a write inside a `SELECT`, a",
        "  data-modifying CTE, is refused where it is nested, and rolled back where it is not).",
        "- PostgreSQL: every transaction of the evaluation connection starts with `SET TRANSACTION READ",
        "  ONLY` and is rolled back after the statement (per transaction, not per session: it holds",
        "  behind PgBouncer's transaction pooling, docs/deploy.md). It also sets `jit = off`: a",
        "  rule's statement joins CTEs whose row estimates run to millions when a cycle reads a few",
        "  thousand rows, and PostgreSQL JIT-compiled it for about 4 seconds per cycle (a rolling",
        "  spike rule on the tests' shop: 5.1 s with JIT, 0.9 s without; the compound rule 14.5 s and",
        "  4.0 s).",
        "",
        "On PostgreSQL, also evaluate rules as a role that may only read the warehouse: a superuser",
        "can read server files with `pg_read_file` even in a read-only transaction (the hook logs a",
        "warning when rules run as one). Create the role, make the connection's user a member, and",
        "name it in the connection's `extra.evaluation_role`: each rule's statement then runs after",
        "`SET LOCAL ROLE storefence_checks`, inside its read-only transaction (the statement cannot",
        "reset it: `SET` and `RESET` are refused in a metric query). Extract, load and the records of",
        "a check keep the connection's own user.",
        "",
        "```sql",
        "CREATE ROLE storefence_checks NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;",
        "GRANT USAGE ON SCHEMA storefence TO storefence_checks;",
        "GRANT SELECT ON ALL TABLES IN SCHEMA storefence TO storefence_checks;",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA storefence GRANT SELECT ON TABLES TO storefence_checks;",
        "GRANT storefence_checks TO storefence;  -- the connection's login",
        "-- never: pg_read_server_files, pg_write_server_files, pg_execute_server_program, dblink",
        "```",
        "",
        "```bash",
        "airflow connections add storefence_warehouse --conn-type postgres ... \\",
        "    --conn-extra '{\"search_path\": \"storefence\", \"evaluation_role\": \"storefence_checks\"}'",
        "```",
        "",
    ]
    for table in (*TABLES, *LATEST_TABLES, *PACK_TABLES, *PLAN_TABLES):
        if table is LATEST_TABLES[0]:
            lines += ["# Kept by the loader", "",
                      "The latest state of a history table, written by the loader in the transaction that loads "
                      "the history, so a cycle reads the state now without grouping the history. Loads that do "
                      "not go through Storefence's loader must keep it too (as they must note `rollup_dirty`).", ""]
        if table is PACK_TABLES[0]:
            lines += ["# The pack's own tables", "",
                      "What extraction did and refused, and what rule evaluation found. Simulations and summaries leave them alone.", ""]
        if table is PLAN_TABLES[0]:
            lines += ["# What the shop plans", "",
                      "Inputs the rules read besides the shop's data. `storefence plans load` writes "
                      "`include/rules/plans.yaml` here (source `plans.yaml`); a planning system may write its own "
                      "rows, and the simulator writes the promotions it planned (source `simulator`). Each "
                      "replaces only the rows of its own source. docs/rules.md, \"Planned events\".", ""]
        updated = table.info["updated_field"]
        event = table.info.get("event_field")
        key = ", ".join(c.name for c in table.primary_key.columns)
        sliced = f" Rollup slices of: `{event}`." if event and table in TABLES and table.name not in ("shops", "products", "warehouses") \
            else ""
        lines += [
            f"## `{table.name}`",
            "",
            table.comment,
            "",
            f"Key: `{key}`. Changes tracked by: {f'`{updated}`' if updated else 'none (read whole)'}.{sliced}",
            "",
        ]
        for ix in sorted(table.indexes, key=lambda i: i.name):
            include = ix.dialect_options["postgresql"]["include"]
            where = "DuckDB" if ix.info.get("dialect") == "duckdb" else "PostgreSQL"
            lines += [f"Index on {where}: `{ix.name}` on ({', '.join(c.name for c in ix.columns)})"
                      + (f" including ({', '.join(include)})" if include else "") + ".", ""]
        lines += [
            "| column | type | unit | key | null | meaning |",
            "|---|---|---|---|---|---|",
        ]
        for c in table.columns:
            type_name = "TIMESTAMPTZ" if isinstance(c.type, DateTime) else str(c.type)
            lines.append(
                f"| `{c.name}` | {type_name} | {c.info.get('unit') or ''} | {'yes' if c.primary_key else ''} "
                f"| {'yes' if c.nullable else ''} | {c.comment} |"
            )
        lines.append("")
    from threshold_operators.warehouse.rollup_tables import BOOKKEEPING_DOC

    lines += ["# The rollups' bookkeeping", "",
              "Rolling rules read rollups (`rollup_<query path>`: a slice query's rows per entity and 5-minute",
              "slice, created and maintained by the engine: docs/rules.md, Rolling windows). Three tables keep",
              "them exact; created with the schema.", "", BOOKKEEPING_DOC.replace("### ", "## ")]
    return "\n".join(lines)


@cache
def arrow_schema(name: str):
    """The Arrow schema of a table (money as float64: loaders cast it to NUMERIC exactly at 2 places)."""
    import pyarrow as pa

    def arrow_type(col):
        if isinstance(col.type, DateTime):
            return pa.timestamp("us", tz="UTC")
        if isinstance(col.type, SmallInteger):
            return pa.int16()
        if isinstance(col.type, Integer):
            return pa.int32()
        if isinstance(col.type, Numeric):
            return pa.float64()
        return pa.string()

    table = metadata.tables[name]
    return pa.schema([pa.field(c.name, arrow_type(c)) for c in table.columns])


def arrow_table(name: str, columns: dict):
    """An Arrow table of ``name`` from column arrays (numpy, lists or Arrow), cast to its schema."""
    import pyarrow as pa

    schema = arrow_schema(name)
    arrays = []
    for f in schema:
        col = columns[f.name]
        if not isinstance(col, pa.Array | pa.ChunkedArray):
            col = pa.array(col)
        arrays.append(col.cast(f.type))
    return pa.Table.from_arrays(arrays, schema=schema)
