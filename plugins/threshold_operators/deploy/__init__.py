"""Storefence on Airflow's own processes: ``storefence up`` / ``down`` and the tests' harness.

- ``stack.py``: one Airflow home's deployment as data (``StackConfig``) and its processes
  (``Stack``: airflow.cfg, environment, start, health, stop);
- ``processes.py``: background processes in groups of their own, recorded, stopped exactly;
- ``airflow_cfg.py``: options of airflow.cfg set in place;
- ``metadata_db.py``: PostgreSQL when it answers, else SQLite, and why;
- ``rest.py``: a small client of Airflow's REST API v2 (JWT from the simple auth manager);
- ``inbox.py``: the local inbox as a process of its own (``storefence inbox serve|tail``);
- ``up.py``: ``storefence up`` and ``storefence down``.
"""
