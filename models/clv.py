"""Probabilistic customer-base models: who is still alive, how often they will buy, what they will spend.

* :func:`rfm_summary` turns a transaction log into the per-customer statistics the models need
  (frequency, recency, T, mean repeat spend; optionally the holdout-period counts).
* :class:`BGNBD` is the BG/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy
  way", Marketing Science 24(2)): purchases follow a Poisson process with a gamma-distributed rate,
  and right after each *repeat* purchase a customer drops out with a beta-distributed probability.
  A customer with no repeat purchase is therefore alive for sure: ``p_alive == 1``.
* :class:`ModifiedBGNBD` is the MBG/NBD model (Batislam, Denizel & Filiztekin 2007; Hoppe & Wagner
  2007): a customer may also drop out right after the *first* purchase, so one-time buyers get
  ``p_alive < 1``, falling as the time since their only purchase grows.
* :class:`GammaGamma` is the Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005,
  "RFM and CLV"; Fader & Hardie 2013, "The Gamma-Gamma model of monetary value"), and
  :meth:`GammaGamma.clv` combines it with a purchase model into customer lifetime value.

Notation follows the papers: ``frequency`` = x (repeat purchases), ``recency`` = t_x (time of the
last purchase, from the first one), ``T`` (time from the first purchase to the end of the
calibration period), all in one time unit (weeks in the papers). The estimators follow
scikit-learn's contract (``__init__`` stores parameters, ``fit`` learns ``params_`` and returns
``self``) and are handed over as JSON-able dicts (:meth:`to_dict` / :meth:`from_dict`), never pickles.
Fitting is maximum likelihood with ``scipy.optimize`` (L-BFGS-B with exact gradients) on the log
of the parameters, once per distinct customer history; the log-likelihoods are written with
``gammaln``/``betaln``/``logaddexp`` so that they stay finite for large frequencies and long histories.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, ClassVar, Self, TypeAlias

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

from features.errors import KairosError
from models.base import Estimator, check_fitted
from models.base import NotFittedError as NotFittedError  # its home before models.base

ArrayLike: TypeAlias = Sequence[float] | np.ndarray | pd.Series
DateLike: TypeAlias = str | date | datetime | pd.Timestamp

FORMAT_VERSION = 1
# What the registered ``clv`` bundle holds per customer (training/value.py writes it; the nightly export
# and the API read it).
CLV_FIELDS = ("p_alive", "expected_orders", "p_purchase", "expected_order_value", "expected_spend", "next_order_days")


class ConvergenceError(KairosError, RuntimeError):
    """The likelihood maximisation did not converge; try more data or a positive ``penalizer_coef``."""


# --------------------------------------------------------------------------------------------------
# Data preparation
# --------------------------------------------------------------------------------------------------


class RFM:
    """Column names of :func:`rfm_summary`'s output (one vocabulary)."""

    FREQUENCY = "frequency"
    RECENCY = "recency"
    T = "T"
    MONETARY = "monetary_value"
    FREQUENCY_HOLDOUT = "frequency_holdout"
    MONETARY_HOLDOUT = "monetary_value_holdout"
    DURATION_HOLDOUT = "duration_holdout"


def rfm_summary(
    transactions: pd.DataFrame,
    customer_col: str,
    time_col: str,
    value_col: str | None,
    calibration_end: DateLike,
    time_unit_days: float = 7.0,
    observation_end: DateLike | None = None,
) -> pd.DataFrame:
    """Per-customer frequency, recency, T and mean repeat spend, as the BG/NBD papers define them.

    All lines of one customer on one calendar day are one transaction (their values summed), as in
    the papers. Times are measured in days from the customer's first purchase and divided by
    ``time_unit_days``. The calibration period ends at the *start* of the day ``calibration_end``
    while transactions *on* that day still belong to it: this is the papers' own convention, which
    gives T = 272 / 7 = 38.86 weeks (not 39) to a CDNOW customer who first bought on 1997-01-01 with
    the calibration period ending 1997-09-30.

    Args:
        transactions: one row per order line (or per order).
        customer_col: the customer id column.
        time_col: the purchase time column (datetimes or anything ``pd.to_datetime`` reads); only the
            calendar day is used. Must be comparable with ``calibration_end`` (both naive, or both
            aware in the same zone).
        value_col: the line value column, or None when there is no monetary value.
        calibration_end: the last day of the calibration period (inclusive). Customers whose first
            purchase is later are left out: they are not in the cohort.
        time_unit_days: days per model time unit (7 = weeks, as in the papers).
        observation_end: the last day of the holdout period (inclusive); when given, the holdout
            columns are added.

    Returns:
        A frame indexed by customer id (sorted), with columns ``frequency`` (repeat purchase days in
        the calibration period, int), ``recency`` (last minus first purchase day, in units), ``T``
        (calibration end minus first purchase day, in units), ``monetary_value`` (mean value of the
        repeat transactions, 0.0 when frequency is 0; only when ``value_col`` is given) and, when
        ``observation_end`` is given, ``frequency_holdout`` (purchase days after the calibration
        period, up to ``observation_end``), ``monetary_value_holdout`` (their mean value, 0.0 when
        none) and ``duration_holdout`` (the holdout length in units).

    Rows without a customer id are ignored (there is nobody to model).

    Raises:
        ValueError: a named column is missing, a row with a customer id has no time or value,
            ``time_unit_days`` is not positive, or ``observation_end`` is before ``calibration_end``.
    """
    needed = [customer_col, time_col] + ([value_col] if value_col is not None else [])
    missing = [c for c in needed if c not in transactions.columns]
    if missing:
        raise ValueError(f"rfm_summary: columns {missing} are not in the transactions frame")
    if not time_unit_days > 0:
        raise ValueError(f"rfm_summary: time_unit_days must be positive, got {time_unit_days}")
    cal_end = pd.Timestamp(calibration_end).normalize()
    obs_end = None if observation_end is None else pd.Timestamp(observation_end).normalize()
    if obs_end is not None and obs_end < cal_end:
        raise ValueError(f"rfm_summary: observation_end {obs_end.date()} is before calibration_end {cal_end.date()}")
    unit = pd.Timedelta(days=time_unit_days)

    frame = pd.DataFrame(
        {
            customer_col: transactions[customer_col].array,
            "_day": pd.to_datetime(transactions[time_col]).dt.normalize().array,
            "_value": 0.0 if value_col is None else pd.to_numeric(transactions[value_col]).to_numpy(dtype="float64"),
        }
    )
    frame = frame[frame[customer_col].notna()]  # guest checkouts: nobody to model
    if frame["_day"].isna().any():
        raise ValueError(f"rfm_summary: {int(frame['_day'].isna().sum())} rows have no {time_col}")
    if frame["_value"].isna().any():
        raise ValueError(f"rfm_summary: {int(frame['_value'].isna().sum())} rows have no {value_col}")
    days = frame.groupby([customer_col, "_day"], sort=True, as_index=False)["_value"].sum()

    calib = days[days["_day"] <= cal_end]
    grouped = calib.groupby(customer_col, sort=True)
    first = grouped["_day"].min()
    last = grouped["_day"].max()
    n_days = grouped.size()
    total = grouped["_value"].sum()
    # The first row of each customer (days are sorted) is the first purchase; drop its value.
    first_value = grouped["_value"].first()
    frequency = (n_days - 1).astype("int64")
    repeat_mean = ((total - first_value) / frequency.where(frequency > 0)).fillna(0.0)

    out = pd.DataFrame(
        {
            RFM.FREQUENCY: frequency,
            RFM.RECENCY: (last - first) / unit,
            RFM.T: (cal_end - first) / unit,
        }
    )
    if value_col is not None:
        out[RFM.MONETARY] = repeat_mean.astype("float64")

    if obs_end is not None:
        hold = days[(days["_day"] > cal_end) & (days["_day"] <= obs_end)]
        hold = hold[hold[customer_col].isin(out.index)]
        hold_grouped = hold.groupby(customer_col, sort=True)
        out[RFM.FREQUENCY_HOLDOUT] = hold_grouped.size().reindex(out.index, fill_value=0).astype("int64")
        if value_col is not None:
            out[RFM.MONETARY_HOLDOUT] = hold_grouped["_value"].mean().reindex(out.index, fill_value=0.0)
        out[RFM.DURATION_HOLDOUT] = (obs_end - cal_end) / unit
    out.index.name = customer_col
    return out


PENALTIES = (0.0, 1e-3, 1e-2, 1e-1)  # tried in turn when the unpenalised likelihood does not converge


def fit_with_penalty(make: Callable[[float], Any], *data: Any) -> Any:
    """Fit ``make(penalizer_coef)`` on ``data``, adding a small L2 penalty only when the plain fit
    fails to converge (e.g. data with hardly any dropout drives BG/NBD's a, b to infinity). The
    penalty used is kept in the model's params."""
    last: Exception | None = None
    for penalty in PENALTIES:
        try:
            return make(penalty).fit(*data)
        except ConvergenceError as exc:
            last = exc
    assert last is not None
    raise last


def summary_from_features(
    features: pd.DataFrame,
    *,
    orders: str = "orders_lifetime",
    recency_days: str = "recency_days",
    tenure_days: str = "tenure_days",
    time_unit_days: float = 7.0,
) -> pd.DataFrame:
    """BG/NBD's (frequency, recency, T) read off a point-in-time feature row instead of the order lines.

    What a model fitted at training time and applied at serving time both see: ``frequency`` is the
    orders before the cutoff minus one (orders, not distinct days: the feature counts orders),
    ``recency`` is the first-to-last order span and ``T`` the customer's age, both in ``time_unit_days``.
    Rows without an order (a lead, ``orders`` 0 or missing) get NaN in all three: BG/NBD says nothing
    about them, and the caller decides their score. The index is the input's.
    """
    n = pd.to_numeric(features[orders], errors="coerce").fillna(0.0).to_numpy(np.float64)
    age = pd.to_numeric(features[tenure_days], errors="coerce").to_numpy(np.float64)
    since = pd.to_numeric(features[recency_days], errors="coerce").to_numpy(np.float64)
    known = (n >= 1.0) & np.isfinite(age) & np.isfinite(since)
    t = np.where(known, np.maximum(age, 0.0), np.nan) / time_unit_days
    span = np.where(known, np.clip(age - since, 0.0, np.maximum(age, 0.0)), np.nan) / time_unit_days
    x = np.where(known, np.maximum(n - 1.0, 0.0), np.nan)
    # a single order has no span: recency is 0 by definition
    span = np.where(known & (x == 0.0), 0.0, span)
    return pd.DataFrame({RFM.FREQUENCY: x, RFM.RECENCY: span, RFM.T: t}, index=features.index)


# --------------------------------------------------------------------------------------------------
# Shared machinery
# --------------------------------------------------------------------------------------------------


def _as_float(values: ArrayLike | float, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype="float64")
    if arr.ndim > 1:
        raise ValueError(f"{name}: expected a scalar or a 1-d array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def _check_rft(
    frequency: ArrayLike | float, recency: ArrayLike | float, T: ArrayLike | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _as_float(frequency, "frequency")
    t_x = _as_float(recency, "recency")
    big_t = _as_float(T, "T")
    try:
        x, t_x, big_t = np.broadcast_arrays(x, t_x, big_t)
    except ValueError as err:
        raise ValueError(f"frequency, recency and T have incompatible shapes: {err}") from None
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency: must be non-negative whole numbers (repeat purchases)")
    if np.any(t_x < 0) or np.any(t_x > big_t * (1 + 1e-12)):
        raise ValueError("recency: must lie between 0 and T (times are measured from the first purchase)")
    if np.any((x == 0) & (t_x != 0)):
        raise ValueError("recency: must be 0 for customers with frequency 0")
    return x, t_x, big_t


LogLikAndGrad = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _maximise_likelihood(
    log_lik_and_grad: LogLikAndGrad,
    weights: np.ndarray,
    start: np.ndarray,
    names: Sequence[str],
    penalizer_coef: float,
    tol: float,
    max_iter: int,
    model: str,
) -> np.ndarray:
    """Maximum-likelihood parameters, searched over their logarithms with L-BFGS-B and exact gradients.

    Args:
        log_lik_and_grad: maps the parameters to the per-row log-likelihood (n,) and its gradient
            with respect to the parameters (n, k).
        weights: how many customers each row stands for.
        start: starting parameters (natural scale).
        names: parameter names, for messages.
        penalizer_coef: weight of the L2 penalty on the parameters, added to the mean negative log-likelihood.
        tol: gradient tolerance (on the mean log-likelihood, per log-parameter).
        max_iter: iteration budget.
        model: model name, for messages.

    Returns:
        The parameters (natural scale).

    Raises:
        ConvergenceError: the optimiser failed, or a parameter ran off towards 0 or infinity (the
            data do not identify the model, e.g. nobody made a repeat purchase).
    """
    total = float(weights.sum())

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(log_params)
        ll, grad = log_lik_and_grad(params)
        value = -float(weights @ ll) / total + penalizer_coef * float(params @ params)
        # d/d log(theta) = theta d/d theta
        gradient = -(weights @ grad) / total * params + 2 * penalizer_coef * params**2
        if not (np.isfinite(value) and np.all(np.isfinite(gradient))):
            return 1e300, np.zeros_like(log_params)  # outside the usable region: the line search backs off
        return value, gradient

    result = minimize(
        objective,
        np.log(start),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-15},
    )
    found = dict(zip(names, np.exp(result.x).tolist(), strict=True))
    # L-BFGS-B may stop with a line-search warning at an optimum it cannot improve in floating point.
    converged = bool(result.success) or float(np.max(np.abs(result.jac))) < 1e-6
    if not converged or not np.all(np.isfinite(result.x)):
        raise ConvergenceError(f"{model}: maximum likelihood did not converge ({result.message}); last {found}")
    if np.any(np.abs(result.x) > 25):
        raise ConvergenceError(
            f"{model}: parameters ran off towards 0 or infinity ({found}): the data do not identify the "
            "model (too few customers, no repeat purchases, or no sign of drop-out); a positive "
            "penalizer_coef may help"
        )
    return np.exp(result.x)


def _unique_rows(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct rows and their counts: the likelihood is evaluated once per distinct customer history."""
    stacked = np.column_stack(columns)
    rows, counts = np.unique(stacked, axis=0, return_counts=True)
    return [rows[:, i] for i in range(rows.shape[1])], counts.astype("float64")


class _Exportable(Estimator):
    """``to_dict`` / ``from_dict`` over a fitted ``params_`` dict and the constructor settings."""

    _param_names: ClassVar[tuple[str, ...]]
    params_: dict[str, float]
    log_likelihood_: float
    n_customers_: int

    def _check_fitted(self) -> dict[str, float]:
        check_fitted(self, "params_")
        return self.params_

    def to_dict(self) -> dict[str, Any]:
        """The fitted model as a JSON-able dict (floats round-trip exactly through ``json``).

        Returns:
            ``{"model", "format_version", "settings", "params", "log_likelihood", "n_customers"}``.

        Raises:
            NotFittedError: the model is not fitted.
        """
        params = self._check_fitted()
        return {
            "model": type(self).__name__,
            "format_version": FORMAT_VERSION,
            "settings": self.get_params(),
            "params": {k: float(params[k]) for k in self._param_names},
            "log_likelihood": None if np.isnan(self.log_likelihood_) else float(self.log_likelihood_),
            "n_customers": int(self.n_customers_),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """A fitted model from :meth:`to_dict`'s output.

        Args:
            data: the dict (e.g. read back from JSON).

        Returns:
            The model, ready to predict.

        Raises:
            ValueError: the dict is for another model, another format version, or lacks a parameter.
        """
        if data.get("model") != cls.__name__:
            raise ValueError(f"from_dict: this dict holds a {data.get('model')!r}, not a {cls.__name__}")
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"from_dict: format_version {data.get('format_version')!r} is not {FORMAT_VERSION}")
        params = data.get("params", {})
        missing = [k for k in cls._param_names if k not in params]
        if missing:
            raise ValueError(f"from_dict: parameters {missing} are missing")
        model = cls(**data.get("settings", {}))
        model.params_ = {k: float(params[k]) for k in cls._param_names}
        ll = data.get("log_likelihood")
        model.log_likelihood_ = np.nan if ll is None else float(ll)
        model.n_customers_ = int(data.get("n_customers", 0))
        return model


# --------------------------------------------------------------------------------------------------
# BG/NBD and MBG/NBD
# --------------------------------------------------------------------------------------------------


class _BetaGeoBase(_Exportable):
    """BG/NBD and MBG/NBD: one implementation, differing only in when drop-out can happen.

    While alive, a customer buys at Poisson rate lambda ~ Gamma(r, alpha); a purchase is followed by
    drop-out with probability p ~ Beta(a, b). BG/NBD offers that chance after each *repeat* purchase
    (x chances for a customer with x repeat purchases), MBG/NBD also after the first purchase (x + 1
    chances). With ``k = b + x + s``, s the number of extra chances (0 or 1), every formula of the
    two papers is the same: survivors have p ~ Beta(a, k) and lambda ~ Gamma(r + x, alpha + T).
    """

    _param_names = ("r", "alpha", "a", "b")
    _first_purchase_dropout: ClassVar[int]  # s: 0 for BG/NBD, 1 for MBG/NBD

    def __init__(self, penalizer_coef: float = 0.0, tol: float = 1e-9, max_iter: int = 1000) -> None:
        self.penalizer_coef = penalizer_coef
        self.tol = tol
        self.max_iter = max_iter

    # --- the model ----------------------------------------------------------------------------------

    def _branches(
        self, params: np.ndarray | Sequence[float], x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The log-likelihood's two branches (alive at T / dropped out after the last purchase).

        L = B(a, k) / B(a, b) G (alpha + T)^-(r+x) + [x + s > 0] B(a + 1, k - 1) / B(a, b) G (alpha + t_x)^-(r+x),
        with G = Gamma(r + x) alpha^r / Gamma(r) (eq. 6 of Fader, Hardie & Lee 2005 for s = 0;
        Batislam et al. 2007 for s = 1). Returns (common, alive, dead, can_have_dropped), where the
        log-likelihood is common + logaddexp(alive, dead) and dead is -inf where drop-out was impossible.
        """
        r, alpha, a, b = params
        k = b + x + self._first_purchase_dropout
        can_drop = x + self._first_purchase_dropout > 0
        common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) - betaln(a, b)
        alive = betaln(a, k) - (r + x) * np.log(alpha + big_t)
        dead_finite = betaln(a + 1, np.where(can_drop, k - 1, 1.0)) - (r + x) * np.log(alpha + t_x)
        return common, alive, np.where(can_drop, dead_finite, -np.inf), can_drop

    def _log_lik_and_grad(
        self, params: np.ndarray, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-customer log-likelihood and its gradient with respect to (r, alpha, a, b)."""
        r, alpha, a, b = params
        common, alive, dead, can_drop = self._branches(params, x, t_x, big_t)
        total = np.logaddexp(alive, dead)
        w_alive = np.exp(alive - total)  # posterior P(alive): weights of the two branches
        w_dead = 1.0 - w_alive
        k = b + x + self._first_purchase_dropout
        k_dead = np.where(can_drop, k - 1, 1.0)
        psi_ak = digamma(a + k)
        d_r = (
            digamma(r + x) - digamma(r) + np.log(alpha) - w_alive * np.log(alpha + big_t) - w_dead * np.log(alpha + t_x)
        )
        d_alpha = r / alpha - (r + x) * (w_alive / (alpha + big_t) + w_dead / (alpha + t_x))
        d_a = (
            digamma(a + b)
            - digamma(a)
            + w_alive * (digamma(a) - psi_ak)
            + np.where(can_drop, w_dead * (digamma(a + 1) - psi_ak), 0.0)
        )
        d_b = (
            digamma(a + b)
            - digamma(b)
            + w_alive * (digamma(k) - psi_ak)
            + np.where(can_drop, w_dead * (digamma(k_dead) - psi_ak), 0.0)
        )
        return common + total, np.column_stack([d_r, d_alpha, d_a, d_b])

    def _log_odds_dead(self, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        """log P(dropped out) - log P(alive) given the history; -inf where drop-out was impossible.

        The ratio of the two branches: a / (k - 1) ((alpha + T) / (alpha + t_x))^(r + x).
        """
        _, alive, dead, _ = self._branches(self._params_array(), x, t_x, big_t)
        return np.asarray(dead - alive)

    def _expected_given_alive(self, t: np.ndarray, x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        """E[purchases in (T, T + t] | x, alive at T].

        The papers' (a + k - 1)/(a - 1) [1 - ((alpha + T)/(alpha + T + t))^(r + x) 2F1(r + x, k; a + k - 1; z)],
        z = t / (alpha + T + t), after Euler's transformation 2F1(A, B; C; z) = (1 - z)^(C-A-B)
        2F1(C - A, C - B; C; z): (1 - z)^(a - 1) 2F1(a - 1, a + b + s - 1 - r; a + k - 1; z), whose
        first two arguments do not grow with x, so the series stays well-conditioned for heavy buyers
        and long horizons. (a = 1 exactly is a removable singularity this does not handle.)
        """
        r, alpha, a, b = self._params_array()
        z = t / (alpha + big_t + t)
        c = a + b + x + self._first_purchase_dropout - 1
        hyp = hyp2f1(a - 1, a + b + self._first_purchase_dropout - 1 - r, c, z)
        return np.asarray(c / (a - 1) * -np.expm1((a - 1) * np.log1p(-z) + np.log(hyp)))

    def _params_array(self) -> np.ndarray:
        p = self._check_fitted()
        return np.array([p["r"], p["alpha"], p["a"], p["b"]])

    # --- fitting ------------------------------------------------------------------------------------

    def fit(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Self:
        """Maximum-likelihood estimates of (r, alpha, a, b) from one row per customer.

        Args:
            frequency: repeat purchases in the calibration period (x).
            recency: time of the last purchase, measured from the first (t_x; 0 when x is 0).
            T: time from the first purchase to the end of the calibration period.

        Returns:
            self, with ``params_`` ({"r", "alpha", "a", "b"}), ``log_likelihood_`` (the total
            log-likelihood at the optimum, without the penalty) and ``n_customers_``.

        Raises:
            ValueError: invalid inputs (negative or fractional frequency, recency outside [0, T], ...).
            ConvergenceError: the optimiser did not converge, or the data do not identify the model.
        """
        x, t_x, big_t = _check_rft(frequency, recency, T)
        if x.ndim != 1 or x.size < 4:
            raise ValueError(f"{type(self).__name__}.fit: needs a 1-d array of at least 4 customers")
        if not np.any(x > 0):
            raise ValueError(
                f"{type(self).__name__}.fit: nobody made a repeat purchase; the model cannot be identified"
            )
        (ux, ut_x, ut), weights = _unique_rows(x, t_x, big_t)
        start = np.array([1.0, max(float(np.mean(big_t)), 1e-6), 1.0, 1.0])
        params = _maximise_likelihood(
            lambda theta: self._log_lik_and_grad(theta, ux, ut_x, ut),
            weights,
            start,
            self._param_names,
            self.penalizer_coef,
            self.tol,
            self.max_iter,
            type(self).__name__,
        )
        self.params_ = dict(zip(self._param_names, params.tolist(), strict=True))
        self.log_likelihood_ = float(weights @ self._log_lik_and_grad(params, ux, ut_x, ut)[0])
        self.n_customers_ = int(x.size)
        return self

    # --- predictions --------------------------------------------------------------------------------

    def log_likelihood(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> np.ndarray:
        """Per-customer log-likelihood under the fitted parameters.

        Args:
            frequency: repeat purchases (x).
            recency: time of the last purchase (t_x).
            T: length of the observation from the first purchase.

        Returns:
            One log-likelihood per customer (sum them for the model's total).
        """
        x, t_x, big_t = _check_rft(frequency, recency, T)
        common, alive, dead, _ = self._branches(self._params_array(), x, t_x, big_t)
        return np.asarray(common + np.logaddexp(alive, dead))

    def p_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> np.ndarray:
        """Probability that each customer is still alive at T.

        Args:
            frequency: repeat purchases (x).
            recency: time of the last purchase (t_x).
            T: time from the first purchase to now.

        Returns:
            P(alive | x, t_x, T), one per customer.
        """
        x, t_x, big_t = _check_rft(frequency, recency, T)
        return np.asarray(expit(-self._log_odds_dead(x, t_x, big_t)))

    def expected_purchases(
        self, t: ArrayLike | float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> np.ndarray:
        """Expected number of purchases in the next ``t`` units, given each customer's history.

        This is the papers' conditional expectation E[Y(t) | x, t_x, T] = P(alive) E[Y(t) | x, alive at T].

        Args:
            t: the horizon, in model units (scalar or one per customer).
            frequency: repeat purchases (x).
            recency: time of the last purchase (t_x).
            T: time from the first purchase to now.

        Returns:
            Expected purchases in (T, T + t], one per customer.
        """
        x, t_x, big_t = _check_rft(frequency, recency, T)
        horizon = _as_float(t, "t")
        if np.any(horizon < 0):
            raise ValueError("t: the horizon must be non-negative")
        alive = expit(-self._log_odds_dead(x, t_x, big_t))
        return np.asarray(alive * self._expected_given_alive(horizon, x, big_t))

    def expected_purchases_new(self, t: ArrayLike | float) -> np.ndarray:
        """Expected repeat purchases in the first ``t`` units after a new customer's first purchase.

        Args:
            t: time since the first purchase, in model units.

        Returns:
            E[X(t)] (unconditional: for a customer we know nothing about yet).
        """
        horizon = _as_float(t, "t")
        if np.any(horizon < 0):
            raise ValueError("t: must be non-negative")
        # Just acquired: x = 0 at T = 0. P(alive) is then 1 (BG/NBD) or b / (a + b), the chance of not
        # dropping out at the first purchase (MBG/NBD).
        zero = np.zeros_like(horizon)
        alive = expit(-self._log_odds_dead(zero, zero, zero))
        return np.asarray(alive * self._expected_given_alive(horizon, zero, zero))

    def probability_of_purchase(
        self, t: ArrayLike | float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> np.ndarray:
        """Probability of at least one purchase in (T, T + t]: P(alive) [1 - ((alpha + T) / (alpha + T + t))^(r + x)].

        Dropout happens only just after a purchase, so a customer alive at T is still alive at their
        next purchase; the wait to it is the gamma-mixed exponential of :meth:`next_purchase_time`.

        Args:
            t: the horizon, in model units (scalar or one per customer).
            frequency: repeat purchases (x).
            recency: time of the last purchase (t_x).
            T: time from the first purchase to now.
        """
        x, t_x, big_t = _check_rft(frequency, recency, T)
        horizon = _as_float(t, "t")
        if np.any(horizon < 0):
            raise ValueError("t: the horizon must be non-negative")
        r, alpha, _, _ = self._params_array()
        alive = expit(-self._log_odds_dead(x, t_x, big_t))
        return np.asarray(alive * -np.expm1((r + x) * np.log((alpha + big_t) / (alpha + big_t + horizon))))

    def next_purchase_time(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, probability: float = 0.5
    ) -> np.ndarray:
        """Time from T by which the customer will have bought again with the given probability (default: median).

        A customer alive at T buys at a rate lambda ~ Gamma(r + x, alpha + T), so the wait W to the
        next purchase has P(W > w | alive) = ((alpha + T) / (alpha + T + w))^(r + x); a customer who
        has dropped out never buys again. Hence P(W <= w) = P(alive) [1 - ((alpha + T) / (alpha + T +
        w))^(r + x)], which tends to P(alive) as w grows, and reaches ``probability`` at::

            w = (alpha + T) [(1 - probability / P(alive))^(-1 / (r + x)) - 1]

        It is ``inf`` when P(alive) <= ``probability``: (for the median) the customer is at least as
        likely never to buy again as to buy, so no date is "expected". The mean of W is of no use:
        it is infinite whenever P(alive) < 1, and even given alive whenever r + x <= 1.

        Args:
            frequency: repeat purchases (x).
            recency: time of the last purchase (t_x).
            T: time from the first purchase to now.
            probability: the quantile of the waiting time, in (0, 1).

        Returns:
            The waiting time from T, in model units; ``inf`` where the customer will probably not buy again.
        """
        if not 0 < probability < 1:
            raise ValueError(f"probability must be in (0, 1), got {probability}")
        x, t_x, big_t = _check_rft(frequency, recency, T)
        r, alpha, _, _ = self._params_array()
        alive = expit(-self._log_odds_dead(x, t_x, big_t))
        reachable = alive > probability
        survive = np.where(reachable, 1.0 - probability / np.where(reachable, alive, 1.0), 1.0)
        wait = (alpha + big_t) * np.expm1(-np.log(survive) / (r + x))
        return np.asarray(np.where(reachable, wait, np.inf))

    def expected_next_purchase_days(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        time_unit_days: float = 7.0,
        probability: float = 0.5,
    ) -> np.ndarray:
        """Days from T (the end of the calibration period) to the next purchase: its median by default.

        This is :meth:`next_purchase_time` in days: the time by which the customer will have bought
        again with probability ``probability``, counting the chance that they never will. Add it to
        the calibration end date for the date of the next order.

        Args:
            frequency: repeat purchases (x).
            recency: time of the last purchase (t_x).
            T: time from the first purchase to now.
            time_unit_days: days per model time unit (7 for weeks).
            probability: the quantile of the waiting time, in (0, 1).

        Returns:
            Days from T; ``inf`` where P(alive) <= ``probability`` (the customer will probably not buy again).
        """
        return self.next_purchase_time(frequency, recency, T, probability) * time_unit_days


class BGNBD(_BetaGeoBase):
    """The BG/NBD model (Fader, Hardie & Lee 2005).

    While alive, a customer buys at Poisson rate lambda ~ Gamma(r, alpha); right after each repeat
    purchase they drop out with probability p ~ Beta(a, b). A customer who has made no repeat
    purchase cannot have dropped out, so ``p_alive`` is exactly 1 for frequency 0 however long ago
    the purchase was (use :class:`ModifiedBGNBD` when that is not wanted).

    Args:
        penalizer_coef: weight of an L2 penalty on the parameters, added to the mean negative
            log-likelihood (0 = plain maximum likelihood; a small value such as 0.001 keeps small
            samples from running a and b off to infinity).
        tol: gradient tolerance of the optimiser (mean log-likelihood, per log-parameter).
        max_iter: iteration budget of the optimiser.

    Attributes:
        params_: {"r", "alpha", "a", "b"} after fitting.
        log_likelihood_: total log-likelihood at the optimum.
        n_customers_: customers in the fitting data.
    """

    _first_purchase_dropout = 0


class ModifiedBGNBD(_BetaGeoBase):
    """The MBG/NBD model (Batislam, Denizel & Filiztekin 2007; Hoppe & Wagner 2007).

    As BG/NBD, except that a customer may also drop out right after the first purchase (with the
    same probability p ~ Beta(a, b) as after every later one). One-time buyers therefore have
    ``p_alive < 1``, lower the longer ago their only purchase was, instead of BG/NBD's 1:
    P(alive) = 1 / (1 + a / (b + x) ((alpha + T) / (alpha + t_x))^(r + x)).

    Args:
        penalizer_coef: weight of an L2 penalty on the parameters (see :class:`BGNBD`).
        tol: gradient tolerance of the optimiser (mean log-likelihood, per log-parameter).
        max_iter: iteration budget of the optimiser.

    Attributes:
        params_: {"r", "alpha", "a", "b"} after fitting.
        log_likelihood_: total log-likelihood at the optimum.
        n_customers_: customers in the fitting data.
    """

    _first_purchase_dropout = 1


# --------------------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------------------


class GammaGamma(_Exportable):
    """The Gamma-Gamma model of spend per transaction (Fader & Hardie 2013).

    A customer's transaction values are Gamma(p, nu) with nu ~ Gamma(q, gamma) across customers, so
    the mean spend per transaction is p gamma / (q - 1) in the population and shrinks each customer's
    observed mean towards it, by an amount that falls with their number of transactions. The model
    assumes spend is independent of the purchase process; fit it on customers with at least one
    repeat purchase, using the mean value of their repeat transactions (as :func:`rfm_summary` gives).

    Args:
        penalizer_coef: weight of an L2 penalty on the parameters (0 = plain maximum likelihood).
        tol: gradient tolerance of the optimiser (mean log-likelihood, per log-parameter).
        max_iter: iteration budget of the optimiser.

    Attributes:
        params_: {"p", "q", "gamma"} after fitting.
        log_likelihood_: total log-likelihood at the optimum.
        n_customers_: customers in the fitting data (those with frequency > 0).
    """

    _param_names = ("p", "q", "gamma")

    def __init__(self, penalizer_coef: float = 0.0, tol: float = 1e-9, max_iter: int = 1000) -> None:
        self.penalizer_coef = penalizer_coef
        self.tol = tol
        self.max_iter = max_iter

    @staticmethod
    def _log_lik_and_grad(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-customer log-likelihood and its gradient with respect to (p, q, gamma).

        L = Gamma(px + q) / (Gamma(px) Gamma(q)) gamma^q m^(px - 1) x^(px) / (gamma + m x)^(px + q)
        (eq. 3 of Fader & Hardie 2013), m the mean of x transactions.
        """
        p, q, gamma = params
        px = p * x
        log_gmx = np.log(gamma + m * x)
        psi_pxq = digamma(px + q)
        ll = (
            gammaln(px + q)
            - gammaln(px)
            - gammaln(q)
            + q * np.log(gamma)
            + (px - 1) * np.log(m)
            + px * np.log(x)
            - (px + q) * log_gmx
        )
        d_p = x * (psi_pxq - digamma(px) + np.log(m) + np.log(x) - log_gmx)
        d_q = psi_pxq - digamma(q) + np.log(gamma) - log_gmx
        d_gamma = q / gamma - (px + q) / (gamma + m * x)
        return ll, np.column_stack([d_p, d_q, d_gamma])

    @staticmethod
    def _check_xm(frequency: ArrayLike, monetary_value: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        x = _as_float(frequency, "frequency")
        m = _as_float(monetary_value, "monetary_value")
        try:
            x, m = np.broadcast_arrays(x, m)
        except ValueError as err:
            raise ValueError(f"frequency and monetary_value have incompatible shapes: {err}") from None
        if np.any(x < 0) or np.any(x != np.round(x)):
            raise ValueError("frequency: must be non-negative whole numbers (repeat purchases)")
        return x, m

    def fit(self, frequency: ArrayLike, monetary_value: ArrayLike) -> Self:
        """Maximum-likelihood estimates of (p, q, gamma); customers with frequency 0 are skipped.

        Args:
            frequency: repeat purchases (the number of transactions averaged in ``monetary_value``).
            monetary_value: mean value of those transactions; must be positive where frequency > 0.

        Returns:
            self, with ``params_`` ({"p", "q", "gamma"}), ``log_likelihood_`` and ``n_customers_``
            (the customers with frequency > 0 that were used).

        Raises:
            ValueError: invalid inputs, a non-positive mean value, or fewer than 4 repeat customers.
            ConvergenceError: the optimiser did not converge.
        """
        x, m = self._check_xm(frequency, monetary_value)
        keep = x > 0
        x, m = x[keep], m[keep]
        if x.size < 4:
            raise ValueError(f"GammaGamma.fit: needs at least 4 customers with frequency > 0, got {x.size}")
        if np.any(m <= 0):
            raise ValueError(
                f"GammaGamma.fit: {int(np.sum(m <= 0))} repeat customers have a mean value <= 0; "
                "the model is for positive spend (drop or fix them)"
            )
        (ux, um), weights = _unique_rows(x, m)
        # p = 1, q = 2 and gamma = the mean spend put the population mean p gamma / (q - 1) at the data's.
        start = np.array([1.0, 2.0, float(np.mean(m))])
        params = _maximise_likelihood(
            lambda theta: self._log_lik_and_grad(theta, ux, um),
            weights,
            start,
            self._param_names,
            self.penalizer_coef,
            self.tol,
            self.max_iter,
            "GammaGamma",
        )
        self.params_ = dict(zip(self._param_names, params.tolist(), strict=True))
        self.log_likelihood_ = float(weights @ self._log_lik_and_grad(params, ux, um)[0])
        self.n_customers_ = int(x.size)
        return self

    def population_mean_value(self) -> float:
        """Mean spend per transaction across customers, p gamma / (q - 1) (``inf`` when q <= 1)."""
        params = self._check_fitted()
        p, q, gamma = params["p"], params["q"], params["gamma"]
        return p * gamma / (q - 1) if q > 1 else float("inf")

    def conditional_expected_value(self, frequency: ArrayLike, monetary_value: ArrayLike) -> np.ndarray:
        """Expected spend per future transaction of each customer.

        E[M | x, m_x] = p (gamma + x m_x) / (p x + q - 1): a weighted average of the population
        mean and the customer's own mean, weighted towards the latter as x grows. For frequency 0
        it is the population mean (``monetary_value`` is then ignored).

        Args:
            frequency: repeat purchases (x).
            monetary_value: mean value of the repeat transactions (m_x; any finite value when x is 0).

        Returns:
            One expected value per customer.
        """
        x, m = self._check_xm(frequency, monetary_value)
        params = self._check_fitted()
        p, q, gamma = params["p"], params["q"], params["gamma"]
        with np.errstate(divide="ignore"):
            return np.asarray(np.where(p * x + q > 1, p * (gamma + x * m) / (p * x + q - 1), np.inf))

    def clv(
        self,
        bgnbd: BGNBD | ModifiedBGNBD,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        monetary_value: ArrayLike,
        horizon_units: float,
        discount_rate_per_unit: float = 0.0,
    ) -> np.ndarray:
        """Customer lifetime value over a horizon: expected purchases x expected value, discounted.

        The horizon is cut into whole units (the last one possibly partial); the purchases expected
        in each, from ``bgnbd.expected_purchases``, are discounted by (1 + rate)^-(end of the unit) and
        summed, then multiplied by :meth:`conditional_expected_value`. With a rate of 0 this is
        ``expected_purchases(horizon) * conditional_expected_value`` (up to rounding).

        Args:
            bgnbd: a fitted :class:`BGNBD` or :class:`ModifiedBGNBD`, on the same time unit.
            frequency: repeat purchases (x).
            recency: time of the last purchase (t_x).
            T: time from the first purchase to now.
            monetary_value: mean value of the repeat transactions.
            horizon_units: the horizon, in model units (e.g. 52 weeks).
            discount_rate_per_unit: discount rate per unit (e.g. 1.10 ** (1 / 52) - 1 for 10% a year, in weeks).

        Returns:
            Expected (discounted) value of each customer's purchases over the horizon.
        """
        if not horizon_units >= 0 or not np.isfinite(horizon_units):
            raise ValueError(f"horizon_units must be a finite non-negative number, got {horizon_units}")
        if not discount_rate_per_unit > -1:
            raise ValueError(f"discount_rate_per_unit must be > -1, got {discount_rate_per_unit}")
        value = self.conditional_expected_value(frequency, monetary_value)
        ends = np.append(np.arange(1.0, np.ceil(horizon_units)), horizon_units) if horizon_units > 0 else np.zeros(1)
        cumulative = np.stack([bgnbd.expected_purchases(end, frequency, recency, T) for end in ends])
        increments = np.diff(cumulative, axis=0, prepend=0.0)
        discount = (1.0 + discount_rate_per_unit) ** -ends
        purchases = np.tensordot(discount, increments, axes=1)
        return np.asarray(purchases * value)
