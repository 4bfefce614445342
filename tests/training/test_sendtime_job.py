"""The send-time job on the synthetic world: planted preferences found, bundle registered and reloaded."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from bundles import registry
from bundles.sendtime import MODEL_NAME, SendTimeBundle
from features.store import open_tables
from models.decisioning.policy import ContactPolicy, contact_states
from synth.checks import SendTimeTruth
from tests.conftest import SynthHome
from training.sendtime import SELECTION_METRIC, SendTimeRun, load_inputs, train_sendtime


@pytest.fixture(scope="module")
def run(synth_home: SynthHome, tmp_path_factory: pytest.TempPathFactory) -> tuple[SendTimeRun, str]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow_sendtime') / 'mlflow.db'}"
    return train_sendtime(
        synth_home.home, uri, planted_check=SendTimeTruth(synth_home.raw / "truth", synth_home.home)
    ), uri


def test_planted_preference_clearly_beats_one_hour_for_everyone(run: tuple[SendTimeRun, str]) -> None:
    planted = run[0].planted
    assert planted is not None
    table = planted.set_index(["channel", "group"])
    # measured on this world: e-mail 0.85 vs 0.32 (with sends), SMS 0.70 vs 0.30, push 0.57 vs 0.25
    for channel, margin in (("email", 0.3), ("sms", 0.2), ("push", 0.15)):
        row = table.loc[(channel, "with_sends")]
        assert row["kairos"] > row["best_single_hour"] + margin, channel
    everyone = table.loc[("email", "all")]
    assert everyone["kairos"] > everyone["best_single_hour"] + 0.2


def test_next_engagement_hour_beats_the_population(run: tuple[SendTimeRun, str]) -> None:
    metrics = run[0].metrics
    assert metrics[SELECTION_METRIC] > metrics["next_hour_population_hit_1h"] + 0.2
    assert metrics["next_hour_log_lik"] > metrics["next_hour_population_log_lik"]


def test_bundle_is_registered_verified_and_reloads(run: tuple[SendTimeRun, str], tmp_path: Path) -> None:
    result, uri = run
    assert result.registration is not None and result.registration.alias == registry.CHAMPION
    fetched = registry.fetch_bundle(uri, MODEL_NAME, registry.CHAMPION, tmp_path)
    loaded = SendTimeBundle.read(fetched.path)
    model, channel, manifest = loaded.model, loaded.channels, loaded.manifest
    assert manifest["model"] == MODEL_NAME and manifest["customers"] == len(model.keys_)
    assert {p.name for p in (fetched.path / "sendtime").iterdir()} >= {"meta.json", "population_curves.parquet"}
    key = str(model.keys_[model.own_[:, 0]][0])
    now = pd.Timestamp(manifest["as_of"]).to_pydatetime() + timedelta(hours=1)
    choice = model.best_slots(key, "email", now)
    assert choice.source == "customer" and choice.best_at is not None
    assert channel.scores(key, ["email"])[0].sends > 0


def test_policy_on_the_real_tables_never_permits_an_opted_out_channel(synth_home: SynthHome) -> None:
    inputs = load_inputs(synth_home.home)
    now = inputs.latest()
    policy = ContactPolicy()
    states = contact_states(
        inputs.consents, inputs.messages, inputs.timezones, now, policy.config.longest_window_hours()
    )
    consents = open_tables(synth_home.home)["consents"].execute()
    consents = consents[consents["consented_at"] <= pd.Timestamp(now)].sort_values(["consented_at", "status"])
    last = consents.groupby(["customer_key", "channel"])["status"].last()  # opt_out sorts after opt_in on a tie
    keys = list(states)
    for channel in ("email", "sms", "push"):
        frame = policy.may_contact_batch([states[k] for k in keys], channel, now)
        status = last.reindex(pd.MultiIndex.from_arrays([keys, [channel] * len(keys)])).to_numpy()
        allowed = frame["allowed"].to_numpy()
        assert not allowed[status != "opt_in"].any()
        assert allowed.sum() > 0


def test_eval_entry_prints_the_figures(synth_home: SynthHome, capsys: pytest.CaptureFixture[str]) -> None:
    """bench/sendtime_eval.py, the figures of docs/decisioning.md."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "bench" / "sendtime_eval.py"
    spec = importlib.util.spec_from_file_location("sendtime_eval", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--data", str(synth_home.home), "--truth", str(synth_home.raw / "truth")])
    out = capsys.readouterr().out
    assert "best_single_hour" in out and "Kairos habit" in out
