"""Metric functions on literal lists with hand-computed answers."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from models.recs import metrics as m

LOG2_3 = math.log2(3)  # discount at rank 2
LOG2_6 = math.log2(6)  # discount at rank 5

# hits at ranks 2 and 5; "x" is relevant but never recommended
RECS = ["a", "b", "c", "d", "e"]
REL = {"b", "e", "x"}


def test_recall_and_precision_count_hits_in_the_first_k() -> None:
    assert m.recall_at_k(RECS, REL, 5) == pytest.approx(2 / 3)
    assert m.precision_at_k(RECS, REL, 5) == pytest.approx(2 / 5)
    assert m.recall_at_k(RECS, REL, 3) == pytest.approx(1 / 3)
    assert m.precision_at_k(RECS, REL, 3) == pytest.approx(1 / 3)
    assert m.recall_at_k(RECS, REL, 1) == 0.0


def test_ndcg_uses_log2_discount_and_ideal_over_min_relevant_k() -> None:
    idcg3 = 1 + 1 / LOG2_3 + 1 / 2  # three relevant items fit in the top 5
    assert m.ndcg_at_k(RECS, REL, 5) == pytest.approx((1 / LOG2_3 + 1 / LOG2_6) / idcg3)
    assert m.ndcg_at_k(RECS, REL, 5) == pytest.approx(0.477624, abs=1e-6)
    assert m.ndcg_at_k(RECS, REL, 3) == pytest.approx((1 / LOG2_3) / idcg3)
    # more relevant items than k: the ideal list has k hits, so two hits in two places is perfect
    assert m.ndcg_at_k(["a", "b"], {"a", "b", "c"}, 2) == pytest.approx(1.0)
    assert m.ndcg_at_k(["z", "a"], {"a"}, 2) == pytest.approx(1 / LOG2_3)
    assert m.ndcg_at_k(["z"], {"a"}, 10) == 0.0


def test_reciprocal_rank_and_hit() -> None:
    assert m.reciprocal_rank(RECS, REL) == pytest.approx(0.5)
    assert m.reciprocal_rank(RECS, REL, 1) == 0.0
    assert m.reciprocal_rank(["q", "r", "s", "a"], {"a"}, 10) == pytest.approx(0.25)
    assert m.reciprocal_rank(["q"], {"a"}, 10) == 0.0
    assert m.hit_at_k(RECS, REL, 2) == 1.0
    assert m.hit_at_k(RECS, REL, 1) == 0.0


def test_short_lists_are_not_padded_and_repeats_count_once() -> None:
    assert m.precision_at_k(["a"], {"a"}, 5) == pytest.approx(0.2)
    assert m.recall_at_k(["a", "a"], {"a", "b"}, 2) == pytest.approx(0.5)
    assert m.precision_at_k(["a", "a"], {"a"}, 2) == pytest.approx(0.5)
    assert m.ndcg_at_k(["a", "a"], {"a"}, 2) == pytest.approx(1.0)
    assert m.recall_at_k([], {"a"}, 10) == 0.0


@pytest.mark.parametrize(
    "fn", [m.recall_at_k, m.precision_at_k, m.ndcg_at_k, m.hit_at_k, m.reciprocal_rank], ids=lambda f: f.__name__
)
def test_empty_relevant_set_is_an_error_not_a_score(fn: Callable[..., float]) -> None:
    with pytest.raises(ValueError, match="relevant is empty"):
        fn(["a"], set(), 5)


def test_k_below_one_is_an_error() -> None:
    with pytest.raises(ValueError, match="k must be"):
        m.recall_at_k(["a"], {"a"}, 0)


def test_catalogue_coverage_counts_distinct_catalogue_items() -> None:
    lists = [["a", "b"], ["b", "c"], ["z"], []]
    assert m.catalogue_coverage(lists, {"a", "b", "c", "d"}) == pytest.approx(3 / 4)  # "z" is not in the catalogue
    with pytest.raises(ValueError):
        m.catalogue_coverage(lists, set())


def test_popularity_percentiles_average_ties() -> None:
    pct = m.popularity_percentiles({"a": 10, "b": 5, "c": 1, "d": 1})
    assert pct == pytest.approx({"a": 1.0, "b": 0.75, "c": 0.375, "d": 0.375})
    assert m.popularity_percentiles({}) == {}


def test_popularity_bias_pools_every_slot() -> None:
    pct = {"a": 1.0, "b": 0.75, "c": 0.375, "d": 0.375}
    assert m.popularity_bias([["a", "b"], ["c"]], pct) == pytest.approx((1 + 0.75 + 0.375) / 3)
    assert m.popularity_bias([["a"], ["zz"]], pct) == pytest.approx(0.5)  # unknown item counts as 0
    assert math.isnan(m.popularity_bias([[], []], pct))


def test_arp_averages_per_list_then_over_lists() -> None:
    pop = {"a": 10.0, "b": 5.0, "c": 1.0}
    assert m.average_recommendation_popularity([["a", "b"], ["c"], []], pop) == pytest.approx((7.5 + 1.0) / 2)
    assert math.isnan(m.average_recommendation_popularity([[]], pop))
