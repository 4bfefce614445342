"""The offers job on the small synthetic world: dataset, evaluation, truth comparison, bundle round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import Col
from features.store import open_tables
from training.offers import OUTCOME, SELECTION_METRIC, OffersRun, build_send_dataset, fetch_offers, train_offers


@pytest.fixture(scope="module")
def run(synth_home, tmp_path_factory: pytest.TempPathFactory) -> tuple[OffersRun, str]:  # type: ignore[no-untyped-def]
    uri = f"sqlite:///{tmp_path_factory.mktemp('offers') / 'mlflow.db'}"
    result = train_offers(
        synth_home.home,
        uri,
        truth_dir=synth_home.raw / "truth",
        learner="t",  # the faster learner keeps the test short; the X-learner has its own tests
        compare_learners=False,
        step_days=91,
        uplift_params={"n_estimators": 150},
    )
    return result, uri


def test_sends_use_features_from_before_the_send(synth_home) -> None:  # type: ignore[no-untyped-def]
    data = build_send_dataset(open_tables(synth_home.home), step_days=91)
    assert (data["cutoff"] <= data[Col.SENT_AT]).all()
    assert set(data[OUTCOME].unique()) <= {0, 1}
    offered = data[Col.OFFER_ID].notna().mean()
    assert 0.25 < offered < 0.45  # about 35% of messages carry an offer in the synthetic world
    # recency aged to the send: never below the days from cutoff to send for a buyer
    gap = (data[Col.SENT_AT] - data["cutoff"]).dt.total_seconds() / 86_400
    buyers = data["recency_days"].notna()
    assert (data.loc[buyers, "recency_days"] >= gap[buyers] - 1e-3).all()


def test_holdout_figures_are_reported(run: tuple[OffersRun, str]) -> None:
    result, _ = run
    assert set(result.qini["offer_id"]) == {"OF01", "OF02", "OF03", "OF04", "OF05", "OF06"}
    assert np.isfinite(result.qini["qini_auc"]).all()
    assert result.sizes["train_sends"] > result.sizes["holdout_sends"] > 0
    assert {"ope_ips_incremental_profit_per_send", SELECTION_METRIC} <= set(result.metrics)
    assert (result.off_policy["dr_se"] > 0).all()


def test_policy_beats_random_offer_and_no_offer_on_the_planted_truth(run: tuple[OffersRun, str]) -> None:
    result, _ = run
    assert result.truth is not None
    profit = result.truth.set_index("policy")["true_profit"]
    assert profit["oracle (true uplift)"] >= profit.max() - 1e-9
    assert profit["Kairos (uplift model)"] > profit["random eligible offer"]
    assert profit["Kairos (uplift model)"] > profit["no offer"] == 0.0
    assert result.metrics["truth_control_customers"] > 0


def test_registered_bundle_loads_and_decides(run: tuple[OffersRun, str], synth_home, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, uri = run
    assert result.registration is not None and result.registration.alias == "champion"
    nbo, fetched, manifest = fetch_offers(uri, "champion", tmp_path)
    assert manifest["learner"] == "t" and fetched.version == result.registration.version
    snap = sorted((synth_home.home / "snapshots").iterdir())[-1]
    frame = pd.read_parquet(snap / "features.parquet").merge(
        pd.read_parquet(snap / "segments.parquet"), on=Col.CUSTOMER_KEY
    )
    out = nbo.decide(frame.head(300), now=pd.Timestamp("2026-01-02", tz="UTC").to_pydatetime())
    assert len(out) == 300 and out[Col.CUSTOMER_KEY].tolist() == frame[Col.CUSTOMER_KEY].head(300).tolist()
    assert set(out["status"]) <= {"offer", "no_offer", "control_group", "not_contactable"}
    assert (out.loc[out["status"] == "offer", "source"] == "uplift_model").all()
    assert (out.loc[out["status"] == "offer", "expected_profit"] > 0).all()
