"""Qini coefficient, AUUC and uplift@k against scikit-uplift's definitions, ties included."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

from models.decisioning.uplift_metrics import auuc, qini_auc, qini_coefficient, qini_points, uplift_at_k


def tied_experiment(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score rounded to whole numbers (a handful of distinct values: many ties), random arm and outcome."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    t = rng.integers(0, 2, n)
    s = np.round(rng.normal(size=n), 0)
    return s, t.astype(bool), y


def test_values_equal_those_scikit_uplift_computed_on_a_tied_example() -> None:
    # computed by scikit-uplift 0.5.1 (qini_auc_score, uplift_auc_score, uplift_at_k) on tied_experiment(19):
    # 60 rows, 7 distinct scores
    s, t, y = tied_experiment(19)
    assert len(np.unique(s)) == 7
    assert qini_coefficient(s, t, y) == pytest.approx(0.05720698043739411, rel=1e-12)
    assert qini_coefficient(s, t, y, negative_effect=False) == pytest.approx(0.7410179737321126, rel=1e-12)
    assert auuc(s, t, y) == pytest.approx(0.10995698648694835, rel=1e-12)
    assert uplift_at_k(s, t, y, 0.3) == pytest.approx(0.07792207792207795, rel=1e-12)
    assert uplift_at_k(s, t, y, 0.3, strategy="by_group") == pytest.approx(0.1527777777777778, rel=1e-12)
    assert uplift_at_k(s, t, y, 7) == pytest.approx(0.4, rel=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_values_equal_scikit_uplift_on_random_data_with_ties(seed: int) -> None:
    metrics = importlib.import_module("sklift.metrics")  # test-only dependency, in the dev extra
    s, t, y = tied_experiment(seed, n=200 + 37 * seed)
    ti = t.astype(int)
    overall_gain = y[t].sum() - t.sum() * y[~t].sum() / (~t).sum()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklift calls sklearn's deprecated stable_cumsum
        if overall_gain < 0:  # sklift's perfect curve without negative effects runs backwards: both refuse
            with pytest.raises(ValueError):
                metrics.qini_auc_score(y, s, ti, negative_effect=False)
            with pytest.raises(ValueError, match="overall effect is negative"):
                qini_coefficient(s, t, y, negative_effect=False)
        expected = {
            "qini": metrics.qini_auc_score(y, s, ti),
            "auuc": metrics.uplift_auc_score(y, s, ti),
            **(
                {"qini_no_negative": metrics.qini_auc_score(y, s, ti, negative_effect=False)}
                if overall_gain >= 0
                else {}
            ),
            "at_k": metrics.uplift_at_k(y, s, ti, "overall", 0.3),
            "at_k_by_group": metrics.uplift_at_k(y, s, ti, "by_group", 0.2),
            "at_count": metrics.uplift_at_k(y, s, ti, "overall", 25),
        }
    ours = {
        "qini": qini_coefficient(s, t, y),
        "auuc": auuc(s, t, y),
        "at_k": uplift_at_k(s, t, y, 0.3),
        "at_k_by_group": uplift_at_k(s, t, y, 0.2, strategy="by_group"),
        "at_count": uplift_at_k(s, t, y, 25),
    }
    if overall_gain >= 0:
        ours["qini_no_negative"] = qini_coefficient(s, t, y, negative_effect=False)
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_ties_enter_the_curve_at_once_so_row_order_does_not_matter() -> None:
    s, t, y = tied_experiment(3, n=300)
    perm = np.random.default_rng(0).permutation(len(s))
    assert qini_coefficient(s[perm], t[perm], y[perm]) == pytest.approx(qini_coefficient(s, t, y), rel=1e-12)
    assert auuc(s[perm], t[perm], y[perm]) == pytest.approx(auuc(s, t, y), rel=1e-12)
    x, q = qini_points(s, t, y)
    assert len(x) == len(np.unique(s)) + 1 and x[0] == 0 and q[0] == 0 and x[-1] == len(s)


def test_the_perfect_ranking_scores_one_and_a_reversed_one_below_zero() -> None:
    _s, t, y = tied_experiment(5, n=400)
    perfect = y * t - y * ~t  # treated buyers first, control buyers last
    assert qini_coefficient(perfect.astype(float), t, y) == pytest.approx(1.0)
    assert qini_coefficient(-perfect.astype(float), t, y) < 0


def test_continuous_outcomes_work_for_the_curves_and_not_for_the_normalised_scores() -> None:
    rng = np.random.default_rng(1)
    s, t = rng.random(100), rng.random(100) < 0.5
    spend = rng.gamma(2.0, 20.0, 100) * (rng.random(100) < 0.4)
    assert np.isfinite(uplift_at_k(s, t, spend, 0.5))
    assert np.isfinite(qini_auc(s, t, spend))
    with pytest.raises(ValueError, match="0/1 outcome"):
        qini_coefficient(s, t, spend)
    with pytest.raises(ValueError, match="k must be"):
        uplift_at_k(s, t, spend, 1.0)


def test_policy_contrast_covers_a_known_difference_and_clusters_widen_the_interval() -> None:
    from models.decisioning.uplift_metrics import policy_contrast

    rng = np.random.default_rng(7)
    n_customers, per = 2_000, 10
    customer = np.repeat(np.arange(n_customers), per)
    n = len(customer)
    logged = rng.choice(3, size=n, p=[0.6, 0.2, 0.2])
    prop = np.array([0.6, 0.2, 0.2])[logged]
    level = rng.normal(0, 2, n_customers)[customer]
    effect = rng.normal(0, 2, n_customers)[customer]  # arm 1's effect differs by customer: sends correlate
    means = np.array([1.0, 1.5, 0.8])
    reward = means[logged] + level + np.where(logged == 1, effect - effect.mean(), 0.0) + rng.normal(0, 1, n)
    policy, baseline = np.full(n, 1), np.zeros(n, dtype=np.int64)  # true difference +0.5
    model = np.tile(means, (n, 1))
    plain = policy_contrast(logged, prop, policy, baseline, reward, model)
    clustered = policy_contrast(logged, prop, policy, baseline, reward, model, clusters=customer)
    for c in (plain, clustered):
        assert c.ips_low < 0.5 < c.ips_high and c.dr_low < 0.5 < c.dr_high
        assert c.dr_low > 0  # the difference is found
    assert clustered.ips_se > plain.ips_se  # correlated sends carry less information than independent ones
    same = policy_contrast(logged, prop, baseline, baseline, reward, model)
    assert same.dr == 0 and same.dr_se == 0 and same.differing == 0
