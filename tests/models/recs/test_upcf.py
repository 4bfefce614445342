"""UP-CF@r against a hand computation on :mod:`tests.models.recs.tiny`."""

from __future__ import annotations

import pytest

from models.recs.base import Query, RecSource
from models.recs.upcf import UPCF
from tests.models.recs.tiny import BASKETS, tiny

# Items ever bought: u1 {x, y, z} (3), u2 {x, y} (2), u3 {w} (1); they share 2 items (u1, u2).
# alpha = 0.25: sim(u1, u2) = 2 / (3^0.25 * 2^0.75), sim(u2, u1) = 2 / (2^0.25 * 3^0.75); u3 shares nothing.
SIM_12 = 2 / (3**0.25 * 2**0.75)
SIM_21 = 2 / (2**0.25 * 3**0.75)


def _fit(**params: object) -> UPCF:
    base: dict[str, object] = {"recency": 1, "alpha": 0.25, "q": 2.0, "n_neighbours": None, "self_weight": 1.0}
    return UPCF(**{**base, **params}).fit(tiny())  # type: ignore[arg-type]


def _popularity(model: UPCF, customer: str) -> dict[str, float]:
    row = model.profile_[list(model.customer_ids_).index(customer)]
    return {str(model.item_ids_[j]): float(v) for j, v in zip(row.indices, row.data, strict=True)}


def test_recent_popularity_counts_the_last_r_baskets() -> None:
    # r = 1: the last basket only
    assert _popularity(_fit(), "u1") == pytest.approx({"x": 1.0, "z": 1.0})
    assert _popularity(_fit(), "u2") == pytest.approx({"y": 1.0})
    # r = 2: u1's last two baskets x, xz; u2's two baskets xy, y
    assert _popularity(_fit(recency=2), "u1") == pytest.approx({"x": 1.0, "z": 0.5})
    assert _popularity(_fit(recency=2), "u2") == pytest.approx({"x": 0.5, "y": 1.0})
    # all baskets (and r larger than the history): the share of all the customer's baskets
    assert _popularity(_fit(recency=None), "u1") == pytest.approx({"x": 1.0, "y": 1 / 3, "z": 1 / 3})
    assert _popularity(_fit(recency=10), "u1") == pytest.approx({"x": 1.0, "y": 1 / 3, "z": 1 / 3})


def test_the_asymmetric_cosine_is_kept_raised_to_q() -> None:
    model = _fit()
    sims = model.neighbours_.toarray()
    assert sims[0, 1] == pytest.approx(SIM_12**2)
    assert sims[1, 0] == pytest.approx(SIM_21**2)
    assert sims[0, 0] == sims[0, 2] == sims[2, 0] == 0.0  # never itself; nothing shared with u3
    assert _fit(alpha=0.5).neighbours_.toarray()[0, 1] == pytest.approx((2 / (3 * 2) ** 0.5) ** 2)  # plain cosine


def test_the_score_is_own_popularity_plus_the_neighbours_weighted_popularity() -> None:
    recs = _fit().recommend(Query(customer_key="u1"), 10)
    # own x 1, z 1 (tie: by item id), then y from u2 with weight sim^q
    assert [(r.item_id, r.source) for r in recs] == [
        ("x", RecSource.BUY_AGAIN),
        ("z", RecSource.BUY_AGAIN),
        ("y", RecSource.BUY_AGAIN),
    ]
    assert [r.score for r in recs] == pytest.approx([1.0, 1.0, SIM_12**2])
    recs = _fit().recommend(Query(customer_key="u2"), 10)
    assert {r.item_id: r.score for r in recs} == pytest.approx({"y": 1.0, "x": SIM_21**2, "z": SIM_21**2})
    assert {r.item_id: r.source for r in recs}["z"] == RecSource.PERSONAL


def test_self_weight_scales_the_own_term_only() -> None:
    recs = _fit(self_weight=0.5).recommend(Query(customer_key="u2"), 10)
    assert {r.item_id: r.score for r in recs} == pytest.approx({"y": 0.5, "x": SIM_21**2, "z": SIM_21**2})


def test_n_neighbours_keeps_the_most_similar() -> None:
    # u4 bought x only: sim(u1, u4) = 1 / 3^0.25 = 0.76 < sim(u1, u2) = 0.90
    frame = tiny([*BASKETS, ("u4", "b8", "x", 2)])
    every = UPCF(recency=1, alpha=0.25, q=1.0, n_neighbours=None).fit(frame)
    assert every.neighbours_[0].toarray().ravel() == pytest.approx([0.0, SIM_12, 0.0, 1 / 3**0.25])
    closest = UPCF(recency=1, alpha=0.25, q=1.0, n_neighbours=1).fit(frame)
    assert closest.neighbours_[0].toarray().ravel() == pytest.approx([0.0, SIM_12, 0.0, 0.0])


def test_exclusions_and_cold_start() -> None:
    model = _fit()
    assert [r.item_id for r in model.recommend(Query(customer_key="u1", exclude=frozenset({"x"})), 10)] == ["z", "y"]
    assert model.recommend(Query(customer_key="nobody"), 10) == []
    assert model.recommend(Query(), 10) == []


@pytest.mark.parametrize(
    ("params", "message"),
    [({"recency": 0}, "recency"), ({"alpha": 2.0}, "alpha"), ({"q": 0.0}, "q"), ({"self_weight": -1.0}, "self_weight")],
)
def test_bad_parameters_are_refused_by_name(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _fit(**params)
