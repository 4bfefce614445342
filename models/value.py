"""Customer value: expected spend and number of orders over a horizon, by gradient-boosted trees.

Spend is mostly zero with a long right tail, so the default objective is Tweedie (a compound
Poisson-Gamma: a point mass at zero plus a skewed positive part); order counts use Poisson. Both
predict the *mean*, which is what a CLV sum over customers needs. What the regressor shares with the
classifier (parameters, fitting with early stopping, the text format) is in :mod:`models.lgbm`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.lgbm import LightGBMModel, Target

OBJECTIVES = ("tweedie", "poisson", "regression")


class LightGBMRegressor(LightGBMModel):
    """Non-negative targets (spend, orders) with early stopping on a later time window.

    Args:
        objective: ``tweedie`` (spend), ``poisson`` (counts) or ``regression`` (squared error).
        tweedie_variance_power: between 1 (Poisson) and 2 (Gamma).
        Other arguments: see :class:`models.lgbm.LightGBMModel`.
    """

    def __init__(
        self,
        objective: str = "tweedie",
        tweedie_variance_power: float = 1.5,
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
        super().__init__(
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_child_samples=min_child_samples,
            early_stopping_rounds=early_stopping_rounds,
            seed=seed,
            n_jobs=n_jobs,
            reg_lambda=reg_lambda,
            subsample=subsample,
            colsample_bytree=colsample_bytree,
        )
        self.objective = objective
        self.tweedie_variance_power = tweedie_variance_power

    def _objective(self) -> dict[str, Any]:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, not {self.objective!r}")
        params: dict[str, Any] = {
            "objective": self.objective,
            "metric": "l2" if self.objective == "regression" else self.objective,
        }
        if self.objective == "tweedie":
            params["tweedie_variance_power"] = self.tweedie_variance_power
        return params

    @staticmethod
    def _check_target(y: Target, n: int, name: str) -> np.ndarray:
        arr = np.asarray(y, dtype=np.float64)
        if arr.shape != (n,):
            raise ValueError(f"{name}: expected {n} targets, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: targets must be finite numbers")
        if (arr < 0).any():
            raise ValueError(f"{name}: targets must be non-negative (spend, orders)")
        return arr.astype(np.float32)

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The expected value per row, shape (n,)."""
        return self._predict(X)
