"""Airflow's local settings for the Storefence pack: one warning filter, nothing else.

Airflow imports ``airflow_local_settings`` from the plugins folder (on ``sys.path``) when it
starts, in every process: the scheduler, the api-server, the DAG processor, the workers that
fork the task processes, ``airflow tasks test``. That is before it scans the plugins folder.

The scan reads ``plugins/.airflowignore`` (it keeps the threshold_operators package out of the
plugin import) with ``pathspec``'s ``GitWildMatchPattern``, which pathspec 1.x deprecates: a
DeprecationWarning in every task log and every component's log. The task processes' scan
(``airflow.sdk.plugins_manager``) always uses the glob syntax, whatever ``[core]
dag_ignore_file_syntax`` says, so no syntax of ours avoids it: the call is Airflow's, and the
filter below hides exactly that message from exactly Airflow's file-discovery modules. Any other
deprecation, ours included, still shows. Drop it when Airflow builds its patterns with
``GitIgnoreSpecPattern``.

A deployment with its own ``airflow_local_settings`` (``$AIRFLOW_HOME/config`` comes first on
``sys.path``) keeps it; the warning then comes back, harmlessly.
"""

import warnings

warnings.filterwarnings(
    "ignore",
    message=r"GitWildMatchPattern \('gitwildmatch'\) is deprecated",
    category=DeprecationWarning,
    module=r"airflow\.(sdk\.)?_shared\.module_loading\.file_discovery",
)
