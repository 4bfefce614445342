"""ImplicitRecommender: taste clusters, fold-in of today's events, exclusions, reasons, artifacts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from models.recs.base import IX, Query, Recommender, RecSource, interactions_from_tables
from models.recs.personal import ImplicitRecommender

T0 = pd.Timestamp("2024-01-01", tz="UTC")
A = ["A1", "A2", "A3", "A4"]
B = ["B1", "B2", "B3", "B4"]
ITEMS = pd.DataFrame(
    {
        IX.ITEM: A + B,
        IX.NAME: [f"ITEM {i}" for i in A + B],
        IX.CATEGORY: ["garden"] * 4 + ["kitchen"] * 4,
    }
)


def _rows(customer: str, items: list[str], day: int, event: str = "purchase", qty: float = 1.0) -> list[dict]:
    ts = T0 + pd.Timedelta(days=day)
    return [
        {IX.CUSTOMER: customer, IX.ITEM: it, IX.BASKET: day, IX.TS: ts, IX.QUANTITY: qty, IX.EVENT: event}
        for it in items
    ]


def two_clusters() -> pd.DataFrame:
    """Eight customers of each taste buy three of their cluster's four items; 'fan_a' bought A1, A2."""
    rows: list[dict] = []
    for cluster, name in ((A, "a"), (B, "b")):
        for n in range(8):
            rows += _rows(f"{name}{n}", [it for i, it in enumerate(cluster) if i != n % 4], day=n)
    rows += _rows("fan_a", ["A1", "A2"], day=10)
    rows += _rows("viewer", ["B1"], day=10, event="view")
    return pd.DataFrame(rows)


def fitted(**params: object) -> ImplicitRecommender:
    kw: dict = {"factors": 2, "iterations": 15, "regularization": 0.01, "random_state": 7} | params
    return ImplicitRecommender(**kw).fit(two_clusters(), ITEMS)


def ids(recs: list) -> list[str]:
    return [r.item_id for r in recs]


def test_is_a_recommender_and_init_only_stores_params() -> None:
    m = ImplicitRecommender(factors=3)
    assert isinstance(m, Recommender)
    assert not hasattr(m, "item_factors_")
    assert m.get_params()["factors"] == 3


@pytest.mark.parametrize("algorithm", ["als", "bpr"])
def test_customer_of_cluster_a_gets_cluster_a_items(algorithm: str) -> None:
    extra = {"iterations": 300, "learning_rate": 0.05} if algorithm == "bpr" else {}
    m = fitted(algorithm=algorithm, **extra)
    recs = m.recommend(Query(customer_key="fan_a"), k=2)
    assert set(ids(recs)) == {"A3", "A4"}  # A1, A2 already bought: filtered
    assert all(r.source is RecSource.PERSONAL for r in recs)
    assert recs[0].score >= recs[1].score
    assert all(r.reason in ("because you bought ITEM A1", "because you bought ITEM A2") for r in recs)


def test_views_count_and_reason_says_looked_at() -> None:
    recs = fitted().recommend(Query(customer_key="viewer"), k=3)
    assert set(ids(recs)) <= set(B)
    assert recs[0].reason == "because you looked at ITEM B1"


def test_filter_bought_can_be_switched_off() -> None:
    recs = fitted(filter_bought=False).recommend(Query(customer_key="fan_a"), k=4)
    assert set(ids(recs)) == set(A)


def test_unknown_customer_and_anonymous_query_get_nothing() -> None:
    m = fitted()
    assert m.recommend(Query(customer_key="stranger")) == []
    assert m.recommend(Query(cart=("A1",))) == []


def test_cart_exclude_and_category_are_respected_without_duplicates() -> None:
    m = fitted(filter_bought=False)
    recs = m.recommend(Query(customer_key="fan_a", cart=("A1",), exclude=frozenset({"A3"})), k=8)
    got = ids(recs)
    assert "A1" not in got and "A3" not in got
    assert len(got) == len(set(got)) == 6
    kitchen = m.recommend(Query(customer_key="fan_a", category="kitchen"), k=8)
    assert set(ids(kitchen)) == set(B)
    assert m.recommend(Query(customer_key="fan_a"), k=0) == []


def test_fold_in_moves_a_new_customer_to_cluster_b_without_refit() -> None:
    m = fitted()
    before = m.item_factors_.copy()
    later = m.trained_until_ + pd.Timedelta(hours=1)
    recent = pd.DataFrame(_rows("newbie", ["B1", "B2"], day=0)).assign(**{IX.TS: later})
    view = m.with_recent(recent)
    recs = view.recommend(Query(customer_key="newbie"), k=2)
    assert set(ids(recs)) == {"B3", "B4"}
    assert recs[0].reason in ("because you bought ITEM B1", "because you bought ITEM B2")
    # the original model is untouched and still knows nothing of the newcomer
    assert m.recommend(Query(customer_key="newbie")) == []
    np.testing.assert_array_equal(m.item_factors_, before)


def test_fold_in_moves_a_known_customer_to_today_taste() -> None:
    m = fitted()
    assert set(ids(m.recommend(Query(customer_key="fan_a"), k=2))) == {"A3", "A4"}
    later = m.trained_until_ + pd.Timedelta(days=1)
    recent = pd.DataFrame(_rows("fan_a", ["B1", "B2", "B3"], day=0, qty=3)).assign(**{IX.TS: later})
    recs = m.with_recent(recent).recommend(Query(customer_key="fan_a", now=later.to_pydatetime()), k=1)
    assert ids(recs) == ["B4"]


def test_fold_in_ignores_events_already_in_training() -> None:
    m = fitted()
    old = two_clusters()
    view = m.with_recent(old[old[IX.CUSTOMER] == "fan_a"])
    assert view.recommend(Query(customer_key="fan_a"), k=2) == m.recommend(Query(customer_key="fan_a"), k=2)


def test_fold_in_matches_implicit_recalculate_user() -> None:
    m = fitted(alpha=5.0)
    at = m.trained_until_ + pd.Timedelta(minutes=5)
    recent = pd.DataFrame(_rows("newbie", ["A1", "B2"], day=0, qty=3)).assign(**{IX.TS: at})
    recs = m.with_recent(recent).recommend(Query(customer_key="newbie", now=at.to_pydatetime()), k=8)
    # the same customer row for implicit: confidence 1 + alpha * log2(1 + quantity), no decay at `now`
    conf = np.zeros((1, 8), dtype=np.float32)
    cols = [list(m.item_ids_).index(i) for i in ("A1", "B2")]
    conf[0, cols] = 1.0 + 5.0 * np.log1p(3.0) / np.log(2.0)

    got, scores = m.as_implicit().recommend(
        0, sp.csr_matrix(conf), N=8, filter_already_liked_items=False, recalculate_user=True
    )
    ours = {r.item_id: r.score for r in recs}
    theirs = {str(m.item_ids_[j]): float(s) for j, s in zip(got, scores, strict=True)}
    assert ours.keys() == theirs.keys() - {"A1", "B2"}
    for item, score in ours.items():
        assert score == pytest.approx(theirs[item], rel=1e-3, abs=1e-4)


def test_batch_equals_single_answers() -> None:
    m = fitted()
    queries = [Query(customer_key=c) for c in ("fan_a", "stranger", "b1", "a3", "viewer")]
    batch = m.recommend_batch(queries, k=1)  # beyond the first, ties near 0
    single = [m.recommend(q, k=1) for q in queries]
    assert [ids(rs) for rs in batch] == [ids(rs) for rs in single]
    assert [[r.reason for r in rs] for rs in batch] == [[r.reason for r in rs] for rs in single]
    for b, s in zip(batch, single, strict=True):
        assert [r.score for r in b] == pytest.approx([r.score for r in s], abs=1e-6)


def test_save_load_round_trip_writes_no_pickle(tmp_path: Path) -> None:
    m = fitted()
    m.save(tmp_path / "personal")
    assert {p.suffix for p in (tmp_path / "personal").iterdir()} <= {".npy", ".npz", ".parquet", ".json"}
    back = ImplicitRecommender.load(tmp_path / "personal")
    queries = [Query(customer_key=c) for c in ("fan_a", "b2", "viewer", "stranger")]
    assert back.recommend_batch(queries, k=4) == m.recommend_batch(queries, k=4)
    assert back.get_params() == m.get_params()
    later = m.trained_until_ + pd.Timedelta(days=1)
    recent = pd.DataFrame(_rows("newbie", ["B1"], day=0)).assign(**{IX.TS: later})
    q = Query(customer_key="newbie")
    assert back.with_recent(recent).recommend(q) == m.with_recent(recent).recommend(q)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="algorithm"):
        ImplicitRecommender(algorithm="svd").fit(two_clusters())
    with pytest.raises(ValueError, match="columns"):
        ImplicitRecommender().fit(pd.DataFrame({IX.ITEM: ["A1"]}))


def test_beats_popularity_on_next_month_of_synthetic_world(tmp_path: Path) -> None:
    """Temporal check: trained before 2025-12-01, scored on December purchases of new-to-customer items."""
    from features.ingest import ingest
    from features.mapping import load_mapping
    from synth import generate_world

    generate_world(2000, 3, tmp_path / "raw")
    ingest(tmp_path / "raw", load_mapping("synthetic"), tmp_path / "home", now=datetime(2026, 1, 1, tzinfo=UTC))
    tables = tmp_path / "home" / "ingested"
    ix = interactions_from_tables(
        pd.read_parquet(tables / "order_lines.parquet"), pd.read_parquet(tables / "web_events.parquet")
    )
    cutoff = pd.Timestamp("2025-12-01", tz="UTC")
    train = ix[ix[IX.TS] < cutoff]
    m = ImplicitRecommender(factors=32, iterations=15).fit(train, pd.read_parquet(tables / "items.parquet"))

    bought = train[(train[IX.EVENT] == "purchase") & train[IX.CUSTOMER].notna()]
    before = bought.groupby(IX.CUSTOMER)[IX.ITEM].apply(set)
    test = ix[(ix[IX.TS] >= cutoff) & (ix[IX.EVENT] == "purchase") & ix[IX.CUSTOMER].isin(m.customer_ids_)]
    truth = {c: s - before.get(c, set()) for c, s in test.groupby(IX.CUSTOMER)[IX.ITEM].apply(set).items()}
    truth = {c: s for c, s in truth.items() if s}
    popular = bought[bought[IX.TS] >= cutoff - pd.DateOffset(months=3)][IX.ITEM].value_counts().index.tolist()

    customers = sorted(truth)
    recs = m.recommend_batch([Query(customer_key=c) for c in customers], k=10)
    recall_model = np.mean(
        [
            len({r.item_id for r in rs} & truth[c]) / min(len(truth[c]), 10)
            for c, rs in zip(customers, recs, strict=True)
        ]
    )
    recall_pop = np.mean(
        [
            len(set([i for i in popular if i not in before.get(c, set())][:10]) & truth[c]) / min(len(truth[c]), 10)
            for c in customers
        ]
    )
    print(f"recall@10 on {len(customers)} customers: model {recall_model:.3f}, popularity {recall_pop:.3f}")
    assert len(customers) > 100
    # measured about 0.32 vs 0.10 when written: a clear margin, so the test asks for a modest one
    assert recall_model > 1.5 * recall_pop
