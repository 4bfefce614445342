"""A behaviour shift after a date: the synthetic world's drift scenario (``kairos monitor``, ``retrain --if-needed``).

:func:`shift_export` copies a generated export and changes what customers do from a date on: each order
placed on or after ``after`` is kept with probability ``keep_orders`` (a dropped order takes its lines
with it: customers buy less often), and the unit price of every kept line from that date on is
multiplied by ``price_factor`` (they spend more per item). Everything before ``after`` is byte-for-byte
the original's, so a model trained as of ``after`` is the same model on both worlds, and what differs is
only what happened later: the drift a monitor must see. The planted truth (``truth/``) describes the
unshifted world and is not copied.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import Col

ORDERS_FILE = "orders.csv"
LINES_FILE = "order_lines.csv"


@dataclass(frozen=True)
class ShiftSummary:
    """What :func:`shift_export` changed."""

    out_dir: Path
    after: date
    orders_after: int  # orders placed on or after ``after`` in the original
    orders_dropped: int
    lines_dropped: int
    lines_repriced: int


def shift_export(
    raw_dir: Path,
    out_dir: Path,
    after: date,
    *,
    keep_orders: float = 0.5,
    price_factor: float = 1.0,
    seed: int = 0,
) -> ShiftSummary:
    """Copy the export in ``raw_dir`` to ``out_dir`` with the behaviour shifted from ``after`` (UTC) on.

    Args:
        raw_dir: A generated export (:func:`synth.generate_world`).
        out_dir: Where the shifted copy goes (created; the eight CSV files, no ``truth/``).
        after: First day of the shift.
        keep_orders: Probability that an order on or after ``after`` is kept (1: none dropped).
        price_factor: Multiplier of the unit price of the kept lines on or after ``after``.
        seed: Random seed of the draws (the same arguments give the same files).

    Raises:
        ValueError: ``keep_orders`` outside (0, 1], ``price_factor`` not positive, or ``raw_dir`` holds no
            orders and order lines.
    """
    if not 0.0 < keep_orders <= 1.0:
        raise ValueError(f"keep_orders must be in (0, 1], got {keep_orders}")
    if not price_factor > 0.0:
        raise ValueError(f"price_factor must be positive, got {price_factor}")
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not (raw_dir / ORDERS_FILE).is_file() or not (raw_dir / LINES_FILE).is_file():
        raise ValueError(f"{raw_dir} holds no {ORDERS_FILE} and {LINES_FILE}: not a generated export")
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(raw_dir.glob("*.csv")):
        if path.name not in (ORDERS_FILE, LINES_FILE):
            shutil.copyfile(path, out_dir / path.name)
    # read as text, so every value that is not changed is written back exactly as it was
    orders = pd.read_csv(raw_dir / ORDERS_FILE, dtype=str, keep_default_na=False)
    lines = pd.read_csv(raw_dir / LINES_FILE, dtype=str, keep_default_na=False)
    start = pd.Timestamp(datetime(after.year, after.month, after.day, tzinfo=UTC))
    late = (pd.to_datetime(orders[Col.ORDERED_AT], utc=True, format="ISO8601") >= start).to_numpy()
    rng = np.random.default_rng(seed)
    dropped = late & (rng.random(len(orders)) >= keep_orders)
    gone = set(orders.loc[dropped, Col.ORDER_ID])
    late_ids = set(orders.loc[late, Col.ORDER_ID])
    line_gone = lines[Col.ORDER_ID].isin(gone).to_numpy()
    repriced = lines[Col.ORDER_ID].isin(late_ids).to_numpy() & ~line_gone
    if price_factor != 1.0 and repriced.any():
        price = pd.to_numeric(lines.loc[repriced, Col.UNIT_PRICE]) * price_factor
        lines.loc[repriced, Col.UNIT_PRICE] = price.round(2).map(lambda v: f"{v:.2f}")
    orders[~dropped].to_csv(out_dir / ORDERS_FILE, index=False)
    lines[~line_gone].to_csv(out_dir / LINES_FILE, index=False)
    return ShiftSummary(out_dir, after, int(late.sum()), int(dropped.sum()), int(line_gone.sum()), int(repriced.sum()))
