"""Purchase baskets as codes (``models.recs.baskets``): order, guests, refusals, ranking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.recs.base import IX, InteractionKind
from models.recs.baskets import basket_matrices, top_scored
from tests.models.recs.tiny import tiny


def test_baskets_are_in_time_order_and_guests_have_no_customer() -> None:
    data = basket_matrices(tiny().sample(frac=1.0, random_state=1))
    assert list(data.item_ids) == ["w", "x", "y", "z"]
    assert list(data.customer_ids) == ["u1", "u2", "u3"]
    owners = data.basket_customer.tolist()
    assert len(owners) == 7 and owners[-1] == -1  # the guest's basket (day 4) is the newest
    assert owners.count(-1) == 1
    order, starts = data.customer_baskets()
    u1 = order[starts[0] : starts[1]]
    assert [sorted(data.item_ids[data.incidence[r].indices]) for r in u1] == [["x", "y"], ["x"], ["x", "z"]]


def test_views_and_carts_are_not_baskets() -> None:
    frame = tiny()
    view = frame.iloc[[0]].assign(**{IX.EVENT: InteractionKind.VIEW.value, IX.ITEM: "v", IX.BASKET: "s1"})
    data = basket_matrices(pd.concat([frame, view], ignore_index=True))
    assert "v" not in set(data.item_ids)
    assert data.incidence.shape[0] == 7


@pytest.mark.parametrize("column", [IX.ITEM, IX.BASKET, IX.TS])
def test_a_purchase_row_missing_a_needed_value_is_refused(column: str) -> None:
    frame = tiny()
    frame.loc[3, column] = None
    with pytest.raises(ValueError, match=rf"1 purchase row\(s\) have no '{column}'"):
        basket_matrices(frame)


def test_no_purchase_is_refused() -> None:
    frame = tiny().assign(**{IX.EVENT: InteractionKind.VIEW.value})
    with pytest.raises(ValueError, match="no purchase"):
        basket_matrices(frame)


def test_top_scored_filters_and_breaks_ties_by_code() -> None:
    index = np.array([5, 1, 3, 2, 4])
    score = np.array([1.0, 2.0, 2.0, -1.0, 0.5])
    cats = np.array(["a", "a", "a", "b", "a", "a"], dtype=object)  # item 3 is in "b"
    got, values = top_scored(index, score, 2, np.array([], dtype=np.int64), cats, None)
    assert got.tolist() == [1, 3] and values.tolist() == [2.0, 2.0]
    got, _ = top_scored(index, score, 10, np.array([1]), cats, None)
    assert got.tolist() == [3, 5, 4]  # never blocked, never a non-positive score
    got, _ = top_scored(index, score, 10, np.array([], dtype=np.int64), cats, "a")
    assert got.tolist() == [1, 5, 4]


def test_baskets_at_the_same_time_are_ordered_by_id_whatever_the_row_order() -> None:
    same_time = [("u1", "b2", "y", 1), ("u1", "b1", "x", 1), ("u1", "b0", "z", 0)]
    for frame in (tiny(same_time), tiny(same_time).iloc[::-1]):
        data = basket_matrices(frame)
        order, _ = data.customer_baskets()
        assert [data.item_ids[data.incidence[r].indices[0]] for r in order] == ["z", "x", "y"]
