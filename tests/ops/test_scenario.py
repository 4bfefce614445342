"""The drift scenario end to end: a churn champion trained as of a date; the same world carries on unchanged
(nothing is retrained) or its customers buy less after that date (synth.shift): the monitor sees the drift
in the purchase features and `kairos retrain --if-needed` retrains through the job and its champion gate."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bundles import registry
from tests.conftest import SynthHome, small_data_rules

SHIFT = date(2025, 7, 1)
POLICY = """
models: [churn]
drift:
  psi_major: 0.25
  max_features_major: 0
  features: [recency_days, orders_30d, orders_90d, orders_180d, monetary_30d, monetary_90d, monetary_180d]
performance: {max_roc_auc_drop: 0.5, retrain_when_baseline_wins: false}
training: {min_positives: 20, min_negatives: 20, min_holdout_per_class: 5}
"""


@pytest.mark.slow
def test_no_change_triggers_nothing_and_a_shift_triggers_a_retrain(synth_home: SynthHome, tmp_path: Path) -> None:
    import shutil

    from cli.main import app
    from features.ingest import ingest
    from features.mapping import load_mapping
    from features.store import build_snapshot
    from ops.retrain import load_policy, retrain_if_needed
    from synth.shift import shift_export
    from training.propensity import churn_task, train_task

    calm_home = tmp_path / "unchanged"  # a copy: the session's synth_home stays read-only
    shutil.copytree(synth_home.home, calm_home)
    shifted = tmp_path / "shifted"
    summary = shift_export(synth_home.raw, tmp_path / "raw_shifted", SHIFT, keep_orders=0.4, price_factor=1.5)
    assert summary.orders_dropped > 0.4 * summary.orders_after
    ingest(tmp_path / "raw_shifted", load_mapping("synthetic"), shifted, now=datetime(2026, 1, 1, tzinfo=UTC))
    build_snapshot(shifted)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = train_task(
        churn_task(), calm_home, uri, sufficiency=small_data_rules(), as_of=datetime(2025, 7, 1, tzinfo=UTC)
    )
    assert run.registration is not None
    if run.registration.alias != "champion":  # the gate served a baseline: monitor the LightGBM model anyway
        registry.promote(uri, "churn", run.registration.version)
    watched = run.registration.version
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY, encoding="utf-8")

    # the same world, carried on: the purchase features have not moved; nothing is retrained
    calm = CliRunner().invoke(
        app,
        [
            "retrain",
            "--if-needed",
            "--policy",
            str(policy_file),
            "--data",
            str(calm_home),
            "--tracking-uri",
            uri,
            "--no-realised",
        ],
    )
    assert calm.exit_code == 0, calm.output
    assert f"churn v{watched}: not retrained (within every threshold of the policy)" in calm.output
    latest = json.loads((calm_home / "monitoring" / "latest.json").read_text(encoding="utf-8"))
    drift = {f["feature"]: f["psi"] for f in latest["models"]["churn"]["drift"]["features"]}
    assert max(drift[f] for f in load_policy(policy_file).drift.features or []) < 0.25

    # customers buy less after the date: drift detected, the job retrains and its gate decides
    report = retrain_if_needed(shifted, uri, load_policy(policy_file), realised=False)
    (decision,) = report.decisions
    assert decision.retrain and "drifted" in decision.reasons[0], decision.line()
    assert re.match(r"registered v\d+ as @", decision.outcome), decision.outcome
    moved = json.loads((shifted / "monitoring" / "latest.json").read_text(encoding="utf-8"))
    # weighted by the model's own split gain, the drift is larger where the behaviour changed
    assert moved["models"]["churn"]["drift"]["psi_weighted"] > latest["models"]["churn"]["drift"]["psi_weighted"]
    html = (shifted / "monitoring" / "monitor.html").read_text(encoding="utf-8")
    assert "What needs attention" in html and "orders_" in html
