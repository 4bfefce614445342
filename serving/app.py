"""The app factory. The lifespan opens the online store and loads every configured model into app state."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from serving import errors
from serving.deps import KeyCheck, operational
from serving.lean import LeanDispatch
from serving.middleware import EdgeMiddleware
from serving.monitoring import MonitoringCollector, latest_summary_path
from serving.observability import Metrics, setup_logging
from serving.routers import (
    admin,
    audiences,
    campaigns,
    channels,
    customers,
    decisions,
    events,
    health,
    models,
    offers,
    recs,
    scores,
)
from serving.settings import OpenEndpoint, Settings, get_settings
from serving.state import Services

DESCRIPTION = """
Scores (churn, purchase, engagement per channel, P(alive), CLV, bands, reasons), profiles,
recommendations, decisions (contact permission, send time, next-best offer) and real-time events.

**Keys.** Send an API key in `X-API-Key`. Scopes: `storefront` (recommendations, behavioural events),
`campaign` (scores, profiles, permissions, send time, offers, sends), `consent` (consent changes),
`admin` (models, reload, metrics, readiness detail, and every other scope but `pii`), `pii` (profiles
include personal data; never implied by admin). 401 without a valid key, 403 without the scope, 429
with `Retry-After` past the key's rate. This document needs a key in production. In development
(`kairos serve --dev`), with no keys configured, the demo key `kairos-demo-key` has every scope.

**Answers.** Every answer names the model version(s) that produced it, a `request_id` (also the
`X-Request-ID` header; send your own to correlate), `degraded` and `source` (`model` or `fallback`).
Batch answers keep input order with a status per item and never drop one. Errors share one body:
`{"error": {"status", "code", "message"}, "request_id"}`.
"""


def app_version() -> str:
    """The installed package's version (``pyproject.toml``); ``0+unknown`` when run from a source tree
    that is not installed."""
    try:
        return version("kairos")
    except PackageNotFoundError:
        return "0+unknown"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the Kairos API. Models load in the lifespan, off the event loop; a failed load leaves the app
    live but not ready (``/health/ready`` answers 503 with the reason)."""
    settings = settings or get_settings()
    metrics = Metrics()
    metrics.registry.register(MonitoringCollector(latest_summary_path(settings.data_home)))  # kairos monitor
    if settings.log_json:
        setup_logging()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services(settings, metrics)
        app.state.services = services
        await run_in_threadpool(services.start)
        # Everything loaded so far (libraries, models, tables) lives as long as the process: out of the
        # collector's sight, a full collection no longer walks it (pauses of a quarter second, measured).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            services.stop()
            await services.stop_async()
            gc.unfreeze()  # what this app held may be collected again (tests start many apps in one process)

    app = FastAPI(
        title="Kairos",
        version=app_version(),
        summary="Customer scores, recommendations and decisions for CRM marketing.",
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry only when asked for: otherwise every request pays for looking up
        # the global providers (serving/settings.py)
        telemetry=None if settings.otel else {"tracing": False, "metrics": False, "logs": False},
        # the app's own documentation routes below: behind a key unless KAIROS_OPEN_ENDPOINTS opens them
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    errors.install(app)
    app.add_middleware(LeanDispatch)  # inside the edge: ids, size limit, metrics and logs apply as to any route
    app.add_middleware(EdgeMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    for module in (
        recs,
        health,
        scores,
        customers,
        decisions,
        offers,
        campaigns,
        events,
        models,
        admin,
        audiences,
        channels,
    ):
        app.include_router(module.router)
    app.include_router(health.metrics_router(settings))
    app.include_router(_docs_router(app, settings))
    if settings.console:  # the marketer's console (docs/console.md): HTML pages, signed-in sessions
        from serving.console import install

        install(app, settings)
    return app


def _docs_router(app: FastAPI, settings: Settings) -> APIRouter:
    """``/openapi.json``, ``/docs`` and ``/redoc`` as FastAPI serves them: any valid key, unless
    ``KAIROS_OPEN_ENDPOINTS`` opens them (by default in development). The UIs fetch ``/openapi.json``
    without a key: where it needs one, a browser must send the header (or read the document with curl)."""
    keyed = operational(settings.is_open(OpenEndpoint.DOCS), KeyCheck())
    router = APIRouter(include_in_schema=False, dependencies=keyed)

    @router.get("/openapi.json")
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs")
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - Swagger UI")

    @router.get("/redoc")
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")

    return router
