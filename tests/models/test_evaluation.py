"""Metrics with known right answers: calibration error, lift and capture with ties, gains, value errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from models.evaluation import (
    assign_bins,
    binary_report,
    calibration_table,
    decile_calibration,
    expected_calibration_error,
    expected_positives_in_top,
    gains_curve,
    value_report,
)

# 20 rows: ten at 0.2 with two positives, ten at 0.8 with eight positives: perfectly calibrated.
Y_CAL = np.array([0] * 8 + [1] * 2 + [0] * 2 + [1] * 8)
P_CAL = np.array([0.2] * 10 + [0.8] * 10)


def test_ece_of_a_perfectly_calibrated_binned_example_is_zero() -> None:
    for bins in (2, 5, 10):
        assert expected_calibration_error(Y_CAL, P_CAL, bins) == pytest.approx(0.0, abs=1e-12)
    assert binary_report(Y_CAL, P_CAL)["ece"] == pytest.approx(0.0, abs=1e-12)


def test_ece_known_value_and_weighting() -> None:
    # all predictions 0.5 (one tied bin), observed rate 0.3 -> |0.5 - 0.3| = 0.2
    y = np.array([1] * 3 + [0] * 7)
    assert expected_calibration_error(y, np.full(10, 0.5)) == pytest.approx(0.2)
    # two bins of 5: predicted 0.1 observed 0.2 (gap 0.1), predicted 0.9 observed 0.6 (gap 0.3) -> 0.2
    y2 = np.array([1, 0, 0, 0, 0, 1, 1, 1, 0, 0])
    p2 = np.array([0.1] * 5 + [0.9] * 5)
    assert expected_calibration_error(y2, p2, bins=2) == pytest.approx(0.5 * 0.1 + 0.5 * 0.3)


def test_bins_are_equal_frequency_and_never_split_ties() -> None:
    assert np.bincount(assign_bins(np.arange(100.0), 10)).tolist() == [10] * 10
    assert np.bincount(assign_bins(np.arange(7.0), 3)).tolist() == [3, 2, 2]
    values = np.array([0.1, 0.2, 0.2, 0.2, 0.2, 0.3, 0.4, 0.5])
    b = assign_bins(values, 4)
    assert len(set(b[1:5].tolist())) == 1  # the four 0.2s share a bin
    table = calibration_table(np.array([0, 1, 0, 1, 0, 1, 0, 1]), values, bins=4)
    assert table["count"].sum() == 8
    assert (table["p_min"] <= table["p_max"]).all()


def test_metrics_match_reference_implementations() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 500)
    y = rng.binomial(1, p)
    report = binary_report(y, p)
    assert report["n"] == 500
    assert report["base_rate"] == pytest.approx(y.mean())
    assert report["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert report["log_loss"] == pytest.approx(log_loss(y, p))
    assert report["brier"] == pytest.approx(brier_score_loss(y, p))


def test_lift_and_capture_of_a_perfect_ranking() -> None:
    y = np.array([1] * 10 + [0] * 90)  # base rate 0.1
    report = binary_report(y, y.astype(float))
    assert report["lift_top10"] == pytest.approx(10.0)  # = 1 / base rate
    assert report["capture_top10"] == pytest.approx(1.0)
    assert report["lift_top20"] == pytest.approx(5.0)  # capped: all positives already found
    assert report["capture_top20"] == pytest.approx(1.0)
    # base rate above the fraction: lift reaches 1 / base rate
    y2 = np.array([1] * 50 + [0] * 50)
    assert binary_report(y2, y2.astype(float))["lift_top10"] == pytest.approx(2.0)


def test_ties_count_pro_rata_and_do_not_depend_on_row_order() -> None:
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.5, 0.5, 0.1])
    # top 2: the 0.9 row (a positive), then one of two tied rows holding one positive -> 1.5 expected
    assert expected_positives_in_top(y, s, 2) == pytest.approx(1.5)
    # a constant score is no better than random: lift exactly 1, capture = the share targeted
    rng = np.random.default_rng(0)
    y3 = rng.binomial(1, 0.3, 200)
    y3[:2] = [0, 1]
    flat = binary_report(y3, np.full(200, 0.5))
    assert flat["lift_top10"] == pytest.approx(1.0)
    assert flat["capture_top20"] == pytest.approx(0.2)
    # shuffling rows changes nothing
    s3 = np.round(rng.uniform(0, 1, 200), 1)  # many ties
    perm = rng.permutation(200)
    assert binary_report(y3, s3) == pytest.approx(binary_report(y3[perm], s3[perm]))


def test_rankings_get_nan_for_probability_metrics() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    days = np.array([10.0, 20.0, 200.0, 300.0, 5.0, 150.0])
    report = binary_report(y, days)
    assert math.isnan(report["log_loss"]) and math.isnan(report["brier"]) and math.isnan(report["ece"])
    assert report["roc_auc"] == pytest.approx(1.0)
    forced = binary_report(y, days / 1000, probabilities=False)
    assert math.isnan(forced["log_loss"])
    assert forced["roc_auc"] == pytest.approx(report["roc_auc"])
    with pytest.raises(ValueError, match="probabilities=True"):
        binary_report(y, days, probabilities=True)


def test_bad_input_raises_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="score: 3 values for 4 labels"):
        binary_report([0, 1, 0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="score: 1 of 4 values are NaN"):
        binary_report([0, 1, 0, 1], [0.1, np.nan, 0.3, 0.4])
    with pytest.raises(ValueError, match="y: only one class"):
        binary_report([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="y: labels must be 0 or 1"):
        binary_report([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="tops"):
        binary_report([0, 1], [0.1, 0.2], tops=(0.0,))
    with pytest.raises(ValueError, match="y: empty"):
        binary_report([], [])
    with pytest.raises(ValueError, match="bins"):
        calibration_table([0, 1], [0.1, 0.2], bins=0)


def test_gains_curve_shape() -> None:
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    curve = gains_curve(y, y.astype(float))
    assert curve.iloc[0][["share_targeted", "share_captured"]].tolist() == [0.0, 0.0]
    assert curve.iloc[-1][["share_targeted", "share_captured"]].tolist() == [1.0, 1.0]
    # perfect ranking: all positives captured after the top 20%
    assert curve.loc[curve["share_targeted"] == 0.2, "share_captured"].item() == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    s = rng.uniform(size=10)
    c = gains_curve(y, s)
    assert (np.diff(c["share_targeted"]) > 0).all() and (np.diff(c["share_captured"]) >= 0).all()


def test_value_report_known_numbers() -> None:
    r = value_report([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0])
    assert r["mae"] == pytest.approx(1.0)
    assert r["rmse"] == pytest.approx(math.sqrt(1.5))
    assert math.isnan(r["spearman"])  # constant prediction: rank correlation undefined
    r2 = value_report([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert r2["spearman"] == pytest.approx(0.8)
    assert r2["n"] == 4 and r2["mean_actual"] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="predicted: 2 values for 3"):
        value_report([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="actual"):
        value_report([1, np.nan], [1, 2])


def test_decile_calibration_means() -> None:
    predicted = np.arange(20, dtype=float)
    actual = predicted * 2
    table = decile_calibration(actual, predicted)
    assert table["count"].tolist() == [2] * 10
    assert table["mean_predicted"].tolist() == pytest.approx([0.5 + 2 * i for i in range(10)])
    assert table["mean_actual"].tolist() == pytest.approx([1.0 + 4 * i for i in range(10)])
