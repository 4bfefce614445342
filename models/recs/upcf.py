"""UP-CF@r: recency-aware user-popularity collaborative filtering, for the next basket.

Faggioli, Polato & Aiolli, "Recency Aware Collaborative Filtering for Next Basket Recommendation",
UMAP 2020. Our own implementation of the method as the paper describes it:

1. Recency-aware user-wise popularity: ``π_u(i)`` = the share of the customer's ``r`` most recent
   baskets that hold item ``i`` (all baskets when the customer has fewer than ``r``, or when
   ``recency`` is None): ``count / min(r, n_u)``.
2. Asymmetric cosine similarity between customers on their binary customer × item matrix (every item
   they ever bought): ``sim(u, v) = |I_u ∩ I_v| / (|I_u|^alpha · |I_v|^(1 - alpha))``; ``alpha = 0.5``
   is the plain cosine.
3. Locality: similarities are raised to the power ``q`` (a large ``q`` leaves only the closest
   customers any say).
4. Score: ``s(u, i) = Σ_v sim(u, v)^q · π_v(i)``. The sum in the paper runs over every customer,
   ``u`` included, whose similarity with itself is 1: that term is the customer's own popularity
   ``π_u(i)``. ``self_weight`` is its weight (1.0 is the paper's model; other values let a tuner trade
   repeat against explore); ``n_neighbours`` keeps only the most similar others (None: all with
   similarity > 0, as in the paper, at the cost of memory on large customer bases).

Guests' baskets are not used. Cold start: a customer not seen in training gets an empty list.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.recs.base import RecSource
from models.recs.baskets import basket_matrices, categories_for
from models.recs.tifuknn import similarity_neighbours
from models.recs.user_knn import _UserNeighbourModel, customer_orders


class UPCF(_UserNeighbourModel):
    """UP-CF@r (see the module doc).

    Args:
        recency: ``r``, the most recent baskets per customer the popularity counts; None: all.
        alpha: asymmetry of the cosine, in [0, 1].
        q: locality exponent applied to the similarities (>= 1 in the paper; any value > 0 accepted).
        n_neighbours: the most similar other customers kept; None: all with similarity > 0.
        self_weight: weight of the customer's own popularity (1.0 in the paper).
    """

    source = RecSource.PERSONAL

    def __init__(
        self,
        recency: int | None = 5,
        alpha: float = 0.25,
        q: float = 5.0,
        n_neighbours: int | None = 300,
        self_weight: float = 1.0,
    ) -> None:
        self.recency = recency
        self.alpha = alpha
        self.q = q
        self.n_neighbours = n_neighbours
        self.self_weight = self_weight

    def _check_params(self) -> None:
        if self.recency is not None and self.recency < 1:
            raise ValueError(f"UPCF: recency must be at least 1 or None, got {self.recency}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"UPCF: alpha must be in [0, 1], got {self.alpha}")
        if self.q <= 0:
            raise ValueError(f"UPCF: q must be positive, got {self.q}")
        if self.n_neighbours is not None and self.n_neighbours < 1:
            raise ValueError(f"UPCF: n_neighbours must be at least 1 or None, got {self.n_neighbours}")
        if self.self_weight < 0:
            raise ValueError(f"UPCF: self_weight must be >= 0, got {self.self_weight}")

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Learn each customer's recent popularity and their weighted neighbours.

        Args:
            interactions: the interactions frame (purchases are used; timestamps order the baskets).
            items: the catalogue; only its categories are used (for ``query.category``).

        Returns:
            self.
        """
        self._check_params()
        data = basket_matrices(interactions)
        n_customers = len(data.customer_ids)
        if n_customers == 0:
            raise ValueError("UPCF: no purchase has a customer key; it needs customers' basket sequences")
        orders = customer_orders(data.basket_customer, data.incidence, n_customers)
        popularity = recent_popularity(data.basket_customer, data.incidence, n_customers, self.recency)
        neighbours = asymmetric_cosine_neighbours(orders, self.alpha, self.n_neighbours)
        neighbours.data = neighbours.data**self.q
        self._set_fitted(
            item_ids=data.item_ids,
            categories=categories_for(data.item_ids, items),
            customer_ids=data.customer_ids,
            profile=popularity,
            neighbours=neighbours,
            orders=orders,
            self_weight=self.self_weight,
        )
        return self


def recent_popularity(
    basket_customer: np.ndarray, incidence: sp.csr_matrix, n_customers: int, recency: int | None
) -> sp.csr_matrix:
    """customers × items: the share of each customer's ``recency`` most recent baskets holding each item.

    ``incidence`` rows must be in time order.
    """
    known = np.flatnonzero(basket_customer >= 0)
    owner = basket_customer[known]
    order = np.argsort(owner, kind="stable")
    rows, owner = known[order], owner[order]
    n_baskets = np.bincount(owner, minlength=n_customers)
    start = np.concatenate([[0], np.cumsum(n_baskets)])[:-1]
    age = (n_baskets[owner] - 1) - (np.arange(len(rows)) - start[owner])  # 0 for the newest basket
    window = n_baskets if recency is None else np.minimum(n_baskets, recency)
    use = age < window[owner]
    weight = 1.0 / window[owner[use]]
    mix = sp.csr_matrix((weight, (owner[use], rows[use])), shape=(n_customers, incidence.shape[0]))
    return (mix @ incidence).tocsr()


def asymmetric_cosine_neighbours(orders: sp.csr_matrix, alpha: float, k: int | None) -> sp.csr_matrix:
    """customers × customers CSR: ``|I_u ∩ I_v| / (|I_u|^alpha |I_v|^(1-alpha))`` for each customer's
    ``k`` most similar others (similarity > 0; the customer itself excluded)."""
    binary = orders.copy().tocsr()
    binary.data[:] = 1.0
    size = np.asarray(binary.sum(axis=1)).ravel()
    safe = np.where(size > 0, size, 1.0)
    left = (sp.diags(safe**-alpha) @ binary).tocsr()
    right = (binary.T @ sp.diags(safe ** -(1.0 - alpha))).tocsc()
    return similarity_neighbours(left, right, k, binary.shape[0])
