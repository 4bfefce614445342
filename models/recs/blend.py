"""Personal picks for a customer's next basket: what they keep buying, then what they have not tried.

About a third of what customers buy next they have bought before, so a next-basket answer starts
from the customer's own items ranked by a recency-weighted purchase frequency (each order holding the
item counts ``0.5 ** (age / half_life)``); the remaining places go to matrix-factorisation picks of
items new to them (:class:`~models.recs.personal.ImplicitRecommender`). ``own_slots`` caps the
places own items may take, so new items always get a chance. Scores are comparable within one answer:
own items in (1, 2) by their weighted frequency, new picks in (0, 1) by the factor score.
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
from models.recs.personal import ImplicitRecommender

_SCORE = "score"
_ORDERS = "orders"


class RepeatThenPersonal(Estimator):
    """The customer's own items by recency-weighted frequency, topped up with new personal picks.

    Args:
        own_slots: the most places of ``k`` own items may take (None: all of them).
        half_life_days: how fast an old purchase of an item stops counting.
        personal: the model for new items (default: ``ImplicitRecommender()``, already-bought filtered).
    """

    source = RecSource.BUY_AGAIN

    def __init__(
        self, own_slots: int | None = None, half_life_days: float = 365.0, personal: ImplicitRecommender | None = None
    ) -> None:
        self.own_slots = own_slots
        self.half_life_days = half_life_days
        self.personal = personal

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Learn each customer's repeat scores and fit the personal model on the same data."""
        buys = interactions[
            (interactions[IX.EVENT] == InteractionKind.PURCHASE.value) & interactions[IX.CUSTOMER].notna()
        ]
        buys = buys[buys[IX.QUANTITY] > 0]
        if buys.empty:
            raise ValueError("no purchases by known customers to learn from")
        self.trained_until_ = pd.Timestamp(interactions[IX.TS].max())
        baskets = buys.drop_duplicates([IX.CUSTOMER, IX.ITEM, IX.BASKET])
        age_days = (self.trained_until_ - baskets[IX.TS]).dt.total_seconds().to_numpy() / 86_400.0
        weight = np.power(0.5, age_days / self.half_life_days)
        own = (
            baskets.assign(**{_SCORE: weight, _ORDERS: 1})
            .groupby([IX.CUSTOMER, IX.ITEM], sort=False)[[_SCORE, _ORDERS]]
            .sum()
            .reset_index()
            .sort_values([IX.CUSTOMER, _SCORE, IX.ITEM], ascending=[True, False, True])
        )
        self.own_ = own.reset_index(drop=True)
        self.own_index_ = _row_spans(self.own_)
        personal = self.personal if self.personal is not None else ImplicitRecommender()
        # a fitted model is reused as it is; an unfitted one is fitted as a copy, leaving the parameter alone
        fitted = hasattr(personal, "user_factors_")
        self.personal_ = personal if fitted else copy.copy(personal).fit(interactions, items)
        return self

    def _own(self, query: Query, blocked: set[str], limit: int) -> list[Recommendation]:
        span = self.own_index_.get(str(query.customer_key)) if query.customer_key is not None else None
        if span is None or limit <= 0:
            return []
        rows = self.own_.iloc[span[0] : span[1]]
        out: list[Recommendation] = []
        for item, score, orders in zip(rows[IX.ITEM], rows[_SCORE], rows[_ORDERS], strict=True):
            if item in blocked:
                continue
            times = "once" if orders == 1 else f"in {orders} orders"
            # own items score in (1, 2), monotone in the recency-weighted frequency
            banded = 1.0 + float(score) / (float(score) + 1.0)
            out.append(Recommendation(str(item), banded, RecSource.BUY_AGAIN, f"you bought this {times}"))
            if len(out) == limit:
                break
        return out

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        """Own items first (at most ``own_slots``), then new personal picks; never cart or excluded items."""
        blocked = set(query.cart) | set(query.exclude)
        limit = k if self.own_slots is None else min(k, self.own_slots)
        own = self._own(query, blocked, limit) if query.category is None else []
        taken = blocked | {r.item_id for r in own}
        fresh = [
            # new picks score in (0, 1), monotone in the factor score: always after own items
            Recommendation(r.item_id, float(1.0 / (1.0 + np.exp(-r.score))), r.source, r.reason)
            for r in self.personal_.recommend(query, k + len(taken))
            if r.item_id not in taken
        ]
        return (own + fresh)[:k]

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]:
        return [self.recommend(q, k) for q in queries]

    def save(self, folder: Path) -> None:
        """``blend.json`` + ``own.parquet`` + the personal model in ``personal/`` (no pickle)."""
        check_fitted(self, "own_", "personal_")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "own_slots": self.own_slots,
            "half_life_days": self.half_life_days,
            "trained_until": self.trained_until_.isoformat(),
        }
        (folder / "blend.json").write_text(json.dumps(meta), encoding="utf-8")
        self.own_.to_parquet(folder / "own.parquet", index=False)
        self.personal_.save(folder / "personal")

    @classmethod
    def load(cls, folder: Path) -> Self:
        folder = Path(folder)
        meta = json.loads((folder / "blend.json").read_text(encoding="utf-8"))
        model = cls(own_slots=meta["own_slots"], half_life_days=meta["half_life_days"])
        model.trained_until_ = pd.Timestamp(meta["trained_until"])
        model.own_ = pd.read_parquet(folder / "own.parquet")
        model.own_index_ = _row_spans(model.own_)
        model.personal_ = ImplicitRecommender.load(folder / "personal")
        return model


def _row_spans(own: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """customer_key -> (first, last + 1) row of that customer's items in ``own`` (sorted by customer)."""
    bounds = own.groupby(IX.CUSTOMER, sort=False).indices
    return {str(k): (int(v[0]), int(v[-1]) + 1) for k, v in bounds.items()}
