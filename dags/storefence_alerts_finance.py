"""storefence_alerts_finance: the finance threshold rules (include/rules/finance.yaml), one check and one notify task each.

Built by ``threshold_operators.alerts.dag_factory``. If the rule file has problems, this file
fails to import with every problem (file, line, field); the other domains keep running.
"""

from airflow.sdk import DAG  # the DAG processor's safe mode looks for "airflow" and "dag" in a file

from threshold_operators.alerts.dag_factory import build_alert_dag
from threshold_operators.bundle import use_bundle

use_bundle(__file__)  # rules, sources, suites and routing from include/ of this file's bundle

dag: DAG = build_alert_dag("finance")
