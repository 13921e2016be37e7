"""The rule catalogue: every ``include/rules/<domain>.yaml`` with its metric queries, validated.

``load_catalogue()`` reads the rule files and their SQL, and collects every problem of every
file at once, each as ``file:line: field: message`` (``storefence lint`` prints them; a DAG
file raises them, so a broken rule file is an import error of its own domain's DAG only):

- the YAML against the rule model (unknown fields, bad thresholds, wrong types);
- rule ids: in the file's domain, defined once across the catalogue;
- the SQL (``rules.sql_check``): renders, parses in each warehouse dialect, is one SELECT,
  reads only warehouse tables and columns, returns the entity keys, ``bucket`` and the metrics;
- references: a compound rule's ``rule:`` names an existing rule of the same grain whose
  entity keys are among its own.

Read at DAG-parse time: PyYAML, pydantic, Jinja and sqlglot, local files only; the result is
cached per process until a file changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from threshold_operators import located_yaml
from threshold_operators.bundle import PACKAGE_INCLUDE, include_dir
from threshold_operators.rules.model import DOMAINS, IDENTIFIER, Rule, RuleFile

INCLUDE = PACKAGE_INCLUDE
RULES_DIR = INCLUDE / "rules"
SQL_DIR = INCLUDE / "sql"
DIALECTS = ("duckdb", "postgres")


def rules_dir() -> Path:
    """``include/rules`` of the DAG's bundle (``bundle``), or ``$STOREFENCE_RULES_DIR``."""
    return Path(os.environ.get("STOREFENCE_RULES_DIR") or include_dir() / "rules")


def sql_dir() -> Path:
    return Path(os.environ.get("STOREFENCE_SQL_DIR") or include_dir() / "sql")


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path``, with every symbolic link resolved, is inside ``folder``."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):  # a symbolic-link loop
        return False


@dataclass(frozen=True)
class LoadedRule:
    rule: Rule
    file: Path  # the rule file
    line: int  # line of the rule's id
    sql_path: Path
    template: str  # the metric query, unrendered
    tables: tuple[str, ...]  # warehouse tables the query reads
    field_lines: dict = field(default_factory=dict, compare=False, repr=False)  # (field, ...) -> line

    def line_of(self, *loc) -> int:
        return located_yaml.line_of(self.field_lines, tuple(loc)) or self.line

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def current_state(self) -> bool:
        """A metric of the state at the window's end (stock, parcels in transit), not a series
        over the window's buckets: one bucket per cycle, so it is evaluated hour by hour. A rule
        replayed on a metric series (``analysis.series`` reads the table ``series``) is a series."""
        return "in_window(" not in self.template and self.tables != ("series",)


@dataclass
class Catalogue:
    rules: dict[str, LoadedRule] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)  # domain -> problems

    def domain(self, domain: str) -> list[LoadedRule]:
        return [r for r in self.rules.values() if r.rule.domain == domain]

    def all_problems(self) -> list[str]:
        return [p for d in sorted(self.problems) for p in self.problems[d]]

    def get(self, rule_id: str) -> LoadedRule:
        return self.rules[rule_id]


def _rule_lines(lines: dict[tuple, int], i: int) -> dict[tuple, int]:
    return {k[2:]: v for k, v in lines.items() if k[:2] == ("rules", i)}


_SQL_CHECKS: dict[tuple, tuple] = {}


def _load_file(path: Path, domain: str, sqls: Path, catalogue: Catalogue, dialects) -> None:
    from threshold_operators.engine.windows import scan_range_count
    from threshold_operators.rules.sql_check import check_query

    problems = catalogue.problems.setdefault(domain, [])
    try:
        parsed: RuleFile = located_yaml.validate(RuleFile, path)
    except located_yaml.ConfigFileError as exc:
        problems.extend(exc.problems)
        return
    _, lines = located_yaml.load(path)
    if parsed.domain != domain:
        problems.append(f"{path}:{lines.get(('domain',), 1)}: domain: {parsed.domain!r} in a file named {path.name}")
    for i, rule in enumerate(parsed.rules):
        rl = _rule_lines(lines, i)
        where = f"{path}:{rl.get(('id',), 0)}"
        if rule.domain != domain:
            problems.append(f"{where}: rules.{i}.id: {rule.id!r} is not in domain {domain!r}")
            continue
        if rule.id in catalogue.rules:
            first = catalogue.rules[rule.id]
            problems.append(f"{where}: rules.{i}.id: {rule.id!r} is already defined at {first.file}:{first.line}")
            continue
        sql_path = sqls / rule.query
        if not sql_path.is_file():
            problems.append(f"{path}:{rl.get(('query',), 0)}: rules.{i}.query: {rule.query!r} not found in {sqls}")
            continue
        if not inside(sql_path, sqls):
            problems.append(f"{path}:{rl.get(('query',), 0)}: rules.{i}.query: {rule.query!r} resolves outside the "
                            f"SQL folder {sqls} (a symbolic link?); a metric query lives in the SQL folder")
            continue
        template = sql_path.read_text(encoding="utf-8")
        # Rules sharing a query (variants, generated rules) need the SQL checked once.
        memo_key = (str(sql_path), template, rule.entity, tuple(rule.metrics), tuple(rule.attributes), tuple(sorted(rule.params.items())),
                    scan_range_count(rule), dialects)
        if memo_key not in _SQL_CHECKS:
            _SQL_CHECKS[memo_key] = check_query(rule, sql_path, template, dialects)
        tables, sql_problems = _SQL_CHECKS[memo_key]
        if sql_problems:
            problems.extend(f"{p} (rule {rule.id})" for p in sql_problems)
            continue
        catalogue.rules[rule.id] = LoadedRule(rule, path, rl.get(("id",), 0), sql_path, template, tables, rl)


def _check_references(catalogue: Catalogue, lines_of) -> None:
    for rid, loaded in list(catalogue.rules.items()):
        rule = loaded.rule
        for i, cond in enumerate(rule.conditions):
            if cond.rule is None:
                continue
            where = f"{loaded.file}:{loaded.line_of('conditions', i, 'rule')}: conditions.{i}.rule"
            problem = None
            entities = set()
            for ref in cond.rules:
                target = catalogue.rules.get(ref)
                if ref == rid:
                    problem = "a rule cannot refer to itself"
                elif target is None:
                    problem = f"refers to {ref!r}, which is not defined (or its file has problems)"
                elif target.rule.references:
                    problem = f"refers to {ref!r}, itself a compound rule; refer to its parts"
                elif target.rule.grain != rule.grain:
                    problem = f"refers to {ref!r} of grain {target.rule.grain}; this rule's grain is {rule.grain}"
                elif not set(target.rule.keys) <= set(rule.keys):
                    problem = (f"refers to {ref!r}, whose entity ({target.rule.entity}) is not part of this "
                               f"rule's ({rule.entity})")
                else:
                    entities.add(target.rule.entity)
                if problem:
                    break
            if problem is None and len(entities) > 1:
                problem = f"the rules of a list must have one entity; these have {', '.join(sorted(entities))}"
            if problem:
                catalogue.problems.setdefault(rule.domain, []).append(f"{where}: {problem}")
                catalogue.rules.pop(rid, None)
                break


_CACHE: dict[tuple, Catalogue] = {}
# The code whose behaviour a cached result depends on: a change to any of it invalidates the cache.
_VALIDATING_CODE = ("rules/model.py", "rules/catalogue.py", "rules/sql_check.py", "rules/sql_template.py",
                    "engine/windows.py", "warehouse/schema.py", "located_yaml.py", "durations.py",
                    "rules/sql_functions.py", "engine/rollups.py")


def _signature(rdir: Path, sdir: Path) -> tuple:
    package = Path(__file__).resolve().parents[1]
    files = [*sorted(rdir.glob("*.yaml")), *sorted(sdir.rglob("*.sql")), *(package / f for f in _VALIDATING_CODE)]
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)


def _build(rdir: Path, sdir: Path, dialects: tuple[str, ...]) -> Catalogue:
    catalogue = Catalogue()
    for domain in DOMAINS:
        path = rdir / f"{domain}.yaml"
        catalogue.problems[domain] = []
        if path.is_file():
            _load_file(path, domain, sdir, catalogue, dialects)
    for path in sorted(rdir.glob("*.yaml")):
        if path.stem not in DOMAINS and path.stem not in ("routing", "plans"):
            catalogue.problems.setdefault("(other)", []).append(
                f"{path}:1: (file): not a rule file; rule files are named after a domain: {', '.join(DOMAINS)}")
    _check_references(catalogue, None)
    return catalogue


# --- The validated catalogue on disk: DAG files are parsed by many short-lived processes; they
# all reuse the result of one validation until a rule file, a query or the validating code changes.

def _cache_dir() -> Path | None:
    """``$AIRFLOW_HOME/storefence-cache`` (or ``$STOREFENCE_CACHE_DIR`` when it is inside
    ``$AIRFLOW_HOME``); None, no cache on disk, without an Airflow home: a shared temporary folder
    is writable by anyone on the machine, and a cached catalogue says which SQL runs."""
    home = os.environ.get("AIRFLOW_HOME")
    if not home:
        return None
    configured = os.environ.get("STOREFENCE_CACHE_DIR")
    if configured:
        return Path(configured) if inside(Path(configured), Path(home)) else None
    return Path(home) / "storefence-cache"


def _cache_file(key: tuple) -> Path | None:
    import hashlib

    folder = _cache_dir()
    return None if folder is None else folder / f"catalogue-{hashlib.sha256(repr(key).encode()).hexdigest()[:24]}.json"


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _file_reader():
    """(text, sha256) of a file, each file read once per call of the reader's owner: rules share
    their rule file, and variants share a query."""
    seen: dict[Path, tuple[str, str]] = {}

    def read(path: Path) -> tuple[str, str]:
        if path not in seen:
            text = path.read_text(encoding="utf-8")
            seen[path] = (text, _sha(text))
        return seen[path]

    return read


def _dump(catalogue: Catalogue) -> dict:
    read = _file_reader()
    return {
        "problems": catalogue.problems,
        "rules": [{"rule": r.rule.model_dump(mode="json", by_alias=True, exclude_defaults=True),
                   "file": str(r.file), "line": r.line, "sql_path": str(r.sql_path), "tables": list(r.tables),
                   "sql_sha256": _sha(r.template), "file_sha256": read(r.file)[1],
                   "field_lines": [[list(k), v] for k, v in r.field_lines.items()]} for r in catalogue.rules.values()],
    }


class _Untrusted(ValueError):
    """A cached entry that does not match what is on disk: validate again."""


def _restore(doc: dict, rdir: Path, sdir: Path) -> Catalogue:
    """The cached catalogue, re-checked against the files (a cache file is not trusted): each rule
    re-validated by the model, its rule file in the rules folder and its query in the SQL folder
    (symbolic links resolved), both with the content hashes they were validated with."""
    catalogue, read = Catalogue(problems=doc["problems"]), _file_reader()
    for r in doc["rules"]:
        rule = Rule.model_validate(r["rule"])
        file, sql_path = Path(r["file"]), Path(r["sql_path"])
        if sql_path != sdir / rule.query or not inside(sql_path, sdir) or not inside(file, rdir) \
                or file.parent != rdir or file.stem != rule.domain \
                or not all(isinstance(t, str) and IDENTIFIER.match(t) for t in r["tables"]):
            raise _Untrusted(rule.id)
        template, sql_sha = read(sql_path)
        if sql_sha != r["sql_sha256"] or read(file)[1] != r["file_sha256"]:
            raise _Untrusted(rule.id)
        catalogue.rules[rule.id] = LoadedRule(rule, file, r["line"], sql_path, template, tuple(r["tables"]),
                                              {tuple(k): v for k, v in r["field_lines"]})
    return catalogue


def _read_cached(path: Path | None, rdir: Path, sdir: Path) -> Catalogue | None:
    import json

    if path is None:
        return None
    try:
        return _restore(json.loads(path.read_text(encoding="utf-8")), rdir, sdir)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, half-written, from another version or not matching the files: validate again


def _write_cached(path: Path | None, catalogue: Catalogue) -> None:
    import json

    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_dump(catalogue), ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)  # atomic: a reader sees the old file or the new one, never half of one
    except OSError:
        pass  # a read-only file system: every parse validates, slower but correct


def load_catalogue(rules_path: Path | None = None, sql_path: Path | None = None,
                   dialects: tuple[str, ...] = DIALECTS) -> Catalogue:
    """Every domain's rules and problems. Cached in the process and on disk (``$AIRFLOW_HOME/storefence-cache``,
    or ``$STOREFENCE_CACHE_DIR`` inside ``$AIRFLOW_HOME``) until a rule or SQL file, or the validating code,
    changes; a cached result is re-checked against the files before it is used."""
    rdir, sdir = Path(rules_path or rules_dir()), Path(sql_path or sql_dir())
    key = (str(rdir), str(sdir), dialects, _signature(rdir, sdir))
    if key not in _CACHE:
        cached = _cache_file(key)
        catalogue = _read_cached(cached, rdir, sdir)
        if catalogue is None:
            catalogue = _build(rdir, sdir, dialects)
            _write_cached(cached, catalogue)
        _CACHE.clear()
        _CACHE[key] = catalogue
    return _CACHE[key]


class RuleFileError(ValueError):
    """A domain's rule files have problems; the message lists them, one a line."""


def domain_rules(domain: str, catalogue: Catalogue | None = None) -> list[LoadedRule]:
    """The rules of ``domain``, or RuleFileError with every problem of the domain."""
    catalogue = catalogue or load_catalogue()
    problems = catalogue.problems.get(domain, [])
    if problems:
        raise RuleFileError(f"{len(problems)} problem(s) in the {domain} rules:\n" + "\n".join(problems))
    return catalogue.domain(domain)
