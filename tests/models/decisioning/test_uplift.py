"""Uplift learners on a literal randomised experiment with known heterogeneous effects."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.decisioning.uplift import CONTROL, UpliftModel, treatment_labels
from models.decisioning.uplift_metrics import dr_value, ips_value, qini_auc, qini_curve, uplift_at_k

SMALL = {"n_estimators": 120, "learning_rate": 0.08, "min_child_samples": 40}


def experiment(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Features, arm (None / 'A' / 'B'), outcome and the true uplift of A and B per row."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"x1": rng.random(n), "x2": rng.random(n), "noise": rng.random(n)})
    arm = rng.choice(np.array([None, "A", "B"], dtype=object), size=n, p=[0.6, 0.2, 0.2])
    base = 0.15 + 0.2 * x["x2"].to_numpy()
    tau = np.column_stack([0.30 * (x["x1"].to_numpy() > 0.5), 0.20 * (1 - x["x1"].to_numpy()) - 0.05])
    p = base + np.where(arm == "A", tau[:, 0], np.where(arm == "B", tau[:, 1], 0.0))
    y = (rng.random(n) < p).astype(int)
    return x, arm, y, tau


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    return experiment(14_000, 3)


@pytest.mark.parametrize("learner", ["x", "t"])
def test_learner_ranks_the_planted_uplift(learner: str, data: tuple) -> None:
    x, arm, y, tau = data
    fit, test = slice(0, 10_000), slice(10_000, None)
    model = UpliftModel(learner=learner, seed=1, **SMALL).fit(x[fit], arm[fit], y[fit])  # type: ignore[arg-type]
    assert model.arms_ == ["A", "B"]
    up = model.predict_uplift(x[test])
    assert up.shape == (4_000, 2)
    for j, name in enumerate(["A", "B"]):
        assert np.corrcoef(up[:, j], tau[test, j])[0, 1] > 0.35
        keep = (arm[test] == name) | (arm[test] == None)  # noqa: E711 (object array)
        treated = arm[test][keep] == name
        model_qini = qini_auc(up[keep, j], treated, y[test][keep])
        random_qini = np.mean(
            [qini_auc(np.random.default_rng(s).random(keep.sum()), treated, y[test][keep]) for s in range(20)]
        )
        oracle_qini = qini_auc(tau[test][keep, j], treated, y[test][keep])
        # A's effect is strong (0 or +30 pts): nearly the oracle's ranking; B's is weak (-5 to +15 pts)
        share_of_oracle = 0.6 if name == "A" else 0.1
        assert model_qini > random_qini + share_of_oracle * (oracle_qini - random_qini), (name, model_qini)
    base, with_offer = model.predict_outcome(x[test])
    assert np.all((with_offer >= 0) & (with_offer <= 1))
    assert abs(base.mean() - 0.25) < 0.05


def test_round_trip_through_json_keeps_predictions(data: tuple) -> None:
    x, arm, y, _ = data
    model = UpliftModel(seed=0, **SMALL).fit(x[:6000], arm[:6000], y[:6000])
    doc = json.loads(json.dumps(model.to_dict()))
    back = UpliftModel.from_dict(doc)
    assert np.allclose(back.predict_uplift(x[6000:7000]), model.predict_uplift(x[6000:7000]))
    assert np.allclose(back.predict_base(x[6000:7000]), model.predict_base(x[6000:7000]))
    assert "tree" in doc["outcome_models"][CONTROL]  # LightGBM's own text, not a pickle
    with pytest.raises(ValueError, match="not a Kairos uplift model"):
        UpliftModel.from_dict({"format": "pickle"})


def test_bad_inputs_name_the_problem(data: tuple) -> None:
    x, arm, y, _ = data
    with pytest.raises(ValueError, match="learner"):
        UpliftModel(learner="s").fit(x, arm, y)  # type: ignore[arg-type]
    few = arm.copy()
    few[few == "B"] = None
    few[np.flatnonzero(arm == "B")[:5]] = "B"
    with pytest.raises(ValueError, match="arm 'B' has 5 sends"):
        UpliftModel().fit(x, few, y)
    with pytest.raises(ValueError, match="no offer"):
        UpliftModel().fit(x, np.array([None] * len(x), dtype=object), y)
    model = UpliftModel(**SMALL).fit(x[:3000], arm[:3000], y[:3000])
    with pytest.raises(ValueError, match="missing"):
        model.predict_uplift(x.drop(columns="x1"))
    assert list(treatment_labels(["A", None, float("nan"), ""])) == ["A", CONTROL, CONTROL, CONTROL]


def test_qini_on_a_literal_example() -> None:
    # 4 treated (2 buy), 4 control (1 buys); a perfect score puts treated buyers first, control buyer last
    treated = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
    y = np.array([1, 1, 0, 0, 0, 0, 0, 1])
    score = np.arange(8, 0, -1).astype(float)
    _share, q = qini_curve(score, treated, y)
    assert q[0] == 0 and q[2] == 2.0 and q[-1] == pytest.approx(2 - 1 * 4 / 4)
    assert qini_auc(score, treated, y) > 0 > qini_auc(-score, treated, y)
    assert uplift_at_k(score, treated, y, 0.5) == pytest.approx(1.0)


def test_off_policy_estimates_recover_a_known_value() -> None:
    rng = np.random.default_rng(5)
    n = 200_000
    logged = rng.choice(3, size=n, p=[0.5, 0.25, 0.25])
    prop = np.array([0.5, 0.25, 0.25])[logged]
    means = np.array([1.0, 2.0, 0.5])
    reward = means[logged] + rng.normal(0, 1, n)
    policy = np.full(n, 1)  # always arm 1: true value 2.0
    assert ips_value(logged, prop, policy, reward).value == pytest.approx(2.0, abs=0.03)
    model = np.tile(means, (n, 1)) + 0.3  # a biased reward model; DR stays unbiased
    assert dr_value(logged, prop, policy, reward, model).value == pytest.approx(2.0, abs=0.03)
