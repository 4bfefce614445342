"""Consent is a hard filter: after any mix of unsubscribes (and attempts to undo them with future-dated
opt-ins), no permission, offer or campaign decision ever contacts a customer on a channel they have not
consented to. The battery's "opted-out contacts" figure."""

from __future__ import annotations

import random

import pytest

from features.store import latest_snapshot
from tests.figures import SecurityFigures
from tests.serving.conftest import ALL, World, headers

pytestmark = [pytest.mark.slow, pytest.mark.security]
CHANNELS = ("email", "sms", "push")
NOW = "2026-01-02T10:00:00Z"


def test_no_contact_on_a_channel_without_consent(decided: World, security_figures: SecurityFigures) -> None:
    rng = random.Random(17)
    frame = latest_snapshot(decided.home).read().set_index("customer_key")
    ids = decided.ids[:600]
    with decided.client(**ALL) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        keys = dict(zip(ids, services.store.resolve(ids), strict=True))
        opted_out = {(cid, ch) for cid in ids for ch in CHANNELS if frame.loc[keys[cid], f"consent_{ch}"] != 1}
        consented = [(cid, ch) for cid in ids for ch in CHANNELS if (cid, ch) not in opted_out]
        unsubscribed = rng.sample(consented, len(consented) // 3)
        for cid, ch in rng.sample(unsubscribed, len(unsubscribed) // 5):
            # first try to pin consent with an opt-in from the far future (with and without a stated source)
            pin = {"type": "consent", "status": "opt_in", "timestamp": "2099-01-01T00:00:00Z", "channel": ch}
            for source in ({}, {"source": "web_form:battery"}):
                body = {"events": [{**pin, **source, "customer_id": cid}]}
                client.post("/v1/events", json=body, headers=headers("admin"))
        stops = [
            {"type": "unsubscribe", "timestamp": "2026-01-02T09:00:00Z", "customer_id": cid, "channel": ch}
            for cid, ch in unsubscribed
        ]
        for start in range(0, len(stops), 1000):
            r = client.post("/v1/events", json={"events": stops[start : start + 1000]}, headers=headers("admin"))
            assert r.status_code == 200 and {x["status"] for x in r.json()["results"]} == {"applied"}, r.text
        opted_out |= set(unsubscribed)

        decisions = contacts = 0
        items = [{"customer_id": cid, "channel": ch} for cid in ids for ch in CHANNELS]
        r = client.post("/v1/permissions", json={"items": items, "now": NOW}, headers=headers("campaign"))
        assert r.status_code == 200, r.text
        for answer in r.json()["items"]:
            decisions += 1
            contacts += bool(answer["allowed"]) and (answer["customer_id"], answer["channel"]) in opted_out
        r = client.post("/v1/offers/campaign", json={"customer_ids": ids, "now": NOW}, headers=headers("campaign"))
        assert r.status_code == 200, r.text
        offers = r.json()["items"]
        for cid in ids[:100]:
            one = client.post(
                "/v1/offers/next-best", json={"customer_id": cid, "now": NOW}, headers=headers("campaign")
            )
            assert one.status_code == 200, one.text
            offers += one.json()["items"]
        for decision in offers:
            decisions += 1
            if decision["decision"] == "offer":
                contacts += (decision["customer_id"], decision["channel"]) in opted_out
    security_figures.record("consent as a hard filter", cases=decisions, opted_out_contacts=contacts)
    assert decisions >= 2_400 and contacts == 0
