"""TIFU-KNN: temporal item frequency plus user neighbours, for the next basket.

Hu, He, Gao & Zhang, "Modeling Personalized Item Frequency Information for Next-basket
Recommendation", SIGIR 2020. Our own implementation of the method as the paper describes it:

1. Each basket is a multi-hot vector over the items (an item counts once per basket).
2. A customer's ``n`` baskets, oldest first, are cut into groups of ``group_size`` (``m``) consecutive
   baskets, counted back from the most recent one, so that only the oldest group may hold fewer than
   ``m``. There are ``G = ceil(n / m)`` groups.
3. Within a group of ``x`` baskets ``b_1 .. b_x`` (oldest first) the group vector is
   ``(1/x) · Σ_j r_b^(x-j) · b_j``: the newest basket weighs 1, each older one ``r_b`` times less.
4. Across the groups ``g_1 .. g_G`` (oldest first) the customer's vector is
   ``(1/G) · Σ_i r_g^(G-i) · g_i``.
5. Neighbours: the ``n_neighbours`` customers whose vectors have the highest cosine similarity with
   the customer's (the customer excluded, only similarity > 0).
6. Score: ``alpha · own vector + (1 - alpha) · mean of the neighbours' vectors``.

Choices where the paper leaves room (documented so that a reader can check them): the authors' code
fixes the number of groups and finds neighbours by Euclidean distance; we follow the paper's text
(groups of ``m``) and use cosine, as the reality-check study (Li et al. 2023) describes the method;
the neighbour mean is over the neighbours found (fewer than ``n_neighbours`` when fewer customers share
an item). Guests' baskets are not used (they have no sequence). Cold start: a customer not seen in
training gets an empty list.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.recs.base import RecSource
from models.recs.baskets import basket_matrices, categories_for
from models.recs.user_knn import _UserNeighbourModel, customer_orders, row_blocks, top_k_per_row


class TIFUKNN(_UserNeighbourModel):
    """TIFU-KNN (see the module doc).

    Args:
        group_size: ``m``, baskets per group (the oldest group may hold fewer).
        within_decay: ``r_b`` in (0, 1], the decay from one basket to the next older one in a group.
        group_decay: ``r_g`` in (0, 1], the decay from one group to the next older one.
        n_neighbours: ``k``, the neighbours per customer.
        alpha: weight of the customer's own vector; ``1 - alpha`` goes to the neighbours' mean.

    Fitted attributes: those of :class:`~models.recs.user_knn._UserNeighbourModel`; ``profile_`` holds
    the time-decayed personal item-frequency vectors.
    """

    source = RecSource.PERSONAL

    def __init__(
        self,
        group_size: int = 7,
        within_decay: float = 0.9,
        group_decay: float = 0.7,
        n_neighbours: int = 300,
        alpha: float = 0.7,
    ) -> None:
        self.group_size = group_size
        self.within_decay = within_decay
        self.group_decay = group_decay
        self.n_neighbours = n_neighbours
        self.alpha = alpha

    def _check_params(self) -> None:
        if self.group_size < 1:
            raise ValueError(f"TIFUKNN: group_size must be at least 1, got {self.group_size}")
        for name in ("within_decay", "group_decay"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"TIFUKNN: {name} must be in (0, 1], got {value}")
        if self.n_neighbours < 1:
            raise ValueError(f"TIFUKNN: n_neighbours must be at least 1, got {self.n_neighbours}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"TIFUKNN: alpha must be in [0, 1], got {self.alpha}")

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Build each customer's time-decayed item-frequency vector and their neighbours.

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
            raise ValueError("TIFUKNN: no purchase has a customer key; it needs customers' basket sequences")
        profile = personal_vectors(
            data.basket_customer, data.incidence, n_customers, self.group_size, self.within_decay, self.group_decay
        )
        neighbours = cosine_neighbours(profile, self.n_neighbours)
        # the neighbours' mean: each found neighbour weighs (1 - alpha) / (neighbours found)
        found = np.diff(neighbours.indptr)
        per_row = np.where(found > 0, (1.0 - self.alpha) / np.maximum(found, 1), 0.0)
        neighbours.data[:] = np.repeat(per_row, found)
        self._set_fitted(
            item_ids=data.item_ids,
            categories=categories_for(data.item_ids, items),
            customer_ids=data.customer_ids,
            profile=profile,
            neighbours=neighbours,
            orders=customer_orders(data.basket_customer, data.incidence, n_customers),
            self_weight=self.alpha,
        )
        return self


def personal_vectors(
    basket_customer: np.ndarray,
    incidence: sp.csr_matrix,
    n_customers: int,
    group_size: int,
    within_decay: float,
    group_decay: float,
) -> sp.csr_matrix:
    """customers × items: TIFU-KNN's time-decayed personal item-frequency vectors (module doc, steps 2-4).

    ``incidence`` rows must be in time order (as :func:`~models.recs.baskets.basket_matrices` gives them).
    """
    known = np.flatnonzero(basket_customer >= 0)
    owner = basket_customer[known]
    order = np.argsort(owner, kind="stable")  # by customer, time order kept within
    rows, owner = known[order], owner[order]
    n_baskets = np.bincount(owner, minlength=n_customers)
    start = np.concatenate([[0], np.cumsum(n_baskets)])[:-1]
    age = (n_baskets[owner] - 1) - (np.arange(len(rows)) - start[owner])  # 0 for the customer's newest basket
    group = age // group_size  # 0 for the newest group
    in_group = age % group_size  # 0 for the newest basket of its group
    n_groups = -(-n_baskets // group_size)  # ceil
    oldest = n_groups[owner] - 1
    last_size = n_baskets[owner] - group_size * oldest  # size of the (possibly short) oldest group
    size = np.where(group == oldest, last_size, group_size)
    weight = within_decay**in_group / size * group_decay**group / n_groups[owner]
    mix = sp.csr_matrix((weight, (owner, rows)), shape=(n_customers, incidence.shape[0]))
    return (mix @ incidence).tocsr()


def cosine_neighbours(profile: sp.csr_matrix, k: int | None) -> sp.csr_matrix:
    """customers × customers CSR: each customer's ``k`` most cosine-similar others (similarity > 0),
    the similarity as the value; ties by customer code."""
    n = profile.shape[0]
    norms = np.sqrt(np.asarray(profile.multiply(profile).sum(axis=1)).ravel())
    unit = (sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ profile).tocsr()
    return similarity_neighbours(unit, unit.T.tocsc(), k, n)


def similarity_neighbours(left: sp.csr_matrix, right: sp.csc_matrix, k: int | None, n: int) -> sp.csr_matrix:
    """Top-``k`` neighbours per row of ``left @ right`` (an n × n similarity), computed in row blocks."""
    rows, cols, vals = [], [], []
    for s, e in row_blocks(n):
        block = (left[s:e] @ right).toarray()
        r, c, v = top_k_per_row(block, k, s)
        rows.append(r)
        cols.append(c)
        vals.append(v)
    out = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    out.sort_indices()
    return out
