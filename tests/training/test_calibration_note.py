"""The job says why the holdout ECE misses 0.05: a base-rate shift, or the scores' spread."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

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
