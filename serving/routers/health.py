"""Liveness, readiness and Prometheus metrics.

Liveness and readiness' status answer without a key (the orchestrator and the load balancer send none);
readiness' detail (model versions, checksums, customer count, load errors) needs an admin key, and
``/metrics`` (key names, versions) an admin key too, unless ``KAIROS_OPEN_ENDPOINTS`` opens them (by
default only in development).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.deps import KeyCheck, MaybeAdmin, ServicesDep, operational
from serving.keys import Scope
from serving.routers.common import ERRORS
from serving.schemas import Health
from serving.settings import OpenEndpoint, Settings

router = APIRouter(tags=["health"])


@router.get("/health/live", response_model=Health)
def live() -> Health:
    """The process is up."""
    return Health(status="live")


@router.get("/health/ready", response_model=Health, responses={503: {"model": Health}})
def ready(services: ServicesDep, admin: MaybeAdmin) -> JSONResponse:
    """Ready only when the online store is open and every configured model is loaded, verified and warmed.

    The status for anyone; the detail (store, models, last error) only for an admin key, or for anyone when
    readiness is an open endpoint."""
    status, code = ("ready", 200) if services.ready else ("not_ready", 503)
    if admin is None and not services.settings.is_open(OpenEndpoint.READINESS):
        return JSONResponse(Health(status=status).model_dump(mode="json"), status_code=code)
    detail: dict[str, object] = {
        "store": services.store.kind,
        "store_customers": services.store.size(),
        "models": {
            kind: (slot.current.ref() | {"source": slot.current.source}) if slot.current is not None else None
            for kind, slot in services.slots.items()
        },
    }
    if services.last_error:
        detail["last_error"] = services.last_error
    return JSONResponse(Health(status=status, detail=detail).model_dump(mode="json"), status_code=code)


def metrics(services: ServicesDep) -> Response:
    """Prometheus exposition: latency per route, loaded model versions, fallbacks, errors, reloads."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def metrics_router(settings: Settings) -> APIRouter:
    """``GET /metrics``: an admin key, unless ``KAIROS_OPEN_ENDPOINTS`` opens it (by default in development)."""
    is_open = settings.is_open(OpenEndpoint.METRICS)
    keyed = operational(is_open, KeyCheck(Scope.ADMIN))
    scraped = APIRouter(tags=["health"], dependencies=keyed, responses={} if is_open else ERRORS)
    scraped.add_api_route(
        "/metrics", metrics, methods=["GET"], response_class=Response, responses={200: {"content": {"text/plain": {}}}}
    )
    return scraped
