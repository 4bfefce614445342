"""SimilarItems: factor similarity, category bonus, cold items, carts, artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.recs.base import IX, Query, Recommender, RecSource
from models.recs.personal import ImplicitRecommender
from models.recs.similar import SimilarItems

T0 = pd.Timestamp("2024-01-01", tz="UTC")
A = ["A1", "A2", "A3", "A4"]
B = ["B1", "B2", "B3", "B4"]
# A5 is in the catalogue but nobody has bought it yet (a cold item); so is Z1, with no category
ITEMS = pd.DataFrame(
    {
        IX.ITEM: [*A, *B, "A5", "Z1"],
        IX.NAME: [f"ITEM {i}" for i in [*A, *B, "A5", "Z1"]],
        IX.CATEGORY: ["garden"] * 4 + ["kitchen"] * 4 + ["garden", None],
    }
)


def two_clusters() -> pd.DataFrame:
    """Eight customers of each taste buy three of their cluster's four items; A3 is bought most."""
    rows = []
    for cluster, name in ((A, "a"), (B, "b")):
        for n in range(8):
            for it in [it for i, it in enumerate(cluster) if i != n % 4]:
                rows.append((f"{name}{n}", it, f"{name}{n}-o", T0 + pd.Timedelta(days=n)))
    rows += [("a_extra", "A3", "x1", T0), ("a_extra2", "A3", "x2", T0)]
    frame = pd.DataFrame(rows, columns=[IX.CUSTOMER, IX.ITEM, IX.BASKET, IX.TS])
    return frame.assign(**{IX.QUANTITY: 1.0, IX.EVENT: "purchase"})


def base() -> ImplicitRecommender:
    return ImplicitRecommender(factors=2, iterations=15, regularization=0.01, random_state=7)


def fitted(**params: object) -> SimilarItems:
    return SimilarItems(base=base(), **params).fit(two_clusters(), ITEMS)  # type: ignore[arg-type]


def ids(recs: list) -> list[str]:
    return [r.item_id for r in recs]


def test_is_a_recommender_and_init_only_stores_params() -> None:
    m = SimilarItems(category_weight=0.5)
    assert isinstance(m, Recommender)
    assert not hasattr(m, "item_factors_")
    assert m.get_params() == {"base": None, "category_weight": 0.5}


def test_items_like_a1_are_its_cluster_then_its_cold_category_mate() -> None:
    recs = fitted().recommend(Query(item_id="A1"), k=4)
    assert set(ids(recs[:3])) == {"A2", "A3", "A4"}
    assert all(r.reason == "similar to ITEM A1" and r.source is RecSource.SIMILAR for r in recs[:3])
    assert ids(recs)[3] == "A5"  # no factors, but the same category
    assert recs[3].reason == "also in garden"
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)


def test_cold_item_gets_popular_items_of_its_category() -> None:
    recs = fitted().recommend(Query(item_id="A5"), k=10)
    assert ids(recs)[0] == "A3"  # bought most
    assert set(ids(recs)) == set(A)
    assert all(r.reason == "also in garden" for r in recs)


def test_unknown_or_missing_item_gets_nothing() -> None:
    m = fitted()
    assert m.recommend(Query(item_id="nope")) == []
    assert m.recommend(Query(customer_key="a1")) == []
    assert m.recommend(Query(item_id="Z1")) == []  # cold and no category: nothing to go on


def test_category_weight_one_is_category_only() -> None:
    recs = fitted(category_weight=1.0).recommend(Query(item_id="B1"), k=10)
    assert set(ids(recs)) == {"B2", "B3", "B4"}
    assert all(r.reason == "also in kitchen" for r in recs)


def test_cart_items_combine_and_are_never_returned() -> None:
    m = fitted(category_weight=0.0)
    recs = m.recommend(Query(cart=("A1", "B1"), exclude=frozenset({"A2"})), k=10)
    got = ids(recs)
    assert {"A1", "B1", "A2"}.isdisjoint(got)
    assert len(got) == len(set(got))
    assert {"A3", "A4", "B2", "B3", "B4"} <= set(got)
    reasons = {r.item_id: r.reason for r in recs}
    assert reasons["A3"] == "similar to ITEM A1"
    assert reasons["B2"] == "similar to ITEM B1"


def test_item_id_query_also_respects_cart_and_category() -> None:
    m = fitted()
    recs = m.recommend(Query(item_id="A1", cart=("A2",), category="garden"), k=10)
    assert "A2" not in ids(recs) and "A1" not in ids(recs)
    assert set(ids(recs)) == {"A3", "A4", "A5"}


def test_reuses_a_fitted_recommender_and_leaves_an_unfitted_one_alone() -> None:
    personal = base().fit(two_clusters(), ITEMS)
    m = SimilarItems(base=personal).fit(two_clusters(), ITEMS)
    unit = personal.item_factors_ / np.linalg.norm(personal.item_factors_, axis=1, keepdims=True)
    np.testing.assert_allclose(m.item_factors_[: len(unit)], unit, rtol=1e-6)
    fresh = base()
    SimilarItems(base=fresh).fit(two_clusters(), ITEMS)
    assert not hasattr(fresh, "item_factors_")


def test_batch_equals_single_answers() -> None:
    m = fitted()
    queries = [Query(item_id="A1"), Query(item_id="nope"), Query(cart=("B2", "A4")), Query(item_id="A5")]
    batch = m.recommend_batch(queries, k=3)
    single = [m.recommend(q, k=3) for q in queries]
    assert [ids(b) for b in batch] == [ids(s) for s in single]
    for b, s in zip(batch, single, strict=True):
        assert [r.score for r in b] == pytest.approx([r.score for r in s], abs=1e-6)


def test_save_load_round_trip_writes_no_pickle(tmp_path: Path) -> None:
    m = fitted()
    m.save(tmp_path / "similar")
    assert {p.suffix for p in (tmp_path / "similar").iterdir()} <= {".npy", ".parquet", ".json"}
    back = SimilarItems.load(tmp_path / "similar")
    queries = [Query(item_id="A1"), Query(item_id="A5"), Query(cart=("B1", "A2"), category="kitchen")]
    assert back.recommend_batch(queries, k=5) == m.recommend_batch(queries, k=5)
    assert back.category_weight == m.category_weight


def test_bad_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="category_weight"):
        SimilarItems(base=base(), category_weight=1.5).fit(two_clusters(), ITEMS)
