"""The propensity baselines as servable models: the same rows in, a score per row out, reasons in words.

A job compares its LightGBM candidate with these simple models and serves the best of them when the
candidate does not beat it (docs/model-quality.md, "The gate"). So that what is served is what was
evaluated, each baseline reads only the point-in-time feature row (the online store's matrix at
serving time, the snapshot in the nightly export, the holdout rows in the job):

* ``rfm_score``: the RFM quintile score (:class:`models.rfm.RFMScore`, 0..15) divided by 15; a rank,
  given a probability by the calibrator the job records beside it;
* ``rfm_logistic``: the logistic regression on R, F and M (:class:`models.rfm.RFMLogistic`);
* ``bgnbd``: BG/NBD (:class:`models.clv.BGNBD`) on (frequency, recency, T) read off the feature row
  (:func:`models.clv.summary_from_features`): P(at least one order within ``horizon_days``), or one minus
  that for churn; a customer who never ordered scores 0 (1 for churn);
* ``past_rate``: the customer's own engagement rate on a channel over the last 90 days, smoothed toward
  one half, ``(actions + 1) / (sends + 2)``.

:meth:`PropensityBaseline.predict_proba` reads a matrix whose columns are ``feature_names_`` (as
LightGBM does) or a frame holding them. :meth:`PropensityBaseline.contributions` says which inputs push a
customer's score up: the change in the score's log-odds when that one input is set to the training
rows' median (an occlusion attribution: exact for no model, honest for three inputs).
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
from scipy.special import logit

from models.base import Estimator, check_fitted
from models.clv import BGNBD, GammaGamma, ModifiedBGNBD, fit_with_penalty, summary_from_features
from models.rfm import MAX_SCORE, MONETARY, RECENCY, RFMLogistic, RFMScore

FORMAT_VERSION = 1
BaselineKind: TypeAlias = Literal["rfm_score", "rfm_logistic", "bgnbd", "past_rate"]
KINDS: tuple[str, ...] = ("rfm_score", "rfm_logistic", "bgnbd", "past_rate")
RFM_FREQUENCY = "orders_365d"
ORDERS_LIFETIME = "orders_lifetime"
TENURE = "tenure_days"
_EPS = 1e-6  # scores are clipped to [eps, 1 - eps] before the log-odds of an attribution


class PropensityBaseline(Estimator):
    """One simple propensity model over feature-store columns (see the module docstring for the kinds).

    Args:
        kind: ``"rfm_score"``, ``"rfm_logistic"``, ``"bgnbd"`` or ``"past_rate"``.
        direction: ``"active"`` (the score rises with buying) or ``"churn"`` (it rises with leaving);
            read by ``rfm_score`` and ``bgnbd``.
        horizon_days: the window of ``bgnbd``'s P(an order).
        channel, action: ``past_rate``'s channel (``email``, ...) and action (``open`` or ``click``).

    Attributes (after ``fit``): ``feature_names_`` (the columns read, in matrix order), ``model_``
    (the fitted inner model, None for ``past_rate``), ``reference_`` (per input, the training rows'
    median: the attribution's point of comparison).
    """

    def __init__(
        self,
        kind: BaselineKind = "rfm_logistic",
        direction: Literal["active", "churn"] = "active",
        horizon_days: int = 30,
        channel: str = "email",
        action: str = "open",
    ) -> None:
        self.kind = kind
        self.direction = direction
        self.horizon_days = horizon_days
        self.channel = channel
        self.action = action

    # --- what each kind reads --------------------------------------------------------------------------

    def _inputs(self) -> list[str]:
        if self.kind in ("rfm_score", "rfm_logistic"):
            return [RECENCY, RFM_FREQUENCY, MONETARY]
        if self.kind == "bgnbd":
            return [ORDERS_LIFETIME, RECENCY, TENURE]
        if self.kind == "past_rate":
            return [f"sends_{self.channel}_90d", f"{self.action}s_{self.channel}_90d"]
        raise ValueError(f"kind: expected one of {list(KINDS)}, got {self.kind!r}")

    def _check(self) -> None:
        if self.direction not in ("active", "churn"):
            raise ValueError(f"direction: expected 'active' or 'churn', got {self.direction!r}")
        if self.kind == "bgnbd" and not (isinstance(self.horizon_days, int) and self.horizon_days > 0):
            raise ValueError(f"horizon_days: expected a positive whole number of days, got {self.horizon_days!r}")

    def _frame(self, X: pd.DataFrame | np.ndarray, names: list[str]) -> pd.DataFrame:
        return _columns(X, names)

    def fit(self, X: pd.DataFrame, y: Any = None) -> PropensityBaseline:
        """Fit on feature rows ``X`` (0/1 outcomes ``y`` only for ``rfm_logistic``; ignored otherwise).

        ``rfm_score`` learns its quintile edges from ``X``'s buyers, ``rfm_logistic`` its coefficients from
        ``X`` and ``y``, ``bgnbd`` its four parameters from the customers of ``X`` who ordered (fit it on the
        rows of one cutoff: one row per customer); ``past_rate`` learns nothing but its reference point.

        Raises:
            ValueError: an unknown kind or direction, a missing column, no rows, no buyers (``rfm_score``,
                ``bgnbd``), or ``rfm_logistic`` without outcomes.
        """
        self._check()
        names = self._inputs()
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"X: expected a pandas DataFrame with columns {names}")
        frame = self._frame(X, names)
        if len(frame) == 0:
            raise ValueError("X: no rows")
        model: Any = None
        if self.kind == "rfm_score":
            model = RFMScore(direction=self.direction).fit(frame)
        elif self.kind == "rfm_logistic":
            if y is None:
                raise ValueError("y: rfm_logistic needs the 0/1 outcomes of the training rows")
            model = RFMLogistic().fit(frame, y)
        elif self.kind == "bgnbd":
            summary = summary_from_features(frame).dropna()
            if summary.empty:
                raise ValueError(f"{ORDERS_LIFETIME}: no row with an order; BG/NBD has nothing to fit")
            model = _fit_bgnbd(summary)
        self.model_ = model
        self.feature_names_ = names
        self.reference_ = {c: _median(frame[c]) for c in names}
        return self

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The score per row in [0, 1], shape (n,): a probability (``rfm_score``: the rank divided by 15)."""
        check_fitted(self, "feature_names_")
        frame = self._frame(X, self.feature_names_)
        if len(frame) == 0:
            return np.empty(0)
        if self.kind == "rfm_score":
            return np.asarray(self.model_.decision_function(frame) / MAX_SCORE, dtype=np.float64)
        if self.kind == "rfm_logistic":
            return np.asarray(self.model_.predict_proba(frame), dtype=np.float64)
        if self.kind == "bgnbd":
            summary = summary_from_features(frame)
            known = summary.notna().all(axis=1).to_numpy()
            buy = np.zeros(len(frame))
            if known.any():
                s = summary[known]
                buy[known] = self.model_.probability_of_purchase(
                    self.horizon_days / 7.0, s["frequency"], s["recency"], s["T"]
                )
            return 1.0 - buy if self.direction == "churn" else buy
        sends, acts = (frame[c].fillna(0.0).to_numpy(np.float64) for c in self.feature_names_)
        return (acts + 1.0) / (sends + 2.0)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per row and input, the log-odds the score loses when that input is set to its reference
        (the training median); ``bias`` closes each row to the score's log-odds (as TreeSHAP's columns)."""
        check_fitted(self, "feature_names_")
        frame = self._frame(X, self.feature_names_)
        base = _log_odds(self.predict_proba(frame))
        out = {}
        for name in self.feature_names_:
            moved = frame.copy()
            moved[name] = self.reference_[name]
            out[name] = base - _log_odds(self.predict_proba(moved))
        contrib = pd.DataFrame(out, index=X.index if isinstance(X, pd.DataFrame) else None)
        contrib["bias"] = base - contrib.sum(axis=1).to_numpy()
        return contrib

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "feature_names_")
        return {
            "format_version": FORMAT_VERSION,
            "kind": "propensity_baseline",
            "params": self.get_params(),
            "features": list(self.feature_names_),
            "reference": {k: (None if np.isnan(v) else v) for k, v in self.reference_.items()},
            "model": self.model_.to_dict() if self.model_ is not None else None,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> PropensityBaseline:
        """A fitted baseline from :meth:`to_dict`'s output.

        Raises:
            ValueError: another kind of dict or format, features or inner model that do not match the kind.
        """
        model = cls(**_checked_state(state, "propensity_baseline")["params"])
        names = _check_inputs(model, state)
        inner = state.get("model")
        if model.kind == "rfm_score":
            model.model_ = RFMScore.from_dict(inner or {})
        elif model.kind == "rfm_logistic":
            model.model_ = RFMLogistic.from_dict(inner or {})
        elif model.kind == "bgnbd":
            model.model_ = BGNBD.from_dict(inner or {})
        else:
            model.model_ = None
        reference = state.get("reference") or {}
        model.reference_ = {c: float("nan") if reference.get(c) is None else float(reference[c]) for c in names}
        model.feature_names_ = names
        return model


def _checked_state(state: dict[str, Any], kind: str) -> dict[str, Any]:
    """``state`` when it is a saved baseline of ``kind`` in this format; else ValueError saying what it is."""
    if state.get("kind") != kind:
        raise ValueError(f"kind: expected {kind!r}, got {state.get('kind')!r}")
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"format_version: expected {FORMAT_VERSION}, got {state.get('format_version')!r}")
    return state


def _check_inputs(model: Any, state: dict[str, Any]) -> list[str]:
    """The features this kind of baseline reads, after checking its parameters and that they are the
    recorded ones."""
    model._check()
    names: list[str] = model._inputs()
    if list(state.get("features") or []) != names:
        raise ValueError(f"features: a {model.kind} baseline reads {names}, got {state.get('features')!r}")
    return names


def _columns(X: pd.DataFrame | np.ndarray, names: list[str]) -> pd.DataFrame:
    """``X``'s columns ``names`` as float64 (a frame holding them, or a matrix of exactly them in order)."""
    if isinstance(X, pd.DataFrame):
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise ValueError(f"X: missing column(s) {missing}")
        return X[names].astype(np.float64)
    matrix = np.asarray(X, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(names):
        raise ValueError(f"X: expected a matrix of {len(names)} columns {names}, got shape {matrix.shape}")
    return pd.DataFrame(matrix, columns=names)


def _median(values: pd.Series) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.median()) if len(finite) else float("nan")


def _log_odds(p: np.ndarray) -> np.ndarray:
    return np.asarray(logit(np.clip(p, _EPS, 1.0 - _EPS)), dtype=np.float64)


def _fit_bgnbd(summary: pd.DataFrame) -> BGNBD:
    """BG/NBD on (frequency, recency, T), penalised only when the plain fit does not converge."""
    fitted: BGNBD = fit_with_penalty(
        lambda c: BGNBD(penalizer_coef=c), summary["frequency"], summary["recency"], summary["T"]
    )
    return fitted


# --- value: spend and orders over a horizon --------------------------------------------------------------

ValueKind: TypeAlias = Literal["last_period", "bgnbd_gamma_gamma", "mbgnbd_gamma_gamma"]
VALUE_KINDS: tuple[str, ...] = ("last_period", "bgnbd_gamma_gamma", "mbgnbd_gamma_gamma")
AVG_ORDER_VALUE = "avg_order_value"
WEEK_DAYS = 7.0
MIN_REPEAT_BUYERS = 20  # Gamma-Gamma is fitted on at least this many repeat buyers, else the mean order value


def last_period_window(horizon_days: int) -> int:
    """The feature-store window (30, 90, 180 or 365 days) closest to ``horizon_days``."""
    from features.defs.orders import RFM_WINDOWS

    return min(RFM_WINDOWS, key=lambda w: abs(w - horizon_days))


class ValueBaseline(Estimator):
    """One simple model of spend and orders in the next ``horizon_days``, read off the feature row.

    * ``last_period``: the customer's spend and orders in the feature-store window closest to the horizon
      (``monetary_90d``, ``orders_90d`` for 90 days), scaled by horizon / window when they differ;
    * ``bgnbd_gamma_gamma`` / ``mbgnbd_gamma_gamma``: BG/NBD (or MBG/NBD) expected orders in the horizon from
      (frequency, recency, T) read off the feature row (:func:`models.clv.summary_from_features`), times
      Gamma-Gamma's expected order value given the customer's order count and average order value
      (``avg_order_value``: every order's mean, the first included, as the feature row has it). A customer who
      never ordered expects 0.

    Attributes (after ``fit``): ``feature_names_`` (the columns read, in matrix order), ``model_`` (the
    BG/NBD-family fit, None for ``last_period``), ``gamma_`` (Gamma-Gamma, None when fewer than
    :data:`MIN_REPEAT_BUYERS` repeat buyers) and ``mean_value_`` (the training rows' mean order value, used
    without Gamma-Gamma).
    """

    def __init__(self, kind: ValueKind = "last_period", horizon_days: int = 365) -> None:
        self.kind = kind
        self.horizon_days = horizon_days

    def _check(self) -> None:
        if self.kind not in VALUE_KINDS:
            raise ValueError(f"kind: expected one of {list(VALUE_KINDS)}, got {self.kind!r}")
        if not (isinstance(self.horizon_days, int) and self.horizon_days > 0):
            raise ValueError(f"horizon_days: expected a positive whole number of days, got {self.horizon_days!r}")

    def _inputs(self) -> list[str]:
        if self.kind == "last_period":
            w = last_period_window(self.horizon_days)
            return [f"monetary_{w}d", f"orders_{w}d"]
        return [ORDERS_LIFETIME, RECENCY, TENURE, AVG_ORDER_VALUE]

    def _frame(self, X: pd.DataFrame | np.ndarray, names: list[str]) -> pd.DataFrame:
        return _columns(X, names)

    def fit(self, X: pd.DataFrame, y: Any = None) -> ValueBaseline:
        """Fit on the feature rows of one cutoff (one row per customer; no outcome is read).

        Raises:
            ValueError: an unknown kind, a missing column, no rows, or no customer with an order (BG/NBD).
        """
        self._check()
        names = self._inputs()
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"X: expected a pandas DataFrame with columns {names}")
        frame = self._frame(X, names)
        if len(frame) == 0:
            raise ValueError("X: no rows")
        self.model_: BGNBD | ModifiedBGNBD | None = None
        self.gamma_: GammaGamma | None = None
        self.mean_value_ = 0.0
        if self.kind != "last_period":
            summary = summary_from_features(frame).dropna()
            if summary.empty:
                raise ValueError(f"{ORDERS_LIFETIME}: no row with an order; BG/NBD has nothing to fit")
            cls = BGNBD if self.kind == "bgnbd_gamma_gamma" else ModifiedBGNBD
            self.model_ = fit_with_penalty(
                lambda c: cls(penalizer_coef=c), summary["frequency"], summary["recency"], summary["T"]
            )
            value = frame.loc[summary.index, AVG_ORDER_VALUE]
            self.mean_value_ = float(value[value > 0].mean()) if (value > 0).any() else 0.0
            repeat = (summary["frequency"] > 0) & (value > 0)
            if int(repeat.sum()) >= MIN_REPEAT_BUYERS:
                self.gamma_ = fit_with_penalty(
                    lambda c: GammaGamma(penalizer_coef=c), summary.loc[repeat, "frequency"], value[repeat]
                )
        self.feature_names_ = names
        return self

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Expected spend per row in the horizon (the data's currency), shape (n,)."""
        return self.predict_both(X)[0]

    def predict_orders(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Expected orders per row in the horizon, shape (n,)."""
        return self.predict_both(X)[1]

    def predict_both(self, X: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(expected spend, expected orders) per row in the horizon; never negative."""
        check_fitted(self, "feature_names_")
        frame = self._frame(X, self.feature_names_)
        n = len(frame)
        if self.kind == "last_period":
            scale = self.horizon_days / last_period_window(self.horizon_days)
            spend, orders = (
                frame[c].fillna(0.0).clip(lower=0.0).to_numpy(np.float64) * scale for c in self.feature_names_
            )
            return spend, orders
        summary = summary_from_features(frame)
        known = summary.notna().all(axis=1).to_numpy()
        orders, spend = np.zeros(n), np.zeros(n)
        if known.any() and self.model_ is not None:
            s = summary[known]
            orders[known] = self.model_.expected_purchases(
                self.horizon_days / WEEK_DAYS, s["frequency"], s["recency"], s["T"]
            )
            if self.gamma_ is not None:
                aov = frame.loc[known, AVG_ORDER_VALUE].fillna(0.0).clip(lower=0.01).to_numpy(np.float64)
                value = self.gamma_.conditional_expected_value(s["frequency"].to_numpy(), aov)
            else:
                value = np.full(int(known.sum()), self.mean_value_)
            spend[known] = orders[known] * value
        return spend, orders

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "feature_names_")
        return {
            "format_version": FORMAT_VERSION,
            "kind": "value_baseline",
            "params": self.get_params(),
            "features": list(self.feature_names_),
            "model": self.model_.to_dict() if self.model_ is not None else None,
            "gamma_gamma": self.gamma_.to_dict() if self.gamma_ is not None else None,
            "mean_value": self.mean_value_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> ValueBaseline:
        """A fitted baseline from :meth:`to_dict`'s output.

        Raises:
            ValueError: another kind of dict or format, or features or inner models that do not match the kind.
        """
        model = cls(**_checked_state(state, "value_baseline")["params"])
        names = _check_inputs(model, state)
        inner, gamma = state.get("model"), state.get("gamma_gamma")
        model.model_ = None
        model.gamma_ = None
        if model.kind != "last_period":
            if inner is None:
                raise ValueError(f"model: a {model.kind} baseline needs its fitted BG/NBD-family model")
            model.model_ = (BGNBD if model.kind == "bgnbd_gamma_gamma" else ModifiedBGNBD).from_dict(inner)
            model.gamma_ = GammaGamma.from_dict(gamma) if gamma is not None else None
        model.mean_value_ = float(state.get("mean_value") or 0.0)
        model.feature_names_ = names
        return model
