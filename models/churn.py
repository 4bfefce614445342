"""A LightGBM binary classifier with early stopping on a later time window.

Follows the estimator contract (:mod:`models.base`): ``__init__`` only stores parameters, ``fit``
validates, learns ``booster_``, ``feature_names_`` and ``best_iteration_`` and returns ``self``. No I/O:
the model is handed over as LightGBM's own text format (:meth:`to_text` / :meth:`from_text`). What it
shares with the regressor (parameters, fitting, the text format) is in :mod:`models.lgbm`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from models.lgbm import LightGBMModel, Target


class LightGBMClassifier(LightGBMModel):
    """Gradient-boosted trees for a binary target (churn, purchase, ...).

    Args: see :class:`models.lgbm.LightGBMModel` (``n_estimators``, ``learning_rate``, ``num_leaves``,
    ``min_child_samples``, ``early_stopping_rounds``, ``seed``, ``n_jobs``, ``reg_lambda``, ``subsample``,
    ``colsample_bytree``).
    """

    def _objective(self) -> dict[str, Any]:
        return {"objective": "binary", "metric": "binary_logloss"}

    @staticmethod
    def _check_target(y: Target, n: int, name: str) -> np.ndarray:
        return _check_binary(y, n, name)

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """P(y = 1) per row, shape (n,)."""
        return self._predict(X)


def _check_binary(y: Sequence[int] | np.ndarray | pd.Series, n: int, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected {n} labels, got shape {arr.shape}")
    values = set(np.unique(arr).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"{name}: labels must be 0/1, got {sorted(values)[:5]}")
    if len(values) < 2:
        raise ValueError(f"{name}: only one class present; cannot fit a classifier")
    return arr.astype(np.float32)
