"""TIFU-KNN against a hand computation on :mod:`tests.models.recs.tiny`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.recs.base import IX, InteractionKind, Query, RecSource
from models.recs.tifuknn import TIFUKNN
from tests.models.recs.tiny import tiny

# m = 2, r_b = r_g = 0.5, alpha = 0.6, one neighbour.
# u1, baskets xy, x, xz: groups from the newest: [x, xz] and [xy] (the short oldest group); G = 2.
#   newest group: (0.5 * {x} + 1 * {x, z}) / 2 = x 0.75, z 0.5; oldest: {x, y} / 1 = x 1, y 1.
#   vector = (1 * newest + 0.5 * oldest) / 2 = x 0.625, y 0.25, z 0.25.
# u2, baskets xy, y: one group: (0.5 * {x, y} + 1 * {y}) / 2 = x 0.25, y 0.75.
# u3: {w} = w 1.
U1 = {"x": 0.625, "y": 0.25, "z": 0.25}
U2 = {"x": 0.25, "y": 0.75}


def _fit(**params: float) -> TIFUKNN:
    base = {"group_size": 2, "within_decay": 0.5, "group_decay": 0.5, "n_neighbours": 1, "alpha": 0.6}
    return TIFUKNN(**{**base, **params}).fit(tiny())  # type: ignore[arg-type]


def _vector(model: TIFUKNN, customer: str) -> dict[str, float]:
    row = model.profile_[list(model.customer_ids_).index(customer)]
    return {str(model.item_ids_[j]): float(v) for j, v in zip(row.indices, row.data, strict=True)}


def test_the_personal_vector_is_the_grouped_time_decayed_frequency() -> None:
    model = _fit()
    assert _vector(model, "u1") == pytest.approx(U1)
    assert _vector(model, "u2") == pytest.approx(U2)
    assert _vector(model, "u3") == pytest.approx({"w": 1.0})
    assert list(model.customer_ids_) == ["u1", "u2", "u3"]  # the guest has no vector


def test_the_answer_blends_own_vector_and_the_neighbours_mean() -> None:
    model = _fit()
    # u1's only neighbour with a positive cosine is u2 (u3 shares nothing): 0.6 * u1 + 0.4 * u2
    got = {r.item_id: r.score for r in model.recommend(Query(customer_key="u1"), 10)}
    assert got == pytest.approx({"x": 0.6 * 0.625 + 0.4 * 0.25, "y": 0.6 * 0.25 + 0.4 * 0.75, "z": 0.6 * 0.25})
    recs = model.recommend(Query(customer_key="u2"), 10)
    assert [r.item_id for r in recs] == ["y", "x", "z"]
    assert [r.score for r in recs] == pytest.approx([0.6 * 0.75 + 0.4 * 0.25, 0.6 * 0.25 + 0.4 * 0.625, 0.4 * 0.25])
    # z: only the neighbour bought it
    assert [r.source for r in recs] == [RecSource.BUY_AGAIN, RecSource.BUY_AGAIN, RecSource.PERSONAL]
    # no neighbour for u3: its own vector only, weighted alpha
    assert [(r.item_id, r.score) for r in model.recommend(Query(customer_key="u3"), 10)] == [("w", 0.6)]


def test_alpha_one_is_the_own_vector_and_alpha_zero_the_neighbours() -> None:
    own = _fit(alpha=1.0).recommend(Query(customer_key="u1"), 10)
    assert {r.item_id: r.score for r in own} == pytest.approx(U1)
    others = _fit(alpha=0.0).recommend(Query(customer_key="u1"), 10)
    assert {r.item_id: r.score for r in others} == pytest.approx(U2)


def test_two_neighbours_are_averaged() -> None:
    more = pd.DataFrame(
        {
            IX.CUSTOMER: pd.array(["u4"], dtype="string"),
            IX.ITEM: ["x"],
            IX.BASKET: ["b8"],
            IX.TS: [pd.Timestamp("2025-03-02", tz="UTC")],
            IX.QUANTITY: [1.0],
            IX.EVENT: [InteractionKind.PURCHASE.value],
        }
    )
    model = TIFUKNN(group_size=2, within_decay=0.5, group_decay=0.5, n_neighbours=2, alpha=0.6).fit(
        pd.concat([tiny(), more], ignore_index=True)
    )
    got = {r.item_id: r.score for r in model.recommend(Query(customer_key="u1"), 10)}
    # neighbours u2 (x 0.25, y 0.75) and u4 (x 1), each weighing 0.4 / 2
    assert got == pytest.approx({"x": 0.6 * 0.625 + 0.2 * (0.25 + 1.0), "y": 0.6 * 0.25 + 0.2 * 0.75, "z": 0.15})


def test_exclusions_the_cart_and_cold_start() -> None:
    model = _fit()
    assert [r.item_id for r in model.recommend(Query(customer_key="u1", exclude=frozenset({"x"})), 10)] == ["y", "z"]
    assert [r.item_id for r in model.recommend(Query(customer_key="u1", cart=("y",)), 10)] == ["x", "z"]
    assert model.recommend(Query(customer_key="stranger"), 10) == []
    assert model.recommend(Query(cart=("x",)), 10) == []
    assert len(model.recommend(Query(customer_key="u1"), 1)) == 1


def test_basket_order_follows_time_not_row_order() -> None:
    shuffled = tiny().sample(frac=1.0, random_state=4)
    assert _vector(_fit(), "u1") == pytest.approx(_vector(TIFUKNN(2, 0.5, 0.5, 1, 0.6).fit(shuffled), "u1"))


def test_a_basket_only_export_without_timestamps_uses_row_order() -> None:
    model = TIFUKNN(2, 0.5, 0.5, 1, 0.6).fit(tiny().drop(columns=[IX.TS]))
    assert _vector(model, "u1") == pytest.approx(U1)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"group_size": 0}, "group_size"),
        ({"within_decay": 0.0}, "within_decay"),
        ({"group_decay": 1.5}, "group_decay"),
        ({"n_neighbours": 0}, "n_neighbours"),
        ({"alpha": -0.1}, "alpha"),
    ],
)
def test_bad_parameters_are_refused_by_name(params: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _fit(**params)


def test_rows_without_an_item_are_refused_not_dropped() -> None:
    frame = tiny()
    frame.loc[0, IX.ITEM] = None
    with pytest.raises(ValueError, match=r"1 purchase row\(s\) have no 'item_id'"):
        TIFUKNN().fit(frame)


def test_scores_are_finite_and_never_negative() -> None:
    scores = np.array([r.score for c in ("u1", "u2", "u3") for r in _fit().recommend(Query(customer_key=c), 10)])
    assert all(math.isfinite(s) and s > 0 for s in scores)
