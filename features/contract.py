"""The data contract: the tables a retailer exports, their columns, types and meaning.

This module is the one vocabulary of Kairos. Column names are defined here once; every other
module refers to them through :class:`Col` and :data:`TABLES`, never through string literals of
its own. ``docs/data-contract.md`` is the same contract written for a CRM analyst.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

Kind = Literal["str", "int", "float", "bool", "timestamp", "date"]


class Col:
    """Column names of the contract (one vocabulary, as RecTools' ``Columns``)."""

    CUSTOMER_ID = "customer_id"  # the retailer's source record id
    CUSTOMER_KEY = "customer_key"  # Kairos's resolved person id (identity resolution)
    EMAIL = "email"
    PHONE = "phone"
    LOYALTY_ID = "loyalty_id"
    WEB_CLIENT_ID = "web_client_id"
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    BIRTH_DATE = "birth_date"
    GENDER = "gender"
    CITY = "city"
    COUNTRY = "country"
    TIMEZONE = "timezone"
    CREATED_AT = "created_at"

    CHANNEL = "channel"
    STATUS = "status"
    CONSENTED_AT = "consented_at"
    SOURCE = "source"

    ORDER_ID = "order_id"
    LINE_NO = "line_no"
    ORDERED_AT = "ordered_at"
    STORE_ID = "store_id"
    CURRENCY = "currency"
    ITEM_ID = "item_id"
    ITEM_NAME = "item_name"
    QUANTITY = "quantity"
    UNIT_PRICE = "unit_price"
    DISCOUNT = "discount"
    LINE_AMOUNT = "line_amount"  # input only: the line total, from which unit_price is derived
    RETURN_ID = "return_id"
    RETURNED_AT = "returned_at"
    ADJUSTMENT_ID = "adjustment_id"
    ADJUSTED_AT = "adjusted_at"
    AMOUNT = "amount"

    NAME = "name"
    CATEGORY = "category"
    BRAND = "brand"
    PRICE = "price"
    ACTIVE = "active"
    IN_STOCK = "in_stock"

    EVENT_ID = "event_id"
    ANONYMOUS_ID = "anonymous_id"
    SESSION_ID = "session_id"
    EVENT_TYPE = "event_type"
    OCCURRED_AT = "occurred_at"
    QUERY = "query"

    MESSAGE_ID = "message_id"
    CAMPAIGN_ID = "campaign_id"
    OFFER_ID = "offer_id"
    SENT_AT = "sent_at"
    DELIVERED_AT = "delivered_at"
    OPENED_AT = "opened_at"
    CLICKED_AT = "clicked_at"
    UNSUBSCRIBED_AT = "unsubscribed_at"
    CONVERTED_AT = "converted_at"

    CAMPAIGN_TYPE = "campaign_type"
    RANDOMISED = "randomised"
    STARTS_AT = "starts_at"
    ENDS_AT = "ends_at"
    EXPOSED_AT = "exposed_at"
    COUPON_ID = "coupon_id"
    REDEEMED_AT = "redeemed_at"

    OFFER_TYPE = "offer_type"
    VALUE = "value"
    CHANNELS = "channels"
    VALID_FROM = "valid_from"
    VALID_TO = "valid_to"
    COST = "cost"


# Customer attributes a mapping declares (age band, income band, ...) are published in customers.parquet
# as attr_<name>; an ordered band also as attr_<name>_rank (its 1-based position in the declared order).
ATTRIBUTE_PREFIX = "attr_"
RANK_SUFFIX = "_rank"


class Channel(StrEnum):
    """Messaging channels a consent or a message refers to."""

    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class CampaignChannel(StrEnum):
    """Channels a campaign reaches customers on. A mapping may narrow the list (``channels``)."""

    DIRECT_MAIL = "direct_mail"
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    MESSENGER = "messenger"
    CALL_CENTRE = "call_centre"


class ConsentStatus(StrEnum):
    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"


class ConsentRule(StrEnum):
    """What a channel allows a customer with no consent on record (``docs/consent.md``). An opt-out on record
    forbids contact under either rule until a later opt-in."""

    OPT_IN = "opt_in"  # contact only after an opt-in (electronic messages: e-mail, SMS, push, messenger)
    OPT_OUT = "opt_out"  # contact unless an opt-out is on record (printed mail, calls)


DEFAULT_CONSENT_RULES: dict[str, ConsentRule] = {
    CampaignChannel.DIRECT_MAIL.value: ConsentRule.OPT_OUT,
    CampaignChannel.EMAIL.value: ConsentRule.OPT_IN,
    CampaignChannel.SMS.value: ConsentRule.OPT_IN,
    CampaignChannel.PUSH.value: ConsentRule.OPT_IN,
    CampaignChannel.MESSENGER.value: ConsentRule.OPT_IN,
    CampaignChannel.CALL_CENTRE.value: ConsentRule.OPT_OUT,
}
"""Each campaign channel's rule when the mapping names none (``consent_rules``); a channel of the mapping's
own vocabulary that is not listed here requires an opt-in."""


class SalesChannel(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class OrderStatus(StrEnum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    RETURNED = "returned"


class EventType(StrEnum):
    VIEW = "view"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    SEARCH = "search"
    CHECKOUT = "checkout"


class OfferType(StrEnum):
    PERCENT_DISCOUNT = "percent_discount"
    FIXED_AMOUNT = "fixed_amount"
    FREE_DELIVERY = "free_delivery"
    BONUS_POINTS = "bonus_points"
    CONTENT = "content"


class Gender(StrEnum):
    FEMALE = "F"
    MALE = "M"
    OTHER = "X"


@dataclass(frozen=True)
class Column:
    """One column of a contract table."""

    name: str
    kind: Kind
    description: str
    required: bool = False
    allowed: tuple[str, ...] | None = None  # closed vocabulary for str columns
    personal: bool = False  # personal data: never logged, hidden from narrow API scopes


@dataclass(frozen=True)
class Table:
    """One table of the contract."""

    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    customer_required: bool = False  # a row without a customer ref cannot be kept
    outputs_only: bool = False  # produced by ingestion, never read from an export
    column_index: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "column_index", {c.name: c for c in self.columns})

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return self.column_index[name]


def _values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(m.value for m in enum)


CUSTOMERS = Table(
    "customers",
    "One row per customer record in the source CRM; several records may be one person.",
    (
        Column(Col.CUSTOMER_ID, "str", "Source record id in the retailer's CRM.", required=True),
        Column(Col.EMAIL, "str", "E-mail address.", personal=True),
        Column(Col.PHONE, "str", "Phone number, any format; normalised to E.164.", personal=True),
        Column(Col.LOYALTY_ID, "str", "Loyalty card number (a strong id: one per person)."),
        Column(Col.WEB_CLIENT_ID, "str", "Web analytics client id."),
        Column(Col.FIRST_NAME, "str", "First name.", personal=True),
        Column(Col.LAST_NAME, "str", "Last name.", personal=True),
        Column(Col.BIRTH_DATE, "date", "Date of birth.", personal=True),
        Column(Col.GENDER, "str", "F, M or X.", allowed=_values(Gender)),
        Column(Col.CITY, "str", "City."),
        Column(Col.COUNTRY, "str", "Country (ISO 3166 alpha-2 code or name)."),
        Column(Col.TIMEZONE, "str", "IANA time zone, e.g. Europe/London."),
        Column(Col.CREATED_AT, "timestamp", "When the record was created."),
    ),
    key=(Col.CUSTOMER_ID,),
)

CONSENTS = Table(
    "consents",
    "Opt-in / opt-out events per customer and channel; the latest one per channel wins.",
    (
        Column(Col.CUSTOMER_ID, "str", "Customer record the consent belongs to.", required=True),
        Column(
            Col.CHANNEL,
            "str",
            "A campaign channel: direct_mail, email, sms, push, messenger or call_centre (the mapping's channels).",
            required=True,
            allowed=_values(CampaignChannel),
        ),
        Column(Col.STATUS, "str", "opt_in or opt_out.", required=True, allowed=_values(ConsentStatus)),
        Column(Col.CONSENTED_AT, "timestamp", "When the consent was given or withdrawn.", required=True),
        Column(Col.SOURCE, "str", "Where it was collected (checkout, preference centre, ...)."),
    ),
    customer_required=True,
)

ORDERS = Table(
    "orders",
    "One row per order (the order header). May be exported on its own or folded into order lines.",
    (
        Column(Col.ORDER_ID, "str", "Order (invoice) id.", required=True),
        Column(Col.CUSTOMER_ID, "str", "Customer record; empty for a guest checkout (kept as anonymous)."),
        Column(Col.ORDERED_AT, "timestamp", "When the order was placed.", required=True),
        Column(Col.CHANNEL, "str", "online or offline.", allowed=_values(SalesChannel)),
        Column(Col.STORE_ID, "str", "Store or site id."),
        Column(Col.STATUS, "str", "completed, cancelled or returned.", allowed=_values(OrderStatus)),
        Column(Col.CURRENCY, "str", "ISO 4217 currency code.", required=True),
        Column(Col.COUNTRY, "str", "Shipping country."),
    ),
    key=(Col.ORDER_ID,),
)

ORDER_LINES = Table(
    "order_lines",
    "One row per item line of an order.",
    (
        Column(Col.ORDER_ID, "str", "Order id the line belongs to.", required=True),
        Column(Col.LINE_NO, "int", "Line number within the order (assigned when absent)."),
        Column(Col.ITEM_ID, "str", "Catalogue item id (stock code).", required=True),
        Column(Col.ITEM_NAME, "str", "Item description as printed on the order."),
        Column(Col.QUANTITY, "int", "Units; negative only on cancellations.", required=True),
        Column(Col.UNIT_PRICE, "float", "Price per unit in the order currency.", required=True),
        Column(Col.DISCOUNT, "float", "Discount amount on the line."),
    ),
)

ITEMS = Table(
    "items",
    "The catalogue.",
    (
        Column(Col.ITEM_ID, "str", "Item id (stock code).", required=True),
        Column(Col.NAME, "str", "Item name."),
        Column(Col.CATEGORY, "str", "Category."),
        Column(Col.BRAND, "str", "Brand."),
        Column(Col.PRICE, "float", "Current list price."),
        Column(Col.CURRENCY, "str", "ISO 4217 currency code of the price."),
        Column(Col.ACTIVE, "bool", "Sold at the moment."),
        Column(Col.IN_STOCK, "bool", "In stock at the moment."),
    ),
    key=(Col.ITEM_ID,),
)

WEB_EVENTS = Table(
    "web_events",
    "Site and app events: views, carts, searches, checkouts.",
    (
        Column(Col.EVENT_ID, "str", "Event id (assigned when absent)."),
        Column(Col.CUSTOMER_ID, "str", "Customer record when the visitor is known."),
        Column(Col.ANONYMOUS_ID, "str", "Anonymous visitor id (cookie / device)."),
        Column(Col.SESSION_ID, "str", "Session id.", required=True),
        Column(
            Col.EVENT_TYPE,
            "str",
            "view, add_to_cart, remove_from_cart, search or checkout.",
            required=True,
            allowed=_values(EventType),
        ),
        Column(Col.OCCURRED_AT, "timestamp", "When it happened.", required=True),
        Column(Col.ITEM_ID, "str", "Item concerned, if any."),
        Column(Col.CATEGORY, "str", "Category concerned, if any."),
        Column(Col.QUERY, "str", "Search text.", personal=True),
    ),
)

MESSAGES = Table(
    "messages",
    "One row per message sent, with its engagement timestamps.",
    (
        Column(Col.MESSAGE_ID, "str", "Message (send) id.", required=True),
        Column(Col.CUSTOMER_ID, "str", "Recipient customer record.", required=True),
        Column(Col.CHANNEL, "str", "email, sms or push.", required=True, allowed=_values(Channel)),
        Column(Col.CAMPAIGN_ID, "str", "Campaign id."),
        Column(Col.OFFER_ID, "str", "Offer carried by the message, if any."),
        Column(Col.SENT_AT, "timestamp", "Sent.", required=True),
        Column(Col.DELIVERED_AT, "timestamp", "Delivered."),
        Column(Col.OPENED_AT, "timestamp", "First opened."),
        Column(Col.CLICKED_AT, "timestamp", "First clicked."),
        Column(Col.UNSUBSCRIBED_AT, "timestamp", "Unsubscribed through this message."),
        Column(Col.CONVERTED_AT, "timestamp", "Attributed order placed."),
    ),
    key=(Col.MESSAGE_ID,),
    customer_required=True,
)

OFFERS = Table(
    "offers",
    "The catalogue of offers.",
    (
        Column(Col.OFFER_ID, "str", "Offer id.", required=True),
        Column(Col.NAME, "str", "Offer name."),
        Column(
            Col.OFFER_TYPE,
            "str",
            "percent_discount, fixed_amount, free_delivery, bonus_points or content.",
            allowed=_values(OfferType),
        ),
        Column(Col.VALUE, "float", "Discount percent, amount or points."),
        Column(Col.CHANNELS, "str", "Channels it may go out on, comma separated."),
        Column(Col.VALID_FROM, "timestamp", "Valid from."),
        Column(Col.VALID_TO, "timestamp", "Valid to."),
        Column(Col.COST, "float", "Fixed cost per send or redemption."),
    ),
    key=(Col.OFFER_ID,),
)

CAMPAIGNS = Table(
    "campaigns",
    "Direct-marketing campaigns: printed mailers, e-mail, SMS, push, messenger or call-centre waves.",
    (
        Column(Col.CAMPAIGN_ID, "str", "Campaign id.", required=True),
        Column(Col.NAME, "str", "Campaign name."),
        Column(Col.CAMPAIGN_TYPE, "str", "The retailer's own campaign type (free text)."),
        Column(
            Col.CHANNEL,
            "str",
            "direct_mail, email, sms, push, messenger or call_centre (the mapping's channels).",
            allowed=tuple(m.value for m in CampaignChannel),
        ),
        Column(Col.STARTS_AT, "timestamp", "When the campaign starts."),
        Column(Col.ENDS_AT, "timestamp", "When it ends."),
        Column(Col.COST, "float", "Total cost of the campaign."),
        Column(
            Col.RANDOMISED,
            "bool",
            "True when who received it was drawn at random among the eligible (a random holdout): only then "
            "is 'exposed vs not exposed' an uplift. Empty or false: a targeted campaign.",
        ),
    ),
    key=(Col.CAMPAIGN_ID,),
)

EXPOSURES = Table(
    "exposures",
    "Who received which campaign, when, on which channel.",
    (
        Column(Col.CUSTOMER_ID, "str", "The customer record that received the campaign.", required=True),
        Column(Col.CAMPAIGN_ID, "str", "The campaign.", required=True),
        Column(Col.EXPOSED_AT, "timestamp", "When the customer received it.", required=True),
        Column(
            Col.CHANNEL,
            "str",
            "The channel it reached the customer on (default: the campaign's).",
            allowed=tuple(m.value for m in CampaignChannel),
        ),
    ),
    customer_required=True,
)

COUPONS = Table(
    "coupons",
    "Coupons a campaign carried: one row per coupon and product it applies to.",
    (
        Column(Col.COUPON_ID, "str", "Coupon id (code, UPC).", required=True),
        Column(Col.CAMPAIGN_ID, "str", "The campaign that carried it."),
        Column(Col.ITEM_ID, "str", "A product the coupon applies to (one row per product)."),
        Column(Col.VALUE, "float", "Face value of the coupon."),
    ),
)

REDEMPTIONS = Table(
    "redemptions",
    "Coupon redemptions: customer, coupon, time and the order it was used on.",
    (
        Column(Col.CUSTOMER_ID, "str", "The customer record that redeemed it.", required=True),
        Column(Col.COUPON_ID, "str", "The coupon.", required=True),
        Column(Col.REDEEMED_AT, "timestamp", "When.", required=True),
        Column(Col.ORDER_ID, "str", "The order it was used on, if known."),
        Column(Col.CAMPAIGN_ID, "str", "The campaign, if known."),
    ),
    customer_required=True,
)

# Produced by ingestion (reclassified rows), never read from an export.
RETURNS = Table(
    "returns",
    "Cancellation and return lines, reclassified from order lines (quantities made positive).",
    (
        Column(Col.RETURN_ID, "str", "Cancellation / return document id."),
        Column(Col.CUSTOMER_ID, "str", "Customer record, if known."),
        Column(Col.RETURNED_AT, "timestamp", "When."),
        Column(Col.ITEM_ID, "str", "Item."),
        Column(Col.QUANTITY, "int", "Units returned (positive)."),
        Column(Col.UNIT_PRICE, "float", "Price per unit."),
        Column(Col.CURRENCY, "str", "Currency."),
    ),
    outputs_only=True,
)

ADJUSTMENTS = Table(
    "adjustments",
    "Non-product lines (postage, fees, manual adjustments), reclassified from order lines.",
    (
        Column(Col.ADJUSTMENT_ID, "str", "Document id."),
        Column(Col.CUSTOMER_ID, "str", "Customer record, if known."),
        Column(Col.ADJUSTED_AT, "timestamp", "When."),
        Column(Col.ITEM_ID, "str", "Non-product code (POST, BANK CHARGES, ...)."),
        Column(Col.ITEM_NAME, "str", "Description."),
        Column(Col.AMOUNT, "float", "Signed amount (quantity x unit price)."),
        Column(Col.CURRENCY, "str", "Currency."),
    ),
    outputs_only=True,
)

# Columns a mapping may fill that are not published as such: ``line_amount`` (the line total, as many
# tills export it) gives ``unit_price = line_amount / quantity`` when the export has no unit price.
LINE_AMOUNT = Column(
    Col.LINE_AMOUNT,
    "float",
    "Line total (quantity x unit price); unit_price is derived from it. Required on every line when mapped.",
    required=True,
)
INPUT_ONLY_COLUMNS: dict[str, tuple[Column, ...]] = {"order_lines": (LINE_AMOUNT,)}

INPUT_TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        CUSTOMERS,
        CONSENTS,
        ORDERS,
        ORDER_LINES,
        ITEMS,
        WEB_EVENTS,
        MESSAGES,
        OFFERS,
        CAMPAIGNS,
        EXPOSURES,
        COUPONS,
        REDEMPTIONS,
    )
}
TABLES: dict[str, Table] = {**INPUT_TABLES, RETURNS.name: RETURNS, ADJUSTMENTS.name: ADJUSTMENTS}

PERSONAL_COLUMNS = frozenset(c.name for t in TABLES.values() for c in t.columns if c.personal)

NUMERIC_COLUMNS = frozenset(
    c.name
    for cols in (*(t.columns for t in INPUT_TABLES.values()), *INPUT_ONLY_COLUMNS.values())
    for c in cols
    if c.kind in ("int", "float")
)

# The largest plausible absolute value per numeric column, generous but finite: a unit price of 1e20 or
# a quantity of 1e12 is a unit or export error that would swamp every sum downstream. A mapping may set
# its own bounds (``plausible_max``); a value beyond its bound is flagged ``implausible_value``.
PLAUSIBLE_MAX: dict[str, float] = {
    Col.LINE_NO: 1e6,
    Col.QUANTITY: 1e6,
    Col.UNIT_PRICE: 1e6,
    Col.LINE_AMOUNT: 1e7,
    Col.DISCOUNT: 1e6,
    Col.PRICE: 1e6,
    Col.VALUE: 1e6,
    Col.COST: 1e6,
}

# ISO 4217 active codes; a mapping may narrow this list.
ISO_CURRENCIES = frozenset(
    [
        "AED",
        "AFN",
        "ALL",
        "AMD",
        "ANG",
        "AOA",
        "ARS",
        "AUD",
        "AWG",
        "AZN",
        "BAM",
        "BBD",
        "BDT",
        "BGN",
        "BHD",
        "BIF",
        "BMD",
        "BND",
        "BOB",
        "BRL",
        "BSD",
        "BTN",
        "BWP",
        "BYN",
        "BZD",
        "CAD",
        "CDF",
        "CHF",
        "CLP",
        "CNY",
        "COP",
        "CRC",
        "CUP",
        "CVE",
        "CZK",
        "DJF",
        "DKK",
        "DOP",
        "DZD",
        "EGP",
        "ERN",
        "ETB",
        "EUR",
        "FJD",
        "FKP",
        "GBP",
        "GEL",
        "GHS",
        "GIP",
        "GMD",
        "GNF",
        "GTQ",
        "GYD",
        "HKD",
        "HNL",
        "HTG",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "IQD",
        "IRR",
        "ISK",
        "JMD",
        "JOD",
        "JPY",
        "KES",
        "KGS",
        "KHR",
        "KMF",
        "KPW",
        "KRW",
        "KWD",
        "KYD",
        "KZT",
        "LAK",
        "LBP",
        "LKR",
        "LRD",
        "LSL",
        "LYD",
        "MAD",
        "MDL",
        "MGA",
        "MKD",
        "MMK",
        "MNT",
        "MOP",
        "MRU",
        "MUR",
        "MVR",
        "MWK",
        "MXN",
        "MYR",
        "MZN",
        "NAD",
        "NGN",
        "NIO",
        "NOK",
        "NPR",
        "NZD",
        "OMR",
        "PAB",
        "PEN",
        "PGK",
        "PHP",
        "PKR",
        "PLN",
        "PYG",
        "QAR",
        "RON",
        "RSD",
        "RUB",
        "RWF",
        "SAR",
        "SBD",
        "SCR",
        "SDG",
        "SEK",
        "SGD",
        "SHP",
        "SLE",
        "SOS",
        "SRD",
        "SSP",
        "STN",
        "SVC",
        "SYP",
        "SZL",
        "THB",
        "TJS",
        "TMT",
        "TND",
        "TOP",
        "TRY",
        "TTD",
        "TWD",
        "TZS",
        "UAH",
        "UGX",
        "USD",
        "UYU",
        "UZS",
        "VES",
        "VND",
        "VUV",
        "WST",
        "XAF",
        "XCD",
        "XOF",
        "XPF",
        "YER",
        "ZAR",
        "ZMW",
        "ZWL",
    ]
)
