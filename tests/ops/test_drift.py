"""PSI, missing rates, new categories and score shifts on tiny tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.drift import compare_to_profile, psi, reference_profile, score_shift


def test_psi_is_zero_for_the_same_shares_and_known_for_a_hand_case() -> None:
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert psi(np.array([0.5, 0.5]), np.array([0.8, 0.2])) == pytest.approx(expected)


def test_a_table_against_its_own_profile_does_not_drift_and_a_shifted_one_does() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 5000).astype(np.float32), "n": rng.poisson(0.3, 5000).astype(float)})
    profile = reference_profile(ref, ["x", "n"])
    assert profile["rows"] == 5000 and len(profile["features"]["x"]["edges"]) == 9
    assert len(profile["features"]["n"]["edges"]) < 9  # mostly zeros: the tied deciles merge
    same = {d.feature: d for d in compare_to_profile(profile, ref)}
    assert same["x"].psi == pytest.approx(0.0, abs=1e-9) and same["n"].psi == pytest.approx(0.0, abs=1e-9)
    moved = ref.assign(x=ref["x"] + 1.0)
    drift = {d.feature: d for d in compare_to_profile(profile, moved)}
    assert drift["x"].level == "major" and drift["n"].level == "stable"
    assert compare_to_profile(profile, moved)[0].feature == "x"  # largest first


def test_missing_values_count_in_their_own_bin() -> None:
    ref = pd.DataFrame({"x": np.arange(1000, dtype=float)})
    profile = reference_profile(ref, ["x"])
    half = ref.assign(x=ref["x"].where(ref["x"] % 2 == 0))  # half missing, the rest spread as before
    (d,) = compare_to_profile(profile, half)
    assert d.missing_rate_reference == 0.0 and d.missing_rate_current == pytest.approx(0.5)
    assert d.level == "major"


def test_new_categories_are_named_with_their_share() -> None:
    ref = pd.DataFrame({"c": ["a"] * 60 + ["b"] * 40})
    profile = reference_profile(ref, ["c"])
    now = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 40 + ["z"] * 10})
    (d,) = compare_to_profile(profile, now)
    assert d.new_categories == ["z"] and d.new_category_share == pytest.approx(0.1)
    assert d.psi > 0


def test_bad_input_is_refused_with_the_feature_named() -> None:
    ref = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="y"):
        reference_profile(ref, ["y"])
    with pytest.raises(ValueError, match="x"):
        compare_to_profile(reference_profile(ref, ["x"]), pd.DataFrame({"z": [1.0]}))


def test_score_shift_ignores_missing_scores_and_sees_a_moved_distribution() -> None:
    rng = np.random.default_rng(1)
    before = rng.beta(2, 5, 4000)
    same = score_shift("churn", before, np.append(before, np.nan))
    assert same.psi == pytest.approx(0.0, abs=1e-9) and same.ks == 0.0 and same.rows_current == 4000
    moved = score_shift("churn", before, rng.beta(5, 2, 4000))
    assert moved.level == "major" and moved.ks > 0.5 and moved.mean_current > moved.mean_previous
    with pytest.raises(ValueError, match="no scores"):
        score_shift("churn", before, np.array([np.nan]))
