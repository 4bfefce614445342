"""One tiny fit of every estimator in :mod:`models`, for the estimator contract suite.

Each :class:`Case` builds a model with non-default parameters (so that a parameter that is not stored,
or not read back, shows), fits it on a few hundred synthetic rows built here, asks it for its answer
(predictions, curves or recommendations) and writes its artifact (text, JSON, frames or a folder).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from models.baselines import PropensityBaseline, ValueBaseline
from models.calibration import ProbabilityCalibrator
from models.churn import LightGBMClassifier
from models.clv import BGNBD, GammaGamma, ModifiedBGNBD
from models.decisioning.channel import CHANNELS, ChannelPreference
from models.decisioning.sendtime import SendTimeModel
from models.decisioning.uplift import UpliftModel
from models.lookalike import Lookalike
from models.recs.base import Query
from models.recs.baselines import GlobalPersonalTopFreq, GlobalTopFreq, PersonalTopFreq
from models.recs.blend import RepeatThenPersonal
from models.recs.buy_again import BuyAgain
from models.recs.cart_blend import CartBlend
from models.recs.cooccurrence import BoughtTogether
from models.recs.cooccurrence_count import CooccurrenceCount
from models.recs.ease import EASE
from models.recs.personal import ImplicitRecommender
from models.recs.popular import Popular
from models.recs.repeat_ranker import RepeatRanker
from models.recs.rules import CustomerHistory, ItemCatalogue
from models.recs.similar import SimilarItems
from models.recs.tifuknn import TIFUKNN
from models.recs.upcf import UPCF
from models.rfm import RFMLogistic, RFMScore
from models.stacking import BaselineInputs
from models.value import LightGBMRegressor
from tests.models.recs.data import ITEMS, QUERIES, interactions


@dataclass(frozen=True)
class Case:
    """How to build, fit, ask and save one estimator.

    Attributes:
        cls: the estimator class.
        params: fresh constructor arguments on every call (a nested estimator is a new object each time).
        fit: fits the model on this module's data and returns what ``fit`` returned.
        answer: the fitted model's answer on this module's data (compared exactly between two fits).
        save: writes the fitted model's artifact into a folder.
    """

    cls: type
    params: Callable[[], dict[str, Any]]
    fit: Callable[[Any], Any]
    answer: Callable[[Any], Any]
    save: Callable[[Any, Path], None]

    def make(self) -> Any:
        return self.cls(**self.params())


# --- data -------------------------------------------------------------------------------------------


def _tabular(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Four numeric features, a 0/1 outcome and a non-negative spend (zero for about half the rows)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=["f0", "f1", "f2", "f3"])
    score = 1.5 * X["f0"].to_numpy() - X["f1"].to_numpy() + 0.7 * rng.normal(size=n)
    y = (score > 0).astype(int)
    spend = np.where(rng.random(n) < expit(score), np.exp(1.0 + 0.5 * X["f0"].to_numpy() + 0.3 * rng.normal(size=n)), 0)
    return X, y, spend.astype(np.float64)


X_TRAIN, Y_TRAIN, SPEND_TRAIN = _tabular(300, 0)
X_VALID, Y_VALID, SPEND_VALID = _tabular(150, 1)
RAW_TRAIN = expit(0.5 * (1.5 * X_TRAIN["f0"] - X_TRAIN["f1"]).to_numpy())
RAW_VALID = expit(0.5 * (1.5 * X_VALID["f0"] - X_VALID["f1"]).to_numpy())


def _rfm_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature-store RFM columns (a tenth of the rows are leads, with no recency) and a 0/1 outcome."""
    rng = np.random.default_rng(seed)
    recency = rng.exponential(60.0, n)
    lead = rng.random(n) < 0.1
    orders = np.where(lead, 0, rng.poisson(3.0, n) + 1).astype(float)
    frame = pd.DataFrame(
        {
            "recency_days": np.where(lead, np.nan, recency),
            "orders_365d": orders,
            "monetary_365d": orders * rng.gamma(2.0, 20.0, n),
        }
    )
    active = expit(1.0 - recency / 40.0 + 0.2 * orders)
    return frame, (rng.random(n) < np.where(lead, 0.2, active)).astype(int)


RFM_X, RFM_Y = _rfm_frame(300, 2)
# the feature row BG/NBD reads besides R, F, M: lifetime orders and the customer's age in days
STACK_X = RFM_X.assign(
    orders_lifetime=RFM_X["orders_365d"] + np.arange(300) % 3,
    tenure_days=RFM_X["recency_days"].fillna(0.0) + 30.0 * (np.arange(300) % 12),
)


def _baseline_frame() -> pd.DataFrame:
    """RFM_X with the lifetime orders and tenure BG/NBD reads (leads: no order, a short tenure)."""
    rng = np.random.default_rng(4)
    lead = RFM_X["recency_days"].isna().to_numpy()
    lifetime = np.where(lead, 0.0, RFM_X["orders_365d"].to_numpy() + rng.poisson(1.0, len(RFM_X)))
    # first-to-last order span: none for a single order, otherwise spread (a constant span for everybody
    # leaves BG/NBD's drop-out unidentified: its fit runs to a boundary, and whether it stops in time depends
    # on the machine's floating point)
    span = np.where(lifetime > 1, rng.uniform(30.0, 200.0, len(RFM_X)), 0.0)
    tenure = np.where(lead, rng.uniform(1, 30, len(RFM_X)), RFM_X["recency_days"].fillna(0).to_numpy() + span)
    return RFM_X.assign(orders_lifetime=lifetime, tenure_days=tenure)


BASELINE_X = _baseline_frame()
# and what the value baselines read: the average order value and the last 90 days
VALUE_X = BASELINE_X.assign(
    avg_order_value=np.where(BASELINE_X["orders_lifetime"] > 0, BASELINE_X["monetary_365d"] / 3.0 + 5.0, np.nan),
    monetary_90d=BASELINE_X["monetary_365d"] / 4.0,
    orders_90d=np.floor(BASELINE_X["orders_365d"] / 4.0),
)


def _customers(n: int, seed: int) -> pd.DataFrame:
    """Frequency, recency, T (weeks) and mean repeat spend of customers drawn from BG/NBD and Gamma-Gamma."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(0.8, 1 / 4.0, n)
    drop = rng.beta(0.8, 3.0, n)
    big_t = rng.uniform(20.0, 40.0, n)
    nu = rng.gamma(4.0, 1 / 15.0, n)
    rows = []
    for i in range(n):
        t, x, last = 0.0, 0, 0.0
        while True:
            t += rng.exponential(1 / rate[i])
            if t > big_t[i]:
                break
            x, last = x + 1, t
            if rng.random() < drop[i]:
                break
        spend = float(rng.gamma(6.0 * x, 1 / nu[i]) / x) if x else 0.0
        rows.append((x, last, big_t[i], spend))
    return pd.DataFrame(rows, columns=["frequency", "recency", "T", "monetary_value"])


CUSTOMERS = _customers(400, 3)


def _rft() -> tuple[pd.Series, pd.Series, pd.Series]:
    return CUSTOMERS["frequency"], CUSTOMERS["recency"], CUSTOMERS["T"]


START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday
AS_OF = START + timedelta(days=42)


def _messages() -> pd.DataFrame:
    """Six weeks of sends to five customers on three channels; each opens at their own hour, some click."""
    rng = np.random.default_rng(4)
    rows = []
    habits = [("a", "email", 20, 0.6), ("a", "sms", 9, 0.9), ("b", "email", 7, 0.3), ("c", "push", 12, 0.5)]
    habits += [("d", "email", 18, 0.1), ("e", "sms", 21, 0.4)]  # (customer, channel, opening hour, open share)
    for c, (key, channel, hour, share) in enumerate(habits):
        for day in range(0, 40, 2 + c % 3):
            sent = START + timedelta(days=day, hours=8 + c)
            opened = sent.replace(hour=hour) + timedelta(days=int(hour < 8 + c), minutes=10)
            open_it = rng.random() < share
            rows.append((key, channel, sent, opened if open_it else None, opened if open_it and day % 3 == 0 else None))
    frame = pd.DataFrame(rows, columns=["customer_key", "channel", "sent_at", "opened_at", "clicked_at"])
    for col in ("sent_at", "opened_at", "clicked_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


MESSAGES = _messages()
TIMEZONES = {"a": "Europe/London", "b": "America/New_York", "c": "Europe/Paris", "d": "Not/AZone"}
SEGMENTS = {"a": "evening", "b": "morning", "d": "evening"}
KEYS = ["a", "b", "c", "d", "e", "nobody"]


def _experiment(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A randomised experiment: features, arm (None / 'A' / 'B') and a 0/1 outcome with planted uplift."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"x1": rng.random(n), "x2": rng.random(n)})
    arm = rng.choice(np.array([None, "A", "B"], dtype=object), size=n, p=[0.6, 0.2, 0.2])
    p = 0.2 + 0.2 * x["x2"].to_numpy() + np.where(arm == "A", 0.3 * (x["x1"].to_numpy() > 0.5), 0.0)
    p = p + np.where(arm == "B", 0.1, 0.0)
    return x, arm, (rng.random(n) < p).astype(int)


UPLIFT_X, UPLIFT_ARM, UPLIFT_Y = _experiment(900, 5)
CATALOGUE = ItemCatalogue.from_items(ITEMS)


# --- how to fit, ask and save -------------------------------------------------------------------------


def _write_text(text: str, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def _save_text(model: Any, folder: Path) -> None:
    _write_text(model.to_text(), folder, "model.txt")


def _save_dict(model: Any, folder: Path) -> None:
    _write_text(json.dumps(model.to_dict()), folder, "model.json")


def _save_frames(model: Any, folder: Path) -> None:
    frames, meta = model.to_frames()
    _write_text(json.dumps(meta), folder, "meta.json")
    for name, frame in frames.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)


def _save_folder(model: Any, folder: Path) -> None:
    model.save(folder)


def _fit_recs(model: Any) -> Any:
    return model.fit(interactions(), ITEMS)


def _ask_recs(model: Any) -> Any:
    return model.recommend_batch([*QUERIES, Query(customer_key="c5")], 4)


def _implicit_params() -> dict[str, Any]:
    return {
        "factors": 4,
        "iterations": 3,
        "regularization": 0.1,
        "alpha": 5.0,
        "algorithm": "als",
        "learning_rate": 0.02,
        "half_life_days": 60.0,
        "view_weight": 0.2,
        "cart_weight": 0.4,
        "filter_bought": False,
        "num_threads": 1,
        "random_state": 3,
    }


def _lgbm_params(**more: Any) -> Callable[[], dict[str, Any]]:
    common = {
        "n_estimators": 30,
        "learning_rate": 0.1,
        "num_leaves": 5,
        "min_child_samples": 10,
        "early_stopping_rounds": 5,
        "seed": 7,
        "n_jobs": 1,
    }
    return lambda: {**common, **more}


def _uplift_params(**more: Any) -> Callable[[], dict[str, Any]]:
    common = {
        "n_estimators": 20,
        "learning_rate": 0.1,
        "num_leaves": 4,
        "min_child_samples": 20,
        "early_stopping_rounds": 5,
        "valid_share": 0.25,
        "seed": 3,
        "n_jobs": 1,
    }
    return lambda: {**common, **more}


def _beta_geo_answer(model: Any) -> tuple[np.ndarray, ...]:
    x, t_x, big_t = _rft()
    return model.p_alive(x, t_x, big_t), model.expected_purchases(10.0, x, t_x, big_t)


def _profiles() -> tuple[pd.DataFrame, list[str]]:
    """A base of 300 customers with two numeric and one text column; the first 20 of the 60 "alike"
    customers (high f0, city A) are the seed."""
    rng = np.random.default_rng(5)
    n = 300
    alike = np.arange(n) < 60
    frame = pd.DataFrame(
        {
            "customer_key": [f"k{i:03d}" for i in range(n)],
            "f0": np.where(alike, 2.0, 0.0) + rng.normal(size=n),
            "f1": rng.normal(size=n),
            "city": np.where(alike & (rng.random(n) < 0.8), "A", rng.choice(["B", "C"], n)),
        }
    )
    return frame, [f"k{i:03d}" for i in range(20)]


PROFILES, SEED = _profiles()


CASES: dict[str, Case] = {
    "lookalike_pu": Case(
        Lookalike,
        lambda: {"method": "pu", "n_bags": 4, "unlabelled_ratio": 2.0, "l2": 0.5, "random_state": 3},
        lambda m: m.fit(PROFILES, SEED),
        lambda m: m.rank(PROFILES, size=30),
        _save_dict,
    ),
    "lookalike_embedding": Case(
        Lookalike,
        lambda: {"method": "embedding", "n_components": 3, "n_neighbours": 4, "max_levels": 2},
        lambda m: m.fit(PROFILES, SEED),
        lambda m: m.rank(PROFILES, threshold=0.5),
        _save_dict,
    ),
    "lgbm_classifier": Case(
        LightGBMClassifier,
        _lgbm_params(reg_lambda=1.0, subsample=0.8, colsample_bytree=0.75),
        lambda m: m.fit(X_TRAIN, Y_TRAIN, eval_set=(X_VALID, Y_VALID)),
        lambda m: m.predict_proba(X_VALID),
        _save_text,
    ),
    "lgbm_regressor_tweedie": Case(
        LightGBMRegressor,
        _lgbm_params(objective="tweedie", tweedie_variance_power=1.3),
        lambda m: m.fit(X_TRAIN, SPEND_TRAIN, eval_set=(X_VALID, SPEND_VALID)),
        lambda m: m.predict(X_VALID),
        _save_text,
    ),
    "lgbm_regressor_poisson_bagged": Case(
        LightGBMRegressor,
        _lgbm_params(objective="poisson", reg_lambda=1.0, subsample=0.8, colsample_bytree=0.75),
        lambda m: m.fit(X_TRAIN, SPEND_TRAIN, eval_set=(X_VALID, SPEND_VALID)),
        lambda m: m.predict(X_VALID),
        _save_text,
    ),
    "calibrator": Case(
        ProbabilityCalibrator,
        lambda: {"method": "auto", "folds": 3, "seed": 5, "eps": 1e-3},
        lambda m: m.fit(RAW_TRAIN, Y_TRAIN),
        lambda m: m.transform(RAW_VALID),
        _save_dict,
    ),
    "rfm_score": Case(
        RFMScore,
        lambda: {"direction": "churn"},
        lambda m: m.fit(RFM_X),
        lambda m: m.decision_function(RFM_X),
        _save_dict,
    ),
    "baseline_inputs": Case(
        BaselineInputs,
        lambda: {"horizon_days": 45},
        lambda m: m.fit(STACK_X),
        lambda m: m.transform(STACK_X),
        _save_dict,
    ),
    "rfm_logistic": Case(
        RFMLogistic,
        lambda: {"C": 0.5, "max_iter": 300},
        lambda m: m.fit(RFM_X, RFM_Y),
        lambda m: m.predict_proba(RFM_X),
        _save_dict,
    ),
    "baseline_bgnbd": Case(
        PropensityBaseline,
        lambda: {"kind": "bgnbd", "direction": "churn", "horizon_days": 60},
        lambda m: m.fit(BASELINE_X),
        lambda m: (m.predict_proba(BASELINE_X), m.contributions(BASELINE_X).to_numpy()),
        _save_dict,
    ),
    "value_baseline_bgnbd_gamma_gamma": Case(
        ValueBaseline,
        lambda: {"kind": "bgnbd_gamma_gamma", "horizon_days": 60},
        lambda m: m.fit(VALUE_X),
        lambda m: m.predict_both(VALUE_X),
        _save_dict,
    ),
    "value_baseline_last_period": Case(
        ValueBaseline,
        lambda: {"kind": "last_period", "horizon_days": 120},
        lambda m: m.fit(VALUE_X),
        lambda m: m.predict_both(VALUE_X[["monetary_90d", "orders_90d"]].to_numpy()),
        _save_dict,
    ),
    "baseline_rfm_score": Case(
        PropensityBaseline,
        lambda: {"kind": "rfm_score", "direction": "churn"},
        lambda m: m.fit(RFM_X),
        lambda m: m.predict_proba(RFM_X[["recency_days", "orders_365d", "monetary_365d"]].to_numpy()),
        _save_dict,
    ),
    "bgnbd": Case(
        BGNBD,
        lambda: {"penalizer_coef": 0.001, "tol": 1e-8, "max_iter": 500},
        lambda m: m.fit(*_rft()),
        _beta_geo_answer,
        _save_dict,
    ),
    "mbgnbd": Case(
        ModifiedBGNBD,
        lambda: {"penalizer_coef": 0.001, "tol": 1e-8, "max_iter": 500},
        lambda m: m.fit(*_rft()),
        _beta_geo_answer,
        _save_dict,
    ),
    "gamma_gamma": Case(
        GammaGamma,
        lambda: {"penalizer_coef": 0.001, "tol": 1e-8, "max_iter": 500},
        lambda m: m.fit(CUSTOMERS["frequency"], CUSTOMERS["monetary_value"]),
        lambda m: m.conditional_expected_value(CUSTOMERS["frequency"], CUSTOMERS["monetary_value"]),
        _save_dict,
    ),
    "channel": Case(
        ChannelPreference,
        lambda: {"min_sends": 3, "prior_strength": 4.0, "rank_by": "click"},
        lambda m: m.fit(MESSAGES),
        lambda m: m.table({key: CHANNELS for key in KEYS}),
        _save_frames,
    ),
    "sendtime": Case(
        SendTimeModel,
        lambda: {
            "engage_hours": 12.0,
            "open_delay_hours": 2.0,
            "activity_weight": 0.5,
            "read_decay_hours": 4.0,
            "day_specificity": 0.3,
            "hour_spread": 0.1,
            "habit_strength": 6.0,
            "level_strength": 8.0,
            "send_strength": 12.0,
            "min_events": 2,
            "default_timezone": "Europe/London",
        },
        lambda m: m.fit(MESSAGES, None, TIMEZONES, SEGMENTS, as_of=AS_OF),
        lambda m: m.best_slots_batch(KEYS, "email", AS_OF + timedelta(hours=5)),
        _save_frames,
    ),
    "uplift_x": Case(
        UpliftModel,
        _uplift_params(learner="x"),
        lambda m: m.fit(UPLIFT_X, UPLIFT_ARM, UPLIFT_Y),
        lambda m: m.predict_outcome(UPLIFT_X),
        _save_dict,
    ),
    "uplift_cells": Case(
        UpliftModel,
        _uplift_params(learner="cells", cells=["x1", "p_base"], cell_bins=2),
        lambda m: m.fit(UPLIFT_X, UPLIFT_ARM, UPLIFT_Y),
        lambda m: (m.predict_uplift(UPLIFT_X), m.predict_uplift_sd(UPLIFT_X)),
        _save_dict,
    ),
    "bought_together": Case(
        BoughtTogether,
        lambda: {
            "measure": "lift",
            "min_support": 1,
            "shrinkage": 2.0,
            "half_life_days": 30.0,
            "n_neighbours": 5,
            "use_sessions": True,
            "session_weight": 0.3,
        },
        _fit_recs,
        _ask_recs,
        _save_folder,
    ),
    "popular": Case(
        Popular,
        lambda: {"half_life_days": 20.0, "trending": False, "recent_days": 5.0, "long_days": 40.0, "smoothing": 2.0},
        _fit_recs,
        _ask_recs,
        _save_folder,
    ),
    "trending": Case(
        Popular,
        lambda: {"half_life_days": None, "trending": True, "recent_days": 14.0, "long_days": 60.0, "smoothing": 2.0},
        _fit_recs,
        _ask_recs,
        _save_folder,
    ),
    "buy_again": Case(
        BuyAgain,
        lambda: {"min_purchases": 2, "min_ratio": 0.5, "max_score": 2.0},
        _fit_recs,
        _ask_recs,
        _save_folder,
    ),
    "implicit": Case(ImplicitRecommender, _implicit_params, _fit_recs, _ask_recs, _save_folder),
    "similar": Case(
        SimilarItems,
        lambda: {"base": ImplicitRecommender(**_implicit_params()), "category_weight": 0.5},
        _fit_recs,
        _ask_recs,
        _save_folder,
    ),
    "repeat_personal": Case(
        RepeatThenPersonal,
        lambda: {"own_slots": 2, "half_life_days": 100.0, "personal": ImplicitRecommender(**_implicit_params())},
        _fit_recs,
        _ask_recs,
        _save_folder,
    ),
    "g_topfreq": Case(GlobalTopFreq, dict, _fit_recs, _ask_recs, _save_folder),
    "p_topfreq": Case(PersonalTopFreq, dict, _fit_recs, _ask_recs, _save_folder),
    "gp_topfreq": Case(GlobalPersonalTopFreq, dict, _fit_recs, _ask_recs, _save_folder),
    "tifuknn": Case(
        TIFUKNN,
        lambda: {"group_size": 2, "within_decay": 0.8, "group_decay": 0.6, "n_neighbours": 2, "alpha": 0.5},
        _fit_recs,
        _ask_recs,
        _save_folder,
    ),
    "upcf": Case(
        UPCF,
        lambda: {"recency": 2, "alpha": 0.4, "q": 2.0, "n_neighbours": 3, "self_weight": 0.8},
        _fit_recs,
        _ask_recs,
        _save_folder,
    ),
    "cart_blend": Case(
        CartBlend,
        lambda: {
            "item_models": ("count", "ease"),
            "weight_step": 0.5,
            "validation_share": 0.5,
            "max_validation": 10,
            "n_candidates": 5,
            "k_select": 3,
            "group_size": 2,
            "within_decay": 0.8,
            "group_decay": 0.6,
            "seed": 2,
        },
        _fit_recs,
        _ask_recs,
        _save_folder,
    ),
    "repeat_ranker": Case(
        RepeatRanker,
        lambda: {
            "max_own": 5,
            "neighbour_candidates": 3,
            "popular_candidates": 2,
            "explore_slots_grid": (0, 2),
            "group_size": 2,
            "n_neighbours": 3,
            "validation_share": 0.3,
            "negative_share": 0.5,
            "n_estimators": 20,
            "min_child_samples": 2,
            "seed": 3,
            "n_jobs": 1,
        },
        _fit_recs,
        _ask_recs,
        _save_folder,
    ),
    "cooccurrence_count": Case(CooccurrenceCount, lambda: {"n_neighbours": 3}, _fit_recs, _ask_recs, _save_folder),
    "ease": Case(EASE, lambda: {"l2": 2.0, "max_items": 7, "rows": "basket"}, _fit_recs, _ask_recs, _save_folder),
    "customer_history": Case(
        CustomerHistory,
        dict,
        lambda m: m.fit(interactions(), CATALOGUE),
        lambda m: [(m.bought(k), m.price_band(k)) for k in ("c1", "c2", "c5", None, "nobody")],
        lambda m, folder: m.save(folder, CATALOGUE),
    ),
}
