"""The answering half shared by the user-neighbour next-basket models (TIFU-KNN, UP-CF@r).

Both score a customer ``u``'s items as ``self_weight · profile[u] + Σ_v weight[u, v] · profile[v]``:
a per-customer item profile (a sparse customers × items matrix) and a sparse customers × customers
neighbour-weight matrix, both learnt by the subclass's ``fit``. This class answers queries, saves and
loads; it has no ``fit`` of its own, so it is not a model by itself.

Answers: only for a customer seen in training (anyone else, and an anonymous cart, gets an empty
list: the business-rule layer fills from its fallback); the customer's own items come back as
``BUY_AGAIN`` ("you bought this in N orders"), items only neighbours bought as ``PERSONAL``. Only
positive scores are returned, never an item of the cart or of ``exclude``; ties by item id.
``query.now`` is not used (the profiles are those of the training end).
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
from models.recs.baskets import blocked_codes, csr_arrays, csr_from, prefixed, sparse_row, top_scored
from models.recs.popular import load_npz, read_params, read_strings, write_params

NEIGHBOUR_REASON = "customers who shop like you buy this"


class _UserNeighbourModel(Estimator):
    """Answer, save and load for a fitted user-neighbour model (see the module doc).

    Fitted attributes (set by the subclass's ``fit``):
        item_ids_, categories_: the items (sorted) and their categories (None when unknown).
        customer_ids_: the customers (sorted).
        profile_: customers × items CSR, the item profile of each customer.
        neighbours_: customers × customers CSR, the weight of each neighbour (never the customer itself).
        orders_: customers × items CSR, the customer's orders holding the item (for reasons).
        self_weight_: the weight of the customer's own profile.
    """

    source = RecSource.PERSONAL

    def _set_fitted(
        self,
        item_ids: np.ndarray,
        categories: np.ndarray,
        customer_ids: np.ndarray,
        profile: sp.csr_matrix,
        neighbours: sp.csr_matrix,
        orders: sp.csr_matrix,
        self_weight: float,
    ) -> None:
        self.item_ids_ = item_ids
        self.categories_ = categories
        self.customer_ids_ = customer_ids
        self.profile_ = profile.tocsr()
        self.neighbours_ = neighbours.tocsr()
        self.orders_ = orders.tocsr()
        self.self_weight_ = float(self_weight)
        self._index()

    def _index(self) -> None:
        self._item_pos = {str(x): p for p, x in enumerate(self.item_ids_)}
        self._customer_pos = {str(x): p for p, x in enumerate(self.customer_ids_)}

    def scores(self, customer_key: str) -> tuple[np.ndarray, np.ndarray]:
        """(item codes, scores) of one known customer, before any filtering; empty for anyone else."""
        check_fitted(self, "profile_")
        u = self._customer_pos.get(customer_key)
        if u is None:
            return np.array([], dtype=np.int64), np.array([], dtype=np.float64)
        nbr, weight = sparse_row(self.neighbours_, u)
        users = np.concatenate([[u], nbr]).astype(np.int64)
        coef = np.concatenate([[self.self_weight_], weight])
        mix = sp.csr_matrix((coef, (np.zeros(len(users), dtype=np.int64), users)), shape=(1, len(self.customer_ids_)))
        row = (mix @ self.profile_).tocsr()
        row.sum_duplicates()
        return row.indices.astype(np.int64), row.data.astype(np.float64)

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        """The customer's best-scored items (see the module doc)."""
        check_fitted(self, "profile_")
        if k < 1 or query.customer_key is None:
            return []
        u = self._customer_pos.get(query.customer_key)
        if u is None:
            return []
        index, score = self.scores(query.customer_key)
        blocked = blocked_codes(query, self._item_pos)
        index, score = top_scored(index, score, k, blocked, self.categories_, query.category)
        own_items, own_orders = sparse_row(self.orders_, u)
        own = dict(zip(own_items.tolist(), own_orders.tolist(), strict=True))
        out = []
        for item, value in zip(index.tolist(), score.tolist(), strict=True):
            n = int(own.get(item, 0))
            if n:
                reason = f"you bought this in {n} order{'' if n == 1 else 's'}"
                out.append(Recommendation(str(self.item_ids_[item]), float(value), RecSource.BUY_AGAIN, reason))
            else:
                out.append(
                    Recommendation(str(self.item_ids_[item]), float(value), RecSource.PERSONAL, NEIGHBOUR_REASON)
                )
        return out

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]:
        """One answer per query, in order."""
        check_fitted(self, "profile_")
        return [self.recommend(q, k) for q in queries]

    def save(self, folder: Path) -> None:
        """Write ``params.json``, ``items.parquet``, ``customers.parquet`` and ``matrices.npz`` into ``folder``."""
        check_fitted(self, "profile_")
        folder = Path(folder)
        write_params(folder, {"params": self.get_params(), "self_weight": self.self_weight_})
        pd.DataFrame(
            {
                IX.ITEM: pd.array(self.item_ids_, dtype="string"),
                IX.CATEGORY: pd.array(self.categories_, dtype="string"),
            }
        ).to_parquet(folder / "items.parquet", index=False)
        pd.DataFrame({IX.CUSTOMER: pd.array(self.customer_ids_, dtype="string")}).to_parquet(
            folder / "customers.parquet", index=False
        )
        np.savez(
            folder / "matrices.npz",
            **prefixed("profile", csr_arrays(self.profile_)),
            **prefixed("neighbours", csr_arrays(self.neighbours_)),
            **prefixed("orders", csr_arrays(self.orders_)),
        )

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Rebuild a fitted model from :meth:`save`'s folder."""
        folder = Path(folder)
        meta = read_params(folder)
        model = cls(**meta["params"])
        arrays = load_npz(folder / "matrices.npz")
        model._set_fitted(
            item_ids=read_strings(folder / "items.parquet", IX.ITEM),
            categories=read_strings(folder / "items.parquet", IX.CATEGORY),
            customer_ids=read_strings(folder / "customers.parquet", IX.CUSTOMER),
            profile=csr_from(arrays, "profile"),
            neighbours=csr_from(arrays, "neighbours"),
            orders=csr_from(arrays, "orders"),
            self_weight=float(meta["self_weight"]),
        )
        return model


def top_k_per_row(sim: np.ndarray, k: int | None, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` largest positive entries of each row of a dense similarity block, the diagonal (row
    ``r`` is customer ``offset + r``) excluded; ties by column. Returns COO (rows, cols, values)."""
    n_rows = sim.shape[0]
    sim = sim.copy()
    r = np.arange(n_rows)
    sim[r, r + offset] = 0.0
    rows, cols, vals = [], [], []
    for i in range(n_rows):
        cand = np.flatnonzero(sim[i] > 0)
        v = sim[i, cand]
        if k is not None and len(cand) > k:
            kth = np.partition(v, len(v) - k)[len(v) - k]
            near = v >= kth
            cand, v = cand[near], v[near]
            order = np.lexsort((cand, -v))[:k]
            cand, v = cand[order], v[order]
        rows.append(np.full(len(cand), i + offset, dtype=np.int64))
        cols.append(cand.astype(np.int64))
        vals.append(v)
    if not rows:
        return np.array([], np.int64), np.array([], np.int64), np.array([], np.float64)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def row_blocks(n: int, size: int = 1024) -> list[tuple[int, int]]:
    """``[start, end)`` blocks covering ``range(n)`` (bounds the dense similarity block in memory)."""
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def customer_orders(basket_customer: np.ndarray, incidence: sp.csr_matrix, n_customers: int) -> sp.csr_matrix:
    """customers × items: each known customer's orders holding each item."""
    known = np.flatnonzero(basket_customer >= 0)
    owner = sp.csr_matrix(
        (np.ones(len(known)), (basket_customer[known], known)), shape=(n_customers, incidence.shape[0])
    )
    return (owner @ incidence).tocsr()
