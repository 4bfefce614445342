"""Cut the committed Complete Journey sample: a few households' whole year, with everything they touch.

Run from the project root with ../shared beside it:  python tests/data/make_cj_sample.py
Half of the households have demographics, half not (as in the data, where a third have them); every
campaign they received, its description, the coupons they redeemed and a few more of those campaigns, and
their redemptions come along. Files and columns keep their names, so the shipped ``complete_journey``
mapping reads them; the dirt (zero quantities, non-positive sales values, products missing from the
catalogue, duplicate coupon rows) comes along as it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SRC = Path(__file__).resolve().parents[3] / "shared" / "data" / "complete_journey"
DST = Path(__file__).resolve().parent / "complete_journey"


def main(n_with: int = 6, n_without: int = 6, seed: int = 18) -> None:
    rng = np.random.default_rng(seed)
    demographics = pd.read_parquet(SRC / "demographics.parquet")
    members = pd.read_parquet(SRC / "campaigns.parquet")
    redemptions = pd.read_parquet(SRC / "coupon_redemptions.parquet")
    # Households that received a campaign and redeemed a coupon, so every table has rows.
    active = np.intersect1d(members["household_id"].unique(), redemptions["household_id"].unique())
    known = np.intersect1d(active, demographics["household_id"].to_numpy())
    unknown = np.setdiff1d(active, demographics["household_id"].to_numpy())
    chosen = np.concatenate(
        [rng.choice(np.sort(known), n_with, replace=False), rng.choice(np.sort(unknown), n_without, replace=False)]
    )
    lines = pd.read_parquet(SRC / "transactions.parquet")
    lines = lines.loc[lines["household_id"].isin(chosen)]
    products = pd.read_parquet(SRC / "products.parquet")
    # A few products stay out of the catalogue, as 0.3% of the real lines' products do.
    bought = lines["product_id"].unique()
    products = products.loc[products["product_id"].isin(bought[: int(len(bought) * 0.99)])]
    members = members.loc[members["household_id"].isin(chosen)]
    coupons = pd.read_parquet(SRC / "coupons.parquet")
    redeemed = redemptions.loc[redemptions["household_id"].isin(chosen)]
    # The coupons they redeemed, plus two more of each campaign they received, on products they bought.
    received = coupons.loc[coupons["campaign_id"].isin(members["campaign_id"])]
    others = received.drop_duplicates("coupon_upc").groupby("campaign_id")["coupon_upc"].head(2)
    wanted = received["coupon_upc"].isin(redeemed["coupon_upc"]) | received["coupon_upc"].isin(others)
    # Of each coupon, its rows for products they bought, and its first row so that every coupon is there.
    first = ~received["coupon_upc"].duplicated()
    coupons = received.loc[wanted & (received["product_id"].isin(bought) | first)]
    DST.mkdir(parents=True, exist_ok=True)
    frames = {
        "transactions": lines,
        "products": products,
        "demographics": demographics.loc[demographics["household_id"].isin(chosen)],
        "campaigns": members,
        "campaign_descriptions": pd.read_parquet(SRC / "campaign_descriptions.parquet"),
        "coupons": coupons,
        "coupon_redemptions": redeemed,
    }
    for name, frame in frames.items():
        frame.to_parquet(DST / f"{name}.parquet", index=False, compression="zstd")
        print(name, len(frame), "rows")


if __name__ == "__main__":
    main()
