"""The gate: Kairos's candidate is served only when it beats the champion and the best baseline; otherwise the
best baseline is registered, served by the API and the export, and labelled as such in every answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from bundles import registry
from bundles.errors import ModelIntegrityError
from bundles.propensity import BASELINE_FILE, PropensityBundle
from features.datasets import LABEL
from features.definitions import NUMERIC_FEATURES
from features.ingest import IDENTITY_MAP_FILE
from features.store import ingested_dir, latest_snapshot
from models.calibration import ProbabilityCalibrator
from models.churn import LightGBMClassifier
from models.intervals import ROC_AUC, paired_bootstrap
from tests.conftest import ORII_SAMPLE, small_data_rules
from training import propensity
from training.gate import Incumbent, decide

# --- the decision, on literal scores -----------------------------------------------------------------------

RNG = np.random.default_rng(0)
Y = (RNG.random(400) < 0.4).astype(int)
NOISE = RNG.normal(size=400)
GOOD = Y + 0.6 * NOISE  # ranks well
FAIR = Y + 1.5 * NOISE  # ranks worse than GOOD, better than chance
BLIND = RNG.normal(size=400)  # knows nothing


def _decide(candidate: np.ndarray, baseline: np.ndarray, incumbent: Incumbent | None) -> Any:
    versus = paired_bootstrap(ROC_AUC, Y, candidate, baseline, seed=0)
    return decide(Y, candidate, "bgnbd", baseline, versus, incumbent)


def test_a_first_candidate_that_does_not_beat_the_baseline_is_not_served() -> None:
    verdict = _decide(BLIND, FAIR, None)
    assert (verdict.served, verdict.candidate_alias) == ("baseline", "challenger")
    assert verdict.line.startswith("serving the bgnbd baseline: kairos does not beat it, roc_auc -")
    assert verdict.line.endswith("; no champion yet")
    # a tie is not a win either: the interval must lie above zero
    assert _decide(FAIR, FAIR, None).served == "baseline"


def test_a_first_candidate_that_beats_the_baseline_is_served() -> None:
    verdict = _decide(GOOD, FAIR, None)
    assert (verdict.served, verdict.candidate_alias) == ("candidate", "champion")
    assert verdict.line.startswith("serving kairos: kairos beats the bgnbd baseline, roc_auc +")


def test_a_candidate_must_also_beat_the_champion() -> None:
    identical = _decide(GOOD, FAIR, Incumbent("3", None, GOOD.copy()))
    assert (identical.served, identical.candidate_alias) == ("incumbent", "challenger")
    assert identical.versus_champion is not None and identical.versus_champion.diff == 0.0
    assert identical.line.startswith("serving champion v3 (kairos): kairos beats the bgnbd baseline")
    assert "the champion beats the bgnbd baseline" in identical.line
    better = _decide(GOOD, FAIR, Incumbent("3", None, FAIR.copy()))
    assert (better.served, better.candidate_alias) == ("candidate", "champion")


def test_a_kairos_champion_that_no_longer_beats_the_baseline_gives_way_to_it() -> None:
    verdict = _decide(BLIND, GOOD, Incumbent("2", None, FAIR.copy()))
    assert (verdict.served, verdict.candidate_alias) == ("baseline", "challenger")
    assert "champion v2 (kairos) does not beat it either" in verdict.line


def test_a_refitted_baseline_does_not_replace_an_equal_baseline_champion() -> None:
    same = _decide(BLIND, FAIR, Incumbent("4", "bgnbd", FAIR.copy()))
    assert same.served == "incumbent"
    assert same.line.startswith("serving champion v4 (the bgnbd baseline): kairos does not beat the bgnbd baseline")
    stronger = _decide(BLIND, GOOD, Incumbent("4", "rfm_score", BLIND.copy()))
    assert stronger.served == "baseline" and "it beats champion v4 (the rfm_score baseline)" in stronger.line


def test_a_champion_that_cannot_be_scored_is_not_relied_on() -> None:
    broken = Incumbent("5", None, None, "the holdout lacks the champion's feature(s) ['x']")
    assert _decide(BLIND, FAIR, broken).served == "baseline"
    verdict = _decide(GOOD, FAIR, broken)
    assert verdict.served == "candidate" and "could not be scored on this holdout" in verdict.line


# --- the job, on the Online Retail II sample ----------------------------------------------------------------
# Two candidates whose outcome is known whatever the data: one fitted on shuffled labels (it knows nothing,
# so it cannot beat a baseline), one fitted on the holdout's own labels (it knows the answer). Test knobs for
# the gate's mechanics, put in place of the job's fit step; never a quality claim.


def _fit_on(frame: pd.DataFrame, labels: np.ndarray, data: Any) -> propensity.PropensityFit:
    features = list(NUMERIC_FEATURES)
    params = {**propensity.MODEL_PARAMS, "min_child_samples": 5}  # a few hundred rows: small leaves
    model = LightGBMClassifier(seed=0, n_estimators=60, **params).fit(frame[features], labels)
    raw = model.predict_proba(data.calibration[features])
    return propensity.PropensityFit(model, ProbabilityCalibrator(method="platt").fit(raw, data.calibration[LABEL]))


def blind_fit(cfg: Any, data: Any, tick: Any) -> propensity.PropensityFit:
    labels = np.random.default_rng(1).permutation(data.train[LABEL].to_numpy())
    return _fit_on(data.train, labels, data)


def oracle_fit(cfg: Any, data: Any, tick: Any) -> propensity.PropensityFit:
    return _fit_on(data.holdout, data.holdout[LABEL].to_numpy(), data)


@dataclass(frozen=True)
class Gated:
    home: Path
    uri: str
    cache: Path
    blind: propensity.PropensityRun
    export: Path


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gated]:
    """A fresh registry where the first churn candidate knows nothing: the gate serves a baseline."""
    from batch.score import score_all
    from features.ingest import ingest
    from features.mapping import load_mapping
    from features.store import build_snapshot

    root = tmp_path_factory.mktemp("gate")
    home = root / "home"
    ingest(ORII_SAMPLE, load_mapping("online_retail_ii"), home, now=datetime(2026, 1, 1, tzinfo=UTC))
    build_snapshot(home)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(propensity, "fit", blind_fit)
        run = propensity.train_task(propensity.churn_task(), home, uri, sufficiency=small_data_rules())
    export = score_all(home, uri, root / "scores.parquet", compiled=False, reasons=True).path
    yield Gated(home, uri, root / "cache", run, export)


def test_a_candidate_that_knows_nothing_registers_and_serves_the_best_baseline(gated: Gated) -> None:
    run = gated.blind
    assert run.registration is not None and run.registration.alias == "challenger"  # kept for inspection
    assert run.served is not None and run.served.what == "baseline" and run.served.baseline is not None
    best = run.best_baseline
    assert run.served.baseline_name == best and best in ("rfm_score", "rfm_logistic", "bgnbd")
    assert run.decision.startswith(f"serving the {best} baseline: kairos does not beat it, roc_auc -")
    assert run.decision.endswith("no champion yet") and "no champion yet" not in run.registration.reason
    client = MlflowClient(tracking_uri=gated.uri)
    champion = client.get_model_version_by_alias("churn", "champion")
    assert str(champion.version) == run.served.baseline.version != run.registration.version
    assert champion.tags[registry.TAG_KIND] == f"baseline:{best}"
    assert champion.tags[registry.TAG_DECISION] == f"champion: {run.decision}"
    assert f"**Served:** {run.decision}" in run.card and f"**Served:** {run.decision}" in champion.description


def test_the_baseline_bundle_round_trips_and_refuses_tampering(gated: Gated, tmp_path: Path) -> None:
    bundle = PropensityBundle()
    fetched = bundle.fetch(gated.uri, "churn", "champion", tmp_path / "ok")
    best = gated.blind.best_baseline
    assert fetched.provenance.metadata["model_kind"] == f"baseline:{best}"
    bundle.verify_cached(fetched.folder, fetched.provenance)
    model = bundle.build(fetched.folder, fetched.provenance, list(NUMERIC_FEATURES))
    assert model.baseline == best and model.engine == "baseline" and model.population is not None
    assert not any(fetched.folder.rglob("*.pkl")) and (fetched.folder / BASELINE_FILE).is_file()
    # the served baseline scores the holdout exactly as the job evaluated it
    data = propensity.build_data(
        propensity.PropensityConfig(propensity.churn_task(), gated.uri, sufficiency=small_data_rules()),
        propensity.Context.open(gated.home),
        lambda step, frac: None,
    )
    np.testing.assert_allclose(
        ROC_AUC(data.holdout[LABEL].to_numpy(), model.score(data.holdout)),
        gated.blind.table.loc[best, "roc_auc"],
        rtol=1e-12,
    )
    # an edited coefficient is caught, in the registry's copy and in a cached copy
    path = fetched.folder / BASELINE_FILE
    state = json.loads(path.read_text(encoding="utf-8"))
    state["kairos"]["bands"] = [0.01, 0.02]
    path.write_text(json.dumps(state), encoding="utf-8")
    with pytest.raises(ModelIntegrityError, match="cached"):
        bundle.verify_cached(fetched.folder, fetched.provenance)
    source = Path(
        MlflowClient(tracking_uri=gated.uri)
        .get_model_version_download_uri("churn", gated.blind.served.baseline.version)  # type: ignore[union-attr]
        .removeprefix("file://")
    )
    stored = next(source.rglob(BASELINE_FILE))
    original = stored.read_bytes()
    try:
        stored.write_text(json.dumps(state), encoding="utf-8")
        with pytest.raises(ModelIntegrityError, match="altered since registration"):
            bundle.fetch(gated.uri, "churn", "champion", tmp_path / "bad")
    finally:
        stored.write_bytes(original)


def _client(gated: Gated) -> TestClient:
    from serving.app import create_app
    from serving.settings import Settings

    settings = Settings(
        data_home=gated.home,
        tracking_uri=gated.uri,
        model_cache_dir=gated.cache,
        recs_model=None,
        clock=latest_snapshot(gated.home).as_of,  # the export's instant (the snapshot's as-of): one clock
        environment="development",
    )
    return TestClient(create_app(settings), headers={"X-API-Key": "kairos-demo-key"})


def test_the_api_and_the_export_serve_the_baseline_and_say_so(gated: Gated) -> None:
    best = gated.blind.best_baseline
    frame = pd.read_parquet(gated.export).set_index("customer_key")
    assert set(frame["churn_model"]) == {f"baseline:{best}"}
    ids = pd.read_parquet(ingested_dir(gated.home) / IDENTITY_MAP_FILE)
    ids = ids[ids["customer_key"].isin(frame.index)].head(150)
    with _client(gated) as client:
        body = client.post(
            "/v1/scores", json={"customer_ids": ids["customer_id"].astype(str).tolist(), "reasons": True}
        )
    assert body.status_code == 200, body.text
    answer = body.json()
    churn = next(m for m in answer["models"] if m["name"] == "churn")
    assert churn == {
        "name": "churn",
        "version": gated.blind.served.baseline.version,  # type: ignore[union-attr]
        "alias": "champion",
        "source": "model",
        "kind": "baseline",
        "baseline": best,
    }
    # the same probabilities and bands as the export, and reasons in words from the baseline's own inputs
    expected = frame.loc[ids["customer_key"]]
    got = [i["probabilities"]["churn"] for i in answer["items"]]
    np.testing.assert_allclose(
        [np.nan if p is None else p for p in got], expected["churn_probability"].to_numpy(), rtol=1e-6
    )
    assert [i["bands"]["churn"] for i in answer["items"]] == [
        b if isinstance(b, str) else None for b in expected["churn_band"]
    ]
    reasons = [r for i in answer["items"] for r in i["reasons"]["churn"]]
    inputs = {"recency_days", "orders_365d", "monetary_365d", "orders_lifetime", "tenure_days"}
    assert reasons and {r["feature"] for r in reasons} <= inputs and all(r["contribution"] > 0 for r in reasons)
    # the export words the same drivers as the API, customer by customer
    columns = [f"churn_reason_{k}" for k in (1, 2, 3)]
    exported = [[t for t in row if isinstance(t, str) and t] for row in expected[columns].itertuples(index=False)]
    assert exported == [[r["text"] for r in i["reasons"]["churn"]] for i in answer["items"]]


def test_a_candidate_that_beats_the_baseline_takes_over_and_an_identical_retrain_does_not(gated: Gated) -> None:
    ctx = propensity.Context.open(gated.home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(propensity, "fit", oracle_fit)
        won = propensity.train_task(
            propensity.churn_task(), gated.home, gated.uri, sufficiency=small_data_rules(), context=ctx
        )
        again = propensity.train_task(
            propensity.churn_task(), gated.home, gated.uri, sufficiency=small_data_rules(), context=ctx
        )
    assert won.registration is not None and won.registration.alias == "champion", won.decision
    assert won.served is not None and won.served.what == "candidate" and won.served.baseline is None
    assert won.decision.startswith(f"serving kairos: kairos beats the {won.best_baseline} baseline, roc_auc +")
    assert f"and champion v{gated.blind.served.baseline.version} (the " in won.decision  # type: ignore[union-attr]
    client = MlflowClient(tracking_uri=gated.uri)
    assert str(client.get_model_version_by_alias("churn", "champion").version) == won.registration.version
    assert registry.TAG_KIND not in client.get_model_version("churn", won.registration.version).tags
    # the same candidate again: +0.0000 against the champion is not a win; the champion stays
    assert again.registration is not None and again.registration.alias == "challenger"
    assert again.served is not None and again.served.what == "incumbent"
    assert again.decision.startswith(f"serving champion v{won.registration.version} (kairos): ")
    assert f"but not champion v{won.registration.version} (kairos), +0.0000 [+0.0000, +0.0000]" in again.decision
    assert str(client.get_model_version_by_alias("churn", "champion").version) == won.registration.version
