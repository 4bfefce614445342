"""EASE: an item-item model in closed form, for basket completion and the next basket.

Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019. With ``X`` the binary rows ×
items matrix (rows: customers, or baskets), ``G = XᵀX + λI`` and ``P = G⁻¹``, the weights are
``B = I − P · diagMat(1 / diag(P))``, i.e. ``B[i, j] = −P[i, j] / P[j, j]`` off the diagonal and 0 on it
(the paper's solution of ``min ‖X − XB‖² + λ‖B‖²`` subject to ``diag(B) = 0``). A row's scores are
``x · B``.

Only the ``max_items`` items in the most baskets are modelled (a dense ``max_items``² inverse: 5 000
items is 200 MB and seconds; 20 000 is 3.2 GB, so raise it only with the memory for it).

Rows: ``rows="customer"`` (each known customer's items ever bought; a guest basket is a row of its own)
suits the next basket; ``rows="basket"`` (one row per order) suits basket completion. Either model
answers both kinds of query:

- a cart (or ``query.item_id`` when the cart is empty) is the input row: ``BOUGHT_TOGETHER``;
- else a known customer's history (the items they bought) is the input row: the customer's own items
  come back as ``BUY_AGAIN``, others as ``PERSONAL``;
- else (an unknown customer, an anonymous query, items outside the modelled ones) the list is empty.

Only positive scores are returned, never an item of the cart or of ``exclude``; ties by item id.
``query.now`` is not used.
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
    sparse_row,
    top_scored,
)
from models.recs.cooccurrence_count import _read_items, _write_items
from models.recs.popular import load_npz, read_params, read_strings, write_params

ROWS = ("customer", "basket")


class EASE(Estimator):
    """EASE (see the module doc).

    Args:
        l2: ``λ``, the L2 penalty added to the Gram matrix's diagonal.
        max_items: the most frequent items modelled (the inverse is dense).
        rows: ``customer`` or ``basket``, what a row of ``X`` is.

    Attributes (after fit):
        item_ids_, names_, categories_: the modelled items (sorted), their names and categories.
        weights_: the ``max_items``² float32 matrix ``B`` (zero diagonal).
        customer_ids_: the known customers; history_: customers × modelled items CSR, 1 where bought.
    """

    source = RecSource.BOUGHT_TOGETHER

    def __init__(self, l2: float = 500.0, max_items: int = 5000, rows: str = "customer") -> None:
        self.l2 = l2
        self.max_items = max_items
        self.rows = rows

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Solve for ``B`` in closed form.

        Args:
            interactions: the interactions frame (purchases are used).
            items: the catalogue; names (for reasons) and categories (for ``query.category``).

        Returns:
            self.
        """
        if self.l2 <= 0:
            raise ValueError(f"EASE: l2 must be positive, got {self.l2}")
        if self.max_items < 1:
            raise ValueError(f"EASE: max_items must be at least 1, got {self.max_items}")
        if self.rows not in ROWS:
            raise ValueError(f"EASE: rows must be one of {ROWS}, got {self.rows!r}")
        data = basket_matrices(interactions)
        frequency = np.asarray(data.incidence.sum(axis=0)).ravel()
        by_frequency = np.lexsort((np.arange(len(frequency)), -frequency))  # ties by item id
        kept = np.sort(by_frequency[: self.max_items])
        inc = data.incidence[:, kept].tocsr()
        n_customers = len(data.customer_ids)
        known = np.flatnonzero(data.basket_customer >= 0)
        owner = sp.csr_matrix(
            (np.ones(len(known)), (data.basket_customer[known], known)), shape=(n_customers, inc.shape[0])
        )
        history = (owner @ inc).tocsr()
        history.data[:] = 1.0
        if self.rows == "basket":
            x = inc
        else:
            guests = np.flatnonzero(data.basket_customer < 0)
            x = sp.vstack([history, inc[guests]]).tocsr()
        self.weights_ = ease_weights(x, self.l2).astype(np.float32)
        self.item_ids_ = data.item_ids[kept]
        self.names_ = names_for(self.item_ids_, items)
        self.categories_ = categories_for(self.item_ids_, items)
        self.customer_ids_ = data.customer_ids
        self.history_ = history
        self._index()
        return self

    def _index(self) -> None:
        self._pos = {str(x): p for p, x in enumerate(self.item_ids_)}
        self._customer_pos = {str(x): p for p, x in enumerate(self.customer_ids_)}

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        """Items for the cart, else for the customer's history (see the module doc)."""
        check_fitted(self, "weights_")
        if k < 1:
            return []
        seeds = query.cart if query.cart else ((query.item_id,) if query.item_id is not None else ())
        if seeds:
            inputs = np.array(sorted({self._pos[s] for s in seeds if s in self._pos}), dtype=np.int64)
            own: set[int] = set()
            by_cart = True
        else:
            u = self._customer_pos.get(query.customer_key) if query.customer_key is not None else None
            inputs = sparse_row(self.history_, u)[0].astype(np.int64) if u is not None else np.array([], np.int64)
            own = set(inputs.tolist())
            by_cart = False
        if not len(inputs):
            return []
        scores = self.weights_[inputs].astype(np.float64).sum(axis=0)
        blocked = blocked_codes(query, self._pos)
        if by_cart:
            blocked = np.union1d(blocked, inputs)
        index, value = top_scored(np.arange(len(scores)), scores, k, blocked, self.categories_, query.category)
        out = []
        for item, v in zip(index.tolist(), value.tolist(), strict=True):
            if by_cart:
                seed = int(inputs[int(np.argmax(self.weights_[inputs, item]))])
                rec = Recommendation(
                    str(self.item_ids_[item]), float(v), RecSource.BOUGHT_TOGETHER, f"goes with {self.names_[seed]}"
                )
            elif item in own:
                rec = Recommendation(str(self.item_ids_[item]), float(v), RecSource.BUY_AGAIN, "you bought this before")
            else:
                rec = Recommendation(str(self.item_ids_[item]), float(v), RecSource.PERSONAL, "goes with what you buy")
            out.append(rec)
        return out

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]:
        """One answer per query, in order."""
        check_fitted(self, "weights_")
        return [self.recommend(q, k) for q in queries]

    def save(self, folder: Path) -> None:
        """Write ``params.json``, ``items.parquet``, ``customers.parquet`` and ``weights.npz`` into ``folder``."""
        check_fitted(self, "weights_")
        folder = Path(folder)
        write_params(folder, {"params": self.get_params()})
        _write_items(folder, self.item_ids_, self.names_, self.categories_)
        pd.DataFrame({IX.CUSTOMER: pd.array(self.customer_ids_, dtype="string")}).to_parquet(
            folder / "customers.parquet", index=False
        )
        np.savez(folder / "weights.npz", weights=self.weights_, **prefixed("history", csr_arrays(self.history_)))

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Rebuild a fitted model from :meth:`save`'s folder."""
        folder = Path(folder)
        model = cls(**read_params(folder)["params"])
        model.item_ids_, model.names_, model.categories_ = _read_items(folder)
        model.customer_ids_ = read_strings(folder / "customers.parquet", IX.CUSTOMER)
        arrays = load_npz(folder / "weights.npz")
        model.weights_ = arrays["weights"]
        model.history_ = csr_from(arrays, "history")
        model._index()
        return model


def ease_weights(x: sp.spmatrix, l2: float) -> np.ndarray:
    """EASE's ``B = I − P · diagMat(1 / diag(P))``, ``P = (XᵀX + l2·I)⁻¹`` (dense float64, zero diagonal)."""
    x = sp.csr_matrix(x, dtype=np.float64)
    gram = np.asarray((x.T @ x).toarray(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += l2
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b
