"""CartBlend: the weight grid and the validation hit rate by hand, a planted world where knowing the
customer must help and an anonymous cart must not use it, and its answers' sources."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.recs.base import IX, InteractionKind, Query, RecSource
from models.recs.cart_blend import CartBlend, _hit_rate, weight_grid
from tests.models.recs.tiny import T0


def test_weight_grid_sums_to_one_cart_first() -> None:
    assert weight_grid(0.5, True) == [
        (1.0, 0.0, 0.0),
        (0.5, 0.0, 0.5),
        (0.5, 0.5, 0.0),
        (0.0, 0.0, 1.0),
        (0.0, 0.5, 0.5),
        (0.0, 1.0, 0.0),
    ]
    assert weight_grid(0.5, False) == [(1.0, 0.0, 0.0), (0.5, 0.0, 0.5), (0.0, 0.0, 1.0)]


def test_hit_rate_by_hand() -> None:
    # two cases, three candidates, parts (cart, own, popular); the hidden item is candidate 2, then 0
    parts = np.array(
        [
            [[1.0, 0.0, 0.0], [0.5, 0.0, 1.0], [0.0, 1.0, 0.0]],
            [[0.2, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
        ]
    )
    target = np.array([[False, False, True], [True, False, False]])
    # cart only: case 1's hidden scores 0 (never recommended), case 2's is second
    assert _hit_rate(parts, target, np.array([1.0, 0.0, 0.0]), 1) == 0.0
    assert _hit_rate(parts, target, np.array([1.0, 0.0, 0.0]), 2) == 0.5
    # own only: case 1's hidden is first
    assert _hit_rate(parts, target, np.array([0.0, 1.0, 0.0]), 1) == 0.5
    # half and half: case 1 scores 0.5, 0.25, 0.5 (a tie counts for the hidden item), case 2 second
    assert _hit_rate(parts, target, np.array([0.5, 0.5, 0.0]), 1) == 0.5


def _staples(n_customers: int = 60) -> pd.DataFrame:
    """Every basket holds one of the pairs (p, q) or (r, s) and the customer's own staple item; each
    customer has 3 to 5 baskets, one a day."""
    rows = []
    for c in range(n_customers):
        for j in range(3 + c % 3):
            pair = ("p", "q") if (c + j) % 2 else ("r", "s")
            for item in (*pair, f"staple{c}"):
                rows.append((f"c{c}", item, f"c{c}b{j}", T0 + pd.Timedelta(days=j)))
    df = pd.DataFrame(rows, columns=[IX.CUSTOMER, IX.ITEM, IX.BASKET, IX.TS])
    return df.assign(**{IX.QUANTITY: 1.0, IX.EVENT: InteractionKind.PURCHASE.value})


def test_knowing_the_customer_helps_and_an_anonymous_cart_does_without() -> None:
    model = CartBlend(item_models=("cosine", "count"), weight_step=0.25).fit(_staples())
    assert model.known_["own"] > 0 and model.known_["cart"] > 0
    assert model.anonymous_["own"] == 0.0
    figures = model.validation_
    assert figures["hit@10_known"] == 1.0  # the hidden item is the pair's mate or the staple: both found
    assert figures["hit@10_count_cart_only"] < 1.0  # a staple is never a cart neighbour of note
    # c7 with p in the cart: the mate q and c7's staple, the staple as their own item
    recs = model.recommend(Query(customer_key="c7", cart=("p",)), 2)
    assert {r.item_id for r in recs} == {"q", "staple7"}
    assert {r.item_id: r.source for r in recs}["staple7"] == RecSource.BUY_AGAIN
    assert {r.item_id: r.source for r in recs}["q"] == RecSource.BOUGHT_TOGETHER
    anonymous = model.recommend(Query(cart=("p",)), 1)
    assert anonymous[0].item_id == "q"
    # a customer never seen gets the anonymous blend
    assert model.recommend(Query(customer_key="nobody", cart=("p",)), 1)[0].item_id == "q"


def test_refuses_bad_parameters() -> None:
    with pytest.raises(ValueError, match="item_models"):
        CartBlend(item_models=("jaccard",)).fit(_staples(6))
    with pytest.raises(ValueError, match="weight_step"):
        CartBlend(weight_step=0.3).fit(_staples(6))


def test_lift_and_pmi_are_candidates_chosen_on_validation() -> None:
    """The textbook lift and PMI (tests/models/recs/test_cooccurrence.py computes them by hand) are among the
    default item-item models; each is scored on the validation customers and the best is kept per data set."""
    assert {"lift", "pmi"} <= set(CartBlend().item_models)
    model = CartBlend(item_models=("lift", "pmi", "count"), weight_step=0.5).fit(_staples())
    for name in ("lift", "pmi", "count"):
        assert f"hit@10_{name}_cart_only" in model.validation_
    cart_only = {name: model.validation_[f"hit@10_{name}_cart_only"] for name in ("lift", "pmi", "count")}
    assert model.anonymous_["model"] in cart_only
    if model.anonymous_["popular"] == 0.0:  # the cart alone won: the model of the best cart-only hit rate
        assert cart_only[model.anonymous_["model"]] == max(cart_only.values())
