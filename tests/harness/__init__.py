"""Reusable test harness: a real Airflow (api-server, scheduler, dag-processor) on loopback,
driven over the REST API. ``airflow_stack.py`` starts and stops it; ``rest.py`` drives it."""
