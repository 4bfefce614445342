"""Metrics for binary propensity models and value models, computed the same way for every model.

Every model and every baseline of a training run goes through these functions, so their figures are
comparable. Conventions, chosen once:

* **Ties are honest.** When several customers share a score, no order among them is invented: the
  top-k figures and the gains curve take the *expected* value over a random order of the tied
  customers (the tied group counts in proportion to how much of it fits inside the top k), and the
  calibration bins never split a group of equal scores. The results do not depend on the row order.
* **Rankings are not probabilities.** A score with values outside [0, 1] (an RFM score, recency in
  days) can be ranked but not scored as a probability: its ``log_loss``, ``brier`` and ``ece`` are
  NaN. Pass ``probabilities=False`` to force that for a ranking that happens to lie in [0, 1].
* **Bins are equal-frequency.** :func:`calibration_table` and :func:`decile_calibration` sort the rows
  by the prediction and cut them into ``bins`` groups of (nearly) equal size; see :func:`assign_bins`.

Bad input (different lengths, NaN, labels other than 0/1, a single class) raises :class:`ValueError`
naming the argument; rows are never silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

ArrayLike: TypeAlias = Sequence[float] | np.ndarray | pd.Series

LOG_LOSS_EPS = 1e-15  # probabilities are clipped to [eps, 1 - eps] inside the log loss only

# Metrics where a smaller value is better (model cards and comparisons read this).
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece", "mae", "rmse"})


# --------------------------------------------------------------------------------------------------
# Input checks


def _as_1d(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty; nothing to evaluate")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name}: {int(bad.sum())} of {arr.size} values are NaN or infinite (first at row {int(np.argmax(bad))})"
        )
    return arr


def check_labels(y: ArrayLike, name: str = "y", *, both_classes: bool = True) -> np.ndarray:
    """``y`` as a float 0/1 array; ValueError if it is not 1-D, finite, 0/1 and (optionally) two-class."""
    arr = _as_1d(y, name)
    wrong = (arr != 0.0) & (arr != 1.0)
    if wrong.any():
        raise ValueError(f"{name}: labels must be 0 or 1, got {sorted(set(arr[wrong].tolist()))[:5]}")
    if both_classes and (arr.min() == arr.max()):
        raise ValueError(f"{name}: only one class present ({int(arr[0])}); the metric needs positives and negatives")
    return arr


def _check_pair(
    y: ArrayLike, score: ArrayLike, score_name: str, *, both_classes: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    y_arr = check_labels(y, "y", both_classes=both_classes)
    s_arr = _as_1d(score, score_name)
    if s_arr.shape != y_arr.shape:
        raise ValueError(f"{score_name}: {s_arr.size} values for {y_arr.size} labels; lengths must match")
    return y_arr, s_arr


def is_probability(score: np.ndarray) -> bool:
    """True when every value lies in [0, 1]."""
    return bool(score.min() >= 0.0 and score.max() <= 1.0)


def _check_bins(bins: int) -> None:
    if not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins: expected a positive integer, got {bins!r}")


# --------------------------------------------------------------------------------------------------
# Binning, shared by ECE, the calibration table and the value deciles


def assign_bins(values: ArrayLike, bins: int = 10) -> np.ndarray:
    """Equal-frequency bin index (0 .. bins-1) of each value, ties kept together.

    A row's bin is ``floor(bins * r / n)`` where ``r`` is the 0-based rank of its value with ties
    given their lowest rank. Without ties this cuts the sorted rows into ``bins`` groups whose sizes
    differ by at most one; equal values always share a bin (so a large tie makes its bin bigger and
    leaves a later bin empty). Deterministic and independent of the row order.
    """
    _check_bins(bins)
    arr = _as_1d(values, "values")
    n = arr.size
    order = np.argsort(arr, kind="stable")
    sorted_vals = arr[order]
    # lowest rank of each value: position of the first element of its run of equal values
    starts = np.r_[True, sorted_vals[1:] != sorted_vals[:-1]]
    first_pos = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = first_pos
    return (ranks * bins) // n


def calibration_table(y: ArrayLike, p: ArrayLike, bins: int = 10) -> pd.DataFrame:
    """Predicted against observed rate per equal-frequency bin of the predicted probability.

    Columns: ``bin`` (0 = lowest predictions), ``count``, ``mean_predicted``, ``observed_rate``,
    ``p_min``, ``p_max``. Empty bins (possible with ties, see :func:`assign_bins`) are left out.
    """
    y_arr, p_arr = _check_pair(y, p, "p", both_classes=False)
    if not is_probability(p_arr):
        raise ValueError(f"p: probabilities must lie in [0, 1], got range [{p_arr.min():.4g}, {p_arr.max():.4g}]")
    frame = pd.DataFrame({"bin": assign_bins(p_arr, bins), "y": y_arr, "p": p_arr})
    out = frame.groupby("bin", sort=True).agg(
        count=("y", "size"),
        mean_predicted=("p", "mean"),
        observed_rate=("y", "mean"),
        p_min=("p", "min"),
        p_max=("p", "max"),
    )
    return out.reset_index()


def expected_calibration_error(y: ArrayLike, p: ArrayLike, bins: int = 10) -> float:
    """ECE: ``sum_b (n_b / n) * |mean predicted_b - observed rate_b|`` over equal-frequency bins.

    The bins are those of :func:`calibration_table` (equal-frequency on the predicted probability,
    ties never split), each weighted by its share of the rows. 0 means that in every bin the average
    prediction equals the share of positives.
    """
    table = calibration_table(y, p, bins)
    weights = table["count"].to_numpy() / table["count"].sum()
    gaps = np.abs(table["mean_predicted"].to_numpy() - table["observed_rate"].to_numpy())
    return float(np.sum(weights * gaps))


# --------------------------------------------------------------------------------------------------
# Ranking: gains, lift and capture


def _tie_groups(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and positives per distinct score, highest score first."""
    values, inverse = np.unique(-score, return_inverse=True)  # ascending -score = descending score
    del values
    rows = np.bincount(inverse).astype(np.float64)
    positives = np.bincount(inverse, weights=y)
    return rows, positives


def expected_positives_in_top(y: np.ndarray, score: np.ndarray, k: int) -> float:
    """Positives among the ``k`` highest scores; a tie straddling the cut counts pro rata.

    The tied group at the boundary contributes ``(places left) * (its positives / its size)``: the
    expectation over every order of the tied rows, so the figure never depends on the row order.
    """
    rows, positives = _tie_groups(y, score)
    cum_rows = np.cumsum(rows)
    full = int(np.searchsorted(cum_rows, k, side="right"))  # groups entirely inside the top k
    taken = float(positives[:full].sum())
    placed = cum_rows[full - 1] if full > 0 else 0.0
    if full < rows.size and k > placed:
        taken += (k - placed) * positives[full] / rows[full]
    return taken


def top_k_size(n: int, fraction: float) -> int:
    """Rows in the top ``fraction``: ``round(fraction * n)``, at least 1."""
    return max(1, round(fraction * n))


def _top_label(fraction: float) -> str:
    pct = fraction * 100
    return f"{round(pct)}" if math.isclose(pct, round(pct)) else f"{pct:g}".replace(".", "_")


def gains_curve(y: ArrayLike, score: ArrayLike) -> pd.DataFrame:
    """Cumulative gains: share of positives captured against share of customers targeted.

    One point per distinct score (highest first) plus the origin; targeting part of a tied group is
    the straight line between two points (the expectation over the order of the tied rows).
    Columns: ``share_targeted``, ``share_captured``, ``lift`` (captured / targeted; NaN at the origin),
    ``threshold`` (the score down to which the customers are targeted; NaN at the origin).
    """
    y_arr, s_arr = _check_pair(y, score, "score")
    rows, positives = _tie_groups(y_arr, s_arr)
    thresholds = -np.unique(-s_arr)
    targeted = np.r_[0.0, np.cumsum(rows) / y_arr.size]
    captured = np.r_[0.0, np.cumsum(positives) / y_arr.sum()]
    with np.errstate(invalid="ignore", divide="ignore"):
        lift = np.where(targeted > 0, captured / np.where(targeted > 0, targeted, 1.0), np.nan)
    return pd.DataFrame(
        {"share_targeted": targeted, "share_captured": captured, "lift": lift, "threshold": np.r_[np.nan, thresholds]}
    )


# --------------------------------------------------------------------------------------------------
# Reports


def binary_report(
    y: ArrayLike,
    score: ArrayLike,
    *,
    tops: Sequence[float] = (0.1, 0.2),
    bins: int = 10,
    probabilities: bool | None = None,
) -> dict[str, float]:
    """Every binary metric of one model on one labelled set.

    Args:
        y: 0/1 outcomes (both classes must be present).
        score: predicted probability, or any ranking score (higher = more likely positive).
        tops: the targeted fractions for lift and capture (0.1 -> ``lift_top10``, ``capture_top10``).
        bins: equal-frequency bins for the expected calibration error.
        probabilities: whether ``score`` is a probability. None: it is when every value is in [0, 1].

    Returns:
        ``n``, ``base_rate``, ``roc_auc``, ``pr_auc`` (average precision), ``log_loss`` (natural log,
        probabilities clipped to [1e-15, 1 - 1e-15]), ``brier``, ``ece`` (see
        :func:`expected_calibration_error`), and per fraction q in ``tops``: ``capture_topQ`` (share
        of all positives found in the top ``round(q * n)`` scores, ties pro rata, see
        :func:`expected_positives_in_top`) and ``lift_topQ`` (positive rate in that top over the base
        rate; a perfect ranking reaches ``min(1 / q, 1 / base_rate)``). ``log_loss``, ``brier`` and
        ``ece`` are NaN when ``score`` is not a probability.
    """
    y_arr, s_arr = _check_pair(y, score, "score")
    for q in tops:
        if not 0.0 < q <= 1.0:
            raise ValueError(f"tops: each fraction must be in (0, 1], got {q!r}")
    n = y_arr.size
    base_rate = float(y_arr.mean())
    prob = is_probability(s_arr) if probabilities is None else probabilities
    if prob and not is_probability(s_arr):
        raise ValueError(f"score: probabilities=True but values span [{s_arr.min():.4g}, {s_arr.max():.4g}]")
    out: dict[str, float] = {
        "n": float(n),
        "base_rate": base_rate,
        "roc_auc": float(roc_auc_score(y_arr, s_arr)),
        "pr_auc": float(average_precision_score(y_arr, s_arr)),
    }
    if prob:
        clipped = np.clip(s_arr, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
        out["log_loss"] = float(-np.mean(y_arr * np.log(clipped) + (1.0 - y_arr) * np.log1p(-clipped)))
        out["brier"] = float(np.mean((s_arr - y_arr) ** 2))
        out["ece"] = expected_calibration_error(y_arr, s_arr, bins)
    else:
        out["log_loss"] = out["brier"] = out["ece"] = math.nan
    total_pos = float(y_arr.sum())
    for q in tops:
        k = top_k_size(n, q)
        found = expected_positives_in_top(y_arr, s_arr, k)
        label = _top_label(q)
        out[f"lift_top{label}"] = float((found / k) / base_rate)
        out[f"capture_top{label}"] = float(found / total_pos)
    return out


def value_report(actual: ArrayLike, predicted: ArrayLike) -> dict[str, float]:
    """Errors of a value model (spend, orders) against what was realised.

    Returns ``n``, ``mae``, ``rmse``, ``spearman`` (rank correlation; NaN when either side is
    constant, where it is undefined), ``mean_actual`` and ``mean_predicted`` (their gap is the bias).
    """
    a = _as_1d(actual, "actual")
    p = _as_1d(predicted, "predicted")
    if a.shape != p.shape:
        raise ValueError(f"predicted: {p.size} values for {a.size} actual values; lengths must match")
    err = p - a
    constant = a.min() == a.max() or p.min() == p.max()
    rho = math.nan if constant else float(spearmanr(a, p).statistic)
    return {
        "n": float(a.size),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "spearman": rho,
        "mean_actual": float(a.mean()),
        "mean_predicted": float(p.mean()),
    }


def decile_calibration(actual: ArrayLike, predicted: ArrayLike, bins: int = 10) -> pd.DataFrame:
    """Mean predicted against mean realised value per equal-frequency bin of the prediction.

    Columns: ``decile`` (0 = lowest predictions), ``count``, ``mean_predicted``, ``mean_actual``.
    Bins as in :func:`assign_bins` (ties kept together, empty bins left out).
    """
    a = _as_1d(actual, "actual")
    p = _as_1d(predicted, "predicted")
    if a.shape != p.shape:
        raise ValueError(f"predicted: {p.size} values for {a.size} actual values; lengths must match")
    frame = pd.DataFrame({"decile": assign_bins(p, bins), "a": a, "p": p})
    out = frame.groupby("decile", sort=True).agg(
        count=("a", "size"), mean_predicted=("p", "mean"), mean_actual=("a", "mean")
    )
    return out.reset_index()
