"""Promotion decisions: metrics stored at full precision, and a paired interval on the candidate's
holdout (not a rounded number) decides whether a new version replaces the champion."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient

from bundles import registry
from models.intervals import ROC_AUC, Interval, paired_bootstrap


def _register(uri: str, folder: Path, value: float, **kwargs: object) -> registry.Registration:
    folder.mkdir()
    (folder / "params.json").write_text(json.dumps({"value": value}))
    client = registry.configure(uri)
    with mlflow.start_run(experiment_id=registry.ensure_experiment("kairos-test-promotion", uri)):
        info = registry.log_bundle(folder, "m")
    return registry.register_bundle(client, info.model_uri, "m", metric_name="auc", metric_value=value, **kwargs)


def _holdout() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    return y, y + rng.normal(0, 0.7, 400), y + rng.normal(0, 2.5, 400)


def test_an_identical_retrain_does_not_replace_the_champion_by_rounding(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    value = 0.8123454  # six decimals round it down: the old tag made the same value look better
    assert _register(uri, tmp_path / "a", value).alias == "champion"
    again = _register(uri, tmp_path / "b", value)
    assert again.alias == "challenger", again.reason
    tag = MlflowClient(tracking_uri=uri).get_model_version("m", "1").tags[registry.TAG_METRIC]
    assert tag == f"auc={value!r}"


def test_the_paired_interval_on_the_same_holdout_decides(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    y, good, poor = _holdout()
    seen: list[str] = []

    def same(version: str) -> Interval:  # an identical retrain: the champion scores the rows alike
        seen.append(version)
        return paired_bootstrap(ROC_AUC, y, poor, poor.copy(), replicates=200)

    assert _register(uri, tmp_path / "a", 0.70).alias == "champion"
    # stored metrics alone would promote it (0.71 > 0.70): the paired interval [0, 0] does not
    twin = _register(uri, tmp_path / "b", 0.71, challenge=same)
    assert twin.alias == "challenger" and seen == ["1"]
    assert "does not beat champion v1 on the same holdout" in twin.reason

    better = _register(uri, tmp_path / "c", 0.69, challenge=lambda v: paired_bootstrap(ROC_AUC, y, good, poor))
    assert better.alias == "champion", better.reason
    assert "beats champion v1 on the same holdout" in better.reason
    champion = MlflowClient(tracking_uri=uri).get_model_version_by_alias("m", "champion")
    assert str(champion.version) == better.version and champion.tags[registry.TAG_PREVIOUS] == "1"


def test_a_champion_that_cannot_be_scored_falls_back_to_stored_metrics_and_says_so(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def broken(version: str) -> Interval:
        raise KeyError("feature 'x' missing from the holdout")

    _register(uri, tmp_path / "a", 0.70)
    lower = _register(uri, tmp_path / "b", 0.69, challenge=broken)
    assert lower.alias == "challenger"
    assert "could not be scored on this holdout" in lower.reason and "compared stored metrics" in lower.reason
    higher = _register(uri, tmp_path / "c", 0.75, challenge=broken, note="registered although not better than bgnbd")
    assert higher.alias == "champion"
    assert higher.reason.endswith("; registered although not better than bgnbd")
