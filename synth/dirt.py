"""Defects planted in the synthetic world at small, exactly counted rates.

Each defect touches rows chosen among clean ones and disjoint from the other defects, so the counts
written to ``truth/dirt.json`` equal what a validator finds in the files. Malformed e-mails and phones
are planted with the records (:mod:`synth.people`).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from synth.common import Clock

DUPLICATE_LINE_SHARE = 0.005
BAD_PRICE_SHARE = 0.0003
UNKNOWN_ITEM_SHARE = 0.0003
FUTURE_ORDER_SHARE = 0.0002
FUTURE_EVENT_SHARE = 0.00002
FUTURE_YEAR = 2099


def _count(share: float, rows: int, minimum: int) -> int:
    return min(rows, max(minimum, round(share * rows)))


def plant_line_dirt(
    rng: np.random.Generator, lines: pd.DataFrame, is_sale: np.ndarray
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Exact duplicate lines, non-positive prices on sale lines, items missing from the catalogue.

    Args:
        rng: Random stream of dirt.
        lines: Order lines with ``item_id`` text, sorted as they will be written.
        is_sale: Whether each line belongs to a sale (not a cancellation) document.

    Returns:
        The lines with defects (duplicates placed right after their original) and the counts.
    """
    sale_rows = np.flatnonzero(is_sale)
    n_bad = _count(BAD_PRICE_SHARE, len(sale_rows), 3)
    n_unknown = _count(UNKNOWN_ITEM_SHARE, len(sale_rows), 3)
    n_dup = _count(DUPLICATE_LINE_SHARE, len(sale_rows), 5)
    picked = rng.choice(sale_rows, size=min(len(sale_rows), n_bad + n_unknown + n_dup), replace=False)
    bad, unknown, dup = np.split(picked, [n_bad, n_bad + n_unknown])
    lines = lines.copy()
    price = lines["unit_price"].to_numpy().copy()
    price[bad] = np.where(rng.random(len(bad)) < 0.7, 0.0, -price[bad])
    lines["unit_price"] = price
    item_id = lines["item_id"].to_numpy().copy()
    item_id[unknown] = [f"9{k:05d}" for k in rng.choice(100_000, len(unknown), replace=False)]  # 6 digits
    lines["item_id"] = item_id
    order = np.sort(np.concatenate([np.arange(len(lines)), dup]), kind="stable")
    lines = lines.iloc[order].reset_index(drop=True)
    return lines, {
        "duplicate_order_lines": len(dup),
        "nonpositive_unit_price_lines": len(bad),
        "unknown_item_lines": len(unknown),
    }


def plant_future(
    rng: np.random.Generator, t: np.ndarray, eligible: np.ndarray, share: float, minimum: int, clock: Clock
) -> tuple[np.ndarray, int]:
    """Move a few timestamps into the year 2099 (a clock or typing error).

    Args:
        rng: Random stream of dirt.
        t: Float days (a copy is changed).
        eligible: Rows that may be moved.
        share: Share of eligible rows to move.
        minimum: Moved at least this many (when there are enough rows).
        clock: The world's clock.

    Returns:
        The changed times and how many were moved.
    """
    rows = np.flatnonzero(eligible)
    k = _count(share, len(rows), minimum)
    chosen = rng.choice(rows, size=k, replace=False)
    out = np.array(t, dtype=np.float64, copy=True)
    far = clock.days_until(date(FUTURE_YEAR, 1, 1))
    out[chosen] = far + rng.uniform(0.0, 360.0, k)
    return out, k
