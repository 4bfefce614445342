"""The offers job's campaign path (issue 18): exposures and redemptions -> per-campaign rates, and uplift
claimed only for a campaign declared randomised, or with a reported propensity correction."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from features.contract import Col
from features.ingest import ingest
from features.mapping import load_mapping
from tests.conftest import TESTS
from training import campaigns as cp

START = pd.Timestamp("2017-06-01", tz="UTC")
CJ = TESTS / "data" / "complete_journey"


def _world(n: int, seed: int, *, targeted: bool, effect: float) -> dict[str, pd.DataFrame]:
    """``n`` customers with 1-6 orders in the 90 days before the start of campaign K1.

    Randomised: each customer is exposed with probability 1/2 and buys after the start with probability
    0.3 + ``effect`` if exposed. Targeted: the frequent buyers are exposed far more often, and buying after
    the start depends on the orders before only (the campaign does nothing)."""
    rng = np.random.default_rng(seed)
    keys = [f"c{i}" for i in range(n)]
    prior = rng.integers(1, 7, n)
    if targeted:
        exposed = rng.random(n) < 1 / (1 + np.exp(-(prior - 3.5) * 0.8))
        p_buy = 0.1 + 0.12 * prior
    else:
        exposed = rng.random(n) < 0.5
        p_buy = 0.3 + effect * exposed
    bought = rng.random(n) < p_buy
    rows = []
    for key, k, b in zip(keys, prior, bought, strict=True):
        rows += [(key, START - pd.Timedelta(days=int(d)), 10.0) for d in rng.integers(1, 90, k)]
        if b:
            rows.append((key, START + pd.Timedelta(days=int(rng.integers(0, 30))), 25.0))
    orders = pd.DataFrame(rows, columns=[Col.CUSTOMER_KEY, Col.ORDERED_AT, Col.AMOUNT]).assign(
        **{Col.STATUS: "completed"}
    )
    exposures = pd.DataFrame({Col.CUSTOMER_KEY: np.array(keys)[exposed], Col.CAMPAIGN_ID: "K1", Col.EXPOSED_AT: START})
    campaigns = pd.DataFrame({Col.CAMPAIGN_ID: ["K1"], Col.STARTS_AT: [START]})
    truth = pd.DataFrame({Col.CUSTOMER_KEY: keys, "exposed": exposed, "bought": bought})
    return {"orders": orders, "exposures": exposures, "campaigns": campaigns, "truth": truth}


def test_a_randomised_campaign_gets_its_uplift_and_a_targeted_one_only_an_association() -> None:
    world = _world(600, 1, targeted=False, effect=0.15)
    rows, prices = cp.campaign_rows(world)
    assert prices and len(rows) == 600 and rows[cp.EXPOSED].sum() == world["truth"]["exposed"].sum()
    truth = world["truth"].groupby("exposed")["bought"].mean()
    declared = cp.campaign_effects(rows, {"K1"}, adjust=False, prices=True).iloc[0]
    assert declared["claim"] == cp.RANDOMISED
    assert declared["uplift"] == pytest.approx(truth[True] - truth[False])
    assert 0.05 < declared["uplift"] < 0.25 and 0 < declared["uplift_se"] < 0.06
    assert declared["spend_uplift"] == pytest.approx(25.0 * (truth[True] - truth[False]))
    undeclared = cp.campaign_effects(rows, set(), adjust=False, prices=True).iloc[0]
    assert undeclared["claim"] == cp.ASSOCIATION and np.isnan(undeclared["uplift"])
    assert undeclared["difference"] == pytest.approx(declared["uplift"])  # the same figure, not claimed


def test_the_propensity_correction_removes_most_of_a_targeting_bias_and_is_reported() -> None:
    rows, _ = cp.campaign_rows(_world(2000, 2, targeted=True, effect=0.0))
    raw = cp.campaign_effects(rows, set(), adjust=False, prices=True).iloc[0]
    adjusted = cp.campaign_effects(rows, set(), adjust=True, prices=True).iloc[0]
    assert raw["difference"] > 0.15  # the chosen buy more: no effect of the campaign in this world
    assert abs(adjusted["uplift"]) < raw["difference"] / 3
    assert adjusted["claim"].startswith(cp.ADJUSTED) and adjusted["control_ess"] >= cp.MIN_ESS


def test_without_comparable_customers_there_is_no_estimate() -> None:
    world = _world(40, 3, targeted=False, effect=0.1)
    world["exposures"] = pd.DataFrame(
        {Col.CUSTOMER_KEY: world["truth"][Col.CUSTOMER_KEY], Col.CAMPAIGN_ID: "K1", Col.EXPOSED_AT: START}
    )
    rows, _ = cp.campaign_rows(world)
    effect = cp.campaign_effects(rows, {"K1"}, adjust=True, prices=True).iloc[0]
    assert (effect["control"], effect["claim"]) == (0, cp.NO_CONTROL) and np.isnan(effect["uplift"])
    small = cp.campaign_effects(
        cp.campaign_rows(_world(12, 4, targeted=False, effect=0.1))[0], {"K1"}, adjust=False, prices=True
    )
    assert small.iloc[0]["claim"] == cp.TOO_FEW


def test_no_exposures_is_a_clear_error() -> None:
    world = _world(20, 5, targeted=False, effect=0.0)
    with pytest.raises(cp.NoCampaignDataError, match="no campaign exposures in the export"):
        cp.campaign_rows({**world, "exposures": world["exposures"].iloc[:0]})


def test_complete_journey_campaigns_through_the_cli(tmp_path: Path) -> None:
    """The committed sample: its mailers are targeted, nothing is declared randomised, so no uplift is
    claimed; the exposed counts and redemptions are those of the raw files."""
    home = tmp_path / "cj"
    ingest(CJ, load_mapping("complete_journey"), home, now=datetime(2026, 1, 1, tzinfo=UTC))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = CliRunner().invoke(
        app, ["train", "offers", "--from-campaigns", "--data", str(home), "--tracking-uri", uri]
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "uplift estimated for 0 (0 declared randomised)" in said and "nothing registered" in said

    run = cp.train_campaign_effects(home, uri)
    table = run.table.set_index(Col.CAMPAIGN_ID)
    assert table["uplift"].isna().all() and not table["randomised"].any()
    raw = pd.read_parquet(CJ / "campaigns.parquet")
    lines = pd.read_parquet(CJ / "transactions.parquet")
    described = pd.read_parquet(CJ / "campaign_descriptions.parquet")
    raw = raw[raw["household_id"].isin(lines["household_id"])]
    raw = raw[raw["campaign_id"].isin(described["campaign_id"])]
    expected = raw.groupby(raw["campaign_id"].astype(str))["household_id"].nunique()
    assert table["exposed"].to_dict() == expected.to_dict()
    redeemed = pd.read_parquet(CJ / "coupon_redemptions.parquet")
    pairs = set(zip(redeemed["campaign_id"].astype(str), redeemed["household_id"], strict=True))
    members = raw.assign(
        hit=[(str(c), h) in pairs for c, h in zip(raw["campaign_id"], raw["household_id"], strict=True)]
    )
    expected_rate = members.groupby(members["campaign_id"].astype(str))["hit"].mean()
    assert table["redeemed"].to_dict() == pytest.approx(expected_rate.to_dict())


def test_a_campaign_declared_randomised_in_the_mapping_is_read_as_such(tmp_path: Path) -> None:
    mapping = load_mapping("complete_journey").model_copy(deep=True)
    mapping.tables["campaigns"].constants["randomised"] = True
    home = tmp_path / "cj"
    ingest(CJ, mapping, home, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert pd.read_parquet(home / "ingested" / "campaigns.parquet")["randomised"].all()
    run = cp.train_campaign_effects(home, f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.table["randomised"].all()
    # declared randomised, yet every campaign of the 12-household sample is too small to estimate
    assert set(run.table["claim"]) <= {cp.TOO_FEW, cp.NO_CONTROL}
