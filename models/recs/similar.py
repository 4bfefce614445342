"""Similar items: cosine similarity of item factors, blended with a same-category bonus.

The item factors come from an :class:`~models.recs.personal.ImplicitRecommender` (a fitted one is
reused as is, otherwise one is fitted). Where the catalogue has categories, an item of the same
category as the query item gets a bonus (``category_weight``); an item with no factors (a cold item,
never bought or seen in training) is answered with the popular items of its own category.

A query is about ``query.item_id``, or, without one, about the items of the cart together (the mean
of the per-item scores). Reasons: "similar to {item name}" where the factors decide, "also in
{category}" where the category does.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd

from models.base import Estimator, check_fitted
from models.recs.base import IX, InteractionKind, Query, Recommendation, RecSource
from models.recs.personal import ARTIFACT_FORMAT, ImplicitRecommender, _top_k, read_model_meta

_TIE = 1e-6  # popularity breaks ties (cold candidates, equal category bonuses) without moving real scores


class SimilarItems(Estimator):
    """Item-to-item recommendations from item factors and categories.

    Args:
        base: the factor model; reused without refitting if already fitted, otherwise fitted in
            :meth:`fit` (a copy, ``base`` itself is left unfitted). None: an
            :class:`ImplicitRecommender` with its defaults.
        category_weight: share of the score given to "same category" (0: factors only; 1: category
            only); the factor share is ``1 - category_weight``.
    """

    source = RecSource.SIMILAR

    def __init__(self, base: ImplicitRecommender | None = None, category_weight: float = 0.3) -> None:
        self.base = base
        self.category_weight = category_weight

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Take item factors from the base model and categories and popularity from the data.

        Every item of ``items`` is in the catalogue, also one with no factors (cold); popularity is
        the number of distinct orders (or interactions, without order ids) that bought the item.
        """
        if not 0.0 <= self.category_weight <= 1.0:
            raise ValueError(f"category_weight must be in [0, 1], got {self.category_weight}")
        base = self.base if self.base is not None else ImplicitRecommender()
        if not hasattr(base, "item_factors_"):
            base = copy.copy(base).fit(interactions, items)
        warm = pd.Index(base.item_ids_.astype(str))
        catalogue_ids = warm
        if items is not None and IX.ITEM in items.columns:
            catalogue_ids = warm.append(pd.Index(items[IX.ITEM].dropna().astype(str))).unique()
        self.item_ids_ = catalogue_ids.to_numpy(dtype=object)

        factors = np.zeros((len(catalogue_ids), base.item_factors_.shape[1]), dtype=np.float32)
        factors[: len(warm)] = base.item_factors_
        norms = np.linalg.norm(factors, axis=1, keepdims=True)
        self.item_factors_ = np.where(norms > 0, factors / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
        self.has_factors_ = norms[:, 0] > 0

        names = pd.Series(base.item_names_, index=warm, dtype=object).reindex(catalogue_ids)
        cats = pd.Series(base.item_categories_, index=warm, dtype=object).reindex(catalogue_ids)
        if items is not None and IX.ITEM in items.columns:
            it = items.assign(**{IX.ITEM: items[IX.ITEM].astype(str)}).drop_duplicates(IX.ITEM).set_index(IX.ITEM)
            if IX.NAME in it.columns:
                given = it[IX.NAME].reindex(catalogue_ids)
                names = given.where(given.notna(), names)
            if IX.CATEGORY in it.columns:
                given = it[IX.CATEGORY].reindex(catalogue_ids)
                cats = given.where(given.notna(), cats)
        self.item_names_ = np.array(
            [str(i) if pd.isna(n) else str(n) for i, n in zip(catalogue_ids, names, strict=True)], dtype=object
        )
        self.item_categories_ = np.array([None if pd.isna(c) else str(c) for c in cats], dtype=object)
        self.popularity_ = _popularity(interactions, catalogue_ids)
        self._prepare()
        return self

    def _prepare(self) -> None:
        self._col = {it: j for j, it in enumerate(self.item_ids_)}
        codes, _ = pd.factorize(pd.Series(self.item_categories_, dtype=object))
        self._cat_code = codes  # -1: no category
        pop = self.popularity_.astype(np.float64)
        self._pop_rel = pop / pop.max() if len(pop) and pop.max() > 0 else np.zeros(len(pop))

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        """At most ``k`` items like ``query.item_id`` (or like the cart's items), best first."""
        return self.recommend_batch([query], k)[0]

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]:
        """Answers for many queries; the similarities of all their seed items in one matrix product."""
        seeds_per_query: list[np.ndarray] = []
        for q in queries:
            wanted = (q.item_id,) if q.item_id is not None else q.cart
            cols = [self._col[it] for it in dict.fromkeys(wanted) if it in self._col]
            seeds_per_query.append(np.asarray(cols, dtype=np.int64))
        out: list[list[Recommendation]] = [[] for _ in queries]
        all_seeds = np.concatenate(seeds_per_query) if seeds_per_query else np.empty(0, dtype=np.int64)
        if len(all_seeds) == 0 or k <= 0:
            return out
        factor_part, category_part = self._parts(all_seeds)
        bounds = np.cumsum([0, *(len(s) for s in seeds_per_query)])
        for qi, q in enumerate(queries):
            lo, hi = bounds[qi], bounds[qi + 1]
            if lo == hi:
                continue
            fp, cp = factor_part[lo:hi], category_part[lo:hi]
            score = (fp + cp).mean(axis=0) + _TIE * self._pop_rel
            ok = (fp + cp).max(axis=0) > 0
            ok &= ~self._blocked(q, seeds_per_query[qi])
            score = np.where(ok, score, -np.inf)
            top = _top_k(score, min(k, int(ok.sum())))
            seeds = seeds_per_query[qi]
            out[qi] = [
                Recommendation(
                    item_id=str(self.item_ids_[j]),
                    score=float(score[j]),
                    source=self.source,
                    reason=self._reason(int(j), seeds, fp[:, j], cp[:, j]),
                )
                for j in top
            ]
        return out

    def _parts(self, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Factor and category parts of the score of every item for each seed (rows)."""
        w = self.category_weight
        cos = self.item_factors_[seeds] @ self.item_factors_.T
        seed_cat = self._cat_code[seeds][:, None]
        same = (seed_cat == self._cat_code[None, :]) & (seed_cat >= 0)
        cold = ~self.has_factors_[seeds][:, None]
        factor_part = (1.0 - w) * cos
        # a warm seed gives the full bonus to its category; a cold one, having nothing else, ranks
        # its category by popularity (and still needs some weight when category_weight is 0)
        bonus = np.where(cold, max(w, _TIE) * self._pop_rel[None, :], w)
        return factor_part, np.where(same, bonus, 0.0)

    def _blocked(self, q: Query, seeds: np.ndarray) -> np.ndarray:
        mask = np.zeros(len(self.item_ids_), dtype=bool)
        mask[seeds] = True
        for it in (*q.cart, *q.exclude):
            j = self._col.get(it)
            if j is not None:
                mask[j] = True
        if q.category is not None:
            mask |= self.item_categories_ != q.category
        return mask

    def _reason(self, item: int, seeds: np.ndarray, fp: np.ndarray, cp: np.ndarray) -> str:
        best = int(np.argmax(fp + cp))
        if fp[best] >= cp[best]:
            return f"similar to {self.item_names_[seeds[best]]}"
        return f"also in {self.item_categories_[item]}"

    def save(self, folder: Path) -> None:
        """Write the model into ``folder``: JSON, Parquet and ``.npy`` files only."""
        check_fitted(self, "item_factors_")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": ARTIFACT_FORMAT,
            "class": type(self).__name__,
            "params": {
                "category_weight": self.category_weight,
                "base": self.base.get_params() if self.base is not None else None,
            },
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=2))
        np.save(folder / "item_factors.npy", self.item_factors_, allow_pickle=False)
        pd.DataFrame(
            {
                IX.ITEM: pd.array(self.item_ids_, dtype="string"),
                IX.NAME: pd.array(self.item_names_, dtype="string"),
                IX.CATEGORY: pd.array(self.item_categories_, dtype="string"),
                "popularity": self.popularity_,
                "has_factors": self.has_factors_,
            }
        ).to_parquet(folder / "items.parquet", index=False)

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Read a model written by :meth:`save` (no pickle anywhere)."""
        folder = Path(folder)
        meta = read_model_meta(folder, cls.__name__)
        base_params = meta["params"]["base"]
        model = cls(
            base=ImplicitRecommender(**base_params) if base_params is not None else None,
            category_weight=meta["params"]["category_weight"],
        )
        items = pd.read_parquet(folder / "items.parquet")
        model.item_factors_ = np.load(folder / "item_factors.npy", allow_pickle=False)
        model.item_ids_ = items[IX.ITEM].astype(str).to_numpy(dtype=object)
        model.item_names_ = items[IX.NAME].astype(str).to_numpy(dtype=object)
        model.item_categories_ = np.array([None if pd.isna(c) else str(c) for c in items[IX.CATEGORY]], dtype=object)
        model.popularity_ = items["popularity"].to_numpy(dtype=np.int64)
        model.has_factors_ = items["has_factors"].to_numpy(dtype=bool)
        model._prepare()
        return model


def _popularity(interactions: pd.DataFrame, catalogue: pd.Index) -> np.ndarray:
    ix = interactions[interactions[IX.ITEM].notna()]
    if IX.EVENT in ix.columns and (ix[IX.EVENT] == InteractionKind.PURCHASE.value).any():
        ix = ix[ix[IX.EVENT] == InteractionKind.PURCHASE.value]
    item = ix[IX.ITEM].astype(str)
    if IX.BASKET in ix.columns and ix[IX.BASKET].notna().all():
        counts = pd.DataFrame({"i": item.to_numpy(), "b": ix[IX.BASKET].astype(str).to_numpy()}).drop_duplicates()
        per_item = counts["i"].value_counts()
    else:
        per_item = item.value_counts()
    return per_item.reindex(catalogue, fill_value=0).to_numpy(dtype=np.int64)
