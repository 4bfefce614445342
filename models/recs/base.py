"""The one small recommender interface every recommender follows, and its vocabulary.

Training data is an interactions frame (one row per purchased order line, optionally views and
carts as weaker signals) with the columns named in :class:`IX`. A query names a customer and/or a
cart, the items to exclude and the time of asking; an answer is a ranked list of
:class:`Recommendation`, each with a score, its source and a short human reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple, Protocol, Self, runtime_checkable

import pandas as pd


class IX:
    """Column names of the interactions and items frames (one vocabulary)."""

    CUSTOMER = "customer_key"
    ITEM = "item_id"
    BASKET = "order_id"  # an order (or a session, for session baskets)
    TS = "ts"  # UTC timestamp of the interaction
    QUANTITY = "quantity"
    EVENT = "event"  # purchase | view | add_to_cart

    NAME = "name"
    CATEGORY = "category"
    PRICE = "price"
    ACTIVE = "active"
    IN_STOCK = "in_stock"


class EventKind(StrEnum):
    PURCHASE = "purchase"
    VIEW = "view"
    ADD_TO_CART = "add_to_cart"


class Source(StrEnum):
    """Where a recommended item came from (every answer knows its source)."""

    BOUGHT_TOGETHER = "bought_together"
    PERSONAL = "personal"
    SIMILAR = "similar"
    BUY_AGAIN = "buy_again"
    POPULAR = "popular"


@dataclass(frozen=True)
class Query:
    """What the caller asks about.

    Attributes:
        customer_key: the customer, if known (None for an anonymous cart).
        cart: items in the cart right now (bought-together neighbours of these; never recommended).
        item_id: the item a "similar items" query is about.
        exclude: caller-supplied items never to return.
        now: the time of asking (recency, trending, buy-again intervals); default: the model's training end.
        category: only this category, if given.
    """

    customer_key: str | None = None
    cart: tuple[str, ...] = ()
    item_id: str | None = None
    exclude: frozenset[str] = field(default_factory=frozenset)
    now: datetime | None = None
    category: str | None = None


class Recommendation(NamedTuple):
    """One recommended item (a named tuple: immutable, and three times cheaper to make than a frozen
    dataclass, which counts on the storefront's hot path)."""

    item_id: str
    score: float
    source: Source
    reason: str


@runtime_checkable
class Recommender(Protocol):
    """Every recommender: fit on interactions, answer one query or a batch, save and load itself.

    ``recommend`` returns at most ``k`` items, best first, never an item of ``query.cart`` or
    ``query.exclude``, never the same item twice; it may return fewer than ``k`` (the business-rule
    layer fills from the fallback). ``save`` writes only NumPy / Parquet / JSON files into a folder.
    """

    source: Source

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self: ...

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]: ...

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]: ...

    def save(self, folder: Path) -> None: ...

    @classmethod
    def load(cls, folder: Path) -> Self: ...


def interactions_from_tables(order_lines: pd.DataFrame, web_events: pd.DataFrame | None = None) -> pd.DataFrame:
    """The interactions frame from ingested tables: purchases from order lines (known customers
    and guests alike, a guest's basket still teaches what goes together), plus views and carts."""
    lines = order_lines
    out = pd.DataFrame(
        {
            IX.CUSTOMER: lines["customer_key"].astype("string"),
            IX.ITEM: lines["item_id"].astype("string"),
            IX.BASKET: lines["order_id"].astype("string"),
            IX.TS: pd.to_datetime(lines["ordered_at"], utc=True),
            IX.QUANTITY: lines["quantity"].astype("float64"),
            IX.EVENT: EventKind.PURCHASE.value,
        }
    )
    if web_events is not None and len(web_events):
        ev = web_events[web_events["event_type"].isin([EventKind.VIEW.value, EventKind.ADD_TO_CART.value])]
        ev = ev[ev["item_id"].notna()]
        out = pd.concat(
            [
                out,
                pd.DataFrame(
                    {
                        IX.CUSTOMER: ev["customer_key"].astype("string"),
                        IX.ITEM: ev["item_id"].astype("string"),
                        IX.BASKET: ev["session_id"].astype("string"),
                        IX.TS: pd.to_datetime(ev["occurred_at"], utc=True),
                        IX.QUANTITY: 1.0,
                        IX.EVENT: ev["event_type"].astype("string"),
                    }
                ),
            ],
            ignore_index=True,
        )
    return out.reset_index(drop=True)
