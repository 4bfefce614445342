"""Paired bootstrap intervals: how sure a difference between two models is, over the same queries.

Both models are scored on the same test users (or baskets): the pairs ``(a_i, b_i)`` are resampled with
replacement, together, and the interval is the percentile interval of the resampled mean differences
``mean(a - b)`` (Efron & Tibshirani, *An Introduction to the Bootstrap*, ch. 13). Seeded: the same
inputs and seed give the same interval. NumPy only; usable by any model family (recommendations,
propensity) that has one figure per query for each of two models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHUNK = 100  # resamples drawn at once (memory: chunk x queries indices)


@dataclass(frozen=True)
class Interval:
    """A difference of means and its bootstrap interval.

    Attributes:
        difference: ``mean(a) - mean(b)`` over the pairs.
        low: lower end of the interval.
        high: upper end of the interval.
        confidence: the interval's level (0.95: the 2.5th and 97.5th percentiles).
        pairs: queries the difference is over.
    """

    difference: float
    low: float
    high: float
    confidence: float
    pairs: int

    @property
    def above_zero(self) -> bool:
        """True when the whole interval is above zero: ``a`` is better with that confidence."""
        return self.low > 0.0


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile interval of ``mean(a - b)`` by resampling the pairs.

    Args:
        a: one figure per query for the first model (e.g. recall@10 per test user).
        b: the same queries, same order, for the second model.
        n_resamples: bootstrap resamples.
        confidence: the interval's level, in (0, 1).
        seed: seed of the resampling.

    Returns:
        The observed difference and its interval.

    Raises:
        ValueError: different lengths, no pairs, a missing value, ``n_resamples`` < 1 or ``confidence``
            outside (0, 1).
    """
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"paired bootstrap needs two 1-d arrays of one length, got {first.shape} and {second.shape}")
    if len(first) == 0:
        raise ValueError("paired bootstrap needs at least one pair")
    if np.isnan(first).any() or np.isnan(second).any():
        raise ValueError("paired bootstrap: a figure is missing (NaN); pass only the queries both models answered")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    diff = first - second
    n = len(diff)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, _CHUNK):
        size = min(_CHUNK, n_resamples - start)
        means[start : start + size] = diff[rng.integers(0, n, size=(size, n))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(diff.mean()), float(low), float(high), confidence, n)
