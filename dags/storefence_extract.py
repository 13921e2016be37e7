"""storefence_extract_<source>: one DAG for each source file in include/sources/.

Built by ``threshold_operators.extract.dag_factory``. A source file that does not validate
becomes a DAG of the same id whose single task fails with the file's problems (file, line,
field), so the other sources keep running and the broken one is visible in the UI.
"""

from __future__ import annotations

from airflow.sdk import DAG  # also what the DAG processor's safe mode looks for in a file

from threshold_operators.bundle import use_bundle
from threshold_operators.extract.dag_factory import broken_source_dag, build_extract_dag
from threshold_operators.extract.sources import load_sources

use_bundle(__file__)  # rules, sources, suites and routing from include/ of this file's bundle

_sources, _errors = load_sources()
_dag: DAG
for _spec in _sources:
    _dag = build_extract_dag(_spec)
    globals()[_dag.dag_id] = _dag
for _file, _problems in _errors.items():
    _dag = broken_source_dag(_file, _problems)
    globals()[_dag.dag_id] = _dag
