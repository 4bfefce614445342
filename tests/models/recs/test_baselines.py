"""The frequency baselines on a tiny literal history with known right answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from models.base import NotFittedError
from models.recs.base import IX, Query, Recommendation, Recommender, RecSource
from models.recs.baselines import GlobalPersonalTopFreq, GlobalTopFreq, ItemPopularity, PersonalTopFreq

Baseline = type[GlobalTopFreq] | type[PersonalTopFreq] | type[GlobalPersonalTopFreq]
T0 = datetime(2025, 1, 1, tzinfo=UTC)

# (customer, order, item, day); orders holding each item: A 3, B 3, D 2, C 1, E 1, F 1, G 1
LINES = [
    ("c1", "o1", "A", 0),
    ("c1", "o1", "B", 0),
    ("c1", "o2", "A", 1),
    ("c1", "o2", "C", 1),
    ("c1", "o2", "C", 1),  # a second line of the same item in one order counts once
    ("c1", "o3", "A", 2),
    ("c1", "o3", "B", 2),
    ("c2", "o4", "D", 3),
    ("c2", "o4", "B", 3),
    (None, "o5", "D", 4),  # a guest: counts for global popularity, belongs to nobody
    (None, "o5", "E", 4),
    ("c3", "o6", "F", 5),
    ("c3", "o7", "G", 6),  # c3 bought F and G once each; G is the more recent
]


def interactions(with_views: bool = True) -> pd.DataFrame:
    rows = [
        {
            IX.CUSTOMER: c,
            IX.BASKET: o,
            IX.ITEM: i,
            IX.TS: T0 + timedelta(days=d),
            IX.QUANTITY: 1.0,
            IX.EVENT: "purchase",
        }
        for c, o, i, d in LINES
    ]
    if with_views:  # many views of E must not make it popular
        rows += [
            {IX.CUSTOMER: "c2", IX.BASKET: f"s{n}", IX.ITEM: "E", IX.TS: T0, IX.QUANTITY: 1.0, IX.EVENT: "view"}
            for n in range(10)
        ]
    frame = pd.DataFrame(rows)
    return frame.astype({IX.CUSTOMER: "string", IX.BASKET: "string", IX.ITEM: "string", IX.EVENT: "string"})


ITEMS = pd.DataFrame(
    {
        IX.ITEM: list("ABCDEFG"),
        IX.NAME: [f"ITEM {c}" for c in "ABCDEFG"],
        IX.CATEGORY: ["x", "y", "x", "y", "x", "y", "x"],
    }
)


def ids(recs: list[Recommendation]) -> list[str]:
    return [r.item_id for r in recs]


def test_global_top_freq_ranks_by_orders_holding_the_item() -> None:
    model = GlobalTopFreq().fit(interactions(), ITEMS)
    recs = model.recommend(Query(), 4)
    assert ids(recs) == ["A", "B", "D", "C"]  # ties broken by item id
    assert [r.score for r in recs] == pytest.approx([3 / 7, 3 / 7, 2 / 7, 1 / 7])
    assert {r.source for r in recs} == {RecSource.POPULAR}
    assert recs[0].reason == "a best seller: in 3 orders"
    assert model.recommend(Query(), 10)[-1].reason == "a best seller: in 1 order"
    assert ItemPopularity is GlobalTopFreq


def test_global_top_freq_skips_cart_exclude_and_other_categories() -> None:
    model = GlobalTopFreq().fit(interactions(), ITEMS)
    assert ids(model.recommend(Query(cart=("A",), exclude=frozenset({"D"})), 3)) == ["B", "C", "E"]
    assert ids(model.recommend(Query(category="y"), 10)) == ["B", "D", "F"]


def test_personal_top_freq_returns_own_items_by_frequency_then_recency() -> None:
    model = PersonalTopFreq().fit(interactions(), ITEMS)
    recs = model.recommend(Query(customer_key="c1"), 10)
    assert ids(recs) == ["A", "B", "C"]
    assert [r.score for r in recs] == [3.0, 2.0, 1.0]
    assert {r.source for r in recs} == {RecSource.BUY_AGAIN}
    assert recs[0].reason == "you often buy this: in 3 orders of yours"
    assert recs[2].reason == "you bought this before"
    assert ids(model.recommend(Query(customer_key="c3"), 10)) == ["G", "F"]  # equal counts: most recent first
    assert ids(model.recommend(Query(customer_key="c2"), 10)) == ["B", "D"]  # same order: by item id
    assert ids(model.recommend(Query(customer_key="c1", cart=("A",)), 10)) == ["B", "C"]
    assert ids(model.recommend(Query(customer_key="c1"), 1)) == ["A"]


def test_personal_top_freq_has_nothing_for_unknown_or_anonymous_customers() -> None:
    model = PersonalTopFreq().fit(interactions(), ITEMS)
    assert model.recommend(Query(customer_key="nobody"), 10) == []
    assert model.recommend(Query(cart=("A",)), 10) == []


def test_gp_top_freq_tops_up_own_items_with_global_best_sellers() -> None:
    model = GlobalPersonalTopFreq().fit(interactions(), ITEMS)
    recs = model.recommend(Query(customer_key="c2"), 4)
    assert ids(recs) == ["B", "D", "A", "C"]
    assert [r.source for r in recs] == [RecSource.BUY_AGAIN, RecSource.BUY_AGAIN, RecSource.POPULAR, RecSource.POPULAR]
    assert ids(model.recommend(Query(customer_key="c1", cart=("A",)), 3)) == ["B", "C", "D"]
    assert ids(model.recommend(Query(customer_key="c1"), 2)) == ["A", "B"]  # own items fill k: no top-up
    assert ids(model.recommend(Query(customer_key="new"), 2)) == ["A", "B"]  # cold start: global only


@pytest.mark.parametrize("cls", [GlobalTopFreq, PersonalTopFreq, GlobalPersonalTopFreq])
def test_contract_batch_no_cart_no_duplicates(cls: Baseline) -> None:
    model = cls().fit(interactions(), ITEMS)
    assert isinstance(model, Recommender)
    queries = [
        Query(customer_key="c1", cart=("B",), exclude=frozenset({"D"})),
        Query(customer_key="c2"),
        Query(),
        Query(customer_key="c3", category="x"),
    ]
    batch = model.recommend_batch(queries, 3)
    assert batch == [model.recommend(q, 3) for q in queries]
    for q, recs in zip(queries, batch, strict=True):
        got = ids(recs)
        assert len(got) <= 3
        assert len(set(got)) == len(got)
        assert not set(got) & (set(q.cart) | q.exclude)
        assert all(r.reason for r in recs)
    assert model.recommend(Query(customer_key="c1"), 0) == []


@pytest.mark.parametrize("cls", [GlobalTopFreq, PersonalTopFreq, GlobalPersonalTopFreq])
def test_save_load_round_trip_without_pickle(cls: Baseline, tmp_path: Path) -> None:
    model = cls().fit(interactions(), ITEMS)
    model.save(tmp_path / "m")
    files = [p for p in (tmp_path / "m").rglob("*") if p.is_file()]
    assert files and {p.suffix for p in files} <= {".parquet", ".json"}
    loaded = cls.load(tmp_path / "m")
    for q in [Query(customer_key="c1"), Query(customer_key="c2", category="y"), Query(cart=("A",))]:
        assert loaded.recommend(q, 5) == model.recommend(q, 5)


@pytest.mark.parametrize("cls", [GlobalTopFreq, PersonalTopFreq, GlobalPersonalTopFreq])
def test_unfitted_model_says_so(cls: Baseline) -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        cls().recommend(Query(customer_key="c1"), 3)
