"""PII canaries: planted personal values never leave the data home (issue 17.3).

A customer with a distinctive e-mail, phone, name and id is planted in a small synthetic export, with a
malformed row carrying the same values. The export goes through `kairos ingest` (refused, then clean),
`kairos features build` and `kairos train sendtime` (a per-customer bundle) into a temporary MLflow
registry; the API then serves every route of ``app.routes`` for the canary, with and without keys, with
bad bodies and unknown ids. Every log record (root logger, DEBUG), everything printed, and every file
written outside the data home (registry, artifacts, model cache) are searched for the canary values.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Route
from typer.testing import CliRunner

from cli.main import app as cli
from features.identity import Pseudonymizer
from serving.app import create_app
from serving.keys import Scope, hash_key
from serving.observability import JsonFormatter
from serving.settings import ApiKeySpec, Settings
from tests.figures import FIGURES

EMAIL, PHONE, FIRST, LAST, CID = "canary.7f3e@example.org", "+7 999 123 45 67", "Zzcanary", "Qqperson", "CANARY0042"
PHONE_E164 = "+79991234567"  # the phone as ingestion normalises it
SECRET = "canary-test-pseudonym-secret-0123"
KEY = Pseudonymizer(SECRET).customer_key(CID)
# What must never appear outside the data home. The customer_key is pseudonymous but still personal data.
RAW_CANARIES = (EMAIL, PHONE, PHONE_E164, FIRST, LAST, CID)
ALL_CANARIES = (*RAW_CANARIES, KEY)

KEYS = {"all": "k-canary-all", "storefront": "k-canary-storefront"}
SCOPES = {"all": frozenset(Scope), "storefront": frozenset({Scope.STOREFRONT})}

runner = CliRunner()


def _plant(raw: Path) -> None:
    """Add the canary customer to the export: a customer record, a donor's orders, lines and messages."""
    customers = pd.read_csv(raw / "customers.csv", dtype=str, keep_default_na=False)
    donor = customers["customer_id"].iloc[0]
    canary = customers.iloc[[0]].copy()
    canary["customer_id"], canary["email"], canary["phone"] = CID, EMAIL, PHONE
    canary["first_name"], canary["last_name"], canary["loyalty_id"], canary["web_client_id"] = FIRST, LAST, "", ""
    pd.concat([customers, canary]).to_csv(raw / "customers.csv", index=False)

    orders = pd.read_csv(raw / "orders.csv", dtype=str, keep_default_na=False)
    mine = orders.loc[orders["customer_id"] == donor].copy()
    renamed = {o: f"CNY-{i}" for i, o in enumerate(mine["order_id"])}
    mine["order_id"], mine["customer_id"] = mine["order_id"].map(renamed), CID
    pd.concat([orders, mine]).to_csv(raw / "orders.csv", index=False)
    lines = pd.read_csv(raw / "order_lines.csv", dtype=str, keep_default_na=False)
    mine_lines = lines.loc[lines["order_id"].isin(renamed)].copy()
    mine_lines["order_id"] = mine_lines["order_id"].map(renamed)
    pd.concat([lines, mine_lines]).to_csv(raw / "order_lines.csv", index=False)
    messages = pd.read_csv(raw / "messages.csv", dtype=str, keep_default_na=False)
    mine_msgs = messages.loc[messages["customer_id"] == donor].copy()
    mine_msgs["message_id"] = [f"CNY-M{i}" for i in range(len(mine_msgs))]
    mine_msgs["customer_id"] = CID
    pd.concat([messages, mine_msgs]).to_csv(raw / "messages.csv", index=False)


def _hits(text: str, canaries: tuple[str, ...] = ALL_CANARIES) -> list[str]:
    return [c for c in canaries if c in text]


def _text_of(path: Path) -> str:
    """A file's content as text; a Parquet file's decoded values and metadata (its pages are compressed:
    a byte search would miss every value in them)."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        return f"{table.schema.metadata}\n" + table.to_pandas().astype(str).to_csv()
    return path.read_bytes().decode("utf-8", errors="replace")


def _files_outside(root: Path, home: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and home not in path.parents:
            yield path


def _routes(api: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every operation (the OpenAPI document lists the included routers') and of
    the documentation routes."""
    ops = [(m.upper(), path) for path, item in api.openapi()["paths"].items() for m in item]
    docs = [("GET", r.path) for r in api.routes if isinstance(r, Route) and r.path not in {p for _, p in ops}]
    return ops + docs


def _requests(routes: list[tuple[str, str]]) -> Iterator[tuple[str, str, dict[str, object]]]:
    """(method, path, request kwargs) for every route: the canary as every id, bodies good and bad."""
    body = {
        "customer_id": CID,
        "customer_ids": [CID, EMAIL],
        "customer_key": KEY,
        "k": 5,
        "cart": ["x"],
        "channel": "email",
        "events": [
            {"type": "view", "timestamp": "2026-01-02T00:00:00Z", "customer_id": CID},
            {"type": "consent", "timestamp": "2026-01-02T00:00:00Z", "customer_id": CID, "channel": "email"},
            {"type": "message_sent", "timestamp": "0001-01-01T00:00:00Z", "customer_id": CID, "channel": "sms"},
        ],
    }
    for method, template in routes:
        path = re.sub(r"\{[^}]+\}", CID, template)
        if method in ("GET", "DELETE"):
            yield method, path, {"params": {"customer_id": CID, "email": EMAIL}}
            yield method, re.sub(r"\{[^}]+\}", KEY, template), {}
            yield method, re.sub(r"\{[^}]+\}", EMAIL, template), {}
        else:
            yield method, path, {"json": body}
            yield method, path, {"json": {"customer_id": CID}}
            yield method, path, {"json": {"customer_ids": [CID]}}
            yield method, path, {"json": {"customer_id": CID, "name": f"{FIRST} {LAST}", "email": EMAIL}}
            yield method, path, {"content": f'{{"customer_id": "{CID}", "phone": "{PHONE}"'}  # not JSON
            yield method, path, {"content": "x" * 10, "headers": {"content-type": "text/plain"}}


@pytest.mark.slow
@pytest.mark.security
def test_no_canary_leaves_the_data_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    from synth import generate_world

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("KAIROS_PSEUDONYM_SECRET", SECRET)
    raw, home, outside = tmp_path / "raw", tmp_path / "data", tmp_path / "outside"
    uri = f"sqlite:///{outside / 'mlflow.db'}"
    outside.mkdir()
    monkeypatch.chdir(outside)  # MLflow's default artifact root is relative to the working directory
    generate_world(200, 7, raw)
    _plant(raw)
    printed: list[str] = []

    # a malformed row carrying every canary: the run is refused, naming the line only
    bad = tmp_path / "raw_bad"
    shutil.copytree(raw, bad)
    with (bad / "customers.csv").open("a") as f:
        f.write(f'{CID},{EMAIL},"{PHONE}",,,{FIRST},{LAST},,,,GB,,,{EMAIL}\n')
    args = ["--mapping", "synthetic", "--now", "2026-01-01T00:00:00+00:00"]
    refused = runner.invoke(cli, ["ingest", "--input", str(bad), "--out", str(tmp_path / "bad_home"), *args])
    assert refused.exit_code == 2 and "malformed" in refused.output
    printed.append(refused.output)

    for command in (
        ["ingest", "--input", str(raw), "--out", str(home), *args],
        ["features", "build", "--data", str(home)],
        ["train", "sendtime", "--data", str(home), "--tracking-uri", uri, "--min-sends", "1"],
    ):
        result = runner.invoke(cli, command)
        printed.append(result.output)
        assert result.exit_code == 0, result.output
    identity = pd.read_parquet(home / "ingested" / "identity_map.parquet")
    assert identity.loc[identity["customer_id"] == CID, "customer_key"].tolist() == [KEY]  # the canary is in
    # the search sees inside Parquet files: the data home's own copy of the canary is found (checked before the
    # sweep below, which erases the canary through POST /v1/admin/erasures)
    assert _hits(_text_of(home / "ingested" / "customers.parquet")) == [EMAIL, PHONE_E164, FIRST, LAST, CID, KEY]

    keys = [ApiKeySpec(name=n, sha256=hash_key(s), scopes=SCOPES[n]) for n, s in KEYS.items()]
    settings = Settings(
        data_home=home,
        tracking_uri=uri,
        model_cache_dir=outside / "cache",
        api_keys=keys,
        log_json=True,
        churn_model=None,
        purchase_model=None,
        engagement_models=[],
        clv_model=None,
        value_model=None,
        recs_model=None,
        offers_model=None,
        required_models=[],
    )
    api = create_app(settings)
    routes = _routes(api)
    statuses: dict[int, int] = {}
    with TestClient(api, raise_server_exceptions=False) as client:
        profile = client.get(f"/v1/customers/{CID}/profile", headers={"X-API-Key": KEYS["all"]})
        assert profile.status_code == 200 and profile.json()["customer_key"] == KEY  # the API knows the canary
        for method, path, kwargs in _requests(routes):
            for who in ("all", "storefront", None):
                extra = dict(kwargs.get("headers", {}))  # type: ignore[call-overload]
                if who is not None:
                    extra["X-API-Key"] = KEYS[who]
                sent = {k: v for k, v in kwargs.items() if k != "headers"}
                r = client.request(method, path, headers=extra, **sent)  # type: ignore[arg-type]
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    assert len(routes) > 15 and {200, 401, 403, 422} <= set(statuses)  # every route, answers and error paths

    out, err = capfd.readouterr()
    formatter = JsonFormatter()
    # The test's own HTTP client logs the URLs it calls (they hold the canary): every other record counts.
    records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(formatter.format(r) + "\n" + r.getMessage() for r in records)
    assert '"route":"/v1/customers/{customer_id}/profile"' in logged  # the app's access log ran
    in_logs, on_terminal = _hits(logged), _hits("\n".join([*printed, out, err]))
    leaks: dict[str, list[str]] = {}
    files = list(_files_outside(outside, home))
    assert any(p.name == "customer_curves.parquet" for p in files)  # the per-customer bundle was searched
    for path in files:
        data = _text_of(path)
        # A per-customer bundle (send-time curves), in the registry's artifacts and in the model cache,
        # holds customer keys by design: removing them is erasure's (issue 17.4). The raw id, e-mail,
        # phone and name must still never be in it.
        bundle = "mlartifacts" in path.parts or "cache" in path.parts
        canaries = RAW_CANARIES if bundle else ALL_CANARIES
        found = _hits(data, canaries)
        if found:
            leaks[str(path.relative_to(tmp_path))] = found
    FIGURES.record(
        "PII canaries: ingest, features, training, every endpoint and error path",
        cases=sum(statuses.values()) + len(records) + len(files),
        canary_hits=len(in_logs) + len(on_terminal) + sum(map(len, leaks.values())),
    )
    assert in_logs == [], "a log line holds personal data"
    assert on_terminal == [], "the terminal shows personal data"
    assert leaks == {}, "files outside the data home hold personal data"


def test_an_unhandled_error_reaches_neither_the_server_nor_a_log_with_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server logs an exception it receives with its message (uvicorn: "Exception in ASGI application" and
    the traceback); a KeyError's message is the missing key, here a customer id. The edge takes it first."""
    from fastapi import APIRouter

    from serving.middleware import EdgeMiddleware
    from serving.observability import Metrics

    def lookup(customer_id: str) -> dict[str, str]:
        raise KeyError(customer_id)  # as a dict lookup of an unknown id would

    router = APIRouter()
    router.add_api_route("/v1/things/{customer_id}", lookup, methods=["GET"])
    api = FastAPI()
    api.include_router(router)
    api.add_middleware(EdgeMiddleware, metrics=Metrics(), max_body_bytes=1024)
    caplog.set_level(logging.DEBUG)
    with TestClient(api) as client:  # raise_server_exceptions: what reaches the server is raised here
        r = client.get(f"/v1/things/{CID}", headers={"x-request-id": "rid-1"})
    assert r.status_code == 500
    assert r.json() == {
        "error": {"status": 500, "code": "internal_error", "message": r.json()["error"]["message"]},
        "request_id": "rid-1",
    }
    formatter = JsonFormatter()
    logged = "\n".join(formatter.format(x) for x in caplog.records if not x.name.startswith(("httpx", "httpcore")))
    assert '"error_type":"KeyError"' in logged and "test_pii_canaries.py" in logged  # type and place, for operators
    assert '"route":"/v1/things/{customer_id}"' in logged and '"status":500' in logged
    assert _hits(logged) == []
