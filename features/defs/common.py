"""The vocabulary every feature module shares: the feature record, its group, and time helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import ibis
import ibis.expr.types as ir

from features.contract import Col

SECONDS_PER_DAY = 86_400.0

Dtype = Literal["float32", "string"]
Tables = dict[str, ir.Table]
LiveRule = Literal["count", "sum", "last", "first", "since_last_order", "cart", "consent"]


@dataclass(frozen=True)
class Live:
    """How the real-time path (``features/realtime.py``) keeps a feature exact at any read time from events.

    Attributes:
        stream: the events that move it: ``order``, ``view``, ``add_to_cart``, ``session`` (a visit, dated by
            its first event), ``visit`` (any web event), ``cart``, ``open_<channel>``, ``consent_<channel>``.
        rule: ``count`` / ``sum`` (of the order amounts) over the feature's window, or over all history when it
            has none; ``last`` / ``first``: days since the latest / earliest event; ``since_last_order``: views
            after the latest order; ``cart``: added minus removed since the last order or checkout;
            ``consent``: the channel's consent history.
    """

    stream: str
    rule: LiveRule


@dataclass(frozen=True)
class Feature:
    """One feature: what it is called, what it means, and over which window.

    Attributes:
        name: column name in snapshots and the online store.
        description: human words, shown in explanations ("days since the last order").
        dtype: ``float32`` (numeric, in the online matrix) or ``string`` (categorical).
        window_days: the look-back window; None for the whole history before the cutoff.
        ages: a "days since ..." feature that grows by one per day until the event recurs; the online
            store ages it between snapshots.
        fill: value for a customer with no event of the kind (counts: 0.0); None leaves it null.
        entity: the key the feature belongs to.
        live: how the real-time path keeps it exact between snapshots; None: it is not moved by events (a
            "days since" one is aged, any other one keeps the snapshot's value until the next snapshot).
    """

    name: str
    description: str
    dtype: Dtype = "float32"
    window_days: int | None = None
    ages: bool = False
    fill: float | None = None
    entity: str = Col.CUSTOMER_KEY
    live: Live | None = None


@dataclass(frozen=True)
class FeatureGroup:
    """Features that one Ibis expression computes together, one row per ``customer_key``.

    ``build(tables, cutoff)`` must use only events strictly before ``cutoff`` and return a table with
    ``customer_key`` plus exactly the group's feature names.
    """

    name: str
    features: tuple[Feature, ...]
    build: Callable[[Tables, ir.TimestampScalar], ir.Table]


def days_before(cutoff: ir.TimestampScalar, ts: ir.TimestampValue) -> ir.FloatingValue:
    """Days (fractional) from ``ts`` to ``cutoff``; backend-portable (epoch arithmetic)."""
    return (cutoff.epoch_seconds() - ts.epoch_seconds()).cast("float64") / SECONDS_PER_DAY


def count_where(condition: ir.BooleanValue) -> ir.FloatingScalar:
    """How many rows satisfy ``condition``, as float64."""
    return condition.ifelse(1, 0).sum().cast("float64")


def no_rows(tables: Tables, features: tuple[Feature, ...]) -> ir.Table:
    """An empty result with the group's schema, on the same backend as the other tables (for a group
    whose source table is absent from the export)."""
    anchor = next((t for t in tables.values() if Col.CUSTOMER_KEY in t.columns), None)
    if anchor is None:
        raise ValueError(f"no table with a {Col.CUSTOMER_KEY} column to build an empty feature group on")
    columns = {f.name: ibis.null("string" if f.dtype == "string" else "float64") for f in features}
    return anchor.filter(ibis.literal(False)).select(Col.CUSTOMER_KEY, **columns)
