"""What the LightGBM classifier and regressor share: parameters, fitting with early stopping, text format.

Follows the estimator contract (:mod:`models.base`): ``__init__`` only stores parameters, ``fit``
validates, learns ``booster_``, ``feature_names_`` and ``best_iteration_`` and returns ``self``. No I/O:
the model is handed over as LightGBM's own text format (:meth:`LightGBMModel.to_text` /
:meth:`LightGBMModel.from_text`), never pickled. The subclasses say which objective they fit and which
targets they accept: :class:`models.churn.LightGBMClassifier` and :class:`models.value.LightGBMRegressor`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Self, TypeAlias

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.base import Estimator

Target: TypeAlias = Sequence[float] | np.ndarray | pd.Series


class LightGBMModel(Estimator, ABC):
    """Gradient-boosted trees with early stopping on a later time window.

    Args:
        n_estimators: the most boosting rounds; early stopping usually ends sooner.
        learning_rate: shrinkage per round.
        num_leaves: leaves per tree.
        min_child_samples: the fewest rows a leaf may hold.
        early_stopping_rounds: rounds without improvement on the validation set before stopping.
        seed: random seed (bagging, feature sampling).
        n_jobs: threads (LightGBM's ``num_threads``).
        reg_lambda: L2 penalty on leaf values.
        subsample: share of rows drawn for each tree (1 = all; below 1, bagging every round).
        colsample_bytree: share of features drawn for each tree.
    """

    def __init__(
        self,
        n_estimators: int = 500,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        early_stopping_rounds: int = 50,
        seed: int = 0,
        n_jobs: int = 2,
        reg_lambda: float = 0.0,
        subsample: float = 1.0,
        colsample_bytree: float = 1.0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.n_jobs = n_jobs
        self.reg_lambda = reg_lambda
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree

    @abstractmethod
    def _objective(self) -> dict[str, Any]:
        """LightGBM's ``objective`` and ``metric`` (validated), then any setting of that objective."""

    @staticmethod
    @abstractmethod
    def _check_target(y: Target, n: int, name: str) -> np.ndarray:
        """``y`` as float32 labels, or a ValueError naming ``name`` when they do not fit the objective."""

    def _lgb_params(self) -> dict[str, Any]:
        objective = self._objective()
        for name in ("subsample", "colsample_bytree"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name}: expected a share in (0, 1], got {value!r}")
        if self.reg_lambda < 0:
            raise ValueError(f"reg_lambda: expected a penalty >= 0, got {self.reg_lambda!r}")
        return {
            "objective": objective.pop("objective"),
            "metric": objective.pop("metric"),
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "lambda_l2": self.reg_lambda,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1 if self.subsample < 1.0 else 0,
            "feature_fraction": self.colsample_bytree,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": self.n_jobs,
            "verbose": -1,
            **objective,
        }

    def fit(self, X: pd.DataFrame, y: Target, eval_set: tuple[pd.DataFrame, Target] | None = None) -> Self:
        """Fit on ``X, y``; stop early on ``eval_set`` (rows from a later time window) when given."""
        y_arr = self._check_target(y, len(X), "y")
        self.feature_names_ = [str(c) for c in X.columns]
        train = lgb.Dataset(X.to_numpy(np.float32), label=y_arr, feature_name=self.feature_names_, free_raw_data=True)
        valid_sets: list[lgb.Dataset] = []
        callbacks: list[Callable[..., Any]] = []
        if eval_set is not None:
            Xv, yv = eval_set
            if list(Xv.columns) != list(X.columns):
                raise ValueError("eval_set columns differ from the training columns")
            valid_sets.append(
                lgb.Dataset(Xv.to_numpy(np.float32), label=self._check_target(yv, len(Xv), "eval y"), reference=train)
            )
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        self.booster_ = lgb.train(
            self._lgb_params(), train, num_boost_round=self.n_estimators, valid_sets=valid_sets, callbacks=callbacks
        )
        self.best_iteration_ = int(self.booster_.best_iteration or self.booster_.current_iteration())
        return self

    def _predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The booster's output per row (a probability or a mean), shape (n,)."""
        matrix = X[self.feature_names_].to_numpy(np.float32) if isinstance(X, pd.DataFrame) else X
        return np.asarray(self.booster_.predict(matrix, num_iteration=self.best_iteration_), dtype=np.float64)

    def to_text(self) -> str:
        """LightGBM's native text format, trimmed to the best iteration (never pickle)."""
        return str(self.booster_.model_to_string(num_iteration=self.best_iteration_))

    @classmethod
    def from_text(cls, text: str) -> Self:
        """Rebuild a fitted model from :meth:`to_text` output (its parameters are the defaults)."""
        model = cls()
        model.booster_ = lgb.Booster(model_str=text)
        model.feature_names_ = list(model.booster_.feature_name())
        model.best_iteration_ = model.booster_.current_iteration()
        return model
