"""The four basket models on the committed Complete Journey sample (ingested through the shipped
mapping): behaviour a real grocery history must keep, with no expected figure hard-coded."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from features.ingest import ingest
from features.mapping import load_mapping
from models.recs.base import IX, Query, Recommender, interactions_from_tables
from models.recs.cooccurrence_count import CooccurrenceCount
from models.recs.ease import EASE
from models.recs.tifuknn import TIFUKNN
from models.recs.upcf import UPCF

CJ = Path(__file__).resolve().parents[2] / "data" / "complete_journey"


@pytest.fixture(scope="module")
def purchases(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    home = tmp_path_factory.mktemp("cj")
    ingest(CJ, load_mapping("complete_journey"), home, now=datetime(2026, 1, 1, tzinfo=UTC))
    lines = pd.read_parquet(home / "ingested" / "order_lines.parquet")
    items = pd.read_parquet(home / "ingested" / "items.parquet")
    return interactions_from_tables(lines), items


MODELS = {
    "tifuknn": lambda: TIFUKNN(n_neighbours=20),
    "upcf": lambda: UPCF(n_neighbours=20),
    "ease": lambda: EASE(l2=50.0, max_items=500),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_customer_with_history_gets_a_next_basket_answer(
    name: str, purchases: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    interactions, items = purchases
    model: Recommender = MODELS[name]().fit(interactions, items)
    customers = sorted(interactions[IX.CUSTOMER].dropna().astype(str).unique())
    assert len(customers) > 10
    answers = model.recommend_batch([Query(customer_key=c) for c in customers], 10)
    assert sum(bool(a) for a in answers) >= 0.9 * len(customers)
    # excluding each customer's top item moves the rest up by one place
    for customer, answer in list(zip(customers, answers, strict=True))[:20]:
        if len(answer) < 2:
            continue
        again = model.recommend(Query(customer_key=customer, exclude=frozenset({answer[0].item_id})), 10)
        assert [r.item_id for r in again[:-1]] == [r.item_id for r in answer[1:]][: len(again) - 1]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_answer_does_not_depend_on_row_order(name: str, purchases: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    interactions, items = purchases
    customers = sorted(interactions[IX.CUSTOMER].dropna().astype(str).unique())[:30]
    queries = [Query(customer_key=c) for c in customers]
    first = MODELS[name]().fit(interactions, items).recommend_batch(queries, 10)
    shuffled = interactions.sample(frac=1.0, random_state=3).reset_index(drop=True)
    second = MODELS[name]().fit(shuffled, items).recommend_batch(queries, 10)
    assert [[r.item_id for r in a] for a in first] == [[r.item_id for r in a] for a in second]


def test_completion_models_answer_real_carts(purchases: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    interactions, items = purchases
    count = CooccurrenceCount().fit(interactions, items)
    ease = EASE(l2=50.0, max_items=500, rows="basket").fit(interactions, items)
    baskets = interactions.groupby(IX.BASKET)[IX.ITEM].agg(lambda s: tuple(sorted(set(s.astype(str)))))
    carts = [b[:3] for b in baskets if len(b) >= 4][:40]
    assert carts
    for model in (count, ease):
        answers = model.recommend_batch([Query(cart=c) for c in carts], 10)
        assert sum(bool(a) for a in answers) >= 0.5 * len(carts)
        for cart, answer in zip(carts, answers, strict=True):
            assert not {r.item_id for r in answer} & set(cart)
