"""A compiled statement found fit is remembered on disk, so a check task (a process of its own)
does not parse it again; a refused one is checked again every time."""

from __future__ import annotations

from threshold_operators.engine import compile as compile_module


def test_a_fit_statement_is_remembered_and_a_refused_one_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("STOREFENCE_CACHE_DIR", raising=False)
    calls = []
    real = compile_module._statement_problems
    monkeypatch.setattr(compile_module, "_statement_problems", lambda sql, t: calls.append(sql) or real(sql, t))
    fit, unfit = "SELECT 1 AS x FROM orders", "SELECT read_text('/etc/passwd') AS x"
    for _ in range(2):
        compile_module.statement_problems_of.cache_clear()  # a new process: only the disk remembers
        assert compile_module.statement_problems_of(fit) == ()
        assert compile_module.statement_problems_of(unfit) != ()
    assert calls == [fit, unfit, unfit]
    assert len(list((tmp_path / "storefence-cache" / "statements").glob("*.ok"))) == 1
