"""storefence_escalation: escalation, repeats, released silences and delivery retries, every two minutes.

Built by ``threshold_operators.alerts.escalation_dag``; reads only the alert state store.
"""

from airflow.sdk import DAG  # the DAG processor's safe mode looks for "airflow" and "dag" in a file

from threshold_operators.alerts.escalation_dag import build_escalation_dag
from threshold_operators.bundle import use_bundle

use_bundle(__file__)  # rules, sources, suites and routing from include/ of this file's bundle

dag: DAG = build_escalation_dag()
