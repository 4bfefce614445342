"""Campaigns, exposures, coupons and redemptions: contract tables, their checks, and their features."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ibis
import pandas as pd
import pytest

from features.definitions import FEATURE_NAMES, feature_table, features_for
from features.errors import MappingError
from features.ingest import ingest
from features.mapping import Mapping
from tests.features.test_mapping_expressions import TILL, _write, load_mapping_from, till_lines

NOW = datetime(2026, 1, 1, tzinfo=UTC)

DESCRIPTIONS = """campaign_id,campaign_type,start_date,end_date
K1,Type A,2017-02-01,2017-03-01
K2,Type B,2017-03-05,2017-04-01
K3,Type C,2017-03-06,2017-04-01
"""
# Membership only: the exposure time is the campaign's start, joined by a lookup. K9 is unknown.
MEMBERS = """campaign_id,household
K1,h1
K2,h1
K2,h2
K3,h2
K9,h2
"""
COUPONS = """coupon_upc,product,campaign_id
U1,P1,K1
U1,P2,K1
U2,P3,K2
"""
REDEMPTIONS = """household,coupon_upc,redemption_date
h1,U1,2017-02-10
h1,U2,2017-03-10
h2,U9,2017-03-11
h1,U2,2017-03-25
"""


def _mapping(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "grocer",
        "timezone": "floating",
        "currency": "USD",
        "derive_customers_from_lines": True,
        "max_quarantine_share": 1.0,
        "max_table_quarantine_share": 1.0,
        "tables": {
            "order_lines": till_lines(line_amount="sales_value"),
            "campaigns": {
                "files": ["descriptions.csv"],
                "columns": {"campaign_type": "campaign_type", "starts_at": "start_date", "ends_at": "end_date"},
                "constants": {"channel": "direct_mail"},
            },
            "exposures": {
                "files": ["members.csv"],
                "columns": {"customer_id": "household", "campaign_id": "campaign_id"},
                "lookups": {"campaign": {"files": ["descriptions.csv"], "key": "campaign_id"}},
                "expressions": {"exposed_at": "campaign.start_date"},
            },
            "coupons": {"files": ["coupons.csv"], "columns": {"coupon_id": "coupon_upc", "item_id": "product"}},
            "redemptions": {
                "files": ["redemptions.csv"],
                "columns": {"customer_id": "household", "coupon_id": "coupon_upc", "redeemed_at": "redemption_date"},
            },
        },
    }
    raw.update(overrides)
    return raw


def _export(tmp_path: Path) -> Path:
    files = {
        "till.csv": TILL,
        "descriptions.csv": DESCRIPTIONS,
        "members.csv": MEMBERS,
        "coupons.csv": COUPONS,
        "redemptions.csv": REDEMPTIONS,
    }
    return _write(tmp_path / "x", files)


@pytest.fixture()
def home(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    result = ingest(_export(tmp_path), Mapping.model_validate(_mapping()), tmp_path / "home", now=NOW)
    return tmp_path / "home" / "ingested", dict(result.report)


def test_campaign_tables_are_ingested_with_their_checks(home: tuple[Path, dict[str, Any]]) -> None:
    folder, report = home
    campaigns = pd.read_parquet(folder / "campaigns.parquet")
    assert campaigns["channel"].tolist() == ["direct_mail"] * 3
    exposures = pd.read_parquet(folder / "exposures.parquet").sort_values(["campaign_id", "customer_id"])
    assert exposures["campaign_id"].tolist() == ["K1", "K2", "K2", "K3"]
    assert exposures["channel"].tolist() == ["direct_mail"] * 4  # the campaign's channel by default
    assert exposures["exposed_at"].dt.strftime("%Y-%m-%d").tolist() == [
        "2017-02-01",
        "2017-03-05",
        "2017-03-05",
        "2017-03-06",
    ]
    assert report["tables"]["exposures"]["quarantine_reasons"] == {
        "missing_required": 1,  # K9 has no campaign row, so no start date either
        "orphan_campaign": 1,
    }
    assert report["tables"]["redemptions"]["quarantine_reasons"] == {"orphan_coupon": 1}
    assert pd.read_parquet(folder / "coupons.parquet")["coupon_id"].tolist() == ["U1", "U1", "U2"]
    assert exposures["customer_key"].notna().all()


def test_campaign_features(home: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = home
    con = ibis.duckdb.connect()
    tables = {p.stem: con.read_parquet(p, table_name=p.stem) for p in folder.glob("*.parquet")}
    extra = [f.name for f in features_for(tables)[len(FEATURE_NAMES) :]]
    assert extra == [
        "campaigns_received_365d",
        "campaigns_received_lifetime",
        "days_since_last_campaign",
        "coupon_redemptions_365d",
        "redemption_rate_365d",
    ]
    frame = feature_table(tables, datetime(2017, 3, 20, tzinfo=UTC)).execute()
    ids = pd.read_parquet(folder / "identity_map.parquet").set_index("customer_key")["customer_id"]
    frame = frame.assign(customer_id=frame["customer_key"].map(ids)).set_index("customer_id").sort_index()
    assert frame.loc["h1", "campaigns_received_365d"] == 2
    assert frame.loc["h1", "coupon_redemptions_365d"] == 2  # the one of 2017-03-25 is after the cutoff
    assert frame.loc["h1", "redemption_rate_365d"] == 1.0  # redeemed from K1 (coupon U1) and K2 (U2)
    assert frame.loc["h2", "campaigns_received_365d"] == 2
    assert frame.loc["h2", "redemption_rate_365d"] == 0.0
    assert frame.loc["h2", "days_since_last_campaign"] == 14.0
    later = feature_table(tables, datetime(2017, 3, 26, tzinfo=UTC)).execute()
    later = later.assign(customer_id=later["customer_key"].map(ids)).set_index("customer_id")
    assert later.loc["h1", "coupon_redemptions_365d"] == 3


def test_a_channel_outside_the_mapping_vocabulary_is_invalid(tmp_path: Path) -> None:
    raw = _mapping(channels=["email", "sms"])
    result = ingest(_export(tmp_path), Mapping.model_validate(raw), tmp_path / "h", now=NOW)
    assert result.report["tables"]["campaigns"]["reclassified_reasons"] == {"invalid_value": 3}


def test_a_bad_channel_name_is_refused() -> None:
    with pytest.raises(MappingError, match="channels: 'Direct Mail': a channel name is lower case"):
        load_mapping_from(_mapping(channels=["Direct Mail"]))
