"""Calibration: fixes miscalibrated probabilities on fresh draws, recovers a known Platt slope, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit, logit

from models.calibration import ProbabilityCalibrator
from models.evaluation import expected_calibration_error


def _draw(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True probabilities (Beta(2, 5)) and outcomes drawn from them."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 5, n)
    return p, rng.binomial(1, p)


@pytest.mark.parametrize(
    ("method", "distort"),
    [
        ("auto", lambda p: np.sqrt(p)),  # under-confident low scores, shifted up
        ("isotonic", lambda p: np.sqrt(p)),
        ("platt", lambda p: expit(2.5 * logit(p) + 0.7)),  # over-confident and shifted
        ("auto", lambda p: expit(2.5 * logit(p) + 0.7)),
    ],
)
def test_calibration_reduces_ece_on_fresh_draws(method: str, distort) -> None:
    p_fit, y_fit = _draw(20_000, seed=1)
    cal = ProbabilityCalibrator(method=method).fit(distort(p_fit), y_fit)
    p_new, y_new = _draw(50_000, seed=2)
    raw_ece = expected_calibration_error(y_new, distort(p_new))
    ece = expected_calibration_error(y_new, cal.transform(distort(p_new)))
    assert raw_ece > 0.05
    assert ece < 0.02


def test_platt_recovers_a_known_slope_and_intercept() -> None:
    rng = np.random.default_rng(5)
    z = rng.normal(0.0, 1.5, 60_000)
    y = rng.binomial(1, expit(0.5 * z - 1.0))
    cal = ProbabilityCalibrator(method="platt").fit(expit(z), y)
    assert cal.method_ == "platt"
    assert cal.params_["slope"] == pytest.approx(0.5, abs=0.03)
    assert cal.params_["intercept"] == pytest.approx(-1.0, abs=0.04)


def test_auto_chooses_by_out_of_fold_log_loss() -> None:
    # a step: Platt cannot bend to it, isotonic can
    rng = np.random.default_rng(7)
    raw = rng.uniform(0, 1, 6_000)
    y = rng.binomial(1, np.where(raw < 0.5, 0.05, 0.6))
    step = ProbabilityCalibrator().fit(raw, y)
    assert set(step.oof_log_loss_) == {"isotonic", "platt"}
    assert step.method_ == "isotonic"
    assert step.oof_log_loss_["isotonic"] < step.oof_log_loss_["platt"]
    # a pure logistic distortion on few rows: Platt's two parameters generalise better
    z = rng.normal(0, 1, 400)
    y2 = rng.binomial(1, expit(0.6 * z))
    smooth = ProbabilityCalibrator().fit(expit(z), y2)
    assert smooth.method_ == min(smooth.oof_log_loss_, key=smooth.oof_log_loss_.__getitem__)
    assert smooth.method_ == "platt"


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_output_is_monotone_and_inside_bounds(method: str) -> None:
    p, y = _draw(5_000, seed=3)
    cal = ProbabilityCalibrator(method=method, eps=1e-3).fit(p**2, y)
    grid = np.linspace(0, 1, 1001)
    out = cal.predict(grid)
    assert (np.diff(out) >= 0).all()
    assert out.min() >= 1e-3 and out.max() <= 1 - 1e-3


@pytest.mark.parametrize("method", ["auto", "isotonic", "platt"])
def test_json_round_trip_gives_identical_predictions(method: str) -> None:
    p, y = _draw(3_000, seed=4)
    cal = ProbabilityCalibrator(method=method).fit(np.sqrt(p), y)
    state = json.loads(json.dumps(cal.to_dict()))
    back = ProbabilityCalibrator.from_dict(state)
    grid = np.linspace(0, 1, 777)
    assert back.method_ == cal.method_
    np.testing.assert_array_equal(back.transform(grid), cal.transform(grid))


def test_an_anti_informative_score_is_not_reversed() -> None:
    rng = np.random.default_rng(9)
    raw = rng.uniform(0.01, 0.99, 4_000)
    y = rng.binomial(1, 1 - raw)  # higher raw score = less likely
    cal = ProbabilityCalibrator(method="platt").fit(raw, y)
    assert cal.params_["slope"] == 0.0
    assert cal.transform(np.array([0.1, 0.9])) == pytest.approx([y.mean(), y.mean()], abs=0.01)


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="raw_p: probabilities must lie in"):
        ProbabilityCalibrator().fit([0.2, 1.4], [0, 1])
    with pytest.raises(ValueError, match="raw_p: 1 values are NaN"):
        ProbabilityCalibrator().fit([0.2, np.nan], [0, 1])
    with pytest.raises(ValueError, match="y: only one class"):
        ProbabilityCalibrator(method="platt").fit([0.2, 0.3], [1, 1])
    with pytest.raises(ValueError, match="y: 3 labels for 2"):
        ProbabilityCalibrator(method="platt").fit([0.2, 0.3], [1, 0, 1])
    with pytest.raises(ValueError, match="smaller class"):
        ProbabilityCalibrator(folds=5).fit([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="method"):
        ProbabilityCalibrator(method="beta").fit([0.1, 0.9], [0, 1])  # type: ignore[arg-type]
    with pytest.raises(AttributeError, match="not fitted"):
        ProbabilityCalibrator().transform([0.5])
    with pytest.raises(ValueError, match="missing"):
        ProbabilityCalibrator.from_dict(
            {
                "kind": "probability_calibrator",
                "format_version": 1,
                "method": "platt",
                "params": {"slope": 1.0},
                "eps": 0,
            }
        )
