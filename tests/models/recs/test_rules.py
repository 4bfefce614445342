"""The business-rule layer on a literal catalogue: exclusions, bought items, stock, categories, prices,
duplicates, the popular top-up, and the catalogue / history / policy round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from models.recs.base import IX, InteractionKind, Query, Recommendation, RecSource
from models.recs.popular import Popular
from models.recs.rules import CustomerHistory, ItemCatalogue, RulePolicy, apply_rules

END = pd.Timestamp("2025-06-30", tz="UTC")

ITEMS = pd.DataFrame(
    {
        IX.ITEM: ["a", "b", "c", "d", "e", "f", "g", "h", "i"],
        IX.NAME: [f"ITEM {x.upper()}" for x in "abcdefghi"],
        IX.CATEGORY: ["Toys", "Toys", "Books", "Books", "Food", "Food", None, "Toys", "Books"],
        IX.PRICE: [10.0, 20.0, 5.0, 50.0, 2.0, 3.0, None, 100.0, 8.0],
        IX.ACTIVE: pd.array([True, True, True, False, True, True, None, True, True], dtype="boolean"),
        IX.IN_STOCK: pd.array([True, False, True, True, None, True, True, True, True], dtype="boolean"),
        "replenishable": [False, False, False, False, False, True, False, False, False],
    }
)
# d is inactive, b is out of stock; e and g have missing flags (available); f is replenishable;
# i was never bought.

# customer k bought a twice (paid 10 and 12), e (2) and f (3); popularity a 5, c 3, e 3, f 1, g 1, h 1
INTERACTIONS = pd.DataFrame(
    {
        IX.CUSTOMER: ["k", "k", "k", "k", "z", "z", "z", "z", "z", "z", "z", "z", "z", "z"],
        IX.ITEM: ["a", "a", "e", "f", "a", "a", "a", "c", "c", "c", "e", "e", "h", "g"],
        IX.BASKET: [f"o{i}" for i in range(14)],
        IX.TS: END,
        IX.QUANTITY: 1.0,
        IX.EVENT: InteractionKind.PURCHASE.value,
        "unit_price": [10.0, 12.0, 2.0, 3.0, 10, 10, 10, 5, 5, 5, 2, 2, 100, None],
    }
)


@pytest.fixture(scope="module")
def cat() -> ItemCatalogue:
    return ItemCatalogue.from_items(ITEMS)


@pytest.fixture(scope="module")
def pop() -> Popular:
    return Popular(half_life_days=None).fit(INTERACTIONS, ITEMS)


@pytest.fixture(scope="module")
def hist(cat: ItemCatalogue) -> CustomerHistory:
    return CustomerHistory().fit(INTERACTIONS, cat)


def rec(item: str, score: float = 1.0, source: RecSource = RecSource.BOUGHT_TOGETHER) -> Recommendation:
    return Recommendation(item, score, source, "because")


def ids(recs: list[Recommendation]) -> list[str]:
    return [r.item_id for r in recs]


ALL = [rec(x) for x in "abcdefgh"]


def test_catalogue_flags_missing_counts_as_available(cat: ItemCatalogue) -> None:
    assert cat.active.tolist() == [True, True, True, False, True, True, True, True, True]
    assert cat.in_stock.tolist() == [True, False, True, True, True, True, True, True, True]
    assert cat.codes(["c", "zz"]).tolist() == [2, -1]


def test_cart_exclusions_query_item_stock_and_unknown_items(cat: ItemCatalogue) -> None:
    q = Query(cart=("a",), exclude=frozenset({"c"}), item_id="h")
    out = apply_rules([*ALL, rec("unknown")], q, 10, cat, RulePolicy(fill_from_fallback=False))
    assert ids(out) == ["e", "f", "g"]  # b out of stock, d inactive


def test_already_bought_excluded_except_replenishable_and_buy_again(cat: ItemCatalogue, hist: CustomerHistory) -> None:
    q = Query(customer_key="k")
    policy = RulePolicy(fill_from_fallback=False)
    assert ids(apply_rules(ALL, q, 10, cat, policy, history=hist)) == ["c", "f", "g", "h"]
    again = [rec("a", source=RecSource.BUY_AGAIN), *ALL]
    assert ids(apply_rules(again, q, 10, cat, policy, history=hist)) == ["a", "c", "f", "g", "h"]
    food = RulePolicy(fill_from_fallback=False, replenishable_categories=frozenset({"Food"}))
    assert ids(apply_rules(ALL, q, 10, cat, food, history=hist)) == ["c", "e", "f", "g", "h"]
    keep = RulePolicy(fill_from_fallback=False, exclude_bought=False)
    assert ids(apply_rules(ALL, q, 10, cat, keep, history=hist)) == ["a", "c", "e", "f", "g", "h"]


def test_flags_can_be_switched_off(cat: ItemCatalogue) -> None:
    policy = RulePolicy(fill_from_fallback=False, exclude_inactive=False, exclude_out_of_stock=False)
    assert ids(apply_rules(ALL, Query(), 10, cat, policy)) == list("abcdefgh")


def test_category_filters(cat: ItemCatalogue) -> None:
    off = {"fill_from_fallback": False}
    assert ids(apply_rules(ALL, Query(category="Toys"), 10, cat, RulePolicy(**off))) == ["a", "h"]  # type: ignore[arg-type]
    inc = RulePolicy(include_categories=frozenset({"Books", "Food"}), fill_from_fallback=False)
    assert ids(apply_rules(ALL, Query(), 10, cat, inc)) == ["c", "e", "f"]
    exc = RulePolicy(exclude_categories=frozenset({"Toys"}), fill_from_fallback=False)
    assert ids(apply_rules(ALL, Query(), 10, cat, exc)) == ["c", "e", "f", "g"]
    assert apply_rules(ALL, Query(category="Garden"), 10, cat, RulePolicy(**off)) == []  # type: ignore[arg-type]


def test_absolute_price_band_lets_unpriced_items_pass(cat: ItemCatalogue) -> None:
    policy = RulePolicy(min_price=3.0, max_price=20.0, fill_from_fallback=False)
    assert ids(apply_rules(ALL, Query(), 10, cat, policy)) == ["a", "c", "f", "g"]
    with pytest.raises(ValueError, match="max_price"):
        RulePolicy(min_price=5, max_price=1)


def test_customer_price_band(cat: ItemCatalogue, hist: CustomerHistory) -> None:
    # k paid 10, 12, 2, 3 -> 10th percentile 2.3, 90th 11.4; widened by 1.5 -> [1.533, 17.1]
    lo, hi = hist.price_band("k")
    assert (lo, hi) == (pytest.approx(2.3), pytest.approx(11.4))
    policy = RulePolicy(customer_price_band=True, exclude_bought=False, fill_from_fallback=False)
    assert ids(apply_rules(ALL, Query(customer_key="k"), 10, cat, policy, history=hist)) == ["a", "c", "e", "f", "g"]
    # an unknown customer has no band
    assert ids(apply_rules(ALL, Query(customer_key="new"), 10, cat, policy, history=hist)) == [
        "a",
        "c",
        "e",
        "f",
        "g",
        "h",
    ]


def test_duplicates_first_passing_occurrence_wins(cat: ItemCatalogue, hist: CustomerHistory) -> None:
    first = [rec("c", 0.9), rec("a", 0.8)]
    second = [rec("a", 5.0, RecSource.PERSONAL), rec("c", 4.0, RecSource.PERSONAL), rec("e", 3.0, RecSource.PERSONAL)]
    out = apply_rules([first, second], Query(), 10, cat, RulePolicy(fill_from_fallback=False))
    assert [(r.item_id, r.source) for r in out] == [
        ("c", RecSource.BOUGHT_TOGETHER),
        ("a", RecSource.BOUGHT_TOGETHER),
        ("e", RecSource.PERSONAL),
    ]
    # a blocked personal "a" (already bought) does not hide a later buy-again "a"
    blocked_first = [[rec("a", source=RecSource.PERSONAL)], [rec("a", source=RecSource.BUY_AGAIN)]]
    out = apply_rules(
        blocked_first, Query(customer_key="k"), 10, cat, RulePolicy(fill_from_fallback=False), history=hist
    )
    assert [(r.item_id, r.source) for r in out] == [("a", RecSource.BUY_AGAIN)]


def test_top_up_from_popular_to_k(cat: ItemCatalogue, pop: Popular, hist: CustomerHistory) -> None:
    out = apply_rules([rec("g")], Query(cart=("c",)), 4, cat, RulePolicy(), pop)
    assert ids(out) == ["g", "a", "e", "f"]  # ties (f, g, h all 1) by item id
    assert [r.source for r in out] == [
        RecSource.BOUGHT_TOGETHER,
        RecSource.POPULAR,
        RecSource.POPULAR,
        RecSource.POPULAR,
    ]
    assert (out[1].reason, out[1].score) == ("popular this month", 5.0)
    # the top-up obeys the rules too: k already bought a and e (f is replenishable)
    assert ids(apply_rules([], Query(customer_key="k"), 3, cat, RulePolicy(), pop, hist)) == ["c", "f", "g"]


def test_top_up_per_category_and_from_the_catalogue_when_popular_runs_dry(cat: ItemCatalogue, pop: Popular) -> None:
    out = apply_rules([], Query(category="Toys"), 5, cat, RulePolicy(), pop)
    assert ids(out) == ["a", "h"]  # b is out of stock: the catalogue allows only two toys
    assert {r.reason for r in out} == {"popular in Toys"}
    one = RulePolicy(include_categories=frozenset({"Books"}))
    # i was never bought: popularity cannot rank it, the catalogue still can
    books = apply_rules([], Query(), 5, cat, one, pop)
    assert [(r.item_id, r.reason) for r in books] == [("c", "popular in Books"), ("i", "from our catalogue")]
    out = apply_rules([], Query(), 9, cat, RulePolicy(), pop)
    assert ids(out) == ["a", "c", "e", "f", "g", "h", "i"]  # b out of stock, d inactive
    assert (out[-1].source, out[-1].reason, out[-1].score) == (RecSource.POPULAR, "from our catalogue", 0.0)
    assert apply_rules(ALL, Query(), 0, cat, RulePolicy(), pop) == []


def test_catalogue_history_and_policy_round_trip(
    tmp_path: Path, cat: ItemCatalogue, hist: CustomerHistory, pop: Popular
) -> None:
    cat.save(tmp_path)
    hist.save(tmp_path, cat)
    cat2 = ItemCatalogue.load(tmp_path)
    hist2 = CustomerHistory.load(tmp_path, cat2)
    policy = RulePolicy(customer_price_band=True, exclude_categories=frozenset({"Books"}), min_price=1.0)
    policy2 = RulePolicy.from_dict(json.loads(json.dumps(policy.to_dict())))
    assert policy2 == policy
    for q in (Query(customer_key="k"), Query(customer_key="z", cart=("a",)), Query(category="Food")):
        assert apply_rules(ALL, q, 5, cat2, policy2, pop, hist2) == apply_rules(ALL, q, 5, cat, policy, pop, hist)
    assert cat2.names.tolist() == cat.names.tolist()
    assert cat2.categories.tolist() == cat.categories.tolist()
    assert {p.suffix for p in tmp_path.iterdir()} == {".parquet"}


def test_short_lists_checked_item_by_item_answer_as_numpy_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path checks a short candidate list item by item; on random catalogues, histories, policies,
    queries and candidate lists (repeats, unknown items, buy-again sources) it answers as the numpy path."""
    import numpy as np

    import models.recs.rules as rules

    rng = np.random.default_rng(11)
    names = [f"x{n}" for n in range(60)]
    cats = ["Toys", "Books", "Food", None]
    items = pd.DataFrame(
        {
            IX.ITEM: names,
            IX.NAME: names,
            IX.CATEGORY: rng.choice(np.array(cats, dtype=object), 60),
            IX.PRICE: np.where(rng.random(60) < 0.1, np.nan, rng.uniform(1, 100, 60).round(1)),
            IX.ACTIVE: rng.random(60) > 0.1,
            IX.IN_STOCK: rng.random(60) > 0.1,
            "replenishable": rng.random(60) < 0.1,
        }
    )
    catalogue = ItemCatalogue.from_items(items)
    bought = rng.choice(names, 200)
    interactions = pd.DataFrame(
        {
            IX.CUSTOMER: rng.choice(["k", "z", "q"], 200),
            IX.ITEM: bought,
            IX.BASKET: [f"o{i}" for i in range(200)],
            IX.TS: END,
            IX.QUANTITY: 1.0,
            IX.EVENT: InteractionKind.PURCHASE.value,
            "unit_price": rng.uniform(1, 100, 200),
        }
    )
    history = CustomerHistory().fit(interactions, catalogue)
    popular = Popular(half_life_days=None).fit(interactions, items)
    sources = [RecSource.BOUGHT_TOGETHER, RecSource.BUY_AGAIN, RecSource.PERSONAL]
    for _ in range(300):
        lo = float(rng.uniform(0, 50)) if rng.random() < 0.3 else None
        policy = RulePolicy(
            exclude_bought=bool(rng.random() < 0.7),
            include_categories=frozenset(rng.choice(cats[:3], 2, replace=False)) if rng.random() < 0.3 else None,
            exclude_categories=frozenset(rng.choice(cats[:3], 1)) if rng.random() < 0.3 else frozenset(),
            min_price=lo,
            max_price=lo + float(rng.uniform(5, 60)) if lo is not None else None,
            customer_price_band=bool(rng.random() < 0.3),
            fill_from_fallback=bool(rng.random() < 0.7),
        )
        query = Query(
            customer_key=str(rng.choice(["k", "z", "q", "nobody"])) if rng.random() < 0.8 else None,
            cart=tuple(rng.choice(names, int(rng.integers(0, 4)))),
            exclude=frozenset(rng.choice(names, int(rng.integers(0, 4))).tolist()),
            category=str(rng.choice(cats[:3])) if rng.random() < 0.2 else None,
        )
        flat = [
            Recommendation(str(rng.choice([*names, "unknown"])), float(s), sources[int(rng.integers(0, 3))], "r")
            for s in rng.random(int(rng.integers(0, 40)))
        ]
        k = int(rng.integers(1, 15))
        looped = apply_rules(flat, query, k, catalogue, policy, fallback=popular, history=history)
        monkeypatch.setattr(rules, "_LOOP_MAX", 0)
        vectorised = apply_rules(flat, query, k, catalogue, policy, fallback=popular, history=history)
        monkeypatch.setattr(rules, "_LOOP_MAX", 64)
        assert looped == vectorised


def test_the_per_policy_cache_is_bounded_and_answers_stay_right() -> None:
    """Callers choose filters, so the catalogue keeps the masks of at most POLICY_CACHE_LIMIT policies; a
    policy seen again after the cache started over gets the same masks."""
    from models.recs.rules import POLICY_CACHE_LIMIT

    catalogue = ItemCatalogue.from_items(ITEMS)
    first = RulePolicy(min_price=0.0)
    ok, replen, ok_bytes = catalogue.static_masks(first)
    assert ok.tolist() == [True, False, True, False, True, True, True, True, True]
    assert ok_bytes == ok.tobytes()
    for n in range(1, 3 * POLICY_CACHE_LIMIT):
        catalogue.static_masks(RulePolicy(min_price=float(n)))
        assert len(catalogue._static) <= POLICY_CACHE_LIMIT
    again = catalogue.static_masks(first)
    assert again[0].tolist() == ok.tolist() and again[1].tolist() == replen.tolist() and again[2] == ok_bytes
