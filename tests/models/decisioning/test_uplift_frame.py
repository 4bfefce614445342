"""An analyst's own randomised test: spend as the outcome, three arms, a declared control label, text columns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.decisioning.uplift import MAX_LEVELS, UpliftModel

FAST = {"n_estimators": 60, "learning_rate": 0.1, "min_child_samples": 30, "seed": 0}


def spend_test(n: int, seed: int) -> pd.DataFrame:
    """Arms 'holdout' / 'mail' / 'sms'. Mail adds 20 to spend in the north only, SMS adds 5 everywhere."""
    rng = np.random.default_rng(seed)
    region = rng.choice(np.array(["north", "south"], dtype=object), size=n)
    arm = rng.choice(np.array(["holdout", "mail", "sms"], dtype=object), size=n, p=[0.5, 0.25, 0.25])
    tenure = rng.random(n)
    effect = np.where(arm == "mail", np.where(region == "north", 20.0, 0.0), 0.0) + np.where(arm == "sms", 5.0, 0.0)
    spend = 30.0 + 10.0 * tenure + effect + rng.normal(0, 8, n)
    return pd.DataFrame({"region": pd.Series(region, dtype="str"), "tenure": tenure, "arm": arm, "spend": spend})


@pytest.mark.parametrize("learner", ["t", "x", "cells"])
def test_spend_uplift_with_a_declared_control_and_a_text_column(learner: str) -> None:
    df = spend_test(6_000, 1)
    params = {"cells": ("region",)} if learner == "cells" else {}
    model = UpliftModel(learner=learner, **params, **FAST).fit_frame(  # type: ignore[arg-type]
        df, treatment="arm", control="holdout", outcome="spend", features=["region", "tenure"]
    )
    assert model.outcome_ == "continuous" and model.arms_ == ["mail", "sms"]
    assert model.control_label_ == "holdout"
    assert model.categories_ == {"region": ["north", "south"]}  # encoded, not dropped
    up = model.predict_uplift(df)
    north = (df["region"] == "north").to_numpy()
    # mail: +20 in the north, 0 in the south (the text column carries the whole effect); sms: +5 everywhere
    assert up[north, 0].mean() == pytest.approx(20.0, abs=3.0)
    assert up[~north, 0].mean() == pytest.approx(0.0, abs=3.0)
    assert up[:, 1].mean() == pytest.approx(5.0, abs=2.0)
    base, with_offer = model.predict_outcome(df)
    assert base.mean() == pytest.approx(35.0, abs=2.0)
    assert with_offer.max() > 1.0  # spend is not clipped to a probability
    back = UpliftModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.allclose(back.predict_uplift(df[:200]), up[:200])
    assert back.outcome_ == "continuous" and back.categories_ == model.categories_


def test_an_unseen_level_reads_like_a_missing_one() -> None:
    df = spend_test(3_000, 2)
    model = UpliftModel(learner="t", **FAST).fit_frame(df, treatment="arm", control="holdout", outcome="spend")
    unseen = df[:50].assign(region="west")
    missing = df[:50].assign(region=None)
    assert np.allclose(model.predict_uplift(unseen), model.predict_uplift(missing))


def test_columns_it_cannot_use_are_named_not_dropped() -> None:
    df = spend_test(2_000, 3)
    dated = df.assign(joined=pd.Timestamp("2026-01-01"))
    with pytest.raises(ValueError, match="'joined'"):
        UpliftModel(learner="t", **FAST).fit_frame(dated, treatment="arm", control="holdout", outcome="spend")
    ids = df.assign(email=[f"u{i}@x" for i in range(len(df))])
    with pytest.raises(ValueError, match=f"'email' has {len(df)} distinct values \\(at most {MAX_LEVELS}"):
        UpliftModel(learner="t", **FAST).fit_frame(ids, treatment="arm", control="holdout", outcome="spend")
    with pytest.raises(ValueError, match="missing from the frame: \\['tenur'\\]"):
        UpliftModel(**FAST).fit_frame(df, treatment="arm", control="holdout", outcome="spend", features=["tenur"])


def test_the_control_label_and_the_outcome_must_be_complete() -> None:
    df = spend_test(2_000, 4)
    with pytest.raises(ValueError, match="control arm 'none'"):
        UpliftModel(**FAST).fit_frame(df, treatment="arm", control="none", outcome="spend")
    gaps = df.copy()
    gaps.loc[:4, "arm"] = None
    with pytest.raises(ValueError, match="missing on 5 rows"):
        UpliftModel(**FAST).fit_frame(gaps, treatment="arm", control="holdout", outcome="spend")
    nan_spend = df.copy()
    nan_spend.loc[:2, "spend"] = np.nan
    with pytest.raises(ValueError, match="3 missing"):
        UpliftModel(**FAST).fit_frame(nan_spend, treatment="arm", control="holdout", outcome="spend")
    with pytest.raises(ValueError, match="outcome='continuous'"):
        UpliftModel(outcome="binary", **FAST).fit_frame(df, treatment="arm", control="holdout", outcome="spend")


def test_a_binary_outcome_with_a_declared_control_matches_missing_as_control() -> None:
    df = spend_test(3_000, 5)
    df["bought"] = (df["spend"] > 40).astype(int)
    declared = UpliftModel(learner="t", **FAST).fit_frame(
        df, treatment="arm", control="holdout", outcome="bought", features=["region", "tenure"]
    )
    implicit = UpliftModel(learner="t", **FAST).fit(
        df[["region", "tenure"]], df["arm"].where(df["arm"] != "holdout", None), df["bought"]
    )
    assert declared.outcome_ == "binary"
    assert np.allclose(declared.predict_uplift(df), implicit.predict_uplift(df))
    assert ((declared.predict_uplift(df) >= -1) & (declared.predict_uplift(df) <= 1)).all()
