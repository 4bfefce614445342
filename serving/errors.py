"""Domain errors inside, HTTP at the edge: every error answer has the same body.

    {"error": {"status": 422, "code": "invalid_request", "message": "body.customer_ids: ..."},
     "request_id": "...", "detail": [{"loc": [...], "msg": "...", "type": "..."}]}

``detail`` (validation errors only) never echoes the rejected input: it may be personal data. A 5xx
answer carries a stable code and a fixed message, never the internal error (paths, exception text): that
goes to the operator's log, under the same request id.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from features.errors import KairosError
from serving.middleware import error_body
from serving.observability import request_id_var
from serving.security import ApiError

log = logging.getLogger("kairos.serving")

_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 406: "not_acceptable", 415: "unsupported"}


def _respond(status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    body = error_body(status, code, message, request_id_var.get(), **extra)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return _respond(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        where = ".".join(str(p) for p in detail[0]["loc"]) if detail else ""
        msg = str(detail[0]["msg"]) if detail else "invalid request"
        return _respond(422, "invalid_request", f"{where}: {msg}" if where else msg, detail=detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = _CODES.get(exc.status_code, "http_error")
        return _respond(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(KairosError)
    async def domain_error(_: Request, exc: KairosError) -> Response:
        log.error("domain error", extra={"error_type": type(exc).__name__, "reason": str(exc)})
        return _respond(
            503, "unavailable", "a service this answer needs is unavailable; retry later", {"Retry-After": "5"}
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        log.error("unhandled error", extra={"error_type": type(exc).__name__})
        return _respond(500, "internal_error", "internal error; quote the request id when reporting it")
