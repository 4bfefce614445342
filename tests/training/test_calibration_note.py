"""Calibration in the next window: the seasonal correction chosen on validation, and the job saying why
the holdout ECE misses 0.05 (a base-rate shift, or the scores' spread)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from models.calibration import ProbabilityCalibrator
from training.base_rate import decide, needed_cutoffs
from training.calibration_note import calibration_note

V, S, H = (datetime(2011, m, 1, tzinfo=UTC) for m in (6, 1, 9))


def _draw(p: np.ndarray, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(len(p)) < p).astype(int)


def test_silent_when_calibrated() -> None:
    p = np.random.default_rng(0).uniform(0.05, 0.95, 20_000)
    assert calibration_note(_draw(p, 1), p, _draw(p, 2), [V, S], H) == ""


def test_names_a_base_rate_shift_with_its_figures() -> None:
    p = np.random.default_rng(0).uniform(0.3, 0.9, 20_000)
    y = _draw(p - 0.2, 1)  # the next window buys less than the calibration windows did
    note = calibration_note(y, p, _draw(p, 2), [V, S], H)
    assert "base rate moved" in note and "2011-06-01, 2011-01-01" in note and "after 2011-09-01" in note


def test_names_the_spread_when_the_average_holds() -> None:
    p = np.random.default_rng(0).uniform(0.1, 0.9, 20_000)
    over = 0.5 + (p - 0.5) * 0.3  # the truth is much flatter than the scores, same mean
    note = calibration_note(_draw(over, 1), p, _draw(p, 2), [V], H)
    assert "spread" in note and "base rate" not in note


def _rates(table: dict[datetime, float]) -> Callable[[datetime], float | None]:
    return lambda c: table.get(c)


def test_seasonal_correction_is_chosen_on_validation_only() -> None:
    """Where last year's pair forecast the validation window better than persistence, the calibrator is
    moved to ``rate(valid) * rate(holdout - 1y) / rate(valid - 1y)``; no label of the holdout window is read."""
    span = timedelta(days=90)
    valid, holdout = datetime(2011, 6, 12, tzinfo=UTC), datetime(2011, 9, 10, tzinfo=UTC)
    cuts = needed_cutoffs(valid, holdout, span)
    seasonal = {
        cuts["before_valid"]: 0.20,
        cuts["valid"]: 0.30,
        cuts["before_valid_last_year"]: 0.10,
        cuts["valid_last_year"]: 0.15,
        cuts["holdout_last_year"]: 0.30,
    }
    read: list[datetime] = []

    def rate_at(c: datetime) -> float | None:
        read.append(c)
        return seasonal.get(c)

    got = decide(rate_at, valid, holdout, span)
    assert got.used and got.target_rate == pytest.approx(0.30 * 0.30 / 0.15)
    assert max(read) + span <= holdout
    flat = {**seasonal, cuts["valid_last_year"]: 0.10}  # last year said "no change", this year rose: persistence wins
    assert not decide(_rates(flat), valid, holdout, span).used
    early = {k: v for k, v in seasonal.items() if k != cuts["before_valid_last_year"]}
    assert "no year-earlier" in decide(_rates(early), valid, holdout, span).reason


def test_a_shifted_calibrator_moves_the_odds_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.05, 0.95, 4000)
    cal = ProbabilityCalibrator(method="platt").fit(raw, _draw(raw, 1))
    moved = cal.shifted(0.5, 0.6)
    p, q = cal.transform(raw), moved.transform(raw)
    odds = (q / (1 - q)) / (p / (1 - p))
    np.testing.assert_allclose(odds, (0.6 / 0.4) / (0.5 / 0.5), rtol=1e-6)
    np.testing.assert_array_equal(ProbabilityCalibrator.from_dict(moved.to_dict()).transform(raw), q)
    np.testing.assert_array_equal(ProbabilityCalibrator.from_dict(cal.to_dict()).transform(raw), p)
    with pytest.raises(ValueError, match="to_rate"):
        cal.shifted(0.5, 1.0)
