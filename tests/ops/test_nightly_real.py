"""The nightly pipeline with its real steps on the committed Online Retail II sample: interrupted at the score
export, a rerun resumes there and finishes; the monitor's summary is where the API reads it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ORII_SAMPLE, small_data_rules


@pytest.mark.slow
def test_nightly_runs_the_real_steps_and_resumes_after_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features.ingest import ingest
    from features.mapping import load_mapping
    from features.store import build_snapshot
    from ops import nightly
    from training.propensity import churn_task, train_task

    now = datetime(2026, 1, 1, tzinfo=UTC)
    home, uri = tmp_path / "home", f"sqlite:///{tmp_path / 'mlflow.db'}"
    ingest(ORII_SAMPLE, load_mapping("online_retail_ii"), home, now=now)
    build_snapshot(home)
    train_task(churn_task(), home, uri, sufficiency=small_data_rules())

    real_score = nightly.STEP_FUNCTIONS["score"]
    failures = [RuntimeError("the export's disk filled up")]

    def score_once_broken(cfg: nightly.NightlyConfig) -> str:
        if failures:
            raise failures.pop()
        return real_score(cfg)

    monkeypatch.setitem(nightly.STEP_FUNCTIONS, "score", score_once_broken)
    cfg = nightly.NightlyConfig(home, ORII_SAMPLE, "online_retail_ii", uri, now=now, skip=frozenset({"compile"}))
    with pytest.raises(RuntimeError, match="disk filled"):
        nightly.run_nightly(cfg)
    run = nightly.run_nightly(cfg)
    assert run.resumed_from == "score" and run.ran == ["score"] and run.ok
    status = {s["name"]: s["status"] for s in run.record["steps"]}
    assert status == {
        "ingest": "done",
        "features": "done",
        "publish": "skipped",
        "monitor": "done",
        "retrain": "skipped",
        "compile": "skipped",
        "score": "done",
    }
    (export,) = (home / "exports").glob("*/scores.parquet")
    scores = pd.read_parquet(export)
    assert "churn_probability" in scores.columns and scores["churn_probability"].notna().any()
    latest = json.loads((home / "monitoring" / "latest.json").read_text(encoding="utf-8"))
    assert latest["models"]["churn"]["drift"]["features"]  # the champion's profile was compared
    assert run.record["inputs_sha256"]["<mapping>"] == "built-in:online_retail_ii"

    # the commands: a finished export is not run again; the monitor prints its table and what needs attention
    from typer.testing import CliRunner

    from cli.main import app

    args = ["--input", str(ORII_SAMPLE), "--mapping", "online_retail_ii", "--data", str(home), "--tracking-uri", uri]
    again = CliRunner().invoke(app, ["nightly", *args, "--dev", "--skip", "compile"])
    assert again.exit_code == 0 and "nothing to do" in again.output, again.output
    shown = CliRunner().invoke(app, ["monitor", "--data", str(home), "--tracking-uri", uri, "--no-realised"])
    assert shown.exit_code in (0, 1) and "churn" in shown.output and "monitor.html" in shown.output, shown.output
    assert (shown.exit_code == 1) == ("attention:" in shown.output)
