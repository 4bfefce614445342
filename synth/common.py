"""Shared pieces of the synthetic CRM world: the clock, time zones, random streams and CSV writing.

Times inside the generator are float days since the first day of the world (00:00 UTC); they become
ISO 8601 instants with an explicit ``+00:00`` offset only when written. Everything here is vectorised:
the big tables (web events, messages) have millions of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from features.contract import INPUT_TABLES

SECONDS_PER_DAY = 86_400

# country code -> (share of persons, currency of its orders, [(zone, share)], [(city, share)])
COUNTRIES: dict[str, tuple[float, str, list[tuple[str, float]], list[tuple[str, float]]]] = {
    "GB": (
        0.72,
        "GBP",
        [("Europe/London", 1.0)],
        [
            ("London", 0.34),
            ("Manchester", 0.08),
            ("Birmingham", 0.08),
            ("Leeds", 0.05),
            ("Glasgow", 0.05),
            ("Bristol", 0.05),
            ("Edinburgh", 0.05),
            ("Liverpool", 0.05),
            ("Sheffield", 0.04),
            ("Cardiff", 0.04),
            ("Nottingham", 0.04),
            ("Brighton", 0.04),
            ("Newcastle", 0.05),
            ("Leicester", 0.04),
        ],
    ),
    "IE": (0.04, "EUR", [("Europe/Dublin", 1.0)], [("Dublin", 0.7), ("Cork", 0.2), ("Galway", 0.1)]),
    "DE": (
        0.07,
        "EUR",
        [("Europe/Berlin", 1.0)],
        [("Berlin", 0.35), ("Hamburg", 0.2), ("München", 0.2), ("Köln", 0.15), ("Frankfurt", 0.1)],
    ),
    "FR": (
        0.06,
        "EUR",
        [("Europe/Paris", 1.0)],
        [("Paris", 0.5), ("Lyon", 0.15), ("Marseille", 0.15), ("Toulouse", 0.1), ("Nice", 0.1)],
    ),
    "ES": (
        0.04,
        "EUR",
        [("Europe/Madrid", 1.0)],
        [("Madrid", 0.45), ("Barcelona", 0.35), ("Valencia", 0.1), ("Sevilla", 0.1)],
    ),
    "US": (
        0.07,
        "GBP",
        [("America/New_York", 0.45), ("America/Chicago", 0.2), ("America/Los_Angeles", 0.35)],
        [("New York", 0.3), ("Boston", 0.15), ("Chicago", 0.2), ("Los Angeles", 0.2), ("Seattle", 0.15)],
    ),
}
ZONES: tuple[str, ...] = tuple(dict.fromkeys(z for c in COUNTRIES.values() for z, _ in c[2]))
# US cities by zone, so a New Yorker is not in Pacific time.
US_CITY_ZONE = {
    "New York": "America/New_York",
    "Boston": "America/New_York",
    "Chicago": "America/Chicago",
    "Los Angeles": "America/Los_Angeles",
    "Seattle": "America/Los_Angeles",
}
EUR_PER_GBP = 1.17


@dataclass(frozen=True)
class Clock:
    """The world's time axis: float days since ``start`` 00:00 UTC."""

    start: date
    end: date

    @property
    def days(self) -> int:
        """Number of simulated days, both ends included."""
        return (self.end - self.start).days + 1

    @property
    def epoch_seconds(self) -> int:
        """Unix seconds of ``start`` 00:00 UTC."""
        return int(datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp())

    def days_until(self, when: date) -> float:
        """Float days from ``start`` to ``when`` 00:00 UTC."""
        return float((when - self.start).days)

    def seconds(self, t: np.ndarray) -> np.ndarray:
        """Unix seconds (as float) of float days, floored; a time from :func:`whole_seconds` maps exactly."""
        return self.epoch_seconds + np.floor(np.asarray(t, dtype=np.float64) * SECONDS_PER_DAY + 1e-6)


def whole_seconds(t: np.ndarray) -> np.ndarray:
    """Float days rounded to whole seconds, so comparisons made here hold in the written file."""
    return np.round(np.asarray(t, dtype=np.float64) * SECONDS_PER_DAY) / SECONDS_PER_DAY


class ZoneTable:
    """Hourly UTC offsets of the world's IANA zones, for vectorised local <-> UTC conversion.

    Args:
        clock: The world's clock; the table covers four years before ``start`` to a year after ``end``.
    """

    def __init__(self, clock: Clock) -> None:
        self._origin = -4 * 366 * 24  # hours relative to clock start
        first = pd.Timestamp(clock.start, tz="UTC") + pd.Timedelta(hours=self._origin)
        hours = pd.date_range(first, periods=(clock.days + 5 * 366 + 366) * 24, freq="h")
        naive = hours.tz_localize(None)
        rows = []
        for zone in ZONES:
            local = hours.tz_convert(zone).tz_localize(None)
            rows.append(((local - naive) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64))
        self._offsets = np.vstack(rows)

    def offset(self, zone: np.ndarray, t: np.ndarray) -> np.ndarray:
        """UTC offset in days of ``zone`` (index into :data:`ZONES`) at UTC instants ``t``."""
        hour = np.floor(np.asarray(t) * 24).astype(np.int64) - self._origin
        np.clip(hour, 0, self._offsets.shape[1] - 1, out=hour)
        return self._offsets[zone, hour]

    def to_local(self, zone: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Local wall-clock time (float days) of UTC instants."""
        return t + self.offset(zone, t)

    def to_utc(self, zone: np.ndarray, local: np.ndarray) -> np.ndarray:
        """UTC instants of local wall-clock times (the hour skipped by DST moves forward)."""
        guess = local - self.offset(zone, local)
        return local - self.offset(zone, guess)


def random_streams(seed: int, names: Sequence[str]) -> dict[str, np.random.Generator]:
    """Independent generators per part of the world, so changing one part leaves the others alone."""
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children, strict=True)}


def choice_by_weights(rng: np.random.Generator, pairs: Sequence[tuple[Any, float]], size: int) -> np.ndarray:
    """Draw ``size`` values from ``[(value, weight), ...]``."""
    values = np.array([v for v, _ in pairs], dtype=object)
    weights = np.array([w for _, w in pairs], dtype=np.float64)
    return values[rng.choice(len(values), size=size, p=weights / weights.sum())]


def where_or_none(mask: Any, values: Any) -> np.ndarray:
    """``values`` where ``mask`` holds, else ``None`` (an object array for text columns)."""
    mask = np.asarray(mask, dtype=bool)
    out = np.full(len(mask), None, dtype=object)
    out[mask] = np.asarray(values, dtype=object)[mask]
    return out


def prefixed_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded numbers, built in Arrow (fast for millions of rows)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(np.asarray(numbers, dtype=np.int64)), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def iso_timestamps(clock: Clock, t: np.ndarray) -> pa.Array:
    """ISO 8601 UTC instants (``2025-03-01T10:04:00+00:00``) of float days; NaN becomes empty."""
    t = np.asarray(t, dtype=np.float64)
    missing = np.isnan(t)
    seconds = clock.seconds(np.where(missing, 0.0, t)).astype(np.int64)
    stamps = pa.array(seconds, mask=missing).cast(pa.timestamp("s"))
    text = pc.utf8_replace_slice(pc.cast(stamps, pa.string()), 10, 11, "T")
    return pc.binary_join_element_wise(text, "+00:00", "")


def iso_dates(clock: Clock, t: np.ndarray) -> pa.Array:
    """``YYYY-MM-DD`` of float days; NaN becomes empty."""
    t = np.asarray(t, dtype=np.float64)
    missing = np.isnan(t)
    days = np.datetime64(clock.start, "D") + np.floor(np.where(missing, 0, t)).astype("timedelta64[D]")
    return pc.cast(pa.array(days, mask=missing), pa.string())


def to_arrow(values: Any) -> pa.Array:
    """An Arrow array of a column given as Arrow, NumPy or pandas (NaN and None become empty)."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if isinstance(values, pd.Series):
        values = values.to_numpy()
    return pa.array(values, from_pandas=True)


def write_table(out_dir: Path, table: str, columns: Mapping[str, Any]) -> tuple[Path, int]:
    """Write one contract table as CSV, columns in contract order, header unquoted.

    Args:
        out_dir: Folder to write ``<table>.csv`` into.
        table: Contract table name.
        columns: Contract column name -> values; must name exactly the contract's columns.

    Returns:
        The file path and its number of data rows.
    """
    n_rows = len(next(iter(columns.values())))
    return write_table_chunks(
        out_dir, table, n_rows, lambda rows: {k: v[rows] for k, v in columns.items()}, chunk_rows=max(n_rows, 1)
    )


def write_table_chunks(
    out_dir: Path,
    table: str,
    n_rows: int,
    make_columns: Callable[[slice], Mapping[str, Any]],
    chunk_rows: int = 1_000_000,
) -> tuple[Path, int]:
    """Write a contract table as CSV from consecutive row slices (bounded memory for big tables).

    Args:
        out_dir: Folder to write ``<table>.csv`` into.
        table: Contract table name.
        n_rows: Total number of rows.
        make_columns: Builds the columns (contract name -> values) of a slice of rows.
        chunk_rows: Rows per slice.

    Returns:
        The file path and its number of data rows.
    """
    names = INPUT_TABLES[table].column_names
    path = out_dir / f"{table}.csv"
    written = 0
    with path.open("wb") as fh:
        fh.write((",".join(names) + "\n").encode("utf-8"))
        for first in range(0, n_rows, chunk_rows):
            columns = make_columns(slice(first, min(first + chunk_rows, n_rows)))
            if set(columns) != set(names):
                raise ValueError(f"{table}: columns {sorted(columns)} differ from the contract {sorted(names)}")
            arrow = pa.table({name: to_arrow(columns[name]) for name in names})
            pa_csv.write_csv(arrow, fh, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
            written += arrow.num_rows
    return path, written


def day_of_year(clock: Clock, t: np.ndarray) -> np.ndarray:
    """Day of year (1-366) of float days."""
    start = np.datetime64(clock.start, "D")
    days = start + np.floor(t).astype("timedelta64[D]")
    return (days - days.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64) + 1


def season(clock: Clock, t: np.ndarray) -> np.ndarray:
    """Retail seasonality multiplier: a November-December peak, a January lull, a summer dip."""
    doy = day_of_year(clock, t).astype(np.float64)
    peak = 0.9 * np.exp(-(((doy - 338.0) / 16.0) ** 2))
    lull = -0.2 * np.exp(-(((doy - 12.0) / 12.0) ** 2)) - 0.12 * np.exp(-(((doy - 215.0) / 25.0) ** 2))
    return 1.0 + peak + lull


def date_of(clock: Clock, t: float) -> date:
    """The calendar date (UTC) of a float day."""
    return clock.start + timedelta(days=int(np.floor(t)))
