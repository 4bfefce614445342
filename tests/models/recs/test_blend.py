"""Repeat-then-personal: own items by recency-weighted frequency first, new personal picks after."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from models.recs.base import IX, Query, RecSource
from models.recs.blend import RepeatThenPersonal
from models.recs.personal import ImplicitRecommender


def _interactions() -> pd.DataFrame:
    rows = []
    # customer c bought A in 3 old orders, B in 2 recent orders; d and e show what goes with B
    for i, (cust, item, day) in enumerate(
        [
            ("c", "A", "2024-01-01"),
            ("c", "A", "2024-01-05"),
            ("c", "A", "2024-01-09"),
            ("c", "B", "2024-12-20"),
            ("c", "B", "2024-12-28"),
            ("d", "B", "2024-11-01"),
            ("d", "C", "2024-11-01"),
            ("e", "B", "2024-11-02"),
            ("e", "C", "2024-11-02"),
            ("f", "D", "2024-11-03"),
        ]
    ):
        rows.append(
            {
                IX.CUSTOMER: cust,
                IX.ITEM: item,
                IX.BASKET: f"o{i}",
                IX.TS: pd.Timestamp(day, tz="UTC"),
                IX.QUANTITY: 1.0,
                IX.EVENT: "purchase",
            }
        )
    return pd.DataFrame(rows)


def _model(**params: object) -> RepeatThenPersonal:
    personal = ImplicitRecommender(factors=2, iterations=10, random_state=0)
    return RepeatThenPersonal(personal=personal, **params).fit(_interactions())  # type: ignore[arg-type]


def test_recent_repeats_outrank_old_frequent_ones() -> None:
    recs = _model(half_life_days=30).recommend(Query(customer_key="c"), k=4)
    assert [r.item_id for r in recs[:2]] == ["B", "A"]  # two recent orders beat three a year old
    assert recs[0].source is RecSource.BUY_AGAIN and recs[0].reason == "you bought this in 2 orders"
    assert all(r.source is RecSource.PERSONAL for r in recs[2:]) and len({r.item_id for r in recs}) == len(recs)


def test_plain_frequency_wins_without_decay_and_own_slots_cap() -> None:
    assert [r.item_id for r in _model(half_life_days=1e9).recommend(Query(customer_key="c"), k=2)] == ["A", "B"]
    capped = _model(own_slots=1).recommend(Query(customer_key="c"), k=3)
    assert [r.source for r in capped][:1] == [RecSource.BUY_AGAIN] and capped[1].source is RecSource.PERSONAL


def test_cart_and_exclusions_never_come_back() -> None:
    recs = _model().recommend(Query(customer_key="c", cart=("B",), exclude=frozenset({"C"})), k=4)
    assert {"B", "C"}.isdisjoint(r.item_id for r in recs)


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = _model()
    model.save(tmp_path / "m")
    again = RepeatThenPersonal.load(tmp_path / "m")
    q = Query(customer_key="c")
    assert again.recommend(q, 4) == model.recommend(q, 4)
    assert {p.suffix for p in (tmp_path / "m").rglob("*") if p.is_file()} <= {".json", ".parquet", ".npy", ".npz"}
