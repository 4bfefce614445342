"""Ingestion that never silently loses a row.

Every input row is validated by named rules and ends in exactly one of three places:

* **accepted** — published in its contract table as it came;
* **reclassified** — kept, but moved to another table (a cancellation becomes a return, a postage
  line an adjustment) or with one optional field cleared (a malformed e-mail); the reason is recorded;
* **quarantined** — not published; the original row is kept with one or more reason codes.

``input_rows == accepted + reclassified + quarantined`` holds for every table and every file.
Output is written into a staging folder and renamed into place only when the run succeeds.

Messages and exceptions name a file, a row and a column and the rule broken, never a value: a row
of an export may hold an e-mail, a phone or a name. Only the audit files inside the data home
(``quarantine.parquet``, ``reclassified.parquet``) keep the original rows.
"""

from __future__ import annotations

import glob
import json
import logging
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.contract import (
    ADJUSTMENTS,
    ATTRIBUTE_PREFIX,
    INPUT_ONLY_COLUMNS,
    INPUT_TABLES,
    ISO_CURRENCIES,
    ORDER_LINES,
    ORDERS,
    RANK_SUFFIX,
    RETURNS,
    TABLES,
    Col,
    Column,
    OrderStatus,
    Table,
)
from features.erasure import Tombstones, drop_erased
from features.errors import InputDataError, MappingError, NoDatesError, QuarantineThresholdError
from features.expressions import ExpressionError, LookupData, clash, evaluate, result_types, unknown_reference
from features.identity import (
    OVERRIDE_KIND,
    SPLIT_CONFLICT,
    IdentityOverrides,
    Pseudonymizer,
    RefusedCol,
    load_identity_overrides,
    rekey,
)
from features.identity_sets import resolve_identities_sets
from features.io import publish_dir, sha256_files, staged_dir, write_parquet
from features.mapping import FLOATING, WHITESPACE, Attribute, Lookup, Mapping, TableMapping, TextFormat
from features.normalize import normalize_emails, normalize_phones

ProgressFn = Callable[[str, float], None]

logger = logging.getLogger(__name__)

INGESTED_DIR = "ingested"
REPORT_FILE = "ingest_report.json"
DATES_KEY = "dates"  # the report's flag: False when the export has no order times (mapping dates: false)
QUARANTINE_FILE = "quarantine.parquet"
RECLASSIFIED_FILE = "reclassified.parquet"
IDENTITY_MAP_FILE = "identity_map.parquet"
IDENTITY_REVIEW_FILE = "identity_review.parquet"

_SRC_FILE = "_source_file"
_SRC_ROW = "_source_row"
_DERIVED = "_derived:"  # prefix of a column computed by a mapping expression (never in the audit files)
# Tables are processed in this order: references are checked against tables already accepted.
_ORDER = (
    "items",
    "offers",
    "campaigns",
    "coupons",
    "customers",
    "consents",
    "orders",
    "order_lines",
    "web_events",
    "messages",
    "exposures",
    "redemptions",
)
_HEADER_COLUMNS = tuple(c for c in ORDERS.column_names if c != Col.ORDER_ID)


class Reason(StrEnum):
    """Named validation rules. Quarantine reasons drop the row from the published table;
    reclassification reasons keep it elsewhere or with a field cleared."""

    DUPLICATE_ROW = "duplicate_row"
    KEY_CONFLICT = "key_conflict"
    ORDER_CONFLICT = "order_conflict"
    MISSING_REQUIRED = "missing_required"
    MISSING_CUSTOMER_REF = "missing_customer_ref"
    INVALID_VALUE = "invalid_value"
    INVALID_NUMBER = "invalid_number"
    NEGATIVE_QUANTITY = "negative_quantity"
    ZERO_QUANTITY = "zero_quantity"
    NON_POSITIVE_PRICE = "non_positive_price"
    IMPLAUSIBLE_VALUE = "implausible_value"
    UNKNOWN_CURRENCY = "unknown_currency"
    UNPARSEABLE_TIMESTAMP = "unparseable_timestamp"
    NONEXISTENT_LOCAL_TIME = "nonexistent_local_time"
    MIXED_TZ_AWARENESS = "mixed_tz_awareness"
    FUTURE_TIMESTAMP = "future_timestamp"
    UNPARSEABLE_DATE = "unparseable_date"
    ORPHAN_ITEM = "orphan_item"
    ORPHAN_ORDER = "orphan_order"
    ORPHAN_CUSTOMER = "orphan_customer"
    ORPHAN_CAMPAIGN = "orphan_campaign"
    ORPHAN_COUPON = "orphan_coupon"
    INVALID_EMAIL = "invalid_email"
    INVALID_PHONE = "invalid_phone"
    INVALID_TIMEZONE = "invalid_timezone"
    CANCELLATION = "cancellation"
    NON_PRODUCT = "non_product"


REASON_TEXT: dict[Reason, str] = {
    Reason.DUPLICATE_ROW: "an exact copy of an earlier row (the first copy is kept)",
    Reason.KEY_CONFLICT: "the same id appears on rows with different content; none is trusted",
    Reason.ORDER_CONFLICT: (
        "one order id with conflicting content: its lines disagree on customer, currency, channel, status, "
        "store or time (beyond the tolerance), or its header is exported twice with different values"
    ),
    Reason.MISSING_REQUIRED: "a required column is empty",
    Reason.MISSING_CUSTOMER_REF: "the table needs a customer and the row has none",
    Reason.INVALID_VALUE: "a value outside the column's vocabulary",
    Reason.INVALID_NUMBER: "not a finite number (or not a whole number where one is needed)",
    Reason.NEGATIVE_QUANTITY: "negative quantity on a line that is not a cancellation",
    Reason.ZERO_QUANTITY: "zero quantity on a sale line",
    Reason.NON_POSITIVE_PRICE: "zero or negative unit price on a sale line",
    Reason.IMPLAUSIBLE_VALUE: (
        "a number beyond the column's plausibility bound (report: plausible_max; mapping: plausible_max)"
    ),
    Reason.UNKNOWN_CURRENCY: "not an accepted ISO 4217 currency code",
    Reason.UNPARSEABLE_TIMESTAMP: "a timestamp that does not match the mapping's format",
    Reason.NONEXISTENT_LOCAL_TIME: "a local time skipped by a daylight-saving change",
    Reason.MIXED_TZ_AWARENESS: "a naive timestamp in a column of offset-aware ones, or the reverse",
    Reason.FUTURE_TIMESTAMP: "later than the run time plus the tolerance",
    Reason.UNPARSEABLE_DATE: "a date that cannot be read",
    Reason.ORPHAN_ITEM: "refers to an item missing from the catalogue",
    Reason.ORPHAN_ORDER: "a line whose order header is missing or quarantined",
    Reason.ORPHAN_CUSTOMER: "refers to a customer record that is missing or quarantined",
    Reason.ORPHAN_CAMPAIGN: "refers to a campaign missing from the campaigns table",
    Reason.ORPHAN_COUPON: "refers to a coupon missing from the coupons table",
    Reason.INVALID_EMAIL: "malformed e-mail: the field is cleared, the record kept",
    Reason.INVALID_PHONE: "malformed phone: the field is cleared, the record kept",
    Reason.INVALID_TIMEZONE: "unknown time zone: the field is cleared, the record kept",
    Reason.CANCELLATION: "a cancellation line: moved to returns with a positive quantity",
    Reason.NON_PRODUCT: "postage, fee or adjustment code: moved to adjustments",
}


@dataclass
class _Verdicts:
    """Per-row verdicts of one table: boolean masks keyed by (reason, column)."""

    n: int
    quarantine: dict[tuple[Reason, str], np.ndarray] = field(default_factory=dict)
    reclassify: dict[tuple[Reason, str], np.ndarray] = field(default_factory=dict)

    def add(self, kind: str, reason: Reason, mask: Any, column: str = "") -> None:
        arr = np.asarray(mask, dtype=bool)
        if not arr.any():
            return
        store = self.quarantine if kind == "quarantine" else self.reclassify
        key = (reason, column)
        store[key] = store[key] | arr if key in store else arr.copy()

    def quarantined(self) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        for mask in self.quarantine.values():
            out |= mask
        return out

    def reclassified(self) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        for mask in self.reclassify.values():
            out |= mask
        return out & ~self.quarantined()

    @staticmethod
    def reason_labels(store: dict[tuple[Reason, str], np.ndarray], rows: np.ndarray) -> pd.Series:
        """Comma-separated 'reason' or 'reason:column' labels for the selected rows."""
        labels = pd.Series([""] * int(rows.sum()), dtype=object)
        for (reason, column), mask in sorted(store.items()):
            label = f"{reason.value}:{column}" if column else reason.value
            hit = mask[rows]
            labels[hit] = labels[hit] + np.where(labels[hit] == "", "", ",") + label
        return labels

    @staticmethod
    def reason_counts(store: dict[tuple[Reason, str], np.ndarray], rows: np.ndarray) -> dict[str, int]:
        """Rows per reason code (a row with two columns failing one rule counts once)."""
        by_reason: dict[Reason, np.ndarray] = {}
        for (reason, _column), mask in store.items():
            by_reason[reason] = by_reason.get(reason, np.zeros_like(mask)) | mask
        return {r.value: int((m & rows).sum()) for r, m in sorted(by_reason.items()) if (m & rows).any()}


@dataclass
class IngestResult:
    """What one run produced: the path of the published folder and the report."""

    path: Path
    report: dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Reading


def resolve_files(input_dir: Path, tm: TableMapping | Lookup, table: str) -> list[Path]:
    files: list[Path] = []
    for pattern in tm.files:
        hits = sorted(glob.glob(str(input_dir / pattern)))
        if not hits:
            raise InputDataError(f"tables.{table}: no file matches {pattern!r} in {input_dir}")
        files.extend(Path(h) for h in hits)
    return files


_SHOWN_LINES = 5  # line numbers named in a malformed-file message
# Parts of a reader's message that hold no data; anything else it says may quote a row and is withheld.
_SAFE_READER_TEXT = (
    re.compile(r"Expected \d+ columns, got \d+"),
    re.compile(r"In CSV column #\d+: CSV conversion error to \w+: invalid UTF8 data"),
    re.compile(r"Empty CSV file"),
    re.compile(r"Expected \d+ fields in line \d+, saw \d+"),
)


def _reader_problem(exc: Exception) -> str:
    """What went wrong reading a file, without a value from it (pyarrow's CSV messages quote the row)."""
    if isinstance(exc, OSError) and not isinstance(exc, pa.ArrowException):
        return exc.strerror or type(exc).__name__  # the OS's words about the file, never its content
    text = str(exc)
    for pattern in _SAFE_READER_TEXT:
        found = pattern.search(text)
        if found:
            return found.group(0)
    return f"{type(exc).__name__} (the reader's message is withheld: it may quote a row)"


def _read_whitespace(path: Path, fmt: TextFormat) -> pd.DataFrame:
    """A file of columns separated by runs of blanks (CDNOW's layout), as text columns."""
    frame = pd.read_csv(
        path,
        sep=r"\s+",
        header=0 if fmt.header else None,
        names=None if fmt.header else fmt.column_names,
        dtype=str,
        keep_default_na=False,
        on_bad_lines="error",
    )
    return frame.astype("string")


def _read_csv(path: Path, fmt: TextFormat | None = None) -> pd.DataFrame:
    """A CSV file as text columns; a malformed row fails the read, named by line, never shown."""
    if fmt is not None and fmt.delimiter == WHITESPACE:
        return _read_whitespace(path, fmt)
    delimiter = fmt.delimiter if fmt is not None else ","
    read_opts = pacsv.ReadOptions(column_names=fmt.column_names) if fmt is not None and not fmt.header else None
    malformed: list[tuple[int | None, int, int]] = []

    def note(row: pacsv.InvalidRow) -> str:
        # Skipped here only to be counted: any malformed row fails the read below ("error" would make
        # pyarrow raise with the row's text in the message).
        malformed.append((row.number, row.expected_columns, row.actual_columns))
        return "skip"

    parse = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=note)
    with pacsv.open_csv(path, read_options=read_opts, parse_options=parse) as reader:  # the header only
        names = reader.schema.names
    malformed.clear()
    # Read everything as text: types are decided by the contract, not guessed.
    opts = pacsv.ConvertOptions(column_types=dict.fromkeys(names, "string"), strings_can_be_null=False)
    table = pacsv.read_csv(path, read_options=read_opts, parse_options=parse, convert_options=opts)
    if malformed:
        count = len(malformed)
        if any(number is None for number, *_ in malformed):  # a threaded read does not number rows
            malformed.clear()
            pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(
                    use_threads=False, column_names=read_opts.column_names if read_opts else None
                ),
                parse_options=parse,
                convert_options=opts,
            )
        shown = ", ".join(
            f"line {number} ({actual} fields, expected {expected})"
            for number, expected, actual in malformed[:_SHOWN_LINES]
        )
        more = f" and {count - _SHOWN_LINES:,} more" if count > _SHOWN_LINES else ""
        raise InputDataError(
            f"{path}: {count:,} malformed row(s): {shown}{more}; the rows are not shown (they may hold "
            "personal data): check the delimiter and the quoting there"
        )
    return table.to_pandas()


def _read_file(path: Path, fmt: TextFormat | None = None) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_table(path).to_pandas()
        if suffix in (".csv", ".txt", ".gz"):
            return _read_csv(path, fmt)
    except (OSError, ValueError) as exc:
        # from None: the reader's own message may quote a row, so it is neither shown nor chained
        raise InputDataError(f"{path}: cannot be read: {_reader_problem(exc)}") from None
    raise InputDataError(f"{path}: unsupported file type {suffix!r} (use .csv or .parquet)")


def _read_table(input_dir: Path, table: str, tm: TableMapping) -> tuple[pd.DataFrame, list[Path]]:
    files = resolve_files(input_dir, tm, table)
    frames = []
    lookups = read_lookups(input_dir, table, tm)
    for path in files:
        frame = _read_file(path, tm.text_format)
        missing = sorted({src for src in tm.columns.values() if src not in frame.columns})
        if missing:
            # The file's own header is not quoted: in a file without one, line 1 is a customer's row.
            raise InputDataError(
                f"{path.name}: column(s) {', '.join(repr(m) for m in missing)} named in the mapping "
                f"for {table} are not in the file's header (line 1, {len(frame.columns)} columns)"
            )
        check_references(table, tm, set(frame.columns), lookups, path.name)
        frame[_SRC_FILE] = path.name
        frame[_SRC_ROW] = np.arange(1, len(frame) + 1, dtype=np.int64)
        frames.append(frame)
    raw = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    check_types(table, tm, raw, lookups)
    _derive(table, tm, raw, lookups)
    return raw, files


def _derive(table: str, tm: TableMapping, frame: pd.DataFrame, lookups: dict[str, LookupData]) -> None:
    """Add the mapping's expression and attribute-expression columns to ``frame`` (in place)."""
    if tm.expressions or tm.attribute_expressions:
        try:
            derived = evaluate(frame, {**tm.parsed_expressions, **tm.attribute_expressions}, lookups)
        except ExpressionError as exc:
            raise MappingError(f"tables.{table}.expressions: {exc}") from None
        for col, values in derived.items():
            frame[_DERIVED + col] = values


def read_lookups(input_dir: Path, table: str, tm: TableMapping) -> dict[str, LookupData]:
    """The lookup files of a table, each with one row per key (a repeated key would repeat source rows)."""
    out = {}
    for name, lookup in tm.lookups.items():
        where = f"tables.{table}.lookups.{name}"
        paths = resolve_files(input_dir, lookup, f"{table}.lookups.{name}")
        frames = [_read_file(p) for p in paths]
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        if lookup.key not in frame.columns:
            raise MappingError(f"{where}.key: column {lookup.key!r} is not in {', '.join(p.name for p in paths)}")
        repeated = int(frame[lookup.key].dropna().duplicated().sum())
        if repeated:
            raise MappingError(
                f"{where}.key: {repeated:,} repeated value(s) of {lookup.key!r} in "
                f"{', '.join(p.name for p in paths)}; a lookup needs one row per key"
            )
        out[name] = LookupData(frame, lookup.key, lookup.source_column)
    return out


def check_types(table: str, tm: TableMapping, raw: pd.DataFrame, lookups: dict[str, LookupData]) -> None:
    """A source column or an expression whose type can never become its contract column's kind (a
    timestamp mapped to a quantity, a number to a timestamp read as ISO text) stops the run, named."""
    for col, src in tm.columns.items():
        column = column_spec(table, col)
        if column is not None and src in raw.columns and col not in tm.value_maps:
            found = _source_kind(raw[src])
            if found and _clashes(column.kind, found, tm.timestamp_format):
                raise MappingError(
                    f"tables.{table}.columns.{col}: type clash: source column {src!r} holds {found} values, "
                    f"{col} needs {_KIND_WORDS[column.kind]}"
                )
    if not tm.expressions:
        return
    parsed = tm.parsed_expressions
    named = sorted({r[0] for p in parsed.values() for r in p.references if len(r) == 1 and r[0] in raw.columns})
    named = sorted(set(named) | {lk.on for lk in lookups.values()})
    schema = pa.Schema.from_pandas(raw[named].head(0), preserve_index=False)
    try:
        types = result_types(schema, parsed, lookups)
    except ExpressionError as exc:
        raise MappingError(f"tables.{table}.expressions.{exc}") from None
    for col, duck_type in types.items():
        column = column_spec(table, col)
        if column is not None and clash(column.kind, duck_type):
            raise MappingError(
                f"tables.{table}.expressions.{col}: type clash: the expression gives {duck_type}, "
                f"{col} needs {_KIND_WORDS[column.kind]}"
            )


_KIND_WORDS = {
    "str": "text",
    "int": "a whole number",
    "float": "a number",
    "bool": "true/false",
    "timestamp": "a timestamp",
    "date": "a date",
}


def _source_kind(values: pd.Series) -> str | None:
    """The kind of a typed (Parquet) source column; None for text, which the contract's rules parse."""
    if pd.api.types.is_bool_dtype(values):
        return "true/false"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "timestamp"
    if pd.api.types.is_numeric_dtype(values):
        return "number"
    return None


def _clashes(kind: str, found: str, timestamp_format: str) -> bool:
    if kind in ("int", "float"):
        return found in ("timestamp", "true/false")
    if kind == "bool":
        return found == "timestamp"
    if kind in ("timestamp", "date"):
        # A number can be a date written as digits (19970101) when a format says how to read it.
        return found == "true/false" or (found == "number" and timestamp_format.upper() == "ISO8601")
    return False


def check_references(
    table: str, tm: TableMapping, columns: set[str], lookups: dict[str, LookupData], file_name: str
) -> None:
    """Every column an expression or a lookup's ``on`` names exists (in the file or in the lookup)."""
    lookup_columns = {name: set(lk.frame.columns) for name, lk in lookups.items()}
    for name, lookup in tm.lookups.items():
        if lookup.source_column not in columns:
            raise MappingError(
                f"tables.{table}.lookups.{name}.on: unknown column {lookup.source_column!r} (not in {file_name})"
            )
    for col, parsed in tm.parsed_expressions.items():
        problem = unknown_reference(parsed, columns, lookup_columns)
        if problem:
            raise MappingError(f"tables.{table}.expressions.{col}: {problem} (not in {file_name})")
    for name, attribute in tm.attributes.items():
        where = f"tables.{table}.attributes.{name}"
        if attribute.expression is None and tm.attribute_source(name) not in columns:
            raise MappingError(f'{where}.column: unknown column "{tm.attribute_source(name)}" (not in {file_name})')
        parsed_attr = tm.attribute_expressions.get(ATTRIBUTE_PREFIX + name)
        problem = unknown_reference(parsed_attr, columns, lookup_columns) if parsed_attr else None
        if problem:
            raise MappingError(f"{where}.expression: {problem} (not in {file_name})")


def mapped_source(raw: pd.DataFrame, table: str, tm: TableMapping) -> dict[str, str]:
    """contract column -> source column (or derived column), for every contract column present."""
    spec = INPUT_TABLES[table]
    allowed = list(spec.column_names) + [c.name for c in INPUT_ONLY_COLUMNS.get(table, ())]
    if table == "order_lines":
        allowed += [c for c in _HEADER_COLUMNS if c not in allowed]
    out: dict[str, str] = {}
    for col in allowed:
        if col in tm.columns:
            out[col] = tm.columns[col]
        elif col in tm.expressions:
            out[col] = _DERIVED + col
        elif col in raw.columns and col not in tm.constants:
            out[col] = col
    return out


def table_constants(mapping: Mapping, table: str) -> dict[str, Any]:
    """The table's constants, plus the export's ``currency`` where the table has no currency of its own
    (order lines of a flat export, orders, items)."""
    tm = mapping.tables[table]
    out = dict(tm.constants)
    fills_currency = table in ("orders", "items") or (table == "order_lines" and "orders" not in mapping.tables)
    if mapping.currency and fills_currency and not tm.maps(Col.CURRENCY):
        out[Col.CURRENCY] = mapping.currency
    return out


def column_spec(table: str, col: str) -> Column | None:
    """The contract column a mapping may fill in ``table`` (header columns on order lines included)."""
    found = INPUT_TABLES[table].column_index.get(col)
    if found is None:
        found = next((c for c in INPUT_ONLY_COLUMNS.get(table, ()) if c.name == col), None)
    if found is None and table == "order_lines":
        found = ORDERS.column_index.get(col)
    return found


# ---------------------------------------------------------------------------------------------
# Typed conversion, one column at a time


def _as_text(values: pd.Series) -> pd.Series:
    """Source values as stripped text; integral floats (spreadsheet ids like 12345.0) lose '.0'."""
    if pd.api.types.is_float_dtype(values):
        finite = values.notna() & np.isfinite(values.fillna(0))
        integral = finite & (values.fillna(0) % 1 == 0)
        text = values.astype(object).where(values.notna(), None)
        text = text.where(~integral, values.where(integral, 0).astype("int64").astype(str))
        values = text
    elif pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
        values = values.astype("string")
    out = values.astype("string").str.strip()
    return out.mask(out == "")


def _to_number(text: pd.Series, integer: bool) -> tuple[pd.Series, np.ndarray]:
    num = pd.to_numeric(text, errors="coerce")
    bad = text.notna().to_numpy() & ~np.isfinite(num.astype("float64").fillna(np.nan).to_numpy())
    if integer:
        whole = num.notna() & (num.fillna(0) % 1 == 0)
        bad |= (num.notna() & ~whole).to_numpy()
        out = num.where(whole & ~pd.Series(bad, index=num.index)).astype("Int64")
    else:
        out = num.where(~pd.Series(bad, index=num.index)).astype("float64")
    return out, bad


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _number_from_numeric(values: pd.Series, integer: bool) -> tuple[pd.Series, np.ndarray]:
    """Numbers that already arrive typed (Parquet): only finiteness and wholeness are checked."""
    present = values.notna().to_numpy()
    arr = values.astype("float64").to_numpy()
    bad = present & ~np.isfinite(arr)
    if integer:
        bad |= present & np.isfinite(arr) & (np.mod(arr, 1) != 0)
    out = pd.Series(np.where(present & ~bad, arr, np.nan))
    return (out.astype("Int64") if integer else out), bad


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def _to_bool(text: pd.Series) -> tuple[pd.Series, np.ndarray]:
    low = text.str.lower()
    out = pd.Series(pd.NA, index=text.index, dtype="boolean")
    out[low.isin(_TRUE).fillna(False)] = True
    out[low.isin(_FALSE).fillna(False)] = False
    bad = (text.notna() & out.isna()).to_numpy()
    return out, bad


_DATE = pd.ArrowDtype(pa.date32())


def _to_date(text: pd.Series) -> tuple[pd.Series, np.ndarray]:
    parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
    bad = (text.notna() & parsed.isna()).to_numpy()
    dates = [d.date() if not pd.isna(d) else None for d in parsed]
    return pd.Series(dates, index=text.index, dtype=_DATE), bad


_AWARE = r"(?:Z|[+-]\d{2}:?\d{2})$"


def _to_timestamp(
    raw: pd.Series, text: pd.Series, fmt: str, zone: str, latest: pd.Timestamp, odd_kind: str | None = None
) -> tuple[pd.Series, dict[Reason, np.ndarray]]:
    """Parse to UTC instants. Naive values are local times in ``zone``; DST gaps are flagged,
    DST folds take the first (summer-time) occurrence.

    In a column holding both naive and offset-aware values the minority form is odd; ``odd_kind``
    (``"naive"``, ``"aware"`` or ``""`` for neither) gives that verdict when it was reached over the
    whole table and this call sees one chunk of it; None decides on these values alone.

    A ``floating`` zone keeps wall-clock times: every value is stored with its own clock digits labelled
    UTC (an offset written on a value is dropped, its digits kept), so no time is skipped or repeated and
    the hour a feature reads is the hour the till printed."""
    n = len(text)
    problems: dict[Reason, np.ndarray] = {}
    if zone == FLOATING:
        return _floating(raw, text, fmt, latest)
    if pd.api.types.is_datetime64_any_dtype(raw):
        series = raw if getattr(raw.dt, "tz", None) is not None else _localize(raw, zone, problems)
        out = series.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    else:
        out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
        present = text.notna().to_numpy()
        aware = present & text.str.contains(_AWARE, regex=True, na=False).to_numpy()
        naive = present & ~aware
        if odd_kind is None and aware.any() and naive.any():  # the minority form is the odd one out
            odd_kind = "naive" if naive.sum() <= aware.sum() else "aware"
        if odd_kind:
            odd = (naive if odd_kind == "naive" else aware).copy()
            problems[Reason.MIXED_TZ_AWARENESS] = odd
            aware &= ~odd
            naive &= ~odd
        parse_fmt = "ISO8601" if fmt.upper() == "ISO8601" else fmt
        if aware.any():
            parsed = pd.to_datetime(text[aware], format=parse_fmt, errors="coerce", utc=True)
            out[aware] = parsed.astype("datetime64[us, UTC]")
        if naive.any():
            parsed = pd.to_datetime(text[naive], format=parse_fmt, errors="coerce")
            if getattr(parsed.dt, "tz", None) is not None:  # format carried %z after all
                out[naive] = parsed.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
            else:
                local = _localize(parsed, zone, problems, mask=naive, n=n)
                out[naive] = local.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
        unparsed = present & out.isna().to_numpy()
        gap = problems.get(Reason.NONEXISTENT_LOCAL_TIME, np.zeros(n, dtype=bool))
        odd_form = problems.get(Reason.MIXED_TZ_AWARENESS, np.zeros(n, dtype=bool))
        problems[Reason.UNPARSEABLE_TIMESTAMP] = unparsed & ~gap & ~odd_form
    future = (out > latest).fillna(False).to_numpy()
    problems[Reason.FUTURE_TIMESTAMP] = future
    out = out.mask(future)
    return out, {k: v for k, v in problems.items() if v.any()}


def _floating(
    raw: pd.Series, text: pd.Series, fmt: str, latest: pd.Timestamp
) -> tuple[pd.Series, dict[Reason, np.ndarray]]:
    """Wall-clock times stored as UTC clock digits (see :func:`_to_timestamp`)."""
    problems: dict[Reason, np.ndarray] = {}
    if pd.api.types.is_datetime64_any_dtype(raw):
        wall = raw.dt.tz_localize(None) if getattr(raw.dt, "tz", None) is not None else raw
        out = wall.dt.tz_localize("UTC").astype("datetime64[us, UTC]").reset_index(drop=True)
        out.index = text.index
    else:
        digits = text.str.replace(_AWARE, "", regex=True)
        parse_fmt = "ISO8601" if fmt.upper() == "ISO8601" else fmt.replace("%z", "").replace("%Z", "")
        parsed = pd.to_datetime(digits, format=parse_fmt, errors="coerce")
        out = parsed.dt.tz_localize("UTC").astype("datetime64[us, UTC]")
        problems[Reason.UNPARSEABLE_TIMESTAMP] = (text.notna() & out.isna()).to_numpy()
    future = (out > latest).fillna(False).to_numpy()
    problems[Reason.FUTURE_TIMESTAMP] = future
    return out.mask(future), {k: v for k, v in problems.items() if v.any()}


def _localize(
    naive: pd.Series,
    zone: str,
    problems: dict[Reason, np.ndarray],
    mask: np.ndarray | None = None,
    n: int | None = None,
) -> pd.Series:
    ok = naive.notna()
    local = naive.dt.tz_localize(zone, nonexistent="NaT", ambiguous=np.ones(len(naive), dtype=bool))
    gap = (ok & local.isna()).to_numpy()
    if gap.any():
        full = np.zeros(n if n is not None else len(naive), dtype=bool)
        if mask is not None:
            full[np.flatnonzero(mask)[gap]] = True
        else:
            full[gap] = True
        problems[Reason.NONEXISTENT_LOCAL_TIME] = full
    return local


# ---------------------------------------------------------------------------------------------
# Validation of one table


@dataclass
class _Checked:
    table: str
    raw: pd.DataFrame  # the source rows (for the quarantine's original values)
    frame: pd.DataFrame  # contract-typed values, same row order as raw
    verdicts: _Verdicts
    targets: pd.Series  # where each reclassified row went


def _convert(
    table: str,
    raw: pd.DataFrame,
    mapping: Mapping,
    latest: pd.Timestamp,
    verdicts: _Verdicts,
    odd_forms: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    tm = mapping.tables[table]
    spec = INPUT_TABLES[table]
    sources = mapped_source(raw, table, tm)
    constants = table_constants(mapping, table)
    columns: dict[str, pd.Series] = {}
    required = [c.name for c in spec.columns if c.required]
    if table == "order_lines" and "orders" not in mapping.tables:  # a flat export carries the header
        required += [c.name for c in ORDERS.columns if c.required and c.name not in required]
    if table == "order_lines":
        # Prices are optional for basket-only data: no unit price and no line amount means no price at
        # all (published empty, report "prices": false), never an invented one.
        required = [c for c in required if c != Col.UNIT_PRICE]
    if table in ("orders", "order_lines") and not mapping.dates:  # an export without times: none invented
        required = [c for c in required if c != Col.ORDERED_AT]
    absent = [c for c in required if c not in sources and c not in constants]
    if absent:
        raise InputDataError(
            f"tables.{table}: required column(s) {', '.join(absent)} are neither in the file(s) nor set in the "
            "mapping (map them under `columns:` or `expressions:`, or give a value under `constants:`)"
        )
    wanted = list(sources) + [c for c in constants if c not in sources]
    bounds = mapping.plausible_bounds
    for col in wanted:
        column = column_spec(table, col)
        assert column is not None  # the mapping validator only admits contract columns
        src = raw[sources[col]] if col in sources else pd.Series([constants[col]] * len(raw), index=raw.index)
        if column.kind in ("int", "float") and col not in tm.value_maps and _is_numeric(src):
            value, bad = _number_from_numeric(src.reset_index(drop=True), integer=column.kind == "int")
            missing = src.isna().to_numpy()
        else:
            text = _as_text(src)
            if col in tm.value_maps:
                vmap = tm.value_maps[col]
                text = text.map(lambda v, vm=vmap: vm.get(v, v) if isinstance(v, str) else v).astype("string")
            odd_form = None if odd_forms is None else odd_forms.get(col, "")
            value, bad = _typed_value(column, col, src, text, mapping, table, latest, verdicts, odd_form)
            missing = text.isna().to_numpy()
        if bad.any():
            _flag(
                verdicts,
                column,
                Reason.INVALID_NUMBER if column.kind in ("int", "float") else Reason.INVALID_VALUE,
                bad,
            )
        if column.kind in ("int", "float") and col in bounds:
            beyond = value.abs().gt(bounds[col]).fillna(False).to_numpy(dtype=bool)
            _flag(verdicts, column, Reason.IMPLAUSIBLE_VALUE, beyond)
        if column.required:
            gone = (
                Reason.MISSING_CUSTOMER_REF
                if col == Col.CUSTOMER_ID and spec.customer_required
                else Reason.MISSING_REQUIRED
            )
            verdicts.add("quarantine", gone, missing, col)
        columns[col] = value.reset_index(drop=True)
    if Col.LINE_AMOUNT in columns:  # the line total gives the unit price; a zero quantity gives none
        qty = columns[Col.QUANTITY].astype("float64") if Col.QUANTITY in columns else None
        amount = columns.pop(Col.LINE_AMOUNT)
        if qty is not None:
            columns[Col.UNIT_PRICE] = (amount / qty.where(qty != 0)).astype("float64")
    frame = pd.DataFrame(columns, index=pd.RangeIndex(len(raw)))
    return frame, sources


def _typed_value(
    column: Column,
    col: str,
    src: pd.Series,
    text: pd.Series,
    mapping: Mapping,
    table: str,
    latest: pd.Timestamp,
    verdicts: _Verdicts,
    odd_form: str | None = None,
) -> tuple[pd.Series, np.ndarray]:
    """One column's text converted to its contract kind; returns (values, rows with a bad value).

    Rules with their own reason code (currency, dates, timestamps) flag their rows here."""
    none = np.zeros(len(text), dtype=bool)
    if column.kind == "int" or column.kind == "float":
        return _to_number(text, integer=column.kind == "int")
    if column.kind == "bool":
        return _to_bool(text)
    if column.kind == "date":
        value, odd = _to_date(text)
        _flag(verdicts, column, Reason.UNPARSEABLE_DATE, odd)
        return value, none
    if column.kind == "timestamp":
        value, problems = _to_timestamp(
            src, text, mapping.tables[table].timestamp_format, mapping.zone_for(table), latest, odd_form
        )
        for reason, mask in problems.items():
            _flag(verdicts, column, reason, mask)
        return value, none
    if col == Col.CURRENCY:
        accepted = set(mapping.currencies) if mapping.currencies else ISO_CURRENCIES
        upper = text.str.upper()
        odd = (upper.notna() & ~upper.isin(accepted)).to_numpy()
        _flag(verdicts, column, Reason.UNKNOWN_CURRENCY, odd)
        return upper.mask(pd.Series(odd, index=upper.index)), none
    if column.allowed is not None:
        allowed: Sequence[str]
        if table in ("campaigns", "exposures") and col == Col.CHANNEL:
            allowed = mapping.channels
        elif table == "consents" and col == Col.CHANNEL:  # the messaging channels always, and the mapping's
            allowed = mapping.consent_channels
        else:
            allowed = column.allowed
        bad = (text.notna() & ~text.isin(allowed)).to_numpy()
        return text.mask(pd.Series(bad, index=text.index)), bad
    return text, none


def _flag(verdicts: _Verdicts, column: Column, reason: Reason, mask: np.ndarray) -> None:
    """A bad value quarantines the row when the column is required, else clears the field."""
    kind = "quarantine" if column.required else "reclassify"
    verdicts.add(kind, reason, mask, column.name)


def _duplicates(raw: pd.DataFrame, source_columns: list[str]) -> np.ndarray:
    """Exact copies of an earlier row, compared on the mapped source columns.

    DuckDB hashes whole rows (several times faster than pandas on Arrow strings); rows whose hash
    repeats are then compared value by value, so a hash collision can never drop a row.
    """
    cols = [c for c in source_columns if c in raw.columns]
    if not cols or raw.empty:
        return np.zeros(len(raw), dtype=bool)
    con = duckdb.connect()
    con.register("t", pa.Table.from_pandas(raw[cols], preserve_index=False))
    hashes = con.execute("SELECT hash(" + ", ".join(f'"{c}"' for c in cols) + ") AS h FROM t").fetchnumpy()["h"]
    con.close()
    candidates = pd.Series(hashes).duplicated(keep=False).to_numpy()
    out = np.zeros(len(raw), dtype=bool)
    if candidates.any():
        out[candidates] = raw.loc[candidates, cols].duplicated(keep="first").to_numpy()
    return out


def _key_conflicts(frame: pd.DataFrame, key: str, live: np.ndarray) -> np.ndarray:
    """Rows whose key is shared by another live row (exact copies were already removed)."""
    keys = frame[key].where(pd.Series(live))
    return (keys.notna() & keys.duplicated(keep=False)).to_numpy()


def _check_table(
    table: str,
    raw: pd.DataFrame,
    mapping: Mapping,
    latest: pd.Timestamp,
    accepted: dict[str, pd.DataFrame],
    whole: _TableVerdicts | None = None,
) -> _Checked:
    """Validate one table, or one chunk of it when ``whole`` carries the verdicts reached over the whole
    table (exact copies, key conflicts, the odd timestamp form): every other rule reads one row."""
    spec = INPUT_TABLES[table]
    tm = mapping.tables[table]
    verdicts = _Verdicts(len(raw))
    frame, sources = _convert(table, raw, mapping, latest, verdicts, whole.odd_forms if whole else None)
    targets = pd.Series([table] * len(raw), dtype=object)

    attribute_sources = _convert_attributes(tm, raw, frame, verdicts)
    compared = _compared_columns(tm, raw, sources, attribute_sources)
    dup = _duplicates(raw, compared) if whole is None else whole.duplicate
    live = ~dup

    if table == "customers":
        _check_customer_contacts(frame, verdicts, mapping.default_region)
    if spec.key and table != "orders":
        conflicts = _key_conflicts(frame, spec.key[0], live) if whole is None else whole.key_conflict
        verdicts.add("quarantine", Reason.KEY_CONFLICT, conflicts, spec.key[0])
    if table == "orders":
        verdicts.add("quarantine", Reason.ORDER_CONFLICT, _key_conflicts(frame, Col.ORDER_ID, live), Col.ORDER_ID)
        is_cancel = _cancellation_mask(frame, tm)  # cancellation documents are not sales
        verdicts.add("reclassify", Reason.CANCELLATION, is_cancel)
        targets[is_cancel] = RETURNS.name
    if table == "order_lines":
        _check_order_lines(frame, tm, mapping, accepted, verdicts, targets, live)
    # With a partial customers file merged with customers derived from the lines, a line's customer
    # needs no record: it gets a derived one.
    merged_lines = table in ("orders", "order_lines") and mapping.derive_customers_from_lines
    if Col.CUSTOMER_ID in frame.columns and table != "customers" and "customers" in accepted and not merged_lines:
        known = accepted["customers"][Col.CUSTOMER_ID]
        orphan = frame[Col.CUSTOMER_ID].notna() & ~frame[Col.CUSTOMER_ID].isin(known)
        verdicts.add("quarantine", Reason.ORPHAN_CUSTOMER, orphan.to_numpy(), Col.CUSTOMER_ID)
    if Col.CAMPAIGN_ID in frame.columns and table in ("exposures", "redemptions") and "campaigns" in accepted:
        orphan = frame[Col.CAMPAIGN_ID].notna() & ~frame[Col.CAMPAIGN_ID].isin(accepted["campaigns"][Col.CAMPAIGN_ID])
        verdicts.add("quarantine", Reason.ORPHAN_CAMPAIGN, orphan.to_numpy(), Col.CAMPAIGN_ID)
    if table == "redemptions" and "coupons" in accepted:
        orphan = frame[Col.COUPON_ID].notna() & ~frame[Col.COUPON_ID].isin(accepted["coupons"][Col.COUPON_ID])
        verdicts.add("quarantine", Reason.ORPHAN_COUPON, orphan.to_numpy(), Col.COUPON_ID)
    if Col.ITEM_ID in frame.columns and table in ("web_events",) and "items" in accepted:
        orphan = frame[Col.ITEM_ID].notna() & ~frame[Col.ITEM_ID].isin(accepted["items"][Col.ITEM_ID])
        verdicts.add("quarantine", Reason.ORPHAN_ITEM, orphan.to_numpy(), Col.ITEM_ID)

    # A copy carries only its duplicate verdict: the first copy tells the row's story.
    if dup.any():
        for store in (verdicts.quarantine, verdicts.reclassify):
            for key in store:
                store[key] = store[key] & ~dup
        verdicts.add("quarantine", Reason.DUPLICATE_ROW, dup)
    return _Checked(table, raw, frame, verdicts, targets)


def _compared_columns(
    tm: TableMapping, raw: pd.DataFrame, sources: dict[str, str], attribute_sources: list[str]
) -> list[str]:
    """The source columns two rows are compared on to be exact copies: every one the mapping reads,
    expressions' inputs included."""
    read_by_expressions = [
        ref[0]
        for parsed in (*tm.parsed_expressions.values(), *tm.attribute_expressions.values())
        for ref in parsed.references
        if len(ref) == 1 and ref[0] in raw.columns
    ]
    return list(dict.fromkeys([*sources.values(), *attribute_sources, *read_by_expressions]))


def _attribute_sources(tm: TableMapping) -> list[str]:
    """The raw columns the customer attributes are read from (derived ones for attribute expressions)."""
    return [
        _DERIVED + ATTRIBUTE_PREFIX + name if attribute.expression else tm.attribute_source(name)
        for name, attribute in tm.attributes.items()
    ]


def _convert_attributes(tm: TableMapping, raw: pd.DataFrame, frame: pd.DataFrame, verdicts: _Verdicts) -> list[str]:
    """Typed ``attr_<name>`` columns of the customer attributes; a value that does not fit its type (a
    band not in the order, text in a number) is cleared and the record kept. Returns the source columns."""
    used = []
    for name, attribute in tm.attributes.items():
        src_name = _DERIVED + ATTRIBUTE_PREFIX + name if attribute.expression else tm.attribute_source(name)
        used.append(src_name)
        src = raw[src_name]
        column = Column(ATTRIBUTE_PREFIX + name, _ATTRIBUTE_KIND[attribute.type], attribute.description or name)
        if attribute.type == "number" and _is_numeric(src):
            value, bad = _number_from_numeric(src.reset_index(drop=True), integer=False)
            reason = Reason.INVALID_NUMBER
        elif attribute.type == "date" and pd.api.types.is_datetime64_any_dtype(src):
            value, bad = _to_date(_as_text(src.dt.strftime("%Y-%m-%d")))
            reason = Reason.UNPARSEABLE_DATE
        else:
            value, bad, reason = _attribute_from_text(attribute, _as_text(src))
        _flag(verdicts, column, reason, bad)
        frame[column.name] = value.reset_index(drop=True)
    return used


_ATTRIBUTE_KIND: dict[str, Any] = {"category": "str", "bands": "str", "number": "float", "date": "date", "flag": "bool"}


def _attribute_from_text(attribute: Attribute, text: pd.Series) -> tuple[pd.Series, np.ndarray, Reason]:
    if attribute.type == "number":
        value, bad = _to_number(text, integer=False)
        return value, bad, Reason.INVALID_NUMBER
    if attribute.type == "date":
        value, bad = _to_date(text)
        return value, bad, Reason.UNPARSEABLE_DATE
    if attribute.type == "flag":
        value, bad = _to_bool(text)
        return value, bad, Reason.INVALID_VALUE
    if attribute.type == "bands":
        bad = (text.notna() & ~text.isin(attribute.order or [])).to_numpy()
        return text.mask(pd.Series(bad, index=text.index)), bad, Reason.INVALID_VALUE
    return text, np.zeros(len(text), dtype=bool), Reason.INVALID_VALUE


def attribute_columns(tm: TableMapping | None, frame: pd.DataFrame) -> pd.DataFrame:
    """The published attribute columns of customer records: ``attr_<name>`` in the declared order, and
    ``attr_<name>_rank`` (the band's 1-based position in ``order``) after each ordered band."""
    out: dict[str, pd.Series] = {}
    n = len(frame)
    for name, attribute in (tm.attributes if tm is not None else {}).items():
        col = ATTRIBUTE_PREFIX + name
        kind = _ATTRIBUTE_KIND[attribute.type]
        values = frame[col].reset_index(drop=True) if col in frame.columns else None
        if values is None:
            values = _typed(pd.DataFrame(index=range(n)), [Column(col, kind, "")])[col]
        out[col] = values
        if attribute.type == "bands":
            rank = {band: i + 1 for i, band in enumerate(attribute.order or [])}
            out[f"{col}{RANK_SUFFIX}"] = values.map(rank).astype("Int64")
    return pd.DataFrame(out, index=pd.RangeIndex(n))


def _check_customer_contacts(frame: pd.DataFrame, verdicts: _Verdicts, default_region: str) -> None:
    if Col.EMAIL in frame.columns:
        norm, valid = normalize_emails(frame[Col.EMAIL])
        verdicts.add("reclassify", Reason.INVALID_EMAIL, ~valid.to_numpy(dtype=bool), Col.EMAIL)
        frame[Col.EMAIL] = norm
    if Col.PHONE in frame.columns:
        regions = frame[Col.COUNTRY] if Col.COUNTRY in frame.columns else None
        norm, valid = normalize_phones(frame[Col.PHONE], regions, default_region=default_region)
        verdicts.add("reclassify", Reason.INVALID_PHONE, ~valid.to_numpy(dtype=bool), Col.PHONE)
        frame[Col.PHONE] = norm
    if Col.TIMEZONE in frame.columns:
        zones = frame[Col.TIMEZONE]
        known = {z: _zone_ok(z) for z in zones.dropna().unique()}
        bad = zones.notna() & ~zones.map(known).fillna(True).astype(bool)
        verdicts.add("reclassify", Reason.INVALID_TIMEZONE, bad.to_numpy(), Col.TIMEZONE)
        frame[Col.TIMEZONE] = zones.mask(bad)


def _zone_ok(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _cancellation_mask(frame: pd.DataFrame, tm: TableMapping) -> np.ndarray:
    mask = np.zeros(len(frame), dtype=bool)
    if tm.cancellation is not None and tm.cancellation.column in frame.columns:
        col = frame[tm.cancellation.column]
        mask |= col.str.startswith(tm.cancellation.prefix, na=False).to_numpy()
    if Col.STATUS in frame.columns:
        cancelled = (OrderStatus.CANCELLED.value, OrderStatus.RETURNED.value)
        mask |= frame[Col.STATUS].isin(cancelled).fillna(False).to_numpy()
    return mask


def _check_order_lines(
    frame: pd.DataFrame,
    tm: TableMapping,
    mapping: Mapping,
    accepted: dict[str, pd.DataFrame],
    verdicts: _Verdicts,
    targets: pd.Series,
    live: np.ndarray,
) -> None:
    orders = accepted.get("orders")
    if orders is not None:  # header exported on its own: join it onto the lines
        joined = frame[[Col.ORDER_ID]].merge(
            orders[[Col.ORDER_ID, *[c for c in _HEADER_COLUMNS if c in orders.columns]]],
            on=Col.ORDER_ID,
            how="left",
            indicator=True,
        )
        verdicts.add("quarantine", Reason.ORPHAN_ORDER, (joined["_merge"] == "left_only").to_numpy(), Col.ORDER_ID)
        for col in _HEADER_COLUMNS:
            if col in joined.columns and col not in frame.columns:
                frame[col] = joined[col].to_numpy()
    else:  # flat export: every line repeats its order's header, which must agree
        _check_flat_headers(frame, mapping, verdicts, live)

    non_product = np.zeros(len(frame), dtype=bool)
    if tm.non_product is not None and tm.non_product.column in frame.columns:
        pattern = f"^(?:{tm.non_product.pattern})$"
        non_product = frame[tm.non_product.column].str.match(pattern, na=False).to_numpy()
    cancel = _cancellation_mask(frame, tm) & ~non_product
    sale = ~non_product & ~cancel
    qty = frame[Col.QUANTITY] if Col.QUANTITY in frame.columns else pd.Series(pd.NA, index=frame.index)
    price = frame[Col.UNIT_PRICE] if Col.UNIT_PRICE in frame.columns else pd.Series(np.nan, index=frame.index)
    verdicts.add("quarantine", Reason.NEGATIVE_QUANTITY, sale & (qty < 0).fillna(False).to_numpy(), Col.QUANTITY)
    verdicts.add("quarantine", Reason.ZERO_QUANTITY, sale & (qty == 0).fillna(False).to_numpy(), Col.QUANTITY)
    verdicts.add("quarantine", Reason.NON_POSITIVE_PRICE, sale & (price <= 0).fillna(False).to_numpy(), Col.UNIT_PRICE)
    if "items" in accepted and Col.ITEM_ID in frame.columns:
        orphan = (
            ~non_product
            & frame[Col.ITEM_ID].notna().to_numpy()
            & ~frame[Col.ITEM_ID].isin(accepted["items"][Col.ITEM_ID]).to_numpy()
        )
        verdicts.add("quarantine", Reason.ORPHAN_ITEM, orphan, Col.ITEM_ID)
    verdicts.add("reclassify", Reason.NON_PRODUCT, non_product)
    verdicts.add("reclassify", Reason.CANCELLATION, cancel)
    targets[non_product] = ADJUSTMENTS.name
    targets[cancel] = RETURNS.name


def _check_flat_headers(frame: pd.DataFrame, mapping: Mapping, verdicts: _Verdicts, live: np.ndarray) -> None:
    cols = [c for c in (Col.CUSTOMER_ID, Col.CURRENCY, Col.CHANNEL, Col.STATUS, Col.STORE_ID) if c in frame.columns]
    sub = frame.loc[live & frame[Col.ORDER_ID].notna().to_numpy()]
    if sub.empty:
        return
    grouped = sub.groupby(Col.ORDER_ID, sort=False)
    bad_orders: set[Any] = set()
    for col in cols:
        n = grouped[col].nunique(dropna=False)
        bad_orders.update(n.index[n > 1])
    if Col.ORDERED_AT in sub.columns:
        spread = grouped[Col.ORDERED_AT].max() - grouped[Col.ORDERED_AT].min()
        limit = pd.Timedelta(minutes=mapping.order_time_tolerance_minutes)
        bad_orders.update(spread.index[(spread > limit).fillna(False)])
    if bad_orders:
        mask = frame[Col.ORDER_ID].isin(bad_orders).to_numpy() & live
        verdicts.add("quarantine", Reason.ORDER_CONFLICT, mask, Col.ORDER_ID)


# ---------------------------------------------------------------------------------------------
# Outputs


def _original_json(raw: pd.DataFrame, rows: np.ndarray) -> pd.Series:
    """Each selected source row, every column as exported, as one JSON object (for the audit files)."""
    sub = raw.loc[rows, [c for c in raw.columns if c not in (_SRC_FILE, _SRC_ROW) and not c.startswith(_DERIVED)]]
    if sub.empty:
        return pd.Series([], dtype=object)
    text = sub.to_json(orient="records", lines=True, date_format="iso", default_handler=str)
    return pd.Series(text.rstrip("\n").split("\n"), dtype=object)


def _audit_rows(checked: _Checked, rows: np.ndarray, store: dict[tuple[Reason, str], np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "table": checked.table,
            "source_file": checked.raw.loc[rows, _SRC_FILE].to_numpy(),
            "source_row": checked.raw.loc[rows, _SRC_ROW].to_numpy(),
            "reasons": _Verdicts.reason_labels(store, rows).to_numpy(),
            "target": checked.targets[rows].to_numpy(),
            "original": _original_json(checked.raw, rows).to_numpy(),
        }
    )


def _clear_fields(checked: _Checked) -> None:
    """Blank every optional field that a reclassification reason flagged (the record is kept)."""
    for (_reason, column), mask in checked.verdicts.reclassify.items():
        if column and column in checked.frame.columns:
            checked.frame[column] = checked.frame[column].mask(mask)


def _typed(frame: pd.DataFrame, table: Table | Sequence[Column]) -> pd.DataFrame:
    """The contract columns in contract order (absent optional ones as empty columns of the right type)."""
    out = {}
    n = len(frame)
    for col in table.columns if isinstance(table, Table) else table:
        if col.name in frame.columns:
            out[col.name] = frame[col.name].reset_index(drop=True)
        elif col.kind == "timestamp":
            out[col.name] = pd.Series(pd.NaT, index=range(n), dtype="datetime64[us, UTC]")
        elif col.kind == "date":
            out[col.name] = pd.Series([None] * n, dtype=_DATE)
        elif col.kind == "float":
            out[col.name] = pd.Series(np.nan, index=range(n), dtype="float64")
        elif col.kind == "int":
            out[col.name] = pd.Series(pd.NA, index=range(n), dtype="Int64")
        elif col.kind == "bool":
            out[col.name] = pd.Series(pd.NA, index=range(n), dtype="boolean")
        else:
            out[col.name] = pd.Series(pd.NA, index=range(n), dtype="string")
    return pd.DataFrame(out, index=pd.RangeIndex(n))


# Published order lines carry their order's header, so features need no join.
_LINE_OUTPUT = (*ORDER_LINES.columns, *(c for c in ORDERS.columns if c.name != Col.ORDER_ID))


def _split_order_lines(checked: _Checked) -> dict[str, pd.DataFrame]:
    """Accepted sale lines (with their header), returns and adjustments."""
    f = checked.frame
    keep = ~checked.verdicts.quarantined()
    is_return = keep & (checked.targets == RETURNS.name).to_numpy()
    is_adj = keep & (checked.targets == ADJUSTMENTS.name).to_numpy()
    sale = keep & ~is_return & ~is_adj
    lines = _typed(f.loc[sale], _LINE_OUTPUT)
    # Line numbers are assigned only where absent: after the highest one the order already has.
    missing = lines[Col.LINE_NO].isna()
    if missing.any():
        by_order = lines.groupby(Col.ORDER_ID, sort=False, dropna=False)
        offset = by_order[Col.LINE_NO].transform("max").fillna(0)
        rank = missing.groupby(lines[Col.ORDER_ID], sort=False, dropna=False).cumsum()
        lines[Col.LINE_NO] = lines[Col.LINE_NO].fillna((offset + rank).astype("Int64"))
    lines[Col.STATUS] = lines[Col.STATUS].fillna(OrderStatus.COMPLETED.value)

    ret = f.loc[is_return]
    returns = pd.DataFrame(
        {
            Col.RETURN_ID: ret[Col.ORDER_ID],
            Col.CUSTOMER_ID: ret.get(Col.CUSTOMER_ID),
            Col.RETURNED_AT: ret.get(Col.ORDERED_AT),
            Col.ITEM_ID: ret[Col.ITEM_ID],
            Col.QUANTITY: ret[Col.QUANTITY].abs(),
            Col.UNIT_PRICE: ret.get(Col.UNIT_PRICE),
            Col.CURRENCY: ret.get(Col.CURRENCY),
        }
    )
    adj = f.loc[is_adj]
    adjustments = pd.DataFrame(
        {
            Col.ADJUSTMENT_ID: adj[Col.ORDER_ID],
            Col.CUSTOMER_ID: adj.get(Col.CUSTOMER_ID),
            Col.ADJUSTED_AT: adj.get(Col.ORDERED_AT),
            Col.ITEM_ID: adj[Col.ITEM_ID],
            Col.ITEM_NAME: adj.get(Col.ITEM_NAME),
            Col.AMOUNT: adj[Col.QUANTITY].astype("float64") * adj.get(Col.UNIT_PRICE, np.nan),
            Col.CURRENCY: adj.get(Col.CURRENCY),
        }
    )
    return {
        "order_lines": lines,
        RETURNS.name: _typed(returns, RETURNS),
        ADJUSTMENTS.name: _typed(adjustments, ADJUSTMENTS),
    }


def _orders_from_lines(lines: pd.DataFrame, headers: pd.DataFrame | None, prices: bool = True) -> pd.DataFrame:
    """The published orders: exported headers (when given) or one per order seen on accepted sale
    lines, each with its line count and amount (null for every order when the export has no prices)."""
    no_amount = 0.0 if prices else np.nan
    if lines.empty or Col.ORDER_ID not in lines.columns:
        base = _typed(headers if headers is not None else pd.DataFrame(), ORDERS)
        return base.assign(n_lines=0, amount=no_amount)
    amount = lines[Col.QUANTITY].astype("float64") * lines[Col.UNIT_PRICE]
    agg: dict[str, Any] = {c: "first" for c in _HEADER_COLUMNS if c in lines.columns and c != Col.ORDERED_AT}
    agg[Col.ORDERED_AT] = "min"
    grouped = lines.assign(_amount=amount).groupby(Col.ORDER_ID, sort=False, dropna=False)
    head = grouped.agg(agg)
    head["n_lines"] = grouped.size()
    head["amount"] = grouped["_amount"].sum() if prices else np.nan
    head = head.reset_index()
    if headers is not None:  # every accepted header is published, with or without accepted lines
        totals = head.set_index(Col.ORDER_ID)[["n_lines", "amount"]]
        head = _typed(headers, ORDERS)
        head["n_lines"] = head[Col.ORDER_ID].map(totals["n_lines"]).fillna(0).astype("int64")
        head["amount"] = head[Col.ORDER_ID].map(totals["amount"]).fillna(no_amount)
        return head
    return pd.concat([_typed(head, ORDERS), head[["n_lines", "amount"]]], axis=1)


def _derive_items(lines: pd.DataFrame) -> pd.DataFrame:
    """A catalogue from the lines when the export has none: most used name, median price."""
    if lines.empty:
        return _typed(pd.DataFrame(), TABLES["items"])
    grouped = lines.groupby(Col.ITEM_ID, sort=True)
    names = (
        lines.dropna(subset=[Col.ITEM_NAME])
        .groupby([Col.ITEM_ID, Col.ITEM_NAME])
        .size()
        .rename("n")
        .reset_index()
        .sort_values([Col.ITEM_ID, "n", Col.ITEM_NAME], ascending=[True, False, True])
        .drop_duplicates(Col.ITEM_ID)
        .set_index(Col.ITEM_ID)[Col.ITEM_NAME]
        if Col.ITEM_NAME in lines.columns
        else pd.Series(dtype="string")
    )
    items = pd.DataFrame({Col.ITEM_ID: grouped.size().index})
    items[Col.NAME] = items[Col.ITEM_ID].map(names).astype("string")
    items[Col.PRICE] = items[Col.ITEM_ID].map(grouped[Col.UNIT_PRICE].median())
    items[Col.CURRENCY] = items[Col.ITEM_ID].map(grouped[Col.CURRENCY].first()).astype("string")
    items[Col.ACTIVE] = pd.Series(True, index=items.index, dtype="boolean")
    return _typed(items, TABLES["items"])


def _derive_customers(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Customer records from the ids seen on lines, returns and adjustments (country = latest seen)."""
    parts = []
    for name, ts in (
        ("order_lines", Col.ORDERED_AT),
        (RETURNS.name, Col.RETURNED_AT),
        (ADJUSTMENTS.name, Col.ADJUSTED_AT),
    ):
        t = tables.get(name)
        if t is not None and not t.empty:
            cols = [Col.CUSTOMER_ID, ts] + ([Col.COUNTRY] if Col.COUNTRY in t.columns else [])
            parts.append(t[cols].rename(columns={ts: "_ts"}))
    if not parts:
        return _typed(pd.DataFrame(), TABLES["customers"])
    seen = pd.concat(parts, ignore_index=True).dropna(subset=[Col.CUSTOMER_ID])
    seen = seen.sort_values([Col.CUSTOMER_ID, "_ts"])
    first = seen.groupby(Col.CUSTOMER_ID, sort=True)["_ts"].min()
    last = seen.drop_duplicates(Col.CUSTOMER_ID, keep="last").set_index(Col.CUSTOMER_ID)
    customers = pd.DataFrame({Col.CUSTOMER_ID: first.index.astype("string"), Col.CREATED_AT: first.to_numpy()})
    if Col.COUNTRY in last.columns:
        customers[Col.COUNTRY] = customers[Col.CUSTOMER_ID].map(last[Col.COUNTRY]).astype("string")
    return _typed(customers, TABLES["customers"])


# ---------------------------------------------------------------------------------------------
# Large tables in bounded memory
#
# The tables nothing else is checked against (consents, web events, messages, exposures, redemptions)
# are the bulk of an export. They are read in chunks of ``chunk_rows`` rows, three times: the first
# pass puts each row's hash (of the columns compared for exact copies) and key into an index on disk
# (DuckDB) and counts the timestamp forms; the rows whose hash repeats are then compared value by value
# (a second, sparse read), so a hash collision never makes a copy; the last pass validates each chunk
# with those whole-table verdicts and every row-local rule, and appends what it keeps to the published
# file. Each verdict is the one the whole table read at once would get (tests/features/
# test_ingest_chunked.py compares both on the shipped samples and small worlds).

STREAMED = ("consents", "web_events", "messages", "exposures", "redemptions")
DEFAULT_CHUNK_ROWS = 500_000
_INDEX_MEMORY = "512MB"  # DuckDB's memory for the on-disk index; it spills beyond it
_SEQ = "_seq"


@dataclass
class _TableVerdicts:
    """What one chunk of a table needs from the whole table (see :func:`_check_table`)."""

    duplicate: np.ndarray
    key_conflict: np.ndarray
    odd_forms: dict[str, str]


def _parquet_dtypes(files: list[Path]) -> dict[str, Any]:
    """The pandas dtype each column of these Parquet files gets when every file is read whole and the
    frames concatenated (an integer column with a null in its file becomes float64, a boolean one
    object), so that every chunk is read with it."""
    frames = []
    for path in files:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        dtypes = dict(schema.empty_table().to_pandas().dtypes)
        for i, fld in enumerate(schema):
            if not (pa.types.is_integer(fld.type) or pa.types.is_boolean(fld.type)):
                continue
            stats = [parquet.metadata.row_group(g).column(i).statistics for g in range(parquet.num_row_groups)]
            if all(s is not None and s.has_null_count for s in stats):
                nulls = sum(s.null_count for s in stats if s is not None)
            else:
                nulls = pq.read_table(path, columns=[fld.name]).column(0).null_count
            if nulls:
                dtypes[fld.name] = np.dtype("float64") if pa.types.is_integer(fld.type) else np.dtype(object)
        frames.append(pd.DataFrame({c: pd.Series([], dtype=d) for c, d in dtypes.items()}))
    return dict(pd.concat(frames, ignore_index=True).dtypes) if len(frames) > 1 else dict(frames[0].dtypes)


def _csv_chunks(path: Path, fmt: TextFormat | None, chunk_rows: int) -> Any:
    """A CSV file as text columns, ``chunk_rows`` rows at a time (see :func:`_read_csv`); a malformed row
    makes the whole-file reader raise its message, which names lines and never shows a row."""
    if fmt is not None and fmt.delimiter == WHITESPACE:
        for frame in pd.read_csv(
            path,
            sep=r"\s+",
            header=0 if fmt.header else None,
            names=None if fmt.header else fmt.column_names,
            dtype=str,
            keep_default_na=False,
            on_bad_lines="error",
            chunksize=chunk_rows,
        ):
            yield frame.astype("string")
        return
    delimiter = fmt.delimiter if fmt is not None else ","
    names = fmt.column_names if fmt is not None and not fmt.header else None
    malformed = [0]

    def note(row: pacsv.InvalidRow) -> str:
        malformed[0] += 1
        return "skip"

    parse = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=note)
    with pacsv.open_csv(path, read_options=pacsv.ReadOptions(column_names=names), parse_options=parse) as reader:
        header = reader.schema.names
    opts = pacsv.ConvertOptions(column_types=dict.fromkeys(header, "string"), strings_can_be_null=False)
    read = pacsv.ReadOptions(column_names=names, block_size=1 << 24)
    batches: list[pa.RecordBatch] = []
    held, yielded = 0, False
    with pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=opts) as reader:
        for batch in reader:
            batches.append(batch)
            held += batch.num_rows
            if held >= chunk_rows:
                if malformed[0]:
                    break
                yield pa.Table.from_batches(batches).to_pandas()
                batches, held, yielded = [], 0, True
    if malformed[0]:
        _read_csv(path, fmt)  # raises the named message (counts and line numbers)
        raise InputDataError(f"{path}: malformed row(s); the rows are not shown (they may hold personal data)")
    if batches or not yielded:
        yield pa.Table.from_batches(batches, schema=reader.schema).to_pandas()


def _ingest_streamed(
    streamed: _StreamedTable,
    mapping: Mapping,
    latest: pd.Timestamp,
    refs: dict[str, pd.DataFrame],
    publish: Callable[[pd.DataFrame | None], None],
    audits_q: list[pd.DataFrame | Path],
    audits_r: list[pd.DataFrame | Path],
) -> tuple[int, dict[str, Any]]:
    """Validate and publish one streamed table chunk by chunk; returns (rows erased, table report).

    Each chunk goes through the same steps as a table read whole in :func:`ingest`."""
    table = streamed.table
    con = streamed.index()
    try:
        streamed.verdicts(con)
        q_part = _PartWriter(streamed.workdir / f"{table}.quarantine.parquet")
        r_part = _PartWriter(streamed.workdir / f"{table}.reclassified.parquet")
        empty: dict[str, pd.DataFrame] = {}
        reports = []
        for seq, _erased, raw in streamed.chunks():
            n = len(raw)
            whole = _TableVerdicts(
                streamed.flags(con, "dup", seq, n), streamed.flags(con, "conflict", seq, n), streamed.odd_forms
            )
            checked = _check_table(table, raw, mapping, latest, refs, whole)
            q = checked.verdicts.quarantined()
            r = checked.verdicts.reclassified()
            _clear_fields(checked)
            if table == "web_events":  # an event without an id gets its source position
                position = raw[_SRC_FILE].astype(str) + ":" + raw[_SRC_ROW].astype(str)
                checked.frame[Col.EVENT_ID] = checked.frame.get(Col.EVENT_ID, position).fillna(position)
            frame = _typed(checked.frame.loc[~q].reset_index(drop=True), INPUT_TABLES[table])
            if table == "exposures" and "campaigns" in refs:  # the campaign's channel by default
                channels = refs["campaigns"].set_index(Col.CAMPAIGN_ID)[Col.CHANNEL]
                frame[Col.CHANNEL] = frame[Col.CHANNEL].fillna(frame[Col.CAMPAIGN_ID].map(channels))
            publish(frame)
            for part, rows, store, kind in (
                (q_part, q, checked.verdicts.quarantine, "q"),
                (r_part, r, checked.verdicts.reclassify, "r"),
            ):
                audit = _audit_rows(checked, rows, store)
                if len(audit):
                    part.write(audit)
                else:
                    empty[kind] = audit
            reports.append(_table_report(checked, q, r))
            del raw, checked, frame
        publish(None)
        for part, audits, kind in ((q_part, audits_q, "q"), (r_part, audits_r, "r")):
            part.close()
            audits.append(part.path if part.rows else empty[kind])
    finally:
        con.close()
    return streamed.erased, _merge_reports(reports)


def _merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One table report from its chunks' reports (counts summed; files in the order first seen)."""
    out: dict[str, Any] = {
        k: sum(r[k] for r in reports) for k in ("input_rows", "accepted", "reclassified", "quarantined")
    }
    for key in ("quarantine_reasons", "reclassified_reasons"):
        total: dict[str, int] = {}
        for r in reports:
            for reason, count in r[key].items():
                total[reason] = total.get(reason, 0) + count
        out[key] = dict(sorted(total.items()))
    moved: dict[str, int] = {}
    for r in reports:
        for target, count in r["reclassified_to"].items():
            moved[target] = moved.get(target, 0) + count
    out["reclassified_to"] = dict(sorted(moved.items(), key=lambda kv: -kv[1]))
    files: dict[str, dict[str, int]] = {}
    for r in reports:
        for name, counts in r["files"].items():
            held = files.setdefault(name, dict.fromkeys(counts, 0))
            for k, v in counts.items():
                held[k] += v
    out["files"] = files
    return out


def _write_audits(parts: list[pd.DataFrame | Path], path: Path) -> None:
    """The audit file: frames held in memory and parts spilled by streamed tables, in table order."""
    if all(isinstance(p, pd.DataFrame) for p in parts):
        frames = [p for p in parts if isinstance(p, pd.DataFrame)]
        write_parquet(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), path)
        return
    # The schema of the whole-table write: pandas' concatenation of every part decides the dtypes (a str
    # column meeting an empty object one becomes object, written as string rather than large_string), so a
    # row of each part, empty parts as they are, is concatenated to find them.
    samples = [p.head(1) if isinstance(p, pd.DataFrame) else pq.read_table(p).slice(0, 1).to_pandas() for p in parts]
    schema = pa.Table.from_pandas(pd.concat(samples, ignore_index=True), preserve_index=False).schema
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for part in parts:
            if isinstance(part, pd.DataFrame):
                if len(part):
                    writer.write_table(pa.Table.from_pandas(part, preserve_index=False).cast(schema))
                continue
            for batch in pq.ParquetFile(part).iter_batches():
                writer.write_table(pa.Table.from_batches([batch]).cast(schema))


def _rekey_file(path: Path, identity_map: pd.DataFrame, pseudonymizer: Pseudonymizer) -> None:
    """Key a published table again with the final identity map, one row group at a time."""
    rewritten = _PartWriter(path.with_suffix(".rekeyed"))
    parquet = pq.ParquetFile(path)
    for g in range(parquet.num_row_groups):
        rewritten.write(rekey(parquet.read_row_group(g).to_pandas(), identity_map, pseudonymizer))
    if parquet.num_row_groups == 0:
        rewritten.write(rekey(parquet.schema_arrow.empty_table().to_pandas(), identity_map, pseudonymizer))
    rewritten.close()
    rewritten.path.replace(path)


def _file_chunks(path: Path, fmt: TextFormat | None, chunk_rows: int) -> Any:
    """One file's rows, ``chunk_rows`` at a time, typed as :func:`_read_file` types the whole file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            dtypes = _parquet_dtypes([path])
            parquet = pq.ParquetFile(path)
            if parquet.metadata.num_rows == 0:
                yield parquet.schema_arrow.empty_table().to_pandas()
                return
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                frame = batch.to_pandas()
                cast = {c: d for c, d in dtypes.items() if frame[c].dtype != d}
                yield frame.astype(cast) if cast else frame
            return
        if suffix in (".csv", ".txt", ".gz"):
            yield from _csv_chunks(path, fmt, chunk_rows)
            return
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{path}: cannot be read: {_reader_problem(exc)}") from None
    raise InputDataError(f"{path}: unsupported file type {suffix!r} (use .csv or .parquet)")


def _raw_chunks(
    files: list[Path], table: str, tm: TableMapping, lookups: dict[str, LookupData], chunk_rows: int
) -> Any:
    """The table's rows as :func:`_read_table` gives them (source position, derived columns), in chunks."""
    parquet_files = [p for p in files if p.suffix.lower() == ".parquet"]
    dtypes = _parquet_dtypes(parquet_files) if len(parquet_files) > 1 else {}
    for path in files:
        first_row = 1
        for frame in _file_chunks(path, tm.text_format, chunk_rows):
            if first_row == 1:
                missing = sorted({src for src in tm.columns.values() if src not in frame.columns})
                if missing:
                    raise InputDataError(
                        f"{path.name}: column(s) {', '.join(repr(m) for m in missing)} named in the mapping "
                        f"for {table} are not in the file's header (line 1, {len(frame.columns)} columns)"
                    )
                check_references(table, tm, set(frame.columns), lookups, path.name)
            cast = {c: d for c, d in dtypes.items() if c in frame.columns and frame[c].dtype != d}
            if cast:
                frame = frame.astype(cast)
            frame[_SRC_FILE] = path.name
            frame[_SRC_ROW] = np.arange(first_row, first_row + len(frame), dtype=np.int64)
            first_row += len(frame)
            check_types(table, tm, frame, lookups)
            _derive(table, tm, frame, lookups)
            yield frame


def _row_hashes(raw: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """DuckDB's hash of each row over ``cols``; whole numbers hashed as floats, so that a column typed
    int in one chunk and float in another (nulls elsewhere) hashes equal values alike."""
    data = {}
    for c in cols:
        values = raw[c]
        if pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values):
            values = values.astype("float64")
        data[c] = values
    con = duckdb.connect()
    try:
        con.register("t", pa.Table.from_pandas(pd.DataFrame(data), preserve_index=False))
        quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in cols)
        return con.execute(f"SELECT hash({quoted}) AS h FROM t").fetchnumpy()["h"]
    finally:
        con.close()


def _timestamp_forms(text: pd.Series) -> tuple[int, int]:
    """(offset-aware, naive) present values of one timestamp column, as :func:`_to_timestamp` tells them."""
    import pyarrow.compute as pc

    arr = pa.array(text.astype(object).where(text.notna(), None), type=pa.string())
    stripped = pc.utf8_trim_whitespace(arr)
    present = pc.and_(pc.is_valid(stripped), pc.not_equal(stripped, ""))
    aware = pc.and_(present, pc.match_substring_regex(stripped, _AWARE))
    n_present = pc.sum(pc.cast(present, pa.int64())).as_py() or 0
    n_aware = pc.sum(pc.cast(pc.fill_null(aware, False), pa.int64())).as_py() or 0
    return n_aware, n_present - n_aware


class _StreamedTable:
    """One large table validated chunk by chunk against verdicts reached over the whole of it."""

    def __init__(
        self,
        input_dir: Path,
        table: str,
        mapping: Mapping,
        tombstones: Tombstones,
        chunk_rows: int,
        workdir: Path,
    ) -> None:
        self.table = table
        self.mapping = mapping
        self.tm = mapping.tables[table]
        self.tombstones = tombstones
        self.chunk_rows = chunk_rows
        self.files = resolve_files(input_dir, self.tm, table)
        self.lookups = read_lookups(input_dir, table, self.tm)
        self.workdir = workdir
        self.erased = 0
        self.rows = 0

    def chunks(self) -> Any:
        """(first sequence number, rows) of each chunk, erased customers dropped (as the whole read does)."""
        seq = 0
        for raw in _raw_chunks(self.files, self.table, self.tm, self.lookups, self.chunk_rows):
            src = mapped_source(raw, self.table, self.tm)
            raw, erased = drop_erased(raw, src.get(Col.CUSTOMER_ID), self.tombstones, src.get(Col.ANONYMOUS_ID))
            yield seq, erased, raw
            seq += len(raw)

    def index(self) -> duckdb.DuckDBPyConnection:
        """First pass: the on-disk index of hashes and keys, and the timestamp forms per column."""
        spec = INPUT_TABLES[self.table]
        key = spec.key[0] if spec.key else None
        con = duckdb.connect(str(self.workdir / f"{self.table}.duckdb"))
        con.execute(f"SET memory_limit = '{_INDEX_MEMORY}'")
        con.execute(f"SET temp_directory = '{self.workdir / 'spill'}'")
        con.execute(f"CREATE TABLE idx ({_SEQ} BIGINT, h UBIGINT, k VARCHAR)")
        forms: dict[str, list[int]] = {}
        zone = self.mapping.zone_for(self.table)
        for seq, erased, raw in self.chunks():
            self.erased += erased
            self.rows += len(raw)
            sources = mapped_source(raw, self.table, self.tm)
            compared = [c for c in _compared_columns(self.tm, raw, sources, _attribute_sources(self.tm))]
            compared = [c for c in compared if c in raw.columns]
            hashes = _row_hashes(raw, compared) if compared and len(raw) else np.zeros(len(raw), dtype=np.uint64)
            keys = pd.Series([None] * len(raw), dtype=object)
            if key is not None and key in sources:
                text = _as_text(raw[sources[key]])
                if key in self.tm.value_maps:
                    vmap = self.tm.value_maps[key]
                    text = text.map(lambda v, vm=vmap: vm.get(v, v) if isinstance(v, str) else v).astype("string")
                keys = text.astype(object).where(text.notna(), None).reset_index(drop=True)
            part = pa.table(
                {
                    _SEQ: pa.array(np.arange(seq, seq + len(raw), dtype=np.int64)),
                    "h": pa.array(hashes, type=pa.uint64()),
                    "k": pa.array(keys.to_numpy(), type=pa.string()),
                }
            )
            con.register("part", part)
            con.execute("INSERT INTO idx SELECT * FROM part")
            con.unregister("part")
            if zone == FLOATING:
                continue
            for col, src_name in sources.items():
                column = column_spec(self.table, col)
                if column is None or column.kind != "timestamp":
                    continue
                src = raw[src_name]
                if pd.api.types.is_datetime64_any_dtype(src):
                    continue
                text = _as_text(src)
                if col in self.tm.value_maps:
                    vmap = self.tm.value_maps[col]
                    text = text.map(lambda v, vm=vmap: vm.get(v, v) if isinstance(v, str) else v).astype("string")
                aware, naive = _timestamp_forms(text)
                total = forms.setdefault(col, [0, 0])
                total[0] += aware
                total[1] += naive
        self.odd_forms = {
            col: ("naive" if naive <= aware else "aware") if aware and naive else ""
            for col, (aware, naive) in forms.items()
        }
        return con

    def verdicts(self, con: duckdb.DuckDBPyConnection) -> None:
        """Exact copies (hash repeats compared value by value) and key conflicts among the rest, on disk."""
        con.execute(
            f"CREATE TABLE cand AS SELECT {_SEQ} FROM idx WHERE h IN (SELECT h FROM idx GROUP BY h HAVING count(*) > 1)"
        )
        n_cand = con.execute("SELECT count(*) FROM cand").fetchone()
        con.execute(f"CREATE TABLE dup ({_SEQ} BIGINT)")
        if n_cand and n_cand[0]:
            candidates = con.execute(f"SELECT {_SEQ} FROM cand ORDER BY {_SEQ}").fetchnumpy()[_SEQ]
            parts = []
            for seq, _erased, raw in self.chunks():
                at = candidates[(candidates >= seq) & (candidates < seq + len(raw))]
                if len(at):
                    sources = mapped_source(raw, self.table, self.tm)
                    compared = _compared_columns(self.tm, raw, sources, _attribute_sources(self.tm))
                    rows = raw.loc[at - seq, [c for c in compared if c in raw.columns]]
                    parts.append(rows.set_axis(at, axis=0))
            rows = pd.concat(parts)
            copies = rows.index.to_numpy()[rows.duplicated(keep="first").to_numpy()]
            con.register("copies", pa.table({_SEQ: pa.array(copies.astype(np.int64))}))
            con.execute("INSERT INTO dup SELECT * FROM copies")
            con.unregister("copies")
        con.execute(
            f"""CREATE TABLE conflict AS
            WITH live AS (SELECT {_SEQ}, k FROM idx WHERE k IS NOT NULL AND {_SEQ} NOT IN (SELECT {_SEQ} FROM dup))
            SELECT {_SEQ} FROM live WHERE k IN (SELECT k FROM live GROUP BY k HAVING count(*) > 1)"""
        )

    @staticmethod
    def flags(con: duckdb.DuckDBPyConnection, name: str, seq: int, n: int) -> np.ndarray:
        """The chunk's rows listed in table ``name`` of the index, as a mask."""
        hits = con.execute(f"SELECT {_SEQ} FROM {name} WHERE {_SEQ} >= ? AND {_SEQ} < ?", [seq, seq + n]).fetchnumpy()[
            _SEQ
        ]
        out = np.zeros(n, dtype=bool)
        out[np.asarray(hits, dtype=np.int64) - seq] = True
        return out


class _PartWriter:
    """Appends frames to one Parquet file (zstd) under the schema of the first; nothing written stays
    in memory. ``rows`` counts what was written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None

    def write(self, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        else:
            table = table.cast(self._writer.schema)
        self._writer.write_table(table)
        self.rows += len(frame)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# ---------------------------------------------------------------------------------------------
# The run


def ingest(
    input_dir: Path,
    mapping: Mapping,
    out_dir: Path,
    *,
    now: datetime | None = None,
    max_quarantine_share: float | None = None,
    pseudonymizer: Pseudonymizer | None = None,
    identity_overrides: IdentityOverrides | Path | str | None = None,
    progress: ProgressFn | None = None,
    chunk_rows: int | None = DEFAULT_CHUNK_ROWS,
) -> IngestResult:
    """Validate an export, publish accepted tables, quarantine and report; re-key to customer_key.

    Args:
        input_dir: folder holding the export files named in the mapping.
        mapping: the export mapping (see :func:`features.mapping.load_mapping`).
        out_dir: the data home; the result is published atomically as ``out_dir/ingested``.
        now: the run's reference time for the future-timestamp rule (default: the clock).
        max_quarantine_share: overrides the mapping's threshold (share of all input rows).
        pseudonymizer: the keyed hash behind every customer_key; default: the development one (keys
            anyone can recompute: real data needs a secret, which ``kairos ingest`` insists on).
        identity_overrides: forced merges and splits for identity resolution, read or a file to read (see
            :func:`features.identity.load_identity_overrides`); default: the mapping's ``identity_overrides``
            file, if it names one. The report's ``identity.overrides`` counts what they did.
        progress: optional callback ``(step, fraction_done)``.
        chunk_rows: the large tables (:data:`STREAMED`) are validated this many rows at a time against
            an on-disk index of the whole table, so memory does not grow with them; None reads every
            table whole (the same published tables, audit files and report: the reference the chunked
            path is tested against).

    Returns:
        The published folder and the report (also written as ``ingest_report.json``).

    Raises:
        QuarantineThresholdError: too many rows were quarantined (overall, or in one table beyond the
            mapping's ``max_table_quarantine_share``), a table with input rows kept none, or no order
            line was published. Nothing is published; the complete run is kept for inspection in
            ``out_dir/ingested.rejected``.
        InputDataError: a file is missing or lacks a mapped column, or an override names an unknown
            customer id or splits what the forced merges join.
    """
    started = time.perf_counter()
    overrides_from: str | None = "given by the caller" if identity_overrides is not None else None
    if identity_overrides is None and mapping.identity_overrides is not None:
        identity_overrides = mapping.identity_overrides
    if isinstance(identity_overrides, Path | str):
        overrides_from = str(identity_overrides)
        identity_overrides = load_identity_overrides(identity_overrides)
    now_ts = pd.Timestamp(now or datetime.now(UTC))
    now_ts = now_ts.tz_localize("UTC") if now_ts.tzinfo is None else now_ts.tz_convert("UTC")
    latest = now_ts + pd.Timedelta(mapping.future_tolerance)
    threshold = mapping.max_quarantine_share if max_quarantine_share is None else max_quarantine_share
    tick = progress or (lambda step, frac: None)
    if pseudonymizer is None:
        pseudonymizer = Pseudonymizer.for_development()
    if pseudonymizer.development:
        logger.warning("ingest: customer keys use the public development secret (not for real customer data)")

    refs: dict[str, pd.DataFrame] = {}  # what later tables are checked against (ids, order headers)
    kept: dict[str, pd.DataFrame] = {}  # order lines and what they turn into, finished after the loop
    order_headers: pd.DataFrame | None = None
    published: dict[str, int] = {}
    audits_q: list[pd.DataFrame | Path] = []  # in memory, or spilled by a streamed table
    audits_r: list[pd.DataFrame | Path] = []
    table_reports: dict[str, Any] = {}
    input_files: list[Path] = []
    identity_map = pd.DataFrame(
        {Col.CUSTOMER_ID: pd.Series(dtype="string"), Col.CUSTOMER_KEY: pd.Series(dtype="string")}
    )
    review = pd.DataFrame()
    identity_report: dict[str, Any] = {}
    names = [t for t in _ORDER if t in mapping.tables]
    target = Path(out_dir) / INGESTED_DIR
    tombstones, erased = Tombstones.of(Path(out_dir)), dict[str, int]()
    priced: dict[str, bool] = {}  # per table: whether its rows carry a unit price
    merge_customers = "customers" in mapping.tables and mapping.derive_customers_from_lines
    held_customers: pd.DataFrame | None = None
    filled: dict[str, int] = {}  # customer attribute column -> published records that have a value
    # Without a customers file, or with a partial one, the final identity map comes after the loop: tables
    # published before it are keyed provisionally (each id its own person, right unless overrides merge).
    provisional = "customers" not in mapping.tables or merge_customers
    keyed_early: list[str] = []

    with staged_dir(target) as stage, tempfile.TemporaryDirectory(prefix=".ingest-work-", dir=out_dir) as work:

        def publish(name: str, frame: pd.DataFrame) -> None:
            # Ids without a customer record get a singleton key, the same one identity resolution gives them.
            if Col.CUSTOMER_ID in frame.columns:
                frame = rekey(frame, identity_map, pseudonymizer)
                if provisional:
                    keyed_early.append(name)
            write_parquet(frame, stage / f"{name}.parquet")
            published[name] = len(frame)
            if name == "customers":
                filled.update({c: int(frame[c].notna().sum()) for c in frame.columns if c.startswith(ATTRIBUTE_PREFIX)})

        # Each table is written as soon as it is final, so the largest (web events, messages) never
        # sit in memory together. Customers come before every table that refers to them.
        def publish_chunks(name: str) -> Callable[[pd.DataFrame | None], None]:
            """A streamed table's publisher: each call appends one chunk; None closes the file."""
            writer = _PartWriter(stage / f"{name}.parquet")
            published[name] = 0
            if provisional:
                keyed_early.append(name)

            def write(frame: pd.DataFrame | None) -> None:
                if frame is None:
                    writer.close()
                    return
                if Col.CUSTOMER_ID in frame.columns:
                    frame = rekey(frame, identity_map, pseudonymizer)
                writer.write(frame)
                published[name] += len(frame)

            return write

        for i, table in enumerate(names):
            tick(f"validating {table}", i / (len(names) + 2))
            if chunk_rows is not None and table in STREAMED:
                streamed = _StreamedTable(Path(input_dir), table, mapping, tombstones, chunk_rows, Path(work))
                erased[table], table_reports[table] = _ingest_streamed(
                    streamed, mapping, latest, refs, publish_chunks(table), audits_q, audits_r
                )
                input_files.extend(streamed.files)
                continue
            raw, files = _read_table(Path(input_dir), table, mapping.tables[table])
            # Erased customers (tombstones) never come back with an old export: dropped first, counted.
            src = mapped_source(raw, table, mapping.tables[table])
            raw, erased[table] = drop_erased(raw, src.get(Col.CUSTOMER_ID), tombstones, src.get(Col.ANONYMOUS_ID))
            input_files.extend(files)
            checked = _check_table(table, raw, mapping, latest, refs)
            priced[table] = Col.UNIT_PRICE in checked.frame.columns
            q = checked.verdicts.quarantined()
            r = checked.verdicts.reclassified()
            _clear_fields(checked)
            if table == "order_lines":
                kept.update(_split_order_lines(checked))
                if merge_customers and "customers" in refs:  # later tables may name customers seen on lines
                    seen = kept["order_lines"][[Col.CUSTOMER_ID]].dropna().drop_duplicates()
                    refs["customers"] = pd.concat([refs["customers"], seen], ignore_index=True)
            elif table == "orders":  # cancellation headers stay joinable: their lines become returns
                refs["orders"] = checked.frame.loc[~q].reset_index(drop=True)
                is_cancel = (checked.targets == RETURNS.name).to_numpy()
                order_headers = checked.frame.loc[~q & ~is_cancel].reset_index(drop=True)
            else:
                if table == "web_events":  # an event without an id gets its source position
                    position = raw[_SRC_FILE].astype(str) + ":" + raw[_SRC_ROW].astype(str)
                    checked.frame[Col.EVENT_ID] = checked.frame.get(Col.EVENT_ID, position).fillna(position)
                frame = _typed(checked.frame.loc[~q].reset_index(drop=True), INPUT_TABLES[table])
                if table == "customers":
                    tick("resolving identities", i / (len(names) + 2))
                    tm = mapping.tables[table]
                    frame = pd.concat([frame, attribute_columns(tm, checked.frame.loc[~q])], axis=1)
                    # a partial file's map is provisional: overrides may name customers seen only on lines
                    final = None if merge_customers else identity_overrides
                    identity_map, review, identity_report = _resolve(frame, mapping, pseudonymizer, final)
                    refs["customers"] = frame[[Col.CUSTOMER_ID]]
                elif table == "items":
                    refs["items"] = frame[[Col.ITEM_ID]]
                elif table == "campaigns":
                    refs["campaigns"] = frame[[Col.CAMPAIGN_ID, Col.CHANNEL]]
                elif table == "coupons":
                    refs["coupons"] = frame[[Col.COUPON_ID]].drop_duplicates()
                elif table == "exposures" and "campaigns" in refs:  # the campaign's channel by default
                    channels = refs["campaigns"].set_index(Col.CAMPAIGN_ID)[Col.CHANNEL]
                    frame[Col.CHANNEL] = frame[Col.CHANNEL].fillna(frame[Col.CAMPAIGN_ID].map(channels))
                if table == "customers" and merge_customers:  # published with the derived ones at the end
                    held_customers = frame
                else:
                    publish(table, frame)
                del frame
            audits_q.append(_audit_rows(checked, q, checked.verdicts.quarantine))
            audits_r.append(_audit_rows(checked, r, checked.verdicts.reclassify))
            table_reports[table] = _table_report(checked, q, r)
            del raw, checked

        tick("finishing orders", len(names) / (len(names) + 2))
        lines = kept.get("order_lines", pd.DataFrame())
        prices = "order_lines" not in mapping.tables or bool(priced.get("order_lines"))
        kept["orders"] = _orders_from_lines(lines, order_headers, prices)
        derived: dict[str, int] = {}
        if "items" not in mapping.tables and mapping.derive_items_from_lines:
            items = _derive_items(lines)
            derived["items"] = len(items)
            publish("items", items)
        if "customers" not in mapping.tables and mapping.derive_customers_from_lines:
            customers = _derive_customers(kept)
            derived["customers"] = len(customers)
            identity_map, review, identity_report = _resolve(customers, mapping, pseudonymizer, identity_overrides)
            publish("customers", customers)
        if merge_customers and held_customers is not None:
            # A partial customers file: the ids seen only on lines, returns or adjustments get derived
            # records (without contact fields they stay one person each, so keys published earlier hold).
            extra = _derive_customers(kept)
            extra = extra.loc[~extra[Col.CUSTOMER_ID].isin(held_customers[Col.CUSTOMER_ID])].reset_index(drop=True)
            extra = pd.concat([extra, attribute_columns(mapping.tables["customers"], extra)], axis=1)
            customers = pd.concat([held_customers, extra], ignore_index=True)
            derived["customers"] = len(extra)
            identity_map, review, identity_report = _resolve(customers, mapping, pseudonymizer, identity_overrides)
            publish("customers", customers)
        if identity_overrides is not None:
            # forced merges and splits change keys the provisional map gave: key those tables again
            for name in dict.fromkeys(n for n in keyed_early if n not in kept and n != "customers"):
                _rekey_file(stage / f"{name}.parquet", identity_map, pseudonymizer)
            identity_report["overrides"] = {"file": overrides_from, **identity_report.get("overrides", {})}
        for name, frame in kept.items():
            publish(name, frame)

        totals = {
            k: sum(t[k] for t in table_reports.values())
            for k in ("input_rows", "accepted", "reclassified", "quarantined")
        }
        share = totals["quarantined"] / totals["input_rows"] if totals["input_rows"] else 0.0
        losses = _table_losses(table_reports, published, mapping.max_table_quarantine_share)
        report: dict[str, Any] = {
            "mapping": mapping.name,
            "run_at": now_ts.isoformat(),
            "source_hash": sha256_files(input_files),
            "source_files": [p.name for p in input_files],
            "tables": table_reports,
            "totals": totals,
            "quarantine_share": round(share, 6),
            "max_quarantine_share": threshold,
            "max_table_quarantine_share": mapping.max_table_quarantine_share,
            "table_losses": losses,
            "plausible_max": mapping.plausible_bounds,
            "pseudonyms": {"key_id": pseudonymizer.key_id, "development": pseudonymizer.development},
            "derived": derived,
            "published": dict(sorted(published.items())),
            "anonymous_order_lines": int(lines[Col.CUSTOMER_ID].isna().sum()) if Col.CUSTOMER_ID in lines else 0,
            "prices": prices,
            DATES_KEY: mapping.dates,
            **_currency_report(mapping, kept["orders"]),
            "clock": _clock_report(mapping),
            "attributes": _attribute_report(mapping, filled),
            "consent_rules": {ch: str(mapping.consent_rule(ch)) for ch in mapping.consent_channels},
            "identity": identity_report,
            "reason_text": {r.value: REASON_TEXT[r] for r in Reason},
            "erased": {"rows": sum(erased.values()), "by_table": {k: v for k, v in erased.items() if v}},
            "ok": share <= threshold and not losses,
        }
        tick("writing", (len(names) + 1) / (len(names) + 2))
        _write_audits(audits_q, stage / QUARANTINE_FILE)
        _write_audits(audits_r, stage / RECLASSIFIED_FILE)
        write_parquet(identity_map, stage / IDENTITY_MAP_FILE)
        write_parquet(review, stage / IDENTITY_REVIEW_FILE)
        report["elapsed_s"] = round(time.perf_counter() - started, 3)
        (stage / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
        if not report["ok"]:
            rejected = Path(out_dir) / f"{INGESTED_DIR}.rejected"
            publish_dir(stage, rejected)
            stage.mkdir()  # staged_dir publishes nothing: the exception below unwinds it
            overall = (
                f"{totals['quarantined']:,} of {totals['input_rows']:,} rows quarantined "
                f"({share:.1%}, threshold {threshold:.1%})"
            )
            raise QuarantineThresholdError(
                f"{'; '.join([*losses, overall] if losses else [overall])}; nothing was published. "
                f"Inspect {rejected / QUARANTINE_FILE} and {rejected / REPORT_FILE}, fix the export or "
                f"the mapping, or raise --max-quarantine-share (or the mapping's max_table_quarantine_share).",
                report,
            )
    tick("done", 1.0)
    return IngestResult(target, report)


def _currency_report(mapping: Mapping, orders: pd.DataFrame) -> dict[str, Any]:
    """``currency``: the export's declared currency, else the most frequent one of the published orders
    (on a tie the first in alphabetical order; null without orders); ``currencies``: orders per code."""
    counts = orders[Col.CURRENCY].value_counts() if Col.CURRENCY in orders.columns else pd.Series(dtype="int64")
    per_code = {str(k): int(v) for k, v in sorted(counts.items())}
    top = sorted(per_code.items(), key=lambda kv: (-kv[1], kv[0]))
    currency = mapping.currency or (top[0][0] if top else None)
    return {"currency": currency, "currencies": per_code}


def _attribute_report(mapping: Mapping, filled: dict[str, int]) -> dict[str, Any]:
    """The customer attributes declared in the mapping: type, band order, records with a value."""
    tm = mapping.tables.get("customers")
    out: dict[str, Any] = {}
    for name, attribute in (tm.attributes if tm is not None else {}).items():
        entry: dict[str, Any] = {"type": attribute.type, "column": ATTRIBUTE_PREFIX + name}
        if attribute.order:
            entry["order"] = list(attribute.order)
        entry["records_with_value"] = filled.get(ATTRIBUTE_PREFIX + name, 0)
        out[name] = entry
    return out


def _clock_report(mapping: Mapping) -> dict[str, Any]:
    """How the export's times were read: the mapping's zone, each table's, and how they are stored."""
    zones = {name: mapping.zone_for(name) for name in sorted(mapping.tables)}
    floating = sorted(name for name, zone in zones.items() if zone == FLOATING)
    return {
        "timezone": mapping.timezone,
        "tables": zones,
        "stored_as": (
            "UTC"
            if not floating
            else "wall clock, labelled UTC"
            if len(floating) == len(zones)
            else "UTC, except the floating tables: wall clock, labelled UTC"
        ),
        "floating_tables": floating,
    }


def _resolve(
    customers: pd.DataFrame,
    mapping: Mapping,
    pseudonymizer: Pseudonymizer,
    overrides: IdentityOverrides | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Identity map, review list and report for the accepted customer records.

    With overrides the report gains ``overrides``: the forced merge and split pairs read, the merges that
    joined two persons (a pair already one person by the rules joins nothing), and the links the splits refused.
    """
    # Connected components on DuckDB; the union-find settles only the components a guard splits.
    result = resolve_identities_sets(
        customers,
        strong_ids=tuple(mapping.strong_ids),
        default_region=mapping.default_region,
        pseudonymizer=pseudonymizer,
        overrides=overrides,
    )
    report = result.report()
    if overrides is not None:
        report["overrides"] = {
            "merges": len(overrides.merges),
            "merges_applied": int(result.merges_by_kind.get(OVERRIDE_KIND, 0)),
            "splits": len(overrides.splits),
            "links_refused_by_splits": int((result.refused[RefusedCol.CONFLICT] == SPLIT_CONFLICT).sum()),
        }
    return result.mapping, result.refused, report


def _table_losses(table_reports: dict[str, Any], published: dict[str, int], max_share: float) -> list[str]:
    """Why the run must fail whatever the overall share: one message per table that lost too much.

    A small table can lose all its rows under the overall threshold (an orders file holding only its
    header turns every line into an orphan, yet web events outnumber the lines), so each table is held
    to its own bound; a table with input rows that keeps none, and a run that publishes no order
    line (when the mapping reads order lines), always fail.
    """
    out = []
    for name, t in table_reports.items():
        n, lost = t["input_rows"], t["quarantined"]
        if n and lost == n:
            out.append(f"{name}: all {n:,} rows quarantined")
        elif n and lost / n > max_share:
            out.append(f"{name}: {lost:,} of {n:,} rows quarantined ({lost / n:.1%} > {max_share:.1%} for one table)")
    if "order_lines" in table_reports and not published.get("order_lines"):
        out.append("order_lines: no order line was published (every feature needs them)")
    return out


def _table_report(checked: _Checked, q: np.ndarray, r: np.ndarray) -> dict[str, Any]:
    n = len(checked.raw)
    per_file = {}
    files = checked.raw[_SRC_FILE].to_numpy()
    for name in pd.unique(files):
        sel = files == name
        per_file[str(name)] = {
            "input_rows": int(sel.sum()),
            "accepted": int((sel & ~q & ~r).sum()),
            "reclassified": int((sel & r).sum()),
            "quarantined": int((sel & q).sum()),
        }
    return {
        "input_rows": n,
        "accepted": int((~q & ~r).sum()),
        "reclassified": int(r.sum()),
        "quarantined": int(q.sum()),
        "quarantine_reasons": _Verdicts.reason_counts(checked.verdicts.quarantine, q),
        "reclassified_reasons": _Verdicts.reason_counts(checked.verdicts.reclassify, r),
        "reclassified_to": {str(k): int(v) for k, v in checked.targets[r].value_counts().items()},
        "files": per_file,
    }


def export_has_dates(data_home: Path) -> bool:
    """Whether the ingested export has order times (its report's ``dates``; True for a home ingested before
    the flag existed, and for one not ingested yet, whose own check then says so)."""
    path = Path(data_home) / INGESTED_DIR / REPORT_FILE
    if not path.is_file():
        return True
    return bool(json.loads(path.read_text(encoding="utf-8")).get(DATES_KEY, True))


def require_dates(data_home: Path, job: str) -> None:
    """Refuse a job built on time (windows, cutoffs, horizons, as-of) on an export without order times.

    Raises:
        NoDatesError: the mapping said ``dates: false``.
    """
    if not export_has_dates(data_home):
        raise NoDatesError(
            f"{job} needs order times and this export has none (its mapping says dates: false); on data "
            "without dates only `kairos train recs` runs (evaluated on a random split of baskets)"
        )
