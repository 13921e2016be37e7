"""The alert state store: alerts and the notification outbox, behind the connection ``storefence_state``.

Default (no connection defined): a SQLite file in the Airflow home, ``storefence-state.sqlite``,
in WAL mode, so the UI and the CLI read it while DAGs write (LocalExecutor only: under a remote
executor it is refused, ``executor.refuse_per_host``). Production: PostgreSQL (``conn_type
postgres``, ``extra.search_path`` for a schema of its own, set per transaction so it holds
behind PgBouncer), or any SQLAlchemy URL in ``extra.sqlalchemy_url``.

- ``alerts``: one row per fingerprint (rule, entity) in its latest state (``lifecycle.Alert``).
- ``notifications``: the outbox. A notification is stored *before* it is sent, under its
  idempotency key (``lifecycle.notification_key``); storing the same key again does nothing, so a
  retried task, a cleared and re-run DAG run or a backfill never sends anything twice. Delivery
  claims it (a token and a lease), sends it, and marks it sent, or failed with its next attempt
  time, only while it still holds the claim (``finish``).
- ``alert_points``: what each notify task saw of each alert's entity, one row per rule, entity and
  data bucket (state, severity, value, baseline, threshold): the history the alerts page charts,
  written in the transaction that records the alert, kept ``POINTS_KEPT`` (the warehouse's
  ``rule_results`` has the same rows, but the API server must not need the warehouse: a DuckDB
  file is open in one process at a time).
- ``delivery_routes``: one row per outbox route, locked while a deliverer claims on that route
  (``route_lock``), so the throttle's count and the claim are one atomic step for N deliverers.

Writes go through ``transaction()``: ``BEGIN IMMEDIATE`` on SQLite (the writer lock is taken at
the start, so a read-then-write transaction never fails half-way on an upgrade), a plain
transaction on PostgreSQL. Alert rows carry a ``version``: ``cas_many`` writes an alert only if
nobody wrote it since it was read (compare-and-set), so a decision taken on an old snapshot is
re-taken, never applied over a newer state (an acknowledgement).
"""

from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path

from sqlalchemy import Column, DateTime, Float, Integer, MetaData, String, Table, Text, func

from threshold_operators.alerting.lifecycle import Alert, AlertStatus

STATE_CONN_ID = "storefence_state"
POINTS_KEPT = timedelta(days=30)  # an alert's chart history: older points are pruned as new ones come
DEFAULT_FILE = "storefence-state.sqlite"

metadata = MetaData()
TS = DateTime(timezone=True)

alerts = Table(
    "alerts", metadata,
    Column("fingerprint", String(40), primary_key=True),
    Column("rule_id", String(128), nullable=False),
    Column("entity_key", String(500), nullable=False),
    Column("status", String(16), nullable=False),
    Column("severity", String(8)),
    Column("first_bucket", TS, nullable=False),
    Column("last_bucket", TS, nullable=False),
    Column("opened_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("escalation_level", Integer, nullable=False, default=0),
    Column("escalated_at", TS),
    Column("acknowledged_by", String(200)),
    Column("acknowledged_at", TS),
    Column("resolved_at", TS),
    Column("detail", Text),
    Column("notified_at", TS),  # when people were last told (fired, worsened, escalated, repeated)
    Column("muted", Text),  # why it is held back, while it is (a silence, an inhibition)
    Column("version", Integer),  # bumped by every write: compare-and-set (NULL in old stores: 0)
)

notifications = Table(
    "notifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("fingerprint", String(40), nullable=False, index=True),
    Column("event", String(40), nullable=False),
    Column("level", Integer, nullable=False),
    Column("route", String(128), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending, sent, failed (given up)
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", TS, nullable=False),
    Column("last_error", Text),
    Column("created_at", TS, nullable=False, index=True),  # an alert's messages: those since it opened
    Column("sent_at", TS),
    Column("claimed_until", TS),  # a deliverer is sending it; another one leaves it alone until then
    Column("batch_of", Integer),  # sent within the batch led by this notification id (the throttle counts batches)
    Column("claim_token", String(32)),  # the claim that sent it or holds it (one token per request sent)
    Column("claimed_at", TS),  # when that claim was taken (the throttle counts claims in its window)
)

alert_points = Table(  # the alerts page's chart: what the notify tasks saw, bucket by bucket
    "alert_points", metadata,
    Column("rule_id", String(128), primary_key=True),
    Column("entity_key", String(500), primary_key=True),
    Column("bucket", TS, primary_key=True),  # data time
    Column("state", String(16), nullable=False),  # firing, resolved (engine.states.State)
    Column("severity", String(8)),
    Column("value", Float),
    Column("baseline", Float),
    Column("threshold", Float),
    Column("recorded_at", TS, nullable=False),
)

delivery_routes = Table(  # one row per route, locked while a deliverer claims on it
    "delivery_routes", metadata,
    Column("route", String(128), primary_key=True),
)

silences = Table(
    "silences", metadata,
    Column("id", String(32), primary_key=True),
    Column("rule", String(128), nullable=False),
    Column("entity", String(500), nullable=False),
    Column("shop", String(64)),
    Column("author", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("starts_at", TS, nullable=False),
    Column("ends_at", TS, nullable=False, index=True),
    Column("created_at", TS, nullable=False),
)


def _as_utc(value):
    from threshold_operators.warehouse.schema import as_utc

    return as_utc(value)


def state_url(conn_id: str = STATE_CONN_ID) -> str:
    """The SQLAlchemy URL of the state store: the connection's, or the default SQLite file."""
    try:
        from threshold_operators.connections import get_connection

        conn = get_connection(conn_id)
    except Exception as exc:  # not defined: the embedded default
        if "isn't defined" not in str(exc) and type(exc).__name__ != "AirflowNotFoundException":
            raise
        home = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()
        return f"sqlite:///{home / DEFAULT_FILE}"
    extra = conn.extra_dejson or {}
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    if (conn.conn_type or "").lower() == "sqlite":
        path = conn.host or extra.get("path") or DEFAULT_FILE
        if not os.path.isabs(path):
            path = str(Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / path)
        return f"sqlite:///{path}"
    from threshold_operators.warehouse.hook import url_from_connection

    return url_from_connection(conn)


def _connection_search_path(conn_id: str) -> str | None:
    """``extra.search_path`` of the store's connection (PostgreSQL: the schema of its tables)."""
    try:
        from threshold_operators.connections import get_connection

        return (get_connection(conn_id).extra_dejson or {}).get("search_path")
    except Exception:  # noqa: BLE001 - not defined: the embedded default has no schema
        return None


def _defined(conn_id: str) -> bool:
    try:
        from threshold_operators.connections import get_connection

        get_connection(conn_id)
        return True
    except Exception:  # noqa: BLE001 - for a message only
        return False


class StateStore:
    """Alerts and the outbox. ``url``: a SQLAlchemy URL (default: from ``storefence_state``)."""

    def __init__(self, url: str | None = None, conn_id: str = STATE_CONN_ID, schema: str | None = None):
        self._url = url
        self.conn_id = conn_id
        self.schema = schema

    @cached_property
    def engine(self):
        from sqlalchemy import create_engine, event

        url = self._url or state_url(self.conn_id)
        if url.startswith("sqlite"):
            if not self._url:  # the deployment's store: one outbox for every worker, or refused
                from threshold_operators.executor import refuse_per_host

                refuse_per_host(f"connection '{self.conn_id}' is the SQLite file {url.split(':///', 1)[-1]}"
                                + ("" if _defined(self.conn_id) else " (the default: the connection is not defined)")
                                + ", on one host's disk")
            engine = create_engine(url, connect_args={"timeout": 30})

            @event.listens_for(engine, "connect")
            def _wal(dbapi_conn, _record):
                dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below), not pysqlite
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            @event.listens_for(engine, "begin")
            def _begin(con):  # a write transaction takes the writer lock at once (waits up to the timeout)
                con.exec_driver_sql("BEGIN IMMEDIATE" if con.get_execution_options().get("storefence_write")
                                    else "BEGIN")

            return engine
        engine = create_engine(url, pool_pre_ping=True)
        schema = self.schema or (None if self._url else _connection_search_path(self.conn_id))
        if schema and engine.dialect.name == "postgresql":
            from threshold_operators.warehouse.hook import search_path_sql

            set_path = f"SET LOCAL search_path TO {search_path_sql(schema, self.conn_id)}"

            @event.listens_for(engine, "begin")
            def _search_path(con):  # per transaction: safe behind PgBouncer's transaction pooling
                con.exec_driver_sql(set_path)
        return engine

    @contextmanager
    def transaction(self):
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite): committed at the end, rolled back on error."""
        with self.engine.connect().execution_options(storefence_write=True) as con, con.begin():
            yield con

    def create(self, force: bool = False) -> None:
        """Create the tables, and add the columns a store made by an older version lacks: once per
        version of the tables, under the set-up lock (``schema_once``; a task that finds the store
        current reads one row). ``force``: check every table and column all the same."""
        from threshold_operators.schema_once import digest, ensure

        ensure(self.engine, "state", digest(metadata), self._create_missing, begin=self.transaction, force=force)

    def _create_missing(self, con) -> None:
        from sqlalchemy import inspect

        from threshold_operators.schema_once import add_missing_columns

        metadata.create_all(con, checkfirst=True)
        add_missing_columns(con, metadata.sorted_tables)
        for table in metadata.sorted_tables:
            indexed = {i["name"] for i in inspect(con).get_indexes(table.name)}
            for index in table.indexes:  # an index added since the store was made
                if index.name not in indexed:
                    index.create(con)

    # --- alerts ------------------------------------------------------------------------------
    def get(self, fingerprint: str) -> Alert | None:
        from sqlalchemy import select

        with self.engine.connect() as con:
            row = con.execute(select(alerts).where(alerts.c.fingerprint == fingerprint)).mappings().first()
        return _alert(row) if row else None

    def get_many(self, fingerprints) -> dict[str, Alert]:
        """The alerts of ``fingerprints`` that exist, in one round trip per thousand."""
        from sqlalchemy import select

        fps, out = list(fingerprints), {}
        with self.engine.connect() as con:
            for i in range(0, len(fps), 1000):
                q = select(alerts).where(alerts.c.fingerprint.in_(fps[i:i + 1000]))
                out |= {r["fingerprint"]: _alert(r) for r in con.execute(q).mappings()}
        return out

    def list(self, *, active_only: bool = False, resolved_since: datetime | None = None) -> list[Alert]:
        """Every alert; the active ones (firing, acknowledged, silenced) with ``active_only``; the
        active ones and those resolved since ``resolved_since`` when that is given."""
        from sqlalchemy import or_, select

        q = select(alerts).order_by(alerts.c.rule_id, alerts.c.entity_key)
        active = alerts.c.status.in_([s.value for s in (AlertStatus.FIRING, AlertStatus.ACKNOWLEDGED,
                                                        AlertStatus.SILENCED)])
        if resolved_since is not None:
            q = q.where(or_(active, alerts.c.resolved_at >= resolved_since))
        elif active_only:
            q = q.where(active)
        with self.engine.connect() as con:
            return [_alert(r) for r in con.execute(q).mappings()]

    def find(self, prefix: str) -> Alert | None:
        """An alert by its fingerprint or an unambiguous prefix of it (what `storefence ack` takes)."""
        import re

        from sqlalchemy import select

        if not re.fullmatch(r"[0-9a-f]{1,40}", prefix or ""):
            return None  # fingerprints are hex: anything else (a LIKE wildcard) matches nothing
        with self.engine.connect() as con:
            rows = con.execute(select(alerts).where(alerts.c.fingerprint.like(f"{prefix}%")).limit(2)).mappings().all()
        return _alert(rows[0]) if len(rows) == 1 else None

    def save(self, alert: Alert, con=None) -> None:
        """Insert or replace the alert's row, whatever it holds now (set-up, tests, admin tools: the
        alert path writes with ``cas_many``)."""
        self.save_many([alert], con)

    def save_many(self, items, con=None) -> None:
        """Insert or replace many alerts in one statement (an upsert), bumping their versions."""
        rows = list({a.fingerprint: _row(a) for a in items}.values())  # the last state of each
        if not rows:
            return
        if con is None:
            with self.transaction() as c:
                return self.save_many(items, c)
        insert = self._insert()
        stmt = insert(alerts)
        stmt = stmt.on_conflict_do_update(index_elements=["fingerprint"], set_={
            **{c.name: stmt.excluded[c.name] for c in alerts.columns if c.name not in ("fingerprint", "version")},
            "version": func.coalesce(alerts.c.version, 0) + 1})
        con.execute(stmt, [{**r, "version": 1} for r in rows])
        return None

    def cas_many(self, items, con) -> None:
        """Compare-and-set: write each alert only if its row still has the version it was read at
        (``Alert.version``; 0: it must not exist yet), bumping it. Raises ``StaleAlerts`` (with the
        fingerprints whose row changed since) when any was written meanwhile: the transaction rolls
        back and the caller re-reads and re-decides. One statement (an upsert ``... WHERE version =
        read version RETURNING``)."""
        items = list({a.fingerprint: a for a in items}.values())
        if not items:
            return
        insert = self._insert()
        stmt = insert(alerts)
        stmt = stmt.on_conflict_do_update(
            index_elements=["fingerprint"],
            set_={**{c.name: stmt.excluded[c.name] for c in alerts.columns if c.name != "fingerprint"}},
            where=func.coalesce(alerts.c.version, 0) == stmt.excluded.version - 1,
        ).returning(alerts.c.fingerprint)
        written = set(con.execute(stmt, [{**_row(a), "version": a.version + 1} for a in items]).scalars())
        lost = [a.fingerprint for a in items if a.fingerprint not in written]
        if lost:
            raise StaleAlerts(lost)

    def _insert(self):
        if self.engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            raise NotImplementedError(f"state store on {self.engine.dialect.name}: SQLite or PostgreSQL")
        return insert

    # --- the chart's history ---------------------------------------------------------------------
    def save_points(self, rows, now: datetime, con=None) -> None:
        """Record observations for the chart (dicts: rule_id, entity_key, bucket, state, severity,
        value, baseline, threshold): an upsert on (rule, entity, bucket), so a retried task or a
        re-run writes the same rows; the rules' points older than ``POINTS_KEPT`` are pruned."""
        rows = list({(r["rule_id"], r["entity_key"], r["bucket"]): {
            "rule_id": r["rule_id"], "entity_key": r["entity_key"], "bucket": r["bucket"], "state": r["state"],
            "severity": r.get("severity"), "value": _float(r.get("value")), "baseline": _float(r.get("baseline")),
            "threshold": _float(r.get("threshold")), "recorded_at": now} for r in rows}.values())
        if not rows:
            return
        if con is None:
            with self.transaction() as c:
                return self.save_points(rows, now, c)
        stmt = self._insert()(alert_points)
        stmt = stmt.on_conflict_do_update(
            index_elements=["rule_id", "entity_key", "bucket"],
            set_={c: stmt.excluded[c] for c in ("state", "severity", "value", "baseline", "threshold", "recorded_at")})
        con.execute(stmt, rows)
        rules = sorted({r["rule_id"] for r in rows})
        con.execute(alert_points.delete().where(alert_points.c.rule_id.in_(rules),
                                                alert_points.c.bucket < now - POINTS_KEPT))
        return None

    def points(self, rule_id: str, entity_key: str, since: datetime | None = None) -> list[dict]:
        """An entity's recorded points of a rule, oldest first (from ``since`` when given)."""
        from sqlalchemy import select

        q = (select(alert_points).where(alert_points.c.rule_id == rule_id, alert_points.c.entity_key == entity_key)
             .order_by(alert_points.c.bucket))
        if since is not None:
            q = q.where(alert_points.c.bucket >= since)
        with self.engine.connect() as con:
            return [{**dict(r), "bucket": _as_utc(r["bucket"]), "recorded_at": _as_utc(r["recorded_at"])}
                    for r in con.execute(q).mappings()]

    # --- the outbox ----------------------------------------------------------------------------
    def enqueue(self, *, key: str, fingerprint: str, event: str, level: int, route: str, payload: dict,
                now: datetime, not_before: datetime | None = None, con=None) -> bool:
        """Store a notification to send (at ``not_before``: after quiet hours, a deferral that never
        holds back the route's later rows); False if one with this key exists already (sent or not)."""
        if con is None:
            with self.transaction() as c:
                return self.enqueue(key=key, fingerprint=fingerprint, event=event, level=level, route=route,
                                    payload=payload, now=now, not_before=not_before, con=c)
        values = {"idempotency_key": key, "fingerprint": fingerprint, "event": event, "level": level, "route": route,
                  "payload": json.dumps(payload, ensure_ascii=False, default=str), "status": "pending",
                  "attempts": 0, "next_attempt_at": max(now, not_before or now), "created_at": now}
        stmt = self._insert()(notifications).values(**values).on_conflict_do_nothing(index_elements=["idempotency_key"])
        return con.execute(stmt).rowcount == 1

    def due(self, now: datetime, limit: int = 100) -> list[dict]:
        """Pending notifications whose next attempt is due, oldest first (the order they were decided)."""
        from sqlalchemy import select

        q = (select(notifications).where(notifications.c.status == "pending", notifications.c.next_attempt_at <= now)
             .order_by(notifications.c.id).limit(limit))
        with self.engine.connect() as con:
            return [{**dict(r), "payload": json.loads(r["payload"])} for r in con.execute(q).mappings()]

    def pending(self, limit: int = 500) -> list[dict]:
        """Every pending notification, due or waiting out a back-off, oldest first."""
        from sqlalchemy import select

        q = select(notifications).where(notifications.c.status == "pending").order_by(notifications.c.id).limit(limit)
        with self.engine.connect() as con:
            return [_outbox_row(r) for r in con.execute(q).mappings()]

    def pending_routes(self) -> list[str]:
        """The routes with pending notifications, the one with the oldest first."""
        from sqlalchemy import select

        q = (select(notifications.c.route, func.min(notifications.c.id).label("first"))
             .where(notifications.c.status == "pending").group_by(notifications.c.route).order_by("first"))
        with self.engine.connect() as con:
            return [r.route for r in con.execute(q)]

    @contextmanager
    def route_lock(self, route: str):
        """A write transaction holding ``route``'s lock (its ``delivery_routes`` row ``FOR UPDATE`` on
        PostgreSQL; SQLite's single writer lock, taken by ``BEGIN IMMEDIATE``): while it is held no
        other deliverer counts or claims on the route."""
        from sqlalchemy import select

        with self.transaction() as con:
            if self.engine.dialect.name == "postgresql":
                con.execute(self._insert()(delivery_routes).values(route=route).on_conflict_do_nothing())
                con.execute(select(delivery_routes.c.route).where(delivery_routes.c.route == route).with_for_update())
            yield con

    def route_queue(self, route: str, now: datetime, con, limit: int = 5000) -> list[dict]:
        """The route's pending rows in order, without payloads (cheap to re-read): the due ones and
        those backing off after a failed attempt. A row deferred before its first attempt (quiet
        hours) is left out until its time: it holds back nothing behind it."""
        from sqlalchemy import or_, select

        c = notifications.c
        q = (select(c.id, c.attempts, c.next_attempt_at, c.claimed_until)
             .where(c.route == route, c.status == "pending", or_(c.next_attempt_at <= now, c.attempts > 0))
             .order_by(c.id).limit(limit))
        return [{**dict(r), "next_attempt_at": _as_utc(r["next_attempt_at"])} for r in con.execute(q).mappings()]

    def route_busy(self, route: str, now: datetime, con) -> bool:
        """Whether a live claim (its lease not run out) holds rows of ``route``."""
        from sqlalchemy import select

        c = notifications.c
        q = select(c.id).where(c.route == route, c.status == "pending", c.claimed_until > now).limit(1)
        return con.execute(q).first() is not None

    def requests_since(self, route: str, since: datetime, now: datetime, con=None) -> int:
        """Requests made on ``route`` since ``since``, and in flight: the throttle's count. A request
        is one claim token (a batch is one); rows sent before tokens existed count by ``batch_of``.
        Claims are counted from the moment they are taken (sent or not), so N deliverers never
        spend the same budget twice."""
        from sqlalchemy import and_, distinct, or_, select

        if con is None:
            with self.engine.connect() as c:
                return self.requests_since(route, since, now, c)
        c = notifications.c
        tokens = select(func.count(distinct(c.claim_token))).where(
            c.route == route, c.claim_token.is_not(None), c.status != "dry_run",
            or_(c.claimed_at > since, c.sent_at > since,
                and_(c.status == "pending", c.claimed_until > now)))
        legacy = select(func.count()).where(
            c.route == route, c.claim_token.is_(None), c.status == "sent", c.sent_at > since,
            or_(c.batch_of.is_(None), c.batch_of == c.id))
        return con.execute(tokens).scalar_one() + con.execute(legacy).scalar_one()

    def claim_rows(self, ids: list[int], now: datetime, lease: timedelta, con, token: str | None = None) -> str:
        """Claim the pending rows ``ids`` under one new token until ``now + lease``; the token.
        ``ClaimLost`` when one of them is held by a live claim or no longer pending (the caller's
        transaction rolls back: nothing is claimed)."""
        from sqlalchemy import or_

        token = token or uuid.uuid4().hex
        c = notifications.c
        n = con.execute(notifications.update().where(
            c.id.in_(ids), c.status == "pending", or_(c.claimed_until.is_(None), c.claimed_until <= now),
        ).values(claim_token=token, claimed_at=now, claimed_until=now + lease)).rowcount
        if n != len(set(ids)):
            raise ClaimLost(f"{len(set(ids)) - n} of {len(set(ids))} rows taken meanwhile")
        return token

    def claim(self, notification_id: int, now: datetime, lease_seconds: float = 120) -> str | None:
        """Take one pending notification (a token), or None when a live claim holds it. A lease that
        runs out (the deliverer died mid-send) lets the next one take it again."""
        try:
            with self.transaction() as con:
                return self.claim_rows([notification_id], now, timedelta(seconds=lease_seconds), con)
        except ClaimLost:
            return None

    def claimed(self, ids: list[int], con=None) -> list[dict]:
        """The full rows ``ids`` (payloads decoded), in id order."""
        from sqlalchemy import select

        if con is None:
            with self.engine.connect() as c:
                return self.claimed(ids, c)
        q = select(notifications).where(notifications.c.id.in_(ids)).order_by(notifications.c.id)
        return [_outbox_row(r) for r in con.execute(q).mappings()]

    def finish(self, token: str | None, updates: dict[int, dict], con=None) -> list[int]:
        """Record the outcome of a claim: ``updates`` id -> the columns to set (``status``,
        ``sent_at``, ``last_error``, ``next_attempt_at``...; ``attempts`` is incremented), applied
        only to rows still pending under ``token`` (None: any pending row, for tools and tests).
        Returns the ids whose claim was gone (another deliverer took them after the lease ran out):
        nothing is written to those."""
        if con is None:
            with self.transaction() as c:
                return self.finish(token, updates, c)
        c = notifications.c
        gone = []
        for nid, values in updates.items():
            q = notifications.update().where(c.id == nid, c.status == "pending")
            if token is not None:
                q = q.where(c.claim_token == token)
            values = {**values, "attempts": c.attempts + 1, "claimed_until": None}
            if values.get("last_error"):
                values["last_error"] = values["last_error"][:2000]
            if not con.execute(q.values(**values)).rowcount:
                gone.append(nid)
        return gone

    def mark_sent(self, notification_id: int, now: datetime, status: str = "sent", batch_of: int | None = None,
                  token: str | None = None) -> bool:
        """Sent (or ``dry_run``: an action recorded, not executed), alone or in the batch led by ``batch_of``."""
        return not self.finish(token, {notification_id: {"status": status, "sent_at": now, "batch_of": batch_of}})

    def mark_failed(self, notification_id: int, error: str, next_attempt_at: datetime | None,
                    token: str | None = None) -> bool:
        """A failed attempt: retry at ``next_attempt_at``, or give up (None)."""
        values = {"status": "pending" if next_attempt_at else "failed", "last_error": error}
        if next_attempt_at:
            values["next_attempt_at"] = next_attempt_at
        return not self.finish(token, {notification_id: values})

    # --- silences ------------------------------------------------------------------------------
    def add_silence(self, silence, now: datetime):
        """Store a silence (``mute.Silence``); returns it with its creation time."""
        from dataclasses import replace

        silence = replace(silence, created_at=now)
        with self.transaction() as con:
            con.execute(silences.insert().values(
                id=silence.id, rule=silence.rule, entity=silence.entity, shop=silence.shop, author=silence.author,
                reason=silence.reason, starts_at=silence.starts_at, ends_at=silence.ends_at, created_at=now))
        return silence

    def silences(self, now: datetime | None = None) -> list:
        """The silences not yet expired at ``now`` (all of them when ``now`` is None), soonest end first."""
        from sqlalchemy import select

        from threshold_operators.alerting.mute import Silence

        q = select(silences).order_by(silences.c.ends_at, silences.c.id)
        if now is not None:
            q = q.where(silences.c.ends_at > now)
        with self.engine.connect() as con:
            return [Silence(r["author"], r["reason"], _as_utc(r["starts_at"]), _as_utc(r["ends_at"]), r["rule"],
                            r["entity"], r["shop"], r["id"], _as_utc(r["created_at"]))
                    for r in con.execute(q).mappings()]

    def expire_silence(self, silence_id: str, now: datetime) -> bool:
        """End a silence now (kept for the record); False when no unexpired silence has that id."""
        from datetime import timedelta

        from sqlalchemy import select

        with self.transaction() as con:
            row = con.execute(select(silences.c.starts_at).where(silences.c.id == silence_id, silences.c.ends_at > now)
                              ).first()
            if row is None:
                return False
            # a maintenance window cancelled before it began: it starts and ends now (a second apart)
            starts = min(_as_utc(row.starts_at), now - timedelta(seconds=1))
            return con.execute(silences.update().where(silences.c.id == silence_id)
                               .values(starts_at=starts, ends_at=now)).rowcount == 1

    def notifications(self, fingerprint: str | None = None) -> list[dict]:
        from sqlalchemy import select

        q = select(notifications).order_by(notifications.c.id)
        if fingerprint:
            q = q.where(notifications.c.fingerprint == fingerprint)
        with self.engine.connect() as con:
            return [{**dict(r), "payload": json.loads(r["payload"])} for r in con.execute(q).mappings()]

    def notifications_about(self, alert: Alert, limit: int = 200) -> list[dict]:
        """The outbox rows that told of ``alert``'s current firing (created since it opened): its own
        rows, and the grouped messages listing it (by fingerprint, or by entity for a resolved
        message), oldest first."""
        from sqlalchemy import or_, select

        def like(text: str):
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return notifications.c.payload.like(f"%{escaped}%", escape="\\")

        q = (select(notifications).where(notifications.c.created_at >= alert.opened_at,
                                         or_(notifications.c.fingerprint == alert.fingerprint,
                                             like(alert.fingerprint), like(alert.entity_key)))
             .order_by(notifications.c.id))
        out = []
        with self.engine.connect() as con:
            for r in con.execute(q).mappings():
                row = {**dict(r), "payload": json.loads(r["payload"])}
                data = (row["payload"] or {}).get("data") or {}
                if (row["fingerprint"] == alert.fingerprint or alert.fingerprint in (data.get("fingerprints") or [])
                        or (data.get("rule_id") == alert.rule_id and alert.entity_key in (data.get("entities") or []))):
                    out.append(row)
        return out[-limit:]


class StaleAlerts(RuntimeError):
    """Alerts written by someone else since they were read (a lost compare-and-set)."""

    def __init__(self, fingerprints):
        super().__init__(f"{len(fingerprints)} alert(s) changed since read: {', '.join(fingerprints[:5])}")
        self.fingerprints = list(fingerprints)


class ClaimLost(RuntimeError):
    """A row to claim is held by someone else or no longer pending."""


def _float(v) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _outbox_row(r) -> dict:
    return {**dict(r), "payload": json.loads(r["payload"]), "next_attempt_at": _as_utc(r["next_attempt_at"]),
            "claimed_until": _as_utc(r["claimed_until"]) if r["claimed_until"] else None}


def _row(a: Alert) -> dict:
    return {"fingerprint": a.fingerprint, "rule_id": a.rule_id, "entity_key": a.entity_key, "status": str(a.status),
            "severity": a.severity, "first_bucket": a.first_bucket, "last_bucket": a.last_bucket,
            "opened_at": a.opened_at, "updated_at": a.updated_at, "escalation_level": a.escalation_level,
            "escalated_at": a.escalated_at,
            "acknowledged_by": a.acknowledged_by, "acknowledged_at": a.acknowledged_at, "resolved_at": a.resolved_at,
            "detail": json.dumps(a.detail, ensure_ascii=False, default=str), "notified_at": a.notified_at,
            "muted": a.muted, "version": a.version}


def _alert(r) -> Alert:
    return Alert(r["fingerprint"], r["rule_id"], r["entity_key"], AlertStatus(r["status"]), r["severity"],
                 _as_utc(r["first_bucket"]), _as_utc(r["last_bucket"]), _as_utc(r["opened_at"]),
                 _as_utc(r["updated_at"]), r["escalation_level"],
                 _as_utc(r["escalated_at"]) if r["escalated_at"] else None, r["acknowledged_by"],
                 _as_utc(r["acknowledged_at"]) if r["acknowledged_at"] else None,
                 _as_utc(r["resolved_at"]) if r["resolved_at"] else None, json.loads(r["detail"] or "{}"),
                 _as_utc(r["notified_at"]) if r["notified_at"] else None, r["muted"], r.get("version") or 0)
