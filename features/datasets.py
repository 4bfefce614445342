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
from features.definitions import population
from features.store import compute_features

LABEL = "label"
CUTOFF = "cutoff"
ORDERS_LABEL = "label_orders"  # value targets: orders in the horizon beside the spend in LABEL

LabelFn = Callable[[dict[str, ir.Table], datetime], ir.Table]


@dataclass(frozen=True)
class ChurnTarget:
    """Churn: a customer active in the ``active_days`` before the cutoff buys nothing in the next
    ``horizon_days``."""

    horizon_days: int = 90
    active_days: int = 365
    name: str = "churn"

    @property
    def label_days(self) -> int:
        return self.horizon_days

    @property
    def lookback_days(self) -> int:
        """Days of history before a cutoff that the population reads: fewer, and it is truncated."""
        return self.active_days

    def labels(self, tables: dict[str, ir.Table], cutoff: datetime) -> ir.Table:
        active = _orders_between(tables, cutoff - timedelta(days=self.active_days), cutoff)
        active = active.select(Col.CUSTOMER_KEY).distinct()
        buyers = _buyers(tables, cutoff, self.horizon_days).mutate(_bought=ibis.literal(1))
        joined = active.left_join(buyers, Col.CUSTOMER_KEY).drop(f"{Col.CUSTOMER_KEY}_right")
        return joined.select(Col.CUSTOMER_KEY, **{LABEL: joined["_bought"].isnull().cast("int8")})


@dataclass(frozen=True)
class PurchaseTarget:
    """Purchase: any customer known before the cutoff, leads (never bought) included, places an
    order in the next ``horizon_days``."""

    horizon_days: int = 30
    name: str = "purchase"

    @property
    def label_days(self) -> int:
        return self.horizon_days

    @property
    def lookback_days(self) -> int:
        return 0  # everyone known before the cutoff, however long ago

    def labels(self, tables: dict[str, ir.Table], cutoff: datetime) -> ir.Table:
        t = ibis.timestamp(cutoff)
        known = population(tables, t)
        buyers = _buyers(tables, cutoff, self.horizon_days).mutate(_bought=ibis.literal(1))
        joined = known.left_join(buyers, Col.CUSTOMER_KEY).drop(f"{Col.CUSTOMER_KEY}_right")
        return joined.select(Col.CUSTOMER_KEY, **{LABEL: joined["_bought"].notnull().cast("int8")})


@dataclass(frozen=True)
class ValueTarget:
    """Value: spend (in LABEL) and number of orders (in ORDERS_LABEL) in the next ``horizon_days``,
    for every customer who bought at least once before the cutoff (zero when they buy nothing)."""

    horizon_days: int = 365
    name: str = "value"

    @property
    def label_days(self) -> int:
        return self.horizon_days

    def labels(self, tables: dict[str, ir.Table], cutoff: datetime) -> ir.Table:
        buyers = _orders_between(tables, None, cutoff).select(Col.CUSTOMER_KEY).distinct()
        after = _orders_between(tables, cutoff, cutoff + timedelta(days=self.horizon_days))
        per = after.group_by(Col.CUSTOMER_KEY).aggregate(
            _spend=after[Col.AMOUNT].fill_null(0.0).sum(), _orders=after[Col.ORDER_ID].nunique()
        )
        joined = buyers.left_join(per, Col.CUSTOMER_KEY).drop(f"{Col.CUSTOMER_KEY}_right")
        return joined.select(
            Col.CUSTOMER_KEY,
            **{
                LABEL: joined["_spend"].fill_null(0.0).cast("float64"),
                ORDERS_LABEL: joined["_orders"].fill_null(0).cast("int64"),
            },
        )


@dataclass(frozen=True)
class EngagementTarget:
    """Engagement: the customer opens (or clicks) the first message on ``channel`` sent to them in
    the ``window_days`` after the cutoff, within ``response_days`` of its sending.

    Only customers who were sent such a message are rows: the question is "if we send, will they
    engage", not "will we send". Labels end ``window_days + response_days`` after the cutoff.
    """

    channel: str = "email"
    action: str = "open"  # open | click
    window_days: int = 30
    response_days: int = 7

    @property
    def name(self) -> str:
        return f"{self.action}_{self.channel}"

    @property
    def label_days(self) -> int:
        return self.window_days + self.response_days

    @property
    def lookback_days(self) -> int:
        return 0  # whoever is sent a message after the cutoff

    def labels(self, tables: dict[str, ir.Table], cutoff: datetime) -> ir.Table:
        if self.action not in ("open", "click"):
            raise ValueError(f"engagement action must be open or click, not {self.action!r}")
        m = tables["messages"]
        t = ibis.timestamp(cutoff)
        m = m.filter(
            m[Col.CUSTOMER_KEY].notnull(),
            m[Col.CHANNEL] == self.channel,
            m[Col.SENT_AT] >= t,
            m[Col.SENT_AT] < ibis.timestamp(cutoff + timedelta(days=self.window_days)),
        )
        at = m[Col.OPENED_AT] if self.action == "open" else m[Col.CLICKED_AT]
        # A click implies an open even where the export lost the open time.
        if self.action == "open":
            at = at.fill_null(m[Col.CLICKED_AT])
        engaged = at.notnull() & (at < m[Col.SENT_AT] + ibis.interval(days=self.response_days))
        m = m.mutate(
            _rank=ibis.row_number().over(group_by=m[Col.CUSTOMER_KEY], order_by=[m[Col.SENT_AT], m[Col.MESSAGE_ID]]),
            _y=engaged,
        )
        first = m.filter(m["_rank"] == 0)
        return first.select(Col.CUSTOMER_KEY, **{LABEL: first["_y"].cast("int8")})


def _orders_between(tables: dict[str, ir.Table], start: datetime | None, end: datetime) -> ir.Table:
    """Orders of known customers placed in [start, end) (from the beginning when ``start`` is None)."""
    orders = tables["orders"]
    keep = [orders[Col.CUSTOMER_KEY].notnull(), orders[Col.ORDERED_AT] < ibis.timestamp(end)]
    if start is not None:
        keep.append(orders[Col.ORDERED_AT] >= ibis.timestamp(start))
    return orders.filter(*keep)


def _buyers(tables: dict[str, ir.Table], cutoff: datetime, horizon_days: int) -> ir.Table:
    """Customers who order in [cutoff, cutoff + horizon)."""
    after = _orders_between(tables, cutoff, cutoff + timedelta(days=horizon_days))
    return after.select(Col.CUSTOMER_KEY).distinct()


class FeatureCache:
    """Features as of each cutoff, computed once per run and shared by every target."""

    def __init__(self, tables: dict[str, ir.Table]) -> None:
        self.tables = tables
        self._frames: dict[datetime, pd.DataFrame] = {}

    def __call__(self, cutoff: datetime) -> pd.DataFrame:
        if cutoff not in self._frames:
            self._frames[cutoff] = compute_features(self.tables, cutoff)
        return self._frames[cutoff]


def build_training_set(
    tables: dict[str, ir.Table],
    cutoffs: Sequence[datetime],
    labels: LabelFn,
    features: Callable[[datetime], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Stack (features as of cutoff, label after cutoff) for every cutoff, one row per customer and cutoff.

    ``features`` (e.g. a :class:`FeatureCache`) supplies the features as of a cutoff; by default
    they are computed from ``tables``.
    """
    parts = []
    for cutoff in cutoffs:
        feats = features(cutoff) if features is not None else compute_features(tables, cutoff)
        lab = labels(tables, cutoff).execute()
        rows = feats.merge(lab, on=Col.CUSTOMER_KEY, how="inner")
        stamp = pd.DataFrame({CUTOFF: pd.Series(pd.Timestamp(cutoff), index=rows.index)})
        parts.append(pd.concat([rows[[Col.CUSTOMER_KEY]], stamp, rows.drop(columns=Col.CUSTOMER_KEY)], axis=1))
    return pd.concat(parts, ignore_index=True)


def monthly_cutoffs(first: datetime, last: datetime, step_days: int = 30) -> list[datetime]:
    """Cutoffs every ``step_days`` from ``first`` up to and including ``last`` (counting back from ``last``)."""
    out = []
    t = last
    while t >= first:
        out.append(t)
        t -= timedelta(days=step_days)
    return sorted(out)
