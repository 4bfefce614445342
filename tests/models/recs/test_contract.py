"""The contract every recommender passes, on one small literal interactions frame.

Parametrized over every recommender class there is: bought together, popular (and trending), buy
again, and, where their modules exist, the implicit-feedback personal recommender and similar items.
"""

from __future__ import annotations

import importlib
import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from models.recs.base import IX, EventKind, Query, Recommendation, Recommender, Source

T0 = pd.Timestamp("2025-01-01", tz="UTC")
ALLOWED_SUFFIXES = {".npy", ".npz", ".parquet", ".json"}


def _interactions() -> pd.DataFrame:
    """Eight customers, ten items, repeat purchases (for buy again), a guest order and some views."""
    baskets = [
        ("c1", "abc", 0),
        ("c1", "ab", 20),
        ("c1", "ad", 40),
        ("c1", "a", 60),
        ("c2", "bce", 5),
        ("c2", "ce", 35),
        ("c2", "cf", 65),
        ("c3", "abg", 10),
        ("c3", "dh", 50),
        ("c4", "efg", 15),
        ("c4", "ef", 45),
        ("c5", "hij", 25),
        ("c5", "hi", 55),
        ("c6", "ab", 30),
        ("c7", "cde", 12),
        ("c8", "gij", 70),
        (None, "abj", 33),
    ]
    rows = [
        {
            IX.CUSTOMER: cust,
            IX.ITEM: item,
            IX.BASKET: f"o{n}",
            IX.TS: T0 + pd.Timedelta(days=day, hours=n),
            IX.QUANTITY: 1.0,
            IX.EVENT: EventKind.PURCHASE.value,
        }
        for n, (cust, items, day) in enumerate(baskets)
        for item in items
    ]
    rows += [
        {
            IX.CUSTOMER: cust,
            IX.ITEM: item,
            IX.BASKET: f"s{n}",
            IX.TS: T0 + pd.Timedelta(days=day),
            IX.QUANTITY: 1.0,
            IX.EVENT: event,
        }
        for n, (cust, item, day, event) in enumerate(
            [
                ("c1", "e", 61, EventKind.VIEW.value),
                ("c1", "f", 61, EventKind.ADD_TO_CART.value),
                ("c2", "a", 66, EventKind.VIEW.value),
                ("c6", "j", 31, EventKind.VIEW.value),
            ]
        )
    ]
    df = pd.DataFrame(rows)
    df[IX.CUSTOMER] = df[IX.CUSTOMER].astype("string")
    return df


ITEMS = pd.DataFrame(
    {
        IX.ITEM: list("abcdefghij"),
        IX.NAME: [f"ITEM {x.upper()}" for x in "abcdefghij"],
        IX.CATEGORY: ["Toys", "Toys", "Books", "Books", "Food", "Food", "Toys", "Books", "Food", "Toys"],
        IX.PRICE: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
    }
)

LATER = T0 + pd.Timedelta(days=200)
QUERIES = [
    Query(),
    Query(customer_key="c1"),
    Query(customer_key="c1", now=LATER.to_pydatetime()),
    Query(customer_key="c2", now=LATER.to_pydatetime(), exclude=frozenset({"c"})),
    Query(cart=("a",)),
    Query(cart=("a", "b"), exclude=frozenset({"c", "d"})),
    Query(cart=("h", "zzz")),
    Query(item_id="a"),
    Query(item_id="e", exclude=frozenset({"f"})),
    Query(customer_key="c3", cart=("g",), exclude=frozenset({"a"})),
    Query(customer_key="c4", category="Food"),
    Query(category="Books"),
    Query(customer_key="nobody", cart=("i",)),
]


def _optional(module: str, name: str) -> Any:
    """A class from a module that may not exist yet (skips the case when it does not)."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError:
        pytest.skip(f"{module} is not there")
    return getattr(mod, name)


def _implicit() -> Recommender:
    cls = _optional("models.recs.personal", "ImplicitRecommender")
    model: Recommender = cls(factors=8, iterations=5, num_threads=1, random_state=0)
    return model


def _similar() -> Recommender:
    base = _optional("models.recs.personal", "ImplicitRecommender")(factors=8, iterations=5, num_threads=1)
    model: Recommender = _optional("models.recs.similar", "SimilarItems")(base=base)
    return model


def _repeat_personal() -> Recommender:
    personal = _optional("models.recs.personal", "ImplicitRecommender")(
        factors=8, iterations=5, num_threads=1, random_state=0
    )
    model: Recommender = _optional("models.recs.blend", "RepeatThenPersonal")(personal=personal)
    return model


def _local(module: str, name: str, **params: Any) -> Callable[[], Recommender]:
    def make() -> Recommender:
        model: Recommender = getattr(importlib.import_module(module), name)(**params)
        return model

    return make


FACTORIES: dict[str, Callable[[], Recommender]] = {
    "bought_together": _local("models.recs.cooccurrence", "BoughtTogether", min_support=1),
    "bought_together_lift_sessions": _local(
        "models.recs.cooccurrence", "BoughtTogether", measure="lift", min_support=1, use_sessions=True
    ),
    "popular": _local("models.recs.popular", "Popular"),
    "trending": _local("models.recs.popular", "Popular", trending=True, recent_days=14, long_days=60),
    "buy_again": _local("models.recs.buy_again", "BuyAgain"),
    "implicit": _implicit,
    "similar": _similar,
    "repeat_personal": _repeat_personal,
    "g_topfreq": _local("models.recs.baselines", "GlobalTopFreq"),
    "p_topfreq": _local("models.recs.baselines", "PersonalTopFreq"),
    "gp_topfreq": _local("models.recs.baselines", "GlobalPersonalTopFreq"),
}


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def fitted(request: pytest.FixtureRequest) -> Recommender:
    model = FACTORIES[request.param]()
    assert not [a for a in vars(model) if a.endswith("_") and not a.startswith("_")], "__init__ learned state"
    out = model.fit(_interactions(), ITEMS)
    assert out is model
    return model


def _check_answer(model: Recommender, query: Query, recs: list[Recommendation], k: int) -> None:
    assert len(recs) <= k
    got = [r.item_id for r in recs]
    assert len(got) == len(set(got)), f"duplicates in {got}"
    assert not set(got) & (set(query.cart) | set(query.exclude)), f"{got} for {query}"
    scores = [r.score for r in recs]
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores)
    assert all(a >= b for a, b in itertools.pairwise(scores)), f"scores not sorted: {scores}"
    for r in recs:
        assert isinstance(r.item_id, str)
        assert isinstance(r.source, Source)
        assert isinstance(r.reason, str) and r.reason.strip()


def test_is_a_recommender(fitted: Recommender) -> None:
    assert isinstance(fitted, Recommender)
    assert isinstance(fitted.source, Source)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_answers_keep_the_contract(fitted: Recommender, k: int) -> None:
    answered = 0
    for query in QUERIES:
        recs = fitted.recommend(query, k)
        _check_answer(fitted, query, recs, k)
        answered += bool(recs)
    assert answered, "no query got an answer: the suite would prove nothing"


def _same(a: list[Recommendation], b: list[Recommendation]) -> bool:
    """Same items, order, sources and reasons; scores equal up to float32 rounding (a batched matrix
    product may sum in another order than a single row's)."""
    return [(r.item_id, r.source, r.reason) for r in a] == [(r.item_id, r.source, r.reason) for r in b] and all(
        math.isclose(x.score, y.score, rel_tol=1e-5, abs_tol=1e-6) for x, y in zip(a, b, strict=True)
    )


def test_batch_equals_one_by_one(fitted: Recommender) -> None:
    batch = fitted.recommend_batch(QUERIES, 5)
    assert len(batch) == len(QUERIES)
    for query, answer in zip(QUERIES, batch, strict=True):
        assert _same(answer, fitted.recommend(query, 5)), query
    assert fitted.recommend_batch([], 5) == []


def test_save_load_round_trip_in_plain_formats(fitted: Recommender, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    fitted.save(folder)
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    assert {p.suffix for p in files} <= ALLOWED_SUFFIXES, sorted(p.name for p in files)
    again = type(fitted).load(folder)
    assert again.source == fitted.source
    for k in (1, 10):
        assert again.recommend_batch(QUERIES, k) == fitted.recommend_batch(QUERIES, k)
