"""Paired bootstrap intervals: a known difference is covered, a constant one is exact, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from models.intervals import paired_bootstrap


def test_covers_a_known_difference_and_excludes_zero() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(2000)
    better = base + 0.05 + rng.normal(0, 0.1, 2000)  # true mean difference 0.05
    interval = paired_bootstrap(better, base, seed=1)
    assert interval.low < 0.05 < interval.high and interval.above_zero
    assert interval.high - interval.low < 0.02  # paired: the shared noise of `base` cancels
    assert interval.pairs == 2000 and interval.confidence == 0.95


def test_no_difference_straddles_zero_and_a_constant_shift_is_exact() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(500), rng.random(500)
    interval = paired_bootstrap(a, b, seed=0)
    assert interval.low < interval.difference < interval.high
    shifted = paired_bootstrap(a + 0.1, a, seed=0)
    assert shifted.low == pytest.approx(0.1) and shifted.high == pytest.approx(0.1)


def test_seeded_and_refuses_bad_input() -> None:
    a, b = np.linspace(0, 1, 50), np.linspace(0, 0.8, 50)
    assert paired_bootstrap(a, b, seed=4) == paired_bootstrap(a, b, seed=4)
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap(a, b[:-1])
    with pytest.raises(ValueError, match="NaN"):
        paired_bootstrap(np.array([np.nan]), np.array([0.0]))
