"""The YAML mapping that points Kairos at a retailer's export without writing code.

A mapping names, per contract table, the files to read and which source column feeds which
contract column, plus how to read timestamps and values. See ``docs/data-contract.md``.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.contract import (
    ATTRIBUTE_PREFIX,
    DEFAULT_CONSENT_RULES,
    INPUT_ONLY_COLUMNS,
    INPUT_TABLES,
    ISO_CURRENCIES,
    NUMERIC_COLUMNS,
    PLAUSIBLE_MAX,
    CampaignChannel,
    Channel,
    Col,
    ConsentRule,
)
from features.errors import MappingError
from features.expressions import ExpressionError, Parsed, parse

FLOATING = "floating"  # the clock of an export whose naive times are wall-clock times, in no zone
_ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
AttributeType = Literal["category", "bands", "number", "date", "flag"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CancellationRule(_Strict):
    """Lines that are cancellations: a column's value starts with a prefix (e.g. invoice 'C536379')."""

    column: str = Col.ORDER_ID
    prefix: str


class NonProductRule(_Strict):
    """Lines whose item code is not a product (postage, fees, adjustments)."""

    column: str = Col.ITEM_ID
    pattern: str = Field(description="Regular expression matched against the whole value.")


WHITESPACE = "whitespace"


class TextFormat(_Strict):
    """How a text file is laid out, when it is not comma-separated with a header line."""

    delimiter: str = Field(default=",", description="One character, or 'whitespace' (runs of spaces and tabs).")
    header: bool = Field(default=True, description="Whether line 1 holds the column names.")
    column_names: list[str] | None = Field(default=None, description="The column names of a file without header.")

    @model_validator(mode="after")
    def _consistent(self) -> TextFormat:
        if self.delimiter != WHITESPACE and len(self.delimiter) != 1:
            raise ValueError(f"delimiter: one character or {WHITESPACE!r}")
        if not self.header and not self.column_names:
            raise ValueError("a file without header needs column_names")
        if self.header and self.column_names:
            raise ValueError("column_names are only for a file without header (header: false)")
        return self


class Lookup(_Strict):
    """A small file joined onto a table's rows by key, for its expressions (``campaign.start_date``)."""

    files: list[str] = Field(min_length=1, description="File names or globs relative to the input folder.")
    key: str = Field(min_length=1, description="The lookup file's key column (one row per key).")
    on: str | None = Field(default=None, description="The table file's column matched to the key; default: key.")

    @property
    def source_column(self) -> str:
        return self.on or self.key


class Attribute(_Strict):
    """An extra customer column the export carries (age band, income band, household size, ...).

    Kept in ``customers.parquet`` as ``attr_<name>`` (ordered bands also as ``attr_<name>_rank``, the
    band's position in ``order``, 1 = first) and turned into features.
    """

    type: AttributeType
    column: str | None = Field(default=None, description="Source column; default: the attribute's name.")
    expression: str | None = Field(default=None, description="DuckDB SQL expression instead of a column.")
    order: list[str] | None = Field(default=None, description="bands only: every band, lowest first.")
    description: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Attribute:
        if self.column is not None and self.expression is not None:
            raise ValueError("give column or expression, not both")
        if self.type == "bands":
            if not self.order:
                raise ValueError("ordered bands need order: [lowest, ..., highest]")
            if len(set(self.order)) != len(self.order):
                raise ValueError("order lists a band twice")
        elif self.order is not None:
            raise ValueError(f"order is only for type bands (this attribute is {self.type})")
        if self.expression is not None:
            try:
                parse(self.expression)
            except ExpressionError as exc:
                raise ValueError(f"expression: {exc}") from None
        return self


class TableMapping(_Strict):
    """How one contract table is read from the export."""

    files: list[str] = Field(min_length=1, description="File names or globs relative to the input folder.")
    text_format: TextFormat | None = Field(default=None, description="Layout of text files (default: CSV).")
    columns: dict[str, str] = Field(
        default_factory=dict, description="contract column -> source column; unnamed columns map to themselves."
    )
    constants: dict[str, Any] = Field(default_factory=dict, description="contract column -> fixed value.")
    value_maps: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="contract column -> {source value: contract value}."
    )
    expressions: dict[str, str] = Field(
        default_factory=dict,
        description="contract column -> DuckDB SQL expression over the source columns (and lookups).",
    )
    lookups: dict[str, Lookup] = Field(
        default_factory=dict, description="name -> a file joined by key, referred to as name.column."
    )
    attributes: dict[str, Attribute] = Field(
        default_factory=dict, description="customers only: extra typed customer columns, kept and featurised."
    )
    timestamp_format: str = Field(default="ISO8601", description="strptime format for timestamp columns, or ISO8601.")
    timezone: str | None = Field(default=None, description="Zone of naive timestamps; default: the mapping's.")
    cancellation: CancellationRule | None = None
    non_product: NonProductRule | None = None

    @property
    def parsed_expressions(self) -> dict[str, Parsed]:
        """Every contract column's expression, parsed (the mapping validator refused the bad ones)."""
        return {col: parse(text) for col, text in self.expressions.items()}

    @property
    def attribute_expressions(self) -> dict[str, Parsed]:
        """``attr_<name>`` -> the parsed expression of each attribute computed by one."""
        return {ATTRIBUTE_PREFIX + name: parse(a.expression) for name, a in self.attributes.items() if a.expression}

    def attribute_source(self, name: str) -> str:
        """The source column of an attribute read from a column."""
        return self.attributes[name].column or name

    def maps(self, column: str) -> bool:
        """Whether the mapping names ``column`` (as a source column, an expression or a constant)."""
        return column in self.columns or column in self.expressions or column in self.constants

    @field_validator("columns", "constants", "value_maps", "expressions")
    @classmethod
    def _no_empty_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not key:
                raise ValueError("empty column name")
        return value


class Mapping(_Strict):
    """A whole export mapping."""

    name: str
    timezone: str = Field(
        default="UTC", description="Zone of naive timestamps (IANA name), or 'floating' for wall-clock times."
    )
    currency: str | None = Field(
        default=None, description="ISO 4217 code of the whole export; fills currency where no table maps it."
    )
    currencies: list[str] | None = Field(default=None, description="Accepted ISO 4217 codes; default all.")
    future_tolerance_hours: float = Field(default=24.0, ge=0)
    order_time_tolerance_minutes: float = Field(
        default=60.0, ge=0, description="Lines of one order may differ in time by this much (till clocks)."
    )
    max_quarantine_share: float = Field(default=0.10, ge=0, le=1)
    max_table_quarantine_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Fail when one table loses more than this share of its rows (whatever the overall share).",
    )
    plausible_max: dict[str, float] = Field(
        default_factory=dict,
        description="numeric contract column -> largest plausible absolute value (overrides the contract's).",
    )
    derive_items_from_lines: bool = Field(
        default=False, description="Build the catalogue from order lines when no items file is exported."
    )
    derive_customers_from_lines: bool = Field(
        default=False, description="Build customer records from order lines when no customers file is exported."
    )
    default_region: str = Field(
        default="GB", min_length=2, max_length=2, description="Region for phone numbers written without +country."
    )
    channels: list[str] = Field(
        default_factory=lambda: [c.value for c in CampaignChannel],
        min_length=1,
        description="The channel vocabulary of campaigns and exposures (lower-case names).",
    )
    consent_rules: dict[str, ConsentRule] = Field(
        default_factory=dict,
        description="Per channel, what a customer with no consent on record allows: opt_in (contact only after an "
        "opt-in) or opt_out (contact unless an opt-out is on record). Default: direct_mail and call_centre "
        "opt_out, every other channel opt_in; email, sms and push are always opt_in.",
    )
    strong_ids: list[str] = Field(
        default_factory=lambda: [Col.LOYALTY_ID],
        description="Ids one person never has two of; a merge joining two different values is refused.",
    )
    identity_overrides: str | None = Field(
        default=None,
        description="File of forced merges and splits (CSV or YAML) for identity resolution; a relative path is "
        "taken from the mapping file's folder. `kairos ingest --identity-overrides` replaces it.",
    )
    dates: bool = Field(
        default=True,
        description="False: the export has no order times at all (baskets only). Order lines are then accepted "
        "without ordered_at (never given an invented one) and only the recommendations job runs on the data.",
    )
    tables: dict[str, TableMapping]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        _check_zone(value)
        return value

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _ATTRIBUTE_NAME.match(name):
                raise ValueError(f"{name!r}: a channel name is lower case letters, digits and _ (e.g. direct_mail)")
        return value

    @model_validator(mode="after")
    def _consent_rules_of_known_channels(self) -> Mapping:
        for channel, rule in self.consent_rules.items():
            if channel not in self.consent_channels:
                known = ", ".join(self.consent_channels)
                raise ValueError(f"consent_rules.{channel}: not a channel of this mapping (channels: {known})")
            if channel in _MESSAGING and rule != ConsentRule.OPT_IN:
                raise ValueError(
                    f"consent_rules.{channel}: {channel} requires an opt-in (the API's contact check sends e-mail, SMS "
                    "and push only to customers who opted in)"
                )
        return self

    @property
    def consent_channels(self) -> list[str]:
        """The channels a consent may name: e-mail, SMS and push (messages), then the mapping's ``channels``."""
        return list(dict.fromkeys([*_MESSAGING, *self.channels]))

    def consent_rule(self, channel: str) -> ConsentRule:
        """The channel's rule for a customer with no consent on record (``consent_rules``, else the default)."""
        return self.consent_rules.get(channel) or DEFAULT_CONSENT_RULES.get(channel, ConsentRule.OPT_IN)

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in ISO_CURRENCIES:
            raise ValueError(f"{value!r} is not an ISO 4217 currency code")
        return value.upper() if value is not None else None

    @field_validator("plausible_max")
    @classmethod
    def _numeric_bounds(cls, value: dict[str, float]) -> dict[str, float]:
        for col, bound in value.items():
            if col not in NUMERIC_COLUMNS:
                raise ValueError(f"{col}: not a numeric contract column (one of {sorted(NUMERIC_COLUMNS)})")
            if not (math.isfinite(bound) and bound > 0):
                raise ValueError(f"{col}: the bound must be a finite number above 0")
        return value

    @model_validator(mode="after")
    def _check_tables(self) -> Mapping:
        for table_name, tm in self.tables.items():
            if table_name not in INPUT_TABLES:
                raise ValueError(f"tables.{table_name}: not a contract table (one of {sorted(INPUT_TABLES)})")
            known = set(INPUT_TABLES[table_name].column_names)
            known |= {c.name for c in INPUT_ONLY_COLUMNS.get(table_name, ())}
            if table_name == "order_lines":  # a flat export carries the order header on each line
                known |= set(INPUT_TABLES["orders"].column_names)
            for section in ("columns", "constants", "value_maps", "expressions"):
                for col in getattr(tm, section):
                    if col not in known:
                        raise ValueError(f"tables.{table_name}.{section}.{col}: not a column of {table_name}")
            _check_expressions(table_name, tm)
            _check_attributes(table_name, tm)
            if tm.maps(Col.UNIT_PRICE) and tm.maps(Col.LINE_AMOUNT):
                raise ValueError(
                    f"tables.{table_name}: map unit_price or line_amount, not both (unit_price is derived from "
                    "line_amount / quantity)"
                )
            if tm.timezone is not None:
                _check_zone(tm.timezone)
            if self.zone_for(table_name) == FLOATING and table_name == "customers" and tm.maps(Col.TIMEZONE):
                raise ValueError(
                    "tables.customers: a per-customer timezone cannot be used with a floating clock (times are "
                    "kept as wall-clock times); remove it, or declare the zone the export's times are in"
                )
            for rule_name in ("cancellation", "non_product"):
                rule = getattr(tm, rule_name)
                if rule is None:
                    continue
                allowed_tables = ("orders", "order_lines") if rule_name == "cancellation" else ("order_lines",)
                if table_name not in allowed_tables:
                    raise ValueError(f"tables.{table_name}.{rule_name}: only for {' and '.join(allowed_tables)}")
                if rule.column not in known:
                    raise ValueError(
                        f"tables.{table_name}.{rule_name}.column: {rule.column!r} is not a contract column of "
                        f"{table_name} (name the contract column, e.g. order_id, not the source column)"
                    )
        if not self.dates:
            for table_name in ("orders", "order_lines"):
                if table_name in self.tables and self.tables[table_name].maps(Col.ORDERED_AT):
                    raise ValueError(
                        f"tables.{table_name}: maps ordered_at while the mapping says dates: false (remove one)"
                    )
        if "order_lines" not in self.tables and "orders" in self.tables:
            raise ValueError("tables.orders is given without tables.order_lines")
        for flag in ("derive_items_from_lines", "derive_customers_from_lines"):
            if getattr(self, flag) and "order_lines" not in self.tables:
                raise ValueError(f"{flag}: needs tables.order_lines (there are no lines to derive from)")
        if self.currency is not None and self.currencies is not None and self.currency not in self.currencies:
            raise ValueError(f"currency: {self.currency} is not in currencies {self.currencies}")
        return self

    @property
    def plausible_bounds(self) -> dict[str, float]:
        """numeric column -> largest plausible absolute value: the contract's, overridden by the mapping's."""
        return {**PLAUSIBLE_MAX, **self.plausible_max}

    @property
    def future_tolerance(self) -> timedelta:
        return timedelta(hours=self.future_tolerance_hours)

    def zone_for(self, table: str) -> str:
        tm = self.tables[table]
        return tm.timezone or self.timezone


def _check_expressions(table: str, tm: TableMapping) -> None:
    """Each expression parses as one scalar expression and names only declared lookups; no contract
    column is both a source column and an expression."""
    for col, text in tm.expressions.items():
        where = f"tables.{table}.expressions.{col}"
        if col in tm.columns:
            raise ValueError(f"{where}: {col} is also mapped under columns (keep one)")
        try:
            parsed = parse(text)
        except ExpressionError as exc:
            raise ValueError(f"{where}: {exc}") from None
        for ref in parsed.references:
            if len(ref) > 2 or (len(ref) == 2 and ref[0] not in tm.lookups):
                known = ", ".join(sorted(tm.lookups)) or "none declared"
                raise ValueError(f'{where}: unknown lookup "{ref[0]}" in {".".join(ref)} (lookups of {table}: {known})')
    for name in tm.lookups:
        if not name.isidentifier():
            raise ValueError(f"tables.{table}.lookups.{name}: a lookup name is a plain identifier (letters, _)")


def _check_attributes(table: str, tm: TableMapping) -> None:
    if tm.attributes and table != "customers":
        raise ValueError(f"tables.{table}.attributes: only the customers table has attributes")
    contract = set(INPUT_TABLES["customers"].column_names)
    for name in tm.attributes:
        where = f"tables.{table}.attributes.{name}"
        if not _ATTRIBUTE_NAME.match(name) or name in contract:
            raise ValueError(
                f"{where}: an attribute name is lower case letters, digits and _ (at most 40), starts with a "
                "letter, and is not a contract column"
            )
        for ref in tm.attribute_expressions.get(ATTRIBUTE_PREFIX + name, Parsed("", ())).references:
            if len(ref) > 2 or (len(ref) == 2 and ref[0] not in tm.lookups):
                raise ValueError(f'{where}.expression: unknown lookup "{ref[0]}" in {".".join(ref)}')


def _check_zone(name: str) -> None:
    if name == FLOATING:
        return
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


BUILTIN_MAPPINGS = ("synthetic", "online_retail_ii", "complete_journey", "cdnow")


_MESSAGING = tuple(c.value for c in Channel)  # the channels of messages and the API: opt-in only


def load_mapping(ref: str | Path) -> Mapping:
    """Load a mapping from a YAML file path, or a built-in one by name (``synthetic``, ``online_retail_ii``)."""
    if isinstance(ref, str) and ref in BUILTIN_MAPPINGS:
        text = resources.files("features.mappings").joinpath(f"{ref}.yaml").read_text(encoding="utf-8")
        source = f"built-in mapping {ref!r}"
    else:
        path = Path(ref)
        if not path.is_file():
            raise MappingError(f"mapping {str(path)!r} not found (built-in names: {', '.join(BUILTIN_MAPPINGS)})")
        text = path.read_text(encoding="utf-8")
        source = str(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise MappingError(f"{source}: expected a mapping at the top level")
    try:
        spec = Mapping.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise MappingError(f"{source}: {problems}") from exc
    if spec.identity_overrides is not None and not Path(spec.identity_overrides).is_absolute():
        if not isinstance(ref, Path) and ref in BUILTIN_MAPPINGS:
            raise MappingError(f"{source}: identity_overrides must be an absolute path in a built-in mapping")
        # relative to the mapping file, so a mapping and its overrides travel together
        spec = spec.model_copy(update={"identity_overrides": str(Path(ref).parent / spec.identity_overrides)})
    return spec


def _problem(err: Any) -> str:
    """One validation problem as 'where: what' (a whole-mapping check already names its place)."""
    where = ".".join(str(p) for p in err["loc"])
    what = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {what}" if where else what
