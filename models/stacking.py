"""The baselines' outputs as inputs of a supervised model: BG/NBD's P(alive), P(an order in the horizon)
and expected orders, and the RFM quintile score, all read off one point-in-time feature row.

:class:`BaselineInputs` is fitted on the feature rows of one cutoff (every customer as of that cutoff,
no label) and then derives its columns for any row of the same features. Training fits one per cutoff
(so a row at cutoff ``c`` sees only what the features at ``c`` saw); the served model carries the one
fitted at the latest cutoff in its metadata (:meth:`BaselineInputs.to_dict`) and derives the same
columns from the feature row it is given, so the API, the export and the job compute them once, here.

The derivation reads only float32 feature values and rounds its output to float32, the precision the
model sees, so a training frame and a served matrix give bit-identical columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from models.base import Estimator, check_fitted
from models.clv import BGNBD, RFM, fit_with_penalty, summary_from_features
from models.rfm import FREQUENCY, MONETARY, RECENCY, RFMScore

FORMAT_VERSION = 1
PREFIX = "stack_"
P_ALIVE = f"{PREFIX}bgnbd_p_alive"
P_ORDER = f"{PREFIX}bgnbd_p_order"
EXPECTED_ORDERS = f"{PREFIX}bgnbd_expected_orders"
RFM_SCORE = f"{PREFIX}rfm_score"
COLUMNS: tuple[str, ...] = (P_ALIVE, P_ORDER, EXPECTED_ORDERS, RFM_SCORE)
DESCRIPTIONS: dict[str, str] = {
    P_ALIVE: "BG/NBD probability that the customer is still active",
    P_ORDER: "BG/NBD probability of at least one order in the model's horizon",
    EXPECTED_ORDERS: "BG/NBD expected orders in the model's horizon",
    RFM_SCORE: "RFM quintile score (R + F + M, 0 for a lead)",
}
# what the derivation reads from the feature row (summary_from_features' defaults and the RFM columns)
ORDERS, TENURE = "orders_lifetime", "tenure_days"
INPUTS: tuple[str, ...] = tuple(dict.fromkeys((ORDERS, RECENCY, TENURE, FREQUENCY, MONETARY)))


class StackingError(ValueError):
    """The feature rows cannot support the derived inputs (no buyer, a missing column)."""


def _frame(values: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in INPUTS if c not in values.columns]
    if missing:
        raise StackingError(f"the derived inputs need feature(s) {missing}")
    # the float32 values the model sees, computed on in float64
    return pd.DataFrame({c: values[c].to_numpy(np.float32).astype(np.float64) for c in INPUTS}, index=values.index)


def _rfm_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The RFM columns with a null F or M as 0: the feature store fills them with 0 except on data without
    prices, where every M is null and so every buyer gets the same M score (recency stays null for leads)."""
    return frame.fillna({FREQUENCY: 0.0, MONETARY: 0.0})


class BaselineInputs(Estimator):
    """BG/NBD and RFM fitted on one cutoff's feature rows; derives :data:`COLUMNS` for any feature row.

    Args:
        horizon_days: the model's horizon (P(order) and expected orders are over it).

    Attributes: ``bgnbd_`` (BG/NBD on the rows' frequency, recency and T, in weeks), ``rfm_`` (the RFM
    quintile edges of the rows' buyers).
    """

    def __init__(self, horizon_days: int = 30) -> None:
        self.horizon_days = horizon_days

    def fit(self, features: pd.DataFrame, y: Any = None) -> BaselineInputs:
        """Fit on the feature rows of one cutoff (all customers as of it); ``y`` is ignored: no label is read.

        Raises:
            StackingError: a needed column is missing, or no row has an order.
        """
        if self.horizon_days <= 0:
            raise StackingError(f"horizon_days: expected a positive number of days, got {self.horizon_days}")
        frame = _frame(features)
        summary = summary_from_features(frame).dropna()
        if summary.empty:
            raise StackingError("no customer with an order in the feature rows: BG/NBD cannot be fitted")
        bg = fit_with_penalty(
            lambda c: BGNBD(penalizer_coef=c), summary[RFM.FREQUENCY].round(), summary[RFM.RECENCY], summary[RFM.T]
        )
        self.bgnbd_: BGNBD = bg
        self.rfm_: RFMScore = RFMScore(direction="active").fit(_rfm_rows(frame))
        return self

    def transform(self, features: pd.DataFrame) -> pd.DataFrame:
        """The derived columns (float32, NaN for BG/NBD's columns where the customer never ordered)."""
        check_fitted(self, "bgnbd_", "rfm_")
        frame = _frame(features)
        summary = summary_from_features(frame)
        known = summary.notna().all(axis=1).to_numpy()
        x = summary[RFM.FREQUENCY].to_numpy()[known].round()
        t_x, big_t = summary[RFM.RECENCY].to_numpy()[known], summary[RFM.T].to_numpy()[known]
        weeks = self.horizon_days / 7.0
        out: dict[str, np.ndarray] = {}
        for name, values in (
            (P_ALIVE, self.bgnbd_.p_alive(x, t_x, big_t)),
            (P_ORDER, self.bgnbd_.probability_of_purchase(weeks, x, t_x, big_t)),
            (EXPECTED_ORDERS, self.bgnbd_.expected_purchases(weeks, x, t_x, big_t)),
        ):
            column = np.full(len(frame), np.nan)
            column[known] = values
            out[name] = column
        out[RFM_SCORE] = self.rfm_.transform(_rfm_rows(frame))["rfm_score"].to_numpy(np.float64)
        return pd.DataFrame({c: out[c].astype(np.float32) for c in COLUMNS}, index=features.index)

    def derive(self, matrix: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """The derived columns for a matrix of float32 values whose columns are ``names`` (the served path),
        in :data:`COLUMNS` order, in the matrix's dtype."""
        index = {n: i for i, n in enumerate(names)}
        missing = [c for c in INPUTS if c not in index]
        if missing:
            raise StackingError(f"the derived inputs need feature(s) {missing}")
        frame = pd.DataFrame({c: matrix[:, index[c]] for c in INPUTS})
        return self.transform(frame).to_numpy(np.float32).astype(matrix.dtype, copy=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the BG/NBD parameters and the RFM quintile edges (what the served model needs)."""
        check_fitted(self, "bgnbd_", "rfm_")
        return {
            "format_version": FORMAT_VERSION,
            "columns": list(COLUMNS),
            "horizon_days": self.horizon_days,
            "bgnbd": self.bgnbd_.to_dict(),
            "rfm_edges": self.rfm_.edges_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaselineInputs:
        """Raises: StackingError: another format version, other columns or a missing part."""
        if data.get("format_version") != FORMAT_VERSION or list(data.get("columns") or ()) != list(COLUMNS):
            raise StackingError(
                f"derived inputs of format {data.get('format_version')!r} with columns {data.get('columns')!r}; "
                f"this version reads format {FORMAT_VERSION} with {list(COLUMNS)}"
            )
        try:
            rfm = RFMScore(direction="active")
            rfm.edges_ = {str(k): [float(e) for e in v] for k, v in data["rfm_edges"].items()}
            rfm.n_buyers_ = 0
            out = cls(int(data["horizon_days"]))
            out.bgnbd_, out.rfm_ = BGNBD.from_dict(data["bgnbd"]), rfm
            return out
        except (KeyError, TypeError, ValueError) as exc:
            raise StackingError(f"derived inputs do not load: {exc}") from exc


def with_derived(frame: pd.DataFrame, fitted: dict[pd.Timestamp, BaselineInputs], cutoff_column: str) -> pd.DataFrame:
    """``frame`` (rows of several cutoffs) with :data:`COLUMNS` appended, each row's from the inputs
    fitted at its own cutoff (``fitted`` must hold every cutoff of the frame)."""
    stamps = pd.to_datetime(frame[cutoff_column])
    missing = sorted({str(s) for s in stamps.unique() if s not in fitted})
    if missing:
        raise StackingError(f"no derived inputs fitted for cutoff(s) {missing}")
    parts = [fitted[stamp].transform(frame.loc[rows.index]) for stamp, rows in frame.groupby(stamps, sort=False)]
    derived = pd.concat(parts).reindex(frame.index) if parts else pd.DataFrame(columns=list(COLUMNS))
    return pd.concat([frame.drop(columns=[c for c in COLUMNS if c in frame.columns]), derived], axis=1)
