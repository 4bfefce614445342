"""Bundles (folders of NumPy / Parquet / JSON) go through the MLflow registry verified file by file."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from bundles import registry
from bundles.errors import ModelIntegrityError


def _bundle(folder: Path) -> Path:
    folder.mkdir()
    np.save(folder / "factors.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    (folder / "params.json").write_text(json.dumps({"k": 10}))
    return folder


def test_round_trip_and_tamper_detection(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = registry.configure(uri)
    experiment = registry.ensure_experiment("kairos-test-bundles", uri)
    with mlflow.start_run(experiment_id=experiment):
        info = registry.log_bundle(_bundle(tmp_path / "b"), "recs")
    reg = registry.register_bundle(client, info.model_uri, "recs", metric_name="recall_at_10", metric_value=0.2)
    assert reg.alias == "champion"
    got = registry.fetch_bundle(uri, "recs", "champion", tmp_path / "dl")
    np.testing.assert_array_equal(np.load(got.path / "factors.npy"), np.arange(6).reshape(2, 3))
    assert sorted(p.name for p in got.path.iterdir()) == ["checksums.json", "factors.npy", "params.json"]

    stored = Path(client.get_model_version_download_uri("recs", reg.version).removeprefix("file://"))
    target = stored / registry.BUNDLE_DIR / "params.json"
    original = target.read_bytes()
    try:
        target.write_text(json.dumps({"k": 11}))
        with pytest.raises(ModelIntegrityError, match=r"params\.json altered"):
            registry.fetch_bundle(uri, "recs", "champion", tmp_path / "dl2")
    finally:
        target.write_bytes(original)


def test_a_pickle_is_refused_before_logging(tmp_path: Path) -> None:
    folder = _bundle(tmp_path / "b")
    (folder / "model.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(ModelIntegrityError, match=r"model\.pkl"):
        registry.log_bundle(folder, "recs")
