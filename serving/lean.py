"""A lean path for the storefront's hot route: FastAPI's own machinery for everything but the happy path.

Per request, Starlette routes by matching the path against every route in turn, and FastAPI's general
handler parses the content type with ``email.message``, walks the dependency graph, parses the JSON with
the standard library and validates it again in Python mode, and records telemetry (skipping it all took
the cart from 1,973 to 2,604 answers a second; docs/performance.md). A :class:`LeanRoute` has a lean
handler that serves the common case itself: a JSON body that validates in one pass of pydantic's JSON
mode, the key check called directly, the endpoint awaited. :class:`LeanDispatch`, an ASGI middleware,
hands a POST to a lean route's exact path straight to that handler, before Starlette's routing.

Everything else goes to FastAPI's own handler, built as usual: no or another content type, a body that
does not validate, dependency overrides (tests). So every error answer is FastAPI's or the app's own
exception handler's, and the OpenAPI document comes from the endpoint's signature as for any route.
Without the middleware, or included with dependencies of its own, the route is an ordinary route.

An endpoint it takes (checked when the route is built, so a misfit fails at start-up): ``async def``,
one pydantic model as the body, optionally the :class:`~starlette.requests.Request`, key checks made
by :class:`serving.deps.KeyCheck`, nothing else; it returns a :class:`~starlette.responses.Response`.
A route included with dependencies (``include_router(dependencies=...)``) is left to FastAPI, which runs them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.deps import KeyCheck
from serving.middleware import replay_body

LeanHandler = Callable[[Request], Coroutine[Any, Any, Response | None]]


class LeanRoute(APIRoute):
    """An :class:`APIRoute` with a lean handler (:attr:`lean`) for valid JSON requests, which
    :class:`LeanDispatch` calls; routed the usual way, it is an ordinary route."""

    lean: LeanHandler  # the answer to a valid JSON request; None when FastAPI's own handler must answer

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.lean = self._lean_handler()

    def _lean_handler(self) -> LeanHandler:
        d = self.dependant
        if not inspect.iscoroutinefunction(self.endpoint):
            raise TypeError(f"LeanRoute {self.path}: the endpoint must be async def")
        if d.path_params or d.query_params or d.header_params or d.cookie_params or len(d.body_params) != 1:
            raise TypeError(f"LeanRoute {self.path}: the endpoint may take one body model and no other parameters")
        body_param = d.body_params[0]
        model = body_param.field_info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or self._embed_body_fields:
            raise TypeError(f"LeanRoute {self.path}: the body must be one pydantic model, not embedded")
        checks: list[tuple[str, KeyCheck]] = []
        for sub in d.dependencies:
            if not isinstance(sub.call, KeyCheck) or sub.name is None:
                raise TypeError(f"LeanRoute {self.path}: only serving.deps.KeyCheck checks may be dependencies")
            checks.append((sub.name, sub.call))
        body_name, request_name, endpoint = body_param.name, d.request_param_name, self.endpoint

        async def lean(request: Request) -> Response | None:
            content_type = request.headers.get("content-type", "")
            if content_type.partition(";")[0].strip().lower() != "application/json" or request.app.dependency_overrides:
                return None
            raw = await request.body()  # cached on the request: the standard handler can read it again
            try:
                body = model.model_validate_json(raw)
            except ValidationError:
                return None  # FastAPI's own 422 (or a key error first, as FastAPI orders them)
            kwargs: dict[str, Any] = {body_name: body}
            if request_name is not None:
                kwargs[request_name] = request
            for name, check in checks:
                kwargs[name] = await check.of(request)
            response = await endpoint(**kwargs)
            if not isinstance(response, Response):
                raise TypeError(f"LeanRoute {self.path}: the endpoint must return a Response")
            return response

        return lean


class LeanDispatch:
    """ASGI middleware: a POST to a :class:`LeanRoute`'s path goes to its lean handler before any routing.

    What the lean handler declines goes on to the app, with the body it read replayed. An exception it
    raises gets the app's own handler for it (as FastAPI's exception middleware would); one without a
    handler propagates, to the server-error handler as from any route. Routes are read from the app on
    the first request (routes with path parameters are not taken).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes: dict[str, LeanRoute] | None = None
        self._handlers: dict[Any, Callable[..., Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            routes = self._routes if self._routes is not None else self._read(scope["app"])
            route = routes.get(scope["path"])
            if route is not None:
                await self._serve(route, scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _read(self, app: Any) -> dict[str, LeanRoute]:
        routes: dict[str, LeanRoute] = {}
        contexts = list(iter_route_contexts(app.routes))  # routes of included routers too, with their prefixes
        for ctx in contexts:
            route = ctx.original_route
            if not isinstance(route, LeanRoute) or ctx.param_convertors or ctx.path is None:
                continue
            if list(ctx.dependencies) != list(route.dependencies):
                continue  # dependencies added by include_router: only FastAPI's own handler runs them
            probe = {"type": "http", "path": ctx.path, "root_path": "", "method": "POST"}
            first = next((c for c in contexts if c.matches(probe)[0] == Match.FULL), None)
            if first is not None and first.original_route is route:  # the route the router would pick
                routes[ctx.path] = route
        # Exception and 500 belong to the server-error middleware outside this one, as for every route
        self._handlers = {k: v for k, v in app.exception_handlers.items() if k not in (Exception, 500)}
        self._routes = routes
        return routes

    async def _serve(self, route: LeanRoute, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        scope["route"] = route  # as the router sets it: the route template names the metrics
        try:
            response = await route.lean(request)
        except Exception as exc:
            handler = next((self._handlers[c] for c in type(exc).__mro__ if c in self._handlers), None)
            if handler is None:
                raise
            if inspect.iscoroutinefunction(handler):
                response = await handler(request, exc)
            else:
                response = await run_in_threadpool(handler, request, exc)
        if response is None:
            await self.app(scope, replay_body(await request.body(), receive), send)
            return
        await response(scope, receive, send)
