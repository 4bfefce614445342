"""The app factory. The lifespan loads the online store and the champion into app state."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from serving.routers import health, scores
from serving.settings import Settings, get_settings
from serving.state import Services

log = logging.getLogger("kairos.serving")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the Kairos API. Models load in the lifespan, off the event loop; a failed load leaves
    the app live but not ready (``/health/ready`` answers 503 with the reason)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services(settings)
        app.state.services = services
        await run_in_threadpool(services.load)
        yield

    app = FastAPI(
        title="Kairos",
        version="0.1.0",
        summary="Customer scores, recommendations and decisions for CRM marketing.",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(scores.router)
    return app
