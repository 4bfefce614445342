"""A budgeted Optuna search over the few LightGBM settings that matter, on the validation window only.

The search sees the training rows and the validation rows, nothing else: each trial fits LightGBM on the
training rows with early stopping on the validation rows and is scored by the validation ROC-AUC (the
number of rounds is early stopping's). The defaults (within the ranges searched) are the first trial,
so the search can only keep them or find something better on validation. Whether the model reads the baselines' outputs
(:mod:`models.stacking`) is one more choice of the search.

Deterministic for a seed: a seeded TPE sampler, trials one after the other, LightGBM deterministic. The
budget is a number of trials and a number of seconds; the clock is read between trials (Optuna's
``timeout``), so the search ends after the trial during which the seconds ran out (the first trial,
the defaults, always runs).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.datasets import LABEL
from models.churn import LightGBMClassifier
from models.intervals import ROC_AUC

# The settings searched, and their ranges: leaves, rows per leaf, L2 penalty, step size (the rounds
# follow by early stopping), the share of features per tree.
SPACE: dict[str, tuple[float, float]] = {
    "num_leaves": (7, 63),
    "min_child_samples": (20, 400),
    "reg_lambda": (0.1, 100.0),
    "learning_rate": (0.02, 0.15),
    "colsample_bytree": (0.3, 1.0),
}


@dataclass(frozen=True)
class SearchBudget:
    """How much search a run may spend: ``trials`` (0: the defaults, no search) and ``seconds``."""

    trials: int = 0
    seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.trials < 0 or self.seconds <= 0:
            raise ValueError(f"search budget: trials >= 0 and seconds > 0, got {self.trials} and {self.seconds}")


@dataclass(frozen=True)
class SearchResult:
    """What the search chose and every trial it ran (validation ROC-AUC each)."""

    params: dict[str, Any]  # the LightGBM settings chosen (the defaults' keys, searched values where searched)
    baseline_inputs: bool  # whether the model reads the baselines' outputs
    valid_roc_auc: float  # the chosen trial's
    default_valid_roc_auc: float  # the first trial's: the defaults
    trials: pd.DataFrame  # number, value, seconds, and one column per setting
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The MLflow parameters of the search."""
        return {
            "search_trials": len(self.trials),
            "search_seconds": round(self.seconds, 1),
            "search_valid_roc_auc": round(self.valid_roc_auc, 6),
            "search_default_valid_roc_auc": round(self.default_valid_roc_auc, 6),
            "baseline_inputs": self.baseline_inputs,
        }


def search(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: Sequence[str],
    derived: Sequence[str],
    defaults: dict[str, Any],
    budget: SearchBudget,
    *,
    use_derived: bool = True,
    seed: int = 0,
) -> SearchResult:
    """Choose LightGBM settings (and whether to read ``derived``) by validation ROC-AUC within ``budget``.

    Args:
        train, valid: the training and validation rows (``features``, ``derived`` and the label).
        features: the columns every trial reads; ``derived``: the baselines' outputs, read or not.
        defaults: the settings of the first trial (and the values of any setting not searched).
        use_derived: the first trial's choice of ``derived``.
        budget: at least one trial is run when ``budget.trials`` > 0.

    Raises:
        ValueError: ``budget.trials`` is 0 (nothing to search).
    """
    import optuna

    if budget.trials == 0:
        raise ValueError("search: a budget of 0 trials means the defaults; do not call the search")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    y, yv = train[LABEL].to_numpy(), valid[LABEL].to_numpy()
    offer = list(derived) if derived else []

    def objective(trial: optuna.Trial) -> float:
        params = dict(defaults)
        params["num_leaves"] = trial.suggest_int("num_leaves", *map(int, SPACE["num_leaves"]), log=True)
        params["min_child_samples"] = trial.suggest_int(
            "min_child_samples", *map(int, SPACE["min_child_samples"]), log=True
        )
        params["reg_lambda"] = trial.suggest_float("reg_lambda", *SPACE["reg_lambda"], log=True)
        params["learning_rate"] = trial.suggest_float("learning_rate", *SPACE["learning_rate"], log=True)
        params["colsample_bytree"] = trial.suggest_float("colsample_bytree", *SPACE["colsample_bytree"])
        stacked = bool(trial.suggest_categorical("baseline_inputs", [True, False])) if offer else False
        cols = [*features, *offer] if stacked else list(features)
        started = time.perf_counter()
        model = LightGBMClassifier(seed=seed, **params).fit(train[cols], y, eval_set=(valid[cols], yv))
        trial.set_user_attr("seconds", time.perf_counter() - started)
        trial.set_user_attr("rounds", model.best_iteration_)
        return float(ROC_AUC(yv, model.predict_proba(valid[cols])))

    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    # the defaults as the first trial (clipped into the searched ranges: LightGBM's own L2 default, 0, is not)
    given = {k: defaults.get(k, LightGBMClassifier().get_params()[k]) for k in SPACE}
    first: dict[str, Any] = {k: type(v)(min(max(v, SPACE[k][0]), SPACE[k][1])) for k, v in given.items()}
    if offer:
        first["baseline_inputs"] = use_derived
    study.enqueue_trial(first)
    started = time.perf_counter()
    study.optimize(objective, n_trials=1)  # the defaults, whatever the clock says
    left = budget.seconds - (time.perf_counter() - started)
    if budget.trials > 1 and left > 0:
        study.optimize(objective, n_trials=budget.trials - 1, timeout=left)
    seconds = time.perf_counter() - started
    done = [t for t in study.trials if t.value is not None]
    best = max(done, key=lambda t: (t.value, -t.number))  # the earliest of equal trials: the defaults first
    chosen = dict(defaults)
    chosen.update({k: v for k, v in best.params.items() if k != "baseline_inputs"})
    rows = [
        {
            "number": t.number,
            "valid_roc_auc": t.value,
            "seconds": t.user_attrs.get("seconds", np.nan),
            "rounds": t.user_attrs.get("rounds", np.nan),
            **t.params,
        }
        for t in done
    ]
    return SearchResult(
        params=chosen,
        baseline_inputs=bool(best.params.get("baseline_inputs", False)),
        valid_roc_auc=float(best.value or 0.0),
        default_valid_roc_auc=float(done[0].value or 0.0),
        trials=pd.DataFrame(rows),
        seconds=seconds,
    )
