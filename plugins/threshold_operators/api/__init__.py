"""Storefence over HTTP, inside the Airflow API server (``plugins/storefence_plugin.py`` mounts it at
``/storefence``): acknowledge links clicked from a chat message, and a JSON API for alerts and
silences behind Airflow's own authentication. ``app.create_app`` builds it.
"""
