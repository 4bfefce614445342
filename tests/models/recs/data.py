"""One small literal interactions frame, its catalogue and a set of queries, shared by the recommender
contract suite and the estimator contract suite."""

from __future__ import annotations

import pandas as pd

from models.recs.base import IX, InteractionKind, Query

T0 = pd.Timestamp("2025-01-01", tz="UTC")


def interactions() -> pd.DataFrame:
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
            IX.EVENT: InteractionKind.PURCHASE.value,
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
                ("c1", "e", 61, InteractionKind.VIEW.value),
                ("c1", "f", 61, InteractionKind.ADD_TO_CART.value),
                ("c2", "a", 66, InteractionKind.VIEW.value),
                ("c6", "j", 31, InteractionKind.VIEW.value),
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
