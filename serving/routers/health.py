"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.deps import ServicesDep
from serving.schemas import Health

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=Health)
def live() -> Health:
    """The process is up."""
    return Health(status="live")


@router.get("/ready", response_model=Health, responses={503: {"model": Health}})
def ready(services: ServicesDep) -> JSONResponse:
    """Ready only when the online store and every configured model are loaded and warmed."""
    detail: dict[str, object] = {
        "store_customers": len(services.store) if services.store is not None else 0,
        "churn": services.churn.describe() if services.churn is not None else None,
    }
    if services.last_error:
        detail["last_error"] = services.last_error
    body = Health(status="ready" if services.ready else "not_ready", detail=detail)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if services.ready else 503)
