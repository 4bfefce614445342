"""The OpenAPI document: every JSON endpoint documents its answer's body, and the answers keep to it, the
degraded ones (which schemathesis never sees) included, with no key the document does not declare."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pandas as pd
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from features.store import latest_snapshot
from serving import app as app_module
from serving.app import create_app
from serving.settings import Settings
from tests.serving.conftest import ALL, World, closed_port, headers

NOT_JSON = {"/metrics": "text/plain", "/v1/audiences/export": "text/csv"}  # Prometheus' format; a file
# answered only from the online store: with it down, a 503 (never an audience from priors), not a degraded 200
NEEDS_THE_STORE = ("/v1/audiences/count", "/v1/audiences/list")


def _document() -> dict[str, Any]:
    return create_app(Settings(environment="development", log_json=False)).openapi()


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def test_every_json_route_documents_its_body() -> None:
    app = create_app(Settings(environment="development", log_json=False))
    doc = app.openapi()
    routes = {
        (ctx.path, method.lower())
        for ctx in iter_route_contexts(app.routes)  # included routers' routes, with their prefixes
        if isinstance(ctx.original_route, APIRoute) and ctx.original_route.include_in_schema
        for method in ctx.original_route.methods
    }
    assert routes == {(p, m) for p, m, _ in _operations(doc)}, "a route is missing from the document"
    assert len(routes) >= 16
    for path, method, operation in _operations(doc):
        ok = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
        assert ok, f"{method} {path}: no 2xx answer documented"
        for code, response in ok.items():
            content = response.get("content", {})
            if path in NOT_JSON:
                assert list(content) == [NOT_JSON[path]], f"{method} {path}"
                continue
            schema = _resolve(doc, content["application/json"]["schema"])
            assert schema.get("properties"), f"{method} {path} {code}: the body is not described: {schema}"


def test_the_documented_version_is_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _document()["info"]["version"] == version("kairos")

    def missing(name: str) -> str:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(app_module, "version", missing)
    assert _document()["info"]["version"] == "0+unknown"


# --- the answers keep to the document -------------------------------------------------------------------


def _strict(node: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object that lists its properties."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


class Conformance:
    """Validates answers against the app's own document (strictly) and counts the operations seen."""

    def __init__(self, doc: dict[str, Any], store_down: bool = False) -> None:
        self.jsonschema = pytest.importorskip("jsonschema")
        self.store_down = store_down  # NEEDS_THE_STORE answer 503, not a degraded 200
        self.doc = doc
        self.components = _strict(copy.deepcopy(doc["components"]))
        self.seen: set[tuple[str, str]] = set()

    def check(
        self, client: TestClient, method: str, url: str, who: str, status: int = 200, **kwargs: Any
    ) -> dict[str, Any]:
        r = client.request(method, url, headers=headers(who), **kwargs)
        assert r.status_code == status, (url, r.text)
        path = next(p for p in self.doc["paths"] if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", p), url))
        schema = self.doc["paths"][path][method.lower()]["responses"][str(status)]["content"]["application/json"]
        root = {"components": self.components, **_strict(copy.deepcopy(schema["schema"]))}
        validator = self.jsonschema.Draft202012Validator(root, format_checker=self.jsonschema.FormatChecker())
        body = r.json()
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
        assert not errors, f"{method} {url}: {errors[:5]}"
        self.seen.add((path, method.lower()))
        return dict(body)


def _every_operation(c: Conformance, client: TestClient, world: World, ids: list[str], opted_in: str) -> None:
    now = "2026-01-02T10:00:00Z"
    unknown = [*ids, "ghost"]
    for health in ("/health/live", "/health/ready"):
        c.check(client, "GET", health, "admin")
    c.check(client, "GET", "/v1/models", "admin")
    c.check(client, "POST", "/v1/models/reload", "admin", json={"models": ["churn", "not_a_kind"]})
    c.check(client, "POST", "/v1/scores", "campaign", json={"customer_ids": unknown, "reasons": True})
    for who in ("campaign", "pii"):
        c.check(client, "GET", f"/v1/customers/{ids[0]}/profile", who)
    c.check(
        client, "POST", "/v1/recommendations/cart", "storefront", json={"cart": world.items[:2], "customer_id": ids[0]}
    )
    for kind in ("customer", "buy-again"):
        for cid in (ids[0], "ghost"):
            c.check(client, "POST", f"/v1/recommendations/{kind}", "storefront", json={"customer_id": cid})
    c.check(client, "POST", "/v1/recommendations/similar", "storefront", json={"item_id": world.items[0]})
    items = [{"customer_id": cid, "channel": ch} for cid in [opted_in, *unknown] for ch in ("email", "sms", "push")]
    c.check(client, "POST", "/v1/permissions", "campaign", json={"items": items, "now": now})
    c.check(client, "POST", "/v1/send-time", "campaign", json={"customer_ids": unknown, "channel": "sms", "now": now})
    for cid in (opted_in, "ghost"):
        c.check(client, "POST", "/v1/offers/next-best", "campaign", json={"customer_id": cid, "now": now})
    c.check(client, "POST", "/v1/offers/campaign", "campaign", json={"customer_ids": [opted_in, *unknown], "now": now})
    event = {"type": "view", "timestamp": "2026-01-02T09:00:00Z", "customer_id": ids[0]}
    sent = {"type": "message_sent", "timestamp": "2026-01-02T09:00:00Z", "customer_id": ids[1], "channel": "email"}
    c.check(
        client,
        "POST",
        "/v1/events",
        "campaign",  # a send needs the campaign scope (docs/consent.md)
        json={"events": [event, event, {**event, "customer_id": None}, sent]},
    )
    c.check(client, "POST", "/v1/lookalikes", "campaign", json={"seed_customer_ids": ids[:5], "size": 10})
    plan = {"customer_ids": unknown, "channels": ["email"], "starts_at": now, "ends_at": "2026-01-09T10:00:00Z"}
    job = c.check(client, "POST", "/v1/campaigns/plans", "campaign", status=202, json=plan)
    for _ in range(200):  # done (or failed, when the store is down) within seconds for a handful of ids
        state = c.check(client, "GET", job["status_url"], "campaign")
        if state["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert state["status"] in ("done", "failed"), state
    messages = pd.read_parquet(world.home / "ingested" / "messages.parquet", columns=["campaign_id"])
    first = sorted(messages["campaign_id"].dropna().unique())[:1]
    c.check(client, "POST", "/v1/campaigns/report", "campaign", json={"campaign_ids": first})
    # an id no export holds: the erasure runs everywhere and removes nothing (it adds a tombstone and a receipt)
    c.check(client, "POST", "/v1/admin/erasures", "pii", json={"customer_id": "ghost-erasure"})
    c.check(client, "POST", "/v1/channels", "campaign", json={"customer_ids": unknown, "now": now})
    audience = {"condition": "churn > 0.6 and consent_email", "now": now}
    for path, body in (("count", audience), ("list", audience | {"page_size": 5})):
        if c.store_down:
            r = client.post(f"/v1/audiences/{path}", json=body, headers=headers("campaign"))
            assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", r.text
            assert f"/v1/audiences/{path}" in NEEDS_THE_STORE
            c.seen.add((f"/v1/audiences/{path}", "post"))
        else:
            c.check(client, "POST", f"/v1/audiences/{path}", "campaign", json=body)


@pytest.mark.slow
def test_answers_keep_to_the_document_when_served_and_when_degraded(decided: World) -> None:
    frame = latest_snapshot(decided.home).read()
    opted_in_keys = set(frame.loc[frame["consent_email"] == 1, "customer_key"].astype(str))
    with decided.client(**ALL, engagement_models=["engagement_open_email"]) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        opted_in = next(i for i in decided.ids if services.store.resolve([i])[0] in opted_in_keys)
        c = Conformance(client.app.openapi())  # type: ignore[attr-defined]
        _every_operation(c, client, decided, decided.ids[:30], opted_in)
        campaign = c.check(
            client,
            "POST",
            "/v1/offers/campaign",
            "campaign",
            json={"customer_ids": decided.ids[:200], "now": "2026-01-02T10:00:00Z"},
        )
        assert {i["decision"] for i in campaign["items"]} >= {"offer", "no_offer", "not_contactable"}
        assert any("send_at" in i for i in campaign["items"]) and "summary" in campaign
    down = f"redis://127.0.0.1:{closed_port()}/0"
    with decided.client(**ALL, online_store="redis", redis_url=down, store_timeout_s=0.2) as client:
        c_down = Conformance(client.app.openapi(), store_down=True)  # type: ignore[attr-defined]
        _every_operation(c_down, client, decided, decided.ids[:5], decided.ids[0])
        degraded = c_down.check(
            client, "POST", "/v1/permissions", "campaign", json={"items": [{"customer_id": "x", "channel": "sms"}]}
        )
        assert degraded["degraded"] is True and "now" not in degraded
    documented = {(p, m) for p, m, _ in _operations(c.doc) if p not in NOT_JSON}
    assert documented <= c.seen and documented <= c_down.seen, documented - (c.seen & c_down.seen)
