"""Offline store: the ingested tables as Ibis tables, and feature snapshots on disk.

A snapshot is the feature table as of one date, written as Parquet with a manifest (feature
names, dtypes, descriptions, definition hash, row count, source data hash). Models record the
manifest they were trained on; the API checks it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow.parquet as pq

from features.backends import connect
from features.contract import Col
from features.definitions import (
    FEATURES,
    MONETARY_FEATURES,
    Feature,
    definition_hash,
    feature_table,
    features_for,
)
from features.errors import DataNotFoundError, InputDataError
from features.ingest import INGESTED_DIR, REPORT_FILE, require_dates
from features.io import staged_dir, write_parquet
from features.segments import (
    SegmentConfig,
    assign_segments,
    summarise_transitions,
    transition_matrix,
    with_band_positions,
)

SNAPSHOTS_DIR = "snapshots"
SNAPSHOT_FILE = "features.parquet"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Snapshot:
    """A feature snapshot on disk."""

    path: Path
    manifest: dict[str, Any]

    @property
    def as_of(self) -> datetime:
        return datetime.fromisoformat(self.manifest["as_of"])

    def read(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / SNAPSHOT_FILE)


def ingested_dir(data_home: Path) -> Path:
    path = Path(data_home) / INGESTED_DIR
    if not (path / REPORT_FILE).is_file():
        raise DataNotFoundError(f"no ingested data in {path}: run `kairos ingest --out {data_home}` first")
    return path


def ingest_report(data_home: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((ingested_dir(data_home) / REPORT_FILE).read_text(encoding="utf-8"))
    return report


def open_tables(
    data_home: Path, con: ibis.BaseBackend | None = None, as_of: datetime | None = None
) -> dict[str, ir.Table]:
    """The ingested contract tables as Ibis tables (embedded DuckDB unless ``con`` is given).

    With ``as_of`` they are seen as they stood at that instant (:func:`as_of_view`): every job that
    opens its data here can reproduce a past day without the data being touched.
    """
    folder = ingested_dir(data_home)
    con = con or connect("duckdb")
    tables: dict[str, ir.Table] = {}
    for path in sorted(folder.glob("*.parquet")):
        tables[path.stem] = con.read_parquet(path, table_name=path.stem)
    return tables if as_of is None else as_of_view(tables, as_of)


# The as-of view. ``ROW_TIME`` names the column that dates each row of a table: the row exists from then
# on, so a row dated at or after the as-of instant is invisible (a row without that date, e.g. a customer
# record without ``created_at``, is kept: nothing says it is later). A table not listed is dated by its
# first timestamp (or date) column; a table without one (items, identity map) is taken whole. Every other
# timestamp of a row is something that happened to it later (a message opened, clicked): at or after the
# as-of instant it is blanked. ``KNOWN_AHEAD`` columns are dates known in advance, not events (a birth
# date, the end of an offer's validity): kept as they are.
ROW_TIME: dict[str, str] = {
    "orders": Col.ORDERED_AT,
    "order_lines": Col.ORDERED_AT,
    "customers": Col.CREATED_AT,
    "consents": Col.CONSENTED_AT,
    "web_events": Col.OCCURRED_AT,
    "messages": Col.SENT_AT,
    "returns": Col.RETURNED_AT,
    "adjustments": Col.ADJUSTED_AT,
    "offers": Col.VALID_FROM,
    "campaigns": Col.STARTS_AT,
    "exposures": Col.EXPOSED_AT,
    "redemptions": Col.REDEEMED_AT,
}
KNOWN_AHEAD: frozenset[str] = frozenset({Col.BIRTH_DATE, Col.VALID_TO, "valid_until", "end_date", "ends_at"})


def _before(column: ir.Column, instant: ir.TimestampScalar, last_day: ir.DateScalar) -> ir.BooleanValue:
    """A timestamp strictly before the instant; a date on or before the instant's last whole day."""
    return column < instant if column.type().is_timestamp() else column <= last_day


def as_of_view(tables: dict[str, ir.Table], as_of: datetime) -> dict[str, ir.Table]:
    """The tables as an export taken at ``as_of`` would have held them: rows dated at or after it dropped,
    later events on earlier rows blanked (see :data:`ROW_TIME`). Lazy: nothing is read here.

    Every figure derived from the view (the data's end, the cutoffs, the labels) is then the one the
    truncated export would give. Identity clusters are those of the full ingest (the resolver is not
    re-run as of the date).
    """
    if as_of.tzinfo is None:
        raise ValueError(f"as-of instant {as_of.isoformat()} has no time zone")
    instant = ibis.timestamp(as_of.astimezone(UTC))
    last_day = ibis.date((as_of.astimezone(UTC) - timedelta(microseconds=1)).date())
    out: dict[str, ir.Table] = {}
    for name, table in tables.items():
        schema = table.schema()
        dated = [c for c, kind in schema.items() if (kind.is_timestamp() or kind.is_date()) and c not in KNOWN_AHEAD]
        if not dated:
            out[name] = table
            continue

        row = ROW_TIME.get(name)
        row = row if row in dated else dated[0]
        kept = table.filter(table[row].isnull() | _before(table[row], instant, last_day))
        blanked = {
            c: ibis.ifelse(_before(kept[c], instant, last_day), kept[c], ibis.null(schema[c]))
            for c in dated
            if c != row
        }
        out[name] = kept.mutate(**blanked) if blanked else kept
    return out


DEFAULT_CURRENCY = "GBP"  # amounts of a data home that names no currency (before issue 18 every home was in GBP)
CURRENCY_KEY = "currency"  # in the ingest report and in every manifest


def data_currency(data_home: Path) -> str:
    """The ISO 4217 code the data's amounts are in: the ingest report's ``currency`` when it names one, else
    the most common ``currency`` of the ingested orders (ties: the first code alphabetically; also when the
    report lists several, a per-row currency), else :data:`DEFAULT_CURRENCY`.

    Raises:
        InputDataError: the ingest report's ``currency`` is text but not a three-letter code.
    """
    named = ingest_report(data_home).get(CURRENCY_KEY)
    if isinstance(named, str):
        code = str(named).strip().upper()
        if not (len(code) == 3 and code.isascii() and code.isalpha()):
            path = ingested_dir(data_home) / REPORT_FILE
            raise InputDataError(f"{path}: {CURRENCY_KEY!r} must be an ISO 4217 code such as USD, not {named!r}")
        return code
    orders = ingested_dir(data_home) / "orders.parquet"
    if orders.is_file() and Col.CURRENCY in pq.read_schema(orders).names:
        codes = pd.read_parquet(orders, columns=[Col.CURRENCY])[Col.CURRENCY].dropna().astype(str)
        codes = codes.str.strip().str.upper()
        codes = codes[codes.str.fullmatch(r"[A-Z]{3}")]
        if len(codes):
            counts = codes.value_counts()
            return str(min(counts[counts == counts.max()].index))
    return DEFAULT_CURRENCY


NO_PRICES = "the data has no prices: value models are not available"


def data_has_prices(data_home: Path) -> bool:
    """Whether the ingested data carries prices (the ingest report's ``prices``; reports written before
    prices became optional always had them). Without prices the monetary features are null, and value
    models (spend, CLV) are not available: :data:`NO_PRICES`."""
    return bool(ingest_report(data_home).get("prices", True))


def attribute_bands(data_home: Path) -> dict[str, list[str]]:
    """Per ordered-band attribute feature (``attr_<name>``), its bands in the order the mapping declared
    (from the ingest report), for conditions that compare bands by name (``attr_age_band >= '35-44'``:
    :meth:`features.conditions.Condition.evaluate`'s ``bands``). Empty without such attributes."""
    found = ingest_report(data_home).get("attributes") or {}
    return {
        str(entry.get("column") or f"attr_{name}"): [str(b) for b in entry["order"]]
        for name, entry in found.items()
        if isinstance(entry, dict) and entry.get("type") == "bands" and entry.get("order")
    }


def data_end(tables: dict[str, ir.Table]) -> datetime:
    """The time of the latest order: the data's 'now'."""
    latest = tables["orders"]["ordered_at"].max().execute()
    if latest is None or pd.isna(latest):
        raise DataNotFoundError("the ingested data holds no orders")
    ts = pd.Timestamp(latest)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def default_as_of(tables: dict[str, ir.Table]) -> datetime:
    """Midnight UTC after the latest order: a snapshot 'as of today' for the data."""
    end = data_end(tables)
    return datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)


def execute_features(tables: dict[str, ir.Table], as_of: datetime) -> pd.DataFrame:
    """Execute the feature table as of ``as_of`` exactly as the backend computes it (float64)."""
    return feature_table(tables, as_of).execute().reset_index(drop=True)


def compute_features(tables: dict[str, ir.Table], as_of: datetime) -> pd.DataFrame:
    """The feature table as of ``as_of`` in its stored types (numeric features as float32)."""
    frame = execute_features(tables, as_of)
    for feature in features_for(tables):
        frame[feature.name] = frame[feature.name].astype(feature.dtype)
    return frame.reset_index(drop=True)


def manifest_for(
    frame: pd.DataFrame,
    as_of: datetime,
    source_hash: str,
    currency: str | None = None,
    *,
    features: Sequence[Feature] = FEATURES,
) -> dict[str, Any]:
    """The manifest of a feature table (``features``: the definitions it holds, by default the catalogue's);
    ``currency`` (the data's, :func:`data_currency`) is recorded when given, so a model trained on it, and
    whoever serves that model, prints amounts in it."""
    out: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "built_at": datetime.now(UTC).isoformat(),
        "features": [
            {
                "name": f.name,
                "dtype": f.dtype,
                "description": f.description,
                "window_days": f.window_days,
                "ages": f.ages,
            }
            for f in features
        ],
        "entity": "customer_key",
        "definition_hash": definition_hash(),
        "rows": len(frame),
        "source_hash": source_hash,
    }
    if currency is not None:
        out[CURRENCY_KEY] = currency
    return out


SEGMENTS_FILE = "segments.parquet"
SEGMENT_COLUMNS = ("rfm_segment", "lifecycle")


def build_snapshot(
    data_home: Path,
    as_of: datetime | None = None,
    con: ibis.BaseBackend | None = None,
    segment_config: SegmentConfig | None = None,
) -> Snapshot:
    """Compute and publish the snapshot as of ``as_of`` (default: the day after the latest order), from the
    tables as they stood then (:func:`as_of_view`).

    Beside the features it writes the customers' segments and, against the latest earlier snapshot, a
    transition matrix per segmentation (``transitions_<column>.parquet``); the manifest carries segment
    sizes and a summary of the moves. ``con`` selects the execution backend (default embedded DuckDB;
    see :mod:`features.backends`). ``segment_config``: thresholds and your own rules (default
    :class:`SegmentConfig`'s), recorded in the manifest; band names in rules follow the data's declared order.

    Raises:
        NoDatesError: the export has no order times (``dates: false``): features are windows in time.
    """
    require_dates(data_home, "kairos features build")
    tables = open_tables(data_home, con)
    as_of = as_of or default_as_of(tables)
    # features read only events before ``as_of`` anyway; the view makes that true of every table they touch
    frame = compute_features(as_of_view(tables, as_of), as_of)
    report = ingest_report(data_home)
    manifest = manifest_for(
        frame, as_of, report["source_hash"], data_currency(data_home), features=features_for(tables)
    )
    config = with_band_positions(segment_config or SegmentConfig(), attribute_bands(data_home))
    segments = assign_segments(frame, config)
    previous = _previous_snapshot(data_home, as_of)
    matrices: dict[str, pd.DataFrame] = {}
    summary: dict[str, Any] = {
        "not_available": {k: list(v) for k, v in segments.attrs.get("not_available", {}).items()},
        "sizes": {c: {str(k): int(v) for k, v in segments[c].value_counts().items()} for c in SEGMENT_COLUMNS},
        "previous_snapshot": previous.manifest["as_of"] if previous else None,
        "config": config.model_dump(mode="json"),
        "transitions": {},
    }
    if previous is not None and (previous.path / SEGMENTS_FILE).is_file():
        before = pd.read_parquet(previous.path / SEGMENTS_FILE)
        for column in SEGMENT_COLUMNS:
            matrices[column] = transition_matrix(before, segments, column)
            moves = summarise_transitions(matrices[column])
            summary["transitions"][column] = {
                "stayed": moves.stayed,
                "moved": moves.moved,
                "entered": moves.entered,
                "left": moves.left,
                "moved_share": round(moves.moved_share, 6),
                "top_moves": moves.moves.head(10).to_dict(orient="records"),
            }
    manifest["segments"] = summary
    if not report.get("prices", True):  # the monetary features are null: say why, not "spent 0"
        manifest["prices"] = False
        manifest["not_available"] = {name: NO_PRICES.split(":")[0] for name in MONETARY_FEATURES}
    target = Path(data_home) / SNAPSHOTS_DIR / as_of.strftime("%Y-%m-%dT%H%M%SZ")
    with staged_dir(target) as stage:
        write_parquet(frame, stage / SNAPSHOT_FILE)
        segments_out = segments.copy()
        segments_out.attrs = {}
        write_parquet(segments_out, stage / SEGMENTS_FILE)
        for column, matrix in matrices.items():
            write_parquet(matrix.reset_index(names="previous"), stage / f"transitions_{column}.parquet")
        (stage / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    return Snapshot(target, manifest)


def _previous_snapshot(data_home: Path, as_of: datetime) -> Snapshot | None:
    """The latest snapshot strictly before ``as_of``, if any."""
    root = Path(data_home) / SNAPSHOTS_DIR
    if not root.is_dir():
        return None
    earlier = [
        p
        for p in sorted(root.glob("*"))
        if (p / MANIFEST_FILE).is_file() and p.name < as_of.strftime("%Y-%m-%dT%H%M%SZ")
    ]
    if not earlier:
        return None
    return Snapshot(earlier[-1], json.loads((earlier[-1] / MANIFEST_FILE).read_text(encoding="utf-8")))


def latest_snapshot(data_home: Path) -> Snapshot:
    """The most recent snapshot by as-of date."""
    root = Path(data_home) / SNAPSHOTS_DIR
    found = sorted(p for p in root.glob("*") if (p / MANIFEST_FILE).is_file()) if root.is_dir() else []
    if not found:
        raise DataNotFoundError(f"no feature snapshot in {root}: run `kairos features build --data {data_home}`")
    path = found[-1]
    return Snapshot(path, json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8")))


def snapshot_as_of(data_home: Path, as_of: datetime) -> Snapshot:
    """The snapshot built as of exactly ``as_of`` (``kairos features build --as-of``).

    Raises:
        DataNotFoundError: there is none; the message gives the command that builds it.
    """
    path = Path(data_home) / SNAPSHOTS_DIR / as_of.strftime("%Y-%m-%dT%H%M%SZ")
    if not (path / MANIFEST_FILE).is_file():
        raise DataNotFoundError(
            f"no feature snapshot as of {as_of.isoformat()} in {path.parent}: run "
            f"`kairos features build --data {data_home} --as-of {as_of.date().isoformat()}` first"
        )
    return Snapshot(path, json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8")))
