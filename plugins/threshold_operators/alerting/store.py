"""The alert state store: alerts and the notification outbox, behind the connection ``storefence_state``.

Default (no connection defined): a SQLite file in the Airflow home, ``storefence-state.sqlite``,
in WAL mode, so the UI and the CLI read it while DAGs write. Production: PostgreSQL
(``conn_type postgres``), or any SQLAlchemy URL in ``extra.sqlalchemy_url``.

- ``alerts``: one row per fingerprint (rule, entity) in its latest state (``lifecycle.Alert``).
- ``notifications``: the outbox. A notification is stored *before* it is sent, under its
  idempotency key (``lifecycle.notification_key``); storing the same key again does nothing, so a
  retried task, a cleared and re-run DAG run or a backfill never sends anything twice. Delivery
  marks it sent, or failed with its next attempt time.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from functools import cached_property
from pathlib import Path

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text

from threshold_operators.alerting.lifecycle import Alert, AlertStatus

STATE_CONN_ID = "storefence_state"
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
    Column("created_at", TS, nullable=False),
    Column("sent_at", TS),
    Column("claimed_until", TS),  # a deliverer is sending it; another one leaves it alone until then
    Column("batch_of", Integer),  # sent within the batch led by this notification id (the throttle counts batches)
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
            engine = create_engine(url, connect_args={"timeout": 30})

            @event.listens_for(engine, "connect")
            def _wal(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            return engine
        engine = create_engine(url)
        if self.schema:
            @event.listens_for(engine, "connect")
            def _search_path(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute(f"SET search_path TO {self.schema}")
                cur.close()
        return engine

    def create(self) -> None:
        """Create the tables, and add the columns a store made by an older version lacks."""
        from sqlalchemy import inspect

        metadata.create_all(self.engine, checkfirst=True)
        with self.engine.begin() as con:
            for table in metadata.sorted_tables:
                have = {c["name"] for c in inspect(con).get_columns(table.name)}
                for column in table.columns:
                    if column.name not in have:
                        kind = column.type.compile(dialect=self.engine.dialect)
                        con.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')

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

    def list(self, *, active_only: bool = False) -> list[Alert]:
        from sqlalchemy import select

        q = select(alerts).order_by(alerts.c.rule_id, alerts.c.entity_key)
        if active_only:
            q = q.where(alerts.c.status.in_([s.value for s in (AlertStatus.FIRING, AlertStatus.ACKNOWLEDGED,
                                                               AlertStatus.SILENCED)]))
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
        """Insert or replace the alert's row."""
        row = _row(alert)
        if con is None:
            with self.engine.begin() as c:
                return self.save(alert, c)
        updated = con.execute(alerts.update().where(alerts.c.fingerprint == alert.fingerprint).values(**row)).rowcount
        if not updated:
            con.execute(alerts.insert().values(**row))
        return None

    def save_many(self, items, con=None) -> None:
        """Insert or replace many alerts in one statement (an upsert on SQLite and PostgreSQL)."""
        rows = list({a.fingerprint: _row(a) for a in items}.values())  # the last state of each
        if not rows:
            return
        if con is None:
            with self.engine.begin() as c:
                return self.save_many(items, c)
        dialect = self.engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            for a in items:
                self.save(a, con)
            return None
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(alerts)
        stmt = stmt.on_conflict_do_update(index_elements=["fingerprint"],
                                          set_={c.name: stmt.excluded[c.name] for c in alerts.columns
                                                if c.name != "fingerprint"})
        con.execute(stmt, rows)
        return None

    # --- the outbox ----------------------------------------------------------------------------
    def enqueue(self, *, key: str, fingerprint: str, event: str, level: int, route: str, payload: dict,
                now: datetime, not_before: datetime | None = None, con=None) -> bool:
        """Store a notification to send (at ``not_before``: after quiet hours); False if one with this
        key exists already (sent or not)."""
        if con is None:
            with self.engine.begin() as c:
                return self.enqueue(key=key, fingerprint=fingerprint, event=event, level=level, route=route,
                                    payload=payload, now=now, not_before=not_before, con=c)
        values = {"idempotency_key": key, "fingerprint": fingerprint, "event": event, "level": level, "route": route,
                  "payload": json.dumps(payload, ensure_ascii=False, default=str), "status": "pending",
                  "attempts": 0, "next_attempt_at": max(now, not_before or now), "created_at": now}
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy import select

            if con.execute(select(notifications.c.id).where(notifications.c.idempotency_key == key)).first():
                return False
            con.execute(notifications.insert().values(**values))
            return True
        stmt = insert(notifications).values(**values).on_conflict_do_nothing(index_elements=["idempotency_key"])
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
            return [{**dict(r), "payload": json.loads(r["payload"]),
                     "next_attempt_at": _as_utc(r["next_attempt_at"])} for r in con.execute(q).mappings()]

    def claim(self, notification_id: int, now: datetime, lease_seconds: float = 120) -> bool:
        """Take a pending notification to send it; False when another deliverer holds it. A lease
        that runs out (the deliverer died mid-send) lets the next one take it again."""
        from datetime import timedelta

        from sqlalchemy import or_

        with self.engine.begin() as con:
            return con.execute(notifications.update().where(
                notifications.c.id == notification_id, notifications.c.status == "pending",
                or_(notifications.c.claimed_until.is_(None), notifications.c.claimed_until <= now),
            ).values(claimed_until=now + timedelta(seconds=lease_seconds))).rowcount == 1

    def sent_since(self, route: str, since: datetime) -> int:
        """Messages a route sent since ``since`` (the throttle's count)."""
        from sqlalchemy import func, or_, select

        q = select(func.count()).where(notifications.c.route == route, notifications.c.status == "sent",
                                       notifications.c.sent_at > since,
                                       or_(notifications.c.batch_of.is_(None),
                                           notifications.c.batch_of == notifications.c.id))
        with self.engine.connect() as con:
            return con.execute(q).scalar_one()

    def mark_sent(self, notification_id: int, now: datetime, status: str = "sent", batch_of: int | None = None) -> None:
        """Sent (or ``dry_run``: an action recorded, not executed), alone or in the batch led by ``batch_of``."""
        with self.engine.begin() as con:
            con.execute(notifications.update().where(notifications.c.id == notification_id)
                        .values(status=status, sent_at=now, attempts=notifications.c.attempts + 1,
                                claimed_until=None, batch_of=batch_of))

    def mark_failed(self, notification_id: int, error: str, next_attempt_at: datetime | None) -> None:
        """A failed attempt: retry at ``next_attempt_at``, or give up (None)."""
        with self.engine.begin() as con:
            con.execute(notifications.update().where(notifications.c.id == notification_id).values(
                status="pending" if next_attempt_at else "failed", attempts=notifications.c.attempts + 1,
                last_error=error[:2000], claimed_until=None,
                **({"next_attempt_at": next_attempt_at} if next_attempt_at else {})))

    # --- silences ------------------------------------------------------------------------------
    def add_silence(self, silence, now: datetime):
        """Store a silence (``mute.Silence``); returns it with its creation time."""
        from dataclasses import replace

        silence = replace(silence, created_at=now)
        with self.engine.begin() as con:
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

        with self.engine.begin() as con:
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


def _row(a: Alert) -> dict:
    return {"fingerprint": a.fingerprint, "rule_id": a.rule_id, "entity_key": a.entity_key, "status": str(a.status),
            "severity": a.severity, "first_bucket": a.first_bucket, "last_bucket": a.last_bucket,
            "opened_at": a.opened_at, "updated_at": a.updated_at, "escalation_level": a.escalation_level,
            "escalated_at": a.escalated_at,
            "acknowledged_by": a.acknowledged_by, "acknowledged_at": a.acknowledged_at, "resolved_at": a.resolved_at,
            "detail": json.dumps(a.detail, ensure_ascii=False, default=str), "notified_at": a.notified_at,
            "muted": a.muted}


def _alert(r) -> Alert:
    return Alert(r["fingerprint"], r["rule_id"], r["entity_key"], AlertStatus(r["status"]), r["severity"],
                 _as_utc(r["first_bucket"]), _as_utc(r["last_bucket"]), _as_utc(r["opened_at"]),
                 _as_utc(r["updated_at"]), r["escalation_level"],
                 _as_utc(r["escalated_at"]) if r["escalated_at"] else None, r["acknowledged_by"],
                 _as_utc(r["acknowledged_at"]) if r["acknowledged_at"] else None,
                 _as_utc(r["resolved_at"]) if r["resolved_at"] else None, json.loads(r["detail"] or "{}"),
                 _as_utc(r["notified_at"]) if r["notified_at"] else None, r["muted"])
