"""Point-in-time training sets: features as of each cutoff joined with labels from after it.

This is the only way training data is built: features use events strictly before a cutoff,
labels only events at or after it, and several cutoffs are stacked (rolling origin).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import ibis
import ibis.expr.types as ir
import pandas as pd

from features.contract import Col
from features.store import compute_features

LABEL = "label"
CUTOFF = "cutoff"

LabelFn = Callable[[dict[str, ir.Table], datetime], ir.Table]


@dataclass(frozen=True)
class ChurnTarget:
    """Churn: a customer active in the ``active_days`` before the cutoff buys nothing in the next
    ``horizon_days``."""

    horizon_days: int = 90
    active_days: int = 365

    def labels(self, tables: dict[str, ir.Table], cutoff: datetime) -> ir.Table:
        orders = tables["orders"].filter(tables["orders"][Col.CUSTOMER_KEY].notnull())
        t = ibis.timestamp(cutoff)
        start = ibis.timestamp(cutoff - timedelta(days=self.active_days))
        end = ibis.timestamp(cutoff + timedelta(days=self.horizon_days))
        active = orders.filter(orders[Col.ORDERED_AT] >= start, orders[Col.ORDERED_AT] < t)
        active = active.select(Col.CUSTOMER_KEY).distinct()
        after = orders.filter(orders[Col.ORDERED_AT] >= t, orders[Col.ORDERED_AT] < end)
        buyers = after.select(Col.CUSTOMER_KEY).distinct().mutate(_bought=ibis.literal(1))
        joined = active.left_join(buyers, Col.CUSTOMER_KEY).drop(f"{Col.CUSTOMER_KEY}_right")
        return joined.select(Col.CUSTOMER_KEY, **{LABEL: joined["_bought"].isnull().cast("int8")})


def build_training_set(tables: dict[str, ir.Table], cutoffs: Sequence[datetime], labels: LabelFn) -> pd.DataFrame:
    """Stack (features as of cutoff, label after cutoff) for every cutoff, one row per customer and cutoff."""
    parts = []
    for cutoff in cutoffs:
        feats = compute_features(tables, cutoff)
        lab = labels(tables, cutoff).execute()
        rows = feats.merge(lab, on=Col.CUSTOMER_KEY, how="inner")
        rows.insert(1, CUTOFF, pd.Timestamp(cutoff))
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def monthly_cutoffs(first: datetime, last: datetime, step_days: int = 30) -> list[datetime]:
    """Cutoffs every ``step_days`` from ``first`` up to and including ``last`` (counting back from ``last``)."""
    out = []
    t = last
    while t >= first:
        out.append(t)
        t -= timedelta(days=step_days)
    return sorted(out)
