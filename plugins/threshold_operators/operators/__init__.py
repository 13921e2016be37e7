"""Airflow operators of the pack. Import them from their modules (kept out of DAG parse time)."""
