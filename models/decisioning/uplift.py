"""Multi-treatment uplift over LightGBM: the X-learner (default) or the T-learner.

Logged offer sends are a randomised experiment: each campaign message carries no offer or one offer
drawn at random, so the treatment is independent of the customer and the propensity of each arm is a
known constant (its share of the sends). The arms are very unequal: on the synthetic world about 65% of
the sends carry no offer and each of six offers about 6% (1/17 of the sends).

**Why the X-learner.** A T-learner fits one outcome model per arm and subtracts: the uplift of offer
``k`` is ``mu_k(x) - mu_0(x)``. With a small treated arm, ``mu_k`` is fitted on ~6% of the data and is
much noisier than ``mu_0``; the difference of two independently regularised models carries the noise
of both and the shape of neither (the trees split on the baseline, not on the effect). The X-learner
(Kunzel et al., 2019, "Metalearners for estimating heterogeneous treatment effects", PNAS) uses the
large control arm where it is strong: it imputes each treated customer's effect as ``y - mu_0(x)``
(control model, fitted on many rows) and each control customer's as ``mu_k(x) - y``, fits one effect
regressor on each, and blends them with the propensity ``g`` of the arm: ``tau = g * tau_0 +
(1 - g) * tau_1``. With ``g`` around 0.08, the estimate leans on the regressor fitted to the treated
rows with the precise control model's imputation, which is what the unbalanced design calls for.
Randomised assignment means ``g`` is a constant (the arm's share of the pair), not a fitted model.

The T-learner stays available (``learner="t"``) as the comparison; the offers job reports both.

**Cells with empirical-Bayes shrinkage (``learner="cells"``).** The simplest estimator randomisation
makes unbiased: the difference in purchase rates between an offer's sends and the control sends, per
cell of a few coarse customer descriptors (``cells``: e.g. lifecycle, then order value band). Cells are
nested in the order given; each level's raw difference is shrunk toward its parent's estimate (the
offer's overall difference at the top) by the usual normal-normal weight ``tau^2 / (tau^2 + v)``, with the
sampling variance ``v`` of the cell's difference and the spread ``tau^2`` of true effects between cells
estimated by moments from all cells of that level. A cell with few sends keeps close to its parent; a
level whose cells do not differ beyond noise collapses onto it. The estimate carries its posterior
standard deviation (:meth:`UpliftModel.predict_uplift_sd`), which a decision can use as a lower bound.
The purchase probability without an offer still comes from the LightGBM model of the control arm, which
has most of the data. A cell column named ``p_base`` is that model's prediction (the effect of an offer
on a customer who would buy anyway is not the same as on one who would not).

**Outcomes, arms, columns.** The outcome is a 0/1 event (a purchase: LightGBM classifiers) or any number
(spend, margin: LightGBM regressors, and per cell a difference in means with the two arms' own variances);
``outcome="auto"`` decides from the values. Any number of arms against one control arm, which is the
label the caller declares (``fit(..., control="holdout")``) or, by default, a missing treatment. Text and
category columns are one-hot encoded over the levels seen in fitting (at most :data:`MAX_LEVELS`; an
unseen level is all zeros, like a missing value); a column that cannot be used (a date, more levels than
that) stops the fit with its name, never dropped in silence. :meth:`UpliftModel.fit_frame` fits on one
DataFrame of an analyst's own randomised test.

Every booster is kept in LightGBM's text format (:meth:`UpliftModel.to_dict` holds the texts in a JSON
document), never pickled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.base import Estimator
from models.churn import LightGBMClassifier

__all__ = ["CONTROL", "FORMAT", "MAX_LEVELS", "P_BASE", "UpliftModel", "treatment_labels"]

CONTROL = "control"  # the arm without an offer
FORMAT = "kairos-uplift/1"
Learner = Literal["x", "t", "cells"]
LEARNERS = ("x", "t", "cells")
Outcome = Literal["auto", "binary", "continuous"]
OUTCOMES = ("auto", "binary", "continuous")
MAX_LEVELS = 50  # most levels of a text column one-hot encoded (more: an id or free text, refused)
MIN_ARM_ROWS = 30
P_BASE = "p_base"  # a cell column computed from the control model, not read from the features
MISSING_CELL = "NA"


def treatment_labels(treatment: Sequence[Any] | np.ndarray | pd.Series) -> np.ndarray:
    """Offer ids as strings, :data:`CONTROL` where there was no offer (None, NaN, NA or empty text)."""
    values = pd.Series(treatment, dtype=object)
    missing = values.isna() | (values.astype(str).str.strip() == "")
    return np.where(missing, CONTROL, values.astype(str)).astype(object)


class UpliftModel(Estimator):
    """Uplift in an outcome (a purchase within 30 days, or spend) for any number of offers against control.

    Args:
        learner: ``"x"`` (X-learner, default), ``"t"`` (T-learner) or ``"cells"`` (shrunk differences in
            rates per cell).
        n_estimators: most boosting rounds of every model (early stopping ends sooner).
        learning_rate: shrinkage per round.
        num_leaves: leaves per tree (small: effects are small and noisy).
        min_child_samples: fewest rows in a leaf.
        early_stopping_rounds: rounds without improvement on the internal validation rows.
        valid_share: share of each arm's rows held out for early stopping (random, by ``seed``).
        seed: random seed of the split and of LightGBM.
        n_jobs: LightGBM threads (1 by default: many small models, and OpenMP threads fighting other
            processes for two cores slow LightGBM down by an order of magnitude).
        cells: columns of ``X`` defining the nested cells of ``learner="cells"`` (numeric columns are cut
            into ``cell_bins`` quantile bins, others taken as categories; ``"p_base"`` is the control
            model's prediction). Ignored by the other learners.
        cell_bins: bins per numeric cell column.
        outcome: ``"binary"`` (0/1), ``"continuous"`` (spend, margin) or ``"auto"`` (binary when every value
            is 0 or 1).
    """

    def __init__(
        self,
        learner: Learner = "x",
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 80,
        early_stopping_rounds: int = 30,
        valid_share: float = 0.2,
        seed: int = 0,
        n_jobs: int = 1,
        cells: Sequence[str] = (),
        cell_bins: int = 3,
        outcome: Outcome = "auto",
    ) -> None:
        self.learner = learner
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.early_stopping_rounds = early_stopping_rounds
        self.valid_share = valid_share
        self.seed = seed
        self.n_jobs = n_jobs
        self.cells = cells
        self.cell_bins = cell_bins
        self.outcome = outcome

    # --- fitting -----------------------------------------------------------------------------------------

    def fit(
        self,
        X: pd.DataFrame,
        treatment: Sequence[Any] | np.ndarray | pd.Series,
        y: Sequence[float] | np.ndarray | pd.Series,
        control: str | None = None,
        base_rows: Sequence[float] | np.ndarray | pd.Series | None = None,
    ) -> UpliftModel:
        """Fit on a randomised experiment: features ``X``, the arm of each row, outcome ``y``.

        Args:
            X: one row per unit; numeric, boolean, text or category columns (text one-hot encoded).
            treatment: each row's arm. With ``control=None`` a missing value (None, NaN, empty) is the
                control arm; otherwise the arm labelled ``control`` is, and a missing arm is an error.
            y: the outcome: 0/1 or any finite number (see ``outcome``).
            control: the label of the control arm (None: missing treatment means control).
            base_rows: ``learner="cells"`` only: the control rows the model of the outcome without
                treatment (``predict_base``) is fitted on, as a mask or as non-negative weights (0 leaves
                a row out; default: every control row, equally). The offers job passes the control sends
                whose outcome window held no other offer, so that the baseline is the purchase
                probability without any offer, not with the logged policy's other offers around it,
                optionally weighted toward recent sends. The cell differences still use every row.

        Raises:
            ValueError: bad learner, shapes or labels; no control rows; an arm with too few rows or only
                one outcome value (the message names the arm); a column that cannot be encoded (named).
        """
        if self.learner not in LEARNERS:
            raise ValueError(f"learner must be one of {LEARNERS}, got {self.learner!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if self.learner == "cells":
            if not self.cells:
                raise ValueError("learner 'cells' needs at least one cell column (cells=...)")
            lacking = [c for c in self.cells if c != P_BASE and c not in X.columns]
            if lacking:
                raise ValueError(f"cell columns missing from X: {lacking}")
            if self.cell_bins < 2:
                raise ValueError(f"cell_bins must be at least 2, got {self.cell_bins}")
        if not 0.0 < self.valid_share < 0.5:
            raise ValueError(f"valid_share must be in (0, 0.5), got {self.valid_share}")
        n = len(X)
        arm = _control_labels(treatment, control)
        y_arr = pd.to_numeric(pd.Series(np.asarray(y, dtype=object)), errors="coerce").to_numpy(np.float64)
        if arm.shape != (n,) or y_arr.shape != (n,):
            raise ValueError(f"X has {n} rows but treatment has {arm.shape} and y {y_arr.shape}")
        if not np.isfinite(y_arr).all():
            raise ValueError(f"y has {int((~np.isfinite(y_arr)).sum())} missing or non-numeric values")
        binary = set(np.unique(y_arr).tolist()) <= {0.0, 1.0}
        if self.outcome == "binary" and not binary:
            raise ValueError("y must be 0/1 with outcome='binary' (use outcome='continuous' for spend or margin)")
        self.outcome_ = "binary" if (self.outcome == "binary" or (self.outcome == "auto" and binary)) else "continuous"
        self.control_label_ = CONTROL if control is None else str(control)
        arms = sorted(a for a in set(arm.tolist()) if a != CONTROL)
        if not arms:
            raise ValueError("treatment holds no offer: nothing to measure")
        for a in [CONTROL, *arms]:
            rows = arm == a
            name = self.control_label_ if a == CONTROL else a
            if rows.sum() < MIN_ARM_ROWS:
                raise ValueError(f"arm {name!r} has {int(rows.sum())} sends; at least {MIN_ARM_ROWS} are needed")
            if len(np.unique(y_arr[rows])) < 2:
                raise ValueError(f"arm {name!r}: every send has the same outcome; its effect cannot be learned")
        base = np.ones(n, dtype=bool)
        if base_rows is not None:
            if self.learner != "cells":
                raise ValueError("base_rows is for learner='cells' (the X- and T-learners impute with the base model)")
            weight = np.asarray(base_rows, dtype=np.float64)
            if weight.shape != (n,):
                raise ValueError(f"base_rows has shape {weight.shape}, X has {n} rows")
            if not (np.isfinite(weight).all() and (weight >= 0).all()):
                raise ValueError("base_rows must be a mask or finite non-negative weights")
            if self.outcome_ == "continuous" and not np.isin(weight, (0.0, 1.0)).all():
                raise ValueError("base_rows weights are for a 0/1 outcome; with spend pass a mask")
            base = weight > 0
            kept = base & (arm == CONTROL)
            if kept.sum() < MIN_ARM_ROWS or len(np.unique(y_arr[kept])) < 2:
                raise ValueError(
                    f"base_rows keeps {int(kept.sum())} control rows (with outcomes {sorted(set(y_arr[kept]))}): "
                    f"at least {MIN_ARM_ROWS} with both outcomes are needed"
                )
        self.base_rows_ = int((base & (arm == CONTROL)).sum())
        # weights of the base model's rows (None: the unweighted classifier, as before)
        base_weight = None if base_rows is None else np.asarray(base_rows, dtype=np.float64)
        self.columns_, self.categories_ = _encoding(X)
        self.feature_names_ = _encoded_names(self.columns_, self.categories_)
        numeric = self._encode(X)
        matrix = numeric.to_numpy(np.float32)
        valid = np.random.default_rng(self.seed).random(n) < self.valid_share

        self.arms_ = arms
        self.rows_ = {a: int((arm == a).sum()) for a in [CONTROL, *arms]}
        self.propensity_ = {a: self.rows_[a] / n for a in self.rows_}
        self.outcome_models_: dict[str, lgb.Booster] = {}
        for a in [CONTROL, *(arms if self.learner != "cells" else [])]:
            rows = (arm == a) & (base if a == CONTROL else True)
            if a == CONTROL and base_weight is not None and self.outcome_ == "binary":
                self.outcome_models_[a] = self._weighted_classifier(matrix, y_arr, rows, valid, base_weight)
            elif self.outcome_ == "binary":
                self.outcome_models_[a] = self._classifier(numeric, matrix, y_arr, rows, valid)
            else:
                self.outcome_models_[a] = self._regressor(matrix[rows], y_arr[rows], valid[rows])
        self.effect_models_: dict[str, dict[str, lgb.Booster]] = {}
        self.cell_edges_: dict[str, list[float]] = {}
        self.cell_tables_: dict[str, list[dict[str, list[float]]]] = {}
        if self.learner == "cells":
            self._fit_cells(X, matrix, arm, y_arr)
        if self.learner == "x":
            mu0 = self._predict(self.outcome_models_[CONTROL], matrix)
            is_control = arm == CONTROL
            for a in arms:
                treated = arm == a
                mu_a = self._predict(self.outcome_models_[a], matrix[is_control])
                self.effect_models_[a] = {
                    "treated": self._regressor(matrix[treated], y_arr[treated] - mu0[treated], valid[treated]),
                    "control": self._regressor(matrix[is_control], mu_a - y_arr[is_control], valid[is_control]),
                }
        return self

    def fit_frame(
        self,
        frame: pd.DataFrame,
        *,
        treatment: str,
        control: str,
        outcome: str,
        features: Sequence[str] | None = None,
    ) -> UpliftModel:
        """Fit on one DataFrame of a randomised test: the analyst's entry point.

        ``UpliftModel(learner="t").fit_frame(df, treatment="arm", control="control", outcome="spend",
        features=["region", "tenure"])``: every row is a unit, ``arm`` its randomised arm, ``control`` the
        label of the arm without treatment, ``spend`` the outcome (0/1 or any number). ``features`` default
        to every other column. Nothing is dropped: a missing arm or outcome, an unknown column or one that
        cannot be encoded is an error that names it.

        Raises:
            ValueError: as :meth:`fit`, or a named column is absent, or ``treatment`` / ``outcome`` hold
                missing values.
        """
        names = [treatment, outcome, *(features or [])]
        lacking = [c for c in names if c not in frame.columns]
        if lacking:
            raise ValueError(f"columns missing from the frame: {lacking} (it has {list(frame.columns)[:20]})")
        if treatment in (features or []) or outcome in (features or []):
            raise ValueError("the treatment and outcome columns cannot also be features")
        cols = list(features) if features is not None else [c for c in frame.columns if c not in (treatment, outcome)]
        if not cols:
            raise ValueError("no feature column: pass features=[...] or a frame with more columns")
        missing_arm = int(frame[treatment].isna().sum())
        if missing_arm:
            raise ValueError(f"{treatment!r} is missing on {missing_arm} rows: every row needs its arm")
        if control not in set(frame[treatment].astype(str)):
            raise ValueError(f"no row of {treatment!r} is the control arm {control!r}")
        return self.fit(frame[cols], frame[treatment], frame[outcome], control=control)

    def _cell_columns(self, X: pd.DataFrame, matrix: np.ndarray) -> dict[str, pd.Series]:
        out = {}
        for c in self.cells:
            if c == P_BASE:
                out[c] = pd.Series(self._predict(self.outcome_models_[CONTROL], matrix), index=X.index)
            else:
                out[c] = X[c]
        return out

    def _cell_codes(self, X: pd.DataFrame, matrix: np.ndarray) -> list[np.ndarray]:
        """Per level, each row's cell key (the codes of the first ``level + 1`` cell columns, joined)."""
        codes = []
        for c, values in self._cell_columns(X, matrix).items():
            if c in self.cell_edges_:
                v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
                code = np.searchsorted(np.asarray(self.cell_edges_[c]), v, side="left").astype(str).astype(object)
                code[np.isnan(v)] = MISSING_CELL
            else:
                code = values.astype(object).where(values.notna(), MISSING_CELL).astype(str).to_numpy(dtype=object)
            codes.append(code)
        keys, out = np.full(len(X), "", dtype=object), []
        for code in codes:
            keys = keys + "|" + code
            out.append(keys)
        return out

    def _fit_cells(self, X: pd.DataFrame, matrix: np.ndarray, arm: np.ndarray, y: np.ndarray) -> None:
        """Hierarchical empirical Bayes: each level's cell differences shrunk toward their parent cell."""
        for c, values in self._cell_columns(X, matrix).items():
            if c == P_BASE or pd.api.types.is_numeric_dtype(values):
                v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
                qs = np.nanquantile(v, np.linspace(0, 1, self.cell_bins + 1)[1:-1]) if np.isfinite(v).any() else []
                self.cell_edges_[c] = sorted({float(q) for q in qs})
        levels = self._cell_codes(X, matrix)
        control = arm == CONTROL
        for a in self.arms_:
            rows = (arm == a) | control
            treated = arm[rows] == a
            yy = y[rows]
            binary = self.outcome_ == "binary"
            top = _difference(treated, yy, np.zeros(int(rows.sum()), dtype=np.int64), 1, binary)
            est, var = {"": top[0][0]}, {"": top[1][0]}
            tables: list[dict[str, list[float]]] = [{"": [float(top[0][0]), float(top[1][0])]}]
            parent_keys = np.full(int(rows.sum()), "", dtype=object)
            for keys in levels:
                k = keys[rows]
                uniq, inverse = np.unique(k, return_inverse=True)
                first = np.zeros(len(uniq), dtype=np.int64)
                first[inverse[::-1]] = np.arange(len(k))[::-1]
                parents = parent_keys[first]
                d, v = _difference(treated, yy, inverse, len(uniq), binary)
                p_est = np.array([est[p] for p in parents])
                p_var = np.array([var[p] for p in parents])
                ok = np.isfinite(d) & np.isfinite(v)
                w = np.where(ok, 1.0 / np.where(ok, v, 1.0), 0.0)
                dev = np.where(ok, (d - p_est) ** 2 - v, 0.0)
                tau2 = max(0.0, float((w * dev).sum() / w.sum())) if w.sum() > 0 else 0.0
                b = np.where(ok, tau2 / (tau2 + np.where(ok, v, 1.0)), 0.0)
                post = np.where(ok, p_est + b * (np.nan_to_num(d) - p_est), p_est)
                post_var = np.where(ok, b * np.where(ok, v, 0.0), 0.0) + (1.0 - b) ** 2 * p_var
                est = dict(zip(uniq.tolist(), post.tolist(), strict=True))
                var = dict(zip(uniq.tolist(), post_var.tolist(), strict=True))
                tables.append({key: [est[key], var[key]] for key in est})
                parent_keys = k
            self.cell_tables_[a] = tables

    def _cells_predict(self, matrix: np.ndarray, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        levels = self._cell_codes(X, matrix)
        est = np.zeros((len(X), len(self.arms_)))
        var = np.zeros((len(X), len(self.arms_)))
        for j, a in enumerate(self.arms_):
            tables = self.cell_tables_[a]
            est[:, j], var[:, j] = tables[0][""]
            for keys, table in zip(levels, tables[1:], strict=True):  # deeper known cells overwrite
                frame = pd.DataFrame.from_dict(table, orient="index", columns=["est", "var"])
                hit = pd.Series(keys).map(frame["est"]).to_numpy(dtype=np.float64)
                known = np.isfinite(hit)
                est[known, j] = hit[known]
                var[known, j] = pd.Series(keys[known]).map(frame["var"]).to_numpy(dtype=np.float64)
        return est, var

    def _lgb_params(self, objective: str) -> dict[str, Any]:
        return {
            "objective": objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 10.0,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": self.n_jobs,
            "verbose": -1,
        }

    def _classifier(
        self, X: pd.DataFrame, matrix: np.ndarray, y: np.ndarray, rows: np.ndarray, valid: np.ndarray
    ) -> lgb.Booster:
        fit_rows, eval_rows = rows & ~valid, rows & valid
        if len(np.unique(y[eval_rows])) < 2 or len(np.unique(y[fit_rows])) < 2:  # tiny arm: no early stopping
            fit_rows, eval_rows = rows, np.zeros_like(rows)
        model = LightGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            early_stopping_rounds=self.early_stopping_rounds,
            seed=self.seed,
            n_jobs=self.n_jobs,
        )
        eval_set = (X[eval_rows], y[eval_rows].astype(int)) if eval_rows.any() else None
        model.fit(X[fit_rows], y[fit_rows].astype(int), eval_set=eval_set)
        return lgb.Booster(model_str=model.to_text())

    def _weighted_classifier(
        self, matrix: np.ndarray, y: np.ndarray, rows: np.ndarray, valid: np.ndarray, weight: np.ndarray
    ) -> lgb.Booster:
        """A LightGBM classifier of ``y`` on ``rows`` with row weights (early stopping on the weighted
        ``valid`` rows, when both outcomes occur there)."""
        fit_rows, eval_rows = rows & ~valid, rows & valid
        if len(np.unique(y[eval_rows])) < 2 or len(np.unique(y[fit_rows])) < 2:
            fit_rows, eval_rows = rows, np.zeros_like(rows)
        names = self.feature_names_
        train = lgb.Dataset(
            matrix[fit_rows], label=y[fit_rows], weight=weight[fit_rows], feature_name=names, free_raw_data=True
        )
        valid_sets = (
            [lgb.Dataset(matrix[eval_rows], label=y[eval_rows], weight=weight[eval_rows], reference=train)]
            if eval_rows.any()
            else []
        )
        callbacks: list[Callable[..., Any]] = (
            [lgb.early_stopping(self.early_stopping_rounds, verbose=False)] if valid_sets else []
        )
        booster = lgb.train(
            self._lgb_params("binary"),
            train,
            num_boost_round=self.n_estimators,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        best = int(booster.best_iteration or booster.current_iteration())
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))

    def _regressor(self, matrix: np.ndarray, target: np.ndarray, valid: np.ndarray) -> lgb.Booster:
        names = self.feature_names_
        train = lgb.Dataset(matrix[~valid], label=target[~valid], feature_name=names, free_raw_data=True)
        valid_sets = [lgb.Dataset(matrix[valid], label=target[valid], reference=train)] if valid.any() else []
        callbacks: list[Callable[..., Any]] = (
            [lgb.early_stopping(self.early_stopping_rounds, verbose=False)] if valid_sets else []
        )
        booster = lgb.train(
            self._lgb_params("regression"),
            train,
            num_boost_round=self.n_estimators,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        best = int(booster.best_iteration or booster.current_iteration())
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))

    @staticmethod
    def _predict(booster: lgb.Booster, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(matrix), dtype=np.float64)

    # --- prediction --------------------------------------------------------------------------------------

    def _encode(self, X: pd.DataFrame) -> pd.DataFrame:
        """The model's numeric matrix as a frame: numeric columns as they are, text columns one-hot."""
        lacking = [c for c in self.columns_ if c not in X.columns]
        lacking += [c for c in self.cells if self.learner == "cells" and c != P_BASE and c not in X.columns]
        if lacking:
            raise ValueError(f"features missing for the uplift model: {lacking[:10]}")
        parts: dict[str, np.ndarray] = {}
        for c in self.columns_:
            if c in self.categories_:
                text = X[c].astype(object).where(X[c].notna(), None).to_numpy(dtype=object)
                for i, level in enumerate(self.categories_[c]):
                    parts[f"{c}__{i}"] = np.array([v is not None and str(v) == level for v in text], dtype=np.float32)
            else:
                parts[c] = pd.to_numeric(X[c], errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)
        return pd.DataFrame(parts, index=X.index, columns=self.feature_names_)

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        return self._encode(X).to_numpy(np.float32)

    def predict_base(self, X: pd.DataFrame) -> np.ndarray:
        """Expected outcome without an offer (P(outcome) when binary) per row, shape ``(n,)``."""
        return self._predict(self.outcome_models_[CONTROL], self._matrix(X))

    def predict_uplift(self, X: pd.DataFrame) -> np.ndarray:
        """Uplift of each offer (columns in :attr:`arms_` order) over no offer, shape ``(n, n_offers)``."""
        matrix = self._matrix(X)
        if self.learner == "cells":
            cols = list(self._cells_predict(matrix, X)[0].T)
        elif self.learner == "t":
            mu0 = self._predict(self.outcome_models_[CONTROL], matrix)
            cols = [self._predict(self.outcome_models_[a], matrix) - mu0 for a in self.arms_]
        else:
            cols = []
            for a in self.arms_:
                g = self.rows_[a] / (self.rows_[a] + self.rows_[CONTROL])  # P(arm a | a or control)
                tau1 = self._predict(self.effect_models_[a]["treated"], matrix)
                tau0 = self._predict(self.effect_models_[a]["control"], matrix)
                cols.append(g * tau0 + (1.0 - g) * tau1)
        out = np.column_stack(cols)
        return np.clip(out, -1.0, 1.0) if self.outcome_ == "binary" else out

    def predict_uplift_sd(self, X: pd.DataFrame) -> np.ndarray | None:
        """Posterior standard deviation of :meth:`predict_uplift` (``learner="cells"``), else None."""
        if self.learner != "cells":
            return None
        return np.sqrt(np.maximum(self._cells_predict(self._matrix(X), X)[1], 0.0))

    def predict_outcome(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(base, with_offer)``: expected outcome (P(outcome) when binary) without an offer ``(n,)`` and with
        each offer ``(n, n_offers)``."""
        base = self.predict_base(X)
        with_offer = base[:, None] + self.predict_uplift(X)
        return base, (np.clip(with_offer, 0.0, 1.0) if self.outcome_ == "binary" else with_offer)

    # --- persistence (JSON holding LightGBM text) ---------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready document: parameters, arms, feature names, arm sizes and every booster's text."""
        return {
            "format": FORMAT,
            "params": {**self.get_params(), "cells": list(self.cells)},  # JSON has lists, not tuples
            "arms": list(self.arms_),
            "feature_names": list(self.feature_names_),
            "columns": list(self.columns_),
            "categories": {c: list(levels) for c, levels in self.categories_.items()},
            "outcome": self.outcome_,
            "control_label": self.control_label_,
            "rows": dict(self.rows_),
            "base_rows": self.base_rows_,  # control rows the base model was fitted on
            "outcome_models": {a: b.model_to_string() for a, b in self.outcome_models_.items()},
            "effect_models": {
                a: {side: b.model_to_string() for side, b in parts.items()} for a, parts in self.effect_models_.items()
            },
            "cell_edges": dict(self.cell_edges_),
            "cell_tables": dict(self.cell_tables_),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> UpliftModel:
        """Rebuild a fitted model from :meth:`to_dict` output.

        Raises:
            ValueError: not a Kairos uplift document, or a model is missing.
        """
        if doc.get("format") != FORMAT:
            raise ValueError(f"not a Kairos uplift model (format {doc.get('format')!r}, expected {FORMAT!r})")
        model = cls(**doc["params"])
        model.arms_ = list(doc["arms"])
        model.feature_names_ = list(doc["feature_names"])
        # documents written before text columns were encoded hold numeric columns only
        model.columns_ = list(doc.get("columns", model.feature_names_))
        model.categories_ = {str(c): [str(v) for v in levels] for c, levels in doc.get("categories", {}).items()}
        model.outcome_ = str(doc.get("outcome", "binary"))
        model.control_label_ = str(doc.get("control_label", CONTROL))
        if _encoded_names(model.columns_, model.categories_) != model.feature_names_:
            raise ValueError("the document's columns and categories do not give its feature names")
        model.rows_ = {str(k): int(v) for k, v in doc["rows"].items()}
        total = sum(model.rows_.values())
        model.base_rows_ = int(doc.get("base_rows", model.rows_.get(CONTROL, 0)))
        model.propensity_ = {a: r / total for a, r in model.rows_.items()}
        needed = [CONTROL, *(model.arms_ if model.learner != "cells" else [])]
        if set(doc["outcome_models"]) != set(needed):
            raise ValueError(f"outcome models {sorted(doc['outcome_models'])} do not match the arms {needed}")
        model.outcome_models_ = {a: lgb.Booster(model_str=doc["outcome_models"][a]) for a in needed}
        model.effect_models_ = {
            a: {side: lgb.Booster(model_str=text) for side, text in parts.items()}
            for a, parts in doc["effect_models"].items()
        }
        if model.learner == "x" and set(model.effect_models_) != set(model.arms_):
            raise ValueError("an X-learner document lacks effect models for some arms")
        model.cell_edges_ = {str(c): [float(e) for e in edges] for c, edges in doc.get("cell_edges", {}).items()}
        model.cell_tables_ = {
            str(a): [{str(k): [float(v[0]), float(v[1])] for k, v in level.items()} for level in levels]
            for a, levels in doc.get("cell_tables", {}).items()
        }
        if model.learner == "cells" and (
            set(model.cell_tables_) != set(model.arms_)
            or any(len(t) != len(model.cells) + 1 for t in model.cell_tables_.values())
        ):
            raise ValueError("a cells document lacks the cell tables of some arms or levels")
        return model


def _difference(
    treated: np.ndarray, y: np.ndarray, group: np.ndarray, n_groups: int, binary: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Per group: treated minus control mean outcome and its sampling variance (NaN without both arms).

    Binary: the variance uses the group's pooled rate (kept within [0.01, 0.99]) for both arms, so a small
    cell with no buyer on one side does not claim zero noise. Continuous: each arm's own sample variance
    (``s_t^2 / n_t + s_c^2 / n_c``).
    """
    n_t = np.bincount(group, weights=treated, minlength=n_groups)
    n_c = np.bincount(group, weights=~treated, minlength=n_groups)
    y_t = np.bincount(group, weights=y * treated, minlength=n_groups)
    y_c = np.bincount(group, weights=y * ~treated, minlength=n_groups)
    ok = (n_t >= 2) & (n_c >= 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(ok, y_t / n_t - y_c / n_c, np.nan)
        if binary:
            pooled = np.clip((y_t + y_c) / np.maximum(n_t + n_c, 1), 0.01, 0.99)
            v = np.where(ok, pooled * (1 - pooled) * (1 / n_t + 1 / n_c), np.nan)
        else:
            q_t = np.bincount(group, weights=y * y * treated, minlength=n_groups)
            q_c = np.bincount(group, weights=y * y * ~treated, minlength=n_groups)
            var_t = np.maximum(q_t - y_t**2 / n_t, 0.0) / np.maximum(n_t - 1, 1)
            var_c = np.maximum(q_c - y_c**2 / n_c, 0.0) / np.maximum(n_c - 1, 1)
            v = np.where(ok, var_t / n_t + var_c / n_c, np.nan)
    return d, v


def _control_labels(treatment: Sequence[Any] | np.ndarray | pd.Series, control: str | None) -> np.ndarray:
    """Arm labels with the control arm as :data:`CONTROL`: missing values (``control=None``) or the label."""
    if control is None:
        return treatment_labels(treatment)
    values = pd.Series(treatment, dtype=object)
    missing = values.isna() | (values.astype(str).str.strip() == "")
    if missing.any():
        raise ValueError(
            f"treatment is missing on {int(missing.sum())} rows; with control={control!r} every row needs its arm"
        )
    labels = values.astype(str).to_numpy(dtype=object)
    if control != CONTROL and (labels == CONTROL).any():
        raise ValueError(f"an arm is labelled {CONTROL!r} but the control arm is {control!r}: rename that arm")
    return np.where(labels == str(control), CONTROL, labels).astype(object)


def _encoding(X: pd.DataFrame) -> tuple[list[str], dict[str, list[str]]]:
    """The columns the model reads and, for each text or category column, its levels (one-hot).

    Raises:
        ValueError: a column of another kind (a date, a duration) or a text column with more than
            :data:`MAX_LEVELS` levels, named.
    """
    columns, categories = [], {}
    for c in X.columns:
        name, col = str(c), X[c]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            columns.append(name)
            continue
        if not (
            isinstance(col.dtype, pd.CategoricalDtype)
            or pd.api.types.is_string_dtype(col)
            or pd.api.types.is_object_dtype(col)
        ):
            raise ValueError(f"column {name!r} ({col.dtype}) cannot be used: give a number, a flag or a category")
        levels = sorted({str(v) for v in col.dropna().tolist()})
        if len(levels) > MAX_LEVELS:
            raise ValueError(
                f"column {name!r} has {len(levels)} distinct values (at most {MAX_LEVELS} are one-hot encoded): "
                "an id or free text? leave it out or group it"
            )
        columns.append(name)
        categories[name] = levels
    return columns, categories


def _encoded_names(columns: Sequence[str], categories: dict[str, list[str]]) -> list[str]:
    return [n for c in columns for n in ([f"{c}__{i}" for i in range(len(categories[c]))] if c in categories else [c])]
