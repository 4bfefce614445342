"""Bought together: item-to-item association from baskets, corrected for popularity.

Fit builds the item × basket incidence matrix ``B`` (scipy.sparse; an item counts once per basket),
weighs each basket by ``exp(-ln 2 · age / half_life)`` (age from the training end), and gets the
weighted co-occurrence ``C = B · diag(w) · Bᵀ`` and the raw co-occurring basket counts ``N = B · Bᵀ``.
With ``c_i`` the weighted baskets holding item ``i`` and ``W`` the total basket weight:

- ``lift``:   ``C_ij · W / (c_i · c_j)``  (observed / expected under independence)
- ``cosine``: ``C_ij / sqrt(c_i · c_j)``
- ``pmi``:    ``log(lift)``

Lift and PMI keep only pairs that go together more often than chance (lift > 1). Pairs seen in fewer
than ``min_support`` baskets are dropped; every score is shrunk by ``n / (n + shrinkage)`` (``n`` raw
co-occurring baskets) so a pair seen twice does not outrank one seen two hundred times. The top
``n_neighbours`` per item are kept as CSR-like arrays for fast cart queries.

A cart query sums, per candidate, its scores as a neighbour of each cart item (an item that goes with
several cart items rises), drops the cart and the exclusions, and names the cart item with the
strongest single association in the reason.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.base import Estimator
from models.recs.base import IX, InteractionKind, Query, Recommendation, RecSource
from models.recs.popular import (
    check_interactions,
    epoch_seconds,
    factorize_sorted,
    load_npz,
    read_params,
    read_strings,
    recency_weights,
    write_params,
)

MEASURES = ("lift", "cosine", "pmi")
SESSION_EVENTS = (InteractionKind.VIEW.value, InteractionKind.ADD_TO_CART.value)


class BoughtTogether(Estimator):
    """Items bought in the same orders (optionally seen in the same sessions) as the cart's items.

    Args:
        measure: association measure, one of ``lift``, ``cosine``, ``pmi`` (see the module doc).
        min_support: the fewest co-occurring baskets a pair needs.
        shrinkage: ``score · n / (n + shrinkage)``; 0 turns shrinkage off.
        half_life_days: a basket this many days older than the training end weighs half; None: no decay.
        n_neighbours: neighbours kept per item.
        use_sessions: also treat the views / add-to-carts of one session (rows whose ``IX.EVENT`` is
            ``view`` or ``add_to_cart``, grouped by ``IX.BASKET``) as a basket.
        session_weight: weight of a session basket relative to an order.

    Attributes (after fit):
        item_ids_: the items, sorted; ``names_``: their names (the id when unknown).
        nbr_indptr_: ``nbr_*_[nbr_indptr_[i]:nbr_indptr_[i+1]]`` are item ``i``'s neighbours, best first.
        nbr_index_, nbr_score_, nbr_orders_: neighbour item index, score, co-occurring orders.
        train_end_: the training end (epoch seconds).
    """

    source = RecSource.BOUGHT_TOGETHER

    def __init__(
        self,
        measure: str = "cosine",
        min_support: int = 2,
        shrinkage: float = 5.0,
        half_life_days: float | None = 365.0,
        n_neighbours: int = 100,
        use_sessions: bool = False,
        session_weight: float = 0.5,
    ) -> None:
        self.measure = measure
        self.min_support = min_support
        self.shrinkage = shrinkage
        self.half_life_days = half_life_days
        self.n_neighbours = n_neighbours
        self.use_sessions = use_sessions
        self.session_weight = session_weight

    def _check_params(self) -> None:
        if self.measure not in MEASURES:
            raise ValueError(f"measure must be one of {MEASURES}, got {self.measure!r}")
        if self.min_support < 1:
            raise ValueError(f"min_support must be at least 1, got {self.min_support}")
        if self.shrinkage < 0:
            raise ValueError(f"shrinkage must be >= 0, got {self.shrinkage}")
        if self.n_neighbours < 1:
            raise ValueError(f"n_neighbours must be at least 1, got {self.n_neighbours}")

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Learn the neighbour lists from baskets; item names (for reasons) from ``items``."""
        self._check_params()
        check_interactions(interactions, [IX.ITEM, IX.BASKET, IX.TS])
        rows = _basket_rows(interactions, self.use_sessions)
        if rows.empty:
            raise ValueError("no baskets to learn from")
        item_codes, ids = factorize_sorted(rows[IX.ITEM])
        basket_codes, basket_keys = pd.factorize(rows["_basket"])
        n_items, n_baskets = len(ids), len(basket_keys)

        secs = rows["_seconds"].to_numpy(dtype=np.float64)
        end = float(secs.max())
        basket_secs = np.full(n_baskets, -np.inf)
        np.maximum.at(basket_secs, basket_codes, secs)
        is_session = np.zeros(n_baskets, dtype=bool)
        is_session[basket_codes] = rows["_session"].to_numpy(dtype=bool)
        # Floor the weight so very old baskets keep their place in the sparsity pattern of C.
        w = np.maximum(recency_weights(basket_secs, end, self.half_life_days), 1e-12)
        w = np.where(is_session, w * self.session_weight, w)

        ones = np.ones(len(rows), dtype=np.float64)
        inc = sp.csr_matrix((ones, (item_codes, basket_codes)), shape=(n_items, n_baskets))
        inc.sum_duplicates()
        inc.data[:] = 1.0
        item_weight = np.asarray(inc @ w).ravel()
        total_weight = float(w.sum())

        weighted = (inc @ sp.diags(w) @ inc.T).tocsr()
        support = (inc @ inc.T).tocsr()
        orders_inc = inc[:, np.flatnonzero(~is_session)]
        orders = (orders_inc @ orders_inc.T).tocsr() if self.use_sessions else support
        for m in (weighted, support, orders):
            m.sort_indices()
        if not (np.array_equal(weighted.indptr, support.indptr) and np.array_equal(weighted.indices, support.indices)):
            raise RuntimeError("co-occurrence patterns disagree")  # cannot happen with positive weights

        i = np.repeat(np.arange(n_items), np.diff(support.indptr))
        j = support.indices
        n = support.data
        cw = weighted.data
        n_orders = np.asarray(orders[i, j]).ravel() if self.use_sessions else n
        keep = (i != j) & (n >= self.min_support)
        i, j, n, cw, n_orders = i[keep], j[keep], n[keep], cw[keep], n_orders[keep]
        score = association(cw, item_weight[i], item_weight[j], total_weight, self.measure)
        score = score * (n / (n + self.shrinkage))
        good = score > 0
        i, j, n_orders, score = i[good], j[good], n_orders[good], score[good]

        # Best first within each item; ties by neighbour index so answers are deterministic.
        # Two stable passes (score, then item) instead of a three-key lexsort: j is already ascending.
        order = np.argsort(-score, kind="stable")
        order = order[np.argsort(i[order], kind="stable")]
        i, j, n_orders, score = i[order], j[order], n_orders[order], score[order]
        counts = np.bincount(i, minlength=n_items)
        starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
        rank = np.arange(len(i)) - starts[i]
        top = rank < self.n_neighbours
        kept = np.bincount(i[top], minlength=n_items)

        self.item_ids_ = ids
        self.names_ = _names_for(ids, items)
        self.nbr_indptr_ = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
        self.nbr_index_ = j[top].astype(np.int32)
        self.nbr_score_ = score[top].astype(np.float64)
        self.nbr_orders_ = np.rint(n_orders[top]).astype(np.int64)
        self.train_end_ = end
        self._index()
        return self

    def _index(self) -> None:
        self._pos = {str(item): p for p, item in enumerate(self.item_ids_)}
        # plain Python copies for the per-answer work: numpy indexes one element at a time slowly
        self._ids = [str(i) for i in self.item_ids_]
        self._names = [str(n) for n in self.names_]
        self._bounds = list(zip(self.nbr_indptr_[:-1].tolist(), self.nbr_indptr_[1:].tolist(), strict=True))

    def neighbours(self, item_id: str) -> list[tuple[str, float, int]]:
        """Item ``item_id``'s kept neighbours as ``(item_id, score, co-occurring orders)``, best first."""
        p = self._pos.get(item_id)
        if p is None:
            return []
        s, e = self.nbr_indptr_[p], self.nbr_indptr_[p + 1]
        return [
            (str(self.item_ids_[j]), float(sc), int(o))
            for j, sc, o in zip(self.nbr_index_[s:e], self.nbr_score_[s:e], self.nbr_orders_[s:e], strict=True)
        ]

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        """Items that go with the cart (or with ``query.item_id`` when the cart is empty).

        The score of a candidate is the sum of its scores as a neighbour of each cart item; the reason
        names the cart item with the strongest single association and their co-occurring orders.
        """
        seeds = query.cart if query.cart else ((query.item_id,) if query.item_id is not None else ())
        pos = self._pos
        seed_pos = [p for p in (pos.get(s) for s in seeds) if p is not None]
        if not seed_pos or k <= 0:
            return []
        # Cart items and exclusions are never returned: skipped below, so at most len(banned) extra are ranked.
        banned = {p for p in (pos.get(x) for x in (*seeds, *query.exclude)) if p is not None}
        want = k + len(banned)
        if len(seed_pos) == 1:
            # One seed: its list is the answer's order already (best first, ties by item, as the sort below
            # ranks them), so the first ``want`` rows are the ranked candidates.
            s, e = self._bounds[seed_pos[0]]
            e = min(e, s + want)
            items = self.nbr_index_[s:e].tolist()
            totals = self.nbr_score_[s:e].tolist()
            counts = self.nbr_orders_[s:e].tolist()
            seed_of = [seed_pos[0]] * len(items)
        else:
            items, totals, counts, seed_of = self._merged(seed_pos, want)
        source, ids, names = self.source, self._ids, self._names
        out: list[Recommendation] = []
        for item, t, n, seed in zip(items, totals, counts, seed_of, strict=True):
            if item in banned:
                continue
            out.append(Recommendation(ids[item], t, source, _reason(names[seed], n)))
            if len(out) == k:
                break
        return out

    def _merged(self, seed_pos: list[int], want: int) -> tuple[list[int], list[float], list[int], list[int]]:
        """The best ``want`` candidates of several seeds' lists: (item, summed score, orders and seed of the
        strongest single contribution), best first, ties by item."""
        bounds = [self._bounds[p] for p in seed_pos]
        rows = np.concatenate([np.arange(s, e) for s, e in bounds])
        if not len(rows):
            return [], [], [], []
        cand = self.nbr_index_[rows]
        score = self.nbr_score_[rows]
        # One sort by (candidate, strongest contribution first): each run is a candidate, its first row
        # the contribution the reason names, the run's sum its score.
        order = np.lexsort((-score, cand))
        ranked_cand = cand[order]
        first_of_run = np.empty(len(order), dtype=bool)
        first_of_run[0] = True
        np.not_equal(ranked_cand[1:], ranked_cand[:-1], out=first_of_run[1:])
        starts = np.flatnonzero(first_of_run)
        total = np.add.reduceat(score[order], starts)
        best = np.argsort(-total, kind="stable")[:want]
        strongest = order[starts[best]]  # positions in ``rows`` of each candidate's strongest contribution
        lengths = np.array([e - s for s, e in bounds])
        seed_of = np.repeat(np.array(seed_pos), lengths)[strongest]
        return (
            ranked_cand[starts[best]].tolist(),
            total[best].tolist(),
            self.nbr_orders_[rows[strongest]].tolist(),
            seed_of.tolist(),
        )

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]:
        """One answer per query, in order (a cart query touches only a few hundred neighbours)."""
        return [self.recommend(q, k) for q in queries]

    def save(self, folder: Path) -> None:
        """Write ``params.json``, ``items.parquet`` and ``neighbours.npz`` into ``folder``."""
        folder = Path(folder)
        write_params(folder, {"params": self.get_params(), "train_end": self.train_end_})
        pd.DataFrame(
            {IX.ITEM: pd.array(self.item_ids_, dtype="string"), IX.NAME: pd.array(self.names_, dtype="string")}
        ).to_parquet(folder / "items.parquet", index=False)
        np.savez(
            folder / "neighbours.npz",
            indptr=self.nbr_indptr_,
            index=self.nbr_index_,
            score=self.nbr_score_,
            orders=self.nbr_orders_,
        )

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Rebuild a fitted model from :meth:`save`'s folder."""
        folder = Path(folder)
        meta = read_params(folder)
        model = cls(**meta["params"])
        model.item_ids_ = read_strings(folder / "items.parquet", IX.ITEM)
        model.names_ = read_strings(folder / "items.parquet", IX.NAME)
        arrays = load_npz(folder / "neighbours.npz")
        model.nbr_indptr_ = arrays["indptr"]
        model.nbr_index_ = arrays["index"]
        model.nbr_score_ = arrays["score"]
        model.nbr_orders_ = arrays["orders"]
        model.train_end_ = float(meta["train_end"])
        model._index()
        return model


def association(
    co_weight: np.ndarray, weight_i: np.ndarray, weight_j: np.ndarray, total: float, measure: str
) -> np.ndarray:
    """The popularity-corrected association of pairs; lift and PMI are 0 where lift <= 1.

    Args:
        co_weight: weighted baskets holding both items.
        weight_i: weighted baskets holding the first item.
        weight_j: weighted baskets holding the second item.
        total: the total basket weight.
        measure: ``lift``, ``cosine`` or ``pmi``.
    """
    if measure == "cosine":
        return co_weight / np.sqrt(weight_i * weight_j)
    lift = co_weight * total / (weight_i * weight_j)
    if measure == "lift":
        return np.where(lift > 1.0, lift, 0.0)
    if measure == "pmi":
        return np.where(lift > 1.0, np.log(np.maximum(lift, 1.0)), 0.0)
    raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")


def _basket_rows(interactions: pd.DataFrame, use_sessions: bool) -> pd.DataFrame:
    """One row per (basket, item): orders' purchases, plus sessions' views and carts when asked."""
    df = interactions[interactions[IX.ITEM].notna() & interactions[IX.BASKET].notna() & interactions[IX.TS].notna()]
    if IX.EVENT in df.columns:
        event = df[IX.EVENT].astype("string").fillna(InteractionKind.PURCHASE.value)
    else:
        event = pd.Series(InteractionKind.PURCHASE.value, index=df.index, dtype="string")
    is_buy = (event == InteractionKind.PURCHASE.value).to_numpy(dtype=bool)
    is_session = event.isin(SESSION_EVENTS).to_numpy(dtype=bool) if use_sessions else np.zeros(len(df), dtype=bool)
    use = is_buy | is_session
    df = df[use]
    is_session = is_session[use]
    prefix = np.where(is_session, "s:", "o:")
    out = pd.DataFrame(
        {
            IX.ITEM: df[IX.ITEM].astype("string").to_numpy(),
            "_basket": df[IX.BASKET].astype("string").to_numpy()
            if not use_sessions
            else np.char.add(prefix, df[IX.BASKET].astype("string").to_numpy(dtype=object).astype(str)),
            "_seconds": epoch_seconds(df[IX.TS]),
            "_session": is_session,
        }
    )
    return out.drop_duplicates(["_basket", IX.ITEM])


def _names_for(ids: np.ndarray, items: pd.DataFrame | None) -> np.ndarray:
    """Item names for reasons; the id where the items frame has no name."""
    if items is None or IX.NAME not in items.columns or IX.ITEM not in items.columns:
        return ids.copy()
    first = items.drop_duplicates(IX.ITEM)
    names = pd.Series(first[IX.NAME].astype("string").to_numpy(), index=first[IX.ITEM].astype("string").to_numpy())
    found = names.reindex(ids)
    return np.array([str(i) if pd.isna(v) else str(v) for i, v in zip(ids, found, strict=True)], dtype=object)


@functools.lru_cache(maxsize=1 << 16)
def _reason(name: str, orders: int) -> str:
    """The reason of a bought-together item (cached: the same hot pairs come back answer after answer)."""
    if orders <= 0:  # the association came from sessions only
        return f"often viewed together with {name}"
    return f"bought together with {name} in {orders} order{'' if orders == 1 else 's'}"
