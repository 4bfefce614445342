"""Model card: one row per model, best values marked, calibration and plots shown, limitations derived."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from models.calibration import ProbabilityCalibrator
from training.model_card import DataSummary, ModelCard, metrics_table, render_model_card

METRICS = {
    "lightgbm": {"roc_auc": 0.81, "pr_auc": 0.52, "log_loss": 0.41, "brier": 0.13, "ece": 0.012, "lift_top10": 2.9},
    "rfm_logistic": {"roc_auc": 0.74, "pr_auc": 0.43, "log_loss": 0.47, "brier": 0.15, "ece": 0.02, "lift_top10": 2.1},
    "rfm_score": {
        "roc_auc": 0.70,
        "pr_auc": 0.39,
        "log_loss": math.nan,
        "brier": math.nan,
        "ece": math.nan,
        "lift_top10": 1.9,
    },
    "bg_nbd": {"roc_auc": 0.76, "pr_auc": 0.45, "log_loss": 0.45, "brier": 0.14, "ece": 0.03, "lift_top10": 2.3},
}


def _card(**changes: object) -> ModelCard:
    card = ModelCard(
        name="churn",
        target="No order in the 90 days after the cutoff, among customers who ordered in the 365 days before it.",
        data=DataSummary(
            train_cutoffs=[datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC)],
            valid_cutoff="2025-09-01",
            holdout_cutoff=datetime(2025, 12, 1, tzinfo=UTC),
            rows={"train": 12000, "valid": 2500, "holdout": 2600},
            positives={"train": 4000, "valid": 800, "holdout": 850},
            data_hash="abc123",
        ),
        metrics=METRICS,
        candidate="lightgbm",
        primary_metric="roc_auc",
        version=3,
        alias="champion",
        decision="roc_auc 0.8100 beats champion v2 (0.7900).",
        top_features=[("recency_days", 300.0), ("orders_90d", 100.0)],
        descriptions={"recency_days": "days since the last order", "orders_90d": "orders in the last 90 days"},
        plots={"Cumulative gains": "plots/gains.png", "Calibration": "plots/calibration.png"},
        limitations=["Trained on one retailer's data."],
        params={"learning_rate": 0.05},
        run_id="run42",
    )
    return replace(card, **changes)  # type: ignore[arg-type]


def test_metrics_table_one_row_per_model_best_in_bold() -> None:
    table = metrics_table(METRICS, "lightgbm").splitlines()
    assert table[0] == "| model | roc_auc | pr_auc | log_loss | brier | ece | lift_top10 |"
    assert len(table) == 2 + len(METRICS)
    model_row = table[2]
    assert model_row.startswith("| **lightgbm** (this model) |")
    assert model_row.count("**0.") == 5  # best on roc, pr, log loss (lower), brier, ece (lower)
    assert "| n/a |" in table[4]  # the RFM score is a ranking: no log loss
    assert "**0.4500**" not in table[5]  # BG/NBD's log loss is not the best


def test_card_sections() -> None:
    text = render_model_card(_card())
    assert text.startswith("# Model card: churn (version 3)")
    assert "**Decision:** @champion. roc_auc 0.8100 beats champion v2 (0.7900)." in text
    assert "- Training: 2 cutoffs from 2025-01-01 to 2025-06-01." in text
    assert "| holdout | 2,600 | 850 | 32.7% |" in text
    assert "![Cumulative gains](plots/gains.png)" in text
    assert "| 1 | `recency_days` | days since the last order | 75.0% |" in text
    assert "- Trained on one retailer's data." in text
    assert "None: the scores are not calibrated" in text


def test_calibration_section_from_a_fitted_calibrator() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, 2000)
    cal = ProbabilityCalibrator(method="auto").fit(p, rng.binomial(1, p))
    text = render_model_card(_card(calibration=cal.to_dict()))
    assert f"Method: **{cal.method_}**, fitted on 2000 validation rows." in text
    assert "Chosen by out-of-fold log loss within the validation window: isotonic " in text


def test_limitations_follow_from_the_numbers() -> None:
    worse = {**METRICS, "lightgbm": {**METRICS["lightgbm"], "roc_auc": 0.75, "ece": 0.08}}
    data = replace(_card().data, positives={"train": 50, "valid": 10, "holdout": 12})
    text = render_model_card(_card(metrics=worse, data=data, limitations=()))
    assert "expected calibration error 0.080 on the holdout is above the 0.05 target" in text
    assert "The baseline bg_nbd beats this model on roc_auc (0.7600 against 0.7500)." in text
    assert "rfm_logistic beats" not in text
    assert "Only 12 positives in the holdout" in text
    only_rfm = render_model_card(_card(metrics=worse, baselines=["rfm_logistic", "rfm_score"]))
    assert "bg_nbd beats" not in only_rfm
    clean = render_model_card(_card(limitations=()))
    assert "- None recorded." in clean


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="candidate"):
        render_model_card(_card(candidate="xgboost"))
    with pytest.raises(ValueError, match="baselines"):
        render_model_card(_card(baselines=["xgboost"]))
    with pytest.raises(ValueError, match="relative"):
        render_model_card(_card(plots={"Gains": "/tmp/gains.png"}))
    with pytest.raises(ValueError, match="relative"):
        render_model_card(_card(plots={"Gains": "../gains.png"}))


def test_the_interval_against_the_best_baseline_is_shown_under_the_metrics() -> None:
    line = "kairos is not significantly better than bgnbd: +0.0040 roc_auc [-0.0030, +0.0110]"
    text = render_model_card(_card(comparisons=[line]))
    assert f"- {line}" in text
    assert text.index("paired bootstrap 95 %") < text.index("## Calibration")
    assert "paired bootstrap" not in render_model_card(_card())
