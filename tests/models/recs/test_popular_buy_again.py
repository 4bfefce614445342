"""Popular (decayed, per category, trending) and BuyAgain (median intervals, due items) on literal data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

from models.recs.base import IX, InteractionKind, Query, RecSource
from models.recs.buy_again import BuyAgain
from models.recs.popular import Popular

END = pd.Timestamp("2025-06-30 12:00", tz="UTC")


def buys(rows: Sequence[tuple[str, str, str, float]]) -> pd.DataFrame:
    """(customer, item, order, days before END) -> an interactions frame of purchases."""
    return pd.DataFrame(
        {
            IX.CUSTOMER: [r[0] for r in rows],
            IX.ITEM: [r[1] for r in rows],
            IX.BASKET: [r[2] for r in rows],
            IX.TS: [END - pd.Timedelta(days=r[3]) for r in rows],
            IX.QUANTITY: 1.0,
            IX.EVENT: InteractionKind.PURCHASE.value,
        }
    )


ITEMS = pd.DataFrame({IX.ITEM: ["P", "Q", "R"], IX.CATEGORY: ["Toys", "Books", "Toys"]})
# P: three orders 60 days old (one has P twice); Q: two orders today; R: one order 30 days old.
POP = buys(
    [
        ("c1", "P", "o1", 60),
        ("c1", "P", "o1", 60),
        ("c2", "P", "o2", 60),
        ("c3", "P", "o3", 60),
        ("c4", "Q", "o4", 0),
        ("c5", "Q", "o5", 0),
        ("c6", "R", "o6", 30),
    ]
)


def test_popular_decays_with_age_and_counts_an_item_once_per_order() -> None:
    model = Popular(half_life_days=30.0).fit(POP, ITEMS)
    recs = model.recommend(Query(), 10)
    assert [(r.item_id, r.score) for r in recs] == [("Q", pytest.approx(2.0)), ("P", 0.75), ("R", 0.5)]
    assert {r.reason for r in recs} == {"popular this month"}
    assert all(r.source is RecSource.POPULAR for r in recs)
    undecayed = Popular(half_life_days=None).fit(POP, ITEMS)
    assert [(r.item_id, r.score) for r in undecayed.recommend(Query(), 10)] == [("P", 3.0), ("Q", 2.0), ("R", 1.0)]


def test_popular_per_category_and_exclusions() -> None:
    model = Popular().fit(POP, ITEMS)
    toys = model.recommend(Query(category="Toys"), 10)
    assert [r.item_id for r in toys] == ["P", "R"]
    assert {r.reason for r in toys} == {"popular in Toys"}
    assert model.recommend(Query(category="Garden"), 10) == []
    assert [r.item_id for r in model.recommend(Query(cart=("Q",), exclude=frozenset({"R"})), 10)] == ["P"]
    assert [r.item_id for r in model.recommend(Query(item_id="Q"), 1)] == ["P"]


def test_popular_without_categories_ranks_overall_only() -> None:
    model = Popular().fit(POP)
    assert [r.item_id for r in model.recommend(Query(), 2)] == ["Q", "P"]
    assert model.recommend(Query(category="Toys"), 2) == []


def test_trending_is_the_smoothed_recent_over_expected_ratio() -> None:
    rows = [("c", "T", f"t{i}", 1.0 + i) for i in range(3)]  # 3 sales this week, none before
    rows += [("c", "S", f"s{i}", 3.0 + 7 * i) for i in range(8)]  # one a week for 8 weeks
    rows += [("c", "O", "old", 30.0)]  # nothing recent
    model = Popular(trending=True, recent_days=7, long_days=56, smoothing=3.0).fit(buys(rows))
    recs = model.recommend(Query(), 10)
    # T: (3 + 3) / (3 * 7/56 + 3); S: (1 + 3) / (8 * 7/56 + 3)
    assert [(r.item_id, r.score) for r in recs] == [("T", pytest.approx(6 / 3.375)), ("S", pytest.approx(1.0))]
    assert {r.reason for r in recs} == {"trending"}
    with pytest.raises(ValueError, match="recent_days"):
        Popular(trending=True, recent_days=60, long_days=56).fit(buys(rows))


def test_popular_save_load(tmp_path: Path) -> None:
    model = Popular().fit(POP, ITEMS)
    model.save(tmp_path)
    again = Popular.load(tmp_path)
    for q in (Query(), Query(category="Toys"), Query(cart=("P",))):
        assert again.recommend(q, 5) == model.recommend(q, 5)


# c1 buys M on days 0, 10, 20 (before END: 20, 10, 0), N twice 30 days apart, O once.
HABITS = buys(
    [
        ("c1", "M", "a", 20),
        ("c1", "M", "b", 10),
        ("c1", "M", "c", 0),
        ("c1", "M", "c2", 0),  # a second order the same day counts as the same purchase day
        ("c1", "N", "a", 30),
        ("c1", "N", "c", 0),
        ("c1", "O", "b", 10),
        ("c2", "M", "d", 5),
    ]
)


def test_buy_again_recommends_once_the_median_interval_has_passed() -> None:
    model = BuyAgain().fit(HABITS)
    assert model.recommend(Query(customer_key="c1"), 5) == []  # as of the training end nothing is due
    recs = model.recommend(Query(customer_key="c1", now=END + pd.Timedelta(days=15)), 5)
    assert [(r.item_id, r.score) for r in recs] == [("M", 1.5)]
    assert recs[0].reason == "you buy this about every 10 days; last bought 15 days ago"
    assert recs[0].source is RecSource.BUY_AGAIN


def test_buy_again_caps_scores_and_honours_exclusions() -> None:
    model = BuyAgain(max_score=3.0).fit(HABITS)
    late = END + pd.Timedelta(days=200)
    recs = model.recommend(Query(customer_key="c1", now=late), 5)
    assert [(r.item_id, r.score) for r in recs] == [("M", 3.0), ("N", 3.0)]
    assert recs[1].reason == "you buy this about every 30 days; last bought 200 days ago"
    assert [r.item_id for r in model.recommend(Query(customer_key="c1", now=late, cart=("M",)), 5)] == ["N"]
    assert model.recommend(Query(customer_key="c1", now=late), 1) == recs[:1]


def test_buy_again_median_interval_and_min_purchases() -> None:
    rows = [("c", "M", f"o{d}", 40 - d) for d in (0, 2, 12, 16)]  # gaps 2, 10, 4 -> median 4
    model = BuyAgain().fit(buys(rows))
    assert model.interval_days_.tolist() == [4.0]
    assert BuyAgain(min_purchases=3).fit(HABITS).item_ids_.tolist() == ["M"]
    with pytest.raises(ValueError, match="min_purchases"):
        BuyAgain(min_purchases=1).fit(HABITS)


def test_buy_again_unknown_or_anonymous_customer() -> None:
    model = BuyAgain().fit(HABITS)
    assert model.recommend(Query(customer_key="nobody"), 5) == []
    assert model.recommend(Query(cart=("M",)), 5) == []
