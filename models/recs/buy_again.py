"""Buy again: items a customer buys regularly, recommended once their usual interval has passed.

Per (customer, item) fit keeps the distinct purchase days; with at least ``min_purchases`` of them the
median gap between consecutive days is the customer's repurchase interval for that item. At query
time ``elapsed / interval`` (days since the last purchase, as of ``query.now``) is the score, capped at
``max_score``; items not yet due (``elapsed / interval < min_ratio``) are not recommended.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd

from models.base import Estimator
from models.recs.base import IX, Query, Recommendation, RecSource
from models.recs.popular import (
    SECONDS_PER_DAY,
    check_interactions,
    epoch_seconds,
    excluded_ids,
    factorize_sorted,
    load_npz,
    purchases,
    read_params,
    read_strings,
    to_epoch,
    write_params,
)


class BuyAgain(Estimator):
    """Per customer, items bought repeatedly that are due again.

    Args:
        min_purchases: the fewest distinct purchase days an item needs (at least 2: one interval).
        min_ratio: recommend once ``elapsed / interval`` reaches this (1.0: the usual interval has passed).
        max_score: the cap of ``elapsed / interval`` (a long-lapsed habit is not infinitely due).

    Attributes (after fit):
        customers_: customer keys, sorted; ``indptr_`` slices the per-(customer, item) arrays.
        item_ids_: item ids; ``item_index_``: item per row (into ``item_ids_``).
        interval_days_: median repurchase interval per row; ``last_seconds_``: last purchase (epoch s).
        train_end_: the training end (epoch seconds), the default "now".
    """

    source = RecSource.BUY_AGAIN

    def __init__(self, min_purchases: int = 2, min_ratio: float = 1.0, max_score: float = 3.0) -> None:
        self.min_purchases = min_purchases
        self.min_ratio = min_ratio
        self.max_score = max_score

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Learn each customer's repurchase intervals from their purchases (``items`` is not used)."""
        if self.min_purchases < 2:
            raise ValueError(f"min_purchases must be at least 2 (one interval), got {self.min_purchases}")
        if self.max_score < self.min_ratio:
            raise ValueError(f"max_score ({self.max_score}) must be >= min_ratio ({self.min_ratio})")
        check_interactions(interactions, [IX.CUSTOMER, IX.ITEM, IX.TS])
        buys = purchases(interactions)
        if buys.empty:
            raise ValueError("no purchases to learn from")
        self.train_end_ = float(epoch_seconds(buys[IX.TS]).max())
        buys = buys[buys[IX.CUSTOMER].notna()]
        secs = epoch_seconds(buys[IX.TS])
        df = pd.DataFrame(
            {
                "c": buys[IX.CUSTOMER].astype("string").to_numpy(dtype=object),
                "i": buys[IX.ITEM].astype("string").to_numpy(dtype=object),
                "day": np.floor(secs / SECONDS_PER_DAY),
                "s": secs,
            }
        )
        per_day = df.groupby(["c", "i", "day"], sort=True, as_index=False)["s"].max()
        same = (per_day["c"].to_numpy() == per_day["c"].shift().to_numpy()) & (
            per_day["i"].to_numpy() == per_day["i"].shift().to_numpy()
        )
        per_day["gap"] = np.where(same, per_day["day"].diff().to_numpy(), np.nan)
        g = per_day.groupby(["c", "i"], sort=True)
        stats = pd.DataFrame({"n": g["day"].size(), "interval": g["gap"].median(), "last": g["s"].max()})
        stats = stats[stats["n"] >= self.min_purchases].reset_index()

        customers = stats["c"].to_numpy(dtype=object)
        self.customers_, starts = np.unique(customers, return_index=True)
        self.indptr_ = np.append(np.asarray(starts, dtype=np.int64), len(stats)).astype(np.int64)
        item_index, self.item_ids_ = factorize_sorted(stats["i"])
        self.item_index_ = item_index.astype(np.int32)
        self.interval_days_ = stats["interval"].to_numpy(dtype=np.float64)
        self.last_seconds_ = stats["last"].to_numpy(dtype=np.float64)
        self._index()
        return self

    def _index(self) -> None:
        self._pos = {str(c): p for p, c in enumerate(self.customers_)}

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        """The customer's due items, most overdue first (empty for an unknown or anonymous customer)."""
        p = None if query.customer_key is None else self._pos.get(query.customer_key)
        if p is None or k <= 0:
            return []
        s, e = self.indptr_[p], self.indptr_[p + 1]
        now = self.train_end_ if query.now is None else to_epoch(query.now)
        elapsed = np.maximum(now - self.last_seconds_[s:e], 0.0) / SECONDS_PER_DAY
        interval = self.interval_days_[s:e]
        ratio = elapsed / interval
        score = np.minimum(ratio, self.max_score)
        items = self.item_ids_[self.item_index_[s:e]]
        banned = excluded_ids(query)
        order = np.argsort(-score, kind="stable")
        out: list[Recommendation] = []
        for r in order:
            if ratio[r] < self.min_ratio or len(out) == k:
                break
            if items[r] in banned:
                continue
            out.append(
                Recommendation(
                    str(items[r]),
                    float(score[r]),
                    self.source,
                    f"you buy this about every {round(interval[r])} days; last bought {int(elapsed[r])} days ago",
                )
            )
        return out

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]:
        """One answer per query, in order (each customer's rows are a short precomputed slice)."""
        return [self.recommend(q, k) for q in queries]

    def save(self, folder: Path) -> None:
        """Write ``params.json``, ``customers.parquet``, ``items.parquet`` and ``arrays.npz``."""
        folder = Path(folder)
        write_params(folder, {"params": self.get_params(), "train_end": self.train_end_})
        pd.DataFrame({IX.CUSTOMER: pd.array(self.customers_, dtype="string")}).to_parquet(
            folder / "customers.parquet", index=False
        )
        pd.DataFrame({IX.ITEM: pd.array(self.item_ids_, dtype="string")}).to_parquet(
            folder / "items.parquet", index=False
        )
        np.savez(
            folder / "arrays.npz",
            indptr=self.indptr_,
            item_index=self.item_index_,
            interval_days=self.interval_days_,
            last_seconds=self.last_seconds_,
        )

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Rebuild a fitted model from :meth:`save`'s folder."""
        folder = Path(folder)
        meta = read_params(folder)
        model = cls(**meta["params"])
        model.customers_ = read_strings(folder / "customers.parquet", IX.CUSTOMER)
        model.item_ids_ = read_strings(folder / "items.parquet", IX.ITEM)
        arrays = load_npz(folder / "arrays.npz")
        model.indptr_ = arrays["indptr"]
        model.item_index_ = arrays["item_index"]
        model.interval_days_ = arrays["interval_days"]
        model.last_seconds_ = arrays["last_seconds"]
        model.train_end_ = float(meta["train_end"])
        model._index()
        return model
