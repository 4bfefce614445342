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

from features.contract import Col, EventType


class IX:
    """Column names of the interactions and items frames: the contract's (:class:`features.contract.Col`),
    plus the two the interactions frame adds."""

    CUSTOMER = Col.CUSTOMER_KEY
    ITEM = Col.ITEM_ID
    BASKET = Col.ORDER_ID  # an order (or a session, for session baskets)
    TS = "ts"  # UTC timestamp of the interaction
    QUANTITY = Col.QUANTITY
    EVENT = "event"  # an InteractionKind

    NAME = Col.NAME
    CATEGORY = Col.CATEGORY
    PRICE = Col.PRICE
    ACTIVE = Col.ACTIVE
    IN_STOCK = Col.IN_STOCK


class InteractionKind(StrEnum):
    """What an interaction is: a purchased order line, or a web event of the contract's (:class:`EventType`)."""

    PURCHASE = "purchase"
    VIEW = EventType.VIEW.value
    ADD_TO_CART = EventType.ADD_TO_CART.value


class RecSource(StrEnum):
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
    source: RecSource
    reason: str


@runtime_checkable
class Recommender(Protocol):
    """Every recommender: fit on interactions, answer one query or a batch, save and load itself.

    ``recommend`` returns at most ``k`` items, best first, never an item of ``query.cart`` or
    ``query.exclude``, never the same item twice; it may return fewer than ``k`` (the business-rule
    layer fills from the fallback). ``save`` writes only NumPy / Parquet / JSON files into a folder.
    """

    source: RecSource

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
            IX.CUSTOMER: lines[Col.CUSTOMER_KEY].astype("string"),
            IX.ITEM: lines[Col.ITEM_ID].astype("string"),
            IX.BASKET: lines[Col.ORDER_ID].astype("string"),
            IX.TS: pd.to_datetime(lines[Col.ORDERED_AT], utc=True),
            IX.QUANTITY: lines[Col.QUANTITY].astype("float64"),
            IX.EVENT: InteractionKind.PURCHASE.value,
        }
    )
    if web_events is not None and len(web_events):
        ev = web_events[
            web_events[Col.EVENT_TYPE].isin([InteractionKind.VIEW.value, InteractionKind.ADD_TO_CART.value])
        ]
        ev = ev[ev[Col.ITEM_ID].notna()]
        out = pd.concat(
            [
                out,
                pd.DataFrame(
                    {
                        IX.CUSTOMER: ev[Col.CUSTOMER_KEY].astype("string"),
                        IX.ITEM: ev[Col.ITEM_ID].astype("string"),
                        IX.BASKET: ev[Col.SESSION_ID].astype("string"),
                        IX.TS: pd.to_datetime(ev[Col.OCCURRED_AT], utc=True),
                        IX.QUANTITY: 1.0,
                        IX.EVENT: ev[Col.EVENT_TYPE].astype("string"),
                    }
                ),
            ],
            ignore_index=True,
        )
    return out.reset_index(drop=True)
