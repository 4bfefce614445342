"""Plots: every function writes a real PNG of the expected size and refuses bad input."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from training.plots import DPI, calibration_curve, feature_importance, gains_chart, shap_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fitted() -> tuple[str, pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 1_500
    X = pd.DataFrame(
        {
            "recency_days": rng.uniform(0, 300, n),
            "orders_90d": rng.poisson(2, n).astype(float),
            "noise": rng.normal(size=n),
        }
    )
    X.loc[:99, "recency_days"] = np.nan
    y = rng.binomial(1, np.where(X["recency_days"].isna(), 0.8, X["recency_days"].fillna(0) / 300))
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 8, "num_threads": 1}, lgb.Dataset(X, y), 30
    )
    p = booster.predict(X)
    return booster.model_to_string(), X, y, p


def _check_png(path: Path, width_in: float) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = imread(path)
    assert image.shape[1] == pytest.approx(width_in * DPI, abs=2)
    assert image[..., :3].std() > 0.05  # something was drawn, not a blank canvas


def test_gains_and_calibration(tmp_path: Path, fitted: tuple[str, pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    _, X, y, p = fitted
    scores = {"lightgbm": p, "recency": X["recency_days"].fillna(1e4).to_numpy()}
    out = gains_chart(y, scores, tmp_path / "plots" / "gains.png")
    assert out == tmp_path / "plots" / "gains.png"
    _check_png(out, 6.0)
    _check_png(calibration_curve(y, {"lightgbm": p, "constant": np.full(len(y), y.mean())}, tmp_path / "cal.png"), 6.0)


def test_importance_and_shap(tmp_path: Path, fitted: tuple[str, pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    text, X, _, _ = fitted
    _check_png(feature_importance(text, tmp_path / "importance.png", descriptions={"recency_days": "days since"}), 7.0)
    _check_png(shap_summary(text, X, tmp_path / "shap.png", max_rows=500), 7.5)


def test_bad_input(tmp_path: Path, fitted: tuple[str, pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    text, X, y, p = fitted
    with pytest.raises(ValueError, match="png"):
        gains_chart(y, {"m": p}, tmp_path / "gains.jpg")
    with pytest.raises(ValueError, match=r"scores\['m'\]: 3 values"):
        gains_chart(y, {"m": p[:3]}, tmp_path / "g.png")
    with pytest.raises(ValueError, match="at least one model"):
        calibration_curve(y, {}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="p: probabilities must lie"):
        calibration_curve(y, {"days": X["orders_90d"].to_numpy() + 2}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="missing 1 model feature"):
        shap_summary(text, X.drop(columns="noise"), tmp_path / "s.png")
