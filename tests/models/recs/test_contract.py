"""The contract every recommender passes, on one small literal interactions frame.

Parametrized over every recommender class there is: bought together, popular (and trending), buy
again, the implicit-feedback personal recommender, similar items, repeat-then-personal, the three
frequency baselines, and the basket models of issue 20 (TIFU-KNN, UP-CF@r, the co-occurrence count,
EASE on customer and on basket rows). Every module is imported directly: a missing one fails the suite, never skips it,
and :func:`test_every_recommender_is_in_the_suite` fails when a recommender class is left out.
"""

from __future__ import annotations

import inspect
import itertools
import math
import pkgutil
from collections.abc import Callable
from importlib import import_module
from pathlib import Path

import pytest

import models.recs
from models.recs.base import Query, Recommendation, Recommender, RecSource
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
from models.recs.similar import SimilarItems
from models.recs.tifuknn import TIFUKNN
from models.recs.upcf import UPCF
from tests.models.recs.data import ITEMS, QUERIES, interactions

ALLOWED_SUFFIXES = {".npy", ".npz", ".parquet", ".json"}


def _implicit() -> ImplicitRecommender:
    return ImplicitRecommender(factors=8, iterations=5, num_threads=1, random_state=0)


FACTORIES: dict[str, Callable[[], Recommender]] = {
    "bought_together": lambda: BoughtTogether(min_support=1),
    "bought_together_lift_sessions": lambda: BoughtTogether(measure="lift", min_support=1, use_sessions=True),
    "popular": lambda: Popular(),
    "trending": lambda: Popular(trending=True, recent_days=14, long_days=60),
    "buy_again": lambda: BuyAgain(),
    "implicit": _implicit,
    "similar": lambda: SimilarItems(base=ImplicitRecommender(factors=8, iterations=5, num_threads=1)),
    "repeat_personal": lambda: RepeatThenPersonal(personal=_implicit()),
    "g_topfreq": lambda: GlobalTopFreq(),
    "p_topfreq": lambda: PersonalTopFreq(),
    "gp_topfreq": lambda: GlobalPersonalTopFreq(),
    "tifuknn": lambda: TIFUKNN(group_size=2, n_neighbours=3),
    "upcf": lambda: UPCF(recency=2, n_neighbours=None),
    "cooccurrence_count": lambda: CooccurrenceCount(),
    "cart_blend": lambda: CartBlend(item_models=("cosine", "count"), weight_step=0.5, validation_share=0.5),
    "repeat_ranker": lambda: RepeatRanker(min_child_samples=1, n_estimators=20, n_jobs=1),
    "ease_customer": lambda: EASE(l2=1.0),
    "ease_basket": lambda: EASE(l2=1.0, max_items=6, rows="basket"),
}


def _recommender_classes() -> set[type]:
    """Every class in ``models.recs`` that has the recommender interface (``recommend`` and ``fit``)."""
    found = set()
    for info in pkgutil.iter_modules(models.recs.__path__, "models.recs."):
        for _, cls in inspect.getmembers(import_module(info.name), inspect.isclass):
            is_one = callable(getattr(cls, "recommend", None)) and callable(getattr(cls, "fit", None))
            if cls.__module__ == info.name and is_one and cls is not Recommender:
                found.add(cls)
    return found


def test_every_recommender_is_in_the_suite() -> None:
    covered = {type(make()) for make in FACTORIES.values()}
    missing = sorted(c.__qualname__ for c in _recommender_classes() - covered)
    assert not missing, f"add these recommenders to FACTORIES: {missing}"


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def fitted(request: pytest.FixtureRequest) -> Recommender:
    model = FACTORIES[request.param]()
    assert not [a for a in vars(model) if a.endswith("_") and not a.startswith("_")], "__init__ learned state"
    out = model.fit(interactions(), ITEMS)
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
        assert isinstance(r.source, RecSource)
        assert isinstance(r.reason, str) and r.reason.strip()


def test_is_a_recommender(fitted: Recommender) -> None:
    assert isinstance(fitted, Recommender)
    assert isinstance(fitted.source, RecSource)


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
