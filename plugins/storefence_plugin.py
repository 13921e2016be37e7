"""The Storefence Airflow plugin: acknowledge links and the alerts API, served by Airflow's API
server under ``/storefence`` (``threshold_operators.api.app``), and the alerts page, a
``react_apps`` entry in Airflow's navigation at ``/plugin/storefence``: Airflow's UI loads the
built bundle (``threshold_operators/ui/dist``, served by the app at ``/storefence/ui/``) and
renders it inside its own page, with its React, Chakra theme, router and login.

Airflow imports this file in every component that loads plugins (scheduler, DAG processor,
workers), so it imports nothing heavy: the FastAPI app, the state store and Airflow's API
security are built on the first request the API server routes here.
"""

from __future__ import annotations

import threading

from airflow.plugins_manager import AirflowPlugin


class StorefenceApp:
    """An ASGI app that builds the Storefence FastAPI app on its first request."""

    def __init__(self):
        self._app = None
        self._lock = threading.Lock()

    def get(self):
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from threshold_operators.api.app import create_app

                    self._app = create_app()
        return self._app

    async def __call__(self, scope, receive, send):
        await self.get()(scope, receive, send)


class StorefencePlugin(AirflowPlugin):
    name = "storefence"
    fastapi_apps = [{"app": StorefenceApp(), "url_prefix": "/storefence", "name": "Storefence alerts"}]
    # bundle_url is relative: Airflow resolves it against its base URL (a deployment under a sub-path)
    react_apps = [{"name": "Storefence alerts", "bundle_url": "storefence/ui/storefence-alerts.umd.js",
                   "destination": "nav", "url_route": "storefence"}]
