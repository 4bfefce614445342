"""Propensity and value jobs: targets, time layout, sufficiency, calibration, baselines, registry, doctor, backtest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pytest
import yaml

from bundles import registry
from bundles.errors import ModelIntegrityError
from bundles.value import ClvBundle, ValueBundle
from features.contract import Col
from features.datasets import LABEL, ORDERS_LABEL, EngagementTarget, PurchaseTarget, ValueTarget
from features.errors import KairosError
from features.store import latest_snapshot
from tests.conftest import BuiltHome, SynthHome, small_data_rules
from training.propensity import (
    InsufficientDataError,
    Sufficiency,
    churn_task,
    plan_cutoffs,
    purchase_task,
    sufficiency_problems,
    train_many,
    train_task,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _ts(day: int, hour: int = 12) -> datetime:
    return T0 + timedelta(days=day, hours=hour)


@pytest.fixture
def tiny() -> dict[str, Any]:
    """Three known customers: a buyer who buys again, a one-time buyer, and a lead who never buys."""
    con = ibis.duckdb.connect()
    orders = pd.DataFrame(
        {
            Col.ORDER_ID: ["o1", "o2", "o3", "o4"],
            Col.CUSTOMER_KEY: ["a", "a", "b", "a"],
            Col.ORDERED_AT: [_ts(1), _ts(50), _ts(2), _ts(120)],
            Col.AMOUNT: [10.0, 20.0, 5.0, 40.0],
        }
    )
    customers = pd.DataFrame(
        {Col.CUSTOMER_KEY: ["a", "b", "lead"], Col.CREATED_AT: [_ts(0), _ts(0), _ts(10)]},
    )
    messages = pd.DataFrame(
        {
            Col.MESSAGE_ID: ["m1", "m2", "m3", "m4"],
            Col.CUSTOMER_KEY: ["a", "a", "b", "lead"],
            Col.CHANNEL: ["email", "email", "email", "sms"],
            Col.SENT_AT: [_ts(41), _ts(45), _ts(42), _ts(41)],
            Col.OPENED_AT: [None, _ts(45, 13), _ts(48), _ts(41, 13)],  # b opens after 6 days, a's first unopened
            Col.CLICKED_AT: [None, None, None, None],
        }
    )
    for col in (Col.OPENED_AT, Col.CLICKED_AT):
        messages[col] = pd.to_datetime(messages[col], utc=True)
    return {
        "orders": con.create_table("orders", orders),
        "customers": con.create_table("customers", customers),
        "messages": con.create_table("messages", messages),
    }


def _labels(table: Any) -> dict[str, Any]:
    frame = table.execute()
    return dict(zip(frame[Col.CUSTOMER_KEY], frame[LABEL], strict=True))


def test_purchase_target_includes_leads(tiny: dict[str, Any]) -> None:
    labels = _labels(PurchaseTarget(horizon_days=30).labels(tiny, _ts(40, 0)))
    assert labels == {"a": 1, "b": 0, "lead": 0}  # a buys on day 50; the lead is a row, not dropped


def test_value_target_sums_spend_and_orders_of_past_buyers(tiny: dict[str, Any]) -> None:
    frame = ValueTarget(horizon_days=100).labels(tiny, _ts(40, 0)).execute().set_index(Col.CUSTOMER_KEY)
    assert set(frame.index) == {"a", "b"}  # leads have no past order: not in the value population
    assert frame.loc["a", LABEL] == pytest.approx(60.0) and frame.loc["a", ORDERS_LABEL] == 2
    assert frame.loc["b", LABEL] == 0.0 and frame.loc["b", ORDERS_LABEL] == 0


def test_engagement_target_uses_first_message_and_response_window(tiny: dict[str, Any]) -> None:
    opens = _labels(EngagementTarget("email", "open", window_days=30, response_days=7).labels(tiny, _ts(40, 0)))
    assert opens == {"a": 0, "b": 1}  # a's first e-mail was never opened; b opened within 7 days
    late = _labels(EngagementTarget("email", "open", window_days=30, response_days=5).labels(tiny, _ts(40, 0)))
    assert late == {"a": 0, "b": 0}  # b's open came 6 days after sending: outside a 5-day window
    sms = _labels(EngagementTarget("sms", "open").labels(tiny, _ts(40, 0)))
    assert sms == {"lead": 1}


def test_plan_never_lets_labels_reach_the_next_window() -> None:
    start, end = datetime(2022, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 15, tzinfo=UTC)
    plan = plan_cutoffs(start, end, 90)
    assert plan.holdout + timedelta(days=90) <= end
    assert plan.valid + timedelta(days=90) <= plan.holdout
    assert max(plan.train) + timedelta(days=90) <= plan.valid
    assert min(plan.train) >= start + timedelta(days=180)
    relaxed = plan_cutoffs(start - timedelta(days=365), end, 365, overlap_train_valid=True)
    assert max(relaxed.train) < relaxed.valid and relaxed.valid + timedelta(days=365) <= relaxed.holdout


def test_plan_waits_for_the_targets_lookback_and_finds_the_same_season() -> None:
    start, end = datetime(2022, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 15, tzinfo=UTC)
    churn = plan_cutoffs(start, end, 90, lookback_days=365)
    assert min(churn.train) >= start + timedelta(days=365)  # a full active year before every training cutoff
    assert churn.season == churn.holdout - timedelta(days=360) and churn.season not in churn.train
    assert churn.season >= start + timedelta(days=180)
    short = plan_cutoffs(start, start + timedelta(days=500), 90, lookback_days=365)
    assert start + timedelta(days=180) <= min(short.train) < start + timedelta(days=365)  # no full year fits
    assert short.season is None  # a year before its holdout is before the data's first 180 days
    assert plan_cutoffs(start, end, 30).season is None  # that cutoff is trained on: it cannot calibrate


def test_plan_says_how_much_history_is_needed() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(InsufficientDataError, match=r"400 days of order history.*needs at least 720"):
        plan_cutoffs(start, start + timedelta(days=400), 180)


def test_sufficiency_names_everything_missing() -> None:
    problems = sufficiency_problems(
        {"training": (12, 900), "validation": (3, 50), "holdout": (40, 40)}, 100, Sufficiency()
    )
    text = "; ".join(problems)
    assert "100 days of history, need at least 180" in text
    assert "12 positive examples, need at least 500" in text
    assert "validation has 3 positive" in text
    assert "negative" not in text.split("validation")[0]  # 900 negatives suffice
    assert "holdout" not in text


@pytest.fixture(scope="module")
def trained(synth_home: SynthHome, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('prop') / 'mlflow.db'}"
    runs = train_many([churn_task(), purchase_task()], synth_home.home, uri, sufficiency=small_data_rules())
    return uri, runs


def test_jobs_report_model_beside_every_baseline(trained: tuple[str, dict[str, Any]]) -> None:
    _, runs = trained
    for name in ("churn", "purchase"):
        run = runs[name]
        assert not isinstance(run, Exception), run
        assert {"kairos", "kairos_uncalibrated", "rfm_score", "rfm_logistic", "bgnbd"} <= set(run.table.index)
        for metric in ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_top10", "capture_top20"):
            assert metric in run.table.columns
        assert set(run.quality) == {
            "beats_rfm_score",
            "beats_rfm_logistic",
            "beats_bgnbd",
            "ece_below_0.05",
            "significantly_beats_best_baseline",
        }
        # the paired interval against the best baseline of the same run: in the metrics, the card, the reason
        best = max(("rfm_score", "rfm_logistic", "bgnbd"), key=lambda b: run.table.loc[b, "roc_auc"])
        assert run.best_baseline == best and run.versus is not None
        assert run.versus.diff == pytest.approx(run.table.loc["kairos", "roc_auc"] - run.table.loc[best, "roc_auc"])
        low, high = run.metrics["vs_best_baseline_roc_auc_low"], run.metrics["vs_best_baseline_roc_auc_high"]
        assert low <= run.metrics["vs_best_baseline_roc_auc_diff"] <= high
        assert run.versus_line in run.card and f"kairos {'beats' if low > 0 else 'is'}" in run.versus_line
        # The model ranks better than chance and its probabilities are near the holdout rate.
        assert run.metrics["holdout_roc_auc"] > 0.7
        assert run.table.loc["kairos", "ece"] < 0.1
        # The gate: the first candidate is champion only with the interval above zero, else the best
        # baseline is registered beside it as champion, and the decision says which is served.
        assert run.registration is not None and run.served is not None
        assert run.registration.alias == ("champion" if low > 0 else "challenger"), run.decision
        if low > 0:
            assert run.served.baseline is None and run.decision.startswith(f"serving kairos: kairos beats the {best}")
        else:
            assert run.served.baseline is not None and run.served.baseline.alias == "champion"
            assert run.decision.startswith(f"serving the {best} baseline: kairos does not beat it, roc_auc ")
        assert f"**Served:** {run.decision}" in run.card
        assert "## " in run.card and "rfm_logistic" in run.card
    # Churn is calibrated on the validation rows and the same season a year before the holdout.
    churn = runs["churn"]
    assert churn.plan.season is not None and churn.sizes["calibration_rows"] > churn.sizes["valid_rows"]
    assert runs["purchase"].sizes["calibration_rows"] == runs["purchase"].sizes["valid_rows"]


def test_an_identical_retrain_stays_challenger_on_the_paired_holdout_interval(
    synth_home: SynthHome, trained: tuple[str, dict[str, Any]]
) -> None:
    uri, runs = trained
    champion = registry.configure(uri).get_model_version_by_alias("purchase", "champion")
    again = train_task(purchase_task(), synth_home.home, uri, sufficiency=small_data_rules())
    assert again.registration is not None and again.registration.alias == "challenger", again.registration
    assert again.served is not None and again.served.what == "incumbent" and again.served.baseline is None
    # whichever answers (kairos or its best baseline), the same again is no reason to replace it
    assert again.decision.startswith(f"serving champion v{champion.version} (")
    if runs["purchase"].served.baseline is None:  # kairos was served: the retrain ties it exactly
        assert f"but not champion v{champion.version} (kairos), +0.0000 [+0.0000, +0.0000]" in again.decision
    else:  # the baseline was served: refitted on the same rows, it ties itself exactly
        assert "baseline refitted does not beat it, +0.0000 [+0.0000, +0.0000]" in again.decision
    now = registry.configure(uri).get_model_version_by_alias("purchase", "champion")
    assert str(now.version) == str(champion.version)


def test_registered_model_carries_calibrator_and_refuses_tampered_metadata(
    trained: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    uri, runs = trained
    candidate = runs["purchase"].registration.version  # Kairos's model, whichever version is served
    fetched = registry.fetch(uri, "purchase", "champion", tmp_path / "ok", version=candidate)
    meta = fetched.metadata["kairos"]
    assert meta["calibrator"]["method"] in ("isotonic", "platt")
    assert meta["bands"] == [0.3, 0.6] and meta["target"] == "purchase"
    # Edit the calibrator in the stored MLmodel: the recorded metadata checksum no longer matches.
    client = registry.configure(uri)
    source = Path(client.get_model_version_download_uri("purchase", candidate).removeprefix("file://"))
    mlmodel = source / "MLmodel"
    original = mlmodel.read_text(encoding="utf-8")
    doc = yaml.safe_load(original)
    doc["metadata"]["kairos"]["bands"] = [0.01, 0.02]
    try:
        mlmodel.write_text(yaml.safe_dump(doc), encoding="utf-8")
        with pytest.raises(ModelIntegrityError, match="metadata altered"):
            registry.fetch(uri, "purchase", "champion", tmp_path / "bad", version=candidate)
    finally:
        mlmodel.write_text(original, encoding="utf-8")


def test_training_refuses_thin_data_and_says_what_is_missing(orii_home: BuiltHome, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    strict = Sufficiency(min_positives=100_000, min_negatives=100_000)
    with pytest.raises(InsufficientDataError) as err:  # the 300-customer sample against a large minimum
        train_task(churn_task(), orii_home.home, uri, sufficiency=strict)
    assert "churn: not registering" in str(err.value)
    assert "positive examples, need at least 100000" in str(err.value)
    assert "negative examples, need at least 100000" in str(err.value)
    with pytest.raises(InsufficientDataError, match=r"days of order history; a 30-day target needs at least 1090"):
        train_task(purchase_task(), orii_home.home, uri, sufficiency=Sufficiency(min_history_days=1000))
    client = registry.configure(uri)
    assert client.search_registered_models() == []  # nothing was registered


def test_doctor_lists_each_model(orii_home: BuiltHome) -> None:
    from training.doctor import diagnose

    verdicts = {v.model: v for v in diagnose(orii_home.home, small_data_rules())}
    assert verdicts["churn"].ok, verdicts["churn"].problems  # the rules the fixture trained with
    default = {v.model: v for v in diagnose(orii_home.home)}  # 300 real customers on 4 full-year cutoffs
    assert not default["churn"].ok and "negative examples, need at least 500" in default["churn"].problems[0]
    assert verdicts["engagement_open_email"].problems == ("the data has no message history (no messages table)",)
    assert "value (365 d)" in verdicts and not verdicts["value (365 d)"].ok
    strict = {v.model: v for v in diagnose(orii_home.home, Sufficiency(min_positives=100_000))}
    assert not strict["churn"].ok and "need at least 100000" in strict["churn"].problems[0]


def test_backtest_scores_the_past_and_says_when_in_sample(orii_home: BuiltHome) -> None:
    from training.backtest import backtest

    result = backtest("churn", orii_home.home, orii_home.tracking_uri, datetime(2011, 6, 1, tzinfo=UTC))
    # the served version's row is named for what it is: kairos, or baseline:<name> when the gate serves a baseline
    champion = registry.configure(orii_home.tracking_uri).get_model_version_by_alias("churn", "champion")
    assert result.model_kind == (champion.tags.get(registry.TAG_KIND) or "kairos")
    assert {result.model_kind, "rfm_score", "bgnbd"} <= set(result.table.index)
    assert result.in_sample and "flatter" in result.note  # the champion's labels run past June 2011
    assert len(result.scores) == int(result.table.loc[result.model_kind, "n"])
    with pytest.raises(KairosError, match="choose an earlier --as-of"):
        backtest("churn", orii_home.home, orii_home.tracking_uri, datetime(2011, 11, 1, tzinfo=UTC))


def test_value_job_registers_value_and_clv(synth_home: SynthHome, tmp_path: Path) -> None:
    from training.value import train_value

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = train_value(synth_home.home, uri, horizon_days=180, sufficiency=small_data_rules())
    assert {"kairos", "bgnbd_gamma_gamma", "mbgnbd_gamma_gamma", "last_period"} <= set(run.spend.index)
    assert {"mae", "rmse", "spearman"} <= set(run.spend.columns)
    assert run.spend.loc["kairos", "spearman"] > 0.3
    # kairos against the best baseline of the same run on each spend metric (lower MAE is better)
    for metric, pick in (("mae", min), ("spearman", max)):
        best, iv = run.versus[metric]
        baselines = ("bgnbd_gamma_gamma", "mbgnbd_gamma_gamma", "last_period")
        assert best == pick(baselines, key=lambda b: run.spend.loc[b, metric])
        assert iv.diff == pytest.approx(run.spend.loc["kairos", metric] - run.spend.loc[best, metric])
        assert iv.low <= iv.diff <= iv.high
        assert run.metrics[f"vs_best_baseline_spend_{metric}_low"] == iv.low
    assert len(run.versus_lines) == 2
    # the gate: Kairos is champion only if it beats the best baseline on Spearman (and not worse on MAE)
    assert run.registration is not None and run.served is not None
    if not run.versus["spearman"][1].better():
        assert run.registration.alias == "challenger" and run.served.what == "baseline"
    assert len(run.deciles) >= 5
    assert run.registration is not None and run.clv_registration is not None
    bundle = ClvBundle()
    fetched = bundle.fetch(uri, "clv", "champion", tmp_path / "clv")
    table = bundle.build(fetched.folder, fetched.provenance, None)
    assert {"bgnbd", "mbgnbd", "gamma_gamma"} <= set(table.params)
    customers = ClvBundle.read_customers(fetched.folder).reset_index()
    assert customers["p_alive"].between(0, 1).all() and (customers["expected_spend"] >= 0).all()
    # MBG/NBD does not call every one-time buyer alive.
    assert customers["p_alive"].min() < 1.0
    # the value bundle reads back into both regressors, which predict non-negative amounts
    value = ValueBundle()
    got = value.fetch(uri, "value", "", tmp_path / "value", version=run.registration.version)  # the candidate
    models = value.build(got.folder, got.provenance, None)
    assert models.meta["horizon_days"] == 180 and models.spend.feature_names_ == models.meta["features"]
    rows = latest_snapshot(synth_home.home).read().head(50)[models.meta["features"]].astype(np.float32)
    assert np.all(models.spend.predict(rows) >= 0) and np.all(models.orders.predict(rows) >= 0)
    # a model card goes with each version, with its plots beside it in the run
    client = registry.configure(uri)
    served = run.served.baseline_name if run.served.baseline is not None else "kairos"
    for name, number, candidate in (
        ("value", run.registration.version, "kairos"),  # the candidate, champion or not
        ("value", client.get_model_version_by_alias("value", "champion").version, served),  # what is served
        ("clv", run.clv_registration.version, "clv"),
    ):
        version = client.get_model_version(name, str(number))
        assert version.description.startswith(f"# Model card: {name} (version {version.version})")
        assert f"**{candidate}** (this model)" in version.description and "bgnbd_gamma_gamma" in version.description
    artifacts = {a.path for a in client.list_artifacts(run.run_id, "plots")}
    assert {"plots/deciles.png", "plots/deciles_clv.png", "plots/importance.png", "plots/shap_summary.png"} <= artifacts
    assert {"model_card_value.md", "model_card_clv.md"} <= {a.path for a in client.list_artifacts(run.run_id)}
