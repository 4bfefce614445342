"""The base purchase model fitted on chosen control rows (``base_rows``): control sends whose outcome
window held another offer buy more, and a decision prices an offer against buying without any."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.decisioning.uplift import UpliftModel

FAST: dict[str, Any] = {"n_estimators": 60, "learning_rate": 0.1, "min_child_samples": 30, "seed": 0}


def contaminated(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Base rate 0.05; a control row with another offer around it buys at 0.05 + 0.25; the offer adds 0.10."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"tenure": rng.random(n), "region": rng.choice(np.array(["n", "s"], dtype=object), n)})
    arm = np.full(n, None, dtype=object)
    arm[rng.random(n) < 0.3] = "OF1"
    other = rng.random(n) < 0.6
    p = 0.05 + np.where(other, 0.25, 0.0) + np.where(arm == "OF1", 0.10, 0.0)
    y = (rng.random(n) < p).astype(int)
    return x, arm, y, ~other


def test_base_rows_give_the_rate_without_other_offers_and_leave_the_uplift_alone() -> None:
    x, arm, y, clean = contaminated(8_000, 3)
    every = UpliftModel(learner="cells", cells=("region",), **FAST).fit(x, arm, y)
    only_clean = UpliftModel(learner="cells", cells=("region",), **FAST).fit(x, arm, y, base_rows=clean)
    assert every.predict_base(x).mean() == pytest.approx(0.05 + 0.6 * 0.25, abs=0.02)
    assert only_clean.predict_base(x).mean() == pytest.approx(0.05, abs=0.015)
    assert only_clean.base_rows_ == int((clean & (arm == None)).sum())  # noqa: E711 (object array)
    # the cell differences still use every row: the same uplift either way
    np.testing.assert_allclose(only_clean.predict_uplift(x), every.predict_uplift(x))
    again = UpliftModel.from_dict(json.loads(json.dumps(only_clean.to_dict())))
    assert again.base_rows_ == only_clean.base_rows_
    np.testing.assert_allclose(again.predict_base(x), only_clean.predict_base(x))


def test_base_rows_as_weights_lean_the_base_rate_toward_the_heavy_rows() -> None:
    rng = np.random.default_rng(5)
    n = 6_000
    recent = rng.random(n) < 0.5  # the base rate fell from 0.30 to 0.10; the uplift stayed +0.10
    x = pd.DataFrame({"tenure": rng.random(n), "region": rng.choice(np.array(["n", "s"], dtype=object), n)})
    arm = np.full(n, None, dtype=object)
    arm[rng.random(n) < 0.3] = "OF1"
    y = (rng.random(n) < np.where(recent, 0.10, 0.30) + np.where(arm == "OF1", 0.10, 0.0)).astype(int)
    even = UpliftModel(learner="cells", cells=("region",), **FAST).fit(x, arm, y, base_rows=np.ones(n))
    leaning = UpliftModel(learner="cells", cells=("region",), **FAST).fit(
        x, arm, y, base_rows=np.where(recent, 1.0, 0.05)
    )
    assert even.predict_base(x).mean() == pytest.approx(0.20, abs=0.02)
    assert leaning.predict_base(x).mean() == pytest.approx(0.10 + 0.20 * 0.05 / 1.05, abs=0.02)


def test_base_rows_are_refused_where_they_cannot_be_honoured() -> None:
    x, arm, y, clean = contaminated(2_000, 4)
    with pytest.raises(ValueError, match="learner='cells'"):
        UpliftModel(learner="t", **FAST).fit(x, arm, y, base_rows=clean)
    with pytest.raises(ValueError, match="shape"):
        UpliftModel(learner="cells", cells=("region",), **FAST).fit(x, arm, y, base_rows=clean[:-1])
    with pytest.raises(ValueError, match="keeps 0 control rows"):
        UpliftModel(learner="cells", cells=("region",), **FAST).fit(x, arm, y, base_rows=np.zeros(len(x), bool))
    with pytest.raises(ValueError, match="non-negative"):
        UpliftModel(learner="cells", cells=("region",), **FAST).fit(x, arm, y, base_rows=-np.ones(len(x)))
    with pytest.raises(ValueError, match="0/1 outcome"):
        spend = y * 10.0 + np.arange(len(y)) % 3
        UpliftModel(learner="cells", cells=("region",), **FAST).fit(x, arm, spend, base_rows=np.full(len(x), 0.5))
