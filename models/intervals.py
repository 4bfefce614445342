"""Paired bootstrap intervals of a metric difference between two scorers on the same rows.

Both scorers are evaluated on the same resampled rows in every replicate, so the interval is of the
*paired* difference ``metric(y, a) - metric(y, b)``: the variation common to both (which rows happened
to be in the holdout) cancels. Generic over the metric: a :class:`Metric` is a function of a batch of
resamples (``y``, ``a`` of shape ``(replicates, rows)``) returning one value per replicate, plus its
direction. ROC-AUC resamples within each class so every replicate holds both.

Pure NumPy/SciPy, seeded, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

BatchMetric = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (B, n) labels, (B, n) scores -> (B,)
_CELLS = 4_000_000  # replicates x rows held in memory at once


def _roc_auc(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """ROC-AUC per row of the batch (Mann-Whitney with mid-ranks, so ties count one half)."""
    ranks = rankdata(s, axis=1)
    pos = y == 1
    n_pos = pos.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * pos).sum(axis=1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _mae(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    return np.abs(y - s).mean(axis=1)


def _spearman(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    ry = rankdata(y, axis=1)
    rs = rankdata(s, axis=1)
    ry -= ry.mean(axis=1, keepdims=True)
    rs -= rs.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ry * rs).sum(axis=1) / np.sqrt((ry * ry).sum(axis=1) * (rs * rs).sum(axis=1))


@dataclass(frozen=True)
class Metric:
    """A metric over batches of resamples: ``name``, ``fn`` and whether a higher value is better.
    ``by_class``: resample positives and negatives separately (a binary label, both classes needed)."""

    name: str
    fn: BatchMetric
    higher_is_better: bool = True
    by_class: bool = False

    def __call__(self, y: np.ndarray, s: np.ndarray) -> float:
        """The metric on the full rows."""
        return float(self.fn(np.asarray(y, np.float64)[None, :], np.asarray(s, np.float64)[None, :])[0])


ROC_AUC = Metric("roc_auc", _roc_auc, higher_is_better=True, by_class=True)
MAE = Metric("mae", _mae, higher_is_better=False)
SPEARMAN = Metric("spearman", _spearman, higher_is_better=True)


@dataclass(frozen=True)
class Interval:
    """``metric(a) - metric(b)`` on the full rows and its percentile bootstrap interval."""

    metric: str
    a: float  # metric of the first scorer on the full rows
    b: float  # metric of the second scorer
    diff: float  # a - b
    low: float
    high: float
    level: float
    replicates: int
    higher_is_better: bool = True

    @property
    def gain(self) -> tuple[float, float, float]:
        """(point, low, high) of the improvement of a over b: a - b, or b - a when lower is better."""
        if self.higher_is_better:
            return self.diff, self.low, self.high
        return -self.diff, -self.high, -self.low

    def better(self, margin: float = 0.0) -> bool:
        """a is better than b by more than ``margin``: the whole interval of the improvement above it."""
        return self.gain[1] > margin

    def worse(self) -> bool:
        """a is worse than b: the whole interval of the improvement below zero."""
        return self.gain[2] < 0.0

    def describe(self, a: str, b: str) -> str:
        """One line, e.g. ``kairos beats bgnbd by +0.0120 roc_auc [+0.0040, +0.0200]``; the difference is
        a - b as measured, so for a lower-is-better metric a win is negative (and the line says so)."""
        lower = "" if self.higher_is_better else " (lower is better)"
        span = f"{self.diff:+.4f} {self.metric} [{self.low:+.4f}, {self.high:+.4f}]{lower}"
        if self.better():
            return f"{a} beats {b} by {span}"
        if self.worse():
            return f"{a} is significantly worse than {b}: {span}"
        return f"{a} is not significantly better than {b}: {span}"

    def to_dict(self) -> dict[str, float | str | int | bool]:
        return {
            "metric": self.metric,
            "a": self.a,
            "b": self.b,
            "diff": self.diff,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "replicates": self.replicates,
            "higher_is_better": self.higher_is_better,
        }


def _indices(rng: np.random.Generator, y: np.ndarray, count: int, by_class: bool) -> np.ndarray:
    n = len(y)
    if not by_class:
        return rng.integers(0, n, size=(count, n))
    parts = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        parts.append(members[rng.integers(0, len(members), size=(count, len(members)))])
    return np.concatenate(parts, axis=1)


def paired_bootstrap(
    metric: Metric,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    *,
    replicates: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """The paired bootstrap ``level`` interval of ``metric(y, a) - metric(y, b)`` over the rows.

    Every replicate draws the rows with replacement (within each class for a ``by_class`` metric) and
    scores both ``a`` and ``b`` on the same draw. Vectorised in chunks of replicates.

    Raises:
        ValueError: arrays of different lengths, no rows, non-finite values, or a ``by_class`` metric
            on labels without both classes.
    """
    y = np.asarray(y, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if not (len(y) == len(a) == len(b)):
        raise ValueError(f"paired bootstrap: labels ({len(y)}), a ({len(a)}) and b ({len(b)}) differ in length")
    if not len(y):
        raise ValueError("paired bootstrap: no rows")
    for what, arr in (("labels", y), ("a", a), ("b", b)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"paired bootstrap: {what} hold non-finite values")
    if metric.by_class and len(np.unique(y)) < 2:
        raise ValueError(f"paired bootstrap: {metric.name} needs both classes in the labels")
    if replicates < 1 or not 0.0 < level < 1.0:
        raise ValueError("paired bootstrap: replicates must be >= 1 and level in (0, 1)")
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS // len(y))
    diffs = []
    done = 0
    while done < replicates:
        count = min(chunk, replicates - done)
        idx = _indices(rng, y, count, metric.by_class)
        diffs.append(metric.fn(y[idx], a[idx]) - metric.fn(y[idx], b[idx]))
        done += count
    d = np.concatenate(diffs)
    d = d[np.isfinite(d)]  # e.g. Spearman of a constant resample
    if not len(d):
        raise ValueError(f"paired bootstrap: {metric.name} is undefined on every resample")
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(d, [tail, 1.0 - tail])
    ma, mb = metric(y, a), metric(y, b)
    return Interval(metric.name, ma, mb, ma - mb, float(low), float(high), level, len(d), metric.higher_is_better)


# ---------------------------------------------------------------------------------------------------
# One figure per query for each of two models (recall@k per test user, ...): the mean difference, the
# same paired bootstrap with the mean as the metric (Efron & Tibshirani, *An Introduction to the
# Bootstrap*, ch. 13).

MEAN = Metric("mean", lambda y, s: s.mean(axis=1))  # of the per-query figures; the labels are unused


@dataclass(frozen=True)
class MeanDifference:
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


def paired_mean_bootstrap(
    a: np.ndarray, b: np.ndarray, *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> MeanDifference:
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
    interval = paired_bootstrap(  # which also refuses n_resamples < 1 and a confidence outside (0, 1)
        MEAN, np.zeros(len(first)), first, second, replicates=n_resamples, level=confidence, seed=seed
    )
    return MeanDifference(interval.diff, interval.low, interval.high, confidence, len(first))
