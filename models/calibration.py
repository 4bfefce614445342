"""Probability calibration fitted on the validation window: isotonic or Platt, chosen out of fold.

A boosted model's scores rank well but are rarely probabilities (a 0.3 may mean 20%). The
calibrator maps raw probabilities to calibrated ones learnt on rows the model did not train on (the
later validation window). With ``method="auto"`` both methods are scored by k-fold cross-validation
*inside* the validation rows (each fold calibrated on the others), and the one with the lower
out-of-fold log loss is refitted on all of them: the choice is never made on the rows that fitted it.

* **Platt** (Platt 1999): ``p = sigmoid(slope * logit(raw) + intercept)``, maximum likelihood on the
  0/1 outcomes, with ``slope >= 0`` so that calibration never reverses the model's ranking (a slope of
  0 means the raw scores carried no information on this window: every customer gets the base rate).
* **Isotonic** (Zadrozny & Elkan 2002): the best monotone non-decreasing step function (pool adjacent
  violators), evaluated with linear interpolation between its knots and flat beyond them.

Outputs are clipped to ``[eps, 1 - eps]``: a calibrator that saw no positive among a few hundred
validation rows has not shown that the event is impossible. The fitted state is plain JSON
(:meth:`ProbabilityCalibrator.to_dict`), never a pickle.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, logit
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedKFold

from models.base import Estimator, check_fitted
from models.evaluation import check_labels

ArrayLike: TypeAlias = Sequence[float] | np.ndarray | pd.Series
Method = Literal["auto", "isotonic", "platt"]

FORMAT_VERSION = 1
METHODS: tuple[str, ...] = ("isotonic", "platt")
_LOGIT_CLIP = 1e-12  # raw probabilities of exactly 0 or 1 get a finite logit


def _check_raw(raw_p: ArrayLike, name: str = "raw_p") -> np.ndarray:
    arr = np.asarray(raw_p, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: {int((~np.isfinite(arr)).sum())} values are NaN or infinite")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(f"{name}: probabilities must lie in [0, 1], got range [{arr.min():.4g}, {arr.max():.4g}]")
    return arr


def _fit_platt(raw: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Maximum-likelihood slope (>= 0) and intercept of a logistic curve on logit(raw)."""
    z = logit(np.clip(raw, _LOGIT_CLIP, 1.0 - _LOGIT_CLIP))

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = theta
        eta = a * z + b
        # mean of log(1 + e^eta) - y * eta, and its gradient
        value = float(np.mean(np.logaddexp(0.0, eta) - y * eta))
        resid = expit(eta) - y
        return value, np.array([np.mean(resid * z), np.mean(resid)])

    # start from the identity map (slope 1, intercept 0): already the answer for a calibrated model
    result = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[(0.0, None), (None, None)])
    if not np.all(np.isfinite(result.x)):
        raise RuntimeError(f"Platt scaling did not converge: {result.message}")
    return {"slope": float(result.x[0]), "intercept": float(result.x[1])}


def _fit_isotonic(raw: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(raw, y)
    return {"x": [float(v) for v in iso.X_thresholds_], "y": [float(v) for v in iso.y_thresholds_]}


def _apply(method: str, params: dict[str, Any], raw: np.ndarray, eps: float) -> np.ndarray:
    if method == "platt":
        z = logit(np.clip(raw, _LOGIT_CLIP, 1.0 - _LOGIT_CLIP))
        p = expit(params["slope"] * z + params["intercept"])
    elif method == "isotonic":
        p = np.interp(raw, np.asarray(params["x"]), np.asarray(params["y"]))
    else:
        raise ValueError(f"method: unknown calibration method {method!r}; expected one of {METHODS}")
    return np.clip(p, eps, 1.0 - eps)


def _fit(method: str, raw: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    return _fit_platt(raw, y) if method == "platt" else _fit_isotonic(raw, y)


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


class ProbabilityCalibrator(Estimator):
    """Maps a model's raw probabilities to calibrated ones (fit on the validation window).

    Args:
        method: ``"isotonic"``, ``"platt"`` or ``"auto"`` (the lower out-of-fold log loss of the two).
        folds: folds for the ``"auto"`` choice (stratified, shuffled with ``seed``).
        seed: shuffling seed of the folds.
        eps: outputs are clipped to ``[eps, 1 - eps]``.

    Attributes (after ``fit``):
        method_: the method used (``"isotonic"`` or ``"platt"``).
        params_: Platt ``{"slope", "intercept"}`` (on the logit of the raw probability) or isotonic
            ``{"x", "y"}`` (knots of the non-decreasing step function).
        oof_log_loss_: out-of-fold log loss per method (``"auto"`` only; empty otherwise).
        n_: rows fitted on.
        log_odds_shift_: added to the logit of every output (0 unless :meth:`shifted` set it).
    """

    def __init__(self, method: Method = "auto", folds: int = 5, seed: int = 0, eps: float = 1e-4) -> None:
        self.method = method
        self.folds = folds
        self.seed = seed
        self.eps = eps

    def fit(self, raw_p: ArrayLike, y: ArrayLike) -> ProbabilityCalibrator:
        """Learn the mapping from ``raw_p`` (the model's probabilities on validation rows) to ``y``."""
        if self.method not in ("auto", *METHODS):
            raise ValueError(f"method: expected 'auto', 'isotonic' or 'platt', got {self.method!r}")
        if not 0.0 <= self.eps < 0.5:
            raise ValueError(f"eps: expected a value in [0, 0.5), got {self.eps!r}")
        raw = _check_raw(raw_p)
        y_arr = check_labels(y, "y")
        if y_arr.size != raw.size:
            raise ValueError(f"y: {y_arr.size} labels for {raw.size} probabilities; lengths must match")
        self.oof_log_loss_: dict[str, float] = {}
        if self.method == "auto":
            self.oof_log_loss_ = self._out_of_fold(raw, y_arr)
            chosen = min(METHODS, key=lambda m: (self.oof_log_loss_[m], m))
        else:
            chosen = self.method
        self.method_: str = chosen
        self.params_: dict[str, Any] = _fit(chosen, raw, y_arr)
        self.n_ = int(raw.size)
        self.log_odds_shift_ = 0.0
        return self

    def shifted(self, from_rate: float, to_rate: float) -> ProbabilityCalibrator:
        """A copy whose outputs are moved from a base rate ``from_rate`` (the calibration rows') to
        ``to_rate`` by the prior-shift correction: every output's odds times the ratio of the two rates' odds."""
        check_fitted(self, "params_")
        for name, rate in (("from_rate", from_rate), ("to_rate", to_rate)):
            if not 0.0 < rate < 1.0:
                raise ValueError(f"{name}: expected a rate in (0, 1), got {rate!r}")
        twin = copy.copy(self)
        twin.log_odds_shift_ = float(logit(to_rate) - logit(from_rate))
        return twin

    def _out_of_fold(self, raw: np.ndarray, y: np.ndarray) -> dict[str, float]:
        if not isinstance(self.folds, int) or self.folds < 2:
            raise ValueError(f"folds: expected an integer >= 2 for method='auto', got {self.folds!r}")
        smaller = int(min(y.sum(), y.size - y.sum()))
        if smaller < self.folds:
            raise ValueError(
                f"y: {smaller} rows in the smaller class; choosing a calibration method with {self.folds}-fold "
                "cross-validation needs at least one per fold (use method='platt' or fewer folds)"
            )
        splitter = StratifiedKFold(n_splits=self.folds, shuffle=True, random_state=self.seed)
        oof = {m: np.empty_like(raw) for m in METHODS}
        for fit_idx, held_idx in splitter.split(raw.reshape(-1, 1), y):
            for m in METHODS:
                params = _fit(m, raw[fit_idx], y[fit_idx])
                oof[m][held_idx] = _apply(m, params, raw[held_idx], self.eps)
        # eps = 0 would let one confident miss make the loss infinite; score with a floor then
        floor = max(self.eps, 1e-15)
        return {m: _log_loss(y, np.clip(oof[m], floor, 1.0 - floor)) for m in METHODS}

    def transform(self, raw_p: ArrayLike) -> np.ndarray:
        """Calibrated probabilities in ``[eps, 1 - eps]``, non-decreasing in ``raw_p``."""
        check_fitted(self, "params_")
        out = _apply(self.method_, self.params_, _check_raw(raw_p), self.eps)
        shift = getattr(self, "log_odds_shift_", 0.0)
        if shift:
            out = np.clip(expit(logit(np.clip(out, 1e-12, 1 - 1e-12)) + shift), self.eps, 1.0 - self.eps)
        return out

    predict = transform

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state: method, its parameters and the out-of-fold scores of the choice."""
        check_fitted(self, "params_")
        shift = {"log_odds_shift": self.log_odds_shift_} if getattr(self, "log_odds_shift_", 0.0) else {}
        return {
            **shift,
            "format_version": FORMAT_VERSION,
            "kind": "probability_calibrator",
            "method": self.method_,
            "params": self.params_,
            "eps": self.eps,
            "n": self.n_,
            "oof_log_loss": dict(self.oof_log_loss_),
            "init": self.get_params(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> ProbabilityCalibrator:
        """Rebuild a fitted calibrator from :meth:`to_dict` output (validated)."""
        if state.get("kind") != "probability_calibrator":
            raise ValueError(f"kind: expected 'probability_calibrator', got {state.get('kind')!r}")
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format_version: expected {FORMAT_VERSION}, got {state.get('format_version')!r}")
        method = state.get("method")
        params = state.get("params") or {}
        if method == "platt":
            missing = {"slope", "intercept"} - set(params)
        elif method == "isotonic":
            missing = {"x", "y"} - set(params)
            if not missing:
                x, yv = np.asarray(params["x"], float), np.asarray(params["y"], float)
                if x.shape != yv.shape or x.size == 0 or np.any(np.diff(x) < 0) or np.any(np.diff(yv) < 0):
                    raise ValueError("params: isotonic x and y must be equal-length non-decreasing arrays")
        else:
            raise ValueError(f"method: unknown calibration method {method!r}; expected one of {METHODS}")
        if missing:
            raise ValueError(f"params: {method} calibrator is missing {sorted(missing)}")
        init = state.get("init", {})
        model = cls(**{k: init[k] for k in ("method", "folds", "seed") if k in init}, eps=float(state["eps"]))
        model.method_ = str(method)
        model.params_ = dict(params)
        model.n_ = int(state.get("n", 0))
        model.oof_log_loss_ = {str(k): float(v) for k, v in (state.get("oof_log_loss") or {}).items()}
        model.log_odds_shift_ = float(state.get("log_odds_shift", 0.0))
        return model
