"""The campaign operations over HTTP: lookalikes, an asynchronous plan with progress, the report."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
import yaml

from models.decisioning.offers import EXAMPLE_CATALOGUE
from tests.serving.conftest import World, headers

# as a campaign engine would send it: JSON, dates as ISO text
CATALOGUE = json.loads(json.dumps(yaml.safe_load(EXAMPLE_CATALOGUE.read_text(encoding="utf-8")), default=str))


@pytest.fixture(scope="module")
def client(world: World):  # type: ignore[no-untyped-def]
    with world.client() as c:
        yield c


def test_lookalikes_leave_out_the_seed_and_say_why(client, world: World) -> None:  # type: ignore[no-untyped-def]
    seed = world.ids[:20]
    r = client.post(
        "/v1/lookalikes", json={"seed_customer_ids": [*seed, "nobody"], "size": 50}, headers=headers("campaign")
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unknown_seed_ids"] == ["nobody"] and len(body["items"]) == 50
    assert not {i["customer_id"] for i in body["items"]} & set(seed)
    assert all(i["reasons"].startswith("like the seed") for i in body["items"])
    bad = client.post("/v1/lookalikes", json={"seed_customer_ids": ["nobody", "none"]}, headers=headers("campaign"))
    assert bad.status_code == 422 and "seed_customer_ids" in bad.text


def test_a_plan_runs_in_the_background_and_its_totals_are_its_items(client, world: World) -> None:  # type: ignore[no-untyped-def]
    ids = [*world.ids[:400], "no-such-customer"]
    body = {
        "customer_ids": ids,
        "channels": ["email"],
        "starts_at": "2026-01-10T09:00:00Z",
        "ends_at": "2026-01-17T09:00:00Z",
        "budget": 200.0,
        "catalogue": CATALOGUE,
    }
    r = client.post("/v1/campaigns/plans", json=body, headers=headers("campaign"))
    assert r.status_code == 202, r.text
    url = r.json()["status_url"]
    deadline = time.monotonic() + 60
    while True:
        status = client.get(url, params={"limit": 150}, headers=headers("campaign")).json()
        assert 0.0 <= status["progress"] <= 1.0
        if status["status"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status["status"] == "done", status
    items = []
    offset = 0
    while offset < status["total_items"]:
        page = client.get(url, params={"offset": offset, "limit": 150}, headers=headers("campaign")).json()
        items += page["items"]
        offset += 150
    totals = status["totals"]
    sent = [i for i in items if i["send"]]
    assert sent and {i["channel"] for i in sent} == {"email"}  # the campaign allows e-mail only
    assert all("email" in i["usable_channels"].split(",") for i in sent)
    assert totals["planned_sends"] == len(sent)
    assert totals["sends_by_channel"] == {"email": len(sent), "sms": 0, "push": 0}
    assert totals["control_size"] == sum(i["control_group"] for i in items)
    assert totals["expected_cost"] == pytest.approx(sum(i["expected_cost"] for i in items))
    assert totals["expected_incremental_profit"] == pytest.approx(sum(i["expected_profit"] for i in items))
    assert "no-such-customer" in totals["unknown_customer_ids"]
    assert client.get("/v1/campaigns/plans/nope", headers=headers("campaign")).status_code == 404


def test_a_plan_with_a_bad_campaign_is_refused_naming_the_field(client) -> None:  # type: ignore[no-untyped-def]
    body = {
        "customer_ids": ["1"],
        "channels": ["fax"],
        "starts_at": "2026-01-10T09:00:00Z",
        "ends_at": "2026-01-17T09:00:00Z",
    }
    r = client.post("/v1/campaigns/plans", json=body, headers=headers("campaign"))
    assert r.status_code == 422 and "channels" in r.text
    body |= {"channels": ["email"], "ends_at": "2026-01-01T00:00:00Z", "catalogue": CATALOGUE}
    r = client.post("/v1/campaigns/plans", json=body, headers=headers("campaign"))
    assert r.status_code == 422 and "ends_at" in r.text


def test_the_report_answers_in_json_and_as_a_self_contained_page(client, world: World) -> None:  # type: ignore[no-untyped-def]
    messages = pd.read_parquet(world.home / "ingested" / "messages.parquet", columns=["campaign_id"])
    some = sorted(messages["campaign_id"].dropna().unique())[:3]
    body = {"horizon_days": 30, "campaign_ids": some}
    r = client.post("/v1/campaigns/report", json=body, headers=headers("campaign"))
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    assert {row["campaign_id"] for row in rows} <= {*some, "all"} and all(row["verdict"] for row in rows)
    page = client.post("/v1/campaigns/report", json=body | {"format": "html"}, headers=headers("campaign"))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html") and "<svg" in page.text
    unknown = client.post("/v1/campaigns/report", json={"campaign_ids": ["NOPE"]}, headers=headers("campaign"))
    assert unknown.status_code == 422 and "campaign_ids" in unknown.text
