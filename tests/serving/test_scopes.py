"""The scope of every operation, as ``docs/operations.md`` tabulates it ("Operations and scopes"), checked
against the app in its production default: each operation has a row; a key with a listed scope passes the
key check, a key with any other single scope gets 403, a request without a key 401."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.keys import Scope, hash_key
from serving.settings import ApiKeySpec, OpenEndpoint, Settings
from tests.figures import FIGURES
from tests.serving.conftest import World

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
SECRETS = {s: f"k-only-{s.value}" for s in Scope}  # one key per single scope


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    case: str  # empty: every request; else the part of the requests the row is about
    scopes: frozenset[Scope] | None  # None: no key needed; empty: any valid key
    every: bool  # all of ``scopes`` (``and``), else any one of them


def _rows() -> list[Row]:
    """The table under "Operations and scopes" in docs/operations.md."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("#### Operations and scopes", 1)[1]
    rows: list[Row] = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            if rows and not line.startswith("|"):
                break  # the table ended
            continue
        method, path, case, scope = cells
        names = re.findall(r"`([a-z_]+)`", scope)
        if scope == "none":
            scopes: frozenset[Scope] | None = None
        elif scope == "any key":
            scopes = frozenset()
        else:
            scopes = frozenset(Scope(n) for n in names)  # an unknown scope name fails here
            assert scopes, f"docs/operations.md: no scope in {line!r}"
        rows.append(Row(method, path.strip("`"), case, scopes, " and " in scope))
    assert rows, "docs/operations.md: no table under 'Operations and scopes'"
    return rows


ROWS = _rows()
FIRST = {(r.method, r.path): r for r in reversed(ROWS)}  # an operation's first row: what the key check says


def _operations() -> set[tuple[str, str]]:
    app = create_app(Settings(environment="development", log_json=False))  # type: ignore[arg-type]
    return {
        (method, ctx.path)
        for ctx in iter_route_contexts(app.routes)  # included routers too, with their prefixes
        if isinstance(ctx.original_route, APIRoute)
        for method in ctx.original_route.methods
    }


def test_every_operation_has_a_row_and_every_row_an_operation() -> None:
    operations = _operations()
    assert not operations - set(FIRST), "operations without a row in docs/operations.md"
    assert not set(FIRST) - operations, "rows in docs/operations.md for operations the app does not have"


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    """The production default (open_endpoints unset) with one key per single scope."""
    keys = [ApiKeySpec(name=f"only-{s.value}", sha256=hash_key(k), scopes=frozenset({s})) for s, k in SECRETS.items()]
    with world.client(api_keys=keys, open_endpoints=None, rate_per_second=1e6, rate_burst=1_000_000) as c:
        yield c


def _request(client: TestClient, world: World, row: Row, key: str | None) -> int:
    path = row.path.replace("{customer_id}", world.ids[0])
    headers = {"X-API-Key": key} if key else {}
    if row.method == "GET":
        return client.get(path, headers=headers).status_code
    # A body that validates where the scope may depend on it (events: a behavioural one, as the first row
    # says); elsewhere the key check answers before the body is read, and a 422 is not a refusal.
    body: dict[str, object] = {}
    if row.path == "/v1/events":
        body = {"events": [{"type": "view", "timestamp": "2026-01-02T00:00:00Z", "customer_id": world.ids[0]}]}
    return client.request(row.method, path, json=body, headers=headers).status_code


@pytest.mark.security
@pytest.mark.parametrize("row", list(FIRST.values()), ids=lambda r: f"{r.method} {r.path}")
def test_the_key_check_is_the_table_s(client: TestClient, world: World, row: Row) -> None:
    wrong: list[str] = []
    statuses = []
    for scope, key in SECRETS.items():
        status = _request(client, world, row, key)
        statuses.append(status)
        # admin implies every scope but pii (serving/keys.py), so an admin key passes wherever pii is not needed
        allowed = row.scopes is None or not row.scopes or scope in row.scopes
        allowed = allowed or (scope is Scope.ADMIN and Scope.PII not in row.scopes)
        if allowed and status in (401, 403):
            wrong.append(f"{scope} refused ({status})")
        elif not allowed and status != 403:
            wrong.append(f"{scope} not refused ({status})")
    unkeyed = _request(client, world, row, None)
    statuses.append(unkeyed)
    if not ((unkeyed not in (401, 403)) if row.scopes is None else unkeyed == 401):
        wrong.append(f"no key: {unkeyed}")
    FIGURES.record(
        "auth matrix: every operation x every scope, and no key",
        cases=len(statuses),
        server_errors=sum(s >= 500 for s in statuses),
        wrong_answers=len(wrong),
    )
    assert wrong == []


def test_readiness_detail_needs_an_admin_key(client: TestClient) -> None:
    """The status for anyone (the load balancer sends no key); the detail (versions, checksums, customer
    count, load errors) only for the scope its row names."""
    detail_row = next(r for r in ROWS if r.path == "/health/ready" and r.case)
    assert detail_row.scopes == {Scope.ADMIN}
    for scope, key in [(None, None), *SECRETS.items()]:
        r = client.get("/health/ready", headers={"X-API-Key": key} if key else {})
        assert r.json()["status"] == "ready"
        if scope is Scope.ADMIN:
            assert {"store", "store_customers", "models"} <= set(r.json()["detail"])
        else:
            assert not r.json().get("detail"), scope
            assert "sha256" not in r.text and "version" not in r.text


def test_open_endpoints_are_configurable(world: World) -> None:
    opened = frozenset({OpenEndpoint.METRICS, OpenEndpoint.READINESS})
    with world.client(open_endpoints=opened) as c:
        assert c.get("/metrics").status_code == 200
        assert c.get("/health/ready").json()["detail"]["models"]
        assert c.get("/openapi.json").status_code == 401  # docs stays behind a key
