"""Time-decayed popularity, overall and per category, with a "trending" variant: the labelled fallback.

Each purchase (one order line; an item counted once per order) weighs ``exp(-ln 2 · age / half_life)``
with its age taken from the training end, so last month's best sellers beat last year's. The trending
variant ranks items by how much their recent sales exceed their longer-run rate (a smoothed ratio).

Also home of the small helpers the other count-based recommenders share (purchase rows, recency
weights, epoch seconds, exclusion sets).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from models.base import Estimator
from models.recs.base import IX, InteractionKind, Query, Recommendation, RecSource

SECONDS_PER_DAY = 86_400.0
PARAMS_FILE = "params.json"


def epoch_seconds(ts: pd.Series | pd.Index) -> np.ndarray:
    """Seconds since 1970-01-01 UTC as float64, whatever the timestamp unit (naive means UTC)."""
    t = pd.to_datetime(ts, utc=True)
    return np.asarray((t - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1), dtype=np.float64)


def to_epoch(moment: datetime | pd.Timestamp) -> float:
    """One moment as epoch seconds (naive means UTC)."""
    t = pd.Timestamp(moment)
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return float((t - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1))


def factorize_sorted(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, sorted unique strings) of a column: hash-based, much faster than ``np.unique`` on objects."""
    codes, uniques = pd.factorize(values.astype("string"), sort=True)
    return codes.astype(np.int64), np.array([str(u) for u in uniques], dtype=object)


def recency_weights(seconds: np.ndarray, end: float, half_life_days: float | None) -> np.ndarray:
    """``exp(-ln 2 · age / half_life)`` per row, age in days before ``end``; ones when half_life is None."""
    if half_life_days is None:
        return np.ones(len(seconds), dtype=np.float64)
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be positive or None, got {half_life_days}")
    age = np.maximum(end - seconds, 0.0) / SECONDS_PER_DAY
    return np.exp(-math.log(2.0) * age / half_life_days)


def check_interactions(interactions: pd.DataFrame, needed: Iterable[str]) -> None:
    """Raise a clear ValueError when the interactions frame lacks a column or is empty."""
    missing = [c for c in needed if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions lack column(s) {missing}; see models.recs.base.IX")


def purchases(interactions: pd.DataFrame) -> pd.DataFrame:
    """The purchase rows (all rows when there is no event column), with a known item and timestamp."""
    df = interactions
    if IX.EVENT in df.columns:
        df = df[df[IX.EVENT].astype("string").fillna(InteractionKind.PURCHASE.value) == InteractionKind.PURCHASE.value]
    return df[df[IX.ITEM].notna() & df[IX.TS].notna()]


def excluded_ids(query: Query) -> set[str]:
    """Items a query must never get back: its cart, its exclusions and the item it is about."""
    out = set(query.cart) | set(query.exclude)
    if query.item_id is not None:
        out.add(query.item_id)
    return out


def write_params(folder: Path, params: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PARAMS_FILE).write_text(json.dumps(params, indent=2, sort_keys=True), encoding="utf-8")


def read_params(folder: Path) -> dict[str, Any]:
    params: dict[str, Any] = json.loads((folder / PARAMS_FILE).read_text(encoding="utf-8"))
    return params


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, refusing pickled objects."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def read_strings(path: Path, column: str) -> np.ndarray:
    """One string column of a Parquet file as a NumPy object array of str (missing -> None)."""
    col = pd.read_parquet(path)[column].astype("string")
    return np.array([None if pd.isna(v) else str(v) for v in col], dtype=object)


class Popular(Estimator):
    """Time-decayed best sellers (or trending items), overall or within one category.

    Args:
        half_life_days: a purchase this many days before the training end counts half; None: no decay.
        trending: rank by the smoothed ratio of the recent rate to the longer-run rate instead.
        recent_days: the recent window of the trending ratio.
        long_days: the longer window of the trending ratio (includes the recent one).
        smoothing: pseudo-count added to both sides of the trending ratio (damps items with few sales).

    Attributes (after fit):
        item_ids_: items that were bought (ranked ones first is not implied: see ``order_``).
        score_: popularity (decayed count) or trending ratio per item of ``item_ids_``.
        category_: category per item (None when unknown).
        order_: indices into ``item_ids_`` of the ranked items, best first (score > 0).
        categories_: distinct categories; ``cat_indptr_`` slices ``cat_order_`` per category, best first.
        train_end_: the training end (epoch seconds).
    """

    source = RecSource.POPULAR

    def __init__(
        self,
        half_life_days: float | None = 30.0,
        trending: bool = False,
        recent_days: float = 7.0,
        long_days: float = 56.0,
        smoothing: float = 3.0,
    ) -> None:
        self.half_life_days = half_life_days
        self.trending = trending
        self.recent_days = recent_days
        self.long_days = long_days
        self.smoothing = smoothing

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Count purchases (once per order and item), weighted by recency; categories from ``items``."""
        check_interactions(interactions, [IX.ITEM, IX.BASKET, IX.TS])
        if not 0 < self.recent_days < self.long_days:
            raise ValueError(f"need 0 < recent_days < long_days, got {self.recent_days}, {self.long_days}")
        buys = purchases(interactions).drop_duplicates([IX.BASKET, IX.ITEM])
        if buys.empty:
            raise ValueError("no purchases to learn popularity from")
        secs = epoch_seconds(buys[IX.TS])
        end = float(secs.max())
        codes, ids = factorize_sorted(buys[IX.ITEM])
        n = len(ids)
        if self.trending:
            age = (end - secs) / SECONDS_PER_DAY
            recent = np.bincount(codes, weights=(age < self.recent_days).astype(float), minlength=n)
            long = np.bincount(codes, weights=(age < self.long_days).astype(float), minlength=n)
            expected = long * self.recent_days / self.long_days
            score = np.where(recent > 0, (recent + self.smoothing) / (expected + self.smoothing), 0.0)
        else:
            score = np.bincount(codes, weights=recency_weights(secs, end, self.half_life_days), minlength=n)
        self.item_ids_ = ids
        self.score_ = score.astype(np.float64)
        self.category_ = _categories_for(ids, items)
        self.train_end_ = end
        self._index()
        return self

    def _index(self) -> None:
        """Derived lookup arrays: the overall and per-category rankings (ties: item id order)."""
        ranked = np.argsort(-self.score_, kind="stable")
        self.order_ = ranked[self.score_[ranked] > 0]
        cats = np.array(["" if c is None else c for c in self.category_], dtype=object)
        known = np.array([c is not None for c in self.category_], dtype=bool)
        self.categories_ = np.unique(cats[known]) if known.any() else np.array([], dtype=object)
        ranked_cats = cats[self.order_]
        keep = known[self.order_]
        ordered, cat_items = ranked_cats[keep], self.order_[keep]
        pos = np.searchsorted(self.categories_, ordered) if len(self.categories_) else np.array([], dtype=int)
        by_cat = np.argsort(pos, kind="stable")
        self.cat_order_ = cat_items[by_cat]
        counts = np.bincount(pos, minlength=len(self.categories_)) if len(pos) else np.zeros(0, dtype=int)
        self.cat_indptr_ = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._cat_pos = {str(c): i for i, c in enumerate(self.categories_)}

    def ranked(self, category: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All ranked items (ids, scores), best first; only ``category``'s when given (empty if unknown)."""
        if category is None:
            idx = self.order_
        else:
            pos = self._cat_pos.get(category)
            idx = self.order_[:0] if pos is None else self.cat_order_[self.cat_indptr_[pos] : self.cat_indptr_[pos + 1]]
        return self.item_ids_[idx], self.score_[idx]

    def reason(self, category: str | None = None) -> str:
        """The human reason of an item from this ranking."""
        if self.trending:
            return "trending"
        return "popular this month" if category is None else f"popular in {category}"

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        """The best sellers (of ``query.category`` when given) not in the cart, exclusions or query item.

        ``query.now`` is not used: decay is relative to the training end, and moving "now" scales every
        score by the same factor, which leaves the ranking as it is.
        """
        ids, scores = self.ranked(query.category)
        banned = excluded_ids(query)
        reason = self.reason(query.category)
        out: list[Recommendation] = []
        for item, score in zip(ids[: k + len(banned)], scores[: k + len(banned)], strict=True):
            if item in banned:
                continue
            out.append(Recommendation(str(item), float(score), self.source, reason))
            if len(out) == k:
                break
        return out

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]:
        """One answer per query, in order (each is a slice of a precomputed ranking)."""
        return [self.recommend(q, k) for q in queries]

    def save(self, folder: Path) -> None:
        """Write ``params.json``, ``items.parquet`` and ``arrays.npz`` into ``folder``."""
        folder = Path(folder)
        write_params(folder, {"params": self.get_params(), "train_end": self.train_end_})
        pd.DataFrame(
            {IX.ITEM: pd.array(self.item_ids_, dtype="string"), IX.CATEGORY: pd.array(self.category_, dtype="string")}
        ).to_parquet(folder / "items.parquet", index=False)
        np.savez(folder / "arrays.npz", score=self.score_)

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Rebuild a fitted model from :meth:`save`'s folder."""
        folder = Path(folder)
        meta = read_params(folder)
        model = cls(**meta["params"])
        model.item_ids_ = read_strings(folder / "items.parquet", IX.ITEM)
        model.category_ = read_strings(folder / "items.parquet", IX.CATEGORY)
        model.score_ = load_npz(folder / "arrays.npz")["score"]
        model.train_end_ = float(meta["train_end"])
        model._index()
        return model


def _categories_for(ids: np.ndarray, items: pd.DataFrame | None) -> np.ndarray:
    """Category per item id (None where the items frame has none or no row)."""
    if items is None or IX.CATEGORY not in items.columns or IX.ITEM not in items.columns:
        return np.array([None] * len(ids), dtype=object)
    first = items[items[IX.ITEM].notna()].drop_duplicates(IX.ITEM)
    cat = pd.Series(first[IX.CATEGORY].astype("string").to_numpy(), index=first[IX.ITEM].astype("string").to_numpy())
    found = cat.reindex(ids)
    return np.array([None if pd.isna(v) else str(v) for v in found], dtype=object)
