"""Rule files are data: hostile rule files (tests/rules/testdata/hostile/, see tests/rules/hostile.py)
try every attack class of issue 11 part 1; lint refuses each at the marked file:line with a reason,
and evaluating them runs nothing, reads nothing, writes nothing, on DuckDB and PostgreSQL:

- the secret file's token appears in no output, the canary file is never written, the orders a
  data-modifying CTE tries to delete keep their rows, the canary port receives no connection;
- with lint bypassed (the engine handed the rules directly), the compiled statement is refused
  before it runs; with that check bypassed too, the evaluation connection itself refuses
  (DuckDB: no external access, read-only, settings locked; PostgreSQL: a READ ONLY transaction).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from tests.rules.hostile import CLASSES, HOSTILE, plant

REPO = Path(__file__).resolve().parents[2]
START, END = datetime(2026, 9, 29, 10, tzinfo=UTC), datetime(2026, 9, 29, 12, tzinfo=UTC)
FIGURES: dict[str, dict] = {}  # warehouse -> counts, printed by the last test


@pytest.fixture
def planted(tmp_path):
    p = plant(tmp_path / "hostile")
    yield p
    p.canary.close()


def _lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "threshold_operators.cli", "lint", str(path)], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "plugins")})


def _refused_lines(planted) -> dict[str, str]:
    """case -> the lint line that refuses it at its marked file:line ('' when none does)."""
    out = _lint(planted.root).stdout + _lint(HOSTILE / "nowhere").stdout
    found = {}
    for case, (path, line) in planted.cases.items():
        found[case] = next((x for x in out.splitlines() if x.startswith(f"{path}:{line}: ")), "")
    return found


def test_lint_refuses_every_hostile_case_at_its_file_and_line_with_a_reason(planted):
    result = _lint(planted.root)
    assert result.returncode == 1
    refused = _refused_lines(planted)
    assert len(refused) >= 40 and {c[0] for c in refused} == set(CLASSES)
    assert [c for c, line in refused.items() if not line] == []
    reasons = {"t_": ("sandbox", "column reference", "has no attribute", "no loops"), "f_": ("not allowed", "only reads",
               "statement", "schema"), "y_": ("column name", "identifiers"), "s_": ("path on the connection",
               "own connection", "not declared"), "p_": ("SQL folder", "alias"), "r_": ("reach nobody",),
               "b_": ("TIMESTAMPTZ",)}
    for case, line in refused.items():
        assert any(r in line for r in reasons[case[:2]]), (case, line)
    assert not planted.leaked(result.stdout, result.stderr)


def _seed_orders(hook) -> int:
    from threshold_operators.warehouse.schema import create_schema, orders

    create_schema(hook.engine)
    rows = [{"order_id": f"o{i}", "shop_id": "s1", "channel": "app", "customer_id": "c", "status": "paid",
             "amount": 10, "currency": "CNY", "created_at": START + timedelta(minutes=7 * i), "paid_at": None,
             "updated_at": START} for i in range(12)]
    with hook.engine.begin() as con:
        con.execute(orders.insert(), rows)
    return len(rows)


def _orders(hook) -> int:
    with hook.engine.connect() as con:
        return con.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar_one()


def _tables(hook) -> set[str]:
    return set(sa.inspect(hook.engine).get_table_names())


def _conn_json(hook) -> str:
    url = hook.sqlalchemy_url
    if hook.is_duckdb:
        return json.dumps({"conn_type": "duckdb", "host": hook.duckdb_path})
    return json.dumps({"conn_type": "postgres", "host": url.host, "port": url.port or 5432, "login": url.username,
                       "password": url.password, "schema": url.database, "extra": {"search_path": hook.search_path}})


def _sql_level_rules(planted, files=("sales", "finance")) -> list[tuple[str, dict, str]]:
    """(rule id, rule as written, metric query) of every rule whose attack is in its SQL, its
    template or its query path (finance: a symbolic link out of the SQL folder; a naive bucket)."""
    out = []
    for name in files:
        doc = yaml.safe_load((planted.rules / f"{name}.yaml").read_text(encoding="utf-8"))
        for r in doc["rules"]:
            out.append((r["id"], r, (planted.sql / r["query"]).read_text(encoding="utf-8")))
    return out


def _engine_path(hook, rid: str, raw: dict, template: str):
    """The engine's own path for a rule the catalogue never validated: compile, then evaluate."""
    from threshold_operators.engine.compile import compile_rule
    from threshold_operators.engine.evaluate import evaluate, warehouse_query
    from threshold_operators.rules.catalogue import LoadedRule
    from threshold_operators.rules.model import Rule

    loaded = LoadedRule(Rule.model_validate(raw), Path("hostile.yaml"), 1, Path(raw["query"]), template, ("orders",))
    compiled = compile_rule(loaded, lambda _: None)  # raises when the statement may not run
    return evaluate(compiled, warehouse_query(hook), START, END, now=END)


def test_evaluating_hostile_rules_runs_nothing_reads_nothing_writes_nothing(planted, warehouse, monkeypatch, capsys):
    from threshold_operators import cli
    from threshold_operators.engine.compile import RuleRefused
    from threshold_operators.rules.sql_template import TemplateProblem

    kind = "duckdb" if warehouse.is_duckdb else "postgres"
    before = _seed_orders(warehouse)
    tables = _tables(warehouse)
    monkeypatch.setenv("STOREFENCE_RULES_DIR", str(planted.rules))
    monkeypatch.setenv("STOREFENCE_SQL_DIR", str(planted.sql))
    monkeypatch.setenv("AIRFLOW_CONN_SF_HOSTILE", _conn_json(warehouse))
    rules = _sql_level_rules(planted)
    ran, texts = [], []
    # 1. `storefence evaluate RULE` with the rules and SQL folders pointed at the hostile files
    for rid, _, _ in rules:
        code = cli.main(["evaluate", rid, "--start", START.isoformat(), "--end", END.isoformat(), "--conn-id", "sf_hostile"])
        out = capsys.readouterr()
        texts += [out.out, out.err]
        if code == 0:
            ran.append(f"cli:{rid}")
        assert code == 2 and "unknown rule" in out.err, (rid, out)
    # 2. lint bypassed: the engine refuses the compiled statement (or the template) before it runs
    # (the attacks in the SQL and templates; a query path is resolved by the catalogue, above)
    for rid, raw, template in _sql_level_rules(planted, ("sales",)):
        try:
            ev = _engine_path(warehouse, rid, raw, template)
            ran.append(f"engine:{rid}")
            texts.append(repr(ev.results))
        except (RuleRefused, TemplateProblem) as exc:
            texts.append(str(exc))
    assert ran == []
    assert not planted.leaked(*texts)
    assert _orders(warehouse) == before and _tables(warehouse) == tables
    FIGURES[kind] = {"tried": len(rules) + len(_sql_level_rules(planted, ("sales",))), "run": len(ran)}


# What each warehouse would run if the checks before it failed: the evaluation connection refuses.
RUNTIME = {"duckdb": ["sales.f_read_text", "sales.f_read_blob", "sales.f_read_csv", "sales.f_glob",
                      "sales.f_select_into", "sales.f_delete_cte"],
           "postgres": ["sales.f_delete_cte", "sales.f_lo_import", "sales.f_select_into", "sales.f_for_update"]}


@pytest.mark.parametrize("in_session", [False, True], ids=["alone", "in-session"])
def test_with_every_check_bypassed_the_evaluation_connection_still_refuses(planted, warehouse, monkeypatch, in_session):
    """Alone, DuckDB's evaluation connection is read-only; in a session (a domain's cycle: one
    database for every connection) it is not, and still refuses each of them."""
    import threshold_operators.engine.compile as compile_module

    kind = "duckdb" if warehouse.is_duckdb else "postgres"
    before = _seed_orders(warehouse)
    tables = _tables(warehouse)
    monkeypatch.setattr(compile_module, "statement_problems_of", lambda sql, scratch=(): ())
    rules = {rid: (raw, t) for rid, raw, t in _sql_level_rules(planted)}
    texts = []
    with warehouse.session() if in_session else nullcontext():
        for rid in RUNTIME[kind]:
            with pytest.raises(Exception) as caught:  # noqa: PT011 - each warehouse words it its own way
                _engine_path(warehouse, rid, *rules[rid])
            texts.append(str(caught.value))
    assert not planted.leaked(*texts)
    assert _orders(warehouse) == before and _tables(warehouse) == tables


@pytest.mark.parametrize("in_session", [False, True], ids=["alone", "in-session"])
def test_the_evaluation_connection_is_locked(warehouse, tmp_path, in_session):
    """DuckDB: no file access, settings final, one SELECT (by DuckDB's parser), read-only or (in a
    session) rolled back; PostgreSQL: a READ ONLY transaction."""
    _seed_orders(warehouse)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET", encoding="utf-8")
    attempts = ["DELETE FROM orders", "CREATE TABLE stolen (x INT)"]
    if warehouse.is_duckdb:
        attempts += [f"SELECT * FROM read_text('{secret}')", "SET enable_external_access = true",
                     "SET lock_configuration = false", f"COPY orders TO '{tmp_path / 'out.csv'}'",
                     f"ATTACH '{tmp_path / 'other.duckdb'}' AS other", "INSTALL httpfs", "LOAD httpfs",
                     "SELECT 1; DELETE FROM orders", "ROLLBACK; DELETE FROM orders", "COMMIT"]
    else:
        attempts += [f"SELECT lo_import('{secret}')", "SET transaction_read_only = off",
                     "UPDATE orders SET status = 'x'"]
    refused = []
    with warehouse.session() if in_session else nullcontext():
        for sql in attempts:
            with warehouse.evaluation_connection() as con:
                assert con.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar_one() == 12
                try:
                    con.execute(sa.text(sql))
                except sa.exc.DBAPIError:
                    refused.append(sql)
        if warehouse.is_duckdb:  # a write inside a SELECT: refused read-only, rolled back in a session
            with warehouse.evaluation_connection() as con:
                cte = "WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d"
                if in_session:
                    assert con.execute(sa.text(cte)).scalar_one() == 12
                else:
                    with pytest.raises(sa.exc.DBAPIError):
                        con.execute(sa.text(cte))
    assert refused == attempts
    assert _orders(warehouse) == 12 and not (tmp_path / "out.csv").exists() and "stolen" not in _tables(warehouse)
    with warehouse.engine.begin() as con:  # the ordinary connection (extract and load) still writes
        con.execute(sa.text("DELETE FROM orders WHERE order_id = 'o0'"))
    assert _orders(warehouse) == 11


def test_an_action_request_never_leaves_its_connections_host(planted):
    import requests

    from tests.alerting.action_endpoint import ActionEndpoint
    from threshold_operators.alerting.actions import ActionRefused, ActionSender, check_conn_id
    from threshold_operators.alerting.channels.base import Message

    # (the rule model refuses these and '//...' too; the sender checks the URL it would call)
    endpoints = [f"@127.0.0.1:{planted.canary.port}/steal", f".localhost:{planted.canary.port}/steal", f":{planted.canary.port}/steal",
                 f"http://127.0.0.1:{planted.canary.port}/steal", "/../../admin"]
    with ActionEndpoint() as api:
        sender = ActionSender(requests.Session(), api.url, "api-key")
        for endpoint in endpoints:
            msg = Message("t", "x", data={"endpoint": endpoint, "body": {"idempotency_key": endpoint}})
            result = sender.send(msg)
            assert not result.ok and not result.retryable and "leaves the connection's host" in result.error, endpoint
        assert sender.send(Message("t", "x", data={"endpoint": "/tasks", "body": {"idempotency_key": "k"}})).ok
        assert [a["path"] for a in api.accepted] == ["/tasks"] and "api-key" not in json.dumps(api.accepted)
    assert planted.canary.connections == 0
    for conn_id in ("storefence_ack", "storefence_state", "storefence_warehouse"):
        with pytest.raises(ActionRefused, match="Storefence's own"):
            ActionSender.from_connection(conn_id)
    with pytest.raises(ActionRefused, match="not declared"):
        check_conn_id("exfil_api", ["ads_api"])


def test_a_redirect_does_not_carry_the_token_elsewhere(planted):
    import requests

    from tests.alerting.receivers import LoopbackReceiver
    from threshold_operators.alerting.actions import ActionSender
    from threshold_operators.alerting.channels.base import Message

    class Redirecting(LoopbackReceiver):
        def answer(self, path, headers, body):
            return 307, {"moved": True}, {"Location": f"http://127.0.0.1:{planted.canary.port}/steal"}

    with Redirecting() as api:
        result = ActionSender(requests.Session(), api.url, "api-key").send(
            Message("t", "x", data={"endpoint": "/tasks", "body": {"idempotency_key": "k"}}))
    assert not result.ok and planted.canary.connections == 0


def test_delivery_builds_no_sender_for_an_undeclared_action_connection(planted):
    from threshold_operators.alerting.delivery import build_senders
    from threshold_operators.alerting.routing import load_routing
    from threshold_operators.rules.model import RuleFile

    routing = load_routing(planted.rules / "routing.yaml")
    rules = RuleFile.model_validate(yaml.safe_load((planted.rules / "traffic.yaml").read_text(encoding="utf-8"))).rules
    senders, problems = build_senders(routing, rules)
    assert "action:exfil_api" not in senders
    assert any("exfil_api" in p and "not declared" in p for p in problems)


def test_staging_paths_stay_below_the_staging_root(tmp_path):
    from threshold_operators.extract.staging import StagingPathError, staging_dir, validations_dir

    root = tmp_path / "staging"
    for run_id in ("..", "../../etc", "a/../../b", "..\\..\\x", ".hidden", "manual__2026-09-29T10:00:00+00:00"):
        path = staging_dir(run_id, "shop_api", "orders", root)
        assert path.resolve().is_relative_to(root.resolve()), run_id
    (root / "r1").mkdir(parents=True)
    (root / "r1" / "shop_api").symlink_to(tmp_path)  # a source folder that leads out
    with pytest.raises(StagingPathError):
        staging_dir("r1", "shop_api", "..", root)
    with pytest.raises(StagingPathError):
        staging_dir("r1", "../..", "orders", root)
    assert validations_dir("..", "shop_api").name == "shop_api"


def test_the_catalogue_cache_lives_under_airflow_home_and_is_re_checked(tmp_path, monkeypatch):
    from threshold_operators.rules import catalogue as cat

    home = tmp_path / "home"
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    monkeypatch.setenv("STOREFENCE_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert cat._cache_dir() is None  # outside AIRFLOW_HOME: no cache on disk
    monkeypatch.delenv("STOREFENCE_CACHE_DIR")
    assert cat._cache_dir() == home / "storefence-cache"
    monkeypatch.delenv("AIRFLOW_HOME")
    assert cat._cache_dir() is None  # no temporary-folder fallback
    monkeypatch.setenv("AIRFLOW_HOME", str(home))

    rdir, sdir = REPO / "tests" / "engine" / "testdata" / "rules", REPO / "tests" / "engine" / "testdata" / "sql"
    cat._CACHE.clear()
    clean = cat.load_catalogue(rdir, sdir)
    [cached] = list((home / "storefence-cache").glob("catalogue-*.json"))
    evil = tmp_path / "evil.sql"
    evil.write_text("SELECT * FROM read_text('/etc/passwd')", encoding="utf-8")
    for tamper in ({"sql_path": str(evil)}, {"sql_sha256": "0" * 64}, {"rule": {"id": "sales.x; DROP"}}):
        doc = json.loads(cached.read_text(encoding="utf-8"))
        doc["rules"][0].update(tamper)
        cached.write_text(json.dumps(doc), encoding="utf-8")
        cat._CACHE.clear()
        again = cat.load_catalogue(rdir, sdir)
        assert {r.id: r.template for r in again.rules.values()} == {r.id: r.template for r in clean.rules.values()}
        assert all(r.sql_path.resolve().is_relative_to(sdir.resolve()) for r in again.rules.values())
    cat._CACHE.clear()


def test_every_shipped_query_passes_the_allow_list():
    from threshold_operators.rules.catalogue import load_catalogue

    for rdir, sdir in ((REPO / "include" / "rules", REPO / "include" / "sql"),
                       (REPO / "tests" / "engine" / "testdata" / "rules", REPO / "tests" / "engine" / "testdata" / "sql")):
        catalogue = load_catalogue(rdir, sdir)
        assert catalogue.all_problems() == []
        shipped = {p.relative_to(sdir).as_posix() for p in sdir.rglob("*.sql")}
        assert shipped <= {r.rule.query for r in catalogue.rules.values()}


def test_hostile_figures(planted):
    """The closing note's figures: cases tried, refused by lint, and run (the target: 0)."""
    refused = _refused_lines(planted)
    tried = len(refused)
    by_class = {CLASSES[p]: sum(1 for c in refused if c[0] == p) for p in CLASSES}
    n_refused = sum(1 for line in refused.values() if line)
    ran = sum(f["run"] for f in FIGURES.values())
    classes = ", ".join(f"{k}: {v}" for k, v in by_class.items())
    evaluated = ", ".join(f"{k}: {v['tried']} evaluations" for k, v in sorted(FIGURES.items())) or "none"
    print(f"\nhostile rule cases tried: {tried} ({classes}); refused by lint: {n_refused}; "
          f"evaluated (CLI and engine, lint bypassed) on {evaluated}: run {ran}")
    assert n_refused == tried and ran == 0
