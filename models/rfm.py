"""RFM baselines over the feature-store frame: a quintile score ranking and a logistic regression.

Every propensity model is reported beside these, so that "the model works" means "it beats what a
CRM team does with recency, frequency and monetary value". Both read columns of
:func:`features.store.compute_features` (by default ``recency_days``, ``orders_365d`` and
``monetary_365d``; the 365-day window is the longest of ``features.defs.orders.RFM_WINDOWS``).

**Leads** (customers who never ordered) have a null ``recency_days``; they are handled explicitly,
never dropped:

* :class:`RFMScore` gives them R = F = M = 0, below every buyer (whose scores run 1..5), so with
  ``direction="active"`` they rank last and with ``direction="churn"`` first.
* :class:`RFMLogistic` fills their log-recency with the training buyers' mean (a standardised 0) and
  adds a ``never_ordered`` indicator, so the regression learns their own level.

Frequency and monetary value have a fill of 0 in the feature store, so a null there is bad input
and raises :class:`ValueError` naming the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from models.base import Estimator, check_fitted
from models.evaluation import check_labels

ArrayLike: TypeAlias = Sequence[float] | np.ndarray | pd.Series
Direction = Literal["active", "churn"]

FORMAT_VERSION = 1
RECENCY = "recency_days"
FREQUENCY = "orders_365d"
MONETARY = "monetary_365d"
QUINTILES = (0.2, 0.4, 0.6, 0.8)
MAX_SCORE = 15  # R + F + M, each 1..5


def _columns(X: pd.DataFrame, recency: str, frequency: str, monetary: str) -> tuple[np.ndarray, ...]:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"X: expected a pandas DataFrame with columns {recency}, {frequency}, {monetary}")
    missing = [c for c in (recency, frequency, monetary) if c not in X.columns]
    if missing:
        raise ValueError(f"X: missing column(s) {missing}")
    if len(X) == 0:
        raise ValueError("X: no rows")
    r = X[recency].to_numpy(np.float64)
    out = [r]
    for col in (frequency, monetary):
        v = X[col].to_numpy(np.float64)
        bad = ~np.isfinite(v)
        if bad.any():
            raise ValueError(f"{col}: {int(bad.sum())} null or infinite values (the feature store fills it with 0)")
        out.append(v)
    if np.isinf(r).any() or (r[np.isfinite(r)] < 0).any():
        raise ValueError(f"{recency}: values must be finite and >= 0 (null for customers who never ordered)")
    return tuple(out)


class RFMScore(Estimator):
    """Classic RFM quintile scores combined into one ranking score.

    ``fit`` learns the quintile edges of R, F and M from the training buyers. Each buyer then gets
    R, F, M in 1..5 (5 = most recent / most frequent / biggest spender; equal values share a score, and
    with many ties, e.g. everyone with one order, some scores go unused); leads get 0 on all three.

    Args:
        direction: ``"active"``: the score is R + F + M (0..15, higher = more likely to buy);
            ``"churn"``: 15 - (R + F + M) (higher = more likely to leave; leads score 15).
        recency, frequency, monetary: feature-store columns to read.

    Attributes: ``edges_`` (column -> the 4 quintile edges), ``n_buyers_``.
    """

    def __init__(
        self,
        direction: Direction = "active",
        recency: str = RECENCY,
        frequency: str = FREQUENCY,
        monetary: str = MONETARY,
    ) -> None:
        self.direction = direction
        self.recency = recency
        self.frequency = frequency
        self.monetary = monetary

    def fit(self, X: pd.DataFrame, y: ArrayLike | None = None) -> RFMScore:
        """Learn the quintile edges from the buyers among the training rows (``y`` is ignored)."""
        if self.direction not in ("active", "churn"):
            raise ValueError(f"direction: expected 'active' or 'churn', got {self.direction!r}")
        r, f, m = _columns(X, self.recency, self.frequency, self.monetary)
        buyers = np.isfinite(r)
        if not buyers.any():
            raise ValueError(f"{self.recency}: every training row is null (no buyers); cannot learn RFM quintiles")
        self.edges_: dict[str, list[float]] = {
            name: [float(e) for e in np.quantile(values[buyers], QUINTILES)]
            for name, values in ((self.recency, r), (self.frequency, f), (self.monetary, m))
        }
        self.n_buyers_ = int(buyers.sum())
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per row: ``r_score``, ``f_score``, ``m_score`` (1..5; 0 for leads) and ``rfm_score``."""
        check_fitted(self, "edges_")
        r, f, m = _columns(X, self.recency, self.frequency, self.monetary)
        lead = ~np.isfinite(r)
        # recency: lower is better, so 5 at or below the first edge, 1 above the last
        r_score = 5 - np.searchsorted(self.edges_[self.recency], np.where(lead, 0.0, r), side="left")
        f_score = 1 + np.searchsorted(self.edges_[self.frequency], f, side="right")
        m_score = 1 + np.searchsorted(self.edges_[self.monetary], m, side="right")
        scores = np.vstack([r_score, f_score, m_score]).astype(np.int64)
        scores[:, lead] = 0
        return pd.DataFrame(
            {"r_score": scores[0], "f_score": scores[1], "m_score": scores[2], "rfm_score": scores.sum(axis=0)},
            index=X.index,
        )

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The ranking score per row (a rank, not a probability: 0..15)."""
        total = self.transform(X)["rfm_score"].to_numpy(np.float64)
        return MAX_SCORE - total if self.direction == "churn" else total

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "edges_")
        return {
            "format_version": FORMAT_VERSION,
            "kind": "rfm_score",
            "params": self.get_params(),
            "edges": self.edges_,
            "n_buyers": self.n_buyers_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> RFMScore:
        _check_state(state, "rfm_score")
        model = cls(**state["params"])
        edges = state["edges"]
        for col in (model.recency, model.frequency, model.monetary):
            if col not in edges or len(edges[col]) != len(QUINTILES):
                raise ValueError(f"edges: expected {len(QUINTILES)} quintile edges for {col}")
        model.edges_ = {k: [float(e) for e in v] for k, v in edges.items()}
        model.n_buyers_ = int(state.get("n_buyers", 0))
        return model


class RFMLogistic(Estimator):
    """Logistic regression on standardised ``log1p`` R, F, M and a never-ordered flag.

    Inputs per row: ``log1p(recency_days)`` (leads: the training buyers' mean), ``log1p(frequency)``,
    ``log1p(max(monetary, 0))`` (net spend below 0 counts as 0) and ``never_ordered`` (1 for leads),
    each standardised with the training mean and standard deviation (a constant column keeps scale 1).
    L2-regularised (``C``) as in scikit-learn's ``LogisticRegression``.

    Attributes: ``means_``, ``scales_``, ``coef_`` (one per input, in :attr:`INPUTS` order),
    ``intercept_``, ``recency_fill_``.
    """

    INPUTS = ("log_recency", "log_frequency", "log_monetary", "never_ordered")

    def __init__(
        self,
        C: float = 1.0,
        recency: str = RECENCY,
        frequency: str = FREQUENCY,
        monetary: str = MONETARY,
        max_iter: int = 1000,
    ) -> None:
        self.C = C
        self.recency = recency
        self.frequency = frequency
        self.monetary = monetary
        self.max_iter = max_iter

    def _design(self, X: pd.DataFrame, recency_fill: float) -> np.ndarray:
        r, f, m = _columns(X, self.recency, self.frequency, self.monetary)
        lead = ~np.isfinite(r)
        log_r = np.where(lead, recency_fill, np.log1p(np.where(lead, 0.0, r)))
        return np.column_stack([log_r, np.log1p(np.maximum(f, 0.0)), np.log1p(np.maximum(m, 0.0)), lead.astype(float)])

    def fit(self, X: pd.DataFrame, y: ArrayLike) -> RFMLogistic:
        """Fit on the training rows ``X`` (feature-store frame) and 0/1 outcomes ``y``."""
        y_arr = check_labels(y, "y")
        if y_arr.size != len(X):
            raise ValueError(f"y: {y_arr.size} labels for {len(X)} rows; lengths must match")
        r = _columns(X, self.recency, self.frequency, self.monetary)[0]
        buyers = np.isfinite(r)
        self.recency_fill_ = float(np.log1p(r[buyers]).mean()) if buyers.any() else 0.0
        design = self._design(X, self.recency_fill_)
        self.means_ = design.mean(axis=0)
        scales = design.std(axis=0)
        self.scales_ = np.where(scales > 0, scales, 1.0)
        z = (design - self.means_) / self.scales_
        lr = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(z, y_arr.astype(int))
        self.coef_ = lr.coef_.ravel().astype(np.float64)
        self.intercept_ = float(lr.intercept_[0])
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The linear score (log-odds) per row."""
        check_fitted(self, "coef_")
        z = (self._design(X, self.recency_fill_) - self.means_) / self.scales_
        return np.asarray(z @ self.coef_ + self.intercept_, dtype=np.float64)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """P(y = 1) per row, shape (n,) (as :class:`models.churn.LightGBMClassifier`)."""
        return np.asarray(expit(self.decision_function(X)), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "coef_")
        return {
            "format_version": FORMAT_VERSION,
            "kind": "rfm_logistic",
            "params": self.get_params(),
            "inputs": list(self.INPUTS),
            "means": [float(v) for v in self.means_],
            "scales": [float(v) for v in self.scales_],
            "coef": [float(v) for v in self.coef_],
            "intercept": self.intercept_,
            "recency_fill": self.recency_fill_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> RFMLogistic:
        _check_state(state, "rfm_logistic")
        if list(state.get("inputs", [])) != list(cls.INPUTS):
            raise ValueError(f"inputs: expected {list(cls.INPUTS)}, got {state.get('inputs')!r}")
        model = cls(**state["params"])
        arrays = {k: np.asarray(state[k], dtype=np.float64) for k in ("means", "scales", "coef")}
        for k, v in arrays.items():
            if v.shape != (len(cls.INPUTS),) or not np.isfinite(v).all():
                raise ValueError(f"{k}: expected {len(cls.INPUTS)} finite numbers")
        model.means_, model.scales_, model.coef_ = arrays["means"], arrays["scales"], arrays["coef"]
        model.intercept_ = float(state["intercept"])
        model.recency_fill_ = float(state["recency_fill"])
        return model


def _check_state(state: dict[str, Any], kind: str) -> None:
    if state.get("kind") != kind:
        raise ValueError(f"kind: expected {kind!r}, got {state.get('kind')!r}")
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"format_version: expected {FORMAT_VERSION}, got {state.get('format_version')!r}")
