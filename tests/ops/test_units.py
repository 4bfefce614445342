"""The retrain decision and policy, the nightly run record and its resume, the monitor's gauges."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from features.errors import InputDataError, KairosError
from ops import nightly
from ops.retrain import RetrainPolicy, decide, load_policy
from serving.monitoring import MonitoringCollector


def _figures(psis: dict[str, float], kairos: float = 0.80, recorded: float = 0.80, age: float = 3.0) -> dict[str, Any]:
    return {
        "version": "4",
        "age_days": age,
        "drift": {"features": [{"feature": k, "psi": v} for k, v in psis.items()], "psi_weighted": 0.05},
        "performance": {
            "roc_auc": {"kairos": kairos, "rfm_score": 0.70},
            "recorded_roc_auc": recorded,
            "best_baseline": "rfm_score",
        },
    }


def test_the_decision_names_each_reason_and_only_counts_the_policys_features() -> None:
    policy = RetrainPolicy.model_validate({"drift": {"max_features_major": 0, "features": ["orders_90d"]}})
    calm = decide("churn", _figures({"sends_email_90d": 3.0, "orders_90d": 0.05}), policy)
    assert not calm.retrain and "within every threshold" in calm.line()
    moved = decide("churn", _figures({"sends_email_90d": 3.0, "orders_90d": 0.4}), policy)
    assert moved.retrain and "orders_90d 0.40" in moved.reasons[0] and "sends_email" not in moved.line()
    worse = decide("churn", _figures({}, kairos=0.70, recorded=0.80), policy)
    assert worse.retrain and "0.100 below the recorded 0.800" in worse.reasons[0]
    beaten = decide("churn", _figures({}, kairos=0.69), policy)
    assert any("rfm_score does as well" in r for r in beaten.reasons)
    weighted = RetrainPolicy.model_validate({"drift": {"max_weighted_psi": 0.04}})
    assert "weighted by the model's gain 0.050" in decide("churn", _figures({}), weighted).reasons[0]
    old = decide("churn", _figures({}, age=100), RetrainPolicy.model_validate({"schedule": {"max_age_days": 90}}))
    assert old.retrain and "100 days old" in old.reasons[0]


def test_a_policy_with_an_unknown_key_or_model_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("models: [churn]\ndrift: {psi_major: 0.3}\nschedule: {max_age_days: 30}\n", encoding="utf-8")
    policy = load_policy(good)
    assert policy.models == ["churn"] and policy.drift.psi_major == 0.3 and policy.drift.max_features_major == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("drift: {psi_majr: 0.3}\n", encoding="utf-8")
    with pytest.raises(InputDataError, match="psi_majr"):
        load_policy(bad)
    bad.write_text("models: [chrun]\n", encoding="utf-8")
    with pytest.raises(InputDataError, match="chrun"):
        load_policy(bad)


def _config(tmp_path: Path, **kw: Any) -> nightly.NightlyConfig:
    export = tmp_path / "export"
    export.mkdir(exist_ok=True)
    (export / "orders.csv").write_text("order_id\n1\n", encoding="utf-8")
    return nightly.NightlyConfig(tmp_path / "home", export, "synthetic", "sqlite:///unused.db", **kw)


def test_nightly_resumes_at_the_step_that_failed_and_does_not_repeat_a_finished_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    failures = {"compile": 1}

    def fake(name: str) -> nightly.StepFn:
        def step(cfg: nightly.NightlyConfig) -> str:
            calls.append(name)
            if failures.get(name):
                failures[name] -= 1
                raise RuntimeError(f"{name} broke")
            return f"{name} ok"

        return step

    for name in nightly.STEPS:
        monkeypatch.setitem(nightly.STEP_FUNCTIONS, name, fake(name))
    cfg = _config(tmp_path)
    with pytest.raises(RuntimeError, match="compile broke"):
        nightly.run_nightly(cfg)
    assert calls == ["ingest", "features", "publish", "monitor", "retrain", "compile"]
    record_file = next((tmp_path / "home" / nightly.RECORDS_DIR).glob("*.json"))
    record = json.loads(record_file.read_text(encoding="utf-8"))
    statuses = {s["name"]: s["status"] for s in record["steps"]}
    assert record["status"] == "failed" and statuses["compile"] == "failed" and statuses["score"] == "pending"
    assert (
        statuses["retrain"] == "done"
        and "compile broke" in next(s for s in record["steps"] if s["name"] == "compile")["error"]
    )
    assert set(record["inputs_sha256"]) == {"orders.csv", "<mapping>"}

    calls.clear()
    run = nightly.run_nightly(cfg)
    assert calls == ["compile", "score"] and run.resumed_from == "compile" and run.ok
    assert run.record["attempts"] == 2 and all(s["status"] == "done" for s in run.record["steps"])

    calls.clear()
    again = nightly.run_nightly(cfg)
    assert calls == [] and again.ok and again.ran == []
    assert len(nightly.run_nightly(cfg, force=True).ran) == len(nightly.STEPS)

    (cfg.input_dir / "orders.csv").write_text("order_id\n1\n2\n", encoding="utf-8")  # a new export: a new run
    calls.clear()
    nightly.run_nightly(cfg)
    assert calls == list(nightly.STEPS)
    assert len(list((tmp_path / "home" / nightly.RECORDS_DIR).glob("*.json"))) == 2


def test_nightly_records_skipped_steps_with_the_reason_and_refuses_unknown_ones(tmp_path: Path) -> None:
    cfg = _config(tmp_path, skip=frozenset({"ingset"}))
    with pytest.raises(KairosError, match="ingset"):
        nightly.run_nightly(cfg)
    # the real publish step: without Redis it is skipped; the real monitor then stops on the missing snapshot
    with pytest.raises(KairosError, match="no feature snapshot"):
        nightly.run_nightly(_config(tmp_path, skip=frozenset({"ingest", "features"})))
    record = json.loads(next((tmp_path / "home" / nightly.RECORDS_DIR).glob("*.json")).read_text(encoding="utf-8"))
    by_name = {s["name"]: s for s in record["steps"]}
    assert by_name["ingest"]["status"] == "skipped" and by_name["ingest"]["detail"] == "skipped by --skip"
    assert by_name["publish"]["status"] == "skipped" and "in-process" in by_name["publish"]["detail"]


def test_one_nightly_at_a_time_per_data_home(tmp_path: Path) -> None:
    import fcntl

    cfg = _config(tmp_path)
    folder = cfg.data_home / nightly.RECORDS_DIR
    folder.mkdir(parents=True)
    with (folder / nightly.LOCK_FILE).open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running nightly holds it
        with pytest.raises(KairosError, match="one run at a time"):
            nightly.run_nightly(cfg)
    assert not list(folder.glob("*.json"))  # refused before any record was written


def test_the_monitor_gauges_read_the_latest_summary(tmp_path: Path) -> None:
    path = tmp_path / "latest.json"
    registry = CollectorRegistry()
    registry.register(MonitoringCollector(path))
    assert b"kairos_monitor_summary_loaded 0.0" in generate_latest(registry)
    summary = {
        "generated_at_unix": 1_800_000_000.0,
        "models": {
            "churn": {
                "attention": True,
                "age_days": 12.5,
                "drift": {
                    "psi_max": 0.41,
                    "psi_weighted": 0.12,
                    "features_major": 1,
                    "features_moderate": 2,
                    "features": [{"feature": "orders_90d", "psi": 0.41, "missing_rate_current": 0.0}],
                },
                "performance": {"roc_auc": {"kairos": 0.77, "bgnbd": 0.79}, "recorded_roc_auc": 0.8},
            }
        },
        "scores": {"models": {"churn": {"psi": 0.3, "ks": 0.2}}},
    }
    path.write_text(json.dumps(summary), encoding="utf-8")
    text = generate_latest(registry).decode()
    for line in (
        "kairos_monitor_summary_loaded 1.0",
        'kairos_monitor_attention{model="churn"} 1.0',
        'kairos_monitor_feature_psi{feature="orders_90d",model="churn"} 0.41',
        'kairos_monitor_features_drifted{level="major",model="churn"} 1.0',
        'kairos_monitor_feature_psi_weighted{model="churn"} 0.12',
        'kairos_monitor_realised_roc_auc{model="churn",scorer="bgnbd"} 0.79',
        'kairos_monitor_recorded_roc_auc{model="churn"} 0.8',
        'kairos_monitor_champion_age_days{model="churn"} 12.5',
        'kairos_monitor_score_psi{model="churn"} 0.3',
    ):
        assert line in text, line
    path.write_text("{not json", encoding="utf-8")
    assert "kairos_monitor_summary_loaded 0.0" in generate_latest(registry).decode()


def test_score_drift_between_exports_is_added_to_the_latest_summary(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    from ops.monitor import LATEST_FILE, MONITORING_DIR, export_path, update_score_shift

    rng = np.random.default_rng(3)
    before = rng.beta(2, 5, 3000)
    for day, scores in ((1, before), (2, rng.beta(5, 2, 3000))):
        path = export_path(tmp_path, datetime(2026, 1, day, tzinfo=UTC))
        path.parent.mkdir(parents=True)
        frame = pd.DataFrame({"customer_key": [f"k{i}" for i in range(3000)], "churn_probability": scores})
        frame["churn_probability"] = frame["churn_probability"].where(np.arange(3000) % 10 > 0)  # outside: empty
        frame.to_parquet(path)
    assert update_score_shift(tmp_path) == ""  # no summary yet: nothing to add to
    latest = tmp_path / MONITORING_DIR / LATEST_FILE
    latest.parent.mkdir()
    latest.write_text(json.dumps({"models": {}, "attention": ["churn: something else"]}), encoding="utf-8")
    said = update_score_shift(tmp_path)
    assert said.startswith("churn: its scores moved between exports (PSI")
    summary = json.loads(latest.read_text(encoding="utf-8"))
    shift = summary["scores"]["models"]["churn"]
    assert shift["level"] == "major" and shift["rows_previous"] == 2700 and shift["mean_current"] > 0.6
    assert summary["attention"][0] == "churn: something else" and len(summary["attention"]) == 2
    update_score_shift(tmp_path)  # again: the score lines are replaced, not added twice
    assert len(json.loads(latest.read_text(encoding="utf-8"))["attention"]) == 2
