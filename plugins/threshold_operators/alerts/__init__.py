"""The alert DAGs: one per rule domain, built from the rule files (``dag_factory``)."""
