"""Dependencies shared by the routers: services, the request id, the caller's key and scopes."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from bundles.base import ModelBundle
from serving.keys import Principal, Scope
from serving.observability import request_id_var
from serving.security import ApiError, retry_after
from serving.state import Services

log = logging.getLogger("kairos.serving")

KEY_HEADER = "X-API-Key"
api_key_header = APIKeyHeader(
    name=KEY_HEADER, auto_error=False, description="An API key; its scopes decide which endpoints it may call."
)


# The dependencies are ``async def``: trivial and non-blocking, they run on the event loop. A plain ``def``
# dependency would cost a threadpool hop each, per request (FastAPI runs sync dependencies in threads).


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def request_id() -> str:
    """The request id the middleware chose (the caller's X-Request-ID when sane, else a fresh one)."""
    return request_id_var.get()


ServicesDep = Annotated[Services, Depends(get_services)]
RequestIdDep = Annotated[str, Depends(request_id)]


class KeyCheck:
    """A dependency: the caller's key must be valid (401) and hold one of ``scopes`` (403); then its rate (429).

    With no ``scopes``, any valid key will do.
    """

    def __init__(self, *scopes: Scope) -> None:
        self.scopes = scopes

    async def __call__(self, request: Request, key: str | None = Security(api_key_header)) -> Principal:
        services: Services = request.app.state.services
        if not key:
            raise ApiError(401, "unauthorized", "missing API key (header X-API-Key)", {"WWW-Authenticate": "ApiKey"})
        found = services.keys.identify(key)
        if found is None:
            raise ApiError(401, "unauthorized", "invalid API key", {"WWW-Authenticate": "ApiKey"})
        principal, rate = found
        request.state.key_name = principal.name
        if self.scopes and not any(principal.allows(s) for s in self.scopes):
            wanted = " or ".join(s.value for s in self.scopes)
            raise ApiError(403, "forbidden", f"this key lacks the {wanted} scope")
        wait = await services.limiter.take_async(principal.name, rate)
        if wait > 0:
            services.metrics.rate_limited.labels(principal.name).inc()
            raise ApiError(429, "rate_limited", "too many requests for this key", {"Retry-After": retry_after(wait)})
        return principal

    async def of(self, request: Request) -> Principal:
        """The check on ``request`` called directly (what FastAPI does with the key header it reads)."""
        return await self(request, request.headers.get(KEY_HEADER))


Storefront = Annotated[Principal, Depends(KeyCheck(Scope.STOREFRONT))]
Campaign = Annotated[Principal, Depends(KeyCheck(Scope.CAMPAIGN))]
Events = Annotated[Principal, Depends(KeyCheck(Scope.STOREFRONT, Scope.CAMPAIGN))]
Admin = Annotated[Principal, Depends(KeyCheck(Scope.ADMIN))]


async def admin_or_none(request: Request) -> Principal | None:
    """The caller when its key is valid and holds admin, else None: never an error (readiness must answer the
    orchestrator, which sends no key, whatever it sends). The header is read here, not declared: the document
    does not claim that readiness needs a key."""
    services: Services = request.app.state.services
    key = request.headers.get(KEY_HEADER)
    found = services.keys.identify(key) if key else None
    if found is None or not found[0].allows(Scope.ADMIN):
        return None
    request.state.key_name = found[0].name
    return found[0]


def operational(open_: bool, check: KeyCheck) -> list[Any]:
    """The dependencies of an operational endpoint (metrics, documentation): none when the settings open it
    (``KAIROS_OPEN_ENDPOINTS``; by default only in development), else ``check``. Chosen when the app is built,
    so the OpenAPI document says which it is."""
    return [] if open_ else [Depends(check)]


MaybeAdmin = Annotated[Principal | None, Depends(admin_or_none)]


def model_of(services: Services, kind: str) -> ModelBundle:
    """The bundle serving ``kind`` now, or 503 while none is loaded (readiness tells the truth).

    The caller gets a stable code and a fixed message; why the load failed (paths, exception text) goes to
    the operator's log only, with the request id, and to readiness' detail for an admin key.
    """
    bundle = services.bundle(kind)
    if bundle is None:
        slot = services.slots.get(kind)
        reason = (slot.last_error if slot is not None else None) or "not configured or not loaded yet"
        log.warning("model unavailable", extra={"model": kind, "reason": reason})
        raise ApiError(503, "model_unavailable", f"the {kind} model is not loaded; retry later", {"Retry-After": "5"})
    return bundle
