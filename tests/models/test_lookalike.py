"""Lookalikes: the seed is excluded, alike customers rank first, the cuts hold, reasons are words, and a
saved model answers as the fitted one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.lookalike import (
    Lookalike,
    LookalikeError,
    category_mix,
    family_of,
    precision_recall_at,
    rfm_nearest_scores,
)
from tests.models.estimators import PROFILES, SEED

ALIKE = {f"k{i:03d}" for i in range(20, 60)}  # the 40 alike customers outside the seed


@pytest.mark.parametrize("method", ["pu", "embedding"])
def test_alike_customers_rank_first_and_the_seed_is_never_returned(method: str) -> None:
    ranked = Lookalike(method=method).fit(PROFILES, SEED).rank(PROFILES)
    assert not set(ranked["customer_key"]) & set(SEED)
    assert len(ranked) == len(PROFILES) - len(SEED)
    precision, _ = precision_recall_at(ranked["customer_key"], ALIKE, 40)
    assert precision > 0.6, precision  # random would give 40 / 280 = 0.14
    assert ranked["score"].is_monotonic_decreasing and ranked["rank"].tolist() == list(range(1, len(ranked) + 1))


def test_size_and_threshold_cut_the_answer() -> None:
    model = Lookalike().fit(PROFILES, SEED)
    assert len(model.rank(PROFILES, size=25)) == 25
    cut = model.rank(PROFILES, threshold=0.5)
    assert (cut["score"] >= 0.5).all() and 0 < len(cut) < len(PROFILES) - len(SEED)
    with pytest.raises(LookalikeError, match="size"):
        model.rank(PROFILES, size=-1)


def test_reasons_name_the_families_that_make_a_customer_alike() -> None:
    top = Lookalike().fit(PROFILES, SEED).rank(PROFILES, size=5)
    assert all(r.startswith("like the seed in: ") for r in top["reasons"])
    assert any("city" in r for r in top["reasons"]) and any("f0" in r for r in top["reasons"])
    assert family_of("monetary_365d") == "spend band" and family_of("mix_pet") == "category mix"


def test_a_saved_model_ranks_as_the_fitted_one() -> None:
    model = Lookalike(method="embedding").fit(PROFILES, SEED)
    again = Lookalike.from_dict(json.loads(json.dumps(model.to_dict())))
    pd.testing.assert_frame_equal(model.rank(PROFILES, size=10), again.rank(PROFILES, size=10))


def test_bad_seeds_are_refused_with_the_reason() -> None:
    with pytest.raises(LookalikeError, match="not in the base"):
        Lookalike().fit(PROFILES, ["k000", "nobody"])
    with pytest.raises(LookalikeError, match="at least 2"):
        Lookalike().fit(PROFILES, ["k000"])
    with pytest.raises(LookalikeError, match="method"):
        Lookalike(method="magic").fit(PROFILES, SEED)


def test_category_mix_is_each_customers_share_of_lines() -> None:
    lines = pd.DataFrame({"customer_key": ["a", "a", "a", "b", None], "item_id": ["1", "1", "2", "2", "1"]})
    items = pd.DataFrame({"item_id": ["1", "2"], "category": ["Pet", "Home & Garden"]})
    mix = category_mix(lines, items).set_index("customer_key")
    assert mix.loc["a", "mix_pet"] == pytest.approx(2 / 3) and mix.loc["b", "mix_home_garden"] == 1.0


def test_rfm_nearest_puts_the_seeds_twins_first() -> None:
    frame = pd.DataFrame(
        {
            "customer_key": ["s1", "s2", "twin", "far"],
            "recency_days": [10.0, 12.0, 11.0, 400.0],
            "orders_365d": [5.0, 6.0, 5.0, 0.0],
            "monetary_365d": [100.0, 120.0, 110.0, 0.0],
        }
    )
    scores = rfm_nearest_scores(frame, ["s1", "s2"])
    assert scores[2] > scores[3]
    assert np.argmax(scores[2:]) == 0
