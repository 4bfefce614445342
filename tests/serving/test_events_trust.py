"""POST /v1/events as an attacker and an auditor would try it (issue 17): per-type scopes, bounded timestamps,
an opt-in's proof of source, a future-dated consent that cannot outlast an unsubscribe; and strict request
bodies on every endpoint (no loose coercion). Each case failed on the code before the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.realtime import EventKind
from features.store import latest_snapshot
from serving.routers.events import EVENT_SCOPES
from tests.serving.conftest import World, headers

DOC = Path(__file__).resolve().parents[2] / "docs" / "consent.md"


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    with world.client() as c:
        yield c


@pytest.fixture(scope="module")
def consented(world: World) -> list[str]:
    """Source customer ids whose snapshot consent on e-mail is an opt-in (each test takes its own)."""
    frame = latest_snapshot(world.home).read()
    keys = set(frame.loc[frame["consent_email"] == 1, "customer_key"].astype(str))
    ids = pd.read_parquet(world.home / "ingested" / "identity_map.parquet")
    found = ids.loc[ids["customer_key"].astype(str).isin(keys), "customer_id"].astype(str).drop_duplicates()
    assert len(found) >= 10
    return found.tolist()


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _now() -> datetime:
    return datetime.now(UTC)


def _post(client: TestClient, who: str, *events: dict[str, Any]) -> Any:
    return client.post("/v1/events", json={"events": list(events)}, headers=headers(who))


def _consent_email(client: TestClient, cid: str) -> float:
    r = client.get(f"/v1/customers/{cid}/profile", headers=headers("campaign"))
    assert r.status_code == 200, r.text
    return float(r.json()["features"]["consent_email"])


def _may_email(client: TestClient, cid: str) -> dict[str, Any]:
    ask = {"items": [{"customer_id": cid, "channel": "email"}], "now": _iso(_now() + timedelta(minutes=10))}
    r = client.post("/v1/permissions", json=ask, headers=headers("campaign"))
    assert r.status_code == 200, r.text
    item: dict[str, Any] = r.json()["items"][0]
    return item


def _message(r: Any) -> str:
    return str(r.json()["error"]["message"])


# --- finding 1: a future-dated consent ------------------------------------------------------------------


def test_a_consent_dated_far_ahead_is_refused_and_nothing_in_its_batch_applies(
    client: TestClient, consented: list[str]
) -> None:
    cid, other = consented[0], consented[1]
    unsubscribe = {"type": "unsubscribe", "timestamp": _iso(_now()), "customer_id": other, "channel": "email"}
    opt_in = {
        "type": "consent",
        "timestamp": "2099-01-01T00:00:00Z",
        "customer_id": cid,
        "channel": "email",
        "status": "opt_in",
        "source": "web_form:newsletter",
    }
    r = _post(client, "consent", unsubscribe, opt_in)
    assert r.status_code == 422 and _message(r).startswith("events.1.timestamp:")
    assert _consent_email(client, other) == 1.0  # the valid event before it was not applied either


def test_an_unsubscribe_after_an_opt_in_dated_within_the_skew_takes_effect(
    client: TestClient, consented: list[str]
) -> None:
    cid = consented[2]
    now = _now()
    opt_in = {
        "type": "consent",
        "timestamp": _iso(now + timedelta(minutes=4)),  # a client clock 4 minutes fast: accepted
        "customer_id": cid,
        "channel": "email",
        "status": "opt_in",
        "source": "web_form:newsletter",
    }
    assert _post(client, "consent", opt_in).json()["results"][0]["status"] == "applied"
    assert _may_email(client, cid)["allowed"] is not None
    unsubscribe = {"type": "unsubscribe", "timestamp": _iso(now), "customer_id": cid, "channel": "email"}
    assert _post(client, "consent", unsubscribe).json()["results"][0]["status"] == "applied"
    answer = _may_email(client, cid)
    assert answer["allowed"] is False and answer["next_allowed_at"] is None
    assert any(reason.startswith("consent") for reason in answer["reasons"])
    assert _consent_email(client, cid) == 0.0


def test_the_future_skew_is_a_setting(world: World, consented: list[str]) -> None:
    event = {"type": "view", "timestamp": _iso(_now() + timedelta(minutes=4)), "customer_id": consented[3]}
    with world.client(event_max_future_skew_s=60) as c:
        r = _post(c, "storefront", event)
    assert r.status_code == 422 and "events.0.timestamp" in _message(r) and "60 s" in _message(r)


# --- finding 8: timestamps out of range, never a 500 -----------------------------------------------------


@pytest.mark.parametrize(
    "stamp",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+05:00",  # converting it to UTC overflows
        "9999-12-31T23:59:59-05:00",
        "1999-12-31T23:59:59Z",
        "2026-01-02T10:00:00",  # no timezone
        "0",
        1767348000,  # a number, not a time
    ],
)
@pytest.mark.parametrize("kind", ["message_sent", "view"])
def test_timestamps_out_of_range_are_422_naming_the_field(
    client: TestClient, consented: list[str], stamp: object, kind: str
) -> None:
    event = {"type": kind, "timestamp": stamp, "customer_id": consented[4], "channel": "email"}
    if kind == "view":
        del event["channel"]
    r = _post(client, "campaign", event)
    assert r.status_code == 422, r.text
    assert _message(r).startswith("events.0.timestamp") or _message(r).startswith("body.events.0.timestamp")
    assert r.json()["request_id"]


# --- finding 2: who may post what ------------------------------------------------------------------------


def _scope_table() -> dict[str, set[str]]:
    """The table in docs/consent.md: event type -> the scopes that may post it."""
    rows = re.findall(r"^\| `([a-z_]+)`[^|]*\| ([a-z, ]+) \|$", DOC.read_text(), flags=re.MULTILINE)
    return {kind: {s.strip() for s in scopes.split(",")} for kind, scopes in rows}


def test_the_documented_table_is_the_code() -> None:
    table = _scope_table()
    assert set(table) == {k.value for k in EventKind} | {"message_sent"}
    assert table == {kind: {s.value for s in scopes} for kind, scopes in EVENT_SCOPES.items()}


def _example(kind: str, cid: str, n: int) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "timestamp": _iso(_now()), "customer_id": cid, "event_id": f"m{n}"}
    if kind in ("open", "click", "unsubscribe", "consent", "message_sent"):
        event["channel"] = "sms"
    if kind == "consent":
        event |= {"status": "opt_in", "source": "app:settings"}
    return event


@pytest.mark.parametrize("who", ["storefront", "campaign", "consent"])
def test_every_event_type_needs_its_scope(client: TestClient, consented: list[str], who: str) -> None:
    """Generated from the documented table: each key, each type; a refused type is 403 naming the event."""
    for n, (kind, scopes) in enumerate(sorted(_scope_table().items())):
        r = _post(client, who, _example(kind, consented[5], n * 10 + len(who)))
        if who in scopes:
            assert r.status_code == 200, (who, kind, r.text)
            assert r.json()["results"][0]["status"] in ("applied", "created"), (who, kind, r.text)
        else:
            assert r.status_code == 403, (who, kind, r.text)
            assert _message(r).startswith("events.0:") and all(f"{s}" in _message(r) for s in scopes)


def test_a_storefront_key_cannot_reopen_a_channel_nor_use_up_caps(client: TestClient, consented: list[str]) -> None:
    cid = consented[6]
    view = {"type": "view", "timestamp": _iso(_now()), "customer_id": cid, "event_id": "v-storefront-1"}
    opt_out = {"type": "consent", "timestamp": _iso(_now()), "customer_id": cid, "channel": "email"}
    opt_out["status"] = "opt_out"
    r = _post(client, "storefront", view, opt_out)
    assert r.status_code == 403 and _message(r).startswith("events.1:") and "consent scope" in _message(r)
    assert _consent_email(client, cid) == 1.0
    # the whole batch was refused: the view was not applied, so it applies now
    assert _post(client, "storefront", view).json()["results"][0]["status"] == "applied"
    sent = {"type": "message_sent", "timestamp": _iso(_now()), "customer_id": cid, "channel": "email"}
    r = _post(client, "storefront", sent)
    assert r.status_code == 403 and "campaign scope" in _message(r)


def test_an_opt_in_needs_its_source(client: TestClient, consented: list[str]) -> None:
    cid = consented[7]
    base = {"type": "consent", "timestamp": _iso(_now()), "customer_id": cid, "channel": "sms"}
    r = _post(client, "consent", {**base, "status": "opt_in"})
    assert r.status_code == 422 and _message(r).startswith("events.0.source:")
    for bad in ("", "x" * 65, "web form", "mail:someone@example.org"):
        r = _post(client, "consent", {**base, "status": "opt_in", "source": bad})
        assert r.status_code == 422 and "source" in _message(r) and (bad == "" or bad not in r.text)
    r = _post(client, "storefront", {"type": "view", "timestamp": base["timestamp"], "customer_id": cid, "source": "x"})
    assert r.status_code == 422 and "events.0.source" in _message(r)
    ok = _post(client, "consent", {**base, "status": "opt_in", "source": "pos:store-12"})
    assert ok.json()["results"][0]["status"] == "applied"
    assert _post(client, "consent", {**base, "status": "opt_out"}).json()["results"][0]["status"] == "applied"
    services = client.app.state.services  # type: ignore[attr-defined]
    history = services.store.backend.consent_history(cid, "sms")
    assert [(c.granted, c.source) for c in history][-2:] == [(True, "pos:store-12"), (False, None)]


# --- finding 8: strict request bodies --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "who", "field"),
    [
        ("/v1/recommendations/customer", {"customer_id": "x", "k": "5"}, "storefront", "body.k"),
        ("/v1/recommendations/customer", {"customer_id": "x", "k": True}, "storefront", "body.k"),
        ("/v1/recommendations/customer", {"customer_id": "x", "k": 5.5}, "storefront", "body.k"),
        ("/v1/scores", {"customer_ids": ["x"], "reasons": "yes"}, "campaign", "body.reasons"),
        ("/v1/scores", {"customer_ids": ["x"], "reasons": 1}, "campaign", "body.reasons"),
        ("/v1/permissions", {"items": [{"customer_id": "x", "channel": "email"}], "now": 0}, "campaign", "body.now"),
        ("/v1/permissions", {"items": [{"customer_id": "x", "channel": "email"}], "now": "0"}, "campaign", "body.now"),
        ("/v1/permissions", {"items": [{"customer_id": "x", "channel": "email", "with_offer": "true"}]}, "campaign",
         "body.items.0.with_offer"),
        ("/v1/events", {"events": [{"type": "open", "timestamp": "2026-01-02T00:00:00Z", "customer_id": "x",
                                    "channel": "email", "with_offer": 0}]}, "campaign", "body.events.0.with_offer"),
    ],
)  # fmt: skip
def test_request_bodies_take_strict_types(client: TestClient, path: str, body: object, who: str, field: str) -> None:
    r = client.post(path, json=body, headers=headers(who))
    assert r.status_code == 422, r.text
    assert _message(r).startswith(field), r.text


def test_strict_bodies_still_take_json_forms(client: TestClient, consented: list[str]) -> None:
    """Enums by value, times as ISO text, arrays for tuples: what a JSON client sends is accepted."""
    cid = consented[8]
    ask = {"items": [{"customer_id": cid, "channel": "sms", "with_offer": True}], "now": "2026-01-02T10:00:00+01:00"}
    assert client.post("/v1/permissions", json=ask, headers=headers("campaign")).status_code == 200
    recs = {"customer_id": cid, "k": 3, "filters": {"min_price": 1, "max_price": 99.5}}
    assert client.post("/v1/recommendations/customer", json=recs, headers=headers("storefront")).status_code == 200
    assert (
        client.post("/v1/recommendations/cart", json={"cart": ["x"], "k": 2}, headers=headers("storefront")).status_code
        == 200
    )
