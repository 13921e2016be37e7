"""The shop API application: the simulated shop's tables served as a platform API serves them.

Endpoints (all JSON; errors are ``{"error": message}``):

- ``GET /healthz`` - liveness; no token, never throttled.
- ``GET /v1/tables`` - the tables served, with their columns, key and change-tracking column.
- ``GET /v1/{table}`` - rows of one table, ordered by (``updated_field``, key columns), in pages.
  Query parameters: ``updated_since`` (rows with ``updated_field >=`` it), ``updated_before``
  (``<`` it), ``shop_id``, ``limit`` (1..5000, default 500) and ``cursor`` (the previous page's
  ``next_cursor``; only valid with the same filters). Tables without an ``updated_field``
  (``shops``) are ordered by key and ignore the time filters.
- ``GET|PUT /v1/_admin/clock`` - read or move ``as_of``: the shop is served as it was at that
  moment (each row's version of then, rows created later hidden: ``versions``), so a test can
  make data "arrive" later. A live shop's clock moves ``as_of`` on every request; a PUT pins it,
  ``{"as_of": "live"}`` follows the clock again.

Values: timestamps are ISO 8601 UTC with ``Z``; money (``NUMERIC``) is a string with two
decimals, so it stays exact; integers are integers; NULL is null.

Pagination is by keyset: the cursor carries the last row's (``updated_field``, key) values and
a hash of the filters, so pages never skip or repeat a row, a retried request returns the same
page, and a cursor used with other filters is refused. SQL is built from ``warehouse.schema``
names only; every value from the request is a bound parameter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from threshold_operators.shop_api.faults import FaultPolicy
from threshold_operators.shop_api.versions import History, quote, read_histories, served_rows
from threshold_operators.warehouse.hook import connect_duckdb
from threshold_operators.warehouse.schema import TABLE_NAMES, TableSpec, table_spec

DEFAULT_LIMIT = 500
MAX_LIMIT = 5000
CENT = Decimal("0.01")


class ApiError(Exception):
    """A request the API refuses: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class Clock(Protocol):
    """What a live clock offers the API (``simulator.live.LiveClock``): the data time now."""

    def now(self) -> datetime: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class ShopState:
    """What the running API holds: the open file, its faults, its token and its clock.

    ``as_of`` is a fixed moment (``None``: the shop as it stands); with a ``clock`` that is not
    pinned, every request reads the clock instead (a live shop).
    """

    con: Any
    tables: dict[str, TableSpec]
    faults: FaultPolicy | None
    token: str | None
    as_of: datetime | None
    histories: dict[str, History] = field(default_factory=dict)
    clock: Clock | None = None
    pinned: bool = False

    @property
    def live(self) -> bool:
        return self.clock is not None and not self.pinned

    def current_as_of(self) -> datetime | None:
        return as_utc(self.clock.now()) if self.live else self.as_of


# --- values ------------------------------------------------------------------------------------
def parse_timestamp(value: str, name: str) -> datetime:
    """An ISO 8601 timestamp from the request, in UTC (no offset means UTC)."""
    try:
        ts = datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        hint = " (a '+' in a URL must be encoded as %2B)" if " " in value.strip() else ""
        raise ApiError(
            400, f"{name}: {value!r} is not an ISO 8601 timestamp such as 2024-05-01T08:00:00Z{hint}"
        ) from None
    return as_utc(ts)


def as_utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def format_timestamp(ts: datetime) -> str:
    return as_utc(ts).isoformat().replace("+00:00", "Z")


def json_value(value: Any) -> Any:
    """A warehouse value as the API shows it."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, Decimal):
        return str(value.quantize(CENT))
    return value


# --- cursors -----------------------------------------------------------------------------------
def order_columns(spec: TableSpec) -> tuple[str, ...]:
    """Columns a page is ordered by: the change-tracking column, then the key."""
    if spec.updated_field is None:
        return spec.key
    return (spec.updated_field, *(k for k in spec.key if k != spec.updated_field))


def filters_hash(
    table: str, updated_since: datetime | None, updated_before: datetime | None, shop_id: str | None
) -> str:
    blob = json.dumps(
        [
            table,
            format_timestamp(updated_since) if updated_since else None,
            format_timestamp(updated_before) if updated_before else None,
            shop_id,
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def encode_cursor(after: tuple[Any, ...], filters: str) -> str:
    values = [
        format_timestamp(v) if isinstance(v, datetime) else str(v) if isinstance(v, Decimal) else v
        for v in after
    ]
    raw = json.dumps({"after": values, "filters": filters}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(raw: str, spec: TableSpec, filters: str) -> tuple[Any, ...]:
    """The (updated_field, key) values a cursor points after; 400 if malformed or for other filters."""
    columns = order_columns(spec)
    malformed = ApiError(400, "cursor is malformed: pass back the next_cursor of the previous page unchanged")
    try:
        payload = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        after, issued_for = payload["after"], payload["filters"]
    except (ValueError, TypeError, KeyError):
        raise malformed from None
    if not isinstance(after, list) or len(after) != len(columns) or not isinstance(issued_for, str):
        raise malformed
    if issued_for != filters:
        raise ApiError(
            400,
            "cursor was issued for other filters (table, updated_since, updated_before or shop_id): "
            "repeat the first page's filters with it, or start again without a cursor",
        )
    values: list[Any] = []
    for column, value in zip(columns, after, strict=True):
        if column in spec.timestamp_columns:
            if not isinstance(value, str):
                raise malformed
            try:
                values.append(as_utc(datetime.fromisoformat(value)))
            except ValueError:
                raise malformed from None
        elif isinstance(value, str | int) and not isinstance(value, bool):
            values.append(value)
        else:
            raise malformed
    return tuple(values)


# --- queries -----------------------------------------------------------------------------------
def page_query(
    spec: TableSpec,
    *,
    updated_since: datetime | None,
    updated_before: datetime | None,
    as_of: datetime | None,
    shop_id: str | None,
    after: tuple[Any, ...] | None,
    limit: int,
    history: History | None = None,
) -> tuple[str, list[Any]]:
    """SQL and parameters for one page; fetches ``limit + 1`` rows to tell whether more follow.

    The rows are those served at ``as_of`` (``versions.served_rows``: each key's version of that
    moment); the filters, the order and the cursor apply to the version served.
    """
    source, params = served_rows(spec, history, as_of, updated_since=updated_since)
    where: list[str] = []
    updated = spec.updated_field
    if updated is not None and updated_before is not None:
        where.append(f"{quote(updated)} < ?")
        params.append(updated_before)
    if shop_id is not None:
        where.append(f"{quote('shop_id')} = ?")
        params.append(shop_id)
    ordered = ", ".join(quote(c) for c in order_columns(spec))
    if after is not None:
        where.append(f"({ordered}) > ({', '.join('?' for _ in after)})")
        params.extend(after)
    sql = f"SELECT {', '.join(quote(c) for c in spec.columns)} FROM ({source}) AS served"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {ordered} LIMIT ?"
    params.append(limit + 1)
    return sql, params


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit: {raw!r} must be an integer from 1 to {MAX_LIMIT}")
    return limit


def served_tables(con: Any) -> dict[str, TableSpec]:
    """The schema's tables present in the file (an older file may lack newer tables)."""
    present = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    return {name: table_spec(name) for name in TABLE_NAMES if name in present}


def read_page(
    state: ShopState,
    table: str,
    *,
    updated_since: str | None = None,
    updated_before: str | None = None,
    shop_id: str | None = None,
    limit: str | None = None,
    cursor: str | None = None,
) -> dict[str, Any]:
    """One page of ``table`` as the API answers it, from the raw query parameters."""
    spec = state.tables.get(table)
    if spec is None:
        why = "is not in the shop's data file" if table in TABLE_NAMES else "does not exist"
        raise ApiError(404, f"table {table!r} {why}; GET /v1/tables lists the tables served")
    size = parse_limit(limit)
    since = parse_timestamp(updated_since, "updated_since") if updated_since is not None else None
    before = parse_timestamp(updated_before, "updated_before") if updated_before is not None else None
    if spec.updated_field is None:
        since = before = None
    if shop_id is not None and "shop_id" not in spec.columns:
        raise ApiError(400, f"shop_id: table {table!r} has no shop_id column")
    filters = filters_hash(table, since, before, shop_id)
    after = decode_cursor(cursor, spec, filters) if cursor is not None else None
    sql, args = page_query(
        spec,
        updated_since=since,
        updated_before=before,
        as_of=state.current_as_of(),
        shop_id=shop_id,
        after=after,
        limit=size,
        history=state.histories.get(table),
    )
    cur = state.con.cursor()
    try:
        rows = cur.execute(sql, args).fetchall()
    finally:
        cur.close()
    has_more = len(rows) > size
    rows = rows[:size]
    next_cursor = None
    if has_more:
        last = dict(zip(spec.columns, rows[-1], strict=True))
        next_cursor = encode_cursor(tuple(last[c] for c in order_columns(spec)), filters)
    return {
        "table": table,
        "data": [{c: json_value(v) for c, v in zip(spec.columns, row, strict=True)} for row in rows],
        "next_cursor": next_cursor,
        "has_more": has_more,
    }


# --- the application ---------------------------------------------------------------------------
def create_app(
    source_path: str,
    faults: FaultPolicy | None = None,
    token: str | None = None,
    as_of: datetime | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """The shop API over the DuckDB file ``source_path`` (opened once, read-only).

    :param faults: rate limit and server errors injected into data requests.
    :param token: when set, every ``/v1`` request needs ``Authorization: Bearer <token>``.
    :param as_of: serve the shop as it was at this moment (movable at run time via the admin clock).
    :param clock: a live clock read on every request (``as_of`` ignored); ``PUT /v1/_admin/clock``
        pins a moment, ``{"as_of": "live"}`` follows the clock again.
    """
    con = connect_duckdb(str(source_path), read_only=True)
    state = ShopState(
        con=con,
        tables=served_tables(con),
        faults=faults,
        token=token,
        as_of=as_utc(as_of) if as_of is not None else None,
        histories=read_histories(con),
        clock=clock,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            yield
        finally:
            con.close()

    app = FastAPI(title="Storefence shop API", version="1", lifespan=lifespan)
    app.state.shop = state

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"invalid request: {exc.errors()}"}, status_code=400)

    def require_token(request: Request) -> None:
        if state.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), state.token.encode()
        ):
            raise ApiError(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def inject_faults() -> None:
        if state.faults is None:
            return
        fault = state.faults.check()
        if fault is None:
            return
        status, retry_after = fault
        if status == 429:
            raise ApiError(
                429,
                f"rate limit exceeded ({state.faults.rate_limit} requests/s): retry after {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )
        raise ApiError(status, f"simulated platform failure (HTTP {status}); retry the request")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])

    @v1.get("/tables")
    def list_tables() -> list[dict[str, Any]]:
        return [
            {"name": s.name, "columns": list(s.columns), "key": list(s.key), "updated_field": s.updated_field}
            for s in state.tables.values()
        ]

    @v1.get("/_admin/clock")
    def get_clock() -> dict[str, Any]:
        as_of = state.current_as_of()
        out: dict[str, Any] = {"as_of": format_timestamp(as_of) if as_of else None}
        if state.clock is not None:
            out |= {"live": state.live, "clock": state.clock.describe()}
        return out

    @v1.put("/_admin/clock")
    async def put_clock(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, 'body must be JSON: {"as_of": "<ISO 8601 timestamp>" or null}') from None
        if not isinstance(body, dict) or "as_of" not in body:
            raise ApiError(400, 'body must be {"as_of": "<ISO 8601 timestamp>" or null}')
        raw = body["as_of"]
        if raw is not None and not isinstance(raw, str):
            raise ApiError(400, f"as_of: {raw!r} is not an ISO 8601 timestamp string or null")
        if raw == "live":
            if state.clock is None:
                raise ApiError(400, 'as_of: "live" needs a live shop (storefence live-shop serve)')
            state.pinned = False
            return get_clock()
        state.as_of = parse_timestamp(raw, "as_of") if raw is not None else None
        state.pinned = True
        return get_clock()

    @v1.get("/{table}", dependencies=[Depends(inject_faults)])
    def read_table(
        table: str,
        updated_since: str | None = None,
        updated_before: str | None = None,
        shop_id: str | None = None,
        limit: str | None = None,
        cursor: str | None = None,
    ) -> JSONResponse:
        page = read_page(
            state,
            table,
            updated_since=updated_since,
            updated_before=updated_before,
            shop_id=shop_id,
            limit=limit,
            cursor=cursor,
        )
        return JSONResponse(page)

    app.include_router(v1)
    return app
