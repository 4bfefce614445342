"""Feature definitions, written once as Ibis expressions over the ingested contract tables.

Every feature is computed **as of a cutoff** from events strictly before it. The same expressions
run on embedded DuckDB (default) and on any other Ibis backend (Spark for data that outgrows one
machine). Each feature carries a name, a human description (shown in explanations), the entity, a
dtype and its window; the families live in :mod:`features.defs`.
"""

from __future__ import annotations

import hashlib
import inspect
from datetime import datetime

import ibis
import ibis.expr.types as ir

from features.contract import Col
from features.defs import campaigns, engagement, orders, profile, web
from features.defs.common import Feature, FeatureGroup, Tables

__all__ = [
    "DESCRIPTIONS",
    "FEATURES",
    "FEATURE_NAMES",
    "GROUPS",
    "MONETARY_FEATURES",
    "Feature",
    "FeatureGroup",
    "feature_table",
    "features_for",
    "has_prices",
    "optional_groups",
]

GROUPS: tuple[FeatureGroup, ...] = (*orders.GROUPS, *web.GROUPS, *profile.GROUPS, *engagement.GROUPS)

FEATURES: tuple[Feature, ...] = tuple(f for g in GROUPS for f in g.features)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
NUMERIC_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.dtype == "float32")
REALTIME_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.live is not None)  # features.realtime's
DESCRIPTIONS: dict[str, str] = {f.name: f.description for f in FEATURES}
MONETARY_FEATURES: tuple[str, ...] = orders.MONETARY_FEATURES


def has_prices(tables: Tables) -> bool:
    """Whether the data's orders carry amounts: an export without prices publishes every order's amount
    null (``prices: false`` in the ingest report), and its :data:`MONETARY_FEATURES` are then null."""
    o = tables.get("orders")
    if o is None or Col.AMOUNT not in o.columns:
        return False
    return bool(o[Col.AMOUNT].notnull().any().execute())


def population(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    """Every customer known before the cutoff: a customer record created, or an order placed."""
    parts = []
    if "customers" in tables:
        c = tables["customers"]
        known = c.filter(c[Col.CUSTOMER_KEY].notnull(), c[Col.CREATED_AT].isnull() | (c[Col.CREATED_AT] < cutoff))
        parts.append(known.select(Col.CUSTOMER_KEY))
    parts.append(orders.orders_before(tables, cutoff).select(Col.CUSTOMER_KEY))
    union = parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=True)
    return union.distinct()


def optional_groups(tables: Tables) -> tuple[FeatureGroup, ...]:
    """Groups that exist only for some exports: campaigns (when the data holds exposures or
    redemptions) and the export's own customer attributes (declared in its mapping)."""
    found = (campaigns.campaign_group(tables), profile.attribute_group(tables))
    return tuple(g for g in found if g is not None)


def features_for(tables: Tables) -> tuple[Feature, ...]:
    """Every feature of this data: the catalogue, then those of :func:`optional_groups`. Models pick
    theirs by name, so an export's extra features never change another model's inputs."""
    return FEATURES + tuple(f for g in optional_groups(tables) for f in g.features)


def feature_table(tables: Tables, as_of: datetime) -> ir.Table:
    """All features as of ``as_of`` for the whole population, one row per customer_key.

    Only events strictly before ``as_of`` are used. A customer without any event of a kind gets the
    feature's ``fill`` (counts: 0) or null (e.g. recency of someone who never ordered). Data without
    prices (:func:`has_prices`) gets every :data:`MONETARY_FEATURES` null. The export's
    customer attributes, when its mapping declares some, follow the catalogue's features.
    """
    cutoff = ibis.timestamp(as_of)
    out = population(tables, cutoff)
    extra = optional_groups(tables)
    for group in (*GROUPS, *extra):
        built = group.build(tables, cutoff)
        out = out.left_join(built, Col.CUSTOMER_KEY).drop(f"{Col.CUSTOMER_KEY}_right")
    every = features_for(tables)
    fills = {f.name: out[f.name].fill_null(f.fill) for f in every if f.fill is not None}
    if not has_prices(tables):  # amounts not available: null, not the 0 of "spent nothing"
        fills |= {name: ibis.null("float64") for name in MONETARY_FEATURES}
    names = [f.name for f in every]
    return out.mutate(**fills).select(Col.CUSTOMER_KEY, *names).order_by(Col.CUSTOMER_KEY)


def catalogue_markdown() -> str:
    """The feature catalogue as markdown (``docs/features.md`` is exactly this text)."""
    lines = [
        "# Feature catalogue",
        "",
        "Generated from `features/definitions.py` by `kairos features catalogue`; a test keeps this file",
        "equal to the code. Every feature is computed as of a cutoff from events strictly before it, one",
        'row per `customer_key`. *Ages*: a "days since" feature that the online store ages between',
        "snapshots. *Fill*: the value for a customer with no event of the kind (else null). *Online*: what",
        "the online store does with it between two snapshots (below).",
        "",
        f"{len(FEATURES)} features in {len(GROUPS)} groups.",
        "",
        "## One clock: what the API and the export answer at an instant",
        "",
        "Every score and decision is computed as of one explicit instant: the request's `now` (`/v1/scores`,",
        "the decision, offer and profile endpoints), else the service's `clock` setting when one is configured",
        "(a replay, a demo of past data), else the server's clock; never the latest event the store has seen.",
        "Events at or after that instant are ignored for that answer, and an instant before the snapshot's",
        "as-of is refused (422 naming `now`). `kairos score --all --now T` reads the snapshot at `T` by the",
        "same rules, so for a customer without events since the snapshot the API's scores at `T` equal the",
        "export's (`tests/features/test_clock_parity.py`, `tests/serving/test_clock.py`). Consent is the",
        "exception: it is a hard filter, decided from the whole consent history whatever the instant",
        '([docs/consent.md](consent.md)). Recommendations keep the data\'s clock for "popular this month".',
        "",
        "What the online store does with each feature between snapshots (the *online* column):",
        "",
        f"- **exact** ({len(REALTIME_NAMES)} features, those with a `live` rule in their definition): moved by",
        "  real-time events and exact at any instant. Window counts and sums are recounted at the instant from",
        "  the snapshot's own event times (read from the ingested tables when the store loads) and the events",
        "  since, so events leave a window when they should; lifetime counts and sums add the events since the",
        '  snapshot (an order is one order id, however many events its lines come in); "days since" is the',
        "  latest event, else the snapshot's value aged. Two declared limits: `cart_size` starts from the",
        "  snapshot's floored cart until the customer orders or checks out (it differs from the batch only when",
        "  more items were removed than added before the snapshot), and `monetary_lifetime` adds new amounts to",
        "  the snapshot's float32 total (within one float32 step of the batch).",
        '- **aged**: a "days since" feature no event moves; it grows by the days since the snapshot.',
        "- **snapshot**: everything else keeps the snapshot's value until the next snapshot (rates, trends,",
        "  mix, engagement counts, hour-of-week activity, abandoned carts, profile).",
    ]
    for group in GROUPS:
        lines += [
            "",
            f"## {group.name}",
            "",
            "| feature | meaning | type | window | ages | fill | online |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in group.features:
            if f.name.startswith("how_") and f.name != "how_000":
                continue
            name = "how_000 … how_167" if f.name == "how_000" else f"`{f.name}`"
            description = (
                "activity (opens, clicks, sessions, orders) in one hour of the week, local time; bin = "
                "(ISO weekday − 1)·24 + hour"
                if f.name == "how_000"
                else f.description
            )
            window = f"{f.window_days} d" if f.window_days else "all history"
            fill = "" if f.fill is None else f"{f.fill:g}"
            online = "exact" if f.live is not None else "aged" if f.ages else "snapshot"
            lines.append(
                f"| {name} | {description} | {f.dtype} | {window} | {'yes' if f.ages else ''} | {fill} | {online} |"
            )
    lines += [
        "",
        "## Features of some exports only",
        "",
        "They follow the features above in a snapshot and its manifest when the data home has what they",
        "need (`features.definitions.optional_groups`); no model of the catalogue uses them unless it asks",
        "for them by name.",
        "",
        "- **campaigns** (when the data holds exposures or redemptions): "
        + ", ".join(f"`{f.name}` ({f.description})" for f in campaigns.CAMPAIGN_FEATURES)
        + ".",
        "- **customer attributes** declared in the export's mapping (`attributes` of the customers table):"
        " an ordered band gives `attr_<name>` (its position in the declared order, 1 = first) and"
        " `attr_<name>_band` (its label); a category `attr_<name>` (its label); a number `attr_<name>`;"
        " a flag `attr_<name>` (1 or 0); a date `attr_<name>_days` (days since it).",
    ]
    return "\n".join(lines) + "\n"


def definition_hash() -> str:
    """A hash of the feature definitions' source, recorded in every manifest."""
    digest = hashlib.sha256()
    for group in GROUPS:
        digest.update(inspect.getsource(group.build).encode())
        for f in group.features:
            digest.update(repr(f).encode())
    return digest.hexdigest()[:16]
