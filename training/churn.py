"""The churn job: point-in-time dataset -> LightGBM -> holdout evaluation -> MLflow -> registry.

Time layout (no label ever overlaps a later window):

    train cutoffs ... | label windows end <= validation cutoff | validation cutoff (early stopping)
    | its labels end <= holdout cutoff | holdout cutoff (evaluation only) | its labels end <= data end
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.metrics import roc_auc_score

from features.datasets import LABEL, ChurnTarget, build_training_set, monthly_cutoffs
from features.definitions import NUMERIC_FEATURES
from features.errors import KairosError
from features.store import compute_features, data_end, ingest_report, manifest_for, open_tables
from models.churn import LightGBMClassifier
from training import registry

MODEL_NAME = "churn"
EXPERIMENT = "kairos-churn"
ProgressFn = Callable[[str, float], None]


class InsufficientDataError(KairosError):
    """The data cannot support an honest training run; the message says what is missing."""


@dataclass(frozen=True)
class CutoffPlan:
    train: list[datetime]
    valid: datetime
    holdout: datetime


def plan_cutoffs(start: datetime, end: datetime, horizon_days: int, min_history_days: int = 180) -> CutoffPlan:
    """Training, validation and holdout cutoffs whose label windows never overlap the next stage."""
    day = datetime(end.year, end.month, end.day, tzinfo=UTC)
    holdout = day - timedelta(days=horizon_days)
    valid = holdout - timedelta(days=horizon_days)
    last_train = valid - timedelta(days=horizon_days)
    first_train = start + timedelta(days=min_history_days)
    train = monthly_cutoffs(first_train, last_train)
    if not train:
        span = (end - start).days
        need = min_history_days + 3 * horizon_days
        raise InsufficientDataError(
            f"{span} days of order history; churn with a {horizon_days}-day horizon needs at least {need} "
            f"({min_history_days} of history before the first training cutoff, then train, validation and "
            "holdout label windows)"
        )
    return CutoffPlan(train, valid, holdout)


@dataclass
class ChurnRun:
    """What a training run produced."""

    run_id: str
    metrics: dict[str, float]
    registration: registry.Registration | None
    plan: CutoffPlan
    sizes: dict[str, int] = field(default_factory=dict)


def _first_order(tables: dict[str, Any]) -> datetime:
    ts = pd.Timestamp(tables["orders"]["ordered_at"].min().execute())
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def train_churn(
    data_home: Path,
    tracking_uri: str,
    *,
    horizon_days: int = 90,
    active_days: int = 365,
    margin: float = 0.0,
    register: bool = True,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> ChurnRun:
    """Train, evaluate on the temporal holdout, log to MLflow and register the churn model."""
    tick = progress or (lambda step, frac: None)
    registry.quiet_mlflow()
    tables = open_tables(data_home)
    start, end = _first_order(tables), data_end(tables)
    plan = plan_cutoffs(start, end, horizon_days)
    target = ChurnTarget(horizon_days=horizon_days, active_days=active_days)

    tick("building training set", 0.05)
    train = build_training_set(tables, plan.train, target.labels)
    tick("building validation and holdout sets", 0.4)
    valid = build_training_set(tables, [plan.valid], target.labels)
    holdout = build_training_set(tables, [plan.holdout], target.labels)
    for name, frame in (("training", train), ("validation", valid), ("holdout", holdout)):
        counts = frame[LABEL].value_counts()
        if counts.get(0, 0) == 0 or counts.get(1, 0) == 0:
            raise InsufficientDataError(
                f"the {name} set has {counts.get(1, 0)} churners and {counts.get(0, 0)} retained customers; "
                "both classes are needed"
            )

    tick("fitting LightGBM", 0.6)
    features = list(NUMERIC_FEATURES)
    model = LightGBMClassifier(seed=seed).fit(train[features], train[LABEL], eval_set=(valid[features], valid[LABEL]))
    p_hold = model.predict_proba(holdout[features])
    y_hold = holdout[LABEL].to_numpy()
    # Baseline: rank by recency alone (longer since the last order = more likely to churn).
    recency = holdout["recency_days"].fillna(holdout["recency_days"].max()).to_numpy()
    metrics = {
        "holdout_roc_auc": float(roc_auc_score(y_hold, p_hold)),
        "valid_roc_auc": float(roc_auc_score(valid[LABEL], model.predict_proba(valid[features]))),
        "baseline_recency_roc_auc": float(roc_auc_score(y_hold, recency)),
        "holdout_churn_rate": float(y_hold.mean()),
        "best_iteration": float(model.best_iteration_),
    }
    sizes = {"train_rows": len(train), "valid_rows": len(valid), "holdout_rows": len(holdout)}

    tick("logging to MLflow", 0.85)
    client = registry.configure(tracking_uri)
    experiment_id = registry.ensure_experiment(EXPERIMENT, tracking_uri)
    report = ingest_report(data_home)
    manifest = manifest_for(compute_features(tables, plan.holdout).head(0), plan.holdout, report["source_hash"])
    manifest.pop("rows")
    params = {
        **model.get_params(),
        "horizon_days": horizon_days,
        "active_days": active_days,
        "train_cutoffs": len(plan.train),
        "first_train_cutoff": plan.train[0].date().isoformat(),
        "valid_cutoff": plan.valid.date().isoformat(),
        "holdout_cutoff": plan.holdout.date().isoformat(),
    }
    registration = None
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.set_tags(
            {**registry.provenance(), "kairos.model": MODEL_NAME, "kairos.data_hash": report["source_hash"]}
        )
        mlflow.log_params(params)
        mlflow.log_metrics({**metrics, **{k: float(v) for k, v in sizes.items()}})
        mlflow.log_dict(manifest, "feature_manifest.json")
        import lightgbm as lgb

        booster = lgb.Booster(model_str=model.to_text())
        sample = holdout[features].head(5).astype(np.float32)
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=infer_signature(sample, model.predict_proba(sample)),
            metadata={
                "kairos": {
                    "features": features,
                    "manifest": manifest,
                    "target": MODEL_NAME,
                    "horizon_days": horizon_days,
                }
            },
        )
        if register:
            registration = registry.register(
                client,
                info.model_uri,
                MODEL_NAME,
                metric_name="holdout_roc_auc",
                metric_value=metrics["holdout_roc_auc"],
                margin=margin,
                extra_tags={"kairos.run_id": run.info.run_id, "kairos.definition_hash": manifest["definition_hash"]},
            )
            mlflow.set_tag(
                "kairos.registration", f"v{registration.version} -> @{registration.alias}: {registration.reason}"
            )
    tick("done", 1.0)
    return ChurnRun(run.info.run_id, metrics, registration, plan, sizes)
