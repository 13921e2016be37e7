"""``storefence up`` and ``storefence down``: the pack on Airflow's own processes, in the background.

``up`` (what ``make up`` runs), each step idempotent:

1. the metadata DB (``metadata_db.py``: PostgreSQL on 127.0.0.1:5432 when it answers, else
   SQLite), the API server's port (8080, or a free one) and the other settings, written to
   ``airflow.cfg`` (``stack.py``); ``storefence airflow-setup`` (migrate, pool, warehouse
   connection);
2. unless ``--no-shop``: ``storefence live-shop prepare --speed N`` (the platform, its live
   incident, the warehouse's history), then ``storefence live-shop serve`` in the background;
3. the local inbox (``storefence inbox serve``) in the background;
4. api-server, scheduler, dag-processor; wait until the API server says they are healthy;
5. the connections, in the metadata DB: the shop API's three to the live shop, every channel and
   action to the inbox, ``storefence_ack`` to the API server. A connection is written only when
   it is missing or was written by ``up`` before (its description says so): one the user made
   is never touched, which is how a deployment is pointed at real systems (with ``--no-shop``);
6. wait until every DAG file is parsed, unpause the ``storefence_*`` DAGs, and say where
   everything is.

A second ``up`` while it runs says so (and starts again any process that stopped). When a fresh
``up`` fails (or is interrupted) midway, it stops what it had started and says why. ``down``
stops exactly the processes ``up`` recorded in ``$AIRFLOW_HOME/storefence-up.json``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from threshold_operators.deploy import airflow_cfg, metadata_db
from threshold_operators.deploy.stack import ADMIN, Stack, StackConfig, free_port

MARK = "storefence up"  # the description of the connections up writes (and may rewrite)
SHOP_CONNECTIONS = ("shop_api_default", "ads_api_default", "reviews_api_default")
LIVE_SHOP_FILE = "storefence-live-shop.json"
REPO = Path(__file__).resolve().parents[3]


def folders() -> tuple[Path, Path]:
    """(dags folder, plugins folder): the environment's (the Makefile exports them), else the repo's."""
    dags = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER") or REPO / "dags"
    plugins = os.environ.get("AIRFLOW__CORE__PLUGINS_FOLDER") or REPO / "plugins"
    return Path(dags), Path(plugins)


def _settings(home: Path, previous: dict, args) -> dict:
    """The deployment's settings: those of the running deployment when there is one (its
    processes listen there), else chosen now."""
    if previous:
        return previous
    configured = airflow_cfg.read_options(home / "airflow.cfg").get(("database", "sql_alchemy_conn"))
    db = metadata_db.choose(home, configured, args.metadata_db)
    return {
        "metadata_db": db.url, "metadata_db_reason": db.reason, "metadata_db_kind": db.kind,
        "api_port": free_port(preferred=args.port), "log_server_port": free_port("0.0.0.0", preferred=8793),
        "shop": not args.no_shop, "speed": args.speed,
        "shop_port": free_port(), "inbox_port": free_port(), "smtp_port": free_port(),
    }


def _any_alive(home: Path, state: dict) -> bool:
    return bool(state.get("settings")) and any(stack_for(home, state["settings"]).running().values())


def stack_for(home: Path, settings: dict) -> Stack:
    dags, plugins = folders()
    return Stack(StackConfig(home=home, dags_folder=dags, plugins_folder=plugins, metadata_db=settings["metadata_db"],
                             api_port=settings["api_port"], log_server_port=settings["log_server_port"]))


def _wait_port(port: int, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited; the end of {proc.log}:\n{proc.log_tail()}")
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{proc.name} does not answer on port {port} after {timeout:.0f} s:\n{proc.log_tail()}")


def _stream(stack: Stack, argv: list[str]) -> None:
    """Run a set-up command in the deployment's environment, its output going to the user."""
    done = subprocess.run(argv, env=stack.environment(), stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[2:])} exited with {done.returncode}")


def dag_files(dags_folder: Path) -> list[str]:
    return sorted(p.name for p in dags_folder.glob("*.py") if not p.name.startswith("_"))


def wait_parsed(client, dags_folder: Path, timeout: float = 240) -> list[dict]:
    """Wait until each DAG file of the folder has given the API at least one DAG; the DAGs.
    An import error fails at once with its message."""
    from threshold_operators.deploy.rest import RunFailed

    wanted = set(dag_files(dags_folder))
    deadline = time.monotonic() + timeout
    while True:
        dags = client.dags()
        seen = {Path(d.get("fileloc") or "").name for d in dags}
        if wanted <= seen:
            return dags
        errors = client.import_errors()
        if errors:
            raise RunFailed("DAG files failed to import:\n" + "\n".join(f"{e['filename']}:\n{e['stack_trace']}" for e in errors))
        if time.monotonic() > deadline:
            raise TimeoutError(f"DAG files not parsed after {timeout:.0f} s: {', '.join(sorted(wanted - seen))}")
        time.sleep(2)


def write_connections(client, wanted: dict[str, dict]) -> dict[str, str]:
    """Write each connection unless the user has one of that id; conn_id -> what was done."""
    done = {}
    for conn_id, fields in wanted.items():
        current = client.connection(conn_id)
        if current is not None and current.get("description") != MARK:
            done[conn_id] = "kept (yours)"
            continue
        extra = fields.get("extra")
        body = {"connection_id": conn_id, "conn_type": fields["conn_type"], "host": fields.get("host"),
                "port": fields.get("port"), "login": fields.get("login"), "password": fields.get("password"),
                "schema": fields.get("schema"), "extra": json.dumps(extra) if isinstance(extra, dict) else extra,
                "description": MARK}
        client.put_connection(body)
        done[conn_id] = "created" if current is None else "updated"
    return done


def _connections(stack: Stack, settings: dict, shop_url: str | None) -> dict[str, dict]:
    from threshold_operators.alerting.local_inbox import inbox_connections
    from threshold_operators.alerting.routing import load_routing
    from threshold_operators.rules.catalogue import load_catalogue

    rules = [r.rule for r in load_catalogue().rules.values()]
    out = inbox_connections(f"http://127.0.0.1:{settings['inbox_port']}", settings["smtp_port"], load_routing(), rules)
    out["storefence_ack"] = {"conn_type": "http", "host": stack.config.api_url, "password": settings["ack_secret"]}
    if shop_url:
        for conn_id in SHOP_CONNECTIONS:
            out[conn_id] = {"conn_type": "http", "host": shop_url}
    return out


def _shop_url(home: Path, port: int) -> str:
    try:
        return json.loads((home / LIVE_SHOP_FILE).read_text(encoding="utf-8"))["url"]
    except (FileNotFoundError, KeyError, ValueError):
        return f"http://127.0.0.1:{port}"


def up(home: Path, args, say=print) -> int:
    import secrets

    t0 = time.monotonic()
    previous = Stack.read_state(home)
    settings = _settings(home, previous.get("settings", {}) if _any_alive(home, previous) else {}, args)
    settings.setdefault("ack_secret", secrets.token_urlsafe(24))
    stack = stack_for(home, settings)
    alive = stack.running()
    if alive and all(alive.values()):
        say(f"Already running (started {stack.state.get('started_at', '?')}); nothing to do.")
        _print_where(stack, settings, say)
        return 0
    if any(alive.values()):
        say("Some processes of the deployment had stopped: " + ", ".join(n for n, a in alive.items() if not a)
            + "; starting them again.")
    elif alive:
        say("The last `storefence up` was not stopped with `storefence down`, and nothing of it runs: starting afresh.")
        stack.processes, stack.state = {}, {}
    fresh = not any(alive.values())
    try:
        return _start(stack, home, settings, args, t0, say)
    except BaseException as exc:
        if not fresh:
            raise
        say(f"storefence up failed: {exc}" if isinstance(exc, Exception) else "storefence up interrupted")
        for name, what in stack.stop(timeout=15).items():
            say(f"  {name:<14} {what}")
        if not isinstance(exc, Exception):
            raise
        say(f"Stopped what it had started; the logs stay in {home / 'logs' / 'storefence-up'}.")
        return 1


def _start(stack: Stack, home: Path, settings: dict, args, t0: float, say) -> int:
    from threshold_operators.deploy.rest import AirflowClient

    say(f"Airflow home {home}")
    say(f"Metadata DB: {metadata_db.MetadataDb(settings['metadata_db'], settings['metadata_db_reason']).describe()}")
    password = stack.configure()
    stack.save_state(settings=settings, started_at=stack.state.get("started_at") or datetime.now(UTC).isoformat(timespec="seconds"))
    say(stack.run(*stack.storefence_argv("airflow-setup")).strip())
    shop_url = None
    if settings["shop"]:
        if not stack.processes.get("live-shop") or not stack.processes["live-shop"].alive():
            say("Preparing the live shop ...")
            speed = ["--speed", f"{settings['speed']:g}"] if settings.get("speed") else []
            _stream(stack, stack.storefence_argv("live-shop", "prepare", *speed))
        proc, _ = stack.launch("live-shop", stack.storefence_argv("live-shop", "serve", "--port", str(settings["shop_port"])))
        _wait_port(settings["shop_port"], proc)
        shop_url = _shop_url(home, settings["shop_port"])
    proc, _ = stack.launch("inbox", stack.storefence_argv("inbox", "serve", "--port", str(settings["inbox_port"]),
                                                          "--smtp-port", str(settings["smtp_port"])))
    _wait_port(settings["inbox_port"], proc)
    say(f"Starting {', '.join(stack.config.components)} (logs: {home / 'logs' / 'storefence-up'}) ...")
    stack.start_components()
    stack.wait_healthy(timeout=args.timeout)
    client = AirflowClient(stack.config.api_url, ADMIN, password)
    done = write_connections(client, _connections(stack, settings, shop_url))
    kept = sorted(c for c, what in done.items() if what.startswith("kept"))
    say(f"Connections: {sum(1 for w in done.values() if not w.startswith('kept'))} written by storefence up"
        + (f"; kept yours: {', '.join(kept)}" if kept else ""))
    dags = wait_parsed(client, stack.config.dags_folder, timeout=args.timeout)
    paused = [d["dag_id"] for d in dags if d["dag_id"].startswith("storefence_") and d.get("is_paused")]
    for dag_id in paused:
        client.unpause(dag_id)
    say(f"DAGs: {sum(1 for d in dags if d['dag_id'].startswith('storefence_'))} parsed, {len(paused)} unpaused")
    stack.save_state(settings=settings, api_url=stack.config.api_url, shop_url=shop_url)
    say(f"Up in {time.monotonic() - t0:.0f} s.")
    _print_where(stack, settings, say)
    return 0


def _print_where(stack: Stack, settings: dict, say) -> None:
    home = stack.home
    say("")
    say(f"  Airflow UI   {stack.config.api_url}   user {ADMIN}, password {stack.admin_password()}")
    say(f"               (the password is in {home / 'simple_auth_manager_passwords.json.generated'})")
    if settings.get("shop"):
        say(f"  Live shop    {stack.state.get('shop_url') or _shop_url(home, settings['shop_port'])}   "
            f"(its clock and incident: {home / LIVE_SHOP_FILE})")
    say(f"  Inbox        {home / 'inbox'}   `storefence inbox tail -f` prints each message as it arrives")
    say(f"  Logs         {home / 'logs' / 'storefence-up'}/<component>.log; task logs in the UI")
    say("  Stop         make down   (or storefence down)")


def down(home: Path, say=print) -> int:
    state = Stack.read_state(home)
    if not state.get("processes"):
        say(f"Nothing started by storefence up in {home}.")
        return 0
    stack = stack_for(home, state["settings"])
    for name, what in stack.stop().items():
        say(f"  {name:<14} {what}")
    say(f"Stopped what storefence up started in {home}.")
    return 0


def cmd_up(args) -> int:
    from threshold_operators.cli import airflow_home

    return up(airflow_home(), args)


def cmd_down(args) -> int:
    from threshold_operators.cli import airflow_home

    return down(airflow_home())


def cmd_inbox(args) -> int:
    from threshold_operators.cli import airflow_home
    from threshold_operators.deploy import inbox

    if args.action == "serve":
        return inbox.serve(airflow_home(), args.port, args.smtp_port)
    return inbox.tail(airflow_home(), follow=args.follow, last=args.last)


def add_parsers(sub) -> None:
    p = sub.add_parser("up", help="run the pack on Airflow's scheduler in the background, with a live shop and a local inbox")
    p.add_argument("--speed", type=float, help="the live shop's clock: N data seconds a second until it reaches real "
                                                "time (default: storefence live-shop prepare's)")
    p.add_argument("--no-shop", action="store_true", help="no simulated shop: the HTTP connections are yours")
    p.add_argument("--port", type=int, default=8080, help="the API server's port (default 8080, or a free one if taken)")
    p.add_argument("--metadata-db", metavar="URL|postgres|sqlite",
                   help="default: PostgreSQL on 127.0.0.1:5432 when it answers, else SQLite")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for Airflow to be healthy and parse the DAGs")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop everything storefence up started")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("inbox", help="the local inbox of storefence up: serve it, or print what it received")
    inbox = p.add_subparsers(dest="action", required=True)
    q = inbox.add_parser("serve", help="run the inbox in the foreground (storefence up runs it in the background)")
    q.add_argument("--port", type=int, default=0)
    q.add_argument("--smtp-port", type=int, default=0)
    q = inbox.add_parser("tail", help="the last messages received, one line each")
    q.add_argument("-f", "--follow", action="store_true", help="then each new one as it arrives")
    q.add_argument("-n", "--last", type=int, default=20)
    p.set_defaults(func=cmd_inbox)

