"""Keys, scopes, rate limits, body limits, strict bodies, and no personal data in any log line."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from serving.keys import DEMO_KEY, KeyRing, Scope, hash_key
from serving.observability import JsonFormatter
from serving.security import RateLimiter
from serving.settings import ApiKeySpec, Settings
from tests.serving.conftest import World, api_keys, headers


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    with world.client(api_keys=api_keys(storefront=2.0), rate_burst=3, max_body_bytes=4096) as c:
        yield c


def test_keys_are_stored_hashed_and_matched_in_constant_time() -> None:
    ring = KeyRing([("shop", hash_key("s3cret"), frozenset({Scope.STOREFRONT}), None)])
    found = ring.identify("s3cret")
    assert found is not None and found[0].name == "shop" and found[0].allows(Scope.STOREFRONT)
    assert not found[0].allows(Scope.CAMPAIGN)
    assert ring.identify("s3cret ") is None and ring.identify("") is None


def test_placeholder_secrets_are_refused_outside_development() -> None:
    demo = ApiKeySpec(name="demo", sha256=hash_key(DEMO_KEY), scopes=frozenset({Scope.ADMIN}))
    with pytest.raises(ValidationError, match="demo key"):
        Settings(environment="production", api_keys=[demo])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="no API keys"):
        Settings(environment="production")  # type: ignore[arg-type]
    real = ApiKeySpec(name="ops", sha256=hash_key("a-real-secret"), scopes=frozenset({Scope.ADMIN}))
    assert Settings(environment="production", api_keys=[real]).api_keys == [real]  # type: ignore[arg-type]


def test_401_and_403(client: TestClient) -> None:
    body = {"customer_ids": ["x"]}
    r = client.post("/v1/scores", json=body)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert client.post("/v1/scores", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/v1/scores", json=body, headers={"X-API-Key": DEMO_KEY}).status_code == 401  # keys configured
    r = client.post("/v1/scores", json=body, headers=headers("storefront"))
    assert r.status_code == 403 and "campaign" in r.json()["error"]["message"]
    assert client.post("/v1/models/reload", json={}, headers=headers("campaign")).status_code == 403
    assert client.post("/v1/recommendations/cart", json={"cart": ["x"]}, headers=headers("campaign")).status_code == 403
    assert client.post("/v1/scores", json=body, headers=headers("admin")).status_code == 200  # admin may do anything


def test_rate_limit_answers_429_with_retry_after(client: TestClient) -> None:
    codes = [
        client.post("/v1/recommendations/cart", json={"cart": ["x"]}, headers=headers("storefront")) for _ in range(8)
    ]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["error"]["code"] == "rate_limited"
    # another key has its own bucket
    assert client.post("/v1/scores", json={"customer_ids": ["x"]}, headers=headers("campaign")).status_code == 200


def test_token_bucket_refills() -> None:
    bucket = RateLimiter(rate=10.0, burst=2)
    assert bucket.take("k", now=0.0) == 0.0 and bucket.take("k", now=0.0) == 0.0
    assert bucket.take("k", now=0.0) == pytest.approx(0.1)
    assert bucket.take("k", now=0.1) == 0.0


def test_413_by_declared_length_and_by_streamed_size(client: TestClient) -> None:
    big = b'{"customer_ids": ["' + b"a" * 5000 + b'"]}'
    h = {**headers("campaign"), "content-type": "application/json"}
    r = client.post("/v1/scores", content=big, headers=h)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"customer_ids": ["'
        for _ in range(10):
            yield b"a" * 1000
        yield b'"]}'

    r = client.post("/v1/scores", content=chunks(), headers=h)
    assert r.status_code == 413


def test_422_names_the_field(world: World) -> None:
    with world.client(api_keys=api_keys()) as client:  # the module's client has a burst of 3: not a rate test
        _names_the_field(client)


def _names_the_field(client: TestClient) -> None:
    h = headers("campaign")
    r = client.post("/v1/scores", json={"customer_ids": ["a"], "extra": 1}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "extra"]
    assert r.json()["error"]["message"].startswith("body.extra")
    r = client.post("/v1/scores", json={"customer_ids": []}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "customer_ids"]
    sf = {**headers("admin"), "content-type": "application/json"}
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
        body = b'{"cart": ["x"], "filters": {"min_price": ' + literal + b"}}"
        r = client.post("/v1/recommendations/cart", content=body, headers=sf)
        assert r.status_code == 422, literal
        assert r.json()["detail"][0]["loc"] == ["body", "filters", "min_price"]
        assert "input" not in r.json()["detail"][0]  # never echo what was sent


def test_oversized_batch_is_422(world: World) -> None:
    with world.client(max_body_bytes=1 << 20) as c:
        r = c.post("/v1/scores", json={"customer_ids": ["x"] * 10_001}, headers=headers("campaign"))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "customer_ids"]


CANARIES = ("canary.person@example.org", "+15550109999", "Quillon Zabriskie")


def test_no_personal_data_in_any_log_line(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with world.client(log_json=True) as c:
        cid = world.ids[5]
        full = c.get(f"/v1/customers/{cid}/profile", headers=headers("pii")).json()["personal"]
        c.post("/v1/scores", json={"customer_ids": [*CANARIES, cid]}, headers=headers("campaign"))
        for canary in CANARIES:
            c.get(f"/v1/customers/{canary}/profile", headers=headers("pii"))
            c.post("/v1/recommendations/customer", json={"customer_id": canary}, headers=headers("storefront"))
            c.post(
                "/v1/events",
                json={"events": [{"type": "view", "timestamp": "2026-01-02T00:00:00", "customer_id": canary}]},
                headers=headers("storefront"),
            )
            c.post("/v1/scores", json={"customer_ids": [canary], "oops": canary}, headers=headers("campaign"))
    formatter = JsonFormatter()
    # Every record but the test's own HTTP client's (httpx logs the URL it calls, which holds the canary).
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    text = "\n".join(formatter.format(r) + "\n" + r.getMessage() for r in server)
    assert '"route":"/v1/customers/{customer_id}/profile"' in text  # the access log ran, with the template
    secrets = [*CANARIES, *full["email"], *full.get("phone", []), *full["last_name"]]
    assert secrets and not [s for s in secrets if s in text]


def test_log_timestamps_read_as_datetime_writes_them() -> None:
    """The formatter's own timestamp (its seconds' text reused within a second) is datetime's ISO text, to the
    millisecond: random instants, several in one second, and the edges a microsecond rounds over."""
    import json
    import random
    from datetime import UTC, datetime

    formatter = JsonFormatter()
    rng = random.Random(7)
    instants = [rng.uniform(1.6e9, 1.9e9) for _ in range(3000)]
    instants += [1_800_000_000 + f for f in (0.0, 0.0009995, 0.0009996, 0.9994999, 0.9999994, 0.9999996, 0.5)]
    instants += [instants[0] + d for d in (0.001, 0.25, 0.999)]
    for created in instants:
        record = logging.LogRecord("kairos.test", logging.INFO, __file__, 1, "m", None, None)
        record.created = created
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        assert json.loads(formatter.format(record))["ts"] == expected, created


def test_fastapi_native_telemetry_only_when_configured() -> None:
    """FastAPI's OpenTelemetry looks up the global providers on every request unless turned off: off by
    default (our metrics are Prometheus'), FastAPI's defaults with KAIROS_OTEL."""
    from serving.app import create_app

    quiet = create_app(Settings(environment="development", log_json=False))._telemetry  # type: ignore[attr-defined]
    assert not (quiet["tracing"] or quiet["metrics"] or quiet["logs"])
    loud = create_app(Settings(environment="development", log_json=False, otel=True))._telemetry  # type: ignore[attr-defined]
    assert loud["tracing"] and loud["metrics"] and loud["logs"]


def test_admin_does_not_imply_pii(world: World) -> None:
    """Running the service is no entitlement to personal data: admin implies every scope but pii."""
    admin = KeyRing([("ops", hash_key("s"), frozenset({Scope.ADMIN}), None)]).identify("s")
    assert admin is not None
    assert all(admin[0].allows(s) for s in Scope if s is not Scope.PII) and not admin[0].allows(Scope.PII)
    with world.client() as c:
        cid = world.ids[5]
        as_admin = c.get(f"/v1/customers/{cid}/profile", headers=headers("admin"))
        with_pii = c.get(f"/v1/customers/{cid}/profile", headers=headers("pii"))  # campaign + pii
    assert as_admin.status_code == 200 and as_admin.json()["personal"] is None
    assert with_pii.status_code == 200 and with_pii.json()["personal"]["email"]
    assert not {v for vs in with_pii.json()["personal"].values() for v in vs} & set(_strings(as_admin.json()))


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


def test_production_is_the_default_and_needs_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing configured the settings are production's, and production refuses to start without keys,
    saying which setting to give."""
    monkeypatch.delenv("KAIROS_ENVIRONMENT", raising=False)
    monkeypatch.delenv("KAIROS_API_KEYS", raising=False)
    with pytest.raises(ValidationError, match="no API keys configured in production; set KAIROS_API_KEYS"):
        Settings()  # type: ignore[call-arg]
    real = ApiKeySpec(name="ops", sha256=hash_key("a-real-secret"), scopes=frozenset({Scope.ADMIN}))
    assert Settings(api_keys=[real]).environment == "production"  # type: ignore[call-arg]
    # the demo key exists only in development
    from serving.state import key_ring

    assert key_ring(Settings(api_keys=[real])).identify(DEMO_KEY) is None  # type: ignore[call-arg]
    demo = key_ring(Settings(environment="development")).identify(DEMO_KEY)  # type: ignore[arg-type]
    assert demo is not None and demo[0].allows(Scope.PII)


def test_kairos_serve_is_production_unless_dev(monkeypatch: pytest.MonkeyPatch, world: World) -> None:
    """`kairos serve` without --dev refuses to start without keys (exit 2, the setting named), and refuses a
    development environment left in the environment; --dev serves with the demo key."""
    import uvicorn
    from typer.testing import CliRunner

    from cli.main import app

    started: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append(os.environ["KAIROS_ENVIRONMENT"]))
    for name in ("KAIROS_ENVIRONMENT", "KAIROS_API_KEYS", "KAIROS_DATA_HOME", "KAIROS_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    args = ["serve", "--data", str(world.home), "--tracking-uri", world.uri]
    refused = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert refused.exit_code == 2 and "KAIROS_API_KEYS" in refused.output and not started
    monkeypatch.setenv("KAIROS_ENVIRONMENT", "development")
    stray = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert stray.exit_code == 2 and "--dev" in stray.output and not started
    monkeypatch.delenv("KAIROS_ENVIRONMENT")
    dev = runner.invoke(app, [*args, "--dev"], env={"COLUMNS": "300"})
    assert dev.exit_code == 0 and started == ["development"] and DEMO_KEY in dev.output
    keys = json.dumps([k.model_dump(mode="json") for k in api_keys()])
    monkeypatch.delenv("KAIROS_ENVIRONMENT")
    prod = runner.invoke(app, args, env={"COLUMNS": "300", "KAIROS_API_KEYS": keys})
    assert prod.exit_code == 0 and started == ["development", "production"] and DEMO_KEY not in prod.output


def test_5xx_bodies_carry_a_stable_code_and_the_reason_goes_to_the_log(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A model that did not load: the caller gets model_unavailable and a fixed message; the load error
    (here naming the missing registered model) is in the operator's log, with the request id."""
    caplog.set_level(logging.WARNING, logger="kairos.serving")
    with world.client(churn_model="churn_canary_internal") as c:
        r = c.post("/v1/scores", json={"customer_ids": world.ids[:2]}, headers=headers("campaign"))
    assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable"
    assert r.json()["error"]["message"] == "the churn model is not loaded; retry later"
    assert "churn_canary_internal" not in r.text and r.json()["request_id"]
    logged = [rec for rec in caplog.records if rec.getMessage() == "model unavailable"]
    assert logged and "churn_canary_internal" in getattr(logged[-1], "reason", "")


def test_domain_errors_answer_503_without_their_text() -> None:
    from fastapi.testclient import TestClient

    from features.errors import KairosError
    from serving.app import create_app

    app = create_app(Settings(environment="development", log_json=False))  # type: ignore[arg-type]

    def boom() -> None:
        raise KairosError("/srv/kairos/secret-path.parquet: unreadable")

    app.add_api_route("/boom", boom)
    r = TestClient(app).get("/boom")
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    assert "secret-path" not in r.text and "KairosError" not in r.text
