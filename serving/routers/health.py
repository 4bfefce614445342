"""Liveness, readiness and Prometheus metrics (no key needed: for the orchestrator and the scraper)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.deps import ServicesDep
from serving.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health/live", response_model=Health)
def live() -> Health:
    """The process is up."""
    return Health(status="live")


@router.get("/health/ready", response_model=Health, responses={503: {"model": Health}})
def ready(services: ServicesDep) -> JSONResponse:
    """Ready only when the online store is open and every configured model is loaded, verified and warmed."""
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
    body = Health(status="ready" if services.ready else "not_ready", detail=detail)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if services.ready else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(services: ServicesDep) -> Response:
    """Prometheus exposition: latency per route, loaded model versions, fallbacks, errors, reloads."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
