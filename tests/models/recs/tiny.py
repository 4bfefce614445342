"""A tiny literal basket history with hand-computable answers, for the basket models' own tests.

- u1 buys {x, y} on day 1, {x} on day 2, {x, z} on day 3;
- u2 buys {x, y} on day 1, {y} on day 2;
- u3 buys {w} on day 1;
- a guest buys {y, z} on day 4.
"""

from __future__ import annotations

import pandas as pd

from models.recs.base import IX, InteractionKind

T0 = pd.Timestamp("2025-03-01", tz="UTC")

BASKETS = [
    ("u1", "b1", "xy", 1),
    ("u1", "b2", "x", 2),
    ("u1", "b3", "xz", 3),
    ("u2", "b4", "xy", 1),
    ("u2", "b5", "y", 2),
    ("u3", "b6", "w", 1),
    (None, "b7", "yz", 4),
]


def tiny(baskets: list[tuple[str | None, str, str, int]] = BASKETS) -> pd.DataFrame:
    """The interactions frame of ``baskets`` (customer, basket, items, day), one row per item."""
    df = pd.DataFrame(
        [
            {
                IX.CUSTOMER: customer,
                IX.ITEM: item,
                IX.BASKET: basket,
                IX.TS: T0 + pd.Timedelta(days=day),
                IX.QUANTITY: 1.0,
                IX.EVENT: InteractionKind.PURCHASE.value,
            }
            for customer, basket, items, day in baskets
            for item in items
        ]
    )
    df[IX.CUSTOMER] = df[IX.CUSTOMER].astype("string")
    return df
