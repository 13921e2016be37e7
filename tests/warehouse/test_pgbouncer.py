"""The warehouse and the state store behind a real PgBouncer in transaction pooling.

Behind transaction pooling, consecutive transactions of one client run on whichever server
connection is free: a session ``SET`` of one client leaks into another's transactions, and
PgBouncer refuses the ``options`` startup parameter outright. So every setting the hook needs
(UTC, the schema, read-only and no JIT for rules) is a ``SET LOCAL`` at the start of each
transaction. The pooler here has ONE server connection for every client: two hooks on two
schemas take turns on it, and each must see only its own tables.

PgBouncer comes from Debian (``apt-get install -y pgbouncer``, which ``make test`` runs as
root); under ``CI=true`` a missing binary fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN_URL, fresh_schemas

pytestmark = [pytest.mark.postgres]

PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)


@pytest.fixture
def pgbouncer(pg_server):
    """A PgBouncer on a free loopback port in front of database ``test``: transaction pooling,
    one server connection. Yields its SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    from threshold_operators.deploy.stack import free_port

    if PGBOUNCER is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pgbouncer is not installed (make test installs it as root: apt-get install -y pgbouncer)")
        pytest.skip("pgbouncer is not installed")
    target = make_url(PG_ADMIN_URL)
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="sf-pgbouncer-"))
    (folder / "users.txt").write_text(f'"{target.username}" ""\n')
    (folder / "pgbouncer.ini").write_text(f"""[databases]
{target.database} = host={target.host} port={target.port or 5432} dbname={target.database}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder / 'users.txt'}
pool_mode = transaction
default_pool_size = 1
max_client_conn = 50
logfile = {folder / 'pgbouncer.log'}
pidfile = {folder / 'pgbouncer.pid'}
""")
    argv = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer will not run as root
        shutil.chown(folder, "postgres")
        for f in folder.iterdir():
            shutil.chown(f, "postgres")
        argv[1:1] = ["-u", "postgres"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = target.set(port=port).render_as_string(hide_password=False)
    try:
        import psycopg2

        deadline = time.monotonic() + 20
        while True:
            try:
                psycopg2.connect(host="127.0.0.1", port=port, user=target.username, dbname=target.database).close()
                break
            except psycopg2.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (folder / "pgbouncer.log").read_text() if (folder / "pgbouncer.log").exists() else ""
                    raise RuntimeError(f"pgbouncer did not start: {proc.stdout.read().decode()} {log}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def two_schemas(pg_server):
    with fresh_schemas(pg_server, "sf_bouncer_a", "sf_bouncer_b") as names:
        yield names


def test_pgbouncer_refuses_the_startup_options_the_hook_no_longer_sends(pgbouncer):
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(pgbouncer)
    with pytest.raises(psycopg2.OperationalError, match="unsupported startup parameter"):
        psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database,
                         options="-c timezone=UTC")


def test_two_schemas_share_one_server_connection_and_never_see_each_other(pgbouncer, two_schemas):
    from sqlalchemy import text

    from threshold_operators.warehouse.bulk_load import bulk_loader
    from threshold_operators.warehouse.hook import WarehouseHook
    from threshold_operators.warehouse.schema import arrow_table, ensure_schema

    hooks = [WarehouseHook(url=pgbouncer, search_path=s) for s in two_schemas]
    for hook in hooks:
        assert "orders" in ensure_schema(hook.engine)  # each schema gets its own tables
    for n, hook in enumerate(hooks, start=1):
        with bulk_loader(hook) as loader:
            loader.upsert("shops", arrow_table("shops", {
                "shop_id": [f"shop-{n}-{i}" for i in range(n)], "name": ["s"] * n, "timezone": ["Asia/Shanghai"] * n,
                "currency": ["CNY"] * n}))
    for _ in range(3):  # alternate: the one server connection goes back and forth
        for n, hook in enumerate(hooks, start=1):
            with hook.engine.connect() as con:
                assert con.execute(text("SELECT count(*) FROM shops")).scalar() == n
                assert con.execute(text("SHOW timezone")).scalar() == "UTC"
            with hook.evaluation_connection() as con:
                assert con.execute(text("SELECT min(shop_id) FROM shops")).scalar() == f"shop-{n}-0"
                assert con.execute(text("SHOW transaction_read_only")).scalar() == "on"
                assert con.execute(text("SHOW jit")).scalar() == "off"
                assert con.execute(text("SHOW search_path")).scalar() == two_schemas[n - 1]
    with hooks[0].engine.connect() as con:  # a plain transaction after the evaluation's: writable again
        assert con.execute(text("SHOW transaction_read_only")).scalar() == "off"
    for hook in hooks:
        hook.engine.dispose()
        hook.evaluation_engine.dispose()


def test_a_bulk_load_committed_in_batches_stays_in_its_schema(pgbouncer, two_schemas):
    """The simulator commits every flush: the transaction after a commit keeps the schema
    (SET LOCAL ends with its transaction, so it is set again), never the server's default."""
    from sqlalchemy import text

    from threshold_operators.warehouse.bulk_load import bulk_loader
    from threshold_operators.warehouse.hook import WarehouseHook
    from threshold_operators.warehouse.schema import arrow_table, ensure_schema

    hooks = [WarehouseHook(url=pgbouncer, search_path=s) for s in two_schemas]
    for hook in hooks:
        ensure_schema(hook.engine)
    for hook in hooks:
        with bulk_loader(hook) as loader:
            for batch in range(3):
                ids = [f"shop-{batch}-{i}" for i in range(2)]
                loader.append("shops", arrow_table("shops", {
                    "shop_id": ids, "name": ["s"] * 2, "timezone": ["Asia/Shanghai"] * 2, "currency": ["CNY"] * 2}))
                loader.commit()
                if batch == 1:
                    loader.rollback()
    for hook in hooks:
        with hook.engine.connect() as con:
            assert con.execute(text("SELECT count(*) FROM shops")).scalar() == 6
        hook.engine.dispose()


def test_the_state_store_behind_pgbouncer_keeps_its_schema(pgbouncer, two_schemas):
    from sqlalchemy import text

    from threshold_operators.alerting.store import StateStore

    stores = [StateStore(url=pgbouncer, schema=s) for s in two_schemas]
    for store in stores:
        store.create()
    with stores[0].transaction() as con:
        con.execute(text("INSERT INTO silences (id, rule, entity, author, reason, starts_at, ends_at, created_at) "
                         "VALUES ('s1', '*', '*', 'me', 'test', now(), now(), now())"))
    with stores[1].engine.connect() as con:
        assert con.execute(text("SELECT count(*) FROM silences")).scalar() == 0
    with stores[0].engine.connect() as con:
        assert con.execute(text("SELECT count(*) FROM silences")).scalar() == 1
    for store in stores:
        store.engine.dispose()
