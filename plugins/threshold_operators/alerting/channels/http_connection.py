"""The ``requests`` session and base URL an Airflow HTTP connection describes, for the senders.

``HttpHook.get_conn()`` gives the base URL (host, schema, port) and honours the connection's
proxies, TLS verification and certificates; it also copies every other extra key into the
session's headers and sets basic auth from login and password. The senders keep secrets and
settings in extra (a signing secret, an SMS template) and authenticate themselves, so those
headers and that auth are removed: a secret is never sent as a header.
"""

from __future__ import annotations


def http_session(conn_id: str, conn, method: str = "POST"):
    """``(session, base_url)`` of the HTTP connection ``conn`` (already looked up as ``conn_id``)."""
    from airflow.providers.http.hooks.http import HttpHook

    hook = HttpHook(method=method, http_conn_id=conn_id)
    session = hook.get_conn()
    for key in conn.extra_dejson or {}:
        session.headers.pop(key, None)
    session.auth = None
    return session, hook.base_url
