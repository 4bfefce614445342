"""Schemathesis against the app's own OpenAPI schema: every operation, every default check, no server error."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.core.failures import FailureGroup, ServerError
from schemathesis.openapi.checks import JsonSchemaError
from schemathesis.specs.openapi.checks import positive_data_acceptance

from serving.app import create_app
from tests.figures import SecurityFigures
from tests.serving.conftest import ALL, KEYS, World

pytestmark = pytest.mark.slow
# examples per operation: 30 in the suite; `make security` asks for more
FUZZ_EXAMPLES = int(os.environ.get("SECURITY_FUZZ_EXAMPLES", "30"))


@pytest.fixture(scope="module")
def app(decided: World) -> Iterator[FastAPI]:
    """Every model kind configured and loaded (a missing one would answer 503 on its endpoints)."""
    application = create_app(decided.settings(**ALL, rate_per_second=1e6, rate_burst=1_000_000))
    with TestClient(application):  # runs the lifespan: models loaded
        yield application


@pytest.mark.security
def test_no_server_errors_on_any_operation(app: FastAPI, security_figures: SecurityFigures) -> None:
    """Every operation, fuzzed from the document with a key that may call it: no 5xx, no answer off-schema, and
    every default check passes. Figures: cases tried, 5xx, schema violations (the battery's table)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    auth = {"X-API-Key": KEYS["admin"]}
    cases = server_errors = violations = 0
    other: list[str] = []
    # An event's timestamp must lie within the service's clock + the allowed skew, and an opt-in needs its
    # source (docs/consent.md): rules no schema can state, so a schema-valid batch may be refused with 422.
    # Every other check (no 5xx, answers keep to the document) still runs on it.
    # An audience's condition is a language (docs/audiences.md) no schema states: a schema-valid text may be
    # refused with 422 naming body.condition.
    # A lookalike's seed must name customers of the base (docs/campaigns.md): a schema-valid list of unknown
    # ids is refused with 422 naming body.seed. A campaign plan's window, catalogue and channels, and a
    # report's campaign ids, must fit the data (docs/campaigns.md): refused with a 4xx naming the field.
    bounded = {
        ("POST", "/v1/events"),
        ("POST", "/v1/lookalikes"),
        ("POST", "/v1/campaigns/plans"),
        ("POST", "/v1/campaigns/report"),
        # one clock (docs/features.md): a `now` before the snapshot is refused with 422 naming body.now/query.now
        ("POST", "/v1/scores"),
        ("GET", "/v1/customers/{customer_id}/profile"),
        ("POST", "/v1/offers/next-best"),
        ("POST", "/v1/offers/campaign"),
        ("POST", "/v1/permissions"),
        ("POST", "/v1/send-time"),
        ("POST", "/v1/channels"),
        ("POST", "/v1/audiences/count"),
        ("POST", "/v1/audiences/list"),
        ("POST", "/v1/audiences/export"),
    }
    for operation in operations:
        excluded = [positive_data_acceptance] if (operation.method.upper(), operation.path) in bounded else []

        @given(case=operation.as_strategy())
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            nonlocal cases, server_errors, violations
            cases += 1
            response = case.call(headers=auth)
            server_errors += response.status_code >= 500
            try:
                case.validate_response(response, headers=auth, excluded_checks=excluded)  # noqa: B023
            except FailureGroup as group:
                for failure in group.exceptions:
                    if isinstance(failure, JsonSchemaError):
                        violations += 1
                    elif not isinstance(failure, ServerError):  # counted above
                        other.append(f"{case.operation.label}: {failure.title}")

        check()
    security_figures.record(
        "schemathesis, every operation",
        cases=cases,
        server_errors=server_errors,
        schema_violations=violations,
        wrong_answers=len(other),
    )
    assert (server_errors, violations, other) == (0, 0, [])
