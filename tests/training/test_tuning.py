"""The settings search: deterministic for a seed, within its budget, blind to the holdout; and a stacked
model scores the same from a frame, the online store's matrix and the export's matrix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bundles.propensity import PropensityMeta, PropensityModel
from features.datasets import CUTOFF, LABEL
from models.stacking import COLUMNS, BaselineInputs
from training.propensity import CutoffPlan, PropensityConfig, PropensityData, churn_task, fit
from training.tuning import SearchBudget, search

FEATURES = ("orders_lifetime", "recency_days", "tenure_days", "orders_365d", "monetary_365d", "noise")
T = datetime(2024, 6, 1, tzinfo=UTC)


def _rows(n: int, seed: int, cutoff: datetime) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.uniform(30, 700, n)
    orders = 1 + rng.poisson(tenure / 90)
    recency = np.minimum(rng.exponential(60, n), tenure)
    frame = pd.DataFrame(
        {
            "orders_lifetime": orders,
            "recency_days": recency,
            "tenure_days": tenure,
            "orders_365d": np.minimum(orders, 1 + rng.poisson(3, n)),
            "monetary_365d": rng.gamma(2, 50, n),
            "noise": rng.normal(size=n),
        }
    ).astype(np.float32)
    p = 1 / (1 + np.exp(-(recency / 60 - 1.5 + 0.3 * rng.normal(size=n))))
    frame[LABEL] = (rng.random(n) < p).astype(int)
    frame[CUTOFF] = pd.Timestamp(cutoff)
    return frame


@pytest.fixture(scope="module")
def sets() -> dict[str, pd.DataFrame]:
    inputs = BaselineInputs(90).fit(_rows(600, 9, T))
    out = {}
    for name, seed in (("train", 1), ("valid", 2), ("holdout", 3)):
        rows = _rows(600, seed, T)
        out[name] = pd.concat([rows, inputs.transform(rows)], axis=1)
    out["inputs"] = inputs  # type: ignore[assignment]
    return out


def _search(sets: dict[str, Any], trials: int, seconds: float = 300.0) -> Any:
    defaults = {"num_leaves": 15, "min_child_samples": 20, "n_estimators": 60}
    return search(sets["train"], sets["valid"], FEATURES, COLUMNS, defaults, SearchBudget(trials, seconds), seed=4)


def test_search_is_deterministic_and_starts_from_the_defaults(sets: dict[str, Any]) -> None:
    a, b = _search(sets, 4), _search(sets, 4)
    pd.testing.assert_frame_equal(a.trials.drop(columns="seconds"), b.trials.drop(columns="seconds"))
    assert a.params == b.params and a.baseline_inputs == b.baseline_inputs
    first = a.trials.iloc[0]
    assert first["num_leaves"] == 15 and first["min_child_samples"] == 20 and bool(first["baseline_inputs"])
    assert a.valid_roc_auc == a.trials["valid_roc_auc"].max() >= a.default_valid_roc_auc
    assert a.params["n_estimators"] == 60  # a setting not searched keeps its default


def test_search_respects_its_budget(sets: dict[str, Any]) -> None:
    assert len(_search(sets, 3).trials) == 3
    # the clock is read between trials: a budget already spent after the first stops there
    assert len(_search(sets, 50, seconds=1e-6).trials) == 1
    with pytest.raises(ValueError, match="0 trials"):
        _search(sets, 0)
    with pytest.raises(ValueError, match="budget"):
        SearchBudget(-1)


class _Untouchable(pd.DataFrame):
    """A holdout that fails the test when anything reads it."""

    def __getitem__(self, key: Any) -> Any:
        raise AssertionError(f"the search or the fit read the holdout ({key!r})")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("columns", "index"):
            return super().__getattr__(name)
        raise AssertionError(f"the search or the fit read the holdout (.{name})")


def test_search_and_fit_never_read_the_holdout(sets: dict[str, Any]) -> None:
    plan = CutoffPlan([T - timedelta(days=90)], T, T + timedelta(days=90))
    cfg = PropensityConfig(churn_task(), "unused", seed=4, search=SearchBudget(2, 300))
    blind = PropensityData(
        plan,
        {},
        sets["train"],
        sets["valid"],
        sets["valid"],
        _Untouchable(sets["holdout"]),
        FEATURES,
        sets["inputs"],
    )
    fitted = fit(cfg, blind, lambda step, frac: None)
    assert fitted.search is not None and len(fitted.search.trials) == 2
    # what the job fitted equals a fit that could have read the holdout
    seen = fit(
        cfg,
        PropensityData(
            plan, {}, sets["train"], sets["valid"], sets["valid"], sets["holdout"], FEATURES, sets["inputs"]
        ),
        lambda step, frac: None,
    )
    assert fitted.model.to_text() == seen.model.to_text()


def test_a_stacked_model_scores_the_same_on_every_path(sets: dict[str, Any]) -> None:
    """The job's frame, the export's matrix (the model's features in order) and the API's store matrix (any
    order, more columns) give the same probabilities; the derived columns are recomputed, never read."""
    # one trial: the defaults with the derived inputs, so the model reads them
    cfg = PropensityConfig(churn_task(), "unused", seed=4, baseline_inputs=True, search=SearchBudget(1))
    data = PropensityData(
        CutoffPlan([T], T, T),
        {},
        sets["train"],
        sets["valid"],
        sets["valid"],
        sets["holdout"],
        FEATURES,
        sets["inputs"],
    )
    fitted = fit(cfg, data, lambda step, frac: None)
    assert fitted.stacking is not None and fitted.model.feature_names_ == [*FEATURES, *COLUMNS]
    meta = PropensityMeta(
        features=FEATURES,
        manifest={},
        target="churn",
        calibrator=fitted.calibrator.to_dict(),
        stacking=fitted.stacking.to_dict(),
    )
    served = PropensityModel.from_parts(fitted.model, PropensityMeta.from_dict(meta.to_dict()))
    holdout = sets["holdout"]
    job = fitted.calibrator.transform(fitted.model.predict_proba(holdout[fitted.model.feature_names_]))
    export = served.calibrate(served.raw_matrix(holdout[list(FEATURES)].to_numpy(np.float32)))
    store_names = ["extra", *reversed(FEATURES)]
    store = holdout.assign(extra=1.0)[store_names].to_numpy(np.float32)
    api = served.predict(store, store_names)
    np.testing.assert_array_equal(export, job)
    np.testing.assert_array_equal(api, job)
    tampered = holdout.assign(**{c: 0.0 for c in COLUMNS})  # stale derived columns in a frame are not read
    np.testing.assert_array_equal(served.score(tampered), job)


def test_offered_inputs_are_kept_only_where_validation_says_they_help(sets: dict[str, Any]) -> None:
    data = PropensityData(
        CutoffPlan([T], T, T),
        {},
        sets["train"],
        sets["valid"],
        sets["valid"],
        sets["holdout"],
        FEATURES,
        sets["inputs"],
    )
    fitted = fit(PropensityConfig(churn_task(), "unused", seed=4), data, lambda step, frac: None)
    with_, without = (float(x.split()[0]) for x in fitted.inputs_choice.removeprefix("validation ROC-AUC ").split(", "))
    assert (fitted.stacking is not None) == (with_ > without)
    assert fitted.model.feature_names_ == [*FEATURES, *(COLUMNS if with_ > without else ())]
    plain = fit(PropensityConfig(churn_task(), "unused", seed=4, baseline_inputs=False), data, lambda s, f: None)
    assert plain.stacking is None and plain.inputs_choice == "not offered"
