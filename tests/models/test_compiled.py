"""Compiled LightGBM (lleaves): the same predictions as LightGBM, cached per model text, never trusted unchecked."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from batch.score import _compile_all
from bundles.propensity import PropensityModel
from models.churn import LightGBMClassifier
from models.compiled import CompiledBooster, CompileError, cache_key


@pytest.fixture(scope="module")
def model() -> LightGBMClassifier:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3_000, 6)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan  # missing values take LightGBM's default branches
    y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2]) + rng.normal(size=3_000)) > 0
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1},
        lgb.Dataset(pd.DataFrame(X, columns=[f"f{i}" for i in range(6)]), y.astype(int)),
        num_boost_round=25,
    )
    return LightGBMClassifier.from_text(booster.model_to_string())


def _rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X


def test_compiled_predictions_equal_lightgbm_and_the_build_is_cached(model: LightGBMClassifier, tmp_path: Path) -> None:
    text = model.to_text()
    assert CompiledBooster.cached(text, tmp_path) is None  # the API never compiles: nothing cached yet
    compiled = CompiledBooster.build(text, tmp_path)
    X = _rows(5_000, 1)
    want = model.predict_proba(X)
    got = compiled.predict(X)
    assert np.max(np.abs(got - want)) < 1e-12
    assert compiled.verify(X, want) < 1e-12
    built = compiled.path.stat().st_mtime_ns
    again = CompiledBooster.cached(text, tmp_path)
    assert again is not None and again.path == compiled.path and compiled.path.stat().st_mtime_ns == built
    assert np.array_equal(again.predict(X), got)
    assert [p.name for p in tmp_path.iterdir()] == [f"{cache_key(text)}.so"]  # no staging left behind
    with pytest.raises(ValueError, match="expected a \\(rows, 6\\) matrix"):
        compiled.predict(X[:, :5])


def test_a_compiled_model_that_disagrees_is_refused(model: LightGBMClassifier, tmp_path: Path) -> None:
    compiled = CompiledBooster.build(model.to_text(), tmp_path)
    X = _rows(200, 2)
    want = model.predict_proba(X)
    with pytest.raises(CompileError, match="differs from LightGBM"):
        compiled.verify(X, want + 1e-6)
    half_nan = want.copy()
    half_nan[0] = np.nan
    with pytest.raises(CompileError, match="differs from LightGBM by inf"):
        compiled.verify(X, half_nan)


def test_the_cache_key_follows_the_model_text(model: LightGBMClassifier) -> None:
    text = model.to_text()
    assert cache_key(text) == cache_key(text)
    assert cache_key(text) != cache_key(text.replace("num_leaves=7", "num_leaves=8"))


def test_the_export_falls_back_to_lightgbm_and_says_why(
    model: LightGBMClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = PropensityModel(model, model.feature_names_, None, None, (0.3, 0.6), name="churn", version="3")
    probe = pd.DataFrame(_rows(100, 4), columns=model.feature_names_)
    done, engines, _ = _compile_all([loaded], tmp_path, probe, lambda step, frac: None)
    assert engines == {"churn": "lleaves"} and done[0].compiled is not None
    np.testing.assert_allclose(done[0].score(probe), loaded.score(probe), rtol=0, atol=1e-12)

    def broken(text: str, cache_dir: Path) -> CompiledBooster:
        raise CompileError("lleaves failed to compile the model: out of memory")

    monkeypatch.setattr(CompiledBooster, "build", broken)
    kept, engines, _ = _compile_all([loaded], tmp_path / "other", probe, lambda step, frac: None)
    assert kept[0].compiled is None
    assert engines == {"churn": "LightGBM (lleaves failed to compile the model: out of memory)"}
