"""The offers job on the small synthetic world: dataset, caution chosen on validation, evaluation, truth
comparison, bundle round trip. The send dataset is built once for the module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bundles import registry
from bundles.offers import MODEL_NAME, OffersBundle
from features.contract import Col
from features.store import open_tables
from models.decisioning.offers import EXAMPLE_CATALOGUE, load_catalogue
from synth.checks import OffersTruth
from training.offers import (
    BASELINES,
    CAUTION_GRID,
    DEFAULT_CELLS,
    OTHER_OFFERS,
    OUTCOME,
    SELECTION_METRIC,
    OffersRun,
    _split,
    build_send_dataset,
    choose_baseline,
    choose_caution,
    count_other_offers,
    train_offers,
)

STEP_DAYS = 91
HOLDOUT_DAYS = 120


@pytest.fixture(scope="module")
def sends(synth_home) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    return build_send_dataset(open_tables(synth_home.home), step_days=STEP_DAYS)


@pytest.fixture(scope="module")
def run(synth_home, sends: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[OffersRun, str]:  # type: ignore[no-untyped-def]
    uri = f"sqlite:///{tmp_path_factory.mktemp('offers') / 'mlflow.db'}"
    result = train_offers(
        synth_home.home,
        uri,
        policy_check=OffersTruth(synth_home.raw / "truth", synth_home.home),
        compare_learners=False,  # the X-learner takes minutes; its own tests are in tests/models
        step_days=STEP_DAYS,
        holdout_days=HOLDOUT_DAYS,
        uplift_params={"n_estimators": 80},
        sends=sends,
    )
    return result, uri


def test_sends_use_features_from_before_the_send(sends: pd.DataFrame) -> None:
    data = sends
    assert (data["cutoff"] <= data[Col.SENT_AT]).all()
    assert set(data[OUTCOME].unique()) <= {0, 1}
    offered = data[Col.OFFER_ID].notna().mean()
    assert 0.25 < offered < 0.45  # about 35% of messages carry an offer in the synthetic world
    # recency aged to the send: never below the days from cutoff to send for a buyer
    gap = (data[Col.SENT_AT] - data["cutoff"]).dt.total_seconds() / 86_400
    buyers = data["recency_days"].notna()
    assert (data.loc[buyers, "recency_days"] >= gap[buyers] - 1e-3).all()


def test_caution_is_chosen_on_training_sends_only(run: tuple[OffersRun, str], sends: pd.DataFrame) -> None:
    result, _ = run
    assert result.caution is not None and result.caution["caution"].tolist() == list(CAUTION_GRID)
    chosen = result.metrics["caution"]
    best = result.caution["dr_incremental_profit_per_send"].max()
    assert chosen in CAUTION_GRID
    table = result.caution.set_index("caution")
    top = table.index[table["dr_incremental_profit_per_send"] >= best - 1e-3].max()
    gain, se = table.loc[top, "dr_vs_no_caution"], table.loc[top, "dr_vs_no_caution_se"]
    # the best caution on validation, kept only if it beats no caution by more than a paired standard error
    assert chosen == (top if top > 0 and gain > se else 0.0)
    assert table.loc[0.0, "dr_vs_no_caution"] == 0.0 and (table.loc[table.index > 0, "dr_vs_no_caution_se"] > 0).all()
    # the same choice from the training sends alone: neither the holdout nor the truth took part
    train, holdout = _split(sends, HOLDOUT_DAYS)
    assert train[Col.SENT_AT].max() < holdout[Col.SENT_AT].min()
    params = {"learner": "cells", "cells": DEFAULT_CELLS, "n_estimators": 80}
    baseline, table = choose_baseline(train, validation_days=HOLDOUT_DAYS, params=params)
    assert result.baseline is not None and result.baseline["baseline"].tolist() == list(BASELINES)
    assert table["log_loss"].tolist() == pytest.approx(result.baseline["log_loss"].tolist())
    assert result.metrics["baseline_clean"] == float(baseline != "all")
    assert baseline == table.loc[table["log_loss"].idxmin(), "baseline"]
    again, _table = choose_caution(
        train, load_catalogue(EXAMPLE_CATALOGUE), validation_days=HOLDOUT_DAYS, params=params, baseline=baseline
    )
    assert again == chosen


def test_other_offers_around_a_send_are_counted() -> None:
    t0 = pd.Timestamp("2025-03-01", tz="UTC")
    day = pd.Timedelta(days=1)
    messages = pd.DataFrame(
        {
            Col.CUSTOMER_KEY: ["a", "a", "a", "a", "a", "b", "b"],
            Col.OFFER_ID: ["OF1", None, "OF2", "OF3", "OF1", "OF1", None],
            Col.SENT_AT: [t0, t0 + 2 * day, t0 + 29 * day, t0 + 31 * day, t0 - 30 * day, t0 + 5 * day, t0],
        }
    )
    # a's send at t0 carries OF1 (itself not counted); OF2 29 days later counts, OF3 31 days later and the
    # OF1 exactly 30 days before do not; a's send 2 days later without an offer has OF1, OF2 and OF3 around
    # it; b's send without an offer has b's OF1 five days later
    sends = messages.iloc[[0, 1, 6]].reset_index(drop=True)
    assert count_other_offers(sends, messages).tolist() == [1, 3, 1]


def test_the_send_dataset_counts_other_offers(sends: pd.DataFrame) -> None:
    assert (sends[OTHER_OFFERS] >= 0).all()
    assert 0 < (sends[OTHER_OFFERS] == 0).mean() < 1


def test_holdout_figures_are_reported(run: tuple[OffersRun, str]) -> None:
    result, _ = run
    assert set(result.qini["offer_id"]) == {"OF01", "OF02", "OF03", "OF04", "OF05", "OF06"}
    assert np.isfinite(result.qini["qini_auc"]).all()
    assert result.sizes["train_sends"] > result.sizes["holdout_sends"] > 0
    assert {"ope_ips_incremental_profit_per_send", SELECTION_METRIC, "ope_dr_incremental_se"} <= set(result.metrics)
    assert (result.off_policy["dr_se"] > 0).all()
    policies = result.off_policy.set_index("policy")
    # the paired difference against no offer is what the registry compares; it matches the two values
    k = policies.loc["Kairos (uplift x margin - cost)"]
    assert k["dr_vs_no_offer"] == pytest.approx(
        k["dr_profit_per_send"] - policies.loc["no offer", "dr_profit_per_send"]
    )
    assert result.metrics["ope_dr_incremental_se"] > 0


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
    fetched = registry.fetch_bundle(uri, MODEL_NAME, registry.CHAMPION, tmp_path)
    nbo, manifest = OffersBundle.read(fetched.path)
    assert manifest["learner"] == "cells" and fetched.version == result.registration.version
    assert manifest["cells"] == list(DEFAULT_CELLS) and nbo.caution == result.metrics["caution"]
    snap = sorted((synth_home.home / "snapshots").iterdir())[-1]
    frame = pd.read_parquet(snap / "features.parquet").merge(
        pd.read_parquet(snap / "segments.parquet"), on=Col.CUSTOMER_KEY
    )
    out = nbo.decide(frame.head(300), now=pd.Timestamp("2026-01-02", tz="UTC").to_pydatetime())
    assert len(out) == 300 and out[Col.CUSTOMER_KEY].tolist() == frame[Col.CUSTOMER_KEY].head(300).tolist()
    assert set(out["status"]) <= {"offer", "no_offer", "control_group", "not_contactable"}
    assert (out.loc[out["status"] == "offer", "source"] == "uplift_model").all()
    assert (out.loc[out["status"] == "offer", "expected_profit"] > 0).all()


def test_policy_value_has_intervals_against_no_offer_and_the_single_offer_chosen_on_training_sends(
    run: tuple[OffersRun, str], sends: pd.DataFrame
) -> None:
    from training.offers import KAIROS, best_single_offer

    result, _ = run
    train, _holdout = _split(sends, HOLDOUT_DAYS)
    single = best_single_offer(train, load_catalogue(EXAMPLE_CATALOGUE))  # training sends only
    name = f"best single offer chosen on training sends ({single})"
    table = result.off_policy.set_index("policy")
    assert name in table.index
    row = table.loc[KAIROS]
    for est in ("ips", "dr"):
        for base in ("no_offer", "single"):
            low, mid, high = (row[f"{est}_vs_{base}{s}"] for s in ("_low", "", "_high"))
            assert low < mid < high
            assert result.metrics[f"ope_{est}_vs_{base}"] == pytest.approx(mid)
    # the paired DR difference against no offer is the one the registry selects on
    assert row["dr_vs_no_offer"] == pytest.approx(result.metrics[SELECTION_METRIC])
    assert table.loc[name, "dr_vs_single"] == 0.0
    assert {"qini_coefficient", "auuc"} <= set(result.qini.columns)


def test_the_baseline_falls_back_to_every_control_send_when_clean_ones_are_too_few(sends: pd.DataFrame) -> None:
    train, _ = _split(sends, HOLDOUT_DAYS)
    crowded = train.assign(**{OTHER_OFFERS: 1})  # every send had another offer around it
    params = {"learner": "cells", "cells": DEFAULT_CELLS, "n_estimators": 20}
    chosen, table = choose_baseline(crowded, validation_days=HOLDOUT_DAYS, params=params)
    assert chosen == "all"
    assert table["log_loss"].isna().all() and table["note"].str.contains("too few to judge").all()
