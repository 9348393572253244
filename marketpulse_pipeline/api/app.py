"""The FastAPI application: every route calls the function of `storage/queries.py` that the
matching `marketpulse` command calls, and answers what that command's `--json` prints.

Handlers are plain `def`: the query functions are blocking psycopg calls, so they run on
Starlette's thread pool, each on a pooled connection. Answers are serialized once, straight from
the frame's columns to bytes (orjson); the response models document them, and the tests hold
real answers to them and to the CLI's `--json`, without a second validation per request.
"""

import enum
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
import pandas as pd
import psycopg
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from psycopg_pool import PoolTimeout
from pydantic import AfterValidator
from starlette.exceptions import HTTPException as StarletteHTTPException

from marketpulse_pipeline.api import models
from marketpulse_pipeline.api.config import ApiSettings
from marketpulse_pipeline.api.metrics import HttpMetrics, PipelineCollector, RequestMetrics
from marketpulse_pipeline.api.pool import POOL_WAIT_S, Pools
from marketpulse_pipeline.api.protocol import HeadAsGet, declared_query
from marketpulse_pipeline.cli.reads import MAX_DAYS, MAX_LIMIT
from marketpulse_pipeline.detectors import ANOMALY_TYPES, METHODS
from marketpulse_pipeline.settings import Settings, SettingsError, parse_symbols, scrub_password
from marketpulse_pipeline.storage import queries
from marketpulse_pipeline.storage.database import SchemaOutdated, resolve_url

MAX_OFFSET = 10_000_000
"""Paging deeper than this is a scan of the whole table per page: narrow the filter instead."""
MAX_BODY_BYTES = 16 * 1024
"""Request bodies are read before the token is checked: a feedback (a label and a note of 2,000
characters) fits; a larger body is refused as it arrives (FastAPI's 413, plain text `Content Too
Large`), never held in memory."""
LABELLED_BY = "api"
"""`labelled_by` of labels given over HTTP (the CLI records the OS user)."""

log = logging.getLogger(__name__)

Method = enum.StrEnum("Method", {name: name for name in METHODS})
AnomalyType = enum.StrEnum("AnomalyType", {name: name for name in ANOMALY_TYPES})


def _one_symbol(text: str | None) -> str | None:
    """One ticker symbol, upper-cased, by the CLI's rule; None stays None (all symbols)."""
    if text is None:
        return None
    try:
        symbols = parse_symbols(text, "symbol")
    except SettingsError:
        raise ValueError(f"{_shown(text)} is not a ticker symbol") from None
    if len(symbols) != 1:
        raise ValueError(f"{_shown(text)} is not one ticker symbol")
    return symbols[0]


def _shown(text: str, at_most: int = 40) -> str:
    """A value quoted back in an error, cut short: a reason, not an echo of the request."""
    return repr(text if len(text) <= at_most else f"{text[:at_most]}…")


SYMBOL_HELP = "one ticker symbol (case does not matter); unknown: 404"
SymbolFilter = Annotated[
    str | None, Query(description=SYMBOL_HELP, examples=["AAPL"]), AfterValidator(_one_symbol)
]
SymbolPath = Annotated[
    str, Path(description=SYMBOL_HELP, examples=["AAPL"]), AfterValidator(_one_symbol)
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"rows at most, 1 to {MAX_LIMIT}")]
Offset = Annotated[
    int,
    Query(ge=0, le=MAX_OFFSET, description="rows to skip: the next page is `offset + limit`"),
]


def _days(default: int) -> Any:
    return Query(default, ge=1, le=MAX_DAYS, description=f"market days back, 1 to {MAX_DAYS}")


ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": models.Problem, "description": "a parameter out of range or malformed"},
    503: {"model": models.Problem, "description": "the database is unreachable or too slow"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": models.Problem, "description": "unknown symbol or id"}
}
NEEDS_TOKEN: dict[int | str, dict[str, Any]] = {
    401: {"model": models.Problem, "description": "no token, or a wrong one"}
}


def _json(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(payload, default=_timestamp),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _timestamp(value: object) -> str | None:
    """What orjson leaves to us: pandas' timestamps, as ISO text (null for NaT) like the CLI's
    `--json`; orjson itself writes dates as ISO text and NaN as null, as the CLI does."""
    if value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _records(frame: pd.DataFrame) -> list[dict]:
    """The rows as `marketpulse <command> --json` prints them; column by column (`tolist` gives
    Python values), a fraction of the cost of `to_dict("records")`."""
    columns = [frame[name].tolist() for name in frame.columns]
    return [dict(zip(frame.columns, row, strict=True)) for row in zip(*columns, strict=True)]


def _page(request: Request, frame: pd.DataFrame, limit: int, offset: int) -> Response:
    """A page of rows; a full page links to the next (`Link: <…>; rel="next"`)."""
    headers = None
    if len(frame) == limit and offset + limit <= MAX_OFFSET:
        following = request.url.include_query_params(offset=offset + limit)
        headers = {"Link": f'<{following}>; rel="next"'}
    return _json(_records(frame), headers=headers)


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"detail": " ".join(detail.split())}, status, headers)


def _presented(token: HTTPAuthorizationCredentials | None, *accepted: str | None) -> bool:
    """Whether the Bearer token is one of `accepted`, compared in constant time (every
    candidate is compared, so the time does not say which one matched)."""
    given = b"" if token is None else token.credentials.encode()
    matches = [hmac.compare_digest(given, t.encode()) for t in accepted if t is not None]
    return token is not None and any(matches)


def create_app(
    settings: Settings, api: ApiSettings | None = None, *, pool_wait_s: float = POOL_WAIT_S
) -> FastAPI:
    """The app over `settings`' database (the embedded server is started here when it is the
    one configured); its pools open when the app starts and close when it stops."""
    api = api or ApiSettings()
    url = resolve_url(settings.database_url, settings.home)
    pools = Pools(
        api.read_database_url or url,
        url if api.write_token else None,
        size=api.pool_size,
        statement_timeout_ms=api.statement_timeout_ms,
        wait_s=pool_wait_s,
    )
    registry = CollectorRegistry()
    registry.register(PipelineCollector(pools, settings.today))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pools.open()
        try:
            yield
        finally:
            pools.close()

    # /docs with Swagger UI's files served from the package, not a CDN, so it works without the
    # internet; no /redoc: ReDoc's page still loads its logo from redoc.ly.
    app = FastAPIOffline(
        redoc_url=None,
        max_body_size=MAX_BODY_BYTES,
        dependencies=[Depends(declared_query)],
        title="MarketPulse",
        version="1",
        summary="Anomalies in daily stock prices: the same answers as `marketpulse` and SQL.",
        lifespan=lifespan,
    )
    app.add_middleware(HeadAsGet)
    app.add_middleware(HttpMetrics, metrics=RequestMetrics(registry))  # outside: sees HEAD
    if api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(api.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    _handle_errors(app, settings)

    bearer = HTTPBearer(auto_error=False, description="MARKETPULSE_API_TOKEN (writes)")

    def reader(token: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> None:
        if not _presented(token, api.read_token, api.write_token):
            raise HTTPException(401, "reads need a Bearer token", {"WWW-Authenticate": "Bearer"})

    def writer(token: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> None:
        if api.write_token is None:
            raise HTTPException(403, "writes are off: the server has no MARKETPULSE_API_TOKEN")
        if not _presented(token, api.write_token):
            raise HTTPException(
                401,
                "writes need `Authorization: Bearer <MARKETPULSE_API_TOKEN>`",
                {"WWW-Authenticate": "Bearer"},
            )

    reads = [Depends(reader)] if api.read_token else []
    read_errors = {**ERRORS, **(NEEDS_TOKEN if api.read_token else {})}
    _read_routes(app, pools, settings, reads, read_errors)
    _write_routes(app, pools, settings, writer)
    _operation_routes(app, pools, settings, registry, reads)
    return app


def _read_routes(
    app: FastAPI,
    pools: Pools,
    settings: Settings,
    reads: list[Any],
    errors: dict[int | str, dict[str, Any]],
) -> None:
    @app.get(
        "/anomalies",
        response_model=list[models.Anomaly],
        responses=errors,
        dependencies=reads,
        tags=["anomalies"],
        summary="Recent anomalies, newest first (`marketpulse anomalies`)",
    )
    def anomalies(
        request: Request,
        symbol: SymbolFilter = None,
        method: Method | None = None,
        anomaly_type: AnomalyType | None = None,
        days: int = _days(7),
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Response:
        with pools.reading() as conn:
            found = queries.recent_anomalies(
                conn,
                symbol=symbol,
                method=method and method.value,
                anomaly_type=anomaly_type and anomaly_type.value,
                days=days,
                limit=limit,
                today=settings.today(),
                offset=offset,
            )
        return _page(request, found, limit, offset)

    @app.get(
        "/anomalies/stats",
        response_model=list[models.StatRow],
        responses=errors,
        dependencies=reads,
        tags=["anomalies"],
        summary="Anomaly counts: the total, per method, symbol, type (`marketpulse stats`)",
    )
    def stats(days: int = _days(30)) -> Response:
        with pools.reading() as conn:
            return _json(_records(queries.anomaly_stats(conn, days, settings.today())))

    @app.get(
        "/anomalies/{anomaly_id}",
        response_model=models.Anomaly,
        responses={**errors, **NOT_FOUND},
        dependencies=reads,
        tags=["anomalies"],
        summary="One anomaly, with its latest label",
    )
    def anomaly(anomaly_id: Annotated[int, Path(ge=-(2**63), le=2**63 - 1)]) -> Response:
        with pools.reading() as conn:
            return _json(_records(queries.anomaly_by_id(conn, anomaly_id))[0])

    @app.get(
        "/alerts",
        response_model=list[models.Alert],
        responses={**errors, **NOT_FOUND},
        dependencies=reads,
        tags=["alerts"],
        summary="Recent alerts, the rare sessions, newest first (`marketpulse alerts --json`)",
    )
    def alerts(
        request: Request,
        symbol: SymbolFilter = None,
        days: int = _days(30),
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Response:
        with pools.reading() as conn:
            found = queries.recent_alerts(
                conn,
                symbol=symbol,
                days=days,
                limit=limit,
                today=settings.today(),
                offset=offset,
            )
        return _page(request, found, limit, offset)

    @app.get(
        "/stocks/{symbol}/latest",
        response_model=models.LatestBar,
        responses={**errors, **NOT_FOUND},
        dependencies=reads,
        tags=["stocks"],
        summary="A symbol's latest bar (`marketpulse latest`)",
    )
    def latest(symbol: SymbolPath) -> Response:
        with pools.reading() as conn:
            return _json(_records(queries.latest_price(conn, symbol))[0])

    @app.get(
        "/stocks/{symbol}/history",
        response_model=list[models.Bar],
        responses={**errors, **NOT_FOUND},
        dependencies=reads,
        tags=["stocks"],
        summary="A symbol's bars over the last N days, oldest first (`marketpulse history`)",
    )
    def history(symbol: SymbolPath, days: int = _days(30)) -> Response:
        with pools.reading() as conn:
            found = queries.price_history(conn, symbol, days, settings.today())
        return _json(_records(found))


def _write_routes(
    app: FastAPI, pools: Pools, settings: Settings, writer: Callable[..., None]
) -> None:
    @app.post(
        "/anomalies/{anomaly_id}/feedback",
        status_code=201,
        response_model=models.FeedbackRecorded,
        responses={
            **ERRORS,
            **NOT_FOUND,
            **NEEDS_TOKEN,
            403: {"model": models.Problem, "description": "writes are off on this server"},
        },
        dependencies=[Depends(writer)],
        tags=["feedback"],
        summary="Label an anomaly or an alert (`marketpulse label`); needs the write token",
    )
    def feedback(
        anomaly_id: Annotated[int, Path(ge=-(2**63), le=2**63 - 1)], body: models.Feedback
    ) -> Response:
        with pools.writing() as conn:
            recorded = queries.label_anomaly(
                conn, anomaly_id, body.label, body.note, LABELLED_BY, at=settings.now
            )
        return _json(_records(recorded)[0], 201)


def _operation_routes(
    app: FastAPI,
    pools: Pools,
    settings: Settings,
    registry: CollectorRegistry,
    reads: list[Any],
) -> None:
    @app.get(
        "/health",
        response_model=models.Health,
        responses={503: {"model": models.Health, "description": "something is wrong"}},
        tags=["operations"],
        summary="200 when the database answers and every symbol is fresh (`marketpulse health`)",
    )
    def health() -> Response:
        try:
            with pools.reading() as conn:
                found = queries.pipeline_health(conn, list(settings.symbols), settings.now)
        except (psycopg.Error, SchemaOutdated) as error:
            reason = _unavailable(error, settings)
            body = {"status": "unhealthy", "detail": reason, "reasons": [reason], "symbols": []}
            return _json(body, 503)
        problems = queries.health_problems(found)
        body = {
            "status": "unhealthy" if problems else "ok",
            "detail": "; ".join(problems) or None,
            "reasons": problems,
            "symbols": _records(found),
        }
        return _json(body, 503 if problems else 200)

    @app.get(
        "/metrics",
        dependencies=reads,
        tags=["operations"],
        summary="Prometheus text: requests per route and status, the pipeline's gauges",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "metrics"}},
    )
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _unavailable(error: Exception, settings: Settings) -> str:
    """A one-line reason for a client (no host, no server text); the detail goes to the log,
    with any spelling of the database password removed."""
    detail = scrub_password(" ".join(str(error).split()), settings.database_url or "")
    log.warning("database unavailable: %s: %s", type(error).__name__, detail)
    if isinstance(error, SchemaOutdated):
        return str(error)
    if isinstance(error, psycopg.errors.QueryCanceled):
        return "database too slow: the query ran past the statement timeout"
    if isinstance(error, PoolTimeout):
        return "database unreachable: no connection available"
    return "database unreachable"


def _handle_errors(app: FastAPI, settings: Settings) -> None:
    """Every failure answers JSON `{"detail": "<one line>"}`; the process stays up."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> Response:
        parts = []
        for problem in error.errors():
            if problem["type"] == "json_invalid":  # its location is a character position
                parts.append(f"body: invalid JSON ({problem['ctx']['error']})")
                continue
            where = [str(p) for p in problem["loc"] if p not in ("query", "path", "body")]
            reason = problem["msg"].removeprefix("Value error, ")  # pydantic's prefix
            parts.append(f"{'.'.join(where) or 'body'}: {reason}")
        return _problem(422, "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> Response:
        return _problem(error.status_code, str(error.detail), error.headers)

    @app.exception_handler(queries.UnknownError)
    async def unknown(_: Request, error: queries.UnknownError) -> Response:
        return _problem(404, str(error))

    @app.exception_handler(ValueError)
    async def refused(_: Request, error: ValueError) -> Response:
        return _problem(422, str(error))

    @app.exception_handler(SchemaOutdated)
    @app.exception_handler(psycopg.OperationalError)
    async def unavailable(_: Request, error: Exception) -> Response:
        return _problem(503, _unavailable(error, settings))

    @app.exception_handler(psycopg.Error)
    async def database_error(_: Request, error: psycopg.Error) -> Response:
        log.error("database error: %s", type(error).__name__, exc_info=error)
        return _problem(500, f"database error ({type(error).__name__})")

    @app.exception_handler(Exception)
    async def crashed(_: Request, error: Exception) -> Response:
        return _problem(500, f"internal error ({type(error).__name__})")


def app_from_env() -> FastAPI:
    """What `marketpulse serve` hands uvicorn (a factory: each worker builds its own app)."""
    return create_app(Settings.from_env(), ApiSettings.from_env())
