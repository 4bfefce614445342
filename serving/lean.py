"""A lean route for the storefront's hot path: FastAPI's own handler for everything but the happy path.

Per request, FastAPI's general handler parses the content type with ``email.message``, walks the
dependency graph, parses the JSON with the standard library and validates it again in Python mode,
and records telemetry: about a fifth of a cart answer. A :class:`LeanRoute` serves the common case
itself: a JSON body that validates in one pass of pydantic's JSON mode, the key check called
directly, the endpoint awaited. Everything else goes to FastAPI's own handler, built as usual: no or
another content type, a body that does not validate, dependency overrides (tests). So every error
answer is FastAPI's, and the OpenAPI document comes from the endpoint's signature as for any route.

An endpoint it takes (checked when the route is built, so a misfit fails at start-up): ``async def``,
one pydantic model as the body, optionally the :class:`~starlette.requests.Request`, key checks made
by :class:`serving.deps.KeyCheck`, nothing else; it returns a :class:`~starlette.responses.Response`.
Dependencies added when a router is included (``include_router(dependencies=...)``) are not seen.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from serving.deps import KeyCheck

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class LeanRoute(APIRoute):
    """An :class:`APIRoute` that answers valid JSON requests without FastAPI's general machinery."""

    def get_route_handler(self) -> Handler:
        standard = super().get_route_handler()
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

        async def handler(request: Request) -> Response:
            content_type = request.headers.get("content-type", "")
            if content_type.partition(";")[0].strip().lower() != "application/json" or request.app.dependency_overrides:
                return await standard(request)
            raw = await request.body()  # cached on the request: the standard handler can read it again
            try:
                body = model.model_validate_json(raw)
            except ValidationError:
                return await standard(request)  # FastAPI's own 422 (or a key error first, as FastAPI orders them)
            kwargs: dict[str, Any] = {body_name: body}
            if request_name is not None:
                kwargs[request_name] = request
            for name, check in checks:
                kwargs[name] = await check.of(request)
            response = await endpoint(**kwargs)
            if not isinstance(response, Response):
                raise TypeError(f"LeanRoute {self.path}: the endpoint must return a Response")
            return response

        return handler
