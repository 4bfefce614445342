"""Request and response bodies. Requests are strict: unknown fields, oversized batches, non-finite numbers
and loose types (``"k": "5"``, ``"reasons": "yes"``, ``"now": 0``) are 422 naming the field; a time is ISO 8601
text with a timezone; an enum is its value. Every response names its model(s), a request id, ``degraded``
and ``source``."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    WithJsonSchema,
)

from features.contract import Channel, ConsentStatus
from features.realtime import EventKind
from models.decisioning.nbo import OfferSource, Status
from models.decisioning.sendtime import CurveSource, Scale

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")]
CustomerId = Id
ItemId = Id
Category = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# Where and how a consent was captured: a short label of safe characters (no personal data, no free text).
ConsentSource = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")
]

# Every request body: strict types (no "5" for 5, no "yes" for true, no number for a time). FastAPI validates
# the parsed body in Python mode, where strict would also refuse an enum's value and a time's text: those
# fields say Strict(False) (below) and take only their JSON forms.
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


_DATE_TIME_TEXT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def _date_time_text(value: object) -> object:
    """A time in a request is ISO 8601 text (pydantic parses it); never a number nor a numeric string, which
    pydantic's lax mode would read as epoch seconds. A ``datetime`` from Python callers passes."""
    if isinstance(value, datetime) or (isinstance(value, str) and _DATE_TIME_TEXT.match(value)):
        return value
    raise ValueError("give an ISO 8601 date-time string with a timezone (e.g. 2026-01-02T10:00:00Z)")


def _with_timezone(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("give a timezone (e.g. 2026-01-02T10:00:00Z)")
    return value


def _json_integer(value: object) -> object:
    """An integer as JSON Schema counts one (``19`` or ``19.0``), never text nor a boolean."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("give a JSON integer")
    return value


Instant = Annotated[datetime, Strict(False), BeforeValidator(_date_time_text), AfterValidator(_with_timezone)]
ChannelName = Annotated[Channel, Strict(False)]  # the enum's value (JSON has no enums)
JsonInt = Annotated[int, Strict(False), BeforeValidator(_json_integer)]  # lax int then takes 19.0, refuses 19.5

# A decision time: ISO 8601 with a timezone, in the years 1970-2199 (the schema says so; others are 422).
DecisionTime = Annotated[
    Instant,
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": r"^(19[7-9][0-9]|2[01][0-9][0-9])-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
            r"(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$",
            "description": "ISO 8601 with a timezone, years 1970-2199 (default: now).",
        }
    ),
]


ModelKindName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]


class AnswerSource(StrEnum):
    """Who answered: the model, or its declared fallback (a population prior, popular items, no contact)."""

    MODEL = "model"
    FALLBACK = "fallback"


class ItemStatus(StrEnum):
    OK = "ok"
    UNKNOWN_CUSTOMER = "unknown_customer"
    SUPPRESSED = "suppressed"
    INVALID = "invalid"


class ModelKind(StrEnum):
    """Whether an answer comes from Kairos's own model or from the baseline served in its place."""

    KAIROS = "kairos"
    BASELINE = "baseline"


class ModelRef(BaseModel):
    name: str
    version: str | None = Field(description="Null when no version is loaded and the model's fallback answered.")
    alias: str
    source: AnswerSource = Field(AnswerSource.MODEL, description="model, or fallback (population prior / not served).")
    kind: ModelKind = Field(
        ModelKind.KAIROS,
        description="kairos (Kairos's own model), or baseline: Kairos's model did not beat the best simple "
        "baseline on the holdout, so that baseline is what answers (docs/model-quality.md, the gate).",
    )
    baseline: str | None = Field(
        None,
        description="Which baseline answers when kind is baseline: rfm_score, rfm_logistic, bgnbd or past_rate "
        "(propensity); last_period, bgnbd_gamma_gamma or mbgnbd_gamma_gamma (value); g_topfreq, p_topfreq, "
        "gp_topfreq, tifuknn, upcf or cooccurrence_count (recommendations: next basket, cart).",
    )


class Envelope(BaseModel):
    """What every answer carries besides its items."""

    request_id: str
    models: list[ModelRef]
    degraded: bool = Field(False, description="True when a dependency failed and a fallback answered.")
    source: AnswerSource = Field(AnswerSource.MODEL, description="model, or fallback when no model answered.")


# --- scores ---------------------------------------------------------------------------------------------


class ScoreRequest(BaseModel):
    """Customers to score, by the retailer's customer id or by Kairos's customer_key."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"customer_ids": ["100001", "100002", "nobody"], "reasons": False}]},
    )

    customer_ids: list[CustomerId] = Field(min_length=1, max_length=10_000)
    now: DecisionTime | None = Field(
        None,
        description="The instant the scores are for, with a timezone (default: the server's clock): features as "
        "of it, events after it ignored; `kairos score --all --now` gives the same scores.",
    )
    reasons: bool = Field(
        False,
        description="Also the top-3 reasons per probability model (about 2 ms per customer and model): "
        "allowed for batches up to max_reasons_batch ids (default 1,000); larger batches get 422.",
    )


class Segment(BaseModel):
    rfm_segment: str | None = None
    lifecycle: str | None = None


class Reason(BaseModel):
    feature: str
    value: float | None
    contribution: float = Field(description="TreeSHAP contribution to the log-odds (> 0: pushes the score up).")
    text: str


class Value(BaseModel):
    """P(alive), CLV and the next order from the ``clv`` bundle (MBG/NBD + Gamma-Gamma fitted on all data, as of
    the data end; null without it), and spend and orders over the horizon from the ``value`` model (Kairos's
    regressors, or the baseline served in their place: its entry in ``models`` says which; null without it)."""

    p_alive: float | None
    p_alive_band: str | None
    expected_orders_365d: float | None
    clv_365d: float | None = Field(description="Expected spend over the next 365 days.")
    expected_order_value: float | None
    next_order_days: float | None
    horizon_days: int | None = Field(None, description="The value model's horizon (days).")
    expected_spend: float | None = Field(
        None, description="Expected spend over horizon_days, from the feature row (the value model)."
    )
    expected_orders: float | None = Field(None, description="Expected orders over horizon_days (the value model).")


class ScoreItem(BaseModel):
    customer_id: str
    status: ItemStatus = Field(description="ok, or unknown_customer (cold start: population priors, fallback).")
    source: AnswerSource | None = Field(None, description="model, or fallback (the population prior) for this item.")
    customer_key: str | None = None
    probabilities: dict[str, float | None] = Field(
        description="Calibrated probability per model: churn, purchase, engagement_{open,click}_{channel}."
    )
    bands: dict[str, str | None] = Field(description="low / medium / high per probability (the model's cuts).")
    not_applicable: list[str] = Field(
        default_factory=list,
        description="Models whose question is not about this customer, their probability and band null: churn "
        "for anyone without an order in the last year (a lead, a lapsed customer).",
    )
    value: Value | None = None
    segments: Segment | None = None
    reasons: dict[str, list[Reason]] | None = Field(None, description="Top-3 drivers per model, when asked.")


class ScoreResponse(Envelope):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": "3f2a...",
                    "models": [
                        {"name": "churn", "version": "4", "alias": "champion", "source": "model"},
                        {"name": "purchase", "version": "2", "alias": "champion", "source": "model"},
                        {"name": "clv", "version": "1", "alias": "champion", "source": "model"},
                    ],
                    "degraded": False,
                    "source": "model",
                    "fallback_models": [],
                    "items": [
                        {
                            "customer_id": "100001",
                            "status": "ok",
                            "source": "model",
                            "customer_key": "ck_97c489b6c1231ecd",
                            "probabilities": {"churn": 0.31, "purchase": 0.22},
                            "bands": {"churn": "medium", "purchase": "low"},
                            "value": {
                                "p_alive": 0.83,
                                "p_alive_band": "high",
                                "expected_orders_365d": 2.4,
                                "clv_365d": 412.5,
                                "expected_order_value": 171.9,
                                "next_order_days": 61.0,
                            },
                            "segments": {"rfm_segment": "Loyal", "lifecycle": "active"},
                        },
                        {
                            "customer_id": "nobody",
                            "status": "unknown_customer",
                            "source": "fallback",
                            "probabilities": {"churn": 0.18, "purchase": 0.09},
                            "bands": {"churn": "low", "purchase": "low"},
                        },
                    ],
                }
            ]
        }
    )

    fallback_models: list[str] = Field(
        default_factory=list, description="Configured models that answered with their fallback (not loaded)."
    )
    now: datetime | None = Field(None, description="The instant the scores are for, UTC.")
    items: list[ScoreItem]


# --- profile --------------------------------------------------------------------------------------------


class Profile(Envelope):
    """One customer's 360: features (numeric and text), segments; personal data only with the pii scope."""

    customer_id: str
    customer_key: str
    as_of: datetime | None = Field(None, description="The instant the features are for (the read time), UTC.")
    age_days: float | None = Field(None, description="Days from the snapshot to the read time.")
    features: dict[str, float | None]
    attributes: dict[str, str | None] = Field(default_factory=dict, description="Text features.")
    segments: dict[str, Any] | None = None
    personal: dict[str, list[str]] | None = Field(
        None, description="Only for keys with the pii scope (admin does not imply it)."
    )


# --- recommendations ------------------------------------------------------------------------------------


class RecFilters(BaseModel):
    model_config = STRICT

    include_categories: list[Category] | None = Field(None, max_length=100)
    exclude_categories: list[Category] = Field(default_factory=list, max_length=100)
    min_price: float | None = Field(None, ge=0)
    max_price: float | None = Field(None, ge=0)
    exclude: list[ItemId] = Field(default_factory=list, max_length=1000, description="Items never to return.")


class _RecBase(BaseModel):
    model_config = STRICT

    k: JsonInt = Field(10, ge=1, le=100)
    filters: RecFilters = Field(default_factory=lambda: RecFilters.model_validate({}))


class CartRequest(_RecBase):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        strict=True,
        json_schema_extra={"examples": [{"cart": ["85123A", "22423"], "customer_id": "100001", "k": 10}]},
    )

    cart: list[ItemId] = Field(min_length=1, max_length=200)
    customer_id: CustomerId | None = Field(None, description="Leaves out what this customer already bought.")


class CustomerRecRequest(_RecBase):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        strict=True,
        json_schema_extra={"examples": [{"customer_id": "100001", "k": 10}]},
    )

    customer_id: CustomerId


class SimilarRequest(_RecBase):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        strict=True,
        json_schema_extra={"examples": [{"item_id": "85123A", "k": 10}]},
    )

    item_id: ItemId
    customer_id: CustomerId | None = None


class RecItem(BaseModel):
    item_id: str
    score: float
    source: str = Field(description="bought_together, personal, similar, buy_again or popular.")
    reason: str = Field(description="Why this item, in words a customer may read.")
    name: str | None = None
    category: str | None = None
    price: float | None = None


class RecResponse(Envelope):
    cold_start: bool = Field(description="The model knew nothing of this customer / item / cart: popular items.")
    items: list[RecItem]


# --- events ---------------------------------------------------------------------------------------------


class EventIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "type": "unsubscribe",
                    "timestamp": "2026-01-02T10:00:00Z",
                    "customer_id": "100001",
                    "channel": "email",
                }
            ]
        },
    )

    type: Annotated[EventKind, Strict(False)] | Literal["message_sent"] = Field(
        description="A real-time event, or message_sent: a message the campaign engine sent (counts against the "
        "contact policy's frequency caps and, with with_offer, the offer cooldown). The key's scopes decide "
        "which types it may post: web events, order, open and click need storefront or campaign; consent and "
        "unsubscribe need consent; message_sent needs campaign."
    )
    timestamp: Instant = Field(
        description="When it happened, ISO 8601 with a timezone; from 2000 on and at most "
        "event_max_future_skew_s (default 300 s) after the service's clock."
    )
    customer_id: CustomerId | None = None
    customer_key: CustomerId | None = None
    channel: ChannelName | None = None
    status: Annotated[ConsentStatus, Strict(False)] | None = None
    source: ConsentSource | None = Field(
        None,
        description="consent only, required for opt_in: where and how the consent was captured (e.g. "
        "web_form:newsletter, pos:store-12); kept in the consent history.",
    )
    session_id: Id | None = None
    item_id: ItemId | None = None
    event_id: Id | None = None
    order_id: Id | None = Field(
        None,
        description="order only: the order the event belongs to. An order is one order id: its lines posted as "
        "several events count once (without one, each event is an order).",
    )
    amount: Annotated[float, Strict(False)] | None = Field(
        None, ge=0, allow_inf_nan=False, description="order only: the event's part of the order's amount."
    )
    with_offer: bool = Field(False, description="message_sent only: the message carried an offer.")
    offer_id: Id | None = Field(
        None,
        description="message_sent only: the catalogue offer it carried (implies with_offer); counts against that "
        "offer's limit per customer.",
    )


class EventBatch(BaseModel):
    model_config = STRICT

    events: list[EventIn] = Field(min_length=1, max_length=1000)


class EventResult(BaseModel):
    index: int
    status: str = Field(
        description="applied, created, duplicate, before_snapshot, unknown_customer, invalid, "
        "or unavailable (store down: send again)."
    )
    detail: str | None = None


class EventResponse(BaseModel):
    request_id: str
    degraded: bool = False
    results: list[EventResult]


# --- models and health ----------------------------------------------------------------------------------


class ReloadRequest(BaseModel):
    model_config = STRICT

    models: list[ModelKindName] | None = Field(
        None, max_length=32, description="Model kinds to reload (default: all configured); see GET /v1/models."
    )
    force: bool = Field(False, description="Load again even when the alias has not moved.")


class Health(BaseModel):
    status: str
    detail: dict[str, object] = Field(default_factory=dict)


class LoadedVersion(BaseModel):
    """The model version serving a kind, with its provenance."""

    kind: str
    name: str
    version: str
    alias: str
    run_id: str
    sha256: str = Field(description="Checksum of the version's files, verified at load.")
    trained_at: str | None = Field(description="When its training run ended (or started), ISO 8601.")
    loaded_at: datetime
    source: Literal["registry", "disk_cache", "previous_version"] = Field(
        description="disk_cache: the registry was unreachable, or the aliased version did not verify at start-up "
        "(the last verified copy); previous_version: the aliased version did not verify at start-up and no "
        "copy was on disk (the version that held the alias before it). last_error says why."
    )
    features: list[str] = Field(description="The features it reads, in its order (empty for non-feature models).")
    definition_hash: str | None = Field(description="Hash of the feature definitions it was trained with.")
    metrics: dict[str, float] = Field(description="Its training run's metrics.")
    engine: str | None = Field(
        description="Propensity models: lleaves (compiled), lightgbm, or baseline (the gate serves a baseline); "
        "else null."
    )
    baseline: str | None = Field(
        None, description="The baseline this version serves (bgnbd, rfm_score, rfm_logistic, past_rate), else null."
    )


class ModelState(BaseModel):
    """One configured model kind: what serves it, or how it is answered while nothing does."""

    name: str = Field(description="The registered model name.")
    alias: str
    required: bool = Field(description="Readiness waits for it (an optional one has a declared fallback).")
    loaded: LoadedVersion | None = Field(description="Null while no version is loaded.")
    fallback: str | None = Field(description="How an optional model not loaded is answered; null otherwise.")
    last_error: str | None = Field(description="Why the last load failed (null after a good load).")


class ModelsResponse(BaseModel):
    request_id: str
    models: dict[str, ModelState] = Field(description="Per configured model kind.")


class ReloadOutcome(BaseModel):
    model: str = Field(description="The registered name (the kind for not_configured).")
    outcome: Literal["loaded", "unchanged", "cached", "fallback", "failed", "not_configured"] = Field(
        description="cached: the registry is down, the disk copy loaded; fallback: the aliased version did not "
        "verify and nothing served yet, an earlier verified one loaded; failed: the serving version stays."
    )
    version: str | None = Field(description="The version serving after the attempt.")
    detail: str | None = Field(description="Why, for cached, fallback and failed.")


class ReloadResponse(BaseModel):
    request_id: str
    outcomes: list[ReloadOutcome] = Field(description="One per model asked for, then the kinds not configured.")
    models: dict[str, ModelState] = Field(description="Per configured model kind, after the reload.")


# --- decisions ------------------------------------------------------------------------------------------


class PermissionItem(BaseModel):
    model_config = STRICT

    customer_id: CustomerId
    channel: ChannelName
    with_offer: bool = Field(False, description="The message carries an offer (the offer cooldown applies).")


class PermissionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        strict=True,
        json_schema_extra={
            "examples": [{"items": [{"customer_id": "100001", "channel": "email"}], "now": "2026-01-02T10:00:00Z"}]
        },
    )

    items: list[PermissionItem] = Field(min_length=1, max_length=10_000)
    now: DecisionTime | None = Field(None, description="The instant asked about, with a timezone (default: now).")


# (the bounds first: after the validators they would leave the JSON schema as "ge" / "le", not min / max)
Hour = Annotated[int, Field(ge=0, le=23), Strict(False), BeforeValidator(_json_integer)]


class SendTimeRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        strict=True,
        json_schema_extra={
            "examples": [{"customer_ids": ["100001", "100002"], "channel": "email", "window_hours": 24}]
        },
    )

    customer_ids: list[CustomerId] = Field(min_length=1, max_length=10_000)
    channel: ChannelName
    window_hours: float = Field(24.0, ge=1, le=24 * 14, description="The window, from now: 1 h to 14 days (24 h).")
    # Strict(False): a JSON array is a list, not a tuple; the hours inside stay JSON integers.
    quiet_hours: Annotated[tuple[Hour, Hour], Strict(False)] | None = Field(
        (22, 8), description="Local [start, end) hours never used, wrapping midnight; null for none."
    )
    now: DecisionTime | None = Field(None, description="Start of the window, with a timezone (default: now).")


class NextBestRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, strict=True, json_schema_extra={"examples": [{"customer_id": "100001"}]}
    )

    customer_id: CustomerId
    now: DecisionTime | None = Field(None, description="Decision time, with a timezone (default: now).")
    channels: list[ChannelName] | None = Field(
        None,
        min_length=1,
        description="The channels this campaign may use (default: every channel); an offer never goes out on another.",
    )


class CampaignRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        strict=True,
        json_schema_extra={"examples": [{"customer_ids": ["100001", "100002"], "budget": 500.0}]},
    )

    customer_ids: list[CustomerId] = Field(min_length=1, max_length=10_000)
    budget: float | None = Field(None, gt=0, description="Expected cost the campaign may spend (default: none).")
    now: DecisionTime | None = Field(None, description="Decision time, with a timezone (default: now).")
    channels: list[ChannelName] | None = Field(
        None,
        min_length=1,
        description="The channels this campaign may use (default: every channel); an offer never goes out on another.",
    )


TimezoneSource = Literal["customer", "default"]
# An offer decision (named so in the schema: the decisioning module calls it Status).
Decision = Annotated[Status, WithJsonSchema({"title": "Decision", "type": "string", "enum": [s.value for s in Status]})]


class PermissionAnswer(BaseModel):
    """One item's answer. An unknown customer's has only ``customer_id``, ``channel`` and ``status``; with
    the online store down, no ``customer_key``, ``timezone`` nor ``timezone_source``."""

    customer_id: str
    channel: Channel
    status: ItemStatus = Field(description="ok, or unknown_customer.")
    customer_key: str | None = None
    allowed: bool | None = Field(None, description="A send now is allowed.")
    reasons: list[str] | None = Field(None, description="Why not, one per rule broken (empty when allowed).")
    next_allowed_at: datetime | None = Field(
        None, description="The earliest instant every rule holds (now, when allowed); null without consent: never."
    )
    timezone: str | None = Field(None, description="The zone quiet hours were judged in.")
    timezone_source: TimezoneSource | None = Field(None, description="default: the customer's zone is unknown.")


class PermissionResponse(Envelope):
    now: datetime | None = Field(None, description="The instant judged, UTC (absent when degraded).")
    policy: dict[str, Any] | None = Field(
        None,
        description="The policy file in force: name, version (checksum) and its rules in words (docs/decisioning.md).",
    )
    items: list[PermissionAnswer]


class SendTimeItem(BaseModel):
    customer_id: str
    status: ItemStatus = Field(description="ok, or unknown_customer (the population's slot).")
    customer_key: str | None = Field(description="Null for an unknown customer, or when the store is down.")
    best_at: datetime | None = Field(description="The slot to send in, UTC; null when the window has none.")
    best_local: datetime | None = Field(description="best_at in the customer's zone.")
    score: float | None = Field(description="The curve's value in that slot (see scale); null without a slot.")
    second_at: datetime | None = Field(description="The best slot on a later local day (for re-sends), UTC.")
    second_local: datetime | None
    source: CurveSource = Field(description="customer (own history), segment or population (cold start).")
    timezone: str
    timezone_source: TimezoneSource
    scale: Scale = Field(description="probability, or relative (no sends on the channel anywhere).")


class SendTimeResponse(Envelope):
    channel: Channel
    policy: dict[str, Any] | None = Field(
        None,
        description="The policy file in force: name, version (checksum) and its rules in words (docs/decisioning.md).",
    )
    items: list[SendTimeItem]


class OfferDecision(BaseModel):
    """One customer's decision. An unknown customer's has ``customer_id``, ``status`` and ``decision``; with
    the online store down, those and ``reason``. ``send_at`` and the rest come with an offer on a channel."""

    customer_id: str
    customer_key: str | None = None
    status: ItemStatus = Field(description="ok, suppressed (no channel may be used) or unknown_customer.")
    decision: Decision = Field(description="offer, no_offer, control_group, not_contactable or over_budget.")
    offer_id: str | None = None
    channel: Channel | None = None
    reason: str | None = Field(None, description="Why, in words a marketer may read.")
    control_group: bool | None = Field(None, description="Held out of every offer (to measure uplift).")
    expected_profit: float | None = Field(None, description="Expected incremental profit of the offer.")
    uplift: float | None = Field(None, description="Expected increase of the purchase probability.")
    source: OfferSource | None = Field(None, description="uplift_model, or rules (the CRM playbook).")
    send_at: datetime | None = Field(None, description="When to send, UTC.")
    send_at_local: datetime | None = Field(None, description="send_at in the customer's zone.")
    send_time_source: CurveSource | Literal["policy"] | None = Field(
        None, description="The send-time model's curve, or policy: the first instant the contact policy allows."
    )


class OfferResponse(Envelope):
    now: datetime | None = Field(None, description="The decision time, UTC (absent when degraded).")
    policy: dict[str, Any] | None = Field(
        None,
        description="The policy file in force: name, version (checksum) and its rules in words (docs/decisioning.md).",
    )
    items: list[OfferDecision]


class CampaignSummary(BaseModel):
    """What the allocation spends and expects to earn (expected values)."""

    budget: float | None = Field(description="The campaign's budget (the catalogue's when none was given).")
    spent: float
    expected_profit: float
    shadow_price: float = Field(description="The budget's price per unit of cost (0 when it does not bind).")
    offers: dict[str, int] = Field(description="Customers given each offer.")
    spent_by_offer: dict[str, float]
    control: int
    over_budget: int
    no_offer: int
    not_contactable: int


class CampaignResponse(OfferResponse):
    summary: CampaignSummary | None = Field(None, description="Absent when degraded.")


# --- audiences --------------------------------------------------------------------------------------------


class AudienceQuery(BaseModel):
    """An audience condition (docs/audiences.md) and the instant it is answered at."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        strict=True,
        json_schema_extra={
            "examples": [{"condition": "churn > 0.6 and consent_email and lifecycle in ['at_risk', 'lapsed']"}]
        },
    )

    condition: str = Field(min_length=1, max_length=1_000, description="A condition in the eligibility language.")
    now: DecisionTime | None = Field(None, description="The instant of the answer, with a timezone (default: now).")


class AudienceCountRequest(AudienceQuery):
    sample_size: int = Field(10, ge=0, le=100, description="Members to return as a fixed, uniform sample.")


class AudienceListRequest(AudienceQuery):
    cursor: str | None = Field(
        None, max_length=20, pattern=r"^[0-9]+$", description="next_cursor of the previous page (none: the first)."
    )
    page_size: int = Field(1_000, ge=1, le=10_000, description="Most members in the page.")


class AudienceExportRequest(AudienceQuery):
    format: str = Field(
        "csv",
        pattern=r"^(csv|parquet|google|meta|yandex|vk_email|vk_phone)$",
        description="csv or parquet (ids and the named columns), or an advertising platform's upload file "
        "(google, meta, yandex, vk_email, vk_phone: hashed contacts of members with consent_advertising; the "
        "pii scope).",
    )


class AudienceAnswer(Envelope):
    condition: str
    now: str = Field(description="The instant of the answer (ISO 8601).")
    snapshot_as_of: str = Field(description="The feature snapshot whose customers were read.")
    scanned: int = Field(description="Customers the condition was evaluated on.")


class AudienceCountResponse(AudienceAnswer):
    count: int
    sample: list[dict[str, Any]] = Field(description="customer_id, customer_key and the columns the condition names.")


class AudienceListResponse(AudienceAnswer):
    items: list[dict[str, Any]] = Field(description="customer_id, customer_key and the columns the condition names.")
    next_cursor: str | None = Field(description="Where the next page starts; null after the last page.")


# --- channels ---------------------------------------------------------------------------------------------


class ChannelRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, strict=True, json_schema_extra={"examples": [{"customer_ids": ["100001"]}]}
    )

    customer_ids: list[CustomerId] = Field(min_length=1, max_length=10_000)
    now: DecisionTime | None = Field(
        None, description="The instant consent is judged at, with a timezone (default: now)."
    )


class ChannelScoreItem(BaseModel):
    channel: Channel
    p_open: float | None = Field(description="Smoothed probability of an open or click on this channel.")
    p_click: float | None
    sends: int = Field(description="Messages this customer was sent on the channel.")
    status: str = Field(description="ok, or not_enough_data (mostly the population's rate).")
    rank: int


class ChannelItem(BaseModel):
    customer_id: str
    status: ItemStatus
    customer_key: str | None = None
    preferred_channel: Channel | None = Field(None, description="The best consented channel; null: none consented.")
    channels: list[ChannelScoreItem] = Field(default_factory=list, description="Consented channels only, ranked.")


class ChannelResponse(Envelope):
    now: datetime | None = None
    items: list[ChannelItem]
