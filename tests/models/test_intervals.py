"""Paired bootstrap intervals: the metrics agree with scikit-learn / SciPy, the interval is paired,
seeded, and says which scorer is better in the metric's own direction."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import mean_absolute_error, roc_auc_score

from models.intervals import MAE, ROC_AUC, SPEARMAN, paired_bootstrap, paired_mean_bootstrap


def _binary(n: int = 600, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    good = y + rng.normal(0, 0.8, n)
    poor = y + rng.normal(0, 3.0, n)
    return y, good, poor


def test_metrics_match_scikit_learn_and_scipy_including_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 1)  # many ties
    v = rng.gamma(2.0, 10.0, 300)
    w = np.round(v + rng.normal(0, 8, 300))
    assert ROC_AUC(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert MAE(v, w) == pytest.approx(mean_absolute_error(v, w), abs=1e-12)
    assert SPEARMAN(v, w) == pytest.approx(spearmanr(v, w).statistic, abs=1e-12)


def test_identical_scorers_give_a_zero_interval_that_is_not_better() -> None:
    y, good, _ = _binary()
    iv = paired_bootstrap(ROC_AUC, y, good, good.copy(), replicates=200)
    assert (iv.diff, iv.low, iv.high) == (0.0, 0.0, 0.0)
    assert not iv.better() and not iv.worse()


def test_a_clearly_better_scorer_has_its_interval_above_zero_and_the_reverse_below() -> None:
    y, good, poor = _binary()
    iv = paired_bootstrap(ROC_AUC, y, good, poor, replicates=300)
    assert iv.low > 0 and iv.better() and iv.diff == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, poor))
    assert iv.low <= iv.diff <= iv.high
    back = paired_bootstrap(ROC_AUC, y, poor, good, replicates=300)
    assert back.worse() and not back.better()
    assert "beats" in iv.describe("kairos", "bgnbd") and "worse" in back.describe("kairos", "bgnbd")


def test_pairing_narrows_the_interval_below_the_unpaired_spread() -> None:
    # two nearly identical scorers: their own AUCs vary a lot across resamples, their difference hardly
    y, good, _ = _binary(seed=3)
    twin = good + np.random.default_rng(9).normal(0, 0.05, len(good))
    iv = paired_bootstrap(ROC_AUC, y, good, twin, replicates=300)
    own = paired_bootstrap(ROC_AUC, y, good, np.zeros_like(good), replicates=300)  # spread of good's AUC alone
    assert (iv.high - iv.low) < 0.25 * (own.high - own.low)


def test_lower_is_better_for_mae() -> None:
    rng = np.random.default_rng(2)
    v = rng.gamma(2.0, 10.0, 500)
    close = v + rng.normal(0, 2, 500)
    far = v + rng.normal(0, 10, 500)
    iv = paired_bootstrap(MAE, v, close, far, replicates=300)
    assert iv.diff < 0 and iv.high < 0
    assert iv.better() and iv.gain[0] == pytest.approx(-iv.diff)
    assert iv.describe("kairos", "last_period").startswith(f"kairos beats last_period by {iv.diff:+.4f} mae [")
    assert iv.describe("kairos", "last_period").endswith("(lower is better)")
    assert paired_bootstrap(MAE, v, far, close, replicates=300).worse()


def test_spearman_interval_and_seeding() -> None:
    rng = np.random.default_rng(4)
    v = rng.gamma(2.0, 10.0, 400)
    a = v + rng.normal(0, 5, 400)
    b = v + rng.normal(0, 20, 400)
    first = paired_bootstrap(SPEARMAN, v, a, b, replicates=200, seed=7)
    assert first == paired_bootstrap(SPEARMAN, v, a, b, replicates=200, seed=7)
    assert first != paired_bootstrap(SPEARMAN, v, a, b, replicates=200, seed=8)
    assert first.better()


def test_roc_auc_resamples_keep_both_classes_even_when_one_is_rare() -> None:
    y = np.zeros(400)
    y[:3] = 1
    s = np.random.default_rng(5).random(400)
    iv = paired_bootstrap(ROC_AUC, y, s, s[::-1].copy(), replicates=500)
    assert iv.replicates == 500  # no resample lost a class (the AUC would be undefined)


def test_bad_input_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap(MAE, np.ones(3), np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="both classes"):
        paired_bootstrap(ROC_AUC, np.ones(5), np.ones(5), np.ones(5))
    with pytest.raises(ValueError, match="non-finite"):
        paired_bootstrap(MAE, np.ones(3), np.array([1.0, np.nan, 1.0]), np.ones(3))


def test_mean_difference_covers_a_known_difference_and_excludes_zero() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(2000)
    better = base + 0.05 + rng.normal(0, 0.1, 2000)  # true mean difference 0.05
    interval = paired_mean_bootstrap(better, base, seed=1)
    assert interval.low < 0.05 < interval.high and interval.above_zero
    assert interval.high - interval.low < 0.02  # paired: the shared noise of `base` cancels
    assert interval.pairs == 2000 and interval.confidence == 0.95


def test_mean_difference_no_difference_straddles_zero_and_a_constant_shift_is_exact() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(500), rng.random(500)
    interval = paired_mean_bootstrap(a, b, seed=0)
    assert interval.low < interval.difference < interval.high
    shifted = paired_mean_bootstrap(a + 0.1, a, seed=0)
    assert shifted.low == pytest.approx(0.1) and shifted.high == pytest.approx(0.1)


def test_mean_difference_seeded_and_refuses_bad_input() -> None:
    a, b = np.linspace(0, 1, 50), np.linspace(0, 0.8, 50)
    assert paired_mean_bootstrap(a, b, seed=4) == paired_mean_bootstrap(a, b, seed=4)
    with pytest.raises(ValueError, match="one length"):
        paired_mean_bootstrap(a, b[:-1])
    with pytest.raises(ValueError, match="NaN"):
        paired_mean_bootstrap(np.array([np.nan]), np.array([0.0]))
