"""What a propensity model reads: the catalogue's numeric features, the numeric features of this export
(campaign features, numeric customer attributes), and the baselines' outputs derived per cutoff.

The derived columns (:mod:`models.stacking`) are fitted on the feature rows of each cutoff, every
customer as of that cutoff and no label, so a training row at cutoff ``c`` reads nothing at or after
``c``; the holdout cutoff's fit is the one the registered model carries and serves with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import ibis.expr.types as ir
import pandas as pd

from features.datasets import CUTOFF
from features.definitions import FEATURES, NUMERIC_FEATURES, features_for
from models.stacking import BaselineInputs, with_derived


def model_features(tables: dict[str, ir.Table]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the numeric features a propensity model reads, the features of this data it cannot read).

    The catalogue's numeric features first (in their order), then the export's own numeric ones
    (campaign features, numeric or banded customer attributes). Text features (a category's label, a
    band's label) are not model inputs; they are returned so the job can say so.
    """
    catalogue = list(NUMERIC_FEATURES)
    extra = [f for f in features_for(tables) if f not in FEATURES]  # the export's own: campaigns, attributes
    numeric = tuple(catalogue + [f.name for f in extra if f.dtype == "float32"])
    text = tuple(f.name for f in extra if f.dtype != "float32")
    return numeric, text


def fit_per_cutoff(
    features_at: Callable[[datetime], pd.DataFrame], cutoffs: Iterable[datetime], horizon_days: int
) -> dict[pd.Timestamp, BaselineInputs]:
    """BG/NBD and RFM fitted on each cutoff's own feature rows (``features_at(c)``: everyone as of ``c``)."""
    return {pd.Timestamp(c): BaselineInputs(horizon_days).fit(features_at(c)) for c in dict.fromkeys(cutoffs)}


def add_derived(frame: pd.DataFrame, fitted: dict[pd.Timestamp, BaselineInputs]) -> pd.DataFrame:
    """A point-in-time set (rows of several cutoffs) with the derived columns of each row's cutoff."""
    return with_derived(frame, fitted, CUTOFF)
