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

import pathlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Annotated, Literal
from urllib.parse import quote

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, Form, HTTPException, Path, Query, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, model_validator

from threshold_operators.alerting.ack_link import InvalidLink, Link, LinkSettings, link_settings, read_token
from threshold_operators.alerting.escalation import acknowledge_alert, apply_silence
from threshold_operators.alerting.lifecycle import Alert, AlertStatus, Event, acknowledge
from threshold_operators.alerting.mute import Silence
from threshold_operators.alerting.store import StateStore
from threshold_operators.api import views
from threshold_operators.durations import Duration
from threshold_operators.executor import PerHostStorageError

RESOURCE = "Storefence"  # the custom view the auth manager is asked about
FINGERPRINT = r"^[0-9a-f]{4,40}$"  # a fingerprint or its first characters (never a LIKE pattern)
AllParam = Annotated[bool, Query(alias="all", description="include resolved alerts / expired silences")]
UI_DIST = pathlib.Path(__file__).resolve().parents[1] / "ui" / "dist"  # the alerts page's built bundle (make ui)
UI_FILES = {"storefence-alerts.umd.js"}
RESOLVED_SHOWN = timedelta(days=7)  # the resolved tab: alerts resolved this recently
PAGE_LIMIT = 1000  # rows of one view at most (the counts are of all of them)


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


class Me(BaseModel):
    user: str
    can_write: bool


class AckMany(BaseModel):
    fingerprints: list[Annotated[str, Field(pattern=FINGERPRINT)]] = Field(min_length=1, max_length=10_000)


class Matchers(BaseModel):
    """What a silence would match (its preview)."""

    rule: str = Field("*", min_length=1, max_length=128)
    entity: str = Field("*", min_length=1, max_length=500)
    shop: str | None = Field(None, max_length=64)


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


def _catalogue():
    from threshold_operators.rules.catalogue import load_catalogue

    return load_catalogue()


def _routing():
    from threshold_operators.alerting.routing import load_routing

    return load_routing()


class _Described:
    """The rule catalogue and the routing, as the page needs them (names, owners, files, ladders);
    re-read at most every ``ttl`` seconds (the catalogue itself re-checks its files), and never
    fatal: a broken rule file leaves the page with rule ids instead of names."""

    def __init__(self, catalogue: Callable, routing: Callable, ttl: float = 30.0):
        self._load = (catalogue, routing)
        self._ttl = ttl
        self._at = -ttl
        self.catalogue = self.routing = None

    def fresh(self) -> "_Described":
        if time.monotonic() - self._at >= self._ttl:
            self._at = time.monotonic()
            for attr, load in zip(("catalogue", "routing"), self._load, strict=True):
                try:
                    setattr(self, attr, load())
                except Exception:  # noqa: BLE001 - lint tells what is wrong; the page shows ids
                    setattr(self, attr, None)
        return self

    def rule(self, rule_id: str):
        loaded = self.catalogue.rules.get(rule_id) if self.catalogue is not None else None
        return loaded

    def names(self, rule_id: str) -> dict | None:
        loaded = self.rule(rule_id)
        return {"zh": loaded.rule.name.zh, "en": loaded.rule.name.en} if loaded else None

    def recipients(self, rule_id: str, level: int) -> list:
        """The names (``Localized``: ``zh`` and ``en``) of the people told at ``level`` of the rule's team."""
        loaded = self.rule(rule_id)
        if self.routing is None:
            return []
        try:
            team = self.routing.team_of(loaded.rule.owner if loaded else "data_engineering")
            return [p.name for p in self.routing.recipients(team, level)]
        except Exception:  # noqa: BLE001 - a team without that level: nobody named
            return []

    def held_by(self, alert: Alert) -> dict[str, str] | None:
        return views.held_by(alert, self.recipients)

    def why_muted(self, now: datetime) -> Callable[[Alert], str | None]:
        """The stored reason (a silence, an inhibition); for a firing alert, the quiet hours its
        team's messages wait out now, if any (they defer messages, they do not hold the alert)."""
        from threshold_operators.alerting.mute import QuietHours

        quiet = QuietHours(self.routing.quiet_hours(), self.routing.timezone) if self.routing is not None else None

        def why(alert: Alert) -> str | None:
            if alert.muted or alert.status != AlertStatus.FIRING or quiet is None:
                return alert.muted
            loaded = self.rule(alert.rule_id)
            mute = quiet.mutes(alert, self.routing.team_of(loaded.rule.owner if loaded else "data_engineering"), now)
            return mute.reason if mute is not None else None

        return why


def _rule_info(described: _Described, rule_id: str) -> dict:
    loaded = described.rule(rule_id)
    if loaded is None:
        return {"id": rule_id, "name": rule_id, "names": {"zh": rule_id, "en": rule_id}, "description": None,
                "descriptions": None, "domain": views.domain_of(rule_id), "owner": None, "file": None, "line": None,
                "runbook": None, "runbooks": None}
    from threshold_operators.rules.catalogue import rules_dir

    root = rules_dir().parent.parent
    try:
        file = str(pathlib.Path(loaded.file).resolve().relative_to(root.resolve()))
    except ValueError:
        file = pathlib.Path(loaded.file).name
    r = loaded.rule
    # description and runbook: the Chinese text (what the page shows); descriptions and runbooks: both.
    return {"id": r.id, "name": r.name.zh, "names": {"zh": r.name.zh, "en": r.name.en},
            "description": r.description_in("zh"), "descriptions": {"zh": r.description.zh, "en": r.description.en},
            "domain": views.domain_of(r.id), "owner": r.owner, "file": file, "line": loaded.line,
            "runbook": r.runbook_in("zh"), "runbooks": {"zh": r.runbook.zh, "en": r.runbook.en}}


def _task_instance(alert: Alert) -> dict | None:
    """The Airflow task instance that evaluated the alert's latest observation, and its UI path."""
    by = (alert.detail or {}).get("evaluated_by")
    if not isinstance(by, dict) or not by.get("dag_id") or not by.get("run_id"):
        return None
    url = f"dags/{quote(by['dag_id'], safe='')}/runs/{quote(by['run_id'], safe='')}/tasks/{by.get('task_id', 'evaluate')}"
    return {"dag_id": by["dag_id"], "run_id": by["run_id"], "task_id": by.get("task_id", "evaluate"),
            "map_index": by.get("notify_map_index"), "url": url}


def create_app(store_factory: Callable[[], StateStore] = StateStore, now: Callable[[], datetime] = clock,
               settings: Callable[[], LinkSettings | None] = link_settings,
               catalogue: Callable = _catalogue, routing: Callable = _routing) -> FastAPI:
    """The app. ``store_factory``: makes the state store (called once, on first use); ``now``: the
    clock; ``settings``: the acknowledge link settings (None: links are not enabled);
    ``catalogue`` and ``routing``: load the rules and the routing (names, owners, ladders)."""
    app = FastAPI(title="Storefence alerts", docs_url=None, redoc_url=None, openapi_url=None,
                  description="Acknowledge links, and the alerts and silences of Storefence.")
    store_of = _StoreOnce(store_factory)
    StoreDep = Annotated[StateStore, Depends(store_of)]
    described = _Described(catalogue, routing)

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

    def page_link(alert: Alert) -> str:
        """The alert's detail on the alerts page in Airflow (it asks for a login there)."""
        try:
            link = settings()
        except ValueError:
            return ""
        if link is None:
            return ""
        url = f"{link.base_url}/plugin/storefence?alert={alert.fingerprint}"
        return (f'<p><a href="{escape(url)}">在 Airflow 中查看详情 / Open in Airflow</a> '
                f"<small>(需登录 / login)</small></p>")

    @app.get("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
    def ack_page(token: str, store: StoreDep) -> HTMLResponse:
        """Show the alert and a confirm button. Changes nothing: link previews GET it."""
        found = linked_alert(token, store)
        if isinstance(found, HTMLResponse):
            return found
        alert, level = found
        if alert.status in (AlertStatus.FIRING, AlertStatus.SILENCED):
            return _page("确认告警? / Acknowledge this alert?", _alert_table(alert, level) + _CONFIRM + page_link(alert))
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
                return _page("已确认 / Acknowledged", _alert_table(done, level) + page_link(done))
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

    @app.get("/api/me", response_model=Me, tags=["page"])
    def me(user: Reader) -> Me:
        """Who is asking, and whether they may acknowledge and silence (the page hides those buttons
        otherwise; the API refuses the writes all the same)."""
        return Me(user=user.get_name(), can_write=may_write(get_auth_manager(), user, "POST"))

    @app.get("/api/alerts", tags=["alerts"])
    def list_alerts(store: StoreDep, _user: Reader,
                    tab: Annotated[Literal["firing", "acknowledged", "muted", "resolved"] | None, Query(
                        description="one status (muted: silenced or inhibited); default: every active alert")] = None,
                    shop: Annotated[str | None, Query(max_length=64)] = None,
                    domain: Annotated[str | None, Query(max_length=64)] = None,
                    rule: Annotated[str | None, Query(max_length=128)] = None,
                    severity: Annotated[list[Literal["red", "yellow", "blue"]] | None, Query()] = None,
                    q: Annotated[str | None, Query(max_length=200, description="text in the entity or rule")] = None,
                    limit: Annotated[int, Query(ge=1, le=10_000)] = PAGE_LIMIT,
                    everything: AllParam = False) -> dict:
        """A view of the alerts, as the alerts page draws it: the counts by state (every tab, these
        filters) and by severity (this tab), the facets, and the rows red first, then the newest
        (``views.alert_view``). The resolved tab, and ``all=true``, show alerts resolved in the last
        7 days."""
        t = now()
        view = views.AlertFilter(tab=tab, shop=shop or None, domain=domain or None, rule=rule or None,
                                 severities=tuple(severity or ()), text=q or None, resolved=everything)
        d = described.fresh()
        alerts = store.list(resolved_since=t - RESOLVED_SHOWN)
        return {"updated_at": t, **views.alert_view(alerts, view, limit, d.names, d.held_by, d.why_muted(t))}

    @app.get("/api/alerts/{fingerprint}", tags=["alerts"])
    def alert_detail(fingerprint: Annotated[str, Path(pattern=FINGERPRINT)], store: StoreDep,
                     _user: Reader) -> dict:
        """One alert: its row, its rule (file, line, runbook), the chart's points (value, baseline and
        threshold at each bucket observed, the firing span), who was told what, and the task
        instance that evaluated it."""
        alert = store.find(fingerprint)
        if alert is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no single alert has a fingerprint starting with "
                                                           f"{fingerprint!r}")
        d = described.fresh()
        told = [{k: n.get(k) for k in ("id", "event", "level", "route", "status", "attempts", "created_at",
                                       "sent_at", "last_error")} | {"title": (n.get("payload") or {}).get("title")}
                for n in store.notifications_about(alert)]
        return {"alert": views.alert_row(alert, d.names, d.held_by, d.why_muted(now())),
                "rule": _rule_info(d, alert.rule_id),
                "points": store.points(alert.rule_id, alert.entity_key, views.chart_since(alert)),
                "notifications": told, "task_instance": _task_instance(alert)}

    @app.post("/api/alerts/ack", tags=["alerts"])
    def ack_many(body: AckMany, store: StoreDep, user: Writer) -> dict:
        """Acknowledge several alerts as the authenticated user; each one that cannot be (gone,
        resolved) is listed in ``skipped`` with the reason, the others are acknowledged."""
        t, d = now(), described.fresh()
        done, skipped = [], []
        for fp in dict.fromkeys(body.fingerprints):
            try:
                alert = acknowledge_alert(store, fp, user.get_name(), t)
            except LookupError as exc:
                skipped.append({"fingerprint": fp, "reason": str(exc)})
                continue
            if alert.status == AlertStatus.ACKNOWLEDGED:
                done.append(views.alert_row(alert, d.names, d.held_by))
            else:
                skipped.append({"fingerprint": fp, "reason": f"the alert is {alert.status}: nothing to acknowledge"})
        return {"acknowledged": done, "skipped": skipped}

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
        made = store.add_silence(silence, t)
        apply_silence(store, made, t)  # its alerts show silenced at once, not at the next cycle
        return SilenceOut.of(made, t)

    @app.post("/api/silences/preview", tags=["silences"])
    def preview_silence(body: Matchers, store: StoreDep, _user: Reader) -> dict:
        """The active alerts a silence with these matchers would hold back (nothing is written)."""
        try:
            probe = Silence("preview", "preview", now(), now() + timedelta(seconds=1), body.rule, body.entity,
                            body.shop or None)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        d = described.fresh()
        hit = sorted((a for a in store.list(active_only=True) if probe.matches(a.rule_id, a.entity_key)),
                     key=views.order_key)
        return {"total": len(hit), "alerts": [views.alert_row(a, d.names, d.held_by) for a in hit[:PAGE_LIMIT]]}

    @app.delete("/api/silences/{silence_id}", response_model=SilenceOut, tags=["silences"])
    def expire_silence(silence_id: str, store: StoreDep, _user: Deleter) -> SilenceOut:
        """End a silence now (it is kept, expired, for the record)."""
        t = now()
        if not store.expire_silence(silence_id, t):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no unexpired silence has id {silence_id!r}")
        silence = next(s for s in store.silences() if s.id == silence_id)
        return SilenceOut.of(silence, t)

    # --- the alerts page's bundle (the plugin's react_apps entry loads it) ---------------------
    @app.get("/ui/{name}", include_in_schema=False)
    def ui_file(name: str) -> FileResponse:
        """The built page (code only, no data: served without login, as Airflow's own assets)."""
        if name not in UI_FILES or not (UI_DIST / name).is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no UI file {name!r}: run make ui")
        return FileResponse(UI_DIST / name, media_type="text/javascript",
                            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    return app
