"""The edge: request id, body size limit, latency metrics and one structured access-log line per request.

The access log is the app's own (``kairos serve`` turns uvicorn's off, whose line prints the raw path and
query, and so customer ids): method, route *template*, status, duration, request id and key name. An
exception no handler took is logged here by type and place (file, line, function), never by its message,
which may quote a customer id, and answered with the stable 500 body; the server never sees it.

A plain ASGI middleware (no ``BaseHTTPMiddleware``): it adds no thread hop and buffers at most
``max_body_bytes`` of a body. A body announced larger (Content-Length) is refused before it is read;
a body sent without a length (chunked) is counted as it streams and refused once past the limit.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.observability import Metrics, request_id_var

log = logging.getLogger("kairos.serving.access")


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            try:
                given = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if 0 < len(given) <= 64 and given.isprintable() and " " not in given:
                return given
            break
    return os.urandom(16).hex()  # 32 random hex digits, as a uuid4's, at a quarter of the cost


def error_body(status: int, code: str, message: str, rid: str, **extra: Any) -> bytes:
    """The stable error body every error answer has."""
    return orjson.dumps({"error": {"status": status, "code": code, "message": message}, "request_id": rid, **extra})


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes
        # the histogram's child per (route, method, status), as Prometheus keeps them: labels() costs more than
        # the observation itself
        self._latency: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope.get("headers") or [])
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status_box = [500]
        started_box = [False]
        rid_header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                started_box[0] = True
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        try:
            body_receive = await self._bounded(scope, receive)
            if body_receive is None:
                await self._reject(send_with_id, rid)
            else:
                await self.app(scope, body_receive, send_with_id)
        except Exception as exc:
            # Handed on, it would reach the server's log with its message (a KeyError's is the missing key:
            # perhaps a customer id). Operators get the type and the place; the caller the stable body.
            where = [
                f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in traceback.extract_tb(exc.__traceback__)
            ]
            log.error("unhandled error", extra={"error_type": type(exc).__name__, "frames": where[-8:]})
            status_box[0] = 500
            if not started_box[0]:
                body = error_body(500, "internal_error", "internal error; quote the request id when reporting it", rid)
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send_with_id({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            status = status_box[0]
            series = (template, scope["method"], status)
            child = self._latency.get(series)
            if child is None:
                child = self._latency[series] = self.metrics.latency.labels(template, series[1], str(status))
            child.observe(elapsed)
            if status >= 400:
                self.metrics.errors.labels(f"{status // 100}xx").inc()
            state = scope.get("state") or {}
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": template,  # the template: a raw path could carry a customer id
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "request_id": rid,
                    "key": state.get("key_name"),
                },
            )
            request_id_var.reset(token)

    async def _bounded(self, scope: Scope, receive: Receive) -> Receive | None:
        """A receive that replays the body once it is known to fit; None when it does not."""
        length = None
        for name, value in scope.get("headers") or []:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
                break
        if length is not None and length > self.max_body:
            return None
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE") and not length:
            return receive
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                chunks_message = message  # a disconnect: hand it on
                return replay_body(b"".join(chunks), receive, chunks_message)
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_body:
                return None
            chunks.append(body)
            if not message.get("more_body", False):
                return replay_body(b"".join(chunks), receive)

    async def _reject(self, send: Send, rid: str) -> None:
        body = error_body(413, "payload_too_large", f"request body over {self.max_body} bytes", rid)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def replay_body(body: bytes, receive: Receive, first: Message | None = None) -> Receive:
    """A receive that hands on ``body`` (read already) once, then what ``receive`` gets; ``first`` instead of
    everything when the client left while the body was read."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if first is not None:
            return first
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
