"""Reference profiles of feature tables and the drift of a new table against one.

A training job records a :func:`reference_profile` of the rows its model learned from (a small JSON:
per numeric feature its decile edges and the share of rows in each bin, its missing rate; per text
feature its categories' shares). :func:`compare_to_profile` puts a new table (the current snapshot) in
the same bins and reports, per feature, the population stability index (PSI), the missing rates and
the categories never seen in training. :func:`score_shift` compares two score distributions (the
previous export against the current one) by PSI and the two-sample Kolmogorov-Smirnov statistic.

The bins: the reference's deciles of the non-missing values (edges at the 10th .. 90th percentiles,
duplicates merged, so a count feature that is mostly 0 gets fewer, wider bins), a value ``x`` falling in
the first bin whose edge is ``>= x``, plus one bin for missing values. PSI is
``sum((a - e) * ln(a / e))`` over the bins, with empty bins floored at :data:`PSI_FLOOR` so that a bin
empty on one side does not make it infinite. The usual reading (Siddiqi, *Credit Risk Scorecards*,
2006): below 0.1 no shift, 0.1 to 0.25 a moderate shift, at or above 0.25 a major shift
(:data:`PSI_MODERATE`, :data:`PSI_MAJOR`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

PROFILE_FILE = "reference_profile.json"  # the artifact name of a run's profile
PROFILE_VERSION = 1
QUANTILES = tuple(q / 10 for q in range(1, 10))  # decile edges
MAX_CATEGORIES = 50  # a text feature's categories kept by share; the rest are pooled as OTHER
OTHER = "__other__"
MISSING = "__missing__"
PSI_FLOOR = 1e-4
PSI_MODERATE = 0.1
PSI_MAJOR = 0.25


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def reference_profile(frame: pd.DataFrame, columns: Sequence[str], *, rows_are: str = "") -> dict[str, Any]:
    """The profile of ``columns`` of ``frame`` (JSON-ready): edges, bin shares and missing rate per feature.

    Args:
        frame: The rows a model learned from.
        columns: The features to profile (every one must be a column of ``frame``).
        rows_are: A few words on what the rows are (recorded, e.g. "training rows, 12 cutoffs").

    Raises:
        ValueError: a column is missing or ``frame`` has no rows.
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"cannot profile features the rows do not have: {missing}")
    if frame.empty:
        raise ValueError("cannot profile an empty table")
    features: dict[str, Any] = {}
    for name in columns:
        values = frame[name]
        nulls = values.isna().to_numpy()
        entry: dict[str, Any] = {"missing_rate": float(nulls.mean())}
        if _numeric(values):
            present = values.to_numpy(dtype=np.float64, na_value=np.nan)[~nulls]
            edges = np.unique(np.quantile(present, QUANTILES)) if len(present) else np.array([])
            entry.update(kind="numeric", edges=edges.tolist(), shares=_bin_shares(present, edges).tolist())
            if len(present):
                entry.update(min=float(present.min()), max=float(present.max()), mean=float(present.mean()))
        else:
            counts = values[~nulls].astype(str).value_counts(normalize=True)
            kept = counts.head(MAX_CATEGORIES)
            shares = {str(k): float(v) for k, v in kept.items()}
            if len(counts) > len(kept):
                shares[OTHER] = float(counts.iloc[len(kept) :].sum())
            entry.update(kind="categorical", shares=shares)
        features[name] = entry
    return {"version": PROFILE_VERSION, "rows": len(frame), "rows_are": rows_are, "features": features}


def _bin_shares(present: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of the non-missing values in each of the ``len(edges) + 1`` bins (all zeros when none)."""
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    return counts / counts.sum() if counts.sum() else counts.astype(np.float64)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins (each summing to 1)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def level(value: float) -> str:
    """``stable``, ``moderate`` or ``major`` for a PSI (see the module's bins and reading)."""
    return "major" if value >= PSI_MAJOR else "moderate" if value >= PSI_MODERATE else "stable"


@dataclass(frozen=True)
class FeatureDrift:
    """One feature of a new table against its reference profile."""

    feature: str
    psi: float  # over the value bins and the missing bin together
    level: str
    missing_rate_reference: float
    missing_rate_current: float
    new_categories: list[str] = field(default_factory=list)  # text features: values never seen in training
    new_category_share: float = 0.0  # the share of the current rows holding one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_to_profile(profile: dict[str, Any], frame: pd.DataFrame) -> list[FeatureDrift]:
    """Every profiled feature of ``frame`` against ``profile``, largest PSI first.

    Raises:
        ValueError: ``frame`` lacks a profiled feature, or has no rows.
    """
    features: dict[str, Any] = profile["features"]
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise ValueError(f"the current table lacks the profiled feature(s) {missing}")
    if frame.empty:
        raise ValueError("cannot compare an empty table with a profile")
    out = []
    for name, ref in features.items():
        values = frame[name]
        nulls = values.isna().to_numpy()
        current_missing = float(nulls.mean())
        ref_missing = float(ref["missing_rate"])
        new: list[str] = []
        new_share = 0.0
        if ref["kind"] == "numeric":
            present = pd.to_numeric(values[~nulls]).to_numpy(dtype=np.float64)
            shares = _bin_shares(present, np.asarray(ref["edges"], dtype=np.float64))
            expected = np.asarray(ref["shares"], dtype=np.float64) * (1 - ref_missing)
            actual = shares * (1 - current_missing)
        else:
            counts = values[~nulls].astype(str).value_counts(normalize=True)
            known = [k for k in ref["shares"] if k != OTHER]
            unseen = counts[~counts.index.isin(known)]
            if OTHER not in ref["shares"]:  # a complete list of the training categories: anything else is new
                new = sorted(str(k) for k in unseen.index)
                new_share = float(unseen.sum()) * (1 - current_missing)
            expected = np.asarray([ref["shares"].get(k, 0.0) for k in [*known, OTHER]]) * (1 - ref_missing)
            actual = np.asarray([float(counts.get(k, 0.0)) for k in known] + [float(unseen.sum())])
            actual = actual * (1 - current_missing)
        value = psi(np.append(expected, ref_missing), np.append(actual, current_missing))
        out.append(FeatureDrift(name, value, level(value), ref_missing, current_missing, new, new_share))
    return sorted(out, key=lambda d: -d.psi)


@dataclass(frozen=True)
class ScoreShift:
    """Two score distributions of one model: the previous export's and the current one's."""

    model: str
    psi: float  # over the previous scores' deciles
    level: str
    ks: float  # two-sample Kolmogorov-Smirnov statistic
    ks_pvalue: float
    mean_previous: float
    mean_current: float
    rows_previous: int
    rows_current: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_shift(model: str, previous: np.ndarray, current: np.ndarray) -> ScoreShift:
    """PSI (on the previous scores' deciles) and KS of two score samples; missing scores are left out
    (a score export leaves a model's scores empty outside its population).

    Raises:
        ValueError: either side has no score.
    """
    before = np.asarray(previous, dtype=np.float64)
    after = np.asarray(current, dtype=np.float64)
    before, after = before[~np.isnan(before)], after[~np.isnan(after)]
    if not len(before) or not len(after):
        raise ValueError(f"{model}: no scores to compare (previous {len(before)}, current {len(after)})")
    edges = np.unique(np.quantile(before, QUANTILES))
    value = psi(_bin_shares(before, edges), _bin_shares(after, edges))
    ks = stats.ks_2samp(before, after)
    return ScoreShift(
        model,
        value,
        level(value),
        float(ks.statistic),
        float(ks.pvalue),
        float(before.mean()),
        float(after.mean()),
        len(before),
        len(after),
    )
