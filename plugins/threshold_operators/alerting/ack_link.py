"""Acknowledge links: a signed, expiring URL in the alert message that takes the alert from a phone.

The token names the alert (its fingerprint), the firing it was sent for (the alert's
``opened_at``, in whole seconds) and the escalation level it was sent at, signed with the secret of
the connection ``storefence_ack`` (itsdangerous, salted, timestamped). Whoever holds an unexpired
link may acknowledge that firing of that alert and nothing else; no Airflow login is needed, the
signature is the authentication. A link from an earlier firing of the same fingerprint (it
resolved, then fired again) does not acknowledge the new one: ``Link.firing_of`` tells them apart. The link opens a confirmation page and only its button
acknowledges: chat apps (DingTalk, WeCom) fetch links to draw previews, and a preview must not take
the alert for anyone.

Connection ``storefence_ack``: host = the public base URL of the Airflow API server
(``https://airflow.example.com``), password = the signing secret, ``extra.ttl_hours`` (default 24).
Not defined: ``link_settings()`` is None and messages carry the ``storefence ack`` command instead.

Pass ``now`` in tests; the default is the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

ACK_CONN_ID = "storefence_ack"
SALT = "storefence-ack"
DEFAULT_TTL = timedelta(hours=24)
CLOCK_SKEW = timedelta(minutes=5)  # how far ahead of ours a signing machine's clock may be
PATH = "/storefence/ack/"  # where the plugin's FastAPI app serves the links (storefence_plugin.py)


class InvalidLink(Exception):
    """The link cannot be used: ``kind`` is ``expired`` or ``tampered``; ``reason`` says it for people."""

    def __init__(self, reason: str, kind: str = "tampered"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class _ClockedSigner(TimestampSigner):
    """itsdangerous' timestamp signer on a clock of our choosing (tests freeze it)."""

    def __init__(self, *args, clock: Callable[[], datetime], **kwargs):
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock().timestamp())


def _serializer(secret: str, now: datetime | None) -> URLSafeTimedSerializer:
    if not secret:
        raise ValueError("an acknowledge link needs a signing secret")
    clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
    return URLSafeTimedSerializer(secret, salt=SALT, signer=_ClockedSigner, signer_kwargs={"clock": clock})


class Link(NamedTuple):
    """What a token names: one firing (``opened_at``) of one alert, told at ``level``."""

    fingerprint: str
    level: int
    opened_at: datetime

    def firing_of(self, alert) -> bool:
        """Whether the link was sent for ``alert``'s current firing (not an earlier one)."""
        return _seconds(alert.opened_at) == _seconds(self.opened_at)


def _seconds(ts: datetime) -> int:
    return int(ts.timestamp())


def make_token(fingerprint: str, level: int, secret: str, now: datetime | None = None, *,
               opened_at: datetime) -> str:
    """A URL-safe token for acknowledging the firing of ``fingerprint`` that opened at ``opened_at``,
    told at escalation ``level``, signed at ``now``."""
    return _serializer(secret, now).dumps([fingerprint, int(level), _seconds(opened_at)])


def read_token(token: str, secret: str, max_age_seconds: float, now: datetime | None = None) -> Link:
    """The ``Link`` of a token signed with ``secret`` no more than ``max_age_seconds`` before ``now``;
    raises ``InvalidLink`` when it expired or is not one of ours. The age is checked here, not by
    itsdangerous, so that a signer's clock a little ahead of ours (another machine) is no reason to
    refuse a link clicked at once."""
    now = now or datetime.now(UTC)
    try:
        payload, signed = _serializer(secret, now).loads(token, return_timestamp=True)
    except BadData:
        raise InvalidLink("this acknowledge link is not valid: it was altered, truncated or signed with another "
                          "secret.", "tampered") from None
    age = (now - signed).total_seconds()
    if age > max_age_seconds:
        raise InvalidLink(f"this acknowledge link has expired (sent {signed:%Y-%m-%d %H:%M} UTC; links are valid "
                          f"for {max_age_seconds / 3600:g} hours). Acknowledge with `storefence ack` or the "
                          f"Storefence API instead.", "expired")
    if age < -CLOCK_SKEW.total_seconds():
        raise InvalidLink(f"this acknowledge link is not valid: it claims to be signed in the future "
                          f"({signed:%Y-%m-%d %H:%M} UTC).", "tampered")
    if (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], str)
            and type(payload[1]) is int):  # signed by a version that did not bind links to a firing
        raise InvalidLink("this acknowledge link comes from an older Storefence that did not bind links to one "
                          "firing of an alert. Use the link of a newer message, `storefence ack` or the "
                          "Storefence API.", "expired")
    if (not isinstance(payload, list) or len(payload) != 3 or not isinstance(payload[0], str)
            or type(payload[1]) is not int or type(payload[2]) is not int):
        raise InvalidLink("this acknowledge link is not valid: it does not name an alert.", "tampered")
    return Link(payload[0], payload[1], datetime.fromtimestamp(payload[2], UTC))


@dataclass(frozen=True)
class LinkSettings:
    base_url: str  # the public base URL of the Airflow API server, no trailing slash
    secret: str
    ttl: timedelta = DEFAULT_TTL

    def __repr__(self) -> str:  # never print the secret
        return f"LinkSettings(base_url={self.base_url!r}, secret='***', ttl={self.ttl!r})"


def link_settings(conn_id: str = ACK_CONN_ID) -> LinkSettings | None:
    """The acknowledge link settings from the Airflow connection ``conn_id``; None when it is not
    defined. A connection without a host or a secret is a mistake, and says so (ValueError)."""
    from threshold_operators.alerting.channels.base import lookup_connection

    try:
        conn = lookup_connection(conn_id)
    except Exception as exc:
        if "isn't defined" not in str(exc) and type(exc).__name__ != "AirflowNotFoundException":
            raise
        return None
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise ValueError(f"connection {conn_id}: host must be the public base URL of the Airflow API server")
    if "://" not in host:  # a URI-style connection splits the URL: scheme in schema, port apart
        host = f"{conn.schema or 'https'}://{host}" + (f":{conn.port}" if conn.port else "")
    if not conn.password:
        raise ValueError(f"connection {conn_id}: password must hold the secret that signs acknowledge links")
    extra = conn.extra_dejson or {}
    try:
        ttl = timedelta(hours=float(extra.get("ttl_hours", DEFAULT_TTL.total_seconds() / 3600)))
    except (TypeError, ValueError):
        raise ValueError(f"connection {conn_id}: extra.ttl_hours must be a number of hours") from None
    if ttl <= timedelta(0):
        raise ValueError(f"connection {conn_id}: extra.ttl_hours must be positive")
    return LinkSettings(host, conn.password, ttl)


def ack_url(settings: LinkSettings, fingerprint: str, level: int, now: datetime | None = None, *,
            opened_at: datetime) -> str:
    """The link to put in a message telling the firing of ``fingerprint`` opened at ``opened_at``, at ``level``."""
    return f"{settings.base_url}{PATH}{make_token(fingerprint, level, settings.secret, now, opened_at=opened_at)}"
