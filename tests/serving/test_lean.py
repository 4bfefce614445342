"""The cart's lean route answers exactly as FastAPI's own handler would, and skips it on the happy path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import fastapi.routing
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient

from serving.deps import KeyCheck, get_services
from serving.keys import Scope
from serving.lean import LeanRoute
from serving.schemas import CartRequest
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
