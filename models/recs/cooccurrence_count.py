"""The plain co-occurrence count: the basket-completion baseline any association measure must beat.

Fit counts, for every pair of items, the training baskets holding both (``C = Bᵀ·B`` over the basket ×
item incidence ``B``, an item counting once per basket; guest baskets included, the diagonal dropped)
and keeps each item's ``n_neighbours`` most frequent partners. The score of an item ``j`` for a cart is
``Σ_{i in cart} C[i, j]``: no popularity correction, no decay, which is exactly why it is a baseline.

Answers: the cart's partners (or ``query.item_id``'s when the cart is empty), never an item of the
cart or of ``exclude``; cart items the model never saw are ignored; a query with no known seed item
(a customer alone, a cart of unknown items) gets an empty list. The reason names the cart item with
the most baskets in common. ``query.now`` is not used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.base import Estimator, check_fitted
from models.recs.base import IX, Query, Recommendation, RecSource
from models.recs.baskets import (
    basket_matrices,
    blocked_codes,
    categories_for,
    csr_arrays,
    csr_from,
    names_for,
    prefixed,
    top_scored,
)
from models.recs.popular import load_npz, read_params, read_strings, write_params


class CooccurrenceCount(Estimator):
    """Items by the number of baskets they share with the cart's items (see the module doc).

    Args:
        n_neighbours: partners kept per item (the most frequent; ties by item id).

    Attributes (after fit):
        item_ids_, names_, categories_: the items (sorted), their names and categories.
        counts_: items × items CSR, the kept co-occurrence counts (row: the seed item).
    """

    source = RecSource.BOUGHT_TOGETHER

    def __init__(self, n_neighbours: int = 200) -> None:
        self.n_neighbours = n_neighbours

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Count the baskets every pair of items shares.

        Args:
            interactions: the interactions frame (purchases are used).
            items: the catalogue; names (for reasons) and categories (for ``query.category``).

        Returns:
            self.
        """
        if self.n_neighbours < 1:
            raise ValueError(f"CooccurrenceCount: n_neighbours must be at least 1, got {self.n_neighbours}")
        data = basket_matrices(interactions)
        inc = data.incidence.tocsc()
        counts = (inc.T @ inc).tocsr()
        counts.setdiag(0.0)
        counts.eliminate_zeros()
        self.item_ids_ = data.item_ids
        self.names_ = names_for(data.item_ids, items)
        self.categories_ = categories_for(data.item_ids, items)
        self.counts_ = keep_top_per_row(counts, self.n_neighbours)
        self._index()
        return self

    def _index(self) -> None:
        self._pos = {str(x): p for p, x in enumerate(self.item_ids_)}

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        """The items sharing the most baskets with the cart (see the module doc)."""
        check_fitted(self, "counts_")
        seeds = query.cart if query.cart else ((query.item_id,) if query.item_id is not None else ())
        seed_codes = sorted({self._pos[s] for s in seeds if s in self._pos})
        if k < 1 or not seed_codes:
            return []
        rows = self.counts_[seed_codes]
        summed = sp.csr_matrix(rows.sum(axis=0))
        blocked = np.union1d(blocked_codes(query, self._pos), np.array(seed_codes, dtype=np.int64))
        index, score = top_scored(
            summed.indices.astype(np.int64), summed.data, k, blocked, self.categories_, query.category
        )
        if not len(index):
            return []
        per_seed = rows[:, index].toarray()  # seeds × answers: who contributed most, for the reason
        strongest = per_seed.argmax(axis=0)
        out: list[Recommendation] = []
        for col, (item, value, s) in enumerate(zip(index.tolist(), score.tolist(), strongest.tolist(), strict=True)):
            n = int(per_seed[s, col])
            name = self.names_[seed_codes[s]]
            reason = f"bought together with {name} in {n} order{'' if n == 1 else 's'}"
            out.append(Recommendation(str(self.item_ids_[item]), float(value), RecSource.BOUGHT_TOGETHER, reason))
        return out

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]:
        """One answer per query, in order."""
        check_fitted(self, "counts_")
        return [self.recommend(q, k) for q in queries]

    def save(self, folder: Path) -> None:
        """Write ``params.json``, ``items.parquet`` and ``counts.npz`` into ``folder``."""
        check_fitted(self, "counts_")
        folder = Path(folder)
        write_params(folder, {"params": self.get_params()})
        _write_items(folder, self.item_ids_, self.names_, self.categories_)
        np.savez(folder / "counts.npz", **prefixed("counts", csr_arrays(self.counts_)))

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Rebuild a fitted model from :meth:`save`'s folder."""
        folder = Path(folder)
        model = cls(**read_params(folder)["params"])
        model.item_ids_, model.names_, model.categories_ = _read_items(folder)
        model.counts_ = csr_from(load_npz(folder / "counts.npz"), "counts")
        model._index()
        return model


def keep_top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row's ``k`` largest entries (ties by column), the rest dropped."""
    m = matrix.tocsr()
    m.sort_indices()
    n_rows = m.shape[0]
    row = np.repeat(np.arange(n_rows), np.diff(m.indptr))
    order = np.lexsort((m.indices, -m.data, row))
    rank = np.arange(len(order)) - m.indptr[row[order]]
    keep = order[rank < k]
    out = sp.csr_matrix((m.data[keep], (row[keep], m.indices[keep])), shape=m.shape)
    out.sort_indices()
    return out


def _write_items(folder: Path, ids: np.ndarray, names: np.ndarray, categories: np.ndarray) -> None:
    pd.DataFrame(
        {
            IX.ITEM: pd.array(ids, dtype="string"),
            IX.NAME: pd.array(names, dtype="string"),
            IX.CATEGORY: pd.array(categories, dtype="string"),
        }
    ).to_parquet(folder / "items.parquet", index=False)


def _read_items(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    path = folder / "items.parquet"
    return read_strings(path, IX.ITEM), read_strings(path, IX.NAME), read_strings(path, IX.CATEGORY)
