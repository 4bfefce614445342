"""Cut the committed Online Retail II sample: 300 customers' complete histories plus guest invoices.

Run from the project root with ../shared beside it:  python tests/data/make_orii_sample.py
The two sheets keep their names and columns, so the shipped ``online_retail_ii`` mapping reads them,
and their nine-day overlap, duplicates, cancellations and non-product lines come along as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SRC = Path(__file__).resolve().parents[3] / "shared" / "data" / "online_retail_ii"
DST = Path(__file__).resolve().parent / "online_retail_ii"
SHEETS = ("year_2009_2010.parquet", "year_2010_2011.parquet")


def main(n_customers: int = 300, n_guest_invoices: int = 60, seed: int = 11) -> None:
    frames = {name: pd.read_parquet(SRC / name) for name in SHEETS}
    both = pd.concat(frames.values(), ignore_index=True)
    rng = np.random.default_rng(seed)
    customers = rng.choice(np.sort(both["Customer ID"].dropna().unique()), size=n_customers, replace=False)
    guests = both.loc[both["Customer ID"].isna(), "Invoice"].unique()
    guest_invoices = rng.choice(np.sort(guests), size=n_guest_invoices, replace=False)
    DST.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        keep = frame["Customer ID"].isin(customers) | frame["Invoice"].isin(guest_invoices)
        frame.loc[keep].to_parquet(DST / name, index=False, compression="zstd")
        print(name, int(keep.sum()), "lines")


if __name__ == "__main__":
    main()
