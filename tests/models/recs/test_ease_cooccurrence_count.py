"""EASE and the plain co-occurrence count against hand / direct computations on :mod:`tests.models.recs.tiny`."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.recs.base import Query, RecSource
from models.recs.cooccurrence_count import CooccurrenceCount
from models.recs.ease import EASE, ease_weights
from tests.models.recs.tiny import tiny

# --- EASE ---------------------------------------------------------------------------------------------

X = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=np.float64)


def _direct_ease(x: np.ndarray, l2: float) -> np.ndarray:
    """The paper's constrained least squares, solved column by column: for item j, regress x_j on the
    other items with an L2 penalty (the zero-diagonal constraint drops x_j from its own inputs)."""
    n = x.shape[1]
    b = np.zeros((n, n))
    for j in range(n):
        others = [i for i in range(n) if i != j]
        a = x[:, others]
        b[others, j] = np.linalg.solve(a.T @ a + l2 * np.eye(n - 1), a.T @ x[:, j])
    return b


def test_ease_weights_have_a_zero_diagonal_and_solve_the_constrained_problem() -> None:
    b = ease_weights(sp.csr_matrix(X), 0.5)
    assert np.all(np.diag(b) == 0.0)
    np.testing.assert_allclose(b, _direct_ease(X, 0.5), rtol=1e-10, atol=1e-12)
    # and the closed form as printed: B = I - P diagMat(1 / diag(P)), P = (X'X + l2 I)^-1
    p = np.linalg.inv(X.T @ X + 0.5 * np.eye(4))
    np.testing.assert_allclose(b, np.eye(4) - p @ np.diag(1 / np.diag(p)), atol=1e-12)


def _ease_frame_weights(model: EASE) -> dict[tuple[str, str], float]:
    ids = [str(i) for i in model.item_ids_]
    return {(ids[i], ids[j]): float(model.weights_[i, j]) for i in range(len(ids)) for j in range(len(ids))}


def test_ease_rows_are_customers_or_baskets() -> None:
    # customer rows: u1 {x,y,z}, u2 {x,y}, u3 {w}, the guest basket {y,z}; items sorted w, x, y, z
    by_customer = EASE(l2=1.0, rows="customer").fit(tiny())
    x_customers = np.array([[0, 1, 1, 1], [0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 1, 1]], dtype=np.float64)
    np.testing.assert_allclose(by_customer.weights_, _direct_ease(x_customers, 1.0), atol=1e-6)
    by_basket = EASE(l2=1.0, rows="basket").fit(tiny())
    x_baskets = np.array(
        [[0, 1, 1, 0], [0, 1, 0, 0], [0, 1, 0, 1], [0, 1, 1, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 1, 1]],
        dtype=np.float64,
    )
    np.testing.assert_allclose(by_basket.weights_, _direct_ease(x_baskets, 1.0), atol=1e-6)


def test_ease_answers_a_cart_with_the_summed_rows_and_never_the_cart() -> None:
    model = EASE(l2=1.0, rows="basket").fit(tiny())
    w = _ease_frame_weights(model)
    recs = model.recommend(Query(cart=("x", "y")), 10)
    assert "x" not in {r.item_id for r in recs} and "y" not in {r.item_id for r in recs}
    expected = {j: w[("x", j)] + w[("y", j)] for j in ("w", "z")}
    assert {r.item_id: r.score for r in recs} == pytest.approx({j: v for j, v in expected.items() if v > 0})
    assert all(r.source is RecSource.BOUGHT_TOGETHER for r in recs)


def test_ease_answers_a_known_customer_from_their_history() -> None:
    model = EASE(l2=1.0, rows="customer").fit(tiny())
    w = _ease_frame_weights(model)
    recs = model.recommend(Query(customer_key="u2"), 10)  # history {x, y}
    expected = {j: w[("x", j)] + w[("y", j)] for j in ("w", "x", "y", "z")}
    assert {r.item_id: r.score for r in recs} == pytest.approx({j: v for j, v in expected.items() if v > 0})
    sources = {r.item_id: r.source for r in recs}
    assert sources == {"x": RecSource.BUY_AGAIN, "y": RecSource.BUY_AGAIN, "z": RecSource.PERSONAL}
    assert model.recommend(Query(customer_key="nobody"), 10) == []
    assert model.recommend(Query(customer_key="u2", exclude=frozenset({"x", "y", "z"})), 10) == []


def test_ease_keeps_only_the_most_frequent_items() -> None:
    model = EASE(l2=1.0, max_items=2).fit(tiny())  # baskets: x in 4, y in 4, z in 2, w in 1
    assert list(model.item_ids_) == ["x", "y"]
    assert model.weights_.shape == (2, 2)
    assert model.recommend(Query(cart=("w",)), 10) == []


def test_ease_refuses_bad_parameters() -> None:
    with pytest.raises(ValueError, match="rows"):
        EASE(rows="session").fit(tiny())
    with pytest.raises(ValueError, match="l2"):
        EASE(l2=0.0).fit(tiny())


# --- the co-occurrence count --------------------------------------------------------------------------

# Baskets: xy, x, xz, xy, y, w, yz. Pairs: x-y in 2, x-z in 1, y-z in 1; w with nothing.


def test_the_count_sums_shared_baskets_over_the_cart() -> None:
    model = CooccurrenceCount().fit(tiny())
    assert [(r.item_id, r.score) for r in model.recommend(Query(cart=("x",)), 10)] == [("y", 2.0), ("z", 1.0)]
    # z for the cart {x, y}: 1 (with x) + 1 (with y)
    assert [(r.item_id, r.score) for r in model.recommend(Query(cart=("x", "y")), 10)] == [("z", 2.0)]
    # y for {x, z}: 2 + 1; ties would go by item id
    assert [(r.item_id, r.score) for r in model.recommend(Query(cart=("x", "z")), 10)] == [("y", 3.0)]
    assert model.recommend(Query(cart=("w",)), 10) == []
    assert model.recommend(Query(customer_key="u1"), 10) == []
    assert model.recommend(Query(cart=("unknown",)), 10) == []


def test_the_count_reason_names_the_strongest_cart_item() -> None:
    model = CooccurrenceCount().fit(tiny())
    (rec,) = model.recommend(Query(cart=("x", "z")), 10)
    assert rec.reason == "bought together with x in 2 orders"
    assert rec.source is RecSource.BOUGHT_TOGETHER


def test_the_count_honours_exclusions_and_the_neighbour_cap() -> None:
    model = CooccurrenceCount().fit(tiny())
    assert [r.item_id for r in model.recommend(Query(cart=("x",), exclude=frozenset({"y"})), 10)] == ["z"]
    capped = CooccurrenceCount(n_neighbours=1).fit(tiny())
    assert [r.item_id for r in capped.recommend(Query(cart=("x",)), 10)] == ["y"]
    assert [r.item_id for r in capped.recommend(Query(item_id="z"), 10)] == ["x"]  # z: x and y tie at 1, x first
