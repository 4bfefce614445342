"""Purchase baskets as sparse matrices, and ranking a sparse score vector: shared by the basket models
(TIFU-KNN, UP-CF@r, the co-occurrence count and EASE).

:func:`basket_matrices` turns the interactions frame into integer codes: the items (sorted ids), the
known customers (sorted keys), the baskets in time order, the basket × item incidence (an item counts
once per basket, whatever its quantity) and each basket's customer. Only purchases count (views and
carts are ignored). Guest baskets (no customer) are kept for the item-item models and ignored by the
customer models.

Bad input is refused, never dropped: a purchase row without an item or a basket, or with a missing
timestamp when the frame has a timestamp column, raises ``ValueError`` naming the column and the count.
Baskets are ordered by their first line's time, ties by basket id (so the order of the rows does not
matter); without a timestamp column (a basket-only export) by their first row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.recs.base import IX, InteractionKind, Query
from models.recs.popular import epoch_seconds, factorize_sorted


@dataclass(frozen=True)
class Baskets:
    """Purchase baskets as codes.

    Attributes:
        item_ids: the items, sorted (an item's code is its position).
        customer_ids: the known customers, sorted.
        incidence: baskets × items CSR, 1.0 where the basket holds the item; rows in time order.
        basket_customer: per basket (row of ``incidence``), the customer's code, -1 for a guest.
        basket_time: per basket, its first line's time in epoch seconds (None: the frame has no times).
    """

    item_ids: np.ndarray
    customer_ids: np.ndarray
    incidence: sp.csr_matrix
    basket_customer: np.ndarray
    basket_time: np.ndarray | None = None

    def customer_baskets(self) -> tuple[np.ndarray, np.ndarray]:
        """(basket rows grouped by customer, oldest first within a customer; per-customer start offsets
        into it, length ``n_customers + 1``). Guest baskets are left out."""
        known = np.flatnonzero(self.basket_customer >= 0)
        order = known[np.argsort(self.basket_customer[known], kind="stable")]  # stable: keeps time order
        counts = np.bincount(self.basket_customer[known], minlength=len(self.customer_ids))
        return order, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def basket_matrices(interactions: pd.DataFrame) -> Baskets:
    """The purchase baskets of an interactions frame (see the module doc).

    Raises:
        ValueError: a needed column is missing, a purchase row lacks an item, basket or timestamp, or
            there is no purchase at all.
    """
    missing = [c for c in (IX.ITEM, IX.BASKET) if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions lack column(s) {missing}; see models.recs.base.IX")
    rows = interactions
    if IX.EVENT in rows.columns:
        event = rows[IX.EVENT].astype("string").fillna(InteractionKind.PURCHASE.value)
        rows = rows[(event == InteractionKind.PURCHASE.value).to_numpy(dtype=bool)]
    for col in (IX.ITEM, IX.BASKET, *([IX.TS] if IX.TS in rows.columns else [])):
        n_bad = int(rows[col].isna().sum())
        if n_bad:
            raise ValueError(f"interactions: {n_bad} purchase row(s) have no {col!r}; fix or remove them upstream")
    if rows.empty:
        raise ValueError("interactions hold no purchase to learn from")
    item_codes, item_ids = factorize_sorted(rows[IX.ITEM])
    has_time = IX.TS in rows.columns
    # with times, codes follow the basket ids (ties in time go by id, whatever the row order);
    # without, codes follow the first appearance (the export's order is the only order there is)
    basket_codes, _ = pd.factorize(rows[IX.BASKET].astype("string"), sort=has_time)
    n_baskets = int(basket_codes.max()) + 1
    if has_time:
        when = np.full(n_baskets, np.inf)
        np.minimum.at(when, basket_codes, epoch_seconds(rows[IX.TS]))
    else:
        when = np.arange(n_baskets, dtype=np.float64)
    order = np.lexsort((np.arange(n_baskets), when))
    rank = np.empty(n_baskets, dtype=np.int64)
    rank[order] = np.arange(n_baskets)
    basket_rows = rank[basket_codes]

    customer = rows[IX.CUSTOMER] if IX.CUSTOMER in rows.columns else pd.Series(pd.NA, index=rows.index)
    known = customer.notna().to_numpy(dtype=bool)
    basket_customer = np.full(n_baskets, -1, dtype=np.int64)
    if known.any():
        cust_codes, customer_ids = factorize_sorted(customer[known])
        # a basket belongs to the first customer named on it (an order has one customer in the contract)
        first = pd.Series(cust_codes).groupby(basket_rows[known], sort=False).first()
        basket_customer[first.index.to_numpy()] = first.to_numpy()
    else:
        customer_ids = np.array([], dtype=object)

    inc = sp.csr_matrix(
        (np.ones(len(basket_rows)), (basket_rows, item_codes)), shape=(n_baskets, len(item_ids)), dtype=np.float64
    )
    inc.sum_duplicates()
    inc.data[:] = 1.0
    return Baskets(
        item_ids=item_ids,
        customer_ids=customer_ids,
        incidence=inc,
        basket_customer=basket_customer,
        basket_time=when[order] if has_time else None,
    )


def categories_for(item_ids: np.ndarray, items: pd.DataFrame | None) -> np.ndarray:
    """Category per item id (None where the items frame has none or no row)."""
    if items is None or IX.CATEGORY not in items.columns or IX.ITEM not in items.columns:
        return np.full(len(item_ids), None, dtype=object)
    first = items.drop_duplicates(IX.ITEM)
    cats = pd.Series(first[IX.CATEGORY].astype("string").to_numpy(), index=first[IX.ITEM].astype(str).to_numpy())
    found = cats.reindex(item_ids)
    return np.array([None if pd.isna(v) else str(v) for v in found], dtype=object)


def names_for(item_ids: np.ndarray, items: pd.DataFrame | None) -> np.ndarray:
    """Item names for reasons; the id where the items frame has no name."""
    if items is None or IX.NAME not in items.columns or IX.ITEM not in items.columns:
        return item_ids.copy()
    first = items.drop_duplicates(IX.ITEM)
    names = pd.Series(first[IX.NAME].astype("string").to_numpy(), index=first[IX.ITEM].astype(str).to_numpy())
    found = names.reindex(item_ids)
    return np.array([str(i) if pd.isna(v) else str(v) for i, v in zip(item_ids, found, strict=True)], dtype=object)


def blocked_codes(query: Query, position: dict[str, int]) -> np.ndarray:
    """Codes of the items a query must never get back: its cart and its exclusions (unknown ids ignored)."""
    found = [position[x] for x in (*query.cart, *query.exclude) if x in position]
    return np.array(sorted(set(found)), dtype=np.int64)


def top_scored(
    index: np.ndarray,
    score: np.ndarray,
    k: int,
    blocked: np.ndarray,
    categories: np.ndarray,
    category: str | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of a sparse score vector: positive scores only, never a blocked code, only items of
    ``category`` when given; best first, ties by item code (so answers are deterministic).

    Args:
        index: item codes (distinct); score: their scores, aligned.
        k: how many at most.
        blocked: item codes never to return.
        categories: category per item code; category: the one to keep, or None for all.

    Returns:
        (item codes, scores), best first.
    """
    keep = score > 0
    if len(blocked):
        keep &= ~np.isin(index, blocked)
    if category is not None:
        keep &= categories[index] == category
    index, score = index[keep], score[keep]
    if k < 1 or not len(index):
        return index[:0], score[:0]
    if len(index) > k:
        kth = np.partition(score, len(score) - k)[len(score) - k]
        near = score >= kth  # every candidate that can still make the first k, ties included
        index, score = index[near], score[near]
    order = np.lexsort((index, -score))[:k]
    return index[order], score[order]


def sparse_row(matrix: sp.csr_matrix, row: int) -> tuple[np.ndarray, np.ndarray]:
    """(column indices, values) of one CSR row."""
    s, e = matrix.indptr[row], matrix.indptr[row + 1]
    return matrix.indices[s:e], matrix.data[s:e]


def csr_arrays(matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    """A CSR matrix as plain arrays for ``np.savez`` (no pickle)."""
    m = matrix.tocsr()
    return {"data": m.data, "indices": m.indices, "indptr": m.indptr, "shape": np.array(m.shape, dtype=np.int64)}


def csr_from(arrays: dict[str, np.ndarray], prefix: str) -> sp.csr_matrix:
    """The CSR matrix :func:`csr_arrays` wrote under ``prefix`` (keys ``prefix_data`` ...)."""
    shape = tuple(int(x) for x in arrays[f"{prefix}_shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape=shape
    )


def prefixed(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """``arrays`` with every key prefixed ``prefix_``."""
    return {f"{prefix}_{k}": v for k, v in arrays.items()}
