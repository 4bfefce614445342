"""The offer catalogue: offers with eligibility, cost model, validity, caps and budgets, read from YAML.

Eligibility is a small, safe expression language over a customer's features and segments, for example
``abandoned_carts_7d >= 1 and days_since_last_visit <= 3`` or ``lifecycle in ['at_risk', 'lapsed']``.
It is parsed with Python's :mod:`ast` and only these forms are accepted: comparisons (``== != < <= > >=``,
chained ones too), ``in`` / ``not in`` a literal list, ``and`` / ``or`` / ``not``, names, numbers,
strings, ``True`` / ``False`` and a boolean name on its own (a segment flag). Anything else (calls,
attributes, subscripts, arithmetic, lambdas) is refused at load time, and nothing is ever ``eval``-ed:
the tree is walked and evaluated column-wise over a features frame. A comparison with a missing value is
False (so ``recency_days > 30`` is False for a customer who never ordered).

Unknown names are an error at load time against the feature catalogue and the segment columns, and so
is comparing a text column with a number (or the reverse).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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

ValueKind = Literal["number", "string", "bool"]
MAX_EXPRESSION_CHARS = 1_000
MAX_EXPRESSION_NODES = 200


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


# --- the expression language ----------------------------------------------------------------------------

_COMPARE_OPS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}
Literal_ = str | float | bool


class Eligibility:
    """A parsed, checked eligibility expression; :meth:`evaluate` gives a boolean per row of a frame.

    Args:
        text: The expression; an empty text means "everyone".
        known: Allowed names and their kinds (default: :data:`KNOWN_NAMES`).

    Raises:
        ExpressionError: A syntax error, a refused form, an unknown name or a kind mismatch.
    """

    def __init__(self, text: str, known: Mapping[str, ValueKind] | None = None) -> None:
        self.text = text.strip()
        self._known = KNOWN_NAMES if known is None else known
        if len(self.text) > MAX_EXPRESSION_CHARS:
            raise ExpressionError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
        if not self.text:
            self._tree: ast.expr | None = None
            self.names: frozenset[str] = frozenset()
            return
        try:
            parsed = ast.parse(self.text, mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"{self.text!r}: not a valid expression ({exc.msg})") from exc
        if sum(1 for _ in ast.walk(parsed)) > MAX_EXPRESSION_NODES:
            raise ExpressionError(f"{self.text!r}: more than {MAX_EXPRESSION_NODES} parts")
        names: set[str] = set()
        self._check_bool(parsed.body, names)
        self._tree = parsed.body
        self.names = frozenset(names)

    def __repr__(self) -> str:
        return f"Eligibility({self.text!r})"

    # checking ----------------------------------------------------------------------------------------

    def _refuse(self, node: ast.AST, why: str) -> ExpressionError:
        return ExpressionError(f"{self.text!r}: {why} ({type(node).__name__} is not allowed)")

    def _check_bool(self, node: ast.expr, names: set[str]) -> None:
        """``node`` must produce a boolean: and/or/not, a comparison, a bool name or True/False."""
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check_bool(value, names)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self._check_bool(node.operand, names)
        elif isinstance(node, ast.Compare):
            self._check_compare(node, names)
        elif isinstance(node, ast.Name):
            kind = self._name_kind(node, names)
            if kind != "bool":
                raise ExpressionError(f"{self.text!r}: {node.id} is a {kind}; compare it (e.g. {node.id} > 0)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return
        else:
            raise self._refuse(node, "only comparisons, and/or/not, names and literals are allowed")

    def _name_kind(self, node: ast.Name, names: set[str]) -> ValueKind:
        if not isinstance(node.ctx, ast.Load):
            raise self._refuse(node, "names can only be read")
        if node.id not in self._known:
            raise ExpressionError(
                f"{self.text!r}: unknown name {node.id!r}; use a feature of the catalogue (docs/features.md) "
                "or a segment column (rfm_segment, lifecycle, flag_*)"
            )
        names.add(node.id)
        return self._known[node.id]

    def _operand_kind(self, node: ast.expr, names: set[str]) -> ValueKind:
        if isinstance(node, ast.Name):
            return self._name_kind(node, names)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            if isinstance(node.operand, ast.Constant) and _is_number(node.operand.value):
                return "number"
            raise self._refuse(node, "a minus sign only goes before a number")
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                return "bool"
            if _is_number(value):
                return "number"
            if isinstance(value, str):
                return "string"
            raise self._refuse(node, f"literal {value!r} is not a number, text or True/False")
        raise self._refuse(node, "only names and literals can be compared")

    def _check_compare(self, node: ast.Compare, names: set[str]) -> None:
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            symbol = _COMPARE_OPS.get(type(op))
            if symbol is None:
                raise self._refuse(op, "unsupported comparison")
            left_kind = self._operand_kind(left, names)
            if symbol in ("in", "not in"):
                if not isinstance(right, ast.List | ast.Tuple):
                    raise self._refuse(right, f"'{symbol}' needs a literal list, e.g. ['a', 'b']")
                kinds = {self._operand_kind(item, names) for item in right.elts}
                if any(not isinstance(item, ast.Constant | ast.UnaryOp) for item in right.elts):
                    raise self._refuse(right, "a list holds literals only")
                if kinds and kinds != {left_kind}:
                    raise ExpressionError(f"{self.text!r}: list items must all be a {left_kind} like the left side")
            else:
                right_kind = self._operand_kind(right, names)
                if left_kind != right_kind:
                    raise ExpressionError(f"{self.text!r}: cannot compare a {left_kind} with a {right_kind}")
                if left_kind in ("string", "bool") and symbol not in ("==", "!="):
                    raise ExpressionError(f"{self.text!r}: a {left_kind} can only be compared with == or !=")
                if isinstance(left, ast.Constant | ast.UnaryOp) and isinstance(right, ast.Constant | ast.UnaryOp):
                    raise ExpressionError(f"{self.text!r}: a comparison of two literals says nothing")
            left = right

    # evaluation --------------------------------------------------------------------------------------

    def evaluate(self, frame: pd.DataFrame) -> np.ndarray:
        """A boolean per row of ``frame`` (features and segments joined, one row per customer).

        Raises:
            CatalogueError: ``frame`` lacks a column the expression names.
        """
        n = len(frame)
        if self._tree is None:
            return np.ones(n, dtype=bool)
        lacking = sorted(self.names - set(frame.columns))
        if lacking:
            raise CatalogueError(f"{self.text!r} needs {', '.join(lacking)}, absent from the features given")
        return np.asarray(self._eval_bool(self._tree, frame), dtype=bool)

    def _eval_bool(self, node: ast.expr, frame: pd.DataFrame) -> np.ndarray:
        n = len(frame)
        if isinstance(node, ast.BoolOp):
            parts = [self._eval_bool(v, frame) for v in node.values]
            out = parts[0]
            for part in parts[1:]:
                out = (out & part) if isinstance(node.op, ast.And) else (out | part)
            return out
        if isinstance(node, ast.UnaryOp):  # `not`, checked at parse time
            return ~self._eval_bool(node.operand, frame)
        if isinstance(node, ast.Compare):
            out = np.ones(n, dtype=bool)
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                out &= self._eval_compare(_COMPARE_OPS[type(op)], left, right, frame)
                left = right
            return out
        if isinstance(node, ast.Name):
            return _as_bool(frame[node.id])
        assert isinstance(node, ast.Constant)
        return np.full(n, bool(node.value))

    def _operand(self, node: ast.expr, frame: pd.DataFrame) -> tuple[np.ndarray | Literal_, bool]:
        """The operand's values and whether it is a column (else a scalar literal)."""
        if isinstance(node, ast.Name):
            kind = self._known[node.id]
            series = frame[node.id]
            if kind == "number":
                return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan), True
            if kind == "bool":
                return _as_bool(series).astype(np.float64), True
            return series.astype(object).where(series.notna(), None).to_numpy(), True
        return _literal(node), False

    def _eval_compare(self, symbol: str, left: ast.expr, right: ast.expr, frame: pd.DataFrame) -> np.ndarray:
        lhs, _ = self._operand(left, frame)
        if symbol in ("in", "not in"):
            assert isinstance(right, ast.List | ast.Tuple)
            items = [_literal(item) for item in right.elts]
            values = pd.Series(np.broadcast_to(np.asarray(lhs, dtype=object), (len(frame),)))
            known = values.notna().to_numpy()
            member = values.isin(items).to_numpy()
            return known & (member if symbol == "in" else ~member)
        rhs, _ = self._operand(right, frame)
        a = np.broadcast_to(np.asarray(lhs, dtype=object), (len(frame),))
        b = np.broadcast_to(np.asarray(rhs, dtype=object), (len(frame),))
        known = ~(pd.isna(a) | pd.isna(b))
        out = np.zeros(len(frame), dtype=bool)
        if known.any():
            x, y = a[known], b[known]
            if symbol == "==":
                out[known] = x == y
            elif symbol == "!=":
                out[known] = x != y
            else:
                xf, yf = x.astype(np.float64), y.astype(np.float64)
                out[known] = {"<": xf < yf, "<=": xf <= yf, ">": xf > yf, ">=": xf >= yf}[symbol]
        return out


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))


def _literal(node: ast.expr) -> Literal_:
    if isinstance(node, ast.UnaryOp):
        assert isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, int | float)
        return -float(node.operand.value)
    assert isinstance(node, ast.Constant)
    value = node.value
    if isinstance(value, bool | str):
        return value
    assert isinstance(value, int | float)
    return float(value)


def _as_bool(series: pd.Series) -> np.ndarray:
    return pd.Series(series).astype("boolean").fillna(False).to_numpy(dtype=bool)


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

    @property
    def offer_ids(self) -> list[str]:
        return [o.id for o in self.offers]

    def offer(self, offer_id: str) -> Offer:
        for o in self.offers:
            if o.id == offer_id:
                return o
        raise CatalogueError(f"no offer {offer_id!r} in catalogue {self.name!r}")

    def eligible(self, frame: pd.DataFrame) -> np.ndarray:
        """``(n, n_offers)`` eligibility by the offers' expressions alone (no dates, caps or channels)."""
        return np.column_stack([o.rule.evaluate(frame) for o in self.offers])


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
