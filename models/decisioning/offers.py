"""The offer catalogue: offers with eligibility, cost model, validity, caps and budgets, read from YAML.

Eligibility is the small, safe condition language of :mod:`features.conditions` over a customer's features,
segments and the export's customer attributes, for example ``abandoned_carts_7d >= 1 and
days_since_last_visit <= 3``, ``lifecycle in ['at_risk', 'lapsed']`` or ``attr_age_band >= '35-44'``.
Unknown names are an error at load time against the feature catalogue and the segment columns, and so
is comparing a text column with a number (or the reverse); customer attributes (``attr_<name>``) are
checked against the data when the catalogue is evaluated, and an error names the offer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.conditions import Condition, ValueKind
from features.contract import Channel, OfferType
from features.definitions import FEATURES
from features.errors import KairosError
from features.segments import FLAGS, SegCol

__all__ = [
    "KNOWN_NAMES",
    "Catalogue",
    "CatalogueError",
    "CostModel",
    "Eligibility",
    "ExpressionError",
    "Offer",
    "Play",
    "load_catalogue",
    "parse_catalogue",
]


class CatalogueError(KairosError):
    """The offer catalogue is missing, malformed or refers to something Kairos does not know."""


class ExpressionError(CatalogueError):
    """An eligibility expression uses a form or a name the language does not allow."""


def _known_names() -> dict[str, ValueKind]:
    names: dict[str, ValueKind] = {f.name: ("string" if f.dtype == "string" else "number") for f in FEATURES}
    names |= {
        SegCol.R_SCORE: "number",
        SegCol.F_SCORE: "number",
        SegCol.M_SCORE: "number",
        SegCol.RHYTHM_DAYS: "number",
        SegCol.RFM_SEGMENT: "string",
        SegCol.LIFECYCLE: "string",
    }
    names |= {flag: "bool" for flag in FLAGS}
    return names


KNOWN_NAMES: dict[str, ValueKind] = _known_names()
"""Every name an eligibility expression may use (feature catalogue + segment columns) and its kind."""


# --- the expression language (features.conditions) ----------------------------------------------------


class Eligibility(Condition):
    """A parsed, checked eligibility expression (:class:`features.conditions.Condition` over
    :data:`KNOWN_NAMES` and the data's customer attributes); :meth:`evaluate` gives a boolean per row.

    Raises:
        ExpressionError: A syntax error, a refused form, an unknown name or a kind mismatch.
    """

    error = ExpressionError
    data_error = CatalogueError

    def __init__(self, text: str, known: Mapping[str, ValueKind] | None = None) -> None:
        super().__init__(text, KNOWN_NAMES if known is None else known)


# --- the catalogue -------------------------------------------------------------------------------------


class Play(StrEnum):
    """The CRM playbook rules used when no uplift model has been trained (labelled source "rules")."""

    CART_REMINDER = "cart_reminder"  # abandoned cart -> cart reminder
    WIN_BACK = "win_back"  # high churn risk with high value -> win-back discount
    SECOND_ORDER = "second_order"  # one-and-done -> second-order incentive
    ANNIVERSARY = "anniversary"  # first-order anniversary -> thank-you bonus
    BROWSE_ABANDON = "browse_abandon"  # browses but never buys -> offer on the most-viewed category


class CostModel(BaseModel):
    """What an offer costs: ``fixed_cost`` per send, plus on redemption ``discount_rate`` of the order value
    and ``discount_amount`` (a fixed amount off, the delivery fee waived, the value of the points given).

    Expected cost of sending the offer to a customer = ``fixed_cost + P(buy | offer) x (discount_rate x
    expected order value + discount_amount)``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fixed_cost: float = Field(default=0.0, ge=0, description="Cost per send (production, SMS fee, ...).")
    discount_rate: float = Field(default=0.0, ge=0, lt=1, description="Share of the order value given away.")
    discount_amount: float = Field(default=0.0, ge=0, description="Fixed amount per redemption.")

    def expected_cost(self, p_buy: np.ndarray, order_value: np.ndarray) -> np.ndarray:
        """Expected cost per customer given the purchase probability under the offer and the order value."""
        return self.fixed_cost + p_buy * (self.discount_rate * order_value + self.discount_amount)


class Offer(BaseModel):
    """One offer of the catalogue."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    name: str = Field(min_length=1)
    type: OfferType
    value: float = Field(ge=0, description="Percent off, amount off, points, or 0 for content.")
    channels: tuple[Channel, ...] = Field(min_length=1)
    eligibility: str = Field(default="", description="Expression over features and segments; empty = everyone.")
    cost: CostModel = Field(default_factory=CostModel)
    valid_from: datetime
    valid_to: datetime
    max_per_customer: int | None = Field(default=None, ge=1, description="Sends per customer in the validity window.")
    budget: float | None = Field(default=None, gt=0, description="Expected cost this offer may spend per campaign.")
    plays: tuple[Play, ...] = Field(default=(), description="Playbook rules this offer serves (rules mode).")
    assumed_uplift: float = Field(
        default=0.02, ge=-1, le=1, description="Uplift the rules assume (not measured) when no model exists."
    )

    @field_validator("valid_from", "valid_to", mode="before")
    @classmethod
    def _aware(cls, value: Any) -> Any:
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("channels", mode="before")
    @classmethod
    def _split_channels(cls, value: Any) -> Any:
        return [c.strip() for c in value.split(",")] if isinstance(value, str) else value

    @field_validator("eligibility")
    @classmethod
    def _parse_eligibility(cls, value: str) -> str:
        try:
            Eligibility(value)
        except ExpressionError as exc:  # pydantic reports ValueErrors with the field's location
            raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Offer:
        if self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels are listed twice")
        cost = self.cost
        if self.type == OfferType.PERCENT_DISCOUNT:
            if not math.isclose(cost.discount_rate, self.value / 100.0, abs_tol=1e-9):
                raise ValueError(
                    f"cost.discount_rate ({cost.discount_rate}) must equal value/100 ({self.value / 100:g}) "
                    "for a percent_discount"
                )
        elif cost.discount_rate:
            raise ValueError(f"cost.discount_rate is only for a percent_discount, not {self.type}")
        if self.type == OfferType.FIXED_AMOUNT and not math.isclose(cost.discount_amount, self.value, abs_tol=1e-9):
            raise ValueError(f"cost.discount_amount ({cost.discount_amount}) must equal value ({self.value})")
        if self.type == OfferType.CONTENT and (self.value or cost.discount_amount):
            raise ValueError("a content offer gives nothing away: value and cost.discount_amount must be 0")
        return self

    @property
    def rule(self) -> Eligibility:
        return _parsed(self.eligibility)

    def valid_at(self, when: datetime) -> bool:
        return self.valid_from <= when <= self.valid_to


_PARSED: dict[str, Eligibility] = {}


def _parsed(text: str) -> Eligibility:
    found = _PARSED.get(text)
    if found is None:
        found = _PARSED[text] = Eligibility(text)
    return found


class Catalogue(BaseModel):
    """The offers of a campaign, its total budget (expected cost) and the retailer's gross margin rate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="campaign", min_length=1)
    margin_rate: float = Field(gt=0, lt=1, description="Gross margin as a share of the order value.")
    budget: float | None = Field(default=None, gt=0, description="Expected cost the whole campaign may spend.")
    # ISO 4217 code of the costs, values and budget; None: the data's currency (training resolves it)
    currency: str | None = Field(default=None, min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$")
    offers: tuple[Offer, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Catalogue:
        ids = [o.id for o in self.offers]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"offer ids listed twice: {twice}")
        return self

    def in_currency(self, data_currency: str, source: str = "catalogue") -> Catalogue:
        """The catalogue with its amounts in the data's currency: one that names none takes the data's;
        one that names another is refused (its costs and the data's order values would be added up).

        Raises:
            CatalogueError: the catalogue's currency is not the data's.
        """
        if self.currency is None:
            return self.model_copy(update={"currency": data_currency.upper()})
        if self.currency.upper() != data_currency.upper():
            raise CatalogueError(
                f"{source}: currency: the catalogue's amounts are in {self.currency.upper()} but the data's are in "
                f"{data_currency.upper()}; convert the costs and budget, or drop `currency:` to use the data's"
            )
        return self

    def with_band_positions(self, bands: Mapping[str, Sequence[str]], source: str = "catalogue") -> Catalogue:
        """The catalogue with every band named in an ordering comparison replaced by its position in the
        declared order (``attr_age_band >= '35-44'`` -> ``attr_age_band >= 3``): what a job that knows the
        data (``features.store.attribute_bands``) registers, so the service never needs the order.

        Raises:
            CatalogueError: naming the offer whose band name is not one of the attribute's bands.
        """
        offers = []
        for o in self.offers:
            try:
                text = o.rule.with_band_positions(bands)
            except CatalogueError as exc:
                raise CatalogueError(f"{source}: offer {o.id!r}: eligibility {exc}") from exc
            offers.append(o if text == o.rule.text else o.model_copy(update={"eligibility": text}))
        return self.model_copy(update={"offers": tuple(offers)})

    @property
    def offer_ids(self) -> list[str]:
        return [o.id for o in self.offers]

    def offer(self, offer_id: str) -> Offer:
        for o in self.offers:
            if o.id == offer_id:
                return o
        raise CatalogueError(f"no offer {offer_id!r} in catalogue {self.name!r}")

    def eligible(self, frame: pd.DataFrame, bands: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
        """``(n, n_offers)`` eligibility by the offers' expressions alone (no dates, caps or channels).

        ``bands``: the declared order of each ordered-band attribute feature, for comparisons by band name
        (default: the order seen in ``frame``; see :meth:`features.conditions.Condition.evaluate`).

        Raises:
            CatalogueError: naming the offer whose expression needs what ``frame`` lacks (an attribute the
                data does not have, say).
        """
        columns = []
        for o in self.offers:
            try:
                columns.append(o.rule.evaluate(frame, bands))
            except CatalogueError as exc:
                raise CatalogueError(f"{self.name}: offer {o.id!r}: eligibility {exc}") from exc
        return np.column_stack(columns)


def parse_catalogue(data: Mapping[str, Any], source: str = "catalogue") -> Catalogue:
    """Validate a catalogue given as a mapping (parsed YAML or JSON).

    Raises:
        CatalogueError: naming every invalid field (``offers.2.eligibility: ...``).
    """
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise CatalogueError(f"{source}: {problems}") from exc


def load_catalogue(path: Path | str) -> Catalogue:
    """Read and validate an offer catalogue YAML file.

    Raises:
        CatalogueError: the file is missing, not YAML, or invalid (every bad field is named).
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogueError(f"no offer catalogue at {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise CatalogueError(f"{path}: expected a mapping with margin_rate and offers at the top")
    return parse_catalogue(data, str(path))


EXAMPLE_CATALOGUE = Path(__file__).resolve().parent / "catalogues" / "example.yaml"
