"""The Storefence FastAPI app: acknowledge links, and the alerts and silences API.

Mounted by Airflow's API server at ``/storefence`` (``plugins/storefence_plugin.py``). Two doors:

- ``/ack/{token}``: the acknowledge link of a chat message (``alerting.ack_link``). No Airflow
  login, the signed token is the authentication and names one firing of one alert (a link of an
  earlier firing of the same alert answers 410 Gone). GET shows the alert and a
  confirm button and changes nothing (chat apps fetch links to draw previews); the button POSTs,
  which acknowledges, once: a second click says who took it.
- ``/api/...``: JSON, behind Airflow's own authentication. Airflow does not protect a plugin's
  app by itself; every route here depends on ``airflow.api_fastapi.core_api.security.get_user``
  (the JWT of ``POST /auth/token``, as a bearer header or the UI's cookie) and asks the configured
  auth manager whether that user may use the custom view ``Storefence`` with the route's method;
  writes (acknowledge, add or expire a silence) also need the right to edit DAG runs
  (``may_write``), which the Viewer role lacks (SimpleAuthManager, FAB). ``/openapi.json`` needs the
  same login as a read.

``create_app(store_factory, now, settings)`` takes the state store, the clock and the link
settings as arguments, so tests run it on a SQLite file with a frozen clock.
"""

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Annotated, Literal

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, Form, HTTPException, Path, Query, status
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, model_validator

from threshold_operators.alerting.ack_link import InvalidLink, Link, LinkSettings, link_settings, read_token
from threshold_operators.alerting.escalation import acknowledge_alert
from threshold_operators.alerting.lifecycle import Alert, AlertStatus, Event, acknowledge
from threshold_operators.alerting.mute import Silence
from threshold_operators.alerting.store import StateStore
from threshold_operators.durations import Duration
from threshold_operators.executor import PerHostStorageError

RESOURCE = "Storefence"  # the custom view the auth manager is asked about
FINGERPRINT = r"^[0-9a-f]{4,40}$"  # a fingerprint or its first characters (never a LIKE pattern)
AllParam = Annotated[bool, Query(alias="all", description="include resolved alerts / expired silences")]


def clock() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- the JSON API's models ---------------------------------------------------------------------
class AlertOut(BaseModel):
    fingerprint: str
    rule_id: str
    entity_key: str
    status: AlertStatus
    severity: str | None
    escalation_level: int
    first_bucket: datetime
    last_bucket: datetime
    opened_at: datetime
    updated_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    muted: str | None

    @classmethod
    def of(cls, a: Alert) -> "AlertOut":
        return cls(fingerprint=a.fingerprint, rule_id=a.rule_id, entity_key=a.entity_key, status=a.status,
                   severity=a.severity, escalation_level=a.escalation_level, first_bucket=a.first_bucket,
                   last_bucket=a.last_bucket, opened_at=a.opened_at, updated_at=a.updated_at,
                   acknowledged_by=a.acknowledged_by, acknowledged_at=a.acknowledged_at,
                   resolved_at=a.resolved_at, muted=a.muted)


class SilenceIn(BaseModel):
    """A silence to add. The end is ``ends_at`` or ``starts_at`` + ``duration`` (one of the two)."""

    rule: str = Field(min_length=1, max_length=128, description='glob on the rule id: "inventory.*", "*" for all')
    entity: str = Field("*", min_length=1, max_length=500, description='glob on the entity key: "*sku=SKU-0042*"')
    shop: str | None = Field(None, max_length=64)
    reason: str = Field(min_length=1, max_length=2000)
    starts_at: datetime | None = Field(None, description="default: now; naive times are UTC")
    ends_at: datetime | None = None
    duration: Duration | None = Field(None, description='"30m", "2h", "3d"')

    @model_validator(mode="after")
    def _one_end(self):
        if (self.ends_at is None) == (self.duration is None):
            raise ValueError("give either ends_at or duration")
        return self


class SilenceOut(BaseModel):
    id: str
    rule: str
    entity: str
    shop: str | None
    author: str
    reason: str
    starts_at: datetime
    ends_at: datetime
    created_at: datetime | None
    state: Literal["pending", "active", "expired"]

    @classmethod
    def of(cls, s: Silence, now: datetime) -> "SilenceOut":
        state = "pending" if now < s.starts_at else "active" if s.active(now) else "expired"
        return cls(id=s.id, rule=s.rule, entity=s.entity, shop=s.shop, author=s.author, reason=s.reason,
                   starts_at=s.starts_at, ends_at=s.ends_at, created_at=s.created_at, state=state)


# --- the acknowledge pages ---------------------------------------------------------------------
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "X-Robots-Tag": "noindex",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:34rem;margin:1.5rem auto;padding:0 1rem;line-height:1.5}"
          "table{border-collapse:collapse;margin:1rem 0}td{padding:.2rem .8rem .2rem 0;vertical-align:top}"
          "td:first-child{color:#666}input{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box}"
          "button{font-size:1.1rem;padding:.7rem 1.2rem;margin-top:.8rem;width:100%}"
          ".red{color:#c00}.yellow{color:#b80}.blue{color:#06c}")


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    html = (f'<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><title>{escape(title)}</title><style>{_STYLE}</style>'
            f"</head><body><h2>{escape(title)}</h2>{body}</body></html>")
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)


def _alert_table(a: Alert, level: int) -> str:
    rows = [("规则 / Rule", escape(a.rule_id)), ("对象 / Entity", escape(a.entity_key)),
            ("级别 / Severity", f'<span class="{escape(a.severity or "")}">{escape(a.severity or "-")}</span>'),
            ("状态 / Status", escape(str(a.status))), ("开始 / Since", f"{a.opened_at:%Y-%m-%d %H:%M} UTC"),
            ("通知级别 / Sent at level", f"L{level}")]
    if a.acknowledged_by:
        rows.append(("确认人 / Acknowledged by",
                     f"{escape(a.acknowledged_by)} ({a.acknowledged_at:%Y-%m-%d %H:%M} UTC)"))
    return "<table>" + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows) + "</table>"


_CONFIRM = ('<form method="post"><label>你的名字 / Your name (optional)<br>'
            '<input name="name" maxlength="80" autocomplete="name"></label>'
            '<button type="submit">确认告警 / Acknowledge</button></form>'
            "<p><small>确认后升级停止，直到告警变严重。/ Escalation stops until the alert gets worse.</small></p>")


class _StoreOnce:
    """The state store, made and created on first use (not when Airflow loads the plugin)."""

    def __init__(self, factory: Callable[[], StateStore]):
        self._factory = factory
        self._store: StateStore | None = None
        self._lock = threading.Lock()

    def __call__(self) -> StateStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    store = self._factory()
                    store.create()
                    self._store = store
        return self._store


WRITE_METHODS = ("POST", "PUT", "DELETE")


def may_write(auth_manager, user: BaseUser, method: str) -> bool:
    """Whether ``user`` may change alerts and silences: two questions to the auth manager, both yes.

    1. the custom view ``Storefence`` with the write ``method`` (what a plugin view is meant to be
       asked; FAB and Keycloak answer per method);
    2. editing DAG runs (``is_authorized_dag(method="PUT", access_entity=DagAccessEntity.RUN)``):
       Airflow's SimpleAuthManager ignores the method of a custom view (every Viewer may "POST"),
       but it does answer this one per role (Viewer no; User, Op, Admin yes), as FAB does
       (``can_edit`` on DAG Runs). Acknowledging or silencing an alert is an operator's act on running
       pipelines, the same right as clearing or marking a DAG run.
    """
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

    return (auth_manager.is_authorized_custom_view(method=method, resource_name=RESOURCE, user=user)
            and auth_manager.is_authorized_dag(method="PUT", access_entity=DagAccessEntity.RUN, user=user))


def requires_storefence(method: Literal["GET", "POST", "PUT", "DELETE"]):
    """A dependency: the authenticated Airflow user (401 without a valid token), allowed by the auth
    manager to use the custom view ``Storefence`` with ``method`` (403 otherwise); a write method
    also needs the right to edit (``may_write``)."""

    def check(user: GetUserDep) -> BaseUser:
        manager = get_auth_manager()
        if method in WRITE_METHODS:
            allowed = may_write(manager, user, method)
        else:
            allowed = manager.is_authorized_custom_view(method=method, resource_name=RESOURCE, user=user)
        if not allowed:
            need = "may edit (acknowledge, silence)" if method in WRITE_METHODS else "may read"
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"{user.get_name()} may not {method} {RESOURCE}: it needs a role that {need}")
        return user

    return check


def create_app(store_factory: Callable[[], StateStore] = StateStore, now: Callable[[], datetime] = clock,
               settings: Callable[[], LinkSettings | None] = link_settings) -> FastAPI:
    """The app. ``store_factory``: makes the state store (called once, on first use); ``now``: the
    clock; ``settings``: the acknowledge link settings (None: links are not enabled)."""
    app = FastAPI(title="Storefence alerts", docs_url=None, redoc_url=None, openapi_url=None,
                  description="Acknowledge links, and the alerts and silences of Storefence.")
    store_of = _StoreOnce(store_factory)
    StoreDep = Annotated[StateStore, Depends(store_of)]

    @app.exception_handler(PerHostStorageError)
    def _per_host(request, exc: PerHostStorageError) -> JSONResponse:  # a deployment to fix: say what
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    # --- acknowledge links ---------------------------------------------------------------------
    def read_link(token: str) -> Link | HTMLResponse:
        try:
            link = settings()
        except ValueError as exc:
            return _page("链接不可用 / Link unavailable", f"<p>{escape(str(exc))}</p>", 503)
        if link is None:
            return _page("链接未启用 / Links not enabled",
                         "<p>Acknowledge links are not enabled here (no connection <code>storefence_ack</code>). "
                         "Use <code>storefence ack</code>.</p>", 404)
        try:
            return read_token(token, link.secret, link.ttl.total_seconds(), now=now())
        except InvalidLink as exc:
            title = "链接已过期 / Link expired" if exc.kind == "expired" else "链接无效 / Invalid link"
            return _page(title, f"<p>{escape(exc.reason)}</p>", status.HTTP_403_FORBIDDEN)

    def linked_alert(token: str, store) -> tuple[Alert, int] | HTMLResponse:
        """The alert and level a link names, or the page saying why not (expired, altered, gone)."""
        link = read_link(token)
        if isinstance(link, HTMLResponse):
            return link
        alert = store.get(link.fingerprint)
        if alert is None:
            return _page("告警不存在 / No such alert",
                         f"<p>No alert {escape(link.fingerprint[:10])} in the state store.</p>",
                         status.HTTP_404_NOT_FOUND)
        if not link.firing_of(alert):  # resolved since, and fired again: this link is not for today's firing
            return _page("链接属于之前的告警 / Link of an earlier firing",
                         f"<p>This link was sent for the firing of this alert that opened "
                         f"{link.opened_at:%Y-%m-%d %H:%M} UTC. That firing has ended; the alert fired again at "
                         f"{alert.opened_at:%Y-%m-%d %H:%M} UTC. Acknowledge it with the link of the newest "
                         f"message, <code>storefence ack {escape(alert.fingerprint[:10])}</code> or the "
                         f"Storefence API.</p>" + _alert_table(alert, alert.escalation_level),
                         status.HTTP_410_GONE)
        return alert, link.level

    @app.get("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
    def ack_page(token: str, store: StoreDep) -> HTMLResponse:
        """Show the alert and a confirm button. Changes nothing: link previews GET it."""
        found = linked_alert(token, store)
        if isinstance(found, HTMLResponse):
            return found
        alert, level = found
        if alert.status in (AlertStatus.FIRING, AlertStatus.SILENCED):
            return _page("确认告警? / Acknowledge this alert?", _alert_table(alert, level) + _CONFIRM)
        if alert.status == AlertStatus.ACKNOWLEDGED:
            return _page("已确认 / Already acknowledged", _alert_table(alert, level))
        return _page("无需确认 / Nothing to acknowledge",
                     _alert_table(alert, level) + f"<p>The alert is {escape(str(alert.status))}.</p>")

    @app.post("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
    def ack_confirm(token: str, store: StoreDep, name: Annotated[str, Form(max_length=200)] = "") -> HTMLResponse:
        """Acknowledge, as ``<name> (link:L<level>)`` or ``link:L<level>``. A second click changes nothing."""
        found = linked_alert(token, store)
        if isinstance(found, HTMLResponse):
            return found
        alert, level = found
        name = " ".join(name.split())[:80]
        who = f"{name} (link:L{level})" if name else f"link:L{level}"
        at = now()
        if acknowledge(alert, who, at).event == Event.ACKNOWLEDGED:
            # compare-and-set, as the CLI and the API: a cycle or a notify task writing the alert
            # meanwhile is re-read, never overwritten
            done = acknowledge_alert(store, alert.fingerprint, who, at)
            if done.status == AlertStatus.ACKNOWLEDGED and done.acknowledged_by == who:
                return _page("已确认 / Acknowledged", _alert_table(done, level))
            alert = done
        if alert.status == AlertStatus.ACKNOWLEDGED:
            return _page("已确认 / Already acknowledged", _alert_table(alert, level))
        return _page("无需确认 / Nothing to acknowledge",
                     _alert_table(alert, level) + f"<p>The alert is {escape(str(alert.status))}.</p>",
                     status.HTTP_409_CONFLICT)

    # --- the JSON API, behind Airflow's authentication -----------------------------------------
    Reader = Annotated[BaseUser, Depends(requires_storefence("GET"))]
    Writer = Annotated[BaseUser, Depends(requires_storefence("POST"))]
    Deleter = Annotated[BaseUser, Depends(requires_storefence("DELETE"))]

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_user: Reader) -> JSONResponse:
        """The API's description, behind the same login as the API (FastAPI serves it to anyone)."""
        return JSONResponse(app.openapi())

    @app.get("/api/alerts", response_model=list[AlertOut], tags=["alerts"])
    def list_alerts(store: StoreDep, _user: Reader, everything: AllParam = False) -> list[AlertOut]:
        """The active alerts (firing, acknowledged, silenced); every one with ``all=true``."""
        return [AlertOut.of(a) for a in store.list(active_only=not everything)]

    @app.post("/api/alerts/{fingerprint}/ack", response_model=AlertOut, tags=["alerts"])
    def ack_alert(fingerprint: Annotated[str, Path(pattern=FINGERPRINT)], store: StoreDep,
                  user: Writer) -> AlertOut:
        """Acknowledge an alert by its fingerprint or first characters, as the authenticated user."""
        try:
            alert = acknowledge_alert(store, fingerprint, user.get_name(), now())
        except LookupError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        if alert.status != AlertStatus.ACKNOWLEDGED:
            raise HTTPException(status.HTTP_409_CONFLICT, f"alert {alert.fingerprint[:10]} is {alert.status}: "
                                                          f"nothing to acknowledge")
        return AlertOut.of(alert)

    @app.get("/api/silences", response_model=list[SilenceOut], tags=["silences"])
    def list_silences(store: StoreDep, _user: Reader, everything: AllParam = False) -> list[SilenceOut]:
        """The silences not yet expired (pending and active); expired ones too with ``all=true``."""
        t = now()
        return [SilenceOut.of(s, t) for s in store.silences(None if everything else t)]

    @app.post("/api/silences", response_model=SilenceOut, status_code=status.HTTP_201_CREATED, tags=["silences"])
    def add_silence(body: SilenceIn, store: StoreDep, user: Writer) -> SilenceOut:
        """Keep quiet about matching alerts, from ``starts_at`` (default now), as the authenticated user."""
        t = now()
        starts = _utc(body.starts_at) if body.starts_at else t
        ends = _utc(body.ends_at) if body.ends_at else starts + (body.duration or timedelta(0))
        try:
            silence = Silence(user.get_name(), body.reason, starts, ends, body.rule, body.entity, body.shop or None)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        if ends <= t:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"the silence would end in the past ({ends})")
        return SilenceOut.of(store.add_silence(silence, t), t)

    @app.delete("/api/silences/{silence_id}", response_model=SilenceOut, tags=["silences"])
    def expire_silence(silence_id: str, store: StoreDep, _user: Deleter) -> SilenceOut:
        """End a silence now (it is kept, expired, for the record)."""
        t = now()
        if not store.expire_silence(silence_id, t):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no unexpired silence has id {silence_id!r}")
        silence = next(s for s in store.silences() if s.id == silence_id)
        return SilenceOut.of(silence, t)

    return app
