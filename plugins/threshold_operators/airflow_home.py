"""What ``storefence airflow-setup`` puts in an Airflow home, idempotently.

- **The metadata DB**, migrated.
- **The warehouse connection** ``storefence_warehouse``, when there is none: the embedded DuckDB
  file, stored as the relative path ``storefence.duckdb``, which ``WarehouseHook`` resolves
  against ``$AIRFLOW_HOME``: a copied Airflow home writes its own warehouse. A connection an
  earlier set-up stored with an absolute path to an Airflow home's default file (its
  description says the set-up made it; an ``airflow.cfg`` sits beside the file) is re-pointed
  at this home's; any other connection is the user's and is kept.
- **The pool** ``storefence_warehouse``, sized for the warehouse the connection names: 1 slot on
  DuckDB (one process may have the file open at a time), ``SERVER_POOL_SLOTS`` on a server
  database (PostgreSQL or another SQLAlchemy URL). Running the set-up again re-sizes it when
  the connection changed kind, unless the slots were set by hand: ``--pool-slots N`` (then
  always N), ``airflow pools set`` or the UI (a count other than the one the set-up wrote, which
  its description records, is kept).
- **Strong secrets** in ``airflow.cfg``: Airflow writes a 16-byte ``[api_auth] jwt_secret``
  and ``[api] secret_key`` into a new home, shorter than HS512 (Airflow's algorithm for a shared
  secret) wants, so PyJWT warns "shorter than recommended" on every token. A value shorter than
  ``MIN_SECRET_BYTES`` is replaced once by ``MIN_SECRET_BYTES`` random bytes (URL-safe); a
  strong one is kept, so restarting the set-up never invalidates running components' tokens.
  The file stays where Airflow reads it, so the venv's ``airflow`` commands, the api-server and
  the scheduler started with this home share the secret. An ``AIRFLOW__API_AUTH__JWT_SECRET``
  variable still wins over the file.

The decisions (slots, secrets) are pure functions of their inputs; airflow.cfg is edited in place
by ``deploy.airflow_cfg`` (comments kept); ``set_up`` does
the I/O.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from threshold_operators.warehouse import WAREHOUSE_CONN_ID, WAREHOUSE_POOL

DEFAULT_WAREHOUSE_FILE = "storefence.duckdb"  # relative: under $AIRFLOW_HOME, wherever the home is
DEFAULT_CONN_DESCRIPTION = "Storefence warehouse (embedded DuckDB default)"
SERVER_POOL_SLOTS = 8  # warehouse tasks at once on a server database: a few per core of a small machine
MIN_SECRET_BYTES = 64  # HS512's key size (RFC 7518 3.2): what PyJWT checks
SECRETS = (("api_auth", "jwt_secret"), ("api", "secret_key"))
_SET_BY_SETUP = re.compile(r"storefence airflow-setup: (\d+) slots? for (\w+)")


@dataclass(frozen=True)
class PoolPlan:
    slots: int
    description: str
    note: str  # what was decided and why, for the set-up's output


def pool_slots_for(dialect: str) -> int:
    """Warehouse tasks that may run at once: DuckDB allows one process on its file."""
    return 1 if dialect == "duckdb" else SERVER_POOL_SLOTS


def plan_pool(dialect: str, requested: int | None, existing: tuple[int, str | None] | None) -> PoolPlan:
    """The pool's slots and description. ``existing``: (slots, description) of the pool, if any.

    ``requested`` (``--pool-slots``) wins; otherwise a pool whose slots someone set by hand (not
    the count the set-up recorded in its description) is kept; otherwise the warehouse decides."""
    if requested is not None:
        extra = " (DuckDB: tasks beyond one wait for the file's lock)" if dialect == "duckdb" and requested > 1 else ""
        return PoolPlan(requested, f"Storefence warehouse tasks; set with storefence airflow-setup --pool-slots "
                                   f"{requested}", f"{requested} slot(s), as asked{extra}")
    if existing is not None:
        slots, description = existing
        mark = _SET_BY_SETUP.search(description or "")
        if mark is None or int(mark.group(1)) != slots:
            return PoolPlan(slots, description or "", f"{slots} slot(s), kept (set by hand)")
    slots = pool_slots_for(dialect)
    why = "one process at a time" if dialect == "duckdb" else "a server database"
    return PoolPlan(slots, f"Storefence warehouse tasks. storefence airflow-setup: {slots} slot{'s' * (slots > 1)} "
                           f"for {dialect} ({why}); change it by hand to keep your own count",
                    f"{slots} slot(s) for {dialect} ({why})")


def stale_default_path(host: str | None, description: str | None, home: Path) -> bool:
    """Whether a warehouse connection's DuckDB path is an earlier set-up's absolute path to an
    Airflow home's default file (this home's, or the one this home was copied from)."""
    if not host or not os.path.isabs(host) or description != DEFAULT_CONN_DESCRIPTION:
        return False
    path = Path(host)
    return path.name == DEFAULT_WAREHOUSE_FILE and (path.parent == home or (path.parent / "airflow.cfg").exists())


# --- airflow.cfg (edited in place by deploy.airflow_cfg) ------------------------------------------
def weak_secrets(existing: dict[tuple[str, str], str], generate: Callable[[], str] | None = None
                 ) -> dict[tuple[str, str], str]:
    """The secrets to write: a new random one for each missing or shorter than MIN_SECRET_BYTES
    (``existing``: the file's options, ``deploy.airflow_cfg.read_options``). Pure."""
    generate = generate or (lambda: secrets.token_urlsafe(MIN_SECRET_BYTES))
    return {key: generate() for key in SECRETS if len(existing.get(key, "").encode()) < MIN_SECRET_BYTES}


def write_strong_secrets(config_path: Path) -> list[str]:
    """Strengthen the secrets of the airflow.cfg at ``config_path``; the options replaced."""
    from threshold_operators.deploy import airflow_cfg

    new = weak_secrets(airflow_cfg.read_options(config_path))
    if new:
        airflow_cfg.update(config_path, new)
    return [f"[{section}] {key}" for section, key in new]


# --- the set-up ----------------------------------------------------------------------------------
def set_up(home: Path, pool_slots: int | None = None) -> list[str]:
    """Migrate, connection, pool, secrets; one line of report per step."""
    from airflow.configuration import AIRFLOW_CONFIG, write_default_airflow_configuration_if_needed
    from airflow.models.connection import Connection
    from airflow.models.pool import Pool
    from airflow.utils.db import upgradedb
    from airflow.utils.session import create_session

    from threshold_operators.warehouse.hook import WarehouseConfigError, WarehouseHook

    home.mkdir(parents=True, exist_ok=True)
    write_default_airflow_configuration_if_needed()  # as the `airflow` command does first
    report = [f"Airflow home {home}: metadata DB migrated"]
    upgradedb()
    from threshold_operators.executor import remote_executors

    remote = remote_executors()
    with create_session() as session:
        conn = session.query(Connection).filter(Connection.conn_id == WAREHOUSE_CONN_ID).first()
        if conn is None and _defined_elsewhere(WAREHOUSE_CONN_ID):
            report.append(f"connection '{WAREHOUSE_CONN_ID}' kept (an environment variable or a secrets backend)")
        elif conn is None and remote:  # the embedded default would be a file per worker
            report.append(f"connection '{WAREHOUSE_CONN_ID}' not created: under {', '.join(remote)} the warehouse "
                          f"must be a server every worker reaches (PostgreSQL); add it, then run this again "
                          f"(docs/deploy.md, 'Scale-out')")
        elif conn is None:
            session.add(Connection(conn_id=WAREHOUSE_CONN_ID, conn_type="duckdb", host=DEFAULT_WAREHOUSE_FILE,
                                   description=DEFAULT_CONN_DESCRIPTION))
            report.append(f"connection '{WAREHOUSE_CONN_ID}' created (DuckDB {DEFAULT_WAREHOUSE_FILE}, "
                          f"relative to $AIRFLOW_HOME: {home / DEFAULT_WAREHOUSE_FILE})")
        elif (conn.conn_type or "").lower() == "duckdb" and stale_default_path(conn.host, conn.description, home):
            report.append(f"connection '{WAREHOUSE_CONN_ID}' kept, its path {conn.host} made relative "
                          f"({DEFAULT_WAREHOUSE_FILE}: {home / DEFAULT_WAREHOUSE_FILE})")
            conn.host = DEFAULT_WAREHOUSE_FILE
        else:
            report.append(f"connection '{WAREHOUSE_CONN_ID}' kept")
    report += set_up_stores(remote)
    try:
        dialect = WarehouseHook(warehouse_conn_id=WAREHOUSE_CONN_ID).dialect_name  # env variable or metadata DB
    except WarehouseConfigError:  # not defined yet (a remote executor's deployment): sized for a server
        dialect = "postgresql"
    with create_session() as session:
        pool = session.query(Pool).filter(Pool.pool == WAREHOUSE_POOL).first()
        plan = plan_pool(dialect, pool_slots, (pool.slots, pool.description) if pool is not None else None)
        Pool.create_or_update_pool(WAREHOUSE_POOL, plan.slots, plan.description, include_deferred=False,
                                   session=session)
    report.append(f"pool '{WAREHOUSE_POOL}': {plan.note}")
    changed = write_strong_secrets(Path(AIRFLOW_CONFIG))
    report.append(f"{AIRFLOW_CONFIG}: " + (f"new random {', '.join(changed)} ({MIN_SECRET_BYTES} bytes)" if changed
                                           else "secrets kept"))
    return report


def set_up_stores(remote: tuple[str, ...]) -> list[str]:
    """The warehouse's schema and the state store's tables, created once here (the deployment's
    migration step; tasks then only read their version, ``schema_once``). Under a remote executor
    a per-host file (DuckDB, SQLite) is refused: ``PerHostStorageError``, which names the
    connection and what to set."""
    from threshold_operators.alerting.store import STATE_CONN_ID, StateStore
    from threshold_operators.warehouse.hook import WarehouseConfigError, WarehouseHook
    from threshold_operators.warehouse.schema import create_schema

    report = []
    hook = WarehouseHook(warehouse_conn_id=WAREHOUSE_CONN_ID)
    try:
        created = create_schema(hook.engine)
        report.append(f"warehouse {hook.describe()}: schema {'created: ' + ', '.join(created) if created else 'complete'}")
    except WarehouseConfigError as exc:
        if not remote:
            raise
        report.append(f"warehouse: {exc}")
    finally:
        if "engine" in hook.__dict__:
            hook.engine.dispose()
    store = StateStore()
    store.create(force=True)
    report.append(f"state store '{STATE_CONN_ID}' {store.engine.url.render_as_string(hide_password=True)}: tables complete")
    store.engine.dispose()
    return report


def _defined_elsewhere(conn_id: str) -> bool:
    """Whether ``conn_id`` comes from an ``AIRFLOW_CONN_*`` variable or a secrets backend."""
    from airflow.sdk import Connection

    try:
        Connection.get(conn_id)
        return True
    except Exception:  # noqa: BLE001 - not found there (the metadata DB is asked separately)
        return False
