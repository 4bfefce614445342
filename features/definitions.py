"""Feature definitions, written once as Ibis expressions over the ingested contract tables.

Every feature is computed **as of a cutoff** from events strictly before it. The same expressions
run on embedded DuckDB (default) and on any other Ibis backend. Each feature carries a name, a
human description (shown in explanations), the entity, a dtype and its window.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import ibis
import ibis.expr.types as ir

from features.contract import Col

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class Feature:
    """One feature: what it is called, what it means, and over which window."""

    name: str
    description: str
    dtype: str = "float32"
    window_days: int | None = None  # None: the whole history before the cutoff
    entity: str = Col.CUSTOMER_KEY


@dataclass(frozen=True)
class FeatureGroup:
    """Features that one Ibis expression computes together."""

    name: str
    features: tuple[Feature, ...]
    build: Callable[[dict[str, ir.Table], ir.TimestampScalar], ir.Table]


def _days_before(cutoff: ir.TimestampScalar, ts: ir.TimestampValue) -> ir.FloatingValue:
    return (cutoff.epoch_seconds() - ts.epoch_seconds()).cast("float64") / SECONDS_PER_DAY


def _orders_before(tables: dict[str, ir.Table], cutoff: ir.TimestampScalar) -> ir.Table:
    orders = tables["orders"]
    return orders.filter(orders[Col.ORDERED_AT] < cutoff, orders[Col.CUSTOMER_KEY].notnull())


RFM_WINDOWS = (90, 365)

RFM = (
    Feature("recency_days", "days since the last order"),
    Feature("orders_lifetime", "orders placed ever"),
    *(Feature(f"orders_{w}d", f"orders in the last {w} days", window_days=w) for w in RFM_WINDOWS),
    Feature("monetary_lifetime", "amount spent ever"),
    *(Feature(f"monetary_{w}d", f"amount spent in the last {w} days", window_days=w) for w in RFM_WINDOWS),
    Feature("avg_order_value", "average order value"),
    Feature("tenure_days", "days since the first order"),
)


def _rfm(tables: dict[str, ir.Table], cutoff: ir.TimestampScalar) -> ir.Table:
    o = _orders_before(tables, cutoff)
    age = _days_before(cutoff, o[Col.ORDERED_AT])
    metrics: dict[str, ir.Value] = {
        "recency_days": _days_before(cutoff, o[Col.ORDERED_AT].max()),
        "orders_lifetime": o.count().cast("float64"),
        "monetary_lifetime": o["amount"].sum().cast("float64"),
        "avg_order_value": o["amount"].mean().cast("float64"),
        "tenure_days": _days_before(cutoff, o[Col.ORDERED_AT].min()),
    }
    for w in RFM_WINDOWS:
        inside = age <= w
        metrics[f"orders_{w}d"] = inside.ifelse(1, 0).sum().cast("float64")
        metrics[f"monetary_{w}d"] = inside.ifelse(o["amount"], 0.0).sum().cast("float64")
    return o.group_by(Col.CUSTOMER_KEY).aggregate(**metrics)


GROUPS: tuple[FeatureGroup, ...] = (FeatureGroup("rfm", RFM, _rfm),)

FEATURES: tuple[Feature, ...] = tuple(f for g in GROUPS for f in g.features)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
DESCRIPTIONS: dict[str, str] = {f.name: f.description for f in FEATURES}


def population(tables: dict[str, ir.Table], cutoff: ir.TimestampScalar) -> ir.Table:
    """Every customer known before the cutoff: a customer record created, or an order placed."""
    parts = []
    if "customers" in tables:
        c = tables["customers"]
        known = c.filter(c[Col.CUSTOMER_KEY].notnull(), c[Col.CREATED_AT].isnull() | (c[Col.CREATED_AT] < cutoff))
        parts.append(known.select(Col.CUSTOMER_KEY))
    parts.append(_orders_before(tables, cutoff).select(Col.CUSTOMER_KEY))
    union = parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=True)
    return union.distinct()


def feature_table(tables: dict[str, ir.Table], as_of: datetime) -> ir.Table:
    """All features as of ``as_of`` for the whole population, one row per customer_key.

    Only events strictly before ``as_of`` are used. Features of a customer without any event of a
    kind are null (not zero): "never ordered" is not "ordered zero times recently" for recency.
    """
    cutoff = ibis.timestamp(as_of)
    out = population(tables, cutoff)
    for group in GROUPS:
        out = out.left_join(group.build(tables, cutoff), Col.CUSTOMER_KEY).drop(f"{Col.CUSTOMER_KEY}_right")
    zero_when_absent = [f"orders_{w}d" for w in RFM_WINDOWS] + [f"monetary_{w}d" for w in RFM_WINDOWS]
    zero_when_absent += ["orders_lifetime", "monetary_lifetime"]
    return out.mutate(**{c: out[c].fill_null(0.0) for c in zero_when_absent}).order_by(Col.CUSTOMER_KEY)


def definition_hash() -> str:
    """A hash of the feature definitions' source, recorded in every manifest."""
    digest = hashlib.sha256()
    for group in GROUPS:
        digest.update(inspect.getsource(group.build).encode())
        for f in group.features:
            digest.update(repr(f).encode())
    return digest.hexdigest()[:16]
