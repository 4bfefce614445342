"""``kairos monitor``: does each champion still fit the data it now scores, and does it still predict?

For each registered propensity champion (churn, purchase, engagement_*):

- **feature drift**: the latest snapshot, restricted to the model's population, against the reference
  profile its training job recorded (``reference_profile.json`` in the run, :mod:`features.drift`): PSI
  per feature, missing-value rates, categories never seen in training;
- **realised performance**: the champion backtested (:func:`training.backtest.backtest`) on the last
  window whose outcome has matured, beside the baselines fitted as of the same day, against the
  holdout ROC-AUC it was registered with;
- **age**: days since the version was registered;

and for the score exports, each model's score distribution in the previous export against the current
one (PSI and Kolmogorov-Smirnov, :func:`features.drift.score_shift`).

It writes ``monitor.json`` and ``monitor.html`` into the output folder, and the same JSON to
``DATA_HOME/monitoring/latest.json`` (what the API's ``/metrics`` reads), logs the figures to MLflow
(experiment ``kairos-monitor``), and says in words what needs attention. Thresholds of "attention" are
:class:`Thresholds`; ``kairos retrain --if-needed`` reads its own from a policy file.
"""

from __future__ import annotations

import html
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from bundles import registry
from bundles.errors import ModelNotFoundError
from bundles.propensity import MODEL_NAMES, PropensityBundle, baseline_name
from features.drift import PROFILE_FILE, PSI_MAJOR, PSI_MODERATE, compare_to_profile, score_shift
from features.errors import KairosError
from features.store import data_end, latest_snapshot, open_tables
from models.population import Population
from training.backtest import backtest
from training.propensity import task_by_name

MONITOR_EXPERIMENT = "kairos-monitor"
MONITORING_DIR = "monitoring"  # under the data home; serving.monitoring reads LATEST_FILE from it
LATEST_FILE = "latest.json"
SUMMARY_FILE = "monitor.json"
REPORT_FILE = "monitor.html"
EXPORTS_DIR = "exports"  # the nightly's score exports, one folder per snapshot: exports/<as_of>/scores.parquet
EXPORT_FILE = "scores.parquet"
SUMMARY_VERSION = 1


@dataclass(frozen=True)
class Thresholds:
    """When the monitor says a model needs attention (documented in docs/monitoring.md)."""

    psi_major: float = PSI_MAJOR  # a feature at or above this PSI has drifted
    max_features_major: int = 0  # attention when more features than this have drifted
    missing_rate_increase: float = 0.10  # attention when a feature's missing rate rose by more than this
    new_category_share: float = 0.05  # attention when more than this share of rows holds unseen categories
    roc_auc_drop: float = 0.05  # attention when the realised ROC-AUC is this far below the recorded one
    score_psi: float = PSI_MAJOR  # attention when a model's scores moved this much between exports


@dataclass
class ModelMonitor:
    """One champion's figures."""

    model: str
    version: str
    age_days: float
    horizon_days: int | None = None  # the model's own horizon (churn, purchase), to retrain it alike
    drift: dict[str, Any] | None = None  # psi_max, features_major, features_moderate, features (per feature)
    performance: dict[str, Any] | None = None  # as_of, roc_auc per scorer, recorded_roc_auc, best_baseline, ...
    attention: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "age_days": self.age_days,
            "horizon_days": self.horizon_days,
            "drift": self.drift,
            "performance": self.performance,
            "attention": self.attention,
        }


@dataclass
class MonitorReport:
    summary: dict[str, Any]
    json_path: Path
    html_path: Path
    run_id: str | None

    @property
    def attention(self) -> list[str]:
        return list(self.summary["attention"])


def _utc(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, UTC)


def _profile(tracking_uri: str, run_id: str) -> dict[str, Any] | None:
    """The run's reference profile, or None when the run recorded none (trained before profiles were logged)."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=PROFILE_FILE, dst_path=tmp, tracking_uri=tracking_uri
            )
            loaded: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
            return loaded
    except (MlflowException, OSError):
        return None


def last_matured(label_days: int, end: datetime) -> datetime:
    """The latest midnight whose outcome window (``label_days``) has fully passed by the data's end."""
    end_day = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    return end_day - timedelta(days=label_days)


def monitor_model(
    name: str,
    data_home: Path,
    tracking_uri: str,
    snapshot: pd.DataFrame,
    end: datetime,
    thresholds: Thresholds,
    *,
    realised: bool = True,
) -> ModelMonitor | None:
    """The figures of ``name@champion``, or None when the registry has no such champion."""
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, registry.CHAMPION)
    except MlflowException:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        bundle = PropensityBundle()
        try:
            fetched = bundle.fetch(tracking_uri, name, registry.CHAMPION, Path(tmp))
        except ModelNotFoundError:
            return None
        served = bundle.build(fetched.folder, fetched.provenance, None)
    booster = getattr(served.model, "booster_", None)
    if booster is not None:
        gain = np.asarray(booster.feature_importance(importance_type="gain"), dtype=np.float64)
        share = dict(zip(booster.feature_name(), gain / gain.sum() if gain.sum() > 0 else gain, strict=True))
    else:  # a served baseline reads a few features, each as much as the others
        share = {f: 1.0 / len(served.features) for f in served.features}
    meta = fetched.provenance.metadata
    age = (datetime.now(UTC) - _utc(int(mv.creation_timestamp))).total_seconds() / 86_400
    horizon = meta.get("horizon_days")
    out = ModelMonitor(name, str(mv.version), round(age, 3), int(horizon) if horizon is not None else None)
    profile = _profile(tracking_uri, str(mv.run_id))
    if profile is None:
        out.attention.append(
            f"{name} v{mv.version}: its run recorded no reference profile of its training rows (trained before "
            "Kairos logged one): feature drift cannot be measured; retrain it to start monitoring"
        )
    else:
        rows = snapshot
        if meta.get("population"):
            population = Population.from_dict(meta["population"])
            rows = snapshot[population.contains(snapshot[population.feature].to_numpy(dtype=np.float64))]
        drifts = compare_to_profile(profile, rows)
        major = [d for d in drifts if d.psi >= thresholds.psi_major]
        moderate = [d for d in drifts if PSI_MODERATE <= d.psi < thresholds.psi_major]
        out.drift = {
            "rows_reference": profile["rows"],
            "rows_current": len(rows),
            "psi_max": drifts[0].psi if drifts else 0.0,
            # each feature's PSI weighted by its share of the model's total split gain: drift where the model looks
            "psi_weighted": float(sum(share.get(d.feature, 0.0) * d.psi for d in drifts)),
            "features_major": len(major),
            "features_moderate": len(moderate),
            "features": [{**d.to_dict(), "importance": float(share.get(d.feature, 0.0))} for d in drifts],
        }
        if len(major) > thresholds.max_features_major:
            top = ", ".join(f"{d.feature} {d.psi:.2f}" for d in major[:5])
            out.attention.append(
                f"{name} v{mv.version}: {len(major)} feature(s) drifted from its training rows (PSI >= "
                f"{thresholds.psi_major:g}): {top}"
            )
        for d in drifts:
            if d.missing_rate_current - d.missing_rate_reference > thresholds.missing_rate_increase:
                out.attention.append(
                    f"{name}: {d.feature} is missing for {d.missing_rate_current:.1%} of customers, "
                    f"{d.missing_rate_reference:.1%} in training"
                )
            if d.new_category_share > thresholds.new_category_share:
                out.attention.append(
                    f"{name}: {d.new_category_share:.1%} of customers have a {d.feature} never seen in training "
                    f"({', '.join(d.new_categories[:5])})"
                )
    if realised:
        out.performance = _performance(name, meta, data_home, tracking_uri, end, client, str(mv.run_id))
        perf = out.performance
        if perf.get("error"):
            out.attention.append(f"{name}: realised performance not measured: {perf['error']}")
        else:
            kairos = perf["roc_auc"][perf.get("served", "kairos")]  # the served model's realised figure
            recorded = perf.get("recorded_roc_auc")
            if recorded is not None and recorded - kairos > thresholds.roc_auc_drop:
                out.attention.append(
                    f"{name} v{mv.version}: realised ROC-AUC {kairos:.3f} on the window from "
                    f"{perf['as_of'][:10]}, {recorded - kairos:.3f} below the {recorded:.3f} it was registered with"
                )
            best = perf.get("best_baseline")
            if best and perf["roc_auc"][best] >= kairos:
                out.attention.append(
                    f"{name} v{mv.version}: on the window from {perf['as_of'][:10]} the baseline {best} "
                    f"({perf['roc_auc'][best]:.3f}) does as well as the model ({kairos:.3f})"
                )
    return out


def _performance(
    name: str,
    meta: dict[str, Any],
    data_home: Path,
    tracking_uri: str,
    end: datetime,
    client: MlflowClient,
    run_id: str,
) -> dict[str, Any]:
    horizon = meta.get("horizon_days")
    task = (
        task_by_name(name, horizon_days=int(horizon))
        if name in ("churn", "purchase") and horizon
        else task_by_name(name)
    )
    as_of = last_matured(task.target.label_days, end)
    metrics = client.get_run(run_id).data.metrics
    recorded = metrics.get("holdout_roc_auc")
    try:
        result = backtest(name, data_home, tracking_uri, as_of)
    except KairosError as exc:
        return {"as_of": as_of.isoformat(), "error": str(exc), "recorded_roc_auc": recorded}
    # the served version's row: "kairos", or "baseline:<name>" when the gate serves a baseline (whose holdout
    # figure the job recorded as <name>_roc_auc beside Kairos's own)
    served = result.model_kind
    baseline = baseline_name(served)
    if baseline is not None:
        recorded = metrics.get(f"{baseline}_roc_auc")
    aucs = {str(k): float(v) for k, v in result.table["roc_auc"].items()}
    baselines = {k: v for k, v in aucs.items() if k != served and np.isfinite(v)}
    return {
        "as_of": as_of.isoformat(),
        "outcome_until": result.outcome_until.isoformat(),
        "served": served,
        "rows": int(result.table.loc[served, "n"]),
        "roc_auc": aucs,
        "recorded_roc_auc": recorded,
        "best_baseline": max(baselines, key=lambda k: baselines[k]) if baselines else None,
        "in_sample": result.in_sample,
        "note": result.note,
    }


def export_path(data_home: Path, as_of: datetime) -> Path:
    """Where the nightly writes the score export of the snapshot as of ``as_of``."""
    return Path(data_home) / EXPORTS_DIR / as_of.strftime("%Y-%m-%dT%H%M%SZ") / EXPORT_FILE


def latest_exports(data_home: Path) -> tuple[Path | None, Path | None]:
    """The previous and the current score export of the data home (None where there are not two)."""
    root = Path(data_home) / EXPORTS_DIR
    found = sorted(p / EXPORT_FILE for p in root.glob("*") if (p / EXPORT_FILE).is_file()) if root.is_dir() else []
    return (found[-2] if len(found) > 1 else None), (found[-1] if found else None)


def compare_exports(previous: Path, current: Path, thresholds: Thresholds) -> dict[str, Any]:
    """Each model's score distribution in ``previous`` against ``current`` (columns ``<model>_probability``)."""
    before, after = pd.read_parquet(previous), pd.read_parquet(current)
    models: dict[str, Any] = {}
    attention = []
    for column in after.columns:
        if not column.endswith("_probability") or column not in before.columns:
            continue
        model = column.removesuffix("_probability")
        try:
            shift = score_shift(model, before[column].to_numpy(np.float64), after[column].to_numpy(np.float64))
        except ValueError:
            continue
        models[model] = shift.to_dict()
        if shift.psi >= thresholds.score_psi:
            attention.append(
                f"{model}: its scores moved between exports (PSI {shift.psi:.2f}, KS {shift.ks:.2f}; mean "
                f"{shift.mean_previous:.3f} -> {shift.mean_current:.3f})"
            )
    return {"previous": str(previous), "current": str(current), "models": models, "attention": attention}


def run_monitor(
    data_home: Path,
    tracking_uri: str,
    out_dir: Path | None = None,
    *,
    models: Sequence[str] = MODEL_NAMES,
    thresholds: Thresholds | None = None,
    realised: bool = True,
    previous_scores: Path | None = None,
    current_scores: Path | None = None,
    log_to_mlflow: bool = True,
) -> MonitorReport:
    """Monitor every champion of ``models``; write the JSON summary and the HTML report; log to MLflow.

    Score exports default to the data home's two latest (:func:`latest_exports`).

    Raises:
        DataNotFoundError: no snapshot or no ingested data.
    """
    began = time.perf_counter()
    thresholds = thresholds or Thresholds()
    registry.quiet_mlflow()
    snap = latest_snapshot(data_home)
    frame = snap.read()
    tables = open_tables(data_home)
    end = data_end(tables)
    per_model: dict[str, ModelMonitor] = {}
    for name in models:
        found = monitor_model(name, data_home, tracking_uri, frame, end, thresholds, realised=realised)
        if found is not None:
            per_model[name] = found
    attention = [line for m in per_model.values() for line in m.attention]
    if not per_model:
        attention.append(f"no propensity champion in the registry at {tracking_uri}: nothing to monitor")
    if previous_scores is None and current_scores is None:
        previous_scores, current_scores = latest_exports(data_home)
    scores = None
    if previous_scores is not None and current_scores is not None:
        scores = compare_exports(previous_scores, current_scores, thresholds)
        attention.extend(scores["attention"])
    now = datetime.now(UTC)
    summary: dict[str, Any] = {
        "version": SUMMARY_VERSION,
        "generated_at": now.isoformat(),
        "generated_at_unix": now.timestamp(),
        "data_home": str(data_home),
        "snapshot_as_of": snap.manifest["as_of"],
        "data_end": end.isoformat(),
        "thresholds": thresholds.__dict__,
        "models": {
            k: {**v.to_dict(), "attention": bool(v.attention), "why": v.attention} for k, v in per_model.items()
        },
        "scores": scores,
        "attention": attention,
        "seconds": 0.0,
    }
    summary["seconds"] = round(time.perf_counter() - began, 3)
    out_dir = Path(out_dir) if out_dir is not None else Path(data_home) / MONITORING_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / SUMMARY_FILE, out_dir / REPORT_FILE
    text = json.dumps(summary, indent=2, default=str)
    json_path.write_text(text, encoding="utf-8")
    html_path.write_text(render_html(summary), encoding="utf-8")
    latest = Path(data_home) / MONITORING_DIR / LATEST_FILE
    latest.parent.mkdir(parents=True, exist_ok=True)
    staged = latest.with_name(LATEST_FILE + ".partial")
    staged.write_text(text, encoding="utf-8")
    staged.replace(latest)  # the API never reads half a file
    run_id = _log(tracking_uri, summary, json_path, html_path) if log_to_mlflow else None
    return MonitorReport(summary, json_path, html_path, run_id)


def figures(summary: dict[str, Any]) -> dict[str, float]:
    """The summary's figures as flat MLflow metric names (``churn.psi_max``, ``churn.realised_roc_auc``, ...)."""
    out: dict[str, float] = {"models_needing_attention": float(sum(m["attention"] for m in summary["models"].values()))}
    for name, m in summary["models"].items():
        out[f"{name}.age_days"] = float(m["age_days"])
        if m["drift"]:
            out[f"{name}.psi_max"] = float(m["drift"]["psi_max"])
            out[f"{name}.psi_weighted"] = float(m["drift"]["psi_weighted"])
            out[f"{name}.features_major"] = float(m["drift"]["features_major"])
            out[f"{name}.features_moderate"] = float(m["drift"]["features_moderate"])
        perf = m["performance"] or {}
        for scorer, value in (perf.get("roc_auc") or {}).items():
            if np.isfinite(value):
                out[f"{name}.realised_roc_auc.{scorer}"] = float(value)
    for name, shift in ((summary.get("scores") or {}).get("models") or {}).items():
        out[f"{name}.score_psi"] = float(shift["psi"])
        out[f"{name}.score_ks"] = float(shift["ks"])
    out["seconds"] = float(summary["seconds"])
    return out


def _log(tracking_uri: str, summary: dict[str, Any], json_path: Path, html_path: Path) -> str:
    registry.configure(tracking_uri)
    experiment = registry.ensure_experiment(MONITOR_EXPERIMENT, tracking_uri)
    with mlflow.start_run(experiment_id=experiment, run_name=f"monitor {summary['snapshot_as_of'][:10]}") as run:
        mlflow.set_tags({"kairos.snapshot_as_of": summary["snapshot_as_of"], "kairos.data_end": summary["data_end"]})
        mlflow.log_metrics(figures(summary))
        mlflow.log_artifact(str(json_path))
        mlflow.log_artifact(str(html_path))
        return str(run.info.run_id)


def render_html(summary: dict[str, Any]) -> str:
    """A self-contained HTML page of the summary (no scripts, every value escaped)."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Kairos monitor</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}th:first-child,td:first-child"
        "{text-align:left}.major{background:#fdd}.moderate{background:#ffd}</style></head><body>",
        f"<h1>Kairos monitor</h1><p>snapshot as of {e(summary['snapshot_as_of'])}, data to "
        f"{e(summary['data_end'])}, written {e(summary['generated_at'])} in {summary['seconds']:.1f} s</p>",
        "<h2>What needs attention</h2>",
    ]
    if summary["attention"]:
        parts.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in summary["attention"]) + "</ul>")
    else:
        parts.append("<p>Nothing: every champion is within its thresholds.</p>")
    for name, m in summary["models"].items():
        parts.append(f"<h2>{e(name)} v{e(m['version'])}</h2><p>registered {m['age_days']:.1f} days ago</p>")
        perf = m["performance"]
        if perf and not perf.get("error"):
            recorded = perf["recorded_roc_auc"]
            parts.append(
                f"<p>realised on the window from {e(perf['as_of'][:10])} to {e(perf['outcome_until'][:10])} "
                f"({perf['rows']:,} customers; recorded holdout ROC-AUC "
                f"{recorded if recorded is not None else float('nan'):.3f}; "
                f"{e(perf['note'])})</p><table><tr><th>scorer</th><th>ROC-AUC</th></tr>"
                + "".join(f"<tr><td>{e(k)}</td><td>{v:.3f}</td></tr>" for k, v in perf["roc_auc"].items())
                + "</table>"
            )
        elif perf:
            parts.append(f"<p>realised performance not measured: {e(perf['error'])}</p>")
        drift = m["drift"]
        if drift:
            parts.append(
                f"<p>{drift['rows_current']:,} customers now against {drift['rows_reference']:,} training rows; "
                f"{drift['features_major']} feature(s) with a major shift, {drift['features_moderate']} moderate; "
                f"PSI weighted by the model's gain {drift['psi_weighted']:.3f}</p>"
                "<table><tr><th>feature</th><th>PSI</th><th>share of gain</th><th>missing (training)</th>"
                "<th>missing (now)</th><th>new categories</th></tr>"
            )
            for d in drift["features"]:
                parts.append(
                    f"<tr class='{e(d['level'])}'><td>{e(d['feature'])}</td><td>{d['psi']:.3f}</td>"
                    f"<td>{d['importance']:.1%}</td><td>{d['missing_rate_reference']:.1%}</td>"
                    f"<td>{d['missing_rate_current']:.1%}</td>"
                    f"<td>{e(', '.join(d['new_categories'][:5]))}</td></tr>"
                )
            parts.append("</table>")
    scores = summary.get("scores")
    if scores and scores["models"]:
        parts.append(
            f"<h2>Scores between exports</h2><p>{e(scores['previous'])} &rarr; {e(scores['current'])}</p>"
            "<table><tr><th>model</th><th>PSI</th><th>KS</th><th>mean before</th><th>mean now</th></tr>"
        )
        for name, s in scores["models"].items():
            parts.append(
                f"<tr class='{e(s['level'])}'><td>{e(name)}</td><td>{s['psi']:.3f}</td><td>{s['ks']:.3f}</td>"
                f"<td>{s['mean_previous']:.3f}</td><td>{s['mean_current']:.3f}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def update_score_shift(data_home: Path, thresholds: Thresholds | None = None) -> str:
    """After a new score export: compare it with the previous one and add the figures to the latest summary
    (what the nightly's score step does, since its monitor step ran before the export existed). Returns a
    line on what moved, empty when there is no earlier export or no summary yet."""
    previous, current = latest_exports(data_home)
    latest = Path(data_home) / MONITORING_DIR / LATEST_FILE
    if previous is None or current is None or not latest.is_file():
        return ""
    summary = json.loads(latest.read_text(encoding="utf-8"))
    scores = compare_exports(previous, current, thresholds or Thresholds(**summary.get("thresholds", {})))
    old = (summary.get("scores") or {}).get("attention") or []
    summary["attention"] = [line for line in summary["attention"] if line not in old] + scores["attention"]
    summary["scores"] = scores
    text = json.dumps(summary, indent=2, default=str)
    staged = latest.with_name(LATEST_FILE + ".partial")
    staged.write_text(text, encoding="utf-8")
    staged.replace(latest)
    return "; ".join(scores["attention"]) or f"scores stable across {len(scores['models'])} model(s)"
