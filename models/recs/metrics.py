"""Ranking and beyond-accuracy metrics for recommendations: pure functions on literal lists.

Every accuracy metric scores ONE ranked list against ONE set of relevant items (binary relevance);
average over queries to report a figure. Conventions:

- ``recommended`` is a ranked sequence, best first; only its first ``k`` entries count. It should
  hold no duplicates (every Kairos recommender guarantees this); a repeated hit is counted once.
- ``relevant`` must not be empty: a query with nothing relevant has no recall, so the functions
  raise :class:`ValueError` rather than silently scoring it 0 or 1.
- A list shorter than ``k`` is not padded: the missing places are misses.

Definitions (``hits@k`` = number of distinct relevant items among the first ``k``):

- recall@k = hits@k / |relevant|
- precision@k = hits@k / k (the denominator is ``k`` even if fewer items were returned)
- NDCG@k = DCG@k / IDCG@k, DCG@k = sum over ranks r = 1..k of rel_r / log2(r + 1), and IDCG@k is the
  DCG of a perfect list: sum over r = 1..min(|relevant|, k) of 1 / log2(r + 1)
- reciprocal rank = 1 / (rank of the first relevant item) if it is within the first ``k``, else 0;
  its mean over queries is MRR
- hit@k = 1 if hits@k > 0 else 0; its mean over queries is the hit rate

Beyond accuracy, over all lists a model produced in one evaluation:

- catalogue coverage = |distinct recommended items that are in the catalogue| / |catalogue|
- popularity percentile of an item = its rank by training popularity among all catalogue items
  (ascending, ties get their average rank) divided by the catalogue size: 1.0 for the most popular
  item, near 0 for never-bought ones (pandas ``rank(method="average", pct=True)``)
- popularity bias = mean popularity percentile over every recommended slot (all lists pooled); a
  recommender that only ever shows best sellers scores near 1.0, a uniform random one about 0.5
- ARP (average recommendation popularity, Abdollahpouri et al. 2019) = mean over lists of the mean
  training popularity (a raw count, e.g. orders containing the item) of the items in the list;
  empty lists are left out. Scale-dependent, so compare it only within one data set.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import pandas as pd

ItemT = TypeVar("ItemT", bound=Hashable)


def _check(relevant: Collection[Hashable], k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(relevant) == 0:
        raise ValueError("relevant is empty: the metric is undefined for a query with nothing relevant")


def _hit_flags(recommended: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> list[bool]:
    """Per rank (first ``k``), whether the item is relevant and not a repeat of an earlier hit."""
    seen: set[Hashable] = set()
    flags = []
    for item in recommended[:k]:
        hit = item in relevant and item not in seen
        if hit:
            seen.add(item)
        flags.append(hit)
    return flags


def recall_at_k(recommended: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Share of the relevant items found among the first ``k`` recommended.

    Args:
        recommended: ranked items, best first.
        relevant: the items that count as right (not empty).
        k: cut-off.

    Returns:
        hits@k / |relevant|, in [0, 1].

    Raises:
        ValueError: ``relevant`` is empty or ``k`` < 1.
    """
    _check(relevant, k)
    return sum(_hit_flags(recommended, relevant, k)) / len(set(relevant))


def precision_at_k(recommended: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Share of the ``k`` places filled with a relevant item (short lists are not padded away).

    Raises:
        ValueError: ``relevant`` is empty or ``k`` < 1.
    """
    _check(relevant, k)
    return sum(_hit_flags(recommended, relevant, k)) / k


def _dcg(flags: Iterable[bool]) -> float:
    return sum(1.0 / math.log2(rank + 1) for rank, hit in enumerate(flags, start=1) if hit)


def ndcg_at_k(recommended: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Normalised discounted cumulative gain with binary relevance and the log2(rank + 1) discount.

    The ideal DCG puts min(|relevant|, k) hits in the top places, so a perfect list scores 1.0.

    Raises:
        ValueError: ``relevant`` is empty or ``k`` < 1.
    """
    _check(relevant, k)
    ideal = _dcg([True] * min(len(set(relevant)), k))
    return _dcg(_hit_flags(recommended, relevant, k)) / ideal


def reciprocal_rank(recommended: Sequence[Hashable], relevant: Collection[Hashable], k: int | None = None) -> float:
    """1 / rank of the first relevant item, 0 if none is within the first ``k`` (or the whole list).

    Raises:
        ValueError: ``relevant`` is empty or ``k`` < 1.
    """
    cut = len(recommended) if k is None else k
    _check(relevant, max(cut, 1))
    for rank, item in enumerate(recommended[:cut], start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def hit_at_k(recommended: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """1.0 if any relevant item is among the first ``k``, else 0.0 (its mean is the hit rate).

    Raises:
        ValueError: ``relevant`` is empty or ``k`` < 1.
    """
    _check(relevant, k)
    return 1.0 if any(_hit_flags(recommended, relevant, k)) else 0.0


def catalogue_coverage(lists: Iterable[Sequence[Hashable]], catalogue: Collection[Hashable]) -> float:
    """Share of the catalogue that appears in at least one list.

    Args:
        lists: every list the model produced in the evaluation.
        catalogue: the item ids that could have been recommended (not empty).

    Returns:
        |distinct recommended items in the catalogue| / |catalogue|, in [0, 1].

    Raises:
        ValueError: the catalogue is empty.
    """
    if len(catalogue) == 0:
        raise ValueError("the catalogue is empty")
    shown = {item for items in lists for item in items}
    return len(shown & set(catalogue)) / len(set(catalogue))


def popularity_percentiles(popularity: Mapping[ItemT, float]) -> dict[ItemT, float]:
    """Each item's popularity percentile: average rank (ascending) / number of items.

    Args:
        popularity: training popularity per catalogue item; include never-bought items with 0.

    Returns:
        item -> percentile in (0, 1]; the most popular item gets 1.0 (unless tied).
    """
    if not popularity:
        return {}
    counts = pd.Series(popularity, dtype="float64")
    return dict(zip(counts.index, counts.rank(method="average", pct=True).to_numpy(), strict=True))


def popularity_bias(lists: Iterable[Sequence[ItemT]], percentiles: Mapping[ItemT, float]) -> float:
    """Mean popularity percentile over every recommended slot of every list (NaN if all are empty).

    Items missing from ``percentiles`` (outside the catalogue) count as 0, the least popular.
    """
    values = [percentiles.get(item, 0.0) for items in lists for item in items]
    return float(np.mean(values)) if values else float("nan")


def average_recommendation_popularity(lists: Iterable[Sequence[ItemT]], popularity: Mapping[ItemT, float]) -> float:
    """ARP: the mean over non-empty lists of the mean raw training popularity of the list's items.

    Items missing from ``popularity`` count as 0. NaN if every list is empty.
    """
    means = [float(np.mean([popularity.get(item, 0.0) for item in items])) for items in lists if len(items)]
    return float(np.mean(means)) if means else float("nan")
