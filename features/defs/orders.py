"""Order features: RFM (and, as the catalogue grows, rhythm and mix)."""

from __future__ import annotations

import ibis.expr.types as ir

from features.contract import Col
from features.defs.common import Feature, FeatureGroup, Tables, days_before

RFM_WINDOWS = (90, 365)


def orders_before(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    """Orders of known customers placed strictly before the cutoff."""
    orders = tables["orders"]
    return orders.filter(orders[Col.ORDERED_AT] < cutoff, orders[Col.CUSTOMER_KEY].notnull())


RFM = (
    Feature("recency_days", "days since the last order", ages=True),
    Feature("orders_lifetime", "orders placed ever", fill=0.0),
    *(Feature(f"orders_{w}d", f"orders in the last {w} days", window_days=w, fill=0.0) for w in RFM_WINDOWS),
    Feature("monetary_lifetime", "amount spent ever", fill=0.0),
    *(Feature(f"monetary_{w}d", f"amount spent in the last {w} days", window_days=w, fill=0.0) for w in RFM_WINDOWS),
    Feature("avg_order_value", "average order value"),
    Feature("tenure_days", "days since the first order", ages=True),
)


def _rfm(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    o = orders_before(tables, cutoff)
    age = days_before(cutoff, o[Col.ORDERED_AT])
    metrics: dict[str, ir.Value] = {
        "recency_days": days_before(cutoff, o[Col.ORDERED_AT].max()),
        "orders_lifetime": o.count().cast("float64"),
        "monetary_lifetime": o["amount"].sum().cast("float64"),
        "avg_order_value": o["amount"].mean().cast("float64"),
        "tenure_days": days_before(cutoff, o[Col.ORDERED_AT].min()),
    }
    for w in RFM_WINDOWS:
        inside = age <= w
        metrics[f"orders_{w}d"] = inside.ifelse(1, 0).sum().cast("float64")
        metrics[f"monetary_{w}d"] = inside.ifelse(o["amount"], 0.0).sum().cast("float64")
    return o.group_by(Col.CUSTOMER_KEY).aggregate(**metrics)


GROUPS: tuple[FeatureGroup, ...] = (FeatureGroup("rfm", RFM, _rfm),)
