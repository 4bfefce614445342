"""Dependencies shared by the routers."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from serving.state import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def ready_services(services: Annotated[Services, Depends(get_services)]) -> Services:
    """The services, or 503 while no model is loaded (readiness tells the truth)."""
    if not services.ready:
        raise HTTPException(status_code=503, detail=services.last_error or "no model loaded yet")
    return services


def request_id(request: Request) -> str:
    """The caller's X-Request-ID when sane, else a fresh one."""
    given = request.headers.get("x-request-id", "")
    return given if 0 < len(given) <= 64 and given.isascii() and given.isprintable() else uuid.uuid4().hex


ServicesDep = Annotated[Services, Depends(get_services)]
ReadyDep = Annotated[Services, Depends(ready_services)]
RequestIdDep = Annotated[str, Depends(request_id)]
