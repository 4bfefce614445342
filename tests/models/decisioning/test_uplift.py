"""Uplift learners on a literal randomised experiment with known heterogeneous effects."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.decisioning.uplift import CONTROL, UpliftModel, treatment_labels
from models.decisioning.uplift_metrics import dr_difference, dr_value, ips_value, qini_auc, qini_curve, uplift_at_k

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


# --- the cells learner: shrunk differences in rates per cell ---------------------------------------------


def cell_experiment(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Offer A lifts segment 'hi' by 20 pts and 'lo' by 0; B lifts everyone by 5 pts. Base rate 0.2."""
    rng = np.random.default_rng(seed)
    seg = rng.choice(np.array(["hi", "lo"], dtype=object), size=n)
    x = pd.DataFrame({"segment": seg, "x1": rng.random(n)})
    arm = rng.choice(np.array([None, "A", "B"], dtype=object), size=n, p=[0.6, 0.2, 0.2])
    p = 0.2 + np.where(arm == "A", np.where(seg == "hi", 0.2, 0.0), 0.0) + np.where(arm == "B", 0.05, 0.0)
    return x, arm, (rng.random(n) < p).astype(int)


CELLS = {"n_estimators": 60, "learning_rate": 0.1, "min_child_samples": 40}


def test_cells_recover_planted_segment_effects_and_know_their_uncertainty() -> None:
    x, arm, y = cell_experiment(20_000, 4)
    model = UpliftModel(learner="cells", cells=("segment",), seed=0, **CELLS).fit(x, arm, y)
    probe = pd.DataFrame({"segment": ["hi", "lo"], "x1": [0.5, 0.5]})
    up = model.predict_uplift(probe)
    sd = model.predict_uplift_sd(probe)
    assert sd is not None and sd.shape == (2, 2) and (sd > 0).all()
    assert up[0, 0] == pytest.approx(0.20, abs=3 * sd[0, 0]) and up[1, 0] == pytest.approx(0.0, abs=3 * sd[1, 0])
    # B does not differ between segments: the segment level collapses onto B's overall effect
    assert up[0, 1] == pytest.approx(up[1, 1], abs=0.01) and up[0, 1] == pytest.approx(0.05, abs=0.02)
    # a segment never seen in training gets the offer's overall effect
    unseen = model.predict_uplift(pd.DataFrame({"segment": ["new"], "x1": [0.5]}))
    assert unseen[0, 0] == pytest.approx(model.cell_tables_["A"][0][""][0])
    # more data, less uncertainty
    small = UpliftModel(learner="cells", cells=("segment",), seed=0, **CELLS).fit(x[:4000], arm[:4000], y[:4000])
    small_sd = small.predict_uplift_sd(probe)
    assert small_sd is not None and (small_sd[:, 0] > sd[:, 0]).all()
    assert UpliftModel(learner="x", **CELLS).fit(x[["x1"]], arm, y).predict_uplift_sd(probe) is None


def test_small_cells_are_shrunk_toward_their_parent() -> None:
    # 'rare' has 40 rows: its raw difference is mostly noise, so the estimate stays near the offer's mean
    x, arm, y = cell_experiment(12_000, 5)
    x.loc[:39, "segment"] = "rare"
    y = y.copy()
    y[:40] = np.where(arm[:40] == "A", 1, 0)  # a wildly lucky raw difference (+100 pts) in the rare cell
    model = UpliftModel(learner="cells", cells=("segment",), seed=0, **CELLS).fit(x, arm, y)
    rare = model.predict_uplift(pd.DataFrame({"segment": ["rare"], "x1": [0.5]}))[0, 0]
    overall = model.cell_tables_["A"][0][""][0]
    assert abs(rare - overall) < 0.5 * abs(1.0 - overall)


def test_cells_nest_numeric_bins_and_p_base_and_round_trip() -> None:
    x, arm, y = cell_experiment(8_000, 6)
    model = UpliftModel(learner="cells", cells=("segment", "x1", "p_base"), cell_bins=3, seed=0, **CELLS)
    model.fit(x, arm, y)
    assert len(model.cell_edges_["x1"]) == 2 and "p_base" in model.cell_edges_
    assert [len(t) for t in model.cell_tables_.values()] == [4, 4]  # overall + three nested levels
    back = UpliftModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.allclose(back.predict_uplift(x[:500]), model.predict_uplift(x[:500]))
    assert np.allclose(back.predict_uplift_sd(x[:500]), model.predict_uplift_sd(x[:500]))  # type: ignore[arg-type]
    assert set(back.outcome_models_) == {CONTROL}  # only the control arm needs a model
    with pytest.raises(ValueError, match="cell columns missing"):
        UpliftModel(learner="cells", cells=("nope",)).fit(x, arm, y)
    with pytest.raises(ValueError, match="at least one cell column"):
        UpliftModel(learner="cells").fit(x, arm, y)
    with pytest.raises(ValueError, match="missing"):
        model.predict_uplift(x.drop(columns="segment"))


def test_paired_dr_difference_is_tighter_than_two_values() -> None:
    rng = np.random.default_rng(8)
    n = 50_000
    logged = rng.choice(2, size=n, p=[0.7, 0.3])
    prop = np.array([0.7, 0.3])[logged]
    x = rng.normal(0, 3, n)  # a customer effect shared by both arms: noise the pairing cancels
    reward = x + np.where(logged == 1, 0.5, 0.0) + rng.normal(0, 1, n)
    model = np.column_stack([x, x + 0.5])
    always, never = np.ones(n, dtype=int), np.zeros(n, dtype=int)
    diff = dr_difference(logged, prop, always, never, reward, model)
    assert diff.value == pytest.approx(0.5, abs=0.05) and diff.matched == n
    separate = dr_value(logged, prop, always, reward, model).std_error
    assert diff.std_error < separate
