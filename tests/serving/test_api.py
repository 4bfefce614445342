"""The endpoints on the served synthetic world: order and status, recommendations, events, profile, models."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.store import latest_snapshot
from tests.serving.conftest import FEATURES, World, headers, register_churn

POPULATION: dict[str, object] = {"feature": "recency_days", "at_most": 365.0}


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    with world.client() as c:
        yield c


def test_batch_of_1000_with_5_percent_unknown_keeps_order(world: World, client: TestClient) -> None:
    ids = [world.ids[i % len(world.ids)] if i % 20 else f"ghost-{i}" for i in range(1000)]
    body = client.post("/v1/scores", json={"customer_ids": ids}, headers=headers("campaign")).json()
    items = body["items"]
    assert [i["customer_id"] for i in items] == ids
    statuses = [i["status"] for i in items]
    assert statuses.count("ok") == 950 and statuses.count("unknown_customer") == 50
    assert all((i["status"] == "unknown_customer") == ids[n].startswith("ghost-") for n, i in enumerate(items))
    assert body["models"] == [
        {"name": "churn", "version": "1", "alias": "champion", "source": "model", "kind": "kairos", "baseline": None}
    ]
    assert body["degraded"] is False and body["source"] == "model" and len(body["request_id"]) >= 8
    ok = [i for i in items if i["status"] == "ok"]
    assert all(0.0 <= i["probabilities"]["churn"] <= 1.0 and i["segments"]["rfm_segment"] for i in ok)


def test_scores_equal_the_model_on_the_snapshot_rows(world: World, client: TestClient) -> None:
    app_services = client.app.state.services  # type: ignore[attr-defined]
    at = latest_snapshot(world.home).as_of.isoformat()  # the snapshot's rows are the features at its as-of
    body = client.post(
        "/v1/scores", json={"customer_ids": world.ids[:50], "now": at}, headers=headers("campaign")
    ).json()
    model = app_services.bundle("churn").payload.model
    snap = latest_snapshot(world.home).read().set_index("customer_key")
    keys = [i["customer_key"] for i in body["items"]]
    churn = app_services.bundle("churn").payload
    expected = churn.calibrator.transform(model.predict_proba(snap.loc[keys, FEATURES].to_numpy(np.float32)))
    np.testing.assert_allclose([i["probabilities"]["churn"] for i in body["items"]], expected, rtol=1e-6)


def test_churn_is_null_and_named_for_customers_outside_its_population(world: World) -> None:
    """A churn model trained on last year's buyers says nothing about a lead or a lapsed customer."""
    snap = latest_snapshot(world.home).read()
    register_churn(world.uri, snap, FEATURES, seed=3, name="churn_pop", population=POPULATION)
    ident = pd.read_parquet(world.home / "ingested" / "identity_map.parquet").drop_duplicates("customer_key")
    recency = snap.set_index("customer_key")["recency_days"]
    ident = ident[ident["customer_key"].isin(recency.index)]
    key_of = dict(zip(ident["customer_id"].astype(str), ident["customer_key"], strict=True))
    inside = [c for c, k in key_of.items() if recency[k] <= 365][:20]
    lapsed = [c for c, k in key_of.items() if recency[k] > 365][:10]
    leads = [c for c, k in key_of.items() if np.isnan(recency[k])][:10]
    assert inside and lapsed and leads, (len(inside), len(lapsed), len(leads))
    ids = [*inside, *lapsed, *leads, "nobody"]
    at = latest_snapshot(world.home).as_of.isoformat()  # who is inside is decided on the snapshot's rows
    with world.client(churn_model="churn_pop") as client:
        body = client.post(
            "/v1/scores", json={"customer_ids": ids, "reasons": True, "now": at}, headers=headers("campaign")
        ).json()
    got = {i["customer_id"]: i for i in body["items"]}
    assert [i["customer_id"] for i in body["items"]] == ids
    for c in inside:
        assert got[c]["probabilities"]["churn"] is not None and got[c]["bands"]["churn"] is not None
        assert got[c]["not_applicable"] == []
    for c in lapsed + leads:
        item = got[c]
        assert item["status"] == "ok" and item["source"] == "model"
        assert item["probabilities"]["churn"] is None and item["bands"]["churn"] is None
        assert item["not_applicable"] == ["churn"] and item["reasons"]["churn"] == []
    assert got["nobody"]["status"] == "unknown_customer" and got["nobody"]["not_applicable"] == []


def test_recommendations_with_k_filters_exclusions_and_reasons(world: World, client: TestClient) -> None:
    h = headers("storefront")
    services = client.app.state.services  # type: ignore[attr-defined]
    recs = services.bundle("recs").payload
    hub = str(recs.together.item_ids_[int(np.argmax(np.diff(recs.together.nbr_indptr_)))])
    first = client.post("/v1/recommendations/cart", json={"cart": [hub], "k": 7}, headers=h).json()
    assert len(first["items"]) == 7 and first["cold_start"] is False
    assert first["items"][0]["source"] == "bought_together" and first["items"][0]["reason"]
    assert hub not in {i["item_id"] for i in first["items"]}
    assert first["models"][0]["name"] == "recs"
    banned = first["items"][0]["item_id"]
    category = first["items"][1]["category"]
    again = client.post(
        "/v1/recommendations/cart",
        json={"cart": [hub], "k": 5, "filters": {"exclude": [banned], "exclude_categories": [category]}},
        headers=h,
    ).json()
    got = again["items"]
    assert len(got) == 5 and banned not in {i["item_id"] for i in got}
    assert category not in {i["category"] for i in got}
    only = client.post(
        "/v1/recommendations/cart",
        json={"cart": [hub], "k": 4, "filters": {"include_categories": [category], "max_price": 1000}},
        headers=h,
    ).json()["items"]
    assert {i["category"] for i in only} == {category}
    bad = client.post(
        "/v1/recommendations/cart", json={"cart": [hub], "filters": {"include_categories": ["Nope"]}}, headers=h
    )
    assert bad.status_code == 200 and bad.json()["items"] == []  # an unknown category matches nothing
    nothing = client.post(
        "/v1/recommendations/cart", json={"cart": [hub], "filters": {"min_price": 5, "max_price": 1}}, headers=h
    )
    assert nothing.status_code == 200 and nothing.json()["items"] == []

    stranger = client.post("/v1/recommendations/customer", json={"customer_id": "ghost", "k": 5}, headers=h).json()
    assert stranger["cold_start"] is True and stranger["source"] == "fallback" and len(stranger["items"]) == 5
    assert {i["source"] for i in stranger["items"]} == {"popular"}
    mine = client.post("/v1/recommendations/customer", json={"customer_id": world.ids[0], "k": 5}, headers=h).json()
    assert mine["cold_start"] is False and len(mine["items"]) == 5
    similar = client.post("/v1/recommendations/similar", json={"item_id": hub, "k": 5}, headers=h).json()
    assert similar["items"][0]["source"] == "similar" and hub not in {i["item_id"] for i in similar["items"]}
    due = [
        client.post("/v1/recommendations/buy-again", json={"customer_id": cid, "k": 5}, headers=h).json()
        for cid in world.ids[:40]
    ]
    assert any(d["items"] for d in due)
    assert all(i["source"] == "buy_again" for d in due for i in d["items"])


def _consented(world: World, client: object) -> str:
    snap = latest_snapshot(world.home).read().set_index("customer_key")
    import pandas as pd

    idmap = pd.read_parquet(world.home / "ingested" / "identity_map.parquet").set_index("customer_id")
    for cid in world.ids:
        if snap.loc[idmap.loc[cid, "customer_key"], "consent_email"] == 1.0:
            return cid
    raise AssertionError("no customer with e-mail consent in the world")


def test_an_unsubscribe_changes_the_very_next_read(world: World, client: TestClient) -> None:
    cid = _consented(world, client)
    before = client.get(f"/v1/customers/{cid}/profile", headers=headers("campaign")).json()
    assert before["features"]["consent_email"] == 1.0
    when = datetime(2026, 1, 2, 9, tzinfo=UTC).isoformat()
    event = {"type": "unsubscribe", "timestamp": when, "customer_id": cid, "channel": "email"}
    r = client.post(
        "/v1/events", json={"events": [event, event, {**event, "channel": None}]}, headers=headers("consent")
    )
    assert r.status_code == 200
    assert [x["status"] for x in r.json()["results"]] == ["applied", "duplicate", "invalid"]
    assert "channel" in r.json()["results"][2]["detail"]
    after = client.get(f"/v1/customers/{cid}/profile", headers=headers("campaign")).json()
    assert after["features"]["consent_email"] == 0.0


def test_profile_hides_personal_data_without_the_pii_scope(world: World, client: TestClient) -> None:
    cid = world.ids[3]
    plain = client.get(f"/v1/customers/{cid}/profile", headers=headers("campaign")).json()
    full = client.get(f"/v1/customers/{cid}/profile", headers=headers("pii")).json()
    assert client.get("/v1/customers/ghost/profile", headers=headers("campaign")).status_code == 404
    assert plain["personal"] is None and "email" not in str(plain["attributes"])
    assert full["personal"]["email"] and "@" in full["personal"]["email"][0]
    assert plain["segments"]["rfm_segment"] and len(plain["features"]) > 100


def test_models_and_metrics(world: World, client: TestClient) -> None:
    assert client.get("/v1/models", headers=headers("campaign")).status_code == 403
    models = client.get("/v1/models", headers=headers("admin")).json()["models"]
    assert models["churn"]["loaded"]["version"] == "1" and models["churn"]["loaded"]["features"] == FEATURES
    assert "holdout_roc_auc" in models["churn"]["loaded"]["metrics"]
    assert models["recs"]["loaded"]["trained_at"]
    client.post("/v1/scores", json={"customer_ids": ["x"]}, headers=headers("campaign"))
    text = client.get("/metrics").text
    assert 'kairos_request_duration_seconds_count{method="POST",route="/v1/scores",status="200"}' in text
    assert 'kairos_model_loaded{alias="champion",model="churn",source="registry",version="1"} 1.0' in text
    assert "kairos_monitor_summary_loaded 0.0" in text  # no `kairos monitor` summary in this home yet


@pytest.mark.parametrize("path", ["/health/live", "/health/ready"])
def test_health_needs_no_key(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_compiled_models_found_on_disk_serve_the_same_scores(world: World, tmp_path: Path) -> None:
    """A lleaves build of the model (``kairos compile``) is used once it reproduces LightGBM; a build that
    does not is refused and LightGBM serves. The API never compiles."""
    from bundles import registry
    from models.compiled import CompiledBooster, cache_key

    text = (registry.fetch(world.uri, "churn", "champion", tmp_path / "dl").path / registry.MODEL_FILE).read_text()
    builds = tmp_path / "compiled"
    CompiledBooster.build(text, builds)
    ids = world.ids[:200]

    def served(compiled_dir: Path) -> tuple[str, list[float | None]]:
        with world.client(compiled_dir=compiled_dir, model_cache_dir=tmp_path / "cache") as c:
            engine = c.get("/v1/models", headers=headers("admin")).json()["models"]["churn"]["loaded"]["engine"]
            body = c.post("/v1/scores", json={"customer_ids": ids}, headers=headers("campaign")).json()
        return engine, [i["probabilities"]["churn"] for i in body["items"]]

    engine, compiled = served(builds)
    assert engine == "lleaves"
    engine, reference = served(tmp_path / "no-builds")
    assert engine == "lightgbm" and not (tmp_path / "no-builds").exists()  # nothing compiled at start-up
    np.testing.assert_allclose(compiled, reference, rtol=0, atol=1e-12)
    # another model's build under this model's key: it disagrees on the probe rows, so it is refused
    other = tmp_path / "other"
    snap = latest_snapshot(world.home).read()
    shuffled = snap.assign(recency_days=snap["recency_days"].sample(frac=1.0, random_state=0).to_numpy())
    register_churn(world.uri, shuffled, FEATURES, seed=7, name="churn_other")  # same features, other trees
    fetched = registry.fetch(world.uri, "churn_other", "champion", tmp_path / "dl2")
    other_text = (fetched.path / registry.MODEL_FILE).read_text()
    wrong = CompiledBooster.build(other_text, other)
    forged = tmp_path / "forged"
    forged.mkdir()
    shutil.copy(wrong.path, forged / f"{cache_key(text)}{wrong.path.suffix}")
    engine, refused = served(forged)
    assert engine == "lightgbm" and refused == reference
