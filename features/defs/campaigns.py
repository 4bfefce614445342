"""Campaign features: campaigns received and coupons redeemed (exposures, coupons and redemptions).

Present only when the data home holds exposures or redemptions (an export with campaigns): like the
export's own customer attributes, they follow the catalogue's features in the feature table and the
snapshot manifest (see :func:`features.definitions.features_for`), so the feature set of exports
without campaigns does not change.

A redemption's campaign is its own ``campaign_id``, else the campaign of its coupon (the smallest one
when the coupons table lists a coupon under several campaigns). ``redemption_rate_365d`` is the share
of the campaigns received in the 365 days before the cutoff from which the customer redeemed at least
one coupon in that window; null with no campaign received.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.contract import Col
from features.defs.common import Feature, FeatureGroup, Tables, count_where, days_before, no_rows

WINDOW = 365
_KEY = Col.CUSTOMER_KEY
_CAMPAIGN = "campaign_"  # internal: the redemption's campaign

CAMPAIGN_FEATURES = (
    Feature("campaigns_received_365d", "campaigns received in the last 365 days", window_days=WINDOW, fill=0.0),
    Feature("campaigns_received_lifetime", "campaigns received ever", fill=0.0),
    Feature("days_since_last_campaign", "days since the customer last received a campaign", ages=True),
    Feature("coupon_redemptions_365d", "coupons redeemed in the last 365 days", window_days=WINDOW, fill=0.0),
    Feature(
        "redemption_rate_365d",
        "share of the campaigns received in the last 365 days from which the customer redeemed a coupon",
        window_days=WINDOW,
    ),
)


def _exposures(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table | None:
    if "exposures" not in tables:
        return None
    e = tables["exposures"]
    return e.filter(e[_KEY].notnull(), e[Col.EXPOSED_AT] < cutoff)


def _redemptions(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table | None:
    if "redemptions" not in tables:
        return None
    r = tables["redemptions"]
    r = r.filter(r[_KEY].notnull(), r[Col.REDEEMED_AT] < cutoff)
    campaign = r[Col.CAMPAIGN_ID].cast("string")
    if "coupons" in tables:
        c = tables["coupons"]
        per_coupon = c.group_by(Col.COUPON_ID).aggregate(**{_CAMPAIGN: c[Col.CAMPAIGN_ID].cast("string").min()})
        joined = r.left_join(per_coupon, r[Col.COUPON_ID] == per_coupon[Col.COUPON_ID])
        return joined.select(
            _KEY, Col.REDEEMED_AT, **{_CAMPAIGN: joined[Col.CAMPAIGN_ID].cast("string").fill_null(joined[_CAMPAIGN])}
        )
    return r.select(_KEY, Col.REDEEMED_AT, **{_CAMPAIGN: campaign})


def _counts(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    """Every feature but the rate, one row per customer with an exposure or a redemption."""
    exposures = _exposures(tables, cutoff)
    redemptions = _redemptions(tables, cutoff)
    if exposures is None and redemptions is None:
        return no_rows(tables, CAMPAIGN_FEATURES).drop("redemption_rate_365d")
    keys: list[ir.Table] = []
    received = None
    if exposures is not None:
        in_window = days_before(cutoff, exposures[Col.EXPOSED_AT]) <= WINDOW
        received = exposures.group_by(_KEY).aggregate(
            campaigns_received_365d=exposures[Col.CAMPAIGN_ID].nunique(where=in_window).cast("float64"),
            campaigns_received_lifetime=exposures[Col.CAMPAIGN_ID].nunique().cast("float64"),
            days_since_last_campaign=days_before(cutoff, exposures[Col.EXPOSED_AT].max()),
        )
        keys.append(received.select(_KEY))
    redeemed = None
    if redemptions is not None:
        r_window = days_before(cutoff, redemptions[Col.REDEEMED_AT]) <= WINDOW
        redeemed = redemptions.group_by(_KEY).aggregate(coupon_redemptions_365d=count_where(r_window))
        keys.append(redeemed.select(_KEY))
    out = keys[0] if len(keys) == 1 else ibis.union(*keys, distinct=True)
    out = out.distinct()
    if received is not None:
        out = out.left_join(received, _KEY).drop(f"{_KEY}_right")
    else:
        out = out.mutate(
            campaigns_received_365d=ibis.null("float64"),
            campaigns_received_lifetime=ibis.null("float64"),
            days_since_last_campaign=ibis.null("float64"),
        )
    if redeemed is not None:
        out = out.left_join(redeemed, _KEY).drop(f"{_KEY}_right")
    else:
        out = out.mutate(coupon_redemptions_365d=ibis.null("float64"))
    return out.select(_KEY, *(f.name for f in CAMPAIGN_FEATURES if f.name != "redemption_rate_365d"))


def _campaigns(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    base = _counts(tables, cutoff)
    exposures = _exposures(tables, cutoff)
    redemptions = _redemptions(tables, cutoff)
    if exposures is None:
        return base.mutate(redemption_rate_365d=ibis.null("float64")).select(_KEY, *(f.name for f in CAMPAIGN_FEATURES))
    got = exposures.filter(days_before(cutoff, exposures[Col.EXPOSED_AT]) <= WINDOW)
    got = got.select(_KEY, **{_CAMPAIGN: got[Col.CAMPAIGN_ID].cast("string")}).distinct()
    if redemptions is None:
        hits = got.filter(ibis.literal(False))
    else:
        used = redemptions.filter(days_before(cutoff, redemptions[Col.REDEEMED_AT]) <= WINDOW)
        used = used.select(_KEY, _CAMPAIGN).distinct()
        hits = got.semi_join(used, [_KEY, _CAMPAIGN])
    n_hits = hits.group_by(_KEY).aggregate(hit_campaigns_=hits.count().cast("float64"))
    joined = base.left_join(n_hits, _KEY).drop(f"{_KEY}_right")
    received = joined["campaigns_received_365d"]
    rate = (received > 0).ifelse(joined["hit_campaigns_"].fill_null(0.0) / received, ibis.null("float64"))
    return joined.mutate(redemption_rate_365d=rate).select(_KEY, *(f.name for f in CAMPAIGN_FEATURES))


def campaign_group(tables: Tables) -> FeatureGroup | None:
    """The campaign features, or None when the data holds neither exposures nor redemptions."""
    if "exposures" not in tables and "redemptions" not in tables:
        return None
    return FeatureGroup("campaigns", CAMPAIGN_FEATURES, _campaigns)
