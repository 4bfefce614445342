"""The standard frequency baselines every Kairos recommender must beat (same interface as the rest).

From the next-basket literature (Li et al., "A Next Basket Recommendation Reality Check", 2023):

- :class:`GlobalTopFreq` (G-TopFreq): the items in the most training baskets, for everyone. With the
  cart excluded it is also the item-popularity baseline for basket completion.
- :class:`PersonalTopFreq` (P-TopFreq): the customer's own items, by the number of the customer's
  baskets that held them (ties: the more recently bought first, then item id). Nothing for a customer
  without history: the list may be shorter than ``k``.
- :class:`GlobalPersonalTopFreq` (GP-TopFreq): the customer's own items first, topped up with the
  global best sellers to fill ``k``.

Frequency counts baskets, not units: an item bought 12 at a time in one order counts once. Only
purchase interactions are counted (views and carts are ignored). Scores are comparable within a source
only: a count of the customer's orders for buy-again items, the share of all training orders for
popular ones. ``query.now`` is not used (the counts are those of the training data).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd

from models.base import Estimator, check_fitted
from models.recs.base import IX, InteractionKind, Query, Recommendation, RecSource

_POPULARITY_FILE = "popularity.parquet"
_HISTORY_FILE = "history.parquet"
_PARAMS_FILE = "params.json"


def _purchases(interactions: pd.DataFrame) -> pd.DataFrame:
    missing = {IX.ITEM, IX.BASKET} - set(interactions.columns)
    if missing:
        raise ValueError(f"interactions lack the columns {sorted(missing)}")
    rows = interactions
    if IX.EVENT in rows.columns:
        rows = rows[rows[IX.EVENT].astype("string") == InteractionKind.PURCHASE.value]
    return rows[rows[IX.ITEM].notna() & rows[IX.BASKET].notna()]


def _orders(n: int) -> str:
    return f"{n} order" if n == 1 else f"{n} orders"


def _category_map(items: pd.DataFrame | None) -> dict[str, str]:
    if items is None or IX.CATEGORY not in items.columns:
        return {}
    known = items[items[IX.CATEGORY].notna()]
    return dict(zip(known[IX.ITEM].astype(str), known[IX.CATEGORY].astype(str), strict=True))


def _blocked(query: Query) -> set[str]:
    return set(query.cart) | set(query.exclude)


class GlobalTopFreq(Estimator):
    """G-TopFreq: the most popular items (by number of training orders holding them) for everyone.

    Attributes (after ``fit``):
        items_: item ids, most popular first (ties by item id).
        counts_: number of training orders holding each item, aligned with ``items_``.
        n_baskets_: number of training orders.
        categories_: item id -> category, from the items frame (empty if it has none).
    """

    source = RecSource.POPULAR

    def __init__(self) -> None:
        pass

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Count, for every item, the training orders that hold it.

        Args:
            interactions: the interactions frame (:class:`~models.recs.base.IX` columns).
            items: the catalogue; only its categories are used (for ``query.category``).

        Returns:
            self.
        """
        rows = _purchases(interactions)
        counts = rows.groupby(rows[IX.ITEM].astype(str))[IX.BASKET].nunique()
        table = pd.DataFrame({IX.ITEM: counts.index.astype(str), "baskets": counts.to_numpy(dtype="int64")})
        self._set_state(table, n_baskets=int(rows[IX.BASKET].nunique()), categories=_category_map(items))
        return self

    def _set_state(self, table: pd.DataFrame, n_baskets: int, categories: dict[str, str]) -> None:
        table = table.sort_values(["baskets", IX.ITEM], ascending=[False, True], kind="stable")
        self.items_ = table[IX.ITEM].to_numpy(dtype=object)
        self.counts_ = table["baskets"].to_numpy(dtype="int64")
        self.n_baskets_ = n_baskets
        self.categories_ = categories

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        """The ``k`` best sellers not in the cart or ``exclude`` (and in ``query.category`` if given)."""
        return self._top(query, k, _blocked(query))

    def _top(self, query: Query, k: int, blocked: set[str]) -> list[Recommendation]:
        check_fitted(self, "items_")
        out: list[Recommendation] = []
        if k < 1:
            return out
        for item, count in zip(self.items_, self.counts_, strict=True):
            if item in blocked or (query.category is not None and self.categories_.get(item) != query.category):
                continue
            out.append(
                Recommendation(
                    item_id=item,
                    score=float(count) / max(self.n_baskets_, 1),
                    source=RecSource.POPULAR,
                    reason=f"a best seller: in {_orders(int(count))}",
                )
            )
            if len(out) == k:
                break
        return out

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]:
        """One list per query; queries with nothing to filter share one computed list."""
        plain: list[Recommendation] | None = None
        out = []
        for query in queries:
            if not query.cart and not query.exclude and query.category is None:
                if plain is None:
                    plain = self.recommend(Query(), k)
                out.append(list(plain))
            else:
                out.append(self.recommend(query, k))
        return out

    def save(self, folder: Path) -> None:
        """Write ``popularity.parquet`` and ``params.json`` into ``folder``."""
        check_fitted(self, "items_")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        cats = [self.categories_.get(item) for item in self.items_]
        pd.DataFrame(
            {
                IX.ITEM: pd.array(self.items_, dtype="string"),
                "baskets": self.counts_,
                IX.CATEGORY: pd.array(cats, dtype="string"),
            }
        ).to_parquet(folder / _POPULARITY_FILE, index=False)
        (folder / _PARAMS_FILE).write_text(json.dumps({"kind": type(self).__name__, "n_baskets": self.n_baskets_}))

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Read a model written by :meth:`save`."""
        folder = Path(folder)
        params = json.loads((folder / _PARAMS_FILE).read_text())
        table = pd.read_parquet(folder / _POPULARITY_FILE)
        known = table[table[IX.CATEGORY].notna()]
        model = cls()
        model._set_state(
            table[[IX.ITEM, "baskets"]].astype({IX.ITEM: str}),
            n_baskets=int(params["n_baskets"]),
            categories=dict(zip(known[IX.ITEM].astype(str), known[IX.CATEGORY].astype(str), strict=True)),
        )
        return model


class PersonalTopFreq(Estimator):
    """P-TopFreq: the customer's own most frequently bought items ("you often buy this").

    Attributes (after ``fit``):
        history_: one row per (customer, item) with ``baskets`` (the customer's orders holding it) and
            ``last_ts``, sorted per customer best first.
        by_customer_: customer key -> (item ids, counts), best first.
        categories_: item id -> category, from the items frame.
    """

    source = RecSource.BUY_AGAIN

    def __init__(self) -> None:
        pass

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Count each known customer's orders per item (guest orders are ignored).

        Args:
            interactions: the interactions frame (:class:`~models.recs.base.IX` columns).
            items: the catalogue; only its categories are used.

        Returns:
            self.
        """
        rows = _purchases(interactions)
        rows = rows[rows[IX.CUSTOMER].notna()]
        grouped = rows.groupby([rows[IX.CUSTOMER].astype(str), rows[IX.ITEM].astype(str)])
        history = pd.DataFrame({"baskets": grouped[IX.BASKET].nunique(), "last_ts": grouped[IX.TS].max()})
        history = history.reset_index()
        self._set_state(history, _category_map(items))
        return self

    def _set_state(self, history: pd.DataFrame, categories: dict[str, str]) -> None:
        history = history.sort_values(
            [IX.CUSTOMER, "baskets", "last_ts", IX.ITEM], ascending=[True, False, False, True], kind="stable"
        ).reset_index(drop=True)
        customers = history[IX.CUSTOMER].to_numpy(dtype=object)
        item_ids = history[IX.ITEM].to_numpy(dtype=object)
        counts = history["baskets"].to_numpy(dtype="int64")
        # one run of rows per customer; no customers at all (a basket-only export) gives no runs
        starts = np.flatnonzero(np.r_[True, customers[1:] != customers[:-1]]) if len(customers) else np.array([], int)
        ends = np.r_[starts[1:], len(customers)] if len(customers) else np.array([], int)
        self.history_ = history
        self.by_customer_ = {customers[s]: (item_ids[s:e], counts[s:e]) for s, e in zip(starts, ends, strict=True)}
        self.categories_ = categories

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        """The customer's own items, most often bought first; empty without a known customer."""
        check_fitted(self, "by_customer_")
        out: list[Recommendation] = []
        if k < 1 or query.customer_key is None or query.customer_key not in self.by_customer_:
            return out
        blocked = _blocked(query)
        item_ids, counts = self.by_customer_[query.customer_key]
        for item, count in zip(item_ids, counts, strict=True):
            if item in blocked or (query.category is not None and self.categories_.get(item) != query.category):
                continue
            reason = f"you often buy this: in {_orders(int(count))} of yours" if count > 1 else "you bought this before"
            out.append(Recommendation(item_id=item, score=float(count), source=RecSource.BUY_AGAIN, reason=reason))
            if len(out) == k:
                break
        return out

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]:
        """One list per query (a dictionary look-up and a short scan each)."""
        return [self.recommend(query, k) for query in queries]

    def save(self, folder: Path) -> None:
        """Write ``history.parquet`` and ``params.json`` into ``folder``."""
        check_fitted(self, "history_")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.history_.to_parquet(folder / _HISTORY_FILE, index=False)
        cats = pd.DataFrame(
            {IX.ITEM: list(self.categories_), IX.CATEGORY: list(self.categories_.values())}, dtype="string"
        )
        cats.to_parquet(folder / "categories.parquet", index=False)
        (folder / _PARAMS_FILE).write_text(json.dumps({"kind": type(self).__name__}))

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Read a model written by :meth:`save`."""
        folder = Path(folder)
        history = pd.read_parquet(folder / _HISTORY_FILE).astype({IX.CUSTOMER: str, IX.ITEM: str})
        cats = pd.read_parquet(folder / "categories.parquet")
        model = cls()
        model._set_state(history, dict(zip(cats[IX.ITEM].astype(str), cats[IX.CATEGORY].astype(str), strict=True)))
        return model


class GlobalPersonalTopFreq(Estimator):
    """GP-TopFreq: the customer's own most frequent items, topped up with the global best sellers.

    Attributes (after ``fit``):
        personal_: the fitted :class:`PersonalTopFreq`.
        global_: the fitted :class:`GlobalTopFreq`.
    """

    source = RecSource.BUY_AGAIN

    def __init__(self) -> None:
        pass

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Fit both parts on the same data.

        Returns:
            self.
        """
        self.personal_ = PersonalTopFreq().fit(interactions, items)
        self.global_ = GlobalTopFreq().fit(interactions, items)
        return self

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        """Own items first (``BUY_AGAIN``), then best sellers not already listed (``POPULAR``)."""
        check_fitted(self, "personal_")
        own = self.personal_.recommend(query, k)
        if len(own) >= k:
            return own
        blocked = _blocked(query) | {rec.item_id for rec in own}
        return own + self.global_._top(query, k - len(own), blocked)

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]:
        """One list per query."""
        return [self.recommend(query, k) for query in queries]

    def save(self, folder: Path) -> None:
        """Write the two parts into ``folder/personal`` and ``folder/global``."""
        check_fitted(self, "personal_")
        folder = Path(folder)
        self.personal_.save(folder / "personal")
        self.global_.save(folder / "global")
        (folder / _PARAMS_FILE).write_text(json.dumps({"kind": type(self).__name__}))

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Read a model written by :meth:`save`."""
        folder = Path(folder)
        model = cls()
        model.personal_ = PersonalTopFreq.load(folder / "personal")
        model.global_ = GlobalTopFreq.load(folder / "global")
        return model


#: The item-popularity baseline for basket completion: the global best sellers minus the cart.
ItemPopularity = GlobalTopFreq
