"""Schemathesis against the app's own OpenAPI schema: every operation, every default check, no server error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from serving.app import create_app
from tests.serving.conftest import ALL, KEYS, World

schemathesis = pytest.importorskip("schemathesis")
positive_data_acceptance = pytest.importorskip("schemathesis.specs.openapi.checks").positive_data_acceptance
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(decided: World) -> Iterator[FastAPI]:
    """Every model kind configured and loaded (a missing one would answer 503 on its endpoints)."""
    application = create_app(decided.settings(**ALL, rate_per_second=1e6, rate_burst=1_000_000))
    with TestClient(application):  # runs the lifespan: models loaded
        yield application


def test_no_server_errors_on_any_operation(app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    auth = {"X-API-Key": KEYS["admin"]}
    # An event's timestamp must lie within the service's clock + the allowed skew, and an opt-in needs its
    # source (docs/consent.md): rules no schema can state, so a schema-valid batch may be refused with 422.
    # Every other check (no 5xx, answers keep to the document) still runs on it.
    bounded = {("POST", "/v1/events")}
    for operation in operations:
        excluded = [positive_data_acceptance] if (operation.method.upper(), operation.path) in bounded else []

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            case.call_and_validate(headers=auth, excluded_checks=excluded)  # noqa: B023 (runs in this iteration)

        check()
