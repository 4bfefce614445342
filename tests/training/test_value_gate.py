"""The value gate: Kairos's spend model is served only when it beats the champion and the best baseline (Spearman
of spend, not significantly worse on MAE); otherwise the best baseline is registered, served by the API and the
export, and labelled as such."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
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
from bundles.value import BASELINE_FILE, ValueBundle
from features.datasets import LABEL, ORDERS_LABEL
from features.definitions import NUMERIC_FEATURES
from features.ingest import IDENTITY_MAP_FILE
from features.store import ingested_dir, latest_snapshot
from models.baselines import ValueBaseline
from models.intervals import SPEARMAN
from models.value import LightGBMRegressor
from tests.conftest import ORII_SAMPLE, small_data_rules
from training import value
from training.propensity import Context

HORIZON = 90


def test_a_better_ranking_with_a_significantly_larger_error_does_not_win() -> None:
    from models.intervals import MAE, paired_bootstrap
    from training.gate import decide

    rng = np.random.default_rng(0)
    y = rng.gamma(0.5, 200.0, 500)
    baseline = y * rng.lognormal(0.0, 0.8, 500)  # ranks fairly, errs moderately
    candidate = 10.0 * y  # ranks perfectly, errs by nine times the spend
    versus = paired_bootstrap(SPEARMAN, y, candidate, baseline, seed=0)
    guard = paired_bootstrap(MAE, y, candidate, baseline, seed=0)
    assert versus.better() and guard.worse()
    kw: dict[str, Any] = {"metric": SPEARMAN, "metric_name": "spearman"}
    verdict = decide(y, candidate, "last_period", baseline, versus, None, guard=("last_period", guard), **kw)
    assert (verdict.served, verdict.candidate_alias) == ("baseline", "challenger")
    assert "and is significantly worse than the last_period baseline on mae, +" in verdict.line
    # without the larger error, the same ranking wins
    assert decide(y, candidate, "last_period", baseline, versus, None, **kw).served == "candidate"


# Two candidates whose outcome is known whatever the data: one fitted on shuffled labels (it knows nothing), one
# fitted on the holdout's own labels (it knows the answer). Test knobs for the gate's mechanics, put in place of
# the job's fit step; never a quality claim.


def _fit_on(frame: pd.DataFrame, spend: np.ndarray, orders: np.ndarray) -> value.ValueFit:
    features = list(NUMERIC_FEATURES)
    small = {"n_estimators": 40, "min_child_samples": 5, "seed": 0, "n_jobs": 1}
    return value.ValueFit(
        LightGBMRegressor(objective="tweedie", **small).fit(frame[features], spend),  # type: ignore[arg-type]
        LightGBMRegressor(objective="poisson", **small).fit(frame[features], orders),  # type: ignore[arg-type]
    )


def blind_fit(cfg: Any, data: Any, tick: Any) -> value.ValueFit:
    order = np.random.default_rng(1).permutation(len(data.train))
    return _fit_on(data.train, data.train[LABEL].to_numpy()[order], data.train[ORDERS_LABEL].to_numpy()[order])


def oracle_fit(cfg: Any, data: Any, tick: Any) -> value.ValueFit:
    return _fit_on(data.holdout, data.holdout[LABEL].to_numpy(), data.holdout[ORDERS_LABEL].to_numpy())


def three_cutoffs(*args: Any, **kwargs: Any) -> Any:
    """The job's cutoff plan with only its last three training cutoffs: a third of the feature builds (a test
    knob for speed; the gate's mechanics do not depend on how many windows the candidate learnt from)."""
    plan = PLAN_CUTOFFS(*args, **kwargs)
    return replace(plan, train=plan.train[-3:])


PLAN_CUTOFFS = value.plan_cutoffs


@dataclass(frozen=True)
class Gated:
    home: Path
    uri: str
    cache: Path
    ctx: Context
    blind: value.ValueRun
    export: Path


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gated]:
    """A fresh registry where the first value candidate knows nothing: the gate serves a baseline."""
    from batch.score import score_all
    from features.ingest import ingest
    from features.mapping import load_mapping
    from features.store import build_snapshot

    root = tmp_path_factory.mktemp("value-gate")
    home = root / "home"
    ingest(ORII_SAMPLE, load_mapping("online_retail_ii"), home, now=datetime(2026, 1, 1, tzinfo=UTC))
    build_snapshot(home)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    ctx = Context.open(home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(value, "fit", blind_fit)
        mp.setattr(value, "plan_cutoffs", three_cutoffs)
        run = value.train_value(home, uri, horizon_days=HORIZON, sufficiency=small_data_rules(), context=ctx)
    export = score_all(home, uri, root / "scores.parquet", compiled=False).path
    yield Gated(home, uri, root / "cache", ctx, run, export)


def test_a_value_candidate_that_knows_nothing_registers_and_serves_the_best_baseline(gated: Gated) -> None:
    run = gated.blind
    assert run.registration is not None and run.registration.alias == "challenger"  # kept for inspection
    assert run.served is not None and run.served.what == "baseline" and run.served.baseline is not None
    best, iv = run.versus["spearman"]
    assert run.served.baseline_name == best and best in value.SPEND_BASELINES
    assert not iv.better()
    assert run.decision.startswith(f"serving the {best} baseline: kairos does not beat it, spearman ")
    assert run.decision.endswith("no champion yet")
    client = MlflowClient(tracking_uri=gated.uri)
    champion = client.get_model_version_by_alias("value", "champion")
    assert str(champion.version) == run.served.baseline.version != run.registration.version
    assert champion.tags[registry.TAG_KIND] == f"baseline:{best}"
    assert champion.tags[registry.TAG_DECISION] == f"champion: {run.decision}"
    assert f"**Served:** {run.decision}" in champion.description
    # each version has its own card: the served baseline's names it as the model, the candidate's names kairos
    assert champion.description.startswith(f"# Model card: value (version {champion.version})")
    assert f"**{best}** (this model)" in champion.description
    assert "**kairos** (this model)" in client.get_model_version("value", run.registration.version).description
    # the clv table is not gated against Kairos: the first one is served, and says why
    assert run.clv_registration is not None and run.clv_registration.alias == "champion"


def test_the_value_baseline_bundle_round_trips_and_refuses_tampering(gated: Gated, tmp_path: Path) -> None:
    bundle = ValueBundle()
    fetched = bundle.fetch(gated.uri, "value", "champion", tmp_path / "ok")
    best = gated.blind.served.baseline_name  # type: ignore[union-attr]
    model = bundle.build(fetched.folder, fetched.provenance, list(NUMERIC_FEATURES))
    assert model.baseline == best and model.model_kind == f"baseline:{best}" and model.horizon_days == HORIZON
    assert model.spend is None and not any(fetched.folder.rglob("*.pkl"))
    # the served baseline scores the holdout exactly as the job evaluated it
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(value, "plan_cutoffs", three_cutoffs)
        data = value.build_data(
            value.ValueConfig(gated.uri, HORIZON, sufficiency=small_data_rules()), gated.ctx, lambda s, f: None
        )
    spend, orders = model.predict(data.holdout)
    np.testing.assert_allclose(
        SPEARMAN(data.holdout[LABEL].to_numpy(), spend), gated.blind.spend.loc[best, "spearman"], rtol=1e-12
    )
    assert np.all(spend >= 0) and np.all(orders >= 0)
    # its JSON reads back into the same baseline
    state = json.loads((fetched.folder / BASELINE_FILE).read_text(encoding="utf-8"))
    twin = ValueBaseline.from_dict(state)
    np.testing.assert_array_equal(twin.predict(data.holdout), model.baseline_model.predict(data.holdout))  # type: ignore[union-attr]
    # an edited parameter is caught in a cached copy
    path = fetched.folder / BASELINE_FILE
    state["params"]["horizon_days"] = 365
    path.write_text(json.dumps(state), encoding="utf-8")
    with pytest.raises(ModelIntegrityError, match="altered or missing"):
        bundle.verify_cached(fetched.folder, fetched.provenance)


def test_the_api_and_the_export_serve_the_value_baseline_and_say_so(gated: Gated) -> None:
    from serving.app import create_app
    from serving.settings import Settings

    best = gated.blind.served.baseline_name  # type: ignore[union-attr]
    version = gated.blind.served.baseline.version  # type: ignore[union-attr]
    frame = pd.read_parquet(gated.export).set_index("customer_key")
    assert set(frame["value_model"]) == {f"baseline:{best}"} and set(frame["value_horizon_days"]) == {HORIZON}
    ids = pd.read_parquet(ingested_dir(gated.home) / IDENTITY_MAP_FILE)
    ids = ids[ids["customer_key"].isin(frame.index)].head(100)
    settings = Settings(
        data_home=gated.home,
        tracking_uri=gated.uri,
        model_cache_dir=gated.cache,
        recs_model=None,
        clock=latest_snapshot(gated.home).as_of,  # the export's instant (the snapshot's as-of): one clock
        churn_model=None,
        purchase_model=None,
        engagement_models=[],
        required_models=[],
        environment="development",
    )
    with TestClient(create_app(settings), headers={"X-API-Key": "kairos-demo-key"}) as client:
        body = client.post("/v1/scores", json={"customer_ids": ids["customer_id"].astype(str).tolist()})
    assert body.status_code == 200, body.text
    answer = body.json()
    served = next(m for m in answer["models"] if m["name"] == "value")
    assert served == {
        "name": "value",
        "version": version,
        "alias": "champion",
        "source": "model",
        "kind": "baseline",
        "baseline": best,
    }
    from serving.schemas import ScoreItem

    for item in answer["items"]:  # the answer keeps to the documented schema
        assert ScoreItem.model_validate(item).model_dump(mode="json", exclude_unset=True) == item
    expected = frame.loc[ids["customer_key"]]
    got = [i["value"] for i in answer["items"]]
    assert all(v is not None and v["horizon_days"] == HORIZON for v in got)
    np.testing.assert_allclose([v["expected_spend"] for v in got], expected["value_expected_spend"], rtol=1e-5)
    np.testing.assert_allclose([v["expected_orders"] for v in got], expected["value_expected_orders"], rtol=1e-5)


def test_a_value_candidate_that_beats_the_baseline_takes_over_and_an_identical_retrain_does_not(
    gated: Gated,
) -> None:
    kw: dict[str, Any] = {"horizon_days": HORIZON, "sufficiency": small_data_rules(), "context": gated.ctx}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(value, "fit", oracle_fit)
        mp.setattr(value, "plan_cutoffs", three_cutoffs)
        won = value.train_value(gated.home, gated.uri, **kw)
        again = value.train_value(gated.home, gated.uri, **kw)
    assert won.registration is not None and won.registration.alias == "champion", won.decision
    assert won.served is not None and won.served.what == "candidate" and won.served.baseline is None
    best = won.versus["spearman"][0]
    assert won.decision.startswith(f"serving kairos: kairos beats the {best} baseline, spearman +")
    assert f"and champion v{gated.blind.served.baseline.version} (the " in won.decision  # type: ignore[union-attr]
    client = MlflowClient(tracking_uri=gated.uri)
    assert str(client.get_model_version_by_alias("value", "champion").version) == won.registration.version
    assert registry.TAG_KIND not in client.get_model_version("value", won.registration.version).tags
    # the same candidate again: +0.0000 against the champion is not a win; the champion stays
    assert again.registration is not None and again.registration.alias == "challenger"
    assert again.served is not None and again.served.what == "incumbent"
    assert f"but not champion v{won.registration.version} (kairos), +0.0000 [+0.0000, +0.0000]" in again.decision
    assert str(client.get_model_version_by_alias("value", "champion").version) == won.registration.version
    # the clv table of the very same data stays too
    assert again.clv_registration is not None and again.clv_registration.alias == "challenger"
    assert "the served table stays" in again.clv_registration.reason
