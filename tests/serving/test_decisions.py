"""Scores from every model kind, permissions (consent from the online store), send time and offers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.store import latest_snapshot
from tests.serving.conftest import ALL, World, headers


@pytest.fixture(scope="module")
def client(decided: World) -> Iterator[TestClient]:
    with decided.client(**ALL, engagement_models=["engagement_open_email"]) as c:
        yield c


def test_scores_carry_every_model_band_value_and_reasons(decided: World, client: TestClient) -> None:
    ids = [*decided.ids[:40], "ghost"]
    r = client.post("/v1/scores", json={"customer_ids": ids, "reasons": True}, headers=headers("campaign"))
    assert r.status_code == 200, r.text
    body = r.json()
    names = {m["name"]: m for m in body["models"]}
    assert names["churn"]["version"] and names["purchase"]["version"] and names["clv"]["version"]
    # configured, optional, never registered: an explicit, labelled fallback (null without a prior)
    assert names["engagement_open_email"] == {
        "name": "engagement_open_email",
        "version": None,
        "alias": "champion",
        "source": "fallback",
    }
    assert body["fallback_models"] == ["engagement_open_email"]
    items = body["items"]
    assert [i["customer_id"] for i in items] == ids
    ok = items[:-1]
    for i in ok:
        assert set(i["probabilities"]) == {"churn", "purchase", "engagement_open_email"}
        assert i["probabilities"]["engagement_open_email"] is None
        for kind in ("churn", "purchase"):
            p, b = i["probabilities"][kind], i["bands"][kind]
            assert 0.0 <= p <= 1.0 and b == ("low" if p < 0.3 else "medium" if p < 0.6 else "high")
            assert len(i["reasons"][kind]) <= 3
            assert all(r["contribution"] > 0 and r["text"] for r in i["reasons"][kind])
        assert 0.0 <= i["value"]["p_alive"] <= 1.0 and i["value"]["clv_365d"] >= 0.0
    assert any(i["reasons"]["churn"] for i in ok)
    # the cold-start answer: each loaded model's base rate, labelled
    ghost = items[-1]
    assert ghost["status"] == "unknown_customer" and ghost["source"] == "fallback" and ghost["value"] is None
    services = client.app.state.services  # type: ignore[attr-defined]
    assert ghost["probabilities"]["purchase"] == services.bundle("purchase").payload.prior
    # readiness: optional models may be missing
    ready = client.get("/health/ready")
    assert ready.status_code == 200


def test_reasons_are_capped_per_request(decided: World) -> None:
    with decided.client(max_reasons_batch=5) as c:
        r = c.post("/v1/scores", json={"customer_ids": decided.ids[:6], "reasons": True}, headers=headers("campaign"))
    assert r.status_code == 422 and "body.reasons" in r.json()["error"]["message"]


def test_a_configured_prior_answers_for_a_missing_optional_model(decided: World) -> None:
    with decided.client(engagement_models=["engagement_click_sms"], model_priors={"engagement_click_sms": 0.07}) as c:
        assert c.get("/health/ready").status_code == 200
        body = c.post("/v1/scores", json={"customer_ids": decided.ids[:3]}, headers=headers("campaign")).json()
    assert all(i["probabilities"]["engagement_click_sms"] == 0.07 for i in body["items"])
    assert all(i["bands"]["engagement_click_sms"] == "low" for i in body["items"])


def _consented(world: World, channel: str) -> str:
    """A source customer id whose snapshot consent on ``channel`` is an opt-in."""
    frame = latest_snapshot(world.home).read()
    keys = set(frame.loc[frame[f"consent_{channel}"] == 1, "customer_key"].astype(str))
    ids = pd.read_parquet(world.home / "ingested" / "identity_map.parquet")
    return str(ids.loc[ids["customer_key"].astype(str).isin(keys), "customer_id"].iloc[0])


def test_an_unsubscribe_flips_the_very_next_permission_and_offer(decided: World) -> None:
    cid = _consented(decided, "email")
    now = "2026-01-02T13:00:00Z"
    ask = {"items": [{"customer_id": cid, "channel": "email"}, {"customer_id": "ghost", "channel": "sms"}], "now": now}
    with decided.client(**ALL) as c:
        before = c.post("/v1/permissions", json=ask, headers=headers("campaign")).json()["items"]
        assert before[1]["status"] == "unknown_customer"
        assert not any(r.startswith("consent") for r in before[0]["reasons"])
        assert before[0]["next_allowed_at"] is not None
        event = {"type": "unsubscribe", "timestamp": "2026-01-02T12:59:00Z", "customer_id": cid, "channel": "email"}
        r = c.post("/v1/events", json={"events": [event]}, headers=headers("consent"))
        assert r.json()["results"][0]["status"] == "applied"
        after = c.post("/v1/permissions", json=ask, headers=headers("campaign")).json()["items"][0]
        assert after["allowed"] is False and after["next_allowed_at"] is None
        assert "consent: opted out on email" in after["reasons"]
        offer = c.post("/v1/offers/next-best", json={"customer_id": cid, "now": now}, headers=headers("campaign"))
        item = offer.json()["items"][0]
        assert item["channel"] != "email"  # never an offer to an opted-out channel


def test_send_time_per_customer_in_order(decided: World, client: TestClient) -> None:
    ids = [*decided.ids[:10], "ghost"]
    body = {"customer_ids": ids, "channel": "email", "window_hours": 24, "now": "2026-01-02T06:00:00Z"}
    r = client.post("/v1/send-time", json=body, headers=headers("campaign"))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["customer_id"] for i in items] == ids
    assert items[-1]["status"] == "unknown_customer" and items[-1]["source"] == "population"
    for i in items:
        best = datetime.fromisoformat(i["best_at"])
        assert datetime(2026, 1, 2, 6, tzinfo=UTC) <= best < datetime(2026, 1, 3, 6, tzinfo=UTC)
        assert not (
            datetime.fromisoformat(i["best_local"]).hour >= 22 or datetime.fromisoformat(i["best_local"]).hour < 8
        )
        assert (
            i["second_at"] is None or i["second_at"][:10] != i["best_at"][:10] or i["second_local"] != i["best_local"]
        )
    assert r.json()["models"][0]["name"] == "sendtime"


def test_offers_for_a_campaign_keep_order_and_respect_consent(decided: World, client: TestClient) -> None:
    ids = [*decided.ids[:200], "ghost"]
    r = client.post(
        "/v1/offers/campaign",
        json={"customer_ids": ids, "budget": 100.0, "now": "2026-01-02T10:00:00Z"},
        headers=headers("campaign"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    items = body["items"]
    assert [i["customer_id"] for i in items] == ids and items[-1]["status"] == "unknown_customer"
    assert {m["name"] for m in body["models"]} == {"offers", "sendtime"}
    frame = latest_snapshot(decided.home).read().set_index("customer_key")
    decisions = {i["decision"] for i in items[:-1]}
    assert decisions <= {"offer", "no_offer", "control_group", "not_contactable", "over_budget"}
    for i in items[:-1]:
        if i["decision"] == "offer":
            assert frame.loc[i["customer_key"], f"consent_{i['channel']}"] == 1  # consented channel only
            assert i["send_at"] is not None and i["offer_id"]
        if i["status"] == "suppressed":
            assert i["decision"] == "not_contactable" and i["offer_id"] is None and i["reason"]
    assert body["summary"]["spent"] <= 100.0 + 1e-9


def test_next_best_offer_for_a_lead_values_an_order_at_the_population_median(
    decided: World, client: TestClient
) -> None:
    frame = latest_snapshot(decided.home).read()
    aov = pd.to_numeric(frame["avg_order_value"], errors="coerce")
    leads = set(frame.loc[~(aov > 0), "customer_key"].astype(str))
    ids = pd.read_parquet(decided.home / "ingested" / "identity_map.parquet")
    lead = str(ids.loc[ids["customer_key"].astype(str).isin(leads), "customer_id"].iloc[0])
    r = client.post(
        "/v1/offers/next-best", json={"customer_id": lead, "now": "2026-01-02T10:00:00Z"}, headers=headers("campaign")
    )
    assert r.status_code == 200, r.text  # one customer without an order value of their own: no 503
    assert r.json()["items"][0]["status"] in {"ok", "suppressed"}
    nbo = client.app.state.services.bundle("offers").payload  # type: ignore[attr-defined]
    assert nbo.fallback_order_value == pytest.approx(float(aov[aov > 0].median()), rel=0.5)


def test_offers_sent_through_events_count_against_the_limit_per_customer(decided: World) -> None:
    now = "2026-01-20T10:00:00Z"
    with decided.client(**ALL) as c:
        services = c.app.state.services  # type: ignore[attr-defined]
        limits = {o.id: o.max_per_customer for o in services.bundle("offers").payload.catalogue.offers}
        chosen = None
        for cid in decided.ids[:300]:
            r = c.post("/v1/offers/next-best", json={"customer_id": cid, "now": now}, headers=headers("campaign"))
            item = r.json()["items"][0]
            if item["decision"] == "offer" and limits[item["offer_id"]]:
                chosen = item
                break
        assert chosen is not None, "no customer got a capped offer"
        oid, cap = chosen["offer_id"], limits[chosen["offer_id"]]
        events = [
            {
                "type": "message_sent",
                "timestamp": f"2026-01-0{2 + i}T10:00:00Z",  # inside the offer's dates, long before `now`
                "customer_id": chosen["customer_id"],
                "channel": chosen["channel"],
                "offer_id": oid,
            }
            for i in range(cap)
        ]
        sent = c.post("/v1/events", json={"events": events}, headers=headers("campaign")).json()
        assert [x["status"] for x in sent["results"]] == ["applied"] * cap
        after = c.post(
            "/v1/offers/next-best", json={"customer_id": chosen["customer_id"], "now": now}, headers=headers("campaign")
        ).json()["items"][0]
        assert after["status"] == "ok" and after["offer_id"] != oid  # the limit holds for API decisions
        history = services.contacts.offer_history([chosen["customer_key"]])
        assert (history["offer_id"] == oid).sum() >= cap
