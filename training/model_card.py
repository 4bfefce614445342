"""The model card: one markdown page per registered version, logged beside its bundle and plots.

It says what the model predicts, on which data it was judged, how it compares with every baseline
of the same run (one row per model), how its probabilities were calibrated, which features drive it,
and what it cannot do. Fill a :class:`ModelCard` in the training job and call
:func:`render_model_card`; plots are embedded by paths relative to the card's own location.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import PurePosixPath
from typing import Any

from models.evaluation import LOWER_IS_BETTER

# Column order of the metrics table (others follow in the order first seen).
METRIC_ORDER = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "lift_top10",
    "capture_top10",
    "lift_top20",
    "capture_top20",
    "mae",
    "rmse",
    "spearman",
    "mean_predicted",
    "mean_actual",
    "n",
    "base_rate",
)
# Figures that describe the data, not a model's quality: never marked best.
NOT_RANKED = frozenset({"n", "base_rate", "mean_actual", "mean_predicted"})
ECE_TARGET = 0.05
FEW_POSITIVES = 100


@dataclass(frozen=True)
class DataSummary:
    """The data a model was trained and judged on.

    Attributes:
        train_cutoffs: training cutoffs (rolling origin), oldest first.
        valid_cutoff: the cutoff of the early-stopping and calibration window.
        holdout_cutoff: the cutoff of the temporal holdout the metrics are computed on.
        rows: rows per split, e.g. ``{"train": 12000, "valid": 3000, "holdout": 3100}``.
        positives: positive labels per split (binary targets); None for value targets.
        data_hash: hash of the ingested source data.
        currency: ISO 4217 code of the data's amounts (spend, order values, metrics on spend).
    """

    train_cutoffs: Sequence[date | datetime | str]
    valid_cutoff: date | datetime | str
    holdout_cutoff: date | datetime | str
    rows: Mapping[str, int]
    data_hash: str
    positives: Mapping[str, int] | None = None
    currency: str | None = None


@dataclass(frozen=True)
class ModelCard:
    """Everything a model card shows.

    Attributes:
        name: registered model name (``churn``, ``purchase``, ...).
        target: the target definition in words ("no order in the 90 days after the cutoff, among
            customers who ordered in the 365 days before it").
        data: see :class:`DataSummary`.
        metrics: holdout metrics per model, the candidate first then each baseline (model name ->
            metric -> value; e.g. :func:`models.evaluation.binary_report` output).
        candidate: the key of ``metrics`` that is this model.
        baselines: the keys of ``metrics`` that are baselines (the limitations say which of them beat
            the model); None: every other row. Leave out variants of the model itself (e.g. its
            uncalibrated scores).
        primary_metric: the metric the registry compares versions on.
        version: registered version (None when not registered).
        alias: alias it received (``champion`` / ``challenger``), None when not registered.
        decision: the registry's reason for the alias.
        calibration: ``ProbabilityCalibrator.to_dict()`` output (None for an uncalibrated model).
        top_features: (feature, gain) of the most important features, strongest first.
        descriptions: feature name -> description (``features.definitions.DESCRIPTIONS``).
        plots: title -> PNG path relative to the card ("plots/gains.png").
        limitations: known limits, in words; the card adds the ones its numbers show.
        params: hyper-parameters and run settings worth showing.
        run_id: MLflow run id.
        created_at: when the run finished.
        comparisons: the model against the best baseline on the holdout, one line per metric with its
            paired bootstrap 95 % interval (``models.intervals.Interval.describe``).
        served: which model the API and the export serve after this run, and why (the gate's line:
            "serving the bgnbd baseline: kairos does not beat ..."); empty when not registered.
    """

    name: str
    target: str
    data: DataSummary
    metrics: Mapping[str, Mapping[str, float]]
    candidate: str
    primary_metric: str
    baselines: Sequence[str] | None = None
    version: int | str | None = None
    alias: str | None = None
    decision: str = ""
    calibration: Mapping[str, Any] | None = None
    top_features: Sequence[tuple[str, float]] = ()
    descriptions: Mapping[str, str] = field(default_factory=dict)
    plots: Mapping[str, str] = field(default_factory=dict)
    limitations: Sequence[str] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    created_at: datetime | None = None
    comparisons: Sequence[str] = ()
    served: str = ""  # which model the API and the export serve, and why (the gate's line)


def _when(value: date | datetime | str) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    return value.isoformat() if isinstance(value, date) else str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fmt(metric: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if metric == "n":
        return f"{round(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def _columns(metrics: Mapping[str, Mapping[str, float]]) -> list[str]:
    seen: list[str] = []
    for values in metrics.values():
        seen.extend(k for k in values if k not in seen)
    return [m for m in METRIC_ORDER if m in seen] + [m for m in seen if m not in METRIC_ORDER]


def _best(metrics: Mapping[str, Mapping[str, float]], metric: str) -> set[str]:
    """Models with the best value of ``metric`` (ties all best); empty when not comparable."""
    if metric in NOT_RANKED:
        return set()
    values = {
        name: float(v[metric])
        for name, v in metrics.items()
        if metric in v and v[metric] is not None and not math.isnan(float(v[metric]))
    }
    if len(values) < 2:
        return set()
    target = min(values.values()) if metric in LOWER_IS_BETTER else max(values.values())
    return {name for name, v in values.items() if math.isclose(v, target, rel_tol=1e-12, abs_tol=1e-12)}


def metrics_table(metrics: Mapping[str, Mapping[str, float]], candidate: str | None = None) -> str:
    """Markdown table: one row per model, one column per metric; the best per column in bold
    (lower is better for log loss, Brier, ECE, MAE, RMSE); n/a where a metric does not apply."""
    columns = _columns(metrics)
    best = {m: _best(metrics, m) for m in columns}
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, values in metrics.items():
        label = f"**{_cell(name)}** (this model)" if name == candidate else _cell(name)
        cells = []
        for m in columns:
            text = _fmt(m, values.get(m))
            cells.append(f"**{text}**" if name in best[m] else text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _check_plot_path(title: str, rel: str) -> str:
    path = PurePosixPath(rel.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (len(rel) > 1 and rel[1] == ":"):
        raise ValueError(f"plots[{title!r}]: {rel!r} must be a path relative to the card, inside its folder")
    return path.as_posix()


def _auto_limitations(card: ModelCard) -> list[str]:
    notes: list[str] = []
    own = card.metrics[card.candidate]
    ece = own.get("ece")
    if ece is not None and not math.isnan(ece) and ece > ECE_TARGET:
        notes.append(
            f"Calibration: expected calibration error {ece:.3f} on the holdout is above the {ECE_TARGET} target; "
            "read the probabilities as a ranking more than as rates."
        )
    primary = own.get(card.primary_metric)
    if primary is not None and not math.isnan(primary):
        lower = card.primary_metric in LOWER_IS_BETTER
        rivals = [n for n in card.metrics if n != card.candidate] if card.baselines is None else card.baselines
        for name in rivals:
            other = card.metrics[name].get(card.primary_metric)
            if other is None or math.isnan(other):
                continue
            if (other < primary) if lower else (other > primary):
                notes.append(
                    f"The baseline {name} beats this model on {card.primary_metric} "
                    f"({_fmt(card.primary_metric, other)} against {_fmt(card.primary_metric, primary)})."
                )
    positives = (card.data.positives or {}).get("holdout")
    if positives is not None and positives < FEW_POSITIVES:
        notes.append(
            f"Only {positives} positives in the holdout: the metrics have wide uncertainty "
            "(top-10% lift in particular)."
        )
    return notes


def render_model_card(card: ModelCard) -> str:
    """The model card as markdown."""
    if card.candidate not in card.metrics:
        raise ValueError(f"candidate: {card.candidate!r} is not a key of metrics ({sorted(card.metrics)})")
    unknown = sorted(set(card.baselines or ()) - set(card.metrics))
    if unknown:
        raise ValueError(f"baselines: {unknown} are not keys of metrics ({sorted(card.metrics)})")
    if not card.name:
        raise ValueError("name: the model needs a name")
    plots = {title: _check_plot_path(title, rel) for title, rel in card.plots.items()}
    version = f"version {card.version}" if card.version is not None else "not registered"
    lines = [f"# Model card: {card.name} ({version})", ""]

    own = card.metrics[card.candidate]
    primary = own.get(card.primary_metric)
    if card.alias:
        lines.append(f"**Decision:** @{card.alias}. {card.decision}".rstrip())
    elif card.decision:
        lines.append(f"**Decision:** {card.decision}")
    if card.served:
        lines.append(f"**Served:** {card.served}")
    lines.append(f"**Primary metric:** {card.primary_metric} = {_fmt(card.primary_metric, primary)} on the holdout.")
    provenance = []
    if card.run_id:
        provenance.append(f"MLflow run `{card.run_id}`")
    if card.created_at:
        provenance.append(f"trained {card.created_at.isoformat(timespec='minutes')}")
    if provenance:
        lines.append(f"**Run:** {', '.join(provenance)}.")
    lines += ["", "## Target", "", card.target, ""]

    d = card.data
    cutoffs = list(d.train_cutoffs)
    lines += ["## Data", ""]
    train_span = (
        f"{len(cutoffs)} cutoffs from {_when(cutoffs[0])} to {_when(cutoffs[-1])}" if cutoffs else "no cutoffs given"
    )
    lines += [
        f"- Training: {train_span}.",
        f"- Validation (early stopping and calibration): cutoff {_when(d.valid_cutoff)}.",
        f"- Holdout (all metrics below): cutoff {_when(d.holdout_cutoff)}.",
        f"- Source data hash: `{d.data_hash}`.",
        *([f"- Amounts (spend, order values, errors on spend) are in {d.currency}."] if d.currency else []),
        "",
        "| split | rows |" + (" positives | rate |" if d.positives is not None else ""),
        "|---|---:|" + ("---:|---:|" if d.positives is not None else ""),
    ]
    for split, rows in d.rows.items():
        row = f"| {_cell(split)} | {rows:,} |"
        if d.positives is not None:
            pos = d.positives.get(split)
            rate = f"{pos / rows:.1%}" if pos is not None and rows else "n/a"
            row += f" {pos:,} | {rate} |" if pos is not None else " n/a | n/a |"
        lines.append(row)
    lines += ["", "## Holdout metrics: this model against the baselines", ""]
    lines += [metrics_table(card.metrics, card.candidate), ""]
    if card.comparisons:
        lines += [
            "Against the best baseline, paired bootstrap 95 % interval of the difference on the same holdout rows:",
            "",
        ]
        lines += [f"- {_cell(line)}" for line in card.comparisons]
        lines.append("")
    lines += [
        "Lift and capture: the top 10% / 20% of customers by score (ties shared pro rata). ECE: expected "
        "calibration error over 10 equal-frequency bins. n/a: the score is a ranking, not a probability.",
        "",
    ]

    lines += ["## Calibration", ""]
    if card.calibration:
        method = card.calibration.get("method", "unknown")
        lines.append(f"Method: **{method}**, fitted on {card.calibration.get('n', 'n/a')} validation rows.")
        oof = card.calibration.get("oof_log_loss") or {}
        if oof:
            scores = ", ".join(f"{m} {v:.4f}" for m, v in sorted(oof.items()))
            lines.append(f"Chosen by out-of-fold log loss within the validation window: {scores}.")
        params = card.calibration.get("params") or {}
        if method == "platt" and params:
            lines.append(f"Calibrated p = sigmoid({params['slope']:.4f} × logit(raw p) + {params['intercept']:.4f}).")
        elif method == "isotonic" and params:
            lines.append(f"Monotone step function with {len(params.get('x', []))} knots.")
    else:
        lines.append("None: the scores are not calibrated probabilities.")
    lines.append("")

    if card.top_features:
        lines += ["## Top features", "", "| # | feature | meaning | gain share |", "|---:|---|---|---:|"]
        total = sum(max(g, 0.0) for _, g in card.top_features) or 1.0
        for i, (name, gain) in enumerate(card.top_features, start=1):
            meaning = _cell(card.descriptions.get(name, ""))
            lines.append(f"| {i} | `{_cell(name)}` | {meaning} | {max(gain, 0.0) / total:.1%} |")
        lines.append("")

    if plots:
        lines += ["## Plots", ""]
        for title, rel in plots.items():
            lines += [f"### {title}", "", f"![{_cell(title)}]({rel})", ""]

    if card.params:
        lines += ["## Parameters", "", "| parameter | value |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in card.params.items()]
        lines.append("")

    notes = _auto_limitations(card) + list(card.limitations)
    lines += ["## Limitations", ""]
    lines += [f"- {note}" for note in notes] if notes else ["- None recorded."]
    lines.append("")
    return "\n".join(lines)
