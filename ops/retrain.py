"""``kairos retrain --if-needed --policy FILE``: retrain a champion when the monitor's figures cross the policy's
thresholds, or when it is older than the policy allows, through the usual training job (and its champion
gate), and say why it did or did not.

The policy (YAML; every key optional, unknown keys refused)::

    models: [churn, purchase]        # default: every propensity champion the registry holds
    drift:
      psi_major: 0.25                # a feature at or above this PSI has drifted ...
      max_features_major: 2          # ... and more drifted features than this call for a retrain
      features: [recency_days, orders_90d, orders_180d]   # only these count (default: every feature)
      max_weighted_psi: 0.1          # retrain when the PSI weighted by the model's split gain exceeds this
    performance:
      max_roc_auc_drop: 0.05         # realised ROC-AUC this far below the recorded one: retrain
      retrain_when_baseline_wins: true
    schedule:
      max_age_days: 90               # retrain a champion older than this whatever the figures say
    training:                         # passed to the job (as `kairos train churn` flags)
      margin: 0.0
      min_positives: 500
      min_negatives: 500
      min_history_days: 180
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bundles.propensity import MODEL_NAMES
from features.errors import InputDataError
from ops.monitor import Thresholds, run_monitor
from training.propensity import InsufficientDataError, Sufficiency, task_by_name, train_task


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DriftPolicy(_Strict):
    psi_major: float = Field(default=0.25, gt=0, description="A feature at or above this PSI has drifted.")
    max_features_major: int = Field(default=2, ge=0, description="Retrain when more features than this have drifted.")
    features: list[str] | None = Field(default=None, description="Only these features count (default: all).")
    max_weighted_psi: float | None = Field(
        default=None, gt=0, description="Retrain when the PSI weighted by the model's gain exceeds this (default: off)."
    )


class PerformancePolicy(_Strict):
    max_roc_auc_drop: float = Field(default=0.05, ge=0, description="Retrain when realised ROC-AUC falls this far.")
    retrain_when_baseline_wins: bool = Field(default=True, description="Retrain when a baseline does as well.")


class SchedulePolicy(_Strict):
    max_age_days: float | None = Field(default=None, gt=0, description="Retrain a champion older than this.")


class TrainingPolicy(_Strict):
    margin: float = 0.0
    min_positives: int = Field(default=500, ge=1)
    min_negatives: int = Field(default=500, ge=1)
    min_history_days: int = Field(default=180, ge=1)
    min_holdout_per_class: int | None = Field(default=None, ge=1)


class RetrainPolicy(_Strict):
    models: list[str] | None = None
    drift: DriftPolicy = Field(default_factory=DriftPolicy)
    performance: PerformancePolicy = Field(default_factory=PerformancePolicy)
    schedule: SchedulePolicy = Field(default_factory=SchedulePolicy)
    training: TrainingPolicy = Field(default_factory=TrainingPolicy)

    def sufficiency(self) -> Sufficiency:
        t = self.training
        extra = {"min_holdout_per_class": t.min_holdout_per_class} if t.min_holdout_per_class else {}
        return Sufficiency(
            min_positives=t.min_positives, min_negatives=t.min_negatives, min_history_days=t.min_history_days, **extra
        )


def load_policy(path: Path) -> RetrainPolicy:
    """Read and validate a policy file.

    Raises:
        InputDataError: the file is missing, is not YAML, or holds an unknown key or a bad value.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputDataError(f"{path}: the retrain policy does not read: {type(exc).__name__}") from None
    if not isinstance(raw, dict):
        raise InputDataError(f"{path}: the retrain policy must be a mapping of sections")
    try:
        policy = RetrainPolicy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InputDataError(f"{path}: {problems}") from None
    unknown = [m for m in policy.models or [] if m not in MODEL_NAMES]
    if unknown:
        raise InputDataError(f"{path}: unknown model(s) {unknown}; known: {', '.join(MODEL_NAMES)}")
    return policy


@dataclass
class Decision:
    """Whether one model was retrained, why, and what the job did."""

    model: str
    version: str
    retrain: bool
    reasons: list[str] = field(default_factory=list)
    outcome: str = ""  # the job's registration ("registered v4 as @champion: ...") or why it did not train

    def line(self) -> str:
        why = "; ".join(self.reasons) if self.reasons else "within every threshold of the policy"
        head = f"{self.model} v{self.version}: " + ("due for retraining" if self.retrain else "not retrained")
        return f"{head} ({why})" + (f" -> {self.outcome}" if self.outcome else "")


def decide(name: str, figures: dict[str, Any], policy: RetrainPolicy) -> Decision:
    """The decision for one model from its monitor figures (``summary["models"][name]``)."""
    reasons = []
    drift = figures.get("drift")
    if drift is not None:
        counted = [
            f for f in drift["features"] if policy.drift.features is None or f["feature"] in policy.drift.features
        ]
        drifted = [f for f in counted if f["psi"] >= policy.drift.psi_major]
        if len(drifted) > policy.drift.max_features_major:
            top = ", ".join(f"{f['feature']} {f['psi']:.2f}" for f in drifted[:3])
            reasons.append(
                f"{len(drifted)} features drifted (PSI >= {policy.drift.psi_major:g}; the policy allows "
                f"{policy.drift.max_features_major}): {top}"
            )
        limit = policy.drift.max_weighted_psi
        if limit is not None and drift["psi_weighted"] > limit:
            reasons.append(
                f"PSI weighted by the model's gain {drift['psi_weighted']:.3f} (the policy allows {limit:g})"
            )
    perf = figures.get("performance") or {}
    if perf.get("roc_auc"):
        kairos, recorded = perf["roc_auc"][perf.get("served", "kairos")], perf.get("recorded_roc_auc")
        if recorded is not None and recorded - kairos > policy.performance.max_roc_auc_drop:
            reasons.append(
                f"realised ROC-AUC {kairos:.3f} is {recorded - kairos:.3f} below the recorded {recorded:.3f} "
                f"(the policy allows {policy.performance.max_roc_auc_drop:g})"
            )
        best = perf.get("best_baseline")
        if policy.performance.retrain_when_baseline_wins and best and perf["roc_auc"][best] >= kairos:
            reasons.append(f"the baseline {best} does as well ({perf['roc_auc'][best]:.3f} vs {kairos:.3f})")
    max_age = policy.schedule.max_age_days
    if max_age is not None and figures["age_days"] > max_age:
        reasons.append(f"the champion is {figures['age_days']:.0f} days old (the policy allows {max_age:g})")
    return Decision(name, str(figures["version"]), bool(reasons), reasons)


@dataclass
class RetrainReport:
    decisions: list[Decision]
    monitor_json: Path

    @property
    def retrained(self) -> list[str]:
        return [d.model for d in self.decisions if d.retrain]


def retrain_if_needed(
    data_home: Path,
    tracking_uri: str,
    policy: RetrainPolicy,
    *,
    realised: bool = True,
    dry_run: bool = False,
    summary_file: Path | None = None,
) -> RetrainReport:
    """Monitor the policy's champions, decide per model, and retrain those due through their training job.

    ``dry_run`` decides and reports without training. ``summary_file``: decide on a summary the monitor
    has just written (the nightly's monitor step) instead of monitoring again.
    """
    names = policy.models or list(MODEL_NAMES)
    if summary_file is not None:
        summary = json.loads(Path(summary_file).read_text(encoding="utf-8"))
        json_path = Path(summary_file)
    else:
        thresholds = Thresholds(
            psi_major=policy.drift.psi_major,
            max_features_major=policy.drift.max_features_major,
            roc_auc_drop=policy.performance.max_roc_auc_drop,
        )
        report = run_monitor(data_home, tracking_uri, models=names, thresholds=thresholds, realised=realised)
        summary, json_path = report.summary, report.json_path
    decisions = []
    for name, figures in summary["models"].items():
        if name not in names:
            continue
        decision = decide(name, figures, policy)
        if decision.retrain and not dry_run:
            horizon = figures.get("horizon_days")
            task = (
                task_by_name(name, horizon_days=horizon)
                if horizon and name in ("churn", "purchase")
                else task_by_name(name)
            )
            try:
                run = train_task(
                    task, data_home, tracking_uri, margin=policy.training.margin, sufficiency=policy.sufficiency()
                )
            except InsufficientDataError as exc:
                decision.outcome = f"not trained: {exc}"
            else:
                reg = run.registration
                decision.outcome = (
                    f"registered v{reg.version} as @{reg.alias}: {reg.reason}" if reg is not None else "not registered"
                )
        elif decision.retrain:
            decision.outcome = "dry run: not trained"
        decisions.append(decision)
    return RetrainReport(decisions, json_path)
