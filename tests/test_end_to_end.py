"""The demo path on real data: ingest -> snapshot -> train + register -> API through TestClient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from bundles import registry
from bundles.errors import ModelIntegrityError
from features.ingest import IDENTITY_MAP_FILE
from features.store import ingested_dir, latest_snapshot
from serving.app import create_app
from serving.settings import Settings
from tests.conftest import BuiltHome


def _client(built: BuiltHome, **overrides: object) -> TestClient:
    # the demo key; answers as of the snapshot's as-of (the configured clock) unless a request gives its now
    clock = latest_snapshot(built.home).as_of
    base: dict[str, object] = {"recs_model": None, "environment": "development", "clock": clock} | overrides
    settings = Settings(data_home=built.home, tracking_uri=built.tracking_uri, model_cache_dir=built.cache, **base)
    return TestClient(create_app(settings), headers={"X-API-Key": "kairos-demo-key"})


def _known_ids(built: BuiltHome) -> list[str]:
    return pd.read_parquet(ingested_dir(built.home) / IDENTITY_MAP_FILE)["customer_id"].astype(str).tolist()


def test_champion_is_registered_with_checksum_and_metrics(orii_home: BuiltHome) -> None:
    mv = MlflowClient(tracking_uri=orii_home.tracking_uri).get_model_version_by_alias("churn", "champion")
    assert len(mv.tags[registry.TAG_SHA256]) == 64
    run = MlflowClient(tracking_uri=orii_home.tracking_uri).get_run(mv.run_id)
    assert 0.5 < run.data.metrics["holdout_roc_auc"] <= 1.0
    assert run.data.tags["lib.lightgbm"] != "absent"


def test_scores_keep_order_and_status(orii_home: BuiltHome) -> None:
    known = _known_ids(orii_home)
    ids = [known[0], "no-such-customer", known[1]]
    with _client(orii_home) as client:
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/ready").status_code == 200
        body = client.post("/v1/scores", json={"customer_ids": ids}).json()
    assert [i["customer_id"] for i in body["items"]] == ids
    assert [i["status"] for i in body["items"]] == ["ok", "unknown_customer", "ok"]
    assert 0.0 <= body["items"][0]["probabilities"]["churn"] <= 1.0
    assert body["items"][0]["source"] == "model" and body["items"][1]["source"] == "fallback"
    prior = body["items"][1]["probabilities"]["churn"]  # the cold-start answer: the training base rate
    assert prior is not None and 0.0 < prior < 1.0
    assert body["models"][0]["name"] == "churn" and body["models"][0]["version"] == "1"


def test_batch_of_1000_with_5_percent_unknown(orii_home: BuiltHome) -> None:
    known = _known_ids(orii_home)
    ids = [known[i % len(known)] if i % 20 else f"ghost-{i}" for i in range(1000)]
    with _client(orii_home) as client:
        items = client.post("/v1/scores", json={"customer_ids": ids}).json()["items"]
    statuses = [i["status"] for i in items]
    assert statuses.count("ok") == 950 and statuses.count("unknown_customer") == 50
    assert [i["customer_id"] for i in items] == ids


def test_bad_requests_name_the_field(orii_home: BuiltHome) -> None:
    with _client(orii_home) as client:
        r = client.post("/v1/scores", json={"customer_ids": ["a"], "extra": 1})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "extra"]
        r = client.post("/v1/scores", json={"customer_ids": []})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "customer_ids"]


def test_not_ready_without_a_model(orii_home: BuiltHome) -> None:
    with _client(orii_home, churn_model="no-such-model") as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and "no-such-model" in ready.json()["detail"]["last_error"]
        assert client.get("/health/live").status_code == 200
        assert client.post("/v1/scores", json={"customer_ids": ["x"]}).status_code == 503


def test_a_tampered_model_file_is_refused(orii_home: BuiltHome, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=orii_home.tracking_uri)
    mv = client.get_model_version_by_alias("churn", "champion")
    source = Path(client.get_model_version_download_uri("churn", mv.version).removeprefix("file://"))
    model_file = source / registry.MODEL_FILE
    original = model_file.read_bytes()
    try:
        model_file.write_bytes(original.replace(b"tree\n", b"tree \n", 1))
        with pytest.raises(ModelIntegrityError, match="checksum mismatch"):
            registry.fetch(orii_home.tracking_uri, "churn", "champion", tmp_path / "dl")
    finally:
        model_file.write_bytes(original)


def test_api_scores_equal_the_nightly_export(orii_home: BuiltHome, tmp_path: Path) -> None:
    """POST /v1/scores and `kairos score --all` (batch/score.py) give the same calibrated probabilities at the
    same instant (here the snapshot's as-of: the export's default)."""
    from batch.score import score_all

    export = score_all(orii_home.home, orii_home.tracking_uri, tmp_path / "scores.parquet")
    at = latest_snapshot(orii_home.home).as_of.isoformat()
    frame = pd.read_parquet(export.path).set_index("customer_key")
    ids = pd.read_parquet(ingested_dir(orii_home.home) / IDENTITY_MAP_FILE)
    ids = ids[ids["customer_key"].isin(frame.index)].head(200)
    with _client(orii_home) as client:
        body = client.post(
            "/v1/scores", json={"customer_ids": ids["customer_id"].astype(str).tolist(), "now": at}
        ).json()
    items = body["items"]
    assert all(i["status"] == "ok" and i["source"] == "model" for i in items)
    expected = frame.loc[ids["customer_key"]]
    churn = [i["probabilities"]["churn"] for i in items]
    assert any(p is None for p in churn) and any(p is not None for p in churn)  # leads and lapsed: null in both
    np.testing.assert_allclose(
        [np.nan if p is None else p for p in churn], expected["churn_probability"].to_numpy(), rtol=1e-6
    )
    assert [i["bands"]["churn"] for i in items] == [b if isinstance(b, str) else None for b in expected["churn_band"]]
    assert export.models["churn"] == next(m["version"] for m in body["models"] if m["name"] == "churn")


def test_a_model_reading_the_baselines_outputs_scores_the_same_in_the_export(
    orii_home: BuiltHome, tmp_path: Path
) -> None:
    """A registered model with the derived inputs (one search trial: the defaults, inputs read) gives the
    export (compiled) the probabilities the bundle computes from the snapshot's feature rows."""
    from batch.score import score_all
    from bundles.propensity import PropensityBundle
    from features.store import SNAPSHOT_FILE, latest_snapshot
    from models.stacking import COLUMNS
    from tests.conftest import small_data_rules
    from training.propensity import purchase_task, train_task
    from training.tuning import SearchBudget

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = train_task(
        purchase_task(), orii_home.home, uri, sufficiency=small_data_rules(), search_budget=SearchBudget(1)
    )
    assert run.registration is not None
    if run.registration.alias != registry.CHAMPION:  # the gate served a baseline: the export is to score this model
        registry.promote(uri, "purchase", run.registration.version)
    model = PropensityBundle().load(uri, "purchase", registry.CHAMPION, tmp_path / "bundle")
    assert model.stacking is not None and model.model.feature_names_ == [*model.features, *COLUMNS]
    export = score_all(orii_home.home, uri, tmp_path / "scores.parquet", compile_cache=tmp_path / "compiled")
    assert export.engines["purchase"] == "lleaves"
    frame = pd.read_parquet(export.path).set_index("customer_key")
    rows = pd.read_parquet(latest_snapshot(orii_home.home).path / SNAPSHOT_FILE).set_index("customer_key")
    np.testing.assert_allclose(frame["purchase_probability"], model.score(rows.loc[frame.index]), rtol=1e-6)
