"""A mapping against the files, before any ingest: what maps where, what is missing; and a first draft.

``check_mapping`` reads only the files' headers (Parquet schemas, the first line of a text file) and
the lookup files, validates every expression against the column types, and says per table which source
feeds each contract column. ``draft_mapping`` reads the headers and the first rows of every file in a
folder and proposes a mapping (tables, column matches by name and type, clock and currency guesses)
with warnings, for the user to edit. Neither prints a value of the export: names and counts only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.contract import ATTRIBUTE_PREFIX, INPUT_ONLY_COLUMNS, INPUT_TABLES, ORDERS, Col
from features.errors import InputDataError, KairosError, MappingError
from features.identity import load_identity_overrides
from features.ingest import (
    check_references,
    check_types,
    column_spec,
    mapped_source,
    read_lookups,
    resolve_files,
    table_constants,
)
from features.mapping import FLOATING, WHITESPACE, Mapping, TableMapping, TextFormat

_TEXT_SUFFIXES = (".csv", ".txt", ".gz")
_SAMPLE_ROWS = 2_000


# ---------------------------------------------------------------------------------------------
# check


@dataclass
class ColumnCheck:
    """One contract column of a table: where its values come from."""

    column: str
    source: str  # "column 'X'", "expression", "constant", "same-name column" or "" (not mapped)
    required: bool


@dataclass
class TableCheck:
    """One table of the mapping against its files."""

    table: str
    files: list[str]
    columns: list[ColumnCheck]
    unused: list[str]  # source columns nothing reads
    problems: list[str] = field(default_factory=list)

    @property
    def missing_required(self) -> list[str]:
        return [c.column for c in self.columns if c.required and not c.source]


@dataclass
class MappingCheck:
    """The whole check: per table, plus problems of the mapping as a whole."""

    tables: list[TableCheck]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not any(t.problems for t in self.tables)


def _header_frame(path: Path, fmt: TextFormat | None) -> pd.DataFrame:
    """An empty frame with the file's columns and types (text files: every column text)."""
    try:
        if path.suffix.lower() == ".parquet":
            return pq.read_schema(path).empty_table().to_pandas()
        if path.suffix.lower() not in _TEXT_SUFFIXES:
            raise InputDataError(f"{path}: unsupported file type {path.suffix!r} (use .csv or .parquet)")
        if fmt is not None and not fmt.header:
            names = list(fmt.column_names or [])
        elif fmt is not None and fmt.delimiter == WHITESPACE:
            with path.open(encoding="utf-8-sig") as handle:
                names = handle.readline().split()
        else:
            parse = pacsv.ParseOptions(delimiter=fmt.delimiter if fmt is not None else ",")
            with pacsv.open_csv(path, parse_options=parse) as reader:
                names = reader.schema.names
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputDataError(f"{path}: cannot be read ({type(exc).__name__})") from None
    return pd.DataFrame({n: pd.Series(dtype="string") for n in names})


def _required(mapping: Mapping, table: str) -> set[str]:
    required = {c.name for c in INPUT_TABLES[table].columns if c.required}
    if table == "order_lines":
        required.discard(Col.UNIT_PRICE)  # prices are optional (basket-only data)
        if "orders" not in mapping.tables:
            required |= {c.name for c in ORDERS.columns if c.required}
    if table in ("orders", "order_lines") and not mapping.dates:
        required.discard(Col.ORDERED_AT)  # an export without order times (dates: false)
    return required


def _check_table(input_dir: Path, mapping: Mapping, table: str, tm: TableMapping) -> TableCheck:
    files = resolve_files(input_dir, tm, table)
    lookups = read_lookups(input_dir, table, tm)
    frames = [_header_frame(p, tm.text_format) for p in files]
    problems: list[str] = []
    for path, frame in zip(files, frames, strict=True):
        missing = sorted({src for src in tm.columns.values() if src not in frame.columns})
        if missing:
            problems.append(
                f"tables.{table}.columns: {', '.join(repr(m) for m in missing)} not in {path.name} "
                f"({len(frame.columns)} columns)"
            )
        try:
            check_references(table, tm, set(frame.columns), lookups, path.name)
            check_types(table, tm, frame, lookups)
        except MappingError as exc:
            problems.append(str(exc))
    header = frames[0]
    sources = mapped_source(header, table, tm)
    constants = table_constants(mapping, table)
    required = _required(mapping, table)
    names = list(INPUT_TABLES[table].column_names) + [c.name for c in INPUT_ONLY_COLUMNS.get(table, ())]
    if table == "order_lines":
        names += [c for c in ORDERS.column_names if c not in names]
    columns = []
    for col in names:
        if col in tm.columns:
            source = f"column {tm.columns[col]!r}"
        elif col in tm.expressions:
            source = f"expression {tm.expressions[col]!r}"
        elif col in sources:
            source = "same-name column"
        elif col in constants:
            source = f"constant {constants[col]!r}"
        elif col == Col.UNIT_PRICE and Col.LINE_AMOUNT in sources:
            source = "derived: line_amount / quantity"
        else:
            source = ""
        columns.append(ColumnCheck(col, source, col in required))
    for name, attribute in tm.attributes.items():
        source = (
            f"expression {attribute.expression!r}" if attribute.expression else f"column {tm.attribute_source(name)!r}"
        )
        columns.append(ColumnCheck(f"{ATTRIBUTE_PREFIX}{name} ({attribute.type})", source, False))
    read = set(sources.values()) | {tm.attribute_source(n) for n, a in tm.attributes.items() if not a.expression}
    read |= {lk.source_column for lk in tm.lookups.values()}
    read |= {r[0] for p in (*tm.parsed_expressions.values(), *tm.attribute_expressions.values()) for r in p.references}
    unused = [c for c in header.columns if c not in read]
    check = TableCheck(table, [p.name for p in files], columns, unused, problems)
    for col in check.missing_required:
        problems.append(
            f"tables.{table}: required column {col} is not mapped (map it under columns or expressions, or give "
            "a constant)"
        )
    return check


def check_mapping(input_dir: Path, mapping: Mapping) -> MappingCheck:
    """Check a mapping against the files of ``input_dir`` without ingesting anything.

    Problems that concern one table (a file that matches nothing, a missing column, a bad expression, a
    type clash, a required column not mapped) are listed under it; the check goes on with the next table.
    """
    out = MappingCheck([])
    for table, tm in mapping.tables.items():
        try:
            out.tables.append(_check_table(Path(input_dir), mapping, table, tm))
        except KairosError as exc:
            out.tables.append(TableCheck(table, [], [], [], [str(exc)]))
    if "order_lines" not in mapping.tables:
        out.problems.append("no order_lines table: every feature and model needs order lines")
    if mapping.identity_overrides is not None:  # read now: a bad line would stop the ingest later
        try:
            load_identity_overrides(mapping.identity_overrides)
        except KairosError as exc:
            out.problems.append(f"identity_overrides: {exc}")
    return out


# ---------------------------------------------------------------------------------------------
# draft

# Source column names (lower case, without spaces, dashes and underscores) -> contract column.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    Col.CUSTOMER_ID: ("customerid", "customer", "householdid", "householdkey", "clientid", "custid", "memberid"),
    Col.ORDER_ID: ("orderid", "invoice", "invoiceno", "basketid", "transactionid", "receiptid", "orderno"),
    Col.ITEM_ID: ("itemid", "productid", "sku", "stockcode", "articleid", "productcode"),
    Col.ITEM_NAME: ("itemname", "description", "productname", "title"),
    Col.QUANTITY: ("quantity", "qty", "units", "numberofcds", "quantitysold"),
    Col.UNIT_PRICE: ("unitprice", "price", "itemprice"),
    Col.LINE_AMOUNT: ("salesvalue", "linetotal", "lineamount", "dollarvalue", "revenue", "sales", "netsales"),
    Col.ORDERED_AT: ("orderedat", "invoicedate", "transactiontimestamp", "orderdate", "timestamp", "date"),
    Col.STORE_ID: ("storeid", "store", "shopid", "siteid"),
    Col.CURRENCY: ("currency", "currencycode"),
    Col.COUNTRY: ("country", "countrycode"),
    Col.CAMPAIGN_ID: ("campaignid", "campaign"),
    Col.CAMPAIGN_TYPE: ("campaigntype", "type"),
    Col.STARTS_AT: ("startdate", "startsat", "start"),
    Col.ENDS_AT: ("enddate", "endsat", "end"),
    Col.COUPON_ID: ("couponupc", "couponid", "coupon", "couponcode"),
    Col.REDEEMED_AT: ("redemptiondate", "redeemedat", "redeemed"),
    Col.BRAND: ("brand",),
    Col.CATEGORY: ("category", "productcategory", "department"),
    Col.EMAIL: ("email", "emailaddress"),
    Col.PHONE: ("phone", "mobile", "phonenumber"),
}
# A table is recognised by the contract columns that only it has (each needs all of one set).
_SIGNATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("redemptions", (Col.COUPON_ID, Col.REDEEMED_AT)),
    ("coupons", (Col.COUPON_ID,)),
    ("campaigns", (Col.CAMPAIGN_ID, Col.STARTS_AT)),
    ("exposures", (Col.CAMPAIGN_ID, Col.CUSTOMER_ID)),
    ("order_lines", (Col.ORDER_ID, Col.ITEM_ID, Col.QUANTITY)),
    ("order_lines", (Col.CUSTOMER_ID, Col.ORDERED_AT, Col.QUANTITY)),
    ("items", (Col.ITEM_ID,)),
    ("customers", (Col.CUSTOMER_ID,)),
)
_BAND = re.compile(r"^\s*(under\s*)?\$?(\d+(?:\.\d+)?)\s*[kK]?\s*(\+|-\s*\d+(?:\.\d+)?\s*[kK]?)?\s*$", re.IGNORECASE)
_AWARE = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower())


@dataclass
class Draft:
    """A proposed mapping (plain data, ready for YAML) and what the user should look at."""

    mapping: dict[str, Any]
    warnings: list[str]


def _sample(path: Path) -> tuple[pd.DataFrame, TextFormat | None]:
    """The first rows of a file, and the text layout it needs when not plain CSV."""
    if path.suffix.lower() == ".parquet":
        table = pq.ParquetFile(path)
        first = next(table.iter_batches(batch_size=_SAMPLE_ROWS), None)
        return (first.to_pandas() if first is not None else table.schema_arrow.empty_table().to_pandas()), None
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        head = [handle.readline() for _ in range(_SAMPLE_ROWS)]
    head = [h for h in head if h.strip()]
    fmt = None
    if head and "," not in head[0] and len(head[0].split()) > 1:
        fmt = TextFormat(delimiter=WHITESPACE)
        rows = [h.split() for h in head]
        return pd.DataFrame(rows[1:], columns=rows[0], dtype="string"), fmt
    frame = pd.read_csv(path, nrows=_SAMPLE_ROWS, dtype=str, keep_default_na=False)
    return frame.astype("string"), fmt


def _matches(frame: pd.DataFrame) -> dict[str, str]:
    """contract column -> source column, by name (the first source column that fits)."""
    out: dict[str, str] = {}
    for src in frame.columns:
        for col, names in _SYNONYMS.items():
            if col not in out and (_key(src) == _key(col) or _key(src) in names):
                out[col] = src
                break
    return out


def _guess_table(matches: dict[str, str]) -> str | None:
    for table, needed in _SIGNATURES:
        if all(c in matches for c in needed):
            return table
    return None


def _band_order(values: list[str]) -> list[str] | None:
    """The values sorted as bands ('Under 15K' < '15-24K' < ... < '250K+'), or None if they are not bands."""
    keyed = []
    for v in values:
        found = _BAND.match(v)
        if not found:
            return None
        low = float(found.group(2)) - (0.5 if found.group(1) else 0.0)
        keyed.append((low, v))
    return [v for _, v in sorted(keyed)]


def _whole_columns(path: Path, columns: list[str], sample: pd.DataFrame) -> pd.DataFrame:
    """Every row of a few columns of a Parquet file (a band order must see every band); text files:
    the sample."""
    if path.suffix.lower() != ".parquet" or not columns:
        return sample
    return pq.read_table(path, columns=columns).to_pandas()


def _attribute(values: pd.Series) -> dict[str, Any]:
    distinct = sorted(str(v) for v in values.dropna().unique())
    if pd.api.types.is_bool_dtype(values):
        return {"type": "flag"}
    if pd.api.types.is_numeric_dtype(values):
        return {"type": "number"}
    order = _band_order(distinct) if 1 < len(distinct) <= 30 else None
    return {"type": "bands", "order": order} if order else {"type": "category"}


def _time_columns(frame: pd.DataFrame, table: dict[str, Any], warnings: list[str], name: str) -> bool:
    """Adds a timestamp_format where a text time column needs one; True when naive times are seen."""
    naive = False
    for col, src in table.get("columns", {}).items():
        spec = column_spec(name, col)
        if spec is None or spec.kind not in ("timestamp", "date"):
            continue
        values = frame[src]
        if pd.api.types.is_datetime64_any_dtype(values):
            naive |= getattr(values.dt, "tz", None) is None
            continue
        text = values.dropna().astype(str)
        if text.empty:
            continue
        if text.str.fullmatch(r"\d{8}").all():
            table["timestamp_format"] = "%Y%m%d"
            naive = True
            continue
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
        if parsed.isna().any():
            warnings.append(f"tables.{name}.columns.{col}: not ISO 8601 text: set timestamp_format")
        naive |= not text.str.contains(_AWARE).all()
    return naive


def draft_mapping(input_dir: Path, name: str | None = None) -> Draft:
    """Propose a mapping for the files of ``input_dir`` (see the module docstring)."""
    folder = Path(input_dir)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (*_TEXT_SUFFIXES, ".parquet"))
    if not files:
        raise InputDataError(f"{folder}: no .csv, .txt, .gz or .parquet file to draft a mapping from")
    warnings: list[str] = []
    tables: dict[str, dict[str, Any]] = {}
    samples: dict[str, pd.DataFrame] = {}
    naive = undated = False
    for path in files:
        frame, fmt = _sample(path)
        matches = _matches(frame)
        table = _guess_table(matches)
        if table is None:
            warnings.append(f"{path.name}: no contract table recognised from its column names: left out")
            continue
        if table in tables:
            if set(frame.columns) == set(samples[table].columns):
                tables[table]["files"].append(path.name)
                continue
            warnings.append(f"{path.name}: looks like {table} too (already {tables[table]['files'][0]}): left out")
            continue
        allowed = set(INPUT_TABLES[table].column_names) | {c.name for c in INPUT_ONLY_COLUMNS.get(table, ())}
        if table == "order_lines":
            allowed |= set(ORDERS.column_names)
        columns = {c: s for c, s in matches.items() if c in allowed}
        if Col.UNIT_PRICE in columns and Col.LINE_AMOUNT in columns:
            del columns[Col.LINE_AMOUNT]
        entry: dict[str, Any] = {"files": [path.name], "columns": columns}
        if fmt is not None:
            entry["text_format"] = {"delimiter": fmt.delimiter}
        tables[table] = entry
        samples[table] = frame
        naive |= _time_columns(frame, entry, warnings, table)
        if table == "customers":
            used = set(columns.values())
            rest = [c for c in frame.columns if c not in used]
            attributes = {}
            whole = _whole_columns(path, rest, frame)
            for col in rest:
                attr_name = re.sub(r"[^a-z0-9_]", "_", col.lower()).strip("_")[:40] or "attribute"
                if not attr_name[0].isalpha() or attr_name in INPUT_TABLES["customers"].column_names:
                    attr_name = f"x_{attr_name}"[:40]
                attributes[attr_name] = {"column": col, **_attribute(whole[col])}
            if attributes:
                entry["attributes"] = {
                    k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in attributes.items()
                }
                warnings.append(
                    f"tables.customers.attributes: {len(attributes)} extra column(s) proposed as attributes; check "
                    "each type and band order"
                )
    if "order_lines" in tables:
        lines = tables["order_lines"]["columns"]
        if Col.ORDER_ID not in lines and Col.CUSTOMER_ID in lines and Col.ORDERED_AT in lines:
            lines_expr = f'"{lines[Col.CUSTOMER_ID]}" || \'-\' || "{lines[Col.ORDERED_AT]}"'
            tables["order_lines"]["expressions"] = {Col.ORDER_ID: lines_expr}
            warnings.append("tables.order_lines: no order id: one order per customer and time (an expression)")
        if Col.ITEM_ID not in lines:
            tables["order_lines"].setdefault("constants", {})[Col.ITEM_ID] = "ITEM"
            warnings.append("tables.order_lines: no item id: every line gets the constant item_id ITEM")
        if Col.LINE_AMOUNT in lines:
            warnings.append(
                f"tables.order_lines.columns.line_amount: {lines[Col.LINE_AMOUNT]!r} read as the line total "
                "(unit_price = line_amount / quantity); map it to unit_price if it is a price per unit"
            )
        if Col.UNIT_PRICE not in lines and Col.LINE_AMOUNT not in lines:
            warnings.append("tables.order_lines: no price column found: the export is read as basket-only")
        header = tables.get("orders", {}).get("columns", {})
        if Col.ORDERED_AT not in lines and Col.ORDERED_AT not in header:
            undated = True
            warnings.append(
                "dates: false (no order time found): only `kairos train recs` runs on data without dates; map "
                "tables.order_lines.columns.ordered_at instead if the export has one"
            )
    else:
        warnings.append("no file looks like order lines (order id, item id, quantity): map them by hand")
    if "exposures" in tables and "campaigns" in tables:
        campaign_file = tables["campaigns"]["files"][0]
        start = tables["campaigns"]["columns"].get(Col.STARTS_AT)
        key = tables["campaigns"]["columns"].get(Col.CAMPAIGN_ID)
        if start and key and Col.EXPOSED_AT not in tables["exposures"]["columns"]:
            tables["exposures"]["lookups"] = {"campaign": {"files": [campaign_file], "key": key}}
            if tables["exposures"]["columns"][Col.CAMPAIGN_ID] != key:
                tables["exposures"]["lookups"]["campaign"]["on"] = tables["exposures"]["columns"][Col.CAMPAIGN_ID]
            tables["exposures"]["expressions"] = {Col.EXPOSED_AT: f'campaign."{start}"'}
            warnings.append("tables.exposures.expressions.exposed_at: the campaign's start date (no send time found)")
    draft: dict[str, Any] = {"name": name or folder.name, "timezone": FLOATING if naive else "UTC"}
    if undated:
        draft["dates"] = False
    if naive:
        warnings.append(
            "timezone: floating (times without an offset, read as wall-clock times); name the zone instead "
            "(e.g. Europe/London) if the times follow its daylight-saving rules"
        )
    if not any(Col.CURRENCY in entry["columns"] for entry in tables.values()):
        warnings.append("currency: no currency column found: add `currency: XXX` (ISO 4217) for the whole export")
    if "order_lines" in tables:  # customers seen only on lines get a record (beside any customers file)
        draft["derive_customers_from_lines"] = True
    if "items" not in tables and "order_lines" in tables:
        draft["derive_items_from_lines"] = True
    draft["tables"] = tables
    try:
        Mapping.model_validate(draft)
    except ValueError as exc:
        warnings.append(f"the draft does not validate yet: {str(exc).splitlines()[0]}")
    return Draft(draft, warnings)
