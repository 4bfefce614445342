"""Order features: RFM, purchase rhythm and trends, basket mix, returns and cancellations.

Every group reads only orders placed strictly before the cutoff (and the lines of those orders, and
returns made before it) of known customers. ``orders`` is required; ``order_lines``, ``items`` and
``returns`` are optional: without them the features that need them are null (or the count's fill).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.contract import Col, SalesChannel
from features.defs.common import SECONDS_PER_DAY, Feature, FeatureGroup, Live, Tables, days_before

RFM_WINDOWS = (30, 90, 180, 365)
TREND_RECENT = 3  # the trends compare the last 3 orders with the ones before them
# Features computed from order amounts: null for everyone when the data has no prices (a basket-only
# export), never 0 ("spent nothing" would be a lie). The rest of the order features stand without prices.
MONETARY_FEATURES = (
    "monetary_lifetime",
    *(f"monetary_{w}d" for w in RFM_WINDOWS),
    "avg_order_value",
    "order_value_trend",
)
_KEY = Col.CUSTOMER_KEY

# Intermediate columns inside the builds (never published).
_UNITS = "units_"
_GAP = "gap_days_"
_RANK = "rank_from_last_"
_BRAND_UNITS = "brand_units_"
_N_ORDERS = "n_orders_"
_BOUGHT = "units_bought_"
_RETURNED = "units_returned_"
_CANCELS = "cancel_docs_"


def orders_before(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    """Orders of known customers placed strictly before the cutoff."""
    orders = tables["orders"]
    return orders.filter(orders[Col.ORDERED_AT] < cutoff, orders[_KEY].notnull())


def lines_before(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table | None:
    """Lines of :func:`orders_before` (order_id, item_id, quantity, discount when present, customer_key).

    The customer and the time come from the order header, so lines and orders always agree. None when
    the data has no order lines.
    """
    if "order_lines" not in tables:
        return None
    lines = tables["order_lines"]
    wanted = (Col.ORDER_ID, Col.ITEM_ID, Col.QUANTITY, Col.DISCOUNT)
    headers = orders_before(tables, cutoff).select(Col.ORDER_ID, _KEY)
    return lines.select(*(c for c in wanted if c in lines.columns)).join(headers, Col.ORDER_ID)


def _null() -> ir.FloatingScalar:
    return ibis.null("float64")


def _ratio(num: ir.NumericValue, den: ir.NumericValue) -> ir.FloatingValue:
    """num / den as float64; null when den is 0 or null."""
    return num.cast("float64") / den.cast("float64").nullif(0.0)


def _left(left: ir.Table, right: ir.Table) -> ir.Table:
    """Left join on customer_key keeping the left key once."""
    joined = left.left_join(right, _KEY)
    return joined.select(*left.columns, *(c for c in right.columns if c != _KEY))


def _nulls_for(keys: ir.Table, names: list[str]) -> ir.Table:
    return keys.mutate(**{n: _null() for n in names})


# ---------------------------------------------------------------------------------------------
# RFM

_ORDER_COUNT, _ORDER_SUM = Live("order", "count"), Live("order", "sum")
RFM = (
    Feature("recency_days", "days since the last order", ages=True, live=Live("order", "last")),
    Feature("orders_lifetime", "orders placed ever", fill=0.0, live=_ORDER_COUNT),
    *(
        Feature(f"orders_{w}d", f"orders in the last {w} days", window_days=w, fill=0.0, live=_ORDER_COUNT)
        for w in RFM_WINDOWS
    ),
    Feature("monetary_lifetime", "amount spent ever", fill=0.0, live=_ORDER_SUM),
    *(
        Feature(f"monetary_{w}d", f"amount spent in the last {w} days", window_days=w, fill=0.0, live=_ORDER_SUM)
        for w in RFM_WINDOWS
    ),
    Feature("avg_order_value", "average order value"),
    Feature("tenure_days", "days since the first order", ages=True, live=Live("order", "first")),
)


def _rfm(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    o = orders_before(tables, cutoff)
    age = days_before(cutoff, o[Col.ORDERED_AT])
    metrics: dict[str, ir.Value] = {
        "recency_days": days_before(cutoff, o[Col.ORDERED_AT].max()),
        "orders_lifetime": o.count().cast("float64"),
        "monetary_lifetime": o[Col.AMOUNT].sum().cast("float64"),
        "avg_order_value": o[Col.AMOUNT].mean().cast("float64"),
        "tenure_days": days_before(cutoff, o[Col.ORDERED_AT].min()),
    }
    for w in RFM_WINDOWS:
        inside = age <= w
        metrics[f"orders_{w}d"] = inside.ifelse(1, 0).sum().cast("float64")
        metrics[f"monetary_{w}d"] = inside.ifelse(o[Col.AMOUNT], 0.0).sum().cast("float64")
    return o.group_by(_KEY).aggregate(**metrics).select(_KEY, *(f.name for f in RFM))


# ---------------------------------------------------------------------------------------------
# Rhythm: gaps between orders, how overdue the next one is, and the trend of the last orders

RHYTHM = (
    Feature("items_per_order", "average number of units per order"),
    Feature("gap_mean_days", "average days between two consecutive purchase days"),
    Feature("gap_std_days", "how irregular the days between purchase days are (standard deviation)"),
    Feature("overdue_ratio", "days since the last order divided by the usual days between orders (above 1: overdue)"),
    Feature(
        "order_value_trend",
        f"change in order value: the last {TREND_RECENT} orders against the earlier ones (0.2 = 20% more)",
    ),
    Feature(
        "basket_size_trend",
        f"change in units per order: the last {TREND_RECENT} orders against the earlier ones (0.2 = 20% more)",
    ),
)


def _orders_with_units(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    """Orders before the cutoff with their units (0 for an order without lines; null without lines data)."""
    o = orders_before(tables, cutoff).select(_KEY, Col.ORDER_ID, Col.ORDERED_AT, Col.AMOUNT)
    lines = lines_before(tables, cutoff)
    if lines is None:
        return o.mutate(**{_UNITS: _null()})
    units = lines.group_by(Col.ORDER_ID).aggregate(**{_UNITS: lines[Col.QUANTITY].sum().cast("float64")})
    joined = o.left_join(units, Col.ORDER_ID)
    return joined.select(*o.columns, **{_UNITS: joined[_UNITS].fill_null(0.0)})


def _trend(value: ir.NumericColumn, recent: ir.BooleanColumn, n_orders: ir.IntegerScalar) -> ir.FloatingScalar:
    """mean(value over the recent orders) / mean(value over the earlier ones) - 1; null under 4 orders."""
    recent_mean = recent.ifelse(value, _null()).mean()
    earlier_mean = recent.ifelse(_null(), value).mean()
    return (n_orders > TREND_RECENT).ifelse(_ratio(recent_mean, earlier_mean) - 1.0, _null())


def _rhythm(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    o = _orders_with_units(tables, cutoff)
    ts = o[Col.ORDERED_AT]
    newest_first = ibis.window(group_by=_KEY, order_by=[ts.desc(), o[Col.ORDER_ID].desc()])
    o = o.mutate(**{_RANK: ibis.row_number().over(newest_first)})  # 0 = the last order
    n_orders = o.count()
    recent = o[_RANK] < TREND_RECENT
    per_order = o.group_by(_KEY).aggregate(
        items_per_order=o[_UNITS].mean(),
        _recency=days_before(cutoff, ts.max()),
        order_value_trend=_trend(o[Col.AMOUNT].cast("float64"), recent, n_orders),
        basket_size_trend=_trend(o[_UNITS], recent, n_orders),
    )
    # Gaps are between purchase days (UTC): several invoices within one day are one visit, as in the
    # CDNOW convention; otherwise minutes-apart invoices make gaps near zero and "overdue" meaningless.
    days = o.select(_KEY, _DAY=(ts.epoch_seconds() / SECONDS_PER_DAY).floor()).distinct()
    previous = days["_DAY"].lag().over(ibis.window(group_by=_KEY, order_by=days["_DAY"]))
    days = days.mutate(**{_GAP: (days["_DAY"] - previous).cast("float64")})
    gap = days[_GAP]
    gaps = days.group_by(_KEY).aggregate(
        gap_mean_days=gap.mean(),
        gap_std_days=(gap.count() >= 2).ifelse(gap.std(how="sample"), _null()),
    )
    out = _left(per_order, gaps)
    out = out.mutate(overdue_ratio=_ratio(out["_recency"], out["gap_mean_days"]))
    return out.select(_KEY, *(f.name for f in RHYTHM))


# ---------------------------------------------------------------------------------------------
# Mix: what and how the customer buys

MIX = (
    Feature("n_categories", "number of different categories bought", fill=0.0),
    Feature("n_brands", "number of different brands bought", fill=0.0),
    Feature("top_brand_share", "share of the units bought that come from the customer's favourite brand"),
    Feature("online_share", "share of orders placed online"),
    Feature("discount_share", "share of order lines bought with a discount"),
)


def _mix(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    o = orders_before(tables, cutoff)
    if Col.CHANNEL in o.columns:
        online = (o[Col.CHANNEL] == SalesChannel.ONLINE.value).ifelse(1, 0).sum()
        out = o.group_by(_KEY).aggregate(online_share=_ratio(online, o[Col.CHANNEL].count()))
    else:
        out = _nulls_for(o.select(_KEY).distinct(), ["online_share"])

    lines = lines_before(tables, cutoff)
    line_features = ["n_categories", "n_brands", "top_brand_share", "discount_share"]
    if lines is None:
        return _nulls_for(out, line_features).select(_KEY, *(f.name for f in MIX))

    items = tables.get("items")
    item_cols = [c for c in (Col.CATEGORY, Col.BRAND) if items is not None and c in items.columns]
    if items is not None and item_cols:
        joined = lines.left_join(items.select(Col.ITEM_ID, *item_cols), Col.ITEM_ID)
        lines = joined.select(*lines.columns, *item_cols)
    per_line: dict[str, ir.Value] = {
        "n_categories": lines[Col.CATEGORY].nunique().cast("float64") if Col.CATEGORY in item_cols else _null(),
        "discount_share": _ratio((lines[Col.DISCOUNT] > 0).ifelse(1, 0).sum(), lines[Col.DISCOUNT].count())
        if Col.DISCOUNT in lines.columns
        else _null(),
    }
    out = _left(out, lines.group_by(_KEY).aggregate(**per_line))

    if Col.BRAND in item_cols:
        branded = lines.filter(lines[Col.BRAND].notnull())
        per_brand = branded.group_by([_KEY, Col.BRAND]).aggregate(
            **{_BRAND_UNITS: branded[Col.QUANTITY].sum().cast("float64")}
        )
        units = per_brand[_BRAND_UNITS]
        brands = per_brand.group_by(_KEY).aggregate(
            n_brands=per_brand.count().cast("float64"), top_brand_share=_ratio(units.max(), units.sum())
        )
        out = _left(out, brands)
        # a customer whose lines carry no brand bought 0 brands (a share stays null: undefined)
        out = out.mutate(n_brands=out["n_brands"].fill_null(0.0))
    else:
        out = _nulls_for(out, ["n_brands", "top_brand_share"])
    if Col.CATEGORY in item_cols:
        out = out.mutate(n_categories=out["n_categories"].fill_null(0.0))
    return out.select(_KEY, *(f.name for f in MIX))


# ---------------------------------------------------------------------------------------------
# Returns and cancellations

RETURNS_CANCELS = (
    Feature("return_rate", "share of the units bought that were returned or cancelled"),
    Feature("cancel_rate", "share of orders cancelled: cancellations / (orders + cancellations)"),
)


def _returns(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    zero = ibis.literal(0.0)

    def per_customer(t: ir.Table, **sums: ir.Value) -> ir.Table:
        """One row per customer with the four totals (the ones not given are 0)."""
        totals = {_N_ORDERS: zero, _BOUGHT: zero, _RETURNED: zero, _CANCELS: zero, **sums}
        return t.group_by(_KEY).aggregate(**totals)

    o = orders_before(tables, cutoff)
    parts = [per_customer(o, **{_N_ORDERS: o.count().cast("float64")})]
    lines = lines_before(tables, cutoff)
    if lines is not None:
        parts.append(per_customer(lines, **{_BOUGHT: lines[Col.QUANTITY].sum().cast("float64")}))
    has_returns = "returns" in tables
    if has_returns:
        r = tables["returns"]
        r = r.filter(r[Col.RETURNED_AT] < cutoff, r[_KEY].notnull())
        returned = r[Col.QUANTITY].sum().cast("float64")
        # every cancellation / return document counts once, whatever its number of lines
        parts.append(per_customer(r, **{_RETURNED: returned, _CANCELS: r[Col.RETURN_ID].nunique().cast("float64")}))
    both = ibis.union(*parts, distinct=False) if len(parts) > 1 else parts[0]
    t = both.group_by(_KEY).aggregate(**{c: both[c].sum() for c in (_N_ORDERS, _BOUGHT, _RETURNED, _CANCELS)})
    known_units = lines is not None and has_returns
    return t.select(
        _KEY,
        return_rate=_ratio(t[_RETURNED], t[_BOUGHT]) if known_units else _null(),
        cancel_rate=_ratio(t[_CANCELS], t[_N_ORDERS] + t[_CANCELS]) if has_returns else _null(),
    )


GROUPS: tuple[FeatureGroup, ...] = (
    FeatureGroup("rfm", RFM, _rfm),
    FeatureGroup("rhythm", RHYTHM, _rhythm),
    FeatureGroup("mix", MIX, _mix),
    FeatureGroup("returns", RETURNS_CANCELS, _returns),
)
