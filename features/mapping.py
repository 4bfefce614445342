"""The YAML mapping that points Kairos at a retailer's export without writing code.

A mapping names, per contract table, the files to read and which source column feeds which
contract column, plus how to read timestamps and values. See ``docs/data-contract.md``.
"""

from __future__ import annotations

import math
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.contract import INPUT_TABLES, NUMERIC_COLUMNS, PLAUSIBLE_MAX, Col
from features.errors import MappingError


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


class TableMapping(_Strict):
    """How one contract table is read from the export."""

    files: list[str] = Field(min_length=1, description="File names or globs relative to the input folder.")
    columns: dict[str, str] = Field(
        default_factory=dict, description="contract column -> source column; unnamed columns map to themselves."
    )
    constants: dict[str, Any] = Field(default_factory=dict, description="contract column -> fixed value.")
    value_maps: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="contract column -> {source value: contract value}."
    )
    timestamp_format: str = Field(default="ISO8601", description="strptime format for timestamp columns, or ISO8601.")
    timezone: str | None = Field(default=None, description="Zone of naive timestamps; default: the mapping's.")
    cancellation: CancellationRule | None = None
    non_product: NonProductRule | None = None

    @field_validator("columns", "constants", "value_maps")
    @classmethod
    def _no_empty_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not key:
                raise ValueError("empty column name")
        return value


class Mapping(_Strict):
    """A whole export mapping."""

    name: str
    timezone: str = Field(default="UTC", description="Zone of naive timestamps (IANA name).")
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
    strong_ids: list[str] = Field(
        default_factory=lambda: [Col.LOYALTY_ID],
        description="Ids one person never has two of; a merge joining two different values is refused.",
    )
    tables: dict[str, TableMapping]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        _check_zone(value)
        return value

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
            if table_name == "order_lines":  # a flat export carries the order header on each line
                known |= set(INPUT_TABLES["orders"].column_names)
            for section in ("columns", "constants", "value_maps"):
                for col in getattr(tm, section):
                    if col not in known:
                        raise ValueError(f"tables.{table_name}.{section}.{col}: not a column of {table_name}")
            if tm.timezone is not None:
                _check_zone(tm.timezone)
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
        if "order_lines" not in self.tables and "orders" in self.tables:
            raise ValueError("tables.orders is given without tables.order_lines")
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


def _check_zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


BUILTIN_MAPPINGS = ("synthetic", "online_retail_ii")


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
        return Mapping.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors())
        raise MappingError(f"{source}: {problems}") from exc
