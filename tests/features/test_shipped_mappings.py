"""The shipped mappings of Complete Journey and CDNOW, each ingested from a small committed sample.

Expected figures are computed here from the raw sample files, independently of the ingestion code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.ingest import ingest
from features.mapping import BUILTIN_MAPPINGS, load_mapping

DATA = Path(__file__).resolve().parents[1] / "data"
CJ = DATA / "complete_journey"
CDNOW = DATA / "cdnow_master"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def cj(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    home = tmp_path_factory.mktemp("cj")
    result = ingest(CJ, load_mapping("complete_journey"), home, now=NOW)
    return result.path, dict(result.report)


def test_every_builtin_mapping_loads() -> None:
    assert {"synthetic", "online_retail_ii", "complete_journey", "cdnow"} <= set(BUILTIN_MAPPINGS)
    for name in BUILTIN_MAPPINGS:
        assert load_mapping(name).name == name


def test_complete_journey_line_totals_become_unit_prices(cj: tuple[Path, dict[str, Any]]) -> None:
    folder, report = cj
    raw = pd.read_parquet(CJ / "transactions.parquet")
    products = pd.read_parquet(CJ / "products.parquet")
    sale = (raw["quantity"] > 0) & (raw["sales_value"] > 0) & raw["product_id"].isin(products["product_id"])
    lines = pd.read_parquet(folder / "order_lines.parquet")
    assert len(lines) == int(sale.sum())
    expected = raw.loc[sale].groupby("basket_id")["sales_value"].sum()
    orders = pd.read_parquet(folder / "orders.parquet").set_index("order_id")["amount"]
    orders.index = orders.index.astype("int64")
    assert np.allclose(orders.sort_index().to_numpy(), expected.sort_index().to_numpy())
    reasons = report["tables"]["order_lines"]["quarantine_reasons"]
    assert reasons["zero_quantity"] == int((raw["quantity"] == 0).sum())
    assert reasons["orphan_item"] == int((~raw["product_id"].isin(products["product_id"])).sum())
    assert (report["currency"], report["prices"], report["clock"]["timezone"]) == ("USD", True, "floating")


def test_complete_journey_times_are_the_tills_wall_clock(cj: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = cj
    raw = pd.read_parquet(CJ / "transactions.parquet").drop_duplicates("basket_id").set_index("basket_id")
    orders = pd.read_parquet(folder / "orders.parquet").set_index("order_id")
    first = orders.index[0]
    assert orders.loc[first, "ordered_at"].tz_localize(None) == raw.loc[int(first), "transaction_timestamp"]


def test_complete_journey_demographics_campaigns_and_coupons(cj: tuple[Path, dict[str, Any]]) -> None:
    folder, report = cj
    demographics = pd.read_parquet(CJ / "demographics.parquet")
    customers = pd.read_parquet(folder / "customers.parquet")
    households = pd.read_parquet(CJ / "transactions.parquet")["household_id"].astype(str).unique()
    assert set(customers["customer_id"]) == set(households)  # partial demographics + derived households
    with_age = customers.dropna(subset=["attr_age_band"]).set_index("customer_id")
    assert (
        with_age["attr_age_band"].to_dict()
        == demographics.set_index(demographics["household_id"].astype(str))["age"].to_dict()
    )
    assert report["derived"]["customers"] == len(households) - len(demographics)

    exposures = pd.read_parquet(folder / "exposures.parquet")
    members = pd.read_parquet(CJ / "campaigns.parquet")
    starts = pd.read_parquet(CJ / "campaign_descriptions.parquet").set_index("campaign_id")["start_date"]
    assert len(exposures) == len(members)
    got = exposures.set_index(["customer_id", "campaign_id"])["exposed_at"].dt.tz_localize(None).sort_index()
    want = members.assign(
        customer_id=members["household_id"].astype(str),
        campaign_id=members["campaign_id"].astype(str),
        exposed_at=members["campaign_id"].map(starts),
    ).set_index(["customer_id", "campaign_id"])["exposed_at"]
    assert got.to_dict() == want.sort_index().to_dict()
    assert set(exposures["channel"]) == {"direct_mail"}
    coupons = pd.read_parquet(CJ / "coupons.parquet")
    assert report["tables"]["coupons"]["quarantine_reasons"] == {"duplicate_row": int(coupons.duplicated().sum())}
    assert report["published"]["redemptions"] == len(pd.read_parquet(CJ / "coupon_redemptions.parquet"))


def test_cdnow_master_layout_ingests_with_one_transaction_per_customer_and_day(tmp_path: Path) -> None:
    result = ingest(CDNOW, load_mapping("cdnow"), tmp_path / "h", now=NOW)
    raw = pd.read_csv(CDNOW / "CDNOW_master.txt", sep=r"\s+", dtype={"customer_id": str, "date": str})
    sale = raw["dollar_value"] > 0
    first = ~raw.duplicated()
    kept = raw.loc[sale & first]
    orders = pd.read_parquet(result.path / "orders.parquet")
    assert len(orders) == kept.groupby(["customer_id", "date"]).ngroups
    expected = kept.groupby(["customer_id", "date"])["dollar_value"].sum().to_numpy()
    got = orders.sort_values("order_id")["amount"].to_numpy()
    assert np.allclose(got, expected)
    report = result.report
    assert report["tables"]["order_lines"]["quarantined"] == int((~(sale & first)).sum())
    assert report["derived"]["customers"] == kept["customer_id"].nunique()
    assert orders["ordered_at"].dt.hour.eq(0).all()


def test_complete_journey_snapshot_carries_demographics_and_campaign_features(
    cj: tuple[Path, dict[str, Any]],
) -> None:
    from features.store import build_snapshot

    folder, _ = cj
    snap = build_snapshot(folder.parent)
    listed = [f["name"] for f in snap.manifest["features"]]
    frame = pd.read_parquet(next(snap.path.glob("features*.parquet")))
    for name in ("attr_age_band", "attr_income_band_band", "campaigns_received_365d", "redemption_rate_365d"):
        assert name in listed and name in frame.columns
    ids = pd.read_parquet(folder / "identity_map.parquet").set_index("customer_key")["customer_id"]
    frame = frame.assign(customer_id=frame["customer_key"].map(ids)).set_index("customer_id")
    demographics = pd.read_parquet(CJ / "demographics.parquet")
    order = load_mapping("complete_journey").tables["customers"].attributes["age_band"].order or []
    for household, age in zip(demographics["household_id"].astype(str), demographics["age"], strict=True):
        assert frame.loc[household, "attr_age_band"] == order.index(age) + 1
    members = pd.read_parquet(CJ / "campaigns.parquet").groupby("household_id")["campaign_id"].nunique()
    got = frame.loc[members.index.astype(str), "campaigns_received_lifetime"]
    assert got.tolist() == members.astype(float).tolist()
