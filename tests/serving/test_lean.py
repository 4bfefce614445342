"""The cart's lean route answers exactly as FastAPI's own handler would, and skips it on the happy path;
the lean dispatcher serves it before Starlette's routing and hands on everything else intact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import fastapi.routing
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.testclient import TestClient

from serving import errors
from serving.deps import KeyCheck, get_services
from serving.keys import Scope
from serving.lean import LeanDispatch, LeanRoute
from serving.schemas import CartRequest
from serving.security import ApiError
from tests.serving.conftest import World, api_keys, headers

CART = "/v1/recommendations/cart"


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    with world.client(api_keys=api_keys(), rate_per_second=1e6, rate_burst=1_000_000) as c:
        yield c


def _cases(world: World) -> list[tuple[str, dict[str, str], bytes | None]]:
    """(label, headers, body): valid requests, bad bodies, bad keys, odd content types."""
    shop = headers("storefront") | {"Content-Type": "application/json"}
    items = world.items[:3]

    def js(body: Any) -> bytes:
        return json.dumps(body).encode()

    return [
        ("cart", shop, js({"cart": items, "k": 5})),
        ("customer", shop, js({"cart": items[:1], "customer_id": world.ids[0]})),
        ("filters", shop, js({"cart": items, "filters": {"max_price": 5.0, "exclude": items[1:2]}, "k": 20})),
        ("unknown item", shop, js({"cart": ["no-such-item"]})),
        ("charset", shop | {"Content-Type": "application/json; charset=utf-8"}, js({"cart": items})),
        ("missing cart", shop, js({"k": 3})),
        ("extra field", shop, js({"cart": items, "kk": 3})),
        ("k too big", shop, js({"cart": items, "k": 1000})),
        ("nan price", shop, b'{"cart": ["a"], "filters": {"max_price": NaN}}'),
        ("not json", shop, b'{"cart": ['),
        ("empty body", shop, b""),
        ("array body", shop, b"[1, 2]"),
        ("text content type", shop | {"Content-Type": "text/plain"}, js({"cart": items})),
        ("no key", {"Content-Type": "application/json"}, js({"cart": items})),
        ("bad key", {"Content-Type": "application/json", "X-API-Key": "nope"}, js({"cart": items})),
        ("wrong scope", headers("campaign") | {"Content-Type": "application/json"}, js({"cart": items})),
        ("no key, bad json", {"Content-Type": "application/json"}, b"{"),
    ]


def _answer(client: TestClient, hdrs: dict[str, str], body: bytes | None) -> tuple[int, Any, str | None]:
    r = client.post(CART, content=body, headers=hdrs)
    try:
        payload = r.json()
    except ValueError:
        payload = r.text
    if isinstance(payload, dict):
        payload.pop("request_id", None)
    return r.status_code, payload, r.headers.get("www-authenticate")


def test_lean_route_answers_exactly_as_fastapi(
    world: World, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    solved: list[int] = []
    real = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solved.append(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    app = client.app
    assert isinstance(app, FastAPI)
    cases = _cases(world)
    lean = {label: _answer(client, h, b) for label, h, b in cases}
    lean_solves = len(solved)
    app.dependency_overrides[get_services] = get_services  # any override: every request takes FastAPI's handler
    try:
        standard = {label: _answer(client, h, b) for label, h, b in cases}
    finally:
        app.dependency_overrides.clear()
    for label, *_ in cases:
        assert lean[label] == standard[label], label
    assert lean["cart"][0] == 200 and lean["filters"][0] == 200 and lean["missing cart"][0] == 422
    assert lean["no key"][0] == 401 and lean["wrong scope"][0] == 403 and lean["not json"][0] == 422
    # FastAPI solves dependencies for every request but the 2 unparsable bodies (refused before); the lean
    # route left it only the 9 bodies it could not validate itself, minus those 2
    unparsable = 2
    assert len(solved) - lean_solves == len(cases) - unparsable
    assert lean_solves == 9 - unparsable


def test_lean_route_refuses_endpoints_it_cannot_serve() -> None:
    shop = KeyCheck(Scope.STOREFRONT)

    async def fine(body: CartRequest, request: Request, _: Any = fastapi.Depends(shop)) -> Response:
        return Response(b"{}")

    async def with_query(body: CartRequest, q: int) -> Response:
        return Response(b"{}")

    def sync(body: CartRequest) -> Response:
        return Response(b"{}")

    async def other_dependency(body: CartRequest, services: Any = fastapi.Depends(get_services)) -> Response:
        return Response(b"{}")

    LeanRoute("/ok", fine, methods=["POST"])
    for endpoint in (with_query, sync, other_dependency):
        with pytest.raises(TypeError, match="LeanRoute"):
            LeanRoute("/x", endpoint, methods=["POST"])


def test_dispatcher_serves_the_happy_path_before_routing(
    world: World, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    routed: list[str] = []
    real = fastapi.routing.APIRouter.__call__

    async def counting(self: Any, scope: Any, receive: Any, send: Any) -> None:
        routed.append(scope["path"])
        await real(self, scope, receive, send)

    monkeypatch.setattr(fastapi.routing.APIRouter, "__call__", counting)
    shop = headers("storefront") | {"Content-Type": "application/json"}
    ok = client.post(CART, json={"cart": world.items[:2], "k": 4}, headers=shop)
    assert ok.status_code == 200 and len(ok.json()["items"]) == 4
    assert ok.headers["x-request-id"] == ok.json()["request_id"]
    assert routed == []  # answered by the dispatcher
    forbidden = client.post(CART, json={"cart": world.items[:2]}, headers=headers("campaign"))
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
    assert routed == []  # the key check's error, rendered by the app's own handler
    invalid = client.post(CART, json={"cart": world.items[:2], "k": 0}, headers=shop)
    assert invalid.status_code == 422 and "k" in invalid.json()["error"]["message"]
    assert routed == [CART]  # declined: FastAPI's handler read the replayed body and named the field
    text = client.get("/metrics", headers=headers("admin")).text
    for status in ("200", "403", "422"):
        assert f'kairos_request_duration_seconds_count{{method="POST",route="{CART}",status="{status}"}}' in text


def _small_app(router: APIRouter, **include: Any) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    app.add_middleware(LeanDispatch)
    app.include_router(router, **include)
    return app


class _Body(CartRequest):
    pass


def test_dispatcher_reads_routes_with_their_prefix_and_leaves_what_it_cannot_serve() -> None:
    async def fine(body: _Body) -> Response:
        return Response(b'{"lean": true}', media_type="application/json")

    async def by_id(body: _Body) -> Response:
        return Response(b"{}", media_type="application/json")

    router = APIRouter(prefix="/r")
    router.add_api_route("/{kind}", by_id, methods=["POST"], route_class_override=LeanRoute)
    router.add_api_route("/fine", fine, methods=["POST"], route_class_override=LeanRoute)
    router.add_api_route("/second", by_id, methods=["POST"])
    router.add_api_route("/second", fine, methods=["POST"], route_class_override=LeanRoute)
    outer = APIRouter(prefix="/v9")
    outer.include_router(router)
    assert LeanDispatch(None)._read(_small_app(outer)) == {}  # "/{kind}" and the plain "/second" route first
    router.routes[:] = router.routes[1:3]
    outer.routes[:] = []
    outer.include_router(router)
    app = _small_app(outer)
    assert list(LeanDispatch(None)._read(app)) == ["/v9/r/fine"]
    with TestClient(app) as c:
        assert c.post("/v9/r/fine", json={"cart": ["a"]}).json() == {"lean": True}

    async def extra() -> None:
        raise ApiError(401, "unauthorized", "the include's own check")

    guarded = APIRouter()
    guarded.add_api_route("/guarded", by_id, methods=["POST"], route_class_override=LeanRoute)
    app = _small_app(guarded, dependencies=[Depends(extra)])
    assert LeanDispatch(None)._read(app) == {}  # only FastAPI's handler runs the include's dependencies
    with TestClient(app) as c:
        assert c.post("/guarded", json={"cart": ["a"]}).status_code == 401


def test_dispatcher_errors_take_the_apps_handlers() -> None:
    async def broken(body: _Body) -> Response:
        if body.cart == ["domain"]:
            raise ApiError(503, "model_unavailable", "not loaded", {"Retry-After": "5"})
        raise RuntimeError("a bug")

    router = APIRouter()
    router.add_api_route("/broken", broken, methods=["POST"], route_class_override=LeanRoute)
    with TestClient(_small_app(router), raise_server_exceptions=False) as c:
        mapped = c.post("/broken", json={"cart": ["domain"]})
        assert mapped.status_code == 503 and mapped.headers["retry-after"] == "5"
        assert mapped.json()["error"]["code"] == "model_unavailable"
        bug = c.post("/broken", json={"cart": ["x"]})
        assert bug.status_code == 500 and bug.json()["error"]["code"] == "internal_error"
