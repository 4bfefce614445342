"""Bad input, on every kind of operation: a 4xx that names the field, a request id, never a 5xx, never an
echo of what was sent, and nothing applied. The battery's "bad inputs" row."""

from __future__ import annotations

from typing import Any

import pytest

from tests.figures import SecurityFigures
from tests.serving.conftest import ALL, World, api_keys, headers

pytestmark = [pytest.mark.slow, pytest.mark.security]
NOW = "2026-01-02T10:00:00Z"
AN_EVENT = {"type": "view", "timestamp": "2026-01-02T09:00:00Z", "customer_id": "c1"}
SENT = {"type": "message_sent", "timestamp": "2026-01-02T09:00:00Z", "customer_id": "c1", "channel": "email"}

# (who, path, body, the field the answer must name); the body is JSON, or raw bytes
CASES: list[tuple[str, str, Any, str]] = [
    ("campaign", "/v1/scores", {"customer_ids": "c1"}, "customer_ids"),
    ("campaign", "/v1/scores", {"customer_ids": [1, 2]}, "customer_ids.0"),
    ("campaign", "/v1/scores", {"customer_ids": ["c1"], "reasons": "yes"}, "reasons"),
    ("campaign", "/v1/scores", {"customer_ids": ["c1"], "reasons": 1}, "reasons"),
    ("campaign", "/v1/scores", {"customer_ids": ["c1" * 2000]}, "customer_ids.0"),
    ("campaign", "/v1/scores", {"customer_ids": ["c1\x00"]}, "customer_ids.0"),
    ("storefront", "/v1/recommendations/customer", {"customer_id": "c1", "k": "5"}, "k"),
    ("storefront", "/v1/recommendations/customer", {"customer_id": "c1", "k": 5.5}, "k"),
    ("storefront", "/v1/recommendations/customer", {"customer_id": "c1", "k": 10**30}, "k"),
    ("storefront", "/v1/recommendations/cart", {"cart": "sku"}, "cart"),
    ("storefront", "/v1/recommendations/similar", {"item_id": ["x"]}, "item_id"),
    ("campaign", "/v1/permissions", {"items": [{"customer_id": "c1", "channel": "email"}], "now": 0}, "now"),
    ("campaign", "/v1/permissions", {"items": [{"customer_id": "c1", "channel": "fax"}]}, "items.0.channel"),
    ("campaign", "/v1/permissions", {"items": [{"customer_id": "c1", "channel": "sms"}], "now": "2026-01-02"}, "now"),
    ("campaign", "/v1/send-time", {"customer_ids": ["c1"], "channel": "sms", "now": "yesterday"}, "now"),
    ("campaign", "/v1/offers/next-best", {"customer_id": "c1", "now": 1767000000}, "now"),
    ("campaign", "/v1/offers/campaign", {"customer_ids": ["c1"], "budget": "100"}, "budget"),
    ("campaign", "/v1/offers/campaign", {"customer_ids": ["c1"], "budget": -5}, "budget"),
    ("campaign", "/v1/events", {"events": [{**SENT, "timestamp": "0001-01-01T00:00:00Z"}]}, "events.0.timestamp"),
    ("campaign", "/v1/events", {"events": [{**AN_EVENT, "timestamp": "9999-12-31T23:59:59Z"}]}, "events.0.timestamp"),
    ("campaign", "/v1/events", {"events": [{**AN_EVENT, "timestamp": "2099-01-01T00:00:00Z"}]}, "events.0.timestamp"),
    ("campaign", "/v1/events", {"events": [AN_EVENT, {**AN_EVENT, "type": "teleport"}]}, "events.1.type"),
    ("campaign", "/v1/events", {"events": []}, "events"),
    ("admin", "/v1/models/reload", {"models": "churn"}, "models"),
    ("admin", "/v1/models/reload", {"force": "true"}, "force"),
    ("campaign", "/v1/scores", b'{"customer_ids": ["c1"]', ""),  # not JSON
    ("campaign", "/v1/scores", b"[]", ""),  # JSON, not an object
]


def test_bad_inputs_are_4xx_naming_the_field(decided: World, security_figures: SecurityFigures) -> None:
    wrong: list[str] = []
    server_errors = 0
    with decided.client(**ALL, api_keys=api_keys()) as client:
        for who, path, body, field in CASES:
            h = headers(who)
            if isinstance(body, bytes):
                r = client.post(path, content=body, headers={**h, "content-type": "application/json"})
            else:
                r = client.post(path, json=body, headers=h)
            server_errors += r.status_code >= 500
            answer = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            message = answer.get("error", {}).get("message", "")
            if not 400 <= r.status_code < 500 or not answer.get("request_id"):
                wrong.append(f"{path} {field}: {r.status_code} {r.text[:200]}")
            elif field and not f"{message.split(':')[0].removeprefix('body.')}.".startswith(f"{field}."):
                wrong.append(f"{path} {field}: the answer names {message[:120]!r}")
            elif any("input" in d for d in answer.get("detail", [])):
                wrong.append(f"{path} {field}: the answer echoes the input")
    security_figures.record("bad inputs", cases=len(CASES), server_errors=server_errors, wrong_answers=len(wrong))
    assert wrong == [] and server_errors == 0, "\n".join(wrong)
