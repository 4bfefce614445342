"""The LightGBM estimator follows scikit-learn's contract and round-trips through its text format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.churn import LightGBMClassifier


def _data(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"recency": rng.uniform(0, 300, n), "noise": rng.normal(size=n)})
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X["recency"] - 150) / 30))).astype(int)
    return X, y


def test_init_only_stores_parameters() -> None:
    model = LightGBMClassifier(num_leaves=7)
    assert model.get_params()["num_leaves"] == 7 and not hasattr(model, "booster_")


def test_learns_a_monotone_signal_and_round_trips() -> None:
    X, y = _data(2000, 0)
    Xv, yv = _data(500, 1)
    model = LightGBMClassifier(n_estimators=200, seed=3)
    assert model.fit(X, y, eval_set=(Xv, yv)) is model
    p = model.predict_proba(Xv)
    assert p[Xv["recency"] > 250].mean() > p[Xv["recency"] < 50].mean() + 0.5
    again = LightGBMClassifier.from_text(model.to_text())
    np.testing.assert_array_equal(again.predict_proba(Xv), p)


def test_one_class_is_refused_with_a_reason() -> None:
    X, _ = _data(50, 0)
    with pytest.raises(ValueError, match="only one class"):
        LightGBMClassifier().fit(X, np.zeros(50, dtype=int))


@pytest.mark.parametrize("bad", [{"subsample": 0.0}, {"colsample_bytree": 1.5}, {"reg_lambda": -1.0}])
def test_bad_regularisation_is_refused_by_name(bad: dict[str, float]) -> None:
    X, y = _data(200, 0)
    with pytest.raises(ValueError, match=next(iter(bad))):
        LightGBMClassifier(**bad).fit(X, y)  # type: ignore[arg-type]


def test_row_and_feature_sampling_are_seeded() -> None:
    X, y = _data(1000, 0)
    params = {"n_estimators": 30, "subsample": 0.7, "colsample_bytree": 0.5, "reg_lambda": 5.0, "n_jobs": 1}
    a = LightGBMClassifier(seed=1, **params).fit(X, y).predict_proba(X)  # type: ignore[arg-type]
    b = LightGBMClassifier(seed=1, **params).fit(X, y).predict_proba(X)  # type: ignore[arg-type]
    c = LightGBMClassifier(seed=2, **params).fit(X, y).predict_proba(X)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
