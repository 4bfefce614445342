"""Propensity jobs: churn, purchase and engagement — point-in-time data, LightGBM with early stopping,
calibration, the baselines in the same run, plots, a model card, MLflow and the registry.

Time layout for a task whose labels span ``label_days`` (snapped up to whole 30-day steps, so every
task uses cutoffs on one grid counted back from the data's end and shares their features):

    train cutoffs ... | labels end <= validation cutoff | validation cutoff (early stopping, calibration)
    | its labels end <= holdout cutoff | holdout cutoff (evaluation only) | its labels end <= data end

Training cutoffs start once the target's own look-back is covered (churn reads who bought in the 365
days before a cutoff; an earlier cutoff sees a truncated population and truncated yearly features),
when the data leaves room for that. The calibrator is fitted on the validation rows and, when the
grid holds one that the model did not train on, on the rows of the cutoff a year before the holdout
(the same season): a churn window before Christmas is not a churn window in June.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import ibis.expr.types as ir
import mlflow
import numpy as np
import pandas as pd

from bundles import registry
from bundles.errors import ModelNotFoundError
from bundles.propensity import (
    ENGAGEMENT_ACTIONS,
    PropensityBundle,
    PropensityMeta,
    PropensityModel,
    baseline_kind,
    baseline_name,
    engagement_name,
    log_model,
    write_baseline,
)
from features.contract import Channel, Col
from features.datasets import (
    LABEL,
    ChurnTarget,
    EngagementTarget,
    FeatureCache,
    PurchaseTarget,
    build_training_set,
    monthly_cutoffs,
)
from features.definitions import NUMERIC_FEATURES
from features.drift import PROFILE_FILE, reference_profile
from features.errors import KairosError
from features.ingest import require_dates
from features.store import data_currency, data_end, ingest_report, manifest_for, open_tables
from models.baselines import PropensityBaseline
from models.calibration import ProbabilityCalibrator
from models.churn import LightGBMClassifier
from models.clv import BGNBD, fit_with_penalty, rfm_summary
from models.evaluation import binary_report
from models.intervals import ROC_AUC, Interval, paired_bootstrap
from models.population import Population
from models.rfm import RFMScore
from models.stacking import COLUMNS as DERIVED_COLUMNS
from models.stacking import BaselineInputs, StackingError
from training import gate
from training.base_rate import BaseRateShift, decide, needed_cutoffs
from training.calibration_note import calibration_note
from training.gate import Incumbent
from training.inputs import add_derived, fit_per_cutoff, model_features
from training.tuning import SearchBudget, SearchResult, search

STEP_DAYS = 30
SEASON_STEPS = 12  # 360 days: the grid cutoff nearest to one year before the holdout
# LightGBM settings of every propensity model: smaller, penalised trees on row and feature samples.
# Chosen on the validation window of Online Retail II (churn 0.8065 -> 0.8100, purchase 0.7889 -> 0.7904
# ROC-AUC; docs/model-quality.md), never on a holdout.
MODEL_PARAMS: dict[str, Any] = {
    "num_leaves": 15,
    "min_child_samples": 100,
    "reg_lambda": 10.0,
    "subsample": 0.7,
    "colsample_bytree": 0.7,
}
ProgressFn = Callable[[str, float], None]


class InsufficientDataError(KairosError):
    """The data cannot support an honest training run; the message says what is missing."""


class Target(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def label_days(self) -> int: ...
    @property
    def lookback_days(self) -> int: ...
    def labels(self, tables: dict[str, ir.Table], cutoff: datetime) -> ir.Table: ...


@dataclass(frozen=True)
class Sufficiency:
    """What a training run needs before it may register a model (configurable)."""

    min_positives: int = 500
    min_negatives: int = 500
    min_history_days: int = 180
    min_holdout_per_class: int = 20


@dataclass(frozen=True)
class Task:
    """One binary propensity model: its registry name, experiment, target and baseline mapping."""

    name: str
    family: str  # MLflow experiment kairos-<family>
    target: Target
    description: str
    rfm_direction: str  # "active" (higher = buys) or "churn"
    bgnbd: str | None  # "churn" (1 - P(buy in horizon)), "purchase" (P(buy in horizon)) or None
    horizon_days: int
    # whom the question is about, as a rule on the features (None: everyone); scoring leaves others out
    population: Population | None = None


def churn_task(horizon_days: int = 90, active_days: int = 365) -> Task:
    return Task(
        "churn",
        "churn",
        ChurnTarget(horizon_days, active_days),
        f"a customer who bought in the last {active_days} days places no order in the next {horizon_days} days",
        "churn",
        "churn",
        horizon_days,
        # the labelled customers as a rule on the features: an order at most ``active_days`` ago
        Population("recency_days", float(active_days)),
    )


def purchase_task(horizon_days: int = 30) -> Task:
    return Task(
        "purchase",
        "purchase",
        PurchaseTarget(horizon_days),
        f"any known customer, leads included, places an order in the next {horizon_days} days",
        "active",
        "purchase",
        horizon_days,
    )


def engagement_task(channel: str, action: str) -> Task:
    target = EngagementTarget(channel=channel, action=action)
    return Task(
        engagement_name(action, channel),
        "engagement",
        target,
        f"the customer {action}s the first {channel} message sent in the {target.window_days} days after the "
        f"cutoff, within {target.response_days} days of sending",
        "active",
        None,
        target.label_days,
    )


def all_tasks() -> list[Task]:
    """Every binary propensity model Kairos trains by default."""
    engagement = [engagement_task(str(ch), a) for ch in Channel for a in ENGAGEMENT_ACTIONS]
    return [churn_task(), purchase_task(), *engagement]


def task_by_name(name: str, **kwargs: Any) -> Task:
    if name == "churn":
        return churn_task(**kwargs)
    if name == "purchase":
        return purchase_task(**kwargs)
    for task in all_tasks():
        if task.name == name:
            return task
    known = ", ".join(t.name for t in all_tasks())
    raise KairosError(f"unknown model {name!r}; known: {known}")


# --- time layout ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CutoffPlan:
    train: list[datetime]
    valid: datetime
    holdout: datetime
    season: datetime | None = None  # a year before the holdout, not trained on: calibration beside valid


def steps_for(label_days: int) -> int:
    return STEP_DAYS * math.ceil(label_days / STEP_DAYS)


def plan_cutoffs(
    start: datetime,
    end: datetime,
    label_days: int,
    min_history_days: int = 180,
    *,
    overlap_train_valid: bool = False,
    lookback_days: int = 0,
) -> CutoffPlan:
    """Training, validation and holdout cutoffs; no label window reaches into the holdout's.

    With ``overlap_train_valid`` the last training labels may run into the validation window (used
    by long-horizon value targets, where the data cannot hold three disjoint windows); the
    validation cutoff is still later than every training cutoff and no label reaches the holdout.

    ``lookback_days`` is the history the target reads before a cutoff (churn: its active window).
    Training cutoffs start that long after the first order when at least one fits, else after
    ``min_history_days`` as before (a truncated population beats no model). ``season`` is the grid
    cutoff a year before the holdout when it has ``min_history_days`` of history and is not a
    training cutoff: its labels end long before the holdout's, and its rows are unseen by the model.
    """
    day = datetime(end.year, end.month, end.day, tzinfo=UTC)
    span = steps_for(label_days)
    holdout = day - timedelta(days=span)
    valid = holdout - timedelta(days=span)
    last_train = valid - timedelta(days=STEP_DAYS if overlap_train_valid else span)
    earliest = start + timedelta(days=min_history_days)
    train = monthly_cutoffs(start + timedelta(days=max(min_history_days, lookback_days)), last_train, STEP_DAYS)
    if not train:
        train = monthly_cutoffs(earliest, last_train, STEP_DAYS)
    if not train:
        have = (end - start).days
        gap = STEP_DAYS if overlap_train_valid else span
        need = min_history_days + gap + 2 * span
        raise InsufficientDataError(
            f"{have} days of order history; a {label_days}-day target needs at least {need} "
            f"({min_history_days} of history before the first training cutoff, then the training, validation "
            "and holdout label windows)"
        )
    season = holdout - timedelta(days=SEASON_STEPS * STEP_DAYS)
    return CutoffPlan(train, valid, holdout, None if season < earliest or season in train else season)


def plan_for(task: Task, ctx: Context, rules: Sufficiency) -> CutoffPlan:
    """The cutoffs of ``task`` on the data of ``ctx`` (what ``train_task`` and ``kairos doctor`` use)."""
    return plan_cutoffs(
        ctx.start, ctx.end, task.target.label_days, rules.min_history_days, lookback_days=task.target.lookback_days
    )


def first_order(tables: dict[str, ir.Table]) -> datetime:
    ts = pd.Timestamp(tables["orders"][Col.ORDERED_AT].min().execute())
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def sufficiency_problems(
    counts: dict[str, tuple[int, int]], history_days: int, rules: Sufficiency, label: str = "examples"
) -> list[str]:
    """Everything missing for an honest run; ``counts`` maps set name -> (positives, negatives)."""
    problems = []
    if history_days < rules.min_history_days:
        problems.append(f"{history_days} days of history, need at least {rules.min_history_days}")
    pos, neg = counts.get("training", (0, 0))
    if pos < rules.min_positives:
        problems.append(f"training has {pos} positive {label}, need at least {rules.min_positives}")
    if neg < rules.min_negatives:
        problems.append(f"training has {neg} negative {label}, need at least {rules.min_negatives}")
    for name in ("validation", "holdout"):
        p, n = counts.get(name, (0, 0))
        if min(p, n) < rules.min_holdout_per_class:
            problems.append(
                f"{name} has {p} positive and {n} negative {label}, need at least {rules.min_holdout_per_class} of each"
            )
    return problems


def count_labels(labels: ir.Table) -> tuple[int, int]:
    """(positives, negatives) of a label table, counted in the database (no features needed)."""
    y = labels[LABEL]
    row = labels.aggregate(pos=(y == 1).cast("int64").sum(), n=y.count()).execute().iloc[0]
    pos = int(row["pos"] or 0)
    return pos, int(row["n"] or 0) - pos


def plan_counts(target: Target, tables: dict[str, ir.Table], plan: CutoffPlan) -> dict[str, tuple[int, int]]:
    """Label counts of the training, validation and holdout sets, before any feature is computed."""
    train = [count_labels(target.labels(tables, c)) for c in plan.train]
    return {
        "training": (sum(p for p, _ in train), sum(n for _, n in train)),
        "validation": count_labels(target.labels(tables, plan.valid)),
        "holdout": count_labels(target.labels(tables, plan.holdout)),
    }


# --- baselines ------------------------------------------------------------------------------------


def order_history(tables: dict[str, ir.Table], before: datetime) -> pd.DataFrame:
    """Orders of known customers strictly before ``before``: customer_key, ordered_at, amount."""
    o = tables["orders"]
    o = o.filter(o[Col.CUSTOMER_KEY].notnull(), o[Col.ORDERED_AT] < before)
    frame = o.select(Col.CUSTOMER_KEY, Col.ORDERED_AT, Col.AMOUNT).execute()
    frame[Col.ORDERED_AT] = pd.to_datetime(frame[Col.ORDERED_AT], utc=True).dt.tz_localize(None)
    return frame


def fit_bgnbd(history: pd.DataFrame, cutoff: datetime) -> tuple[BGNBD, pd.DataFrame]:
    """BG/NBD on the order history before ``cutoff`` (weeks), and each customer's (x, t_x, T)."""
    last_day = (pd.Timestamp(cutoff).tz_convert("UTC").tz_localize(None) - pd.Timedelta(days=1)).normalize()
    summary = rfm_summary(history, Col.CUSTOMER_KEY, Col.ORDERED_AT, Col.AMOUNT, last_day)
    model = fit_with_penalty(lambda c: BGNBD(penalizer_coef=c), summary["frequency"], summary["recency"], summary["T"])
    return model, summary


def bgnbd_scores(model: BGNBD, summary: pd.DataFrame, keys: pd.Series, horizon_days: int, kind: str) -> np.ndarray:
    """P(at least one order in the horizon) per key (0 for customers who never ordered), or 1 - that."""
    p = pd.Series(
        model.probability_of_purchase(horizon_days / 7.0, summary["frequency"], summary["recency"], summary["T"]),
        index=summary.index,
    )
    buy = keys.map(p).fillna(0.0).to_numpy(np.float64)
    return 1.0 - buy if kind == "churn" else buy


def _direction(name: str) -> Literal["active", "churn"]:
    return "churn" if name == "churn" else "active"


def fit_baselines(
    cfg: PropensityConfig, ctx: Context, data: PropensityData
) -> dict[str, tuple[PropensityBaseline, ProbabilityCalibrator]]:
    """Every baseline of ``cfg.task`` as it would be served, each with a Platt calibrator fitted on the
    calibration rows (a monotone map: the baseline's ranking, hence its ROC-AUC, is its own).

    RFM score and logistic RFM learn from the training rows; BG/NBD from every customer's feature row at
    the holdout cutoff (order history before it, no label: nothing of the holdout's outcome); the past
    engagement rate learns nothing. Every one reads the feature row only, as the API and the export do.
    """
    task, train = cfg.task, data.train
    fitted: dict[str, PropensityBaseline] = {
        "rfm_score": PropensityBaseline("rfm_score", direction=_direction(task.rfm_direction)).fit(train),
        "rfm_logistic": PropensityBaseline("rfm_logistic").fit(train, train[LABEL].to_numpy()),
    }
    if task.bgnbd is not None:
        fitted["bgnbd"] = PropensityBaseline(
            "bgnbd", direction=_direction(task.bgnbd), horizon_days=task.horizon_days
        ).fit(ctx.features(data.plan.holdout))
    else:
        target = task.target
        assert isinstance(target, EngagementTarget)
        fitted["past_rate"] = PropensityBaseline("past_rate", channel=target.channel, action=target.action).fit(train)
    y_cal = data.calibration[LABEL].to_numpy()
    out = {}
    for name, baseline in fitted.items():
        raw = PropensityModel(baseline, baseline.feature_names_, None).score(data.calibration)
        out[name] = (baseline, ProbabilityCalibrator(method="platt", seed=cfg.seed).fit(raw, y_cal))
    return out


# --- the job ------------------------------------------------------------------------------------


@dataclass
class PropensityRun:
    """What a training run produced: metrics of the model and of every baseline, on the same holdout."""

    task: str
    run_id: str
    metrics: dict[str, float]
    table: pd.DataFrame  # one row per model (kairos, kairos_uncalibrated, baselines), metric columns
    registration: registry.Registration | None
    plan: CutoffPlan
    sizes: dict[str, int] = field(default_factory=dict)
    quality: dict[str, bool] = field(default_factory=dict)
    card: str = ""
    best_baseline: str = ""  # the baseline with the highest holdout ROC-AUC in this run
    versus: Interval | None = None  # kairos - best baseline, paired bootstrap 95 % on the holdout
    served: Served | None = None  # what the gate decided is served (None when not registering)
    notes: tuple[str, ...] = ()  # e.g. why the holdout ECE misses 0.05

    @property
    def decision(self) -> str:
        """Which model is served and why (``serving the bgnbd baseline: kairos does not beat it, ...``)."""
        return self.served.line if self.served is not None else "not registered"

    @property
    def versus_line(self) -> str:
        """``kairos beats bgnbd by +0.0120 roc_auc [+0.0040, +0.0200]`` or ``... not significantly better ...``."""
        return self.versus.describe("kairos", self.best_baseline) if self.versus is not None else ""


@dataclass
class Context:
    """Shared by every task of one run: tables, the feature cache and the order history."""

    data_home: Path
    tables: dict[str, ir.Table]
    features: FeatureCache
    start: datetime
    end: datetime

    as_of: datetime | None = None  # the tables are seen as they stood then (None: all the data)

    @classmethod
    def open(cls, data_home: Path, as_of: datetime | None = None) -> Context:
        """The data of ``data_home``, as of ``as_of`` when given: every later row is invisible, so the data's
        end, the cutoffs and the labels are those of an export truncated at ``as_of``."""
        require_dates(data_home, "a job built on time windows (churn, purchase, engagement, value, doctor, backtest)")
        tables = open_tables(data_home, as_of=as_of)
        return cls(Path(data_home), tables, FeatureCache(tables), first_order(tables), data_end(tables), as_of)


@dataclass(frozen=True)
class PropensityConfig:
    """Everything one propensity training run is a function of, besides the data."""

    task: Task
    tracking_uri: str
    margin: float = 0.0  # how much the new version must beat the champion's holdout ROC-AUC by
    register: bool = True
    seed: int = 0
    sufficiency: Sufficiency = field(default_factory=Sufficiency)
    band_cuts: tuple[float, float] = (0.3, 0.6)
    # offer the baselines' outputs as inputs (models/stacking.py): kept where validation says they help
    baseline_inputs: bool = True
    search: SearchBudget = field(default_factory=SearchBudget)  # 0 trials: MODEL_PARAMS as they are
    base_rate_shift: bool = True  # the seasonal correction of the calibrator where validation favours it


@dataclass(frozen=True)
class PropensityData:
    """The point-in-time sets of one run: rolling-origin training rows, validation, calibration, holdout."""

    plan: CutoffPlan
    counts: dict[str, tuple[int, int]]  # labels per set, counted in the database before anything is built
    train: pd.DataFrame
    valid: pd.DataFrame
    calibration: pd.DataFrame  # the validation rows and the same season a year earlier
    holdout: pd.DataFrame
    features: tuple[str, ...] = NUMERIC_FEATURES  # what the model reads from a feature row
    # the holdout cutoff's fit of the derived columns (present in every frame above when not None)
    stacking: BaselineInputs | None = None
    text_features: tuple[str, ...] = ()  # this data's features no model reads (labels)
    shift: BaseRateShift | None = None  # decided on labels that end by the validation cutoff


@dataclass(frozen=True)
class PropensityFit:
    model: LightGBMClassifier
    calibrator: ProbabilityCalibrator
    stacking: BaselineInputs | None = None  # set when the model reads the derived columns
    search: SearchResult | None = None
    shift: BaseRateShift | None = None
    inputs_choice: str = ""  # how the baselines' outputs were kept or left out


@dataclass(frozen=True)
class PropensityEvaluation:
    """The model beside its baselines on the holdout."""

    scores: dict[str, np.ndarray]  # per holdout row, by model
    raw: np.ndarray  # the model's uncalibrated holdout probabilities
    table: pd.DataFrame  # one row per model, binary_report columns
    metrics: dict[str, float]
    quality: dict[str, bool]
    sizes: dict[str, int]
    rfm: RFMScore
    best_baseline: str
    versus: Interval  # kairos - best baseline: paired bootstrap 95 % interval of the holdout ROC-AUC
    # each baseline as it would be served: fitted, and its calibrator (Platt, on the calibration rows)
    baselines: dict[str, tuple[PropensityBaseline, ProbabilityCalibrator]] = field(default_factory=dict)


def versus_best_baseline(
    y: np.ndarray, scores: dict[str, np.ndarray], baselines: Sequence[str], seed: int = 0
) -> tuple[str, Interval]:
    """The baseline with the highest ROC-AUC on these rows and the paired bootstrap 95 % interval of
    (kairos - it) over the same rows."""
    best = max(baselines, key=lambda b: ROC_AUC(y, scores[b]))
    return best, paired_bootstrap(ROC_AUC, y, scores["kairos"], scores[best], seed=seed)


def build_data(cfg: PropensityConfig, ctx: Context, tick: ProgressFn) -> PropensityData:
    """The training, validation, calibration and holdout sets of ``cfg.task``.

    Raises:
        InsufficientDataError: the data is too thin (every missing item is named); nothing is built.
    """
    task = cfg.task
    if isinstance(task.target, EngagementTarget) and "messages" not in ctx.tables:
        raise InsufficientDataError(f"{task.name}: the data has no message history (no messages table)")
    plan = plan_for(task, ctx, cfg.sufficiency)
    # Refuse thin data before the expensive part: labels are counted in the database first.
    counts = plan_counts(task.target, ctx.tables, plan)
    problems = sufficiency_problems(counts, (ctx.end - ctx.start).days, cfg.sufficiency)
    if problems:
        raise InsufficientDataError(f"{task.name}: not registering; " + "; ".join(problems))
    tick(f"{task.name}: building training set", 0.05)
    train = build_training_set(ctx.tables, plan.train, task.target.labels, ctx.features)
    tick(f"{task.name}: building validation and holdout sets", 0.3)
    valid = build_training_set(ctx.tables, [plan.valid], task.target.labels, ctx.features)
    holdout = build_training_set(ctx.tables, [plan.holdout], task.target.labels, ctx.features)
    calibration = valid
    if plan.season is not None:
        season = build_training_set(ctx.tables, [plan.season], task.target.labels, ctx.features)
        calibration = pd.concat([valid, season], ignore_index=True)
    features, text = model_features(ctx.tables)
    stacking = None
    if cfg.baseline_inputs or cfg.search.trials:
        tick(f"{task.name}: the baselines' outputs at each cutoff", 0.4)
        cutoffs = [*plan.train, plan.valid, plan.holdout, *([plan.season] if plan.season is not None else [])]
        try:
            fitted = fit_per_cutoff(ctx.features, cutoffs, task.horizon_days)
        except StackingError as exc:
            raise InsufficientDataError(f"{task.name}: {exc}") from exc
        train, valid, calibration, holdout = (add_derived(f, fitted) for f in (train, valid, calibration, holdout))
        stacking = fitted[pd.Timestamp(plan.holdout)]
    shift = _base_rate_shift(cfg, ctx, plan) if cfg.base_rate_shift else None
    return PropensityData(plan, counts, train, valid, calibration, holdout, features, stacking, text, shift)


def _base_rate_shift(cfg: PropensityConfig, ctx: Context, plan: CutoffPlan) -> BaseRateShift:
    """The seasonal correction's decision (training/base_rate.py) from label counts of matured windows."""
    target = cfg.task.target
    span = timedelta(days=steps_for(target.label_days))
    earliest = ctx.start + timedelta(days=max(cfg.sufficiency.min_history_days, target.lookback_days))
    wanted = set(needed_cutoffs(plan.valid, plan.holdout, span).values())

    def rate_at(cutoff: datetime) -> float | None:
        if cutoff < earliest or cutoff not in wanted or cutoff + span > plan.holdout:
            return None  # a truncated population, or a label window the decision must not read
        pos, neg = count_labels(target.labels(ctx.tables, cutoff))
        return pos / (pos + neg) if pos + neg else None

    return decide(rate_at, plan.valid, plan.holdout, span)


def fit(cfg: PropensityConfig, data: PropensityData, tick: ProgressFn) -> PropensityFit:
    """LightGBM with early stopping on the validation rows, calibrated on rows it never saw."""
    features = list(data.features)
    derived = list(DERIVED_COLUMNS) if data.stacking is not None else []
    params, stacked, found = dict(MODEL_PARAMS), cfg.baseline_inputs and bool(derived), None
    if cfg.search.trials:
        tick(f"{cfg.task.name}: searching LightGBM settings on the validation window", 0.42)
        # the training and validation rows only: the search never sees the calibration or holdout rows
        found = search(
            data.train, data.valid, features, derived, params, cfg.search, use_derived=stacked, seed=cfg.seed
        )
        params, stacked = found.params, found.baseline_inputs
    tick(f"{cfg.task.name}: fitting LightGBM", 0.45)

    def fit_on(columns: list[str]) -> tuple[LightGBMClassifier, float]:
        m = LightGBMClassifier(seed=cfg.seed, **params).fit(
            data.train[columns], data.train[LABEL], eval_set=(data.valid[columns], data.valid[LABEL])
        )
        return m, float(ROC_AUC(data.valid[LABEL].to_numpy(), m.predict_proba(data.valid[columns])))

    model, score = fit_on([*features, *(derived if stacked else [])])
    choice = "chosen by the search" if found is not None else ("offered" if stacked else "not offered")
    if stacked and found is None:
        # offered, kept only where the validation window says they help (a tie keeps the plainer model)
        plain, plain_score = fit_on(features)
        choice = f"validation ROC-AUC {score:.4f} with, {plain_score:.4f} without"
        if plain_score >= score:
            model, stacked = plain, False
    calibrator = ProbabilityCalibrator(method="auto", seed=cfg.seed).fit(
        model.predict_proba(data.calibration[model.feature_names_]), data.calibration[LABEL].to_numpy()
    )
    if data.shift is not None and data.shift.used and data.shift.target_rate is not None:
        calibrator = calibrator.shifted(float(data.calibration[LABEL].mean()), data.shift.target_rate)
    return PropensityFit(model, calibrator, data.stacking if stacked else None, found, data.shift, choice)


def evaluate(
    cfg: PropensityConfig, ctx: Context, data: PropensityData, fitted: PropensityFit, tick: ProgressFn
) -> PropensityEvaluation:
    """The model and its baselines (RFM score, logistic RFM, BG/NBD or the past rate) on the holdout."""
    task, train, valid, holdout = cfg.task, data.train, data.valid, data.holdout
    features = list(fitted.model.feature_names_)
    model, calibrator = fitted.model, fitted.calibrator
    y = holdout[LABEL].to_numpy()
    raw = model.predict_proba(holdout[features])
    scores: dict[str, np.ndarray] = {"kairos": calibrator.transform(raw), "kairos_uncalibrated": raw}

    tick(f"{task.name}: baselines", 0.6)
    served = fit_baselines(cfg, ctx, data)
    for name, (baseline, calibrated) in served.items():
        # scored as the API and the export would score it if it were served: float32 rows, its calibrator
        scores[name] = PropensityModel(baseline, baseline.feature_names_, None, calibrated).score(holdout)
    rfm = served["rfm_score"][0].model_
    reports = {name: binary_report(y, s) for name, s in scores.items()}
    table = pd.DataFrame(reports).T
    table.index.name = "model"
    baselines = [n for n in scores if n not in ("kairos", "kairos_uncalibrated")]
    ours = reports["kairos"]
    quality = {
        **{f"beats_{b}": bool(ours["roc_auc"] > reports[b]["roc_auc"]) for b in baselines},
        "ece_below_0.05": bool(ours["ece"] < 0.05),
    }
    metrics = {f"holdout_{k}": float(v) for k, v in ours.items()}
    for name in scores:
        if name != "kairos":
            metrics.update({f"{name}_{k}": float(v) for k, v in reports[name].items()})
    best, versus = versus_best_baseline(y, scores, baselines, cfg.seed)
    metrics.update(
        {
            "vs_best_baseline_roc_auc_diff": versus.diff,
            "vs_best_baseline_roc_auc_low": versus.low,
            "vs_best_baseline_roc_auc_high": versus.high,
        }
    )
    quality["significantly_beats_best_baseline"] = versus.better()
    metrics["valid_roc_auc"] = binary_report(valid[LABEL].to_numpy(), model.predict_proba(valid[features]))["roc_auc"]
    metrics["best_iteration"] = float(model.best_iteration_)
    sizes = {
        "train_rows": len(train),
        "valid_rows": len(valid),
        "calibration_rows": len(data.calibration),
        "holdout_rows": len(holdout),
        "train_positives": data.counts["training"][0],
        "valid_positives": data.counts["validation"][0],
        "holdout_positives": data.counts["holdout"][0],
    }
    return PropensityEvaluation(scores, raw, table, metrics, quality, sizes, rfm, best, versus, served)


@dataclass(frozen=True)
class Served:
    """The gate's outcome: the line saying which model is served and why, what is served
    (``candidate``, ``baseline`` or ``incumbent``), and the baseline's registration when it took
    ``@champion``."""

    line: str
    what: str
    baseline: registry.Registration | None = None
    baseline_name: str = ""


def champion_on(tracking_uri: str, name: str, holdout: pd.DataFrame) -> Incumbent | None:
    """The current ``@champion`` of ``name`` scored on the candidate's ``holdout`` rows, loaded and verified
    as the export loads it (a Kairos model or a baseline alike); None when there is no champion. A
    champion that cannot be loaded or lacks a feature of the rows comes back without scores, and why."""
    try:
        version, kind = registry.resolve_kind(tracking_uri, name, registry.CHAMPION, None)
    except ModelNotFoundError:
        return None
    baseline = baseline_name(kind)
    try:
        loader = PropensityBundle()
        with tempfile.TemporaryDirectory() as tmp:
            fetched = loader.fetch(tracking_uri, name, registry.CHAMPION, Path(tmp), version=version)
            champion = loader.build(fetched.folder, fetched.provenance, None)
        missing = [f for f in champion.features if f not in holdout.columns]
        if missing:
            raise KairosError(f"the holdout lacks the champion's feature(s) {missing}")
        scores = champion.score(holdout)
    except Exception as exc:  # any failure to score the champion: the gate says so and does not rely on it
        return Incumbent(version, baseline, None, str(exc))
    return Incumbent(version, baseline, scores)


def _gate_and_register(
    cfg: PropensityConfig,
    job: registry.JobRun,
    model_uri: str,
    meta: PropensityMeta,
    manifest: dict[str, Any],
    model: LightGBMClassifier,
    data: PropensityData,
    result: PropensityEvaluation,
) -> tuple[registry.Registration, Served]:
    """Register the candidate (``@champion`` only through the gate, training/gate.py) and, when the best
    baseline is what is to be served, that baseline as ``@champion`` beside it."""
    task, holdout = cfg.task, data.holdout
    y = holdout[LABEL].to_numpy()
    best = result.best_baseline
    # scored as the export scores it, so an identical retrain gives the champion's very numbers
    candidate = PropensityModel.from_parts(model, meta).score(holdout)
    incumbent = champion_on(cfg.tracking_uri, task.name, holdout)
    verdict = gate.decide(
        y, candidate, best, result.scores[best], result.versus, incumbent, margin=cfg.margin, seed=cfg.seed
    )
    tags = {"kairos.run_id": job.run_id, "kairos.definition_hash": manifest["definition_hash"]}
    registration = registry.register_decided(
        job.client,
        model_uri,
        task.name,
        alias=verdict.candidate_alias,
        reason=verdict.candidate_reason,
        metric_name="holdout_roc_auc",
        metric_value=result.metrics["holdout_roc_auc"],
        extra_tags={**tags, **meta.checksum_tags()},
    )
    mlflow.set_tag("kairos.registration", f"v{registration.version} -> @{registration.alias}: {registration.reason}")
    served = Served(verdict.line, verdict.served, None, best)
    if verdict.registers_baseline:
        baseline, calibrated = result.baselines[best]
        bmeta = replace(
            meta,
            features=tuple(baseline.feature_names_),
            calibrator=calibrated.to_dict(),
            model_kind=baseline_kind(best),
            stacking=None,  # a baseline reads its own inputs off the feature row, never the derived columns
        )
        folder = job.folder / "baseline"
        write_baseline(folder, baseline, bmeta)
        info = registry.log_bundle(folder, "baseline", {"kairos": bmeta.to_dict()})
        reg = registry.register_decided(
            job.client,
            info.model_uri,
            task.name,
            alias=registry.CHAMPION,
            reason=verdict.line,
            metric_name="holdout_roc_auc",
            metric_value=float(result.metrics[f"{best}_roc_auc"]),
            extra_tags={**tags, registry.TAG_KIND: bmeta.model_kind},
            checksum_file=f"{registry.BUNDLE_DIR}/{registry.CHECKSUMS}",
        )
        served = Served(verdict.line, verdict.served, reg, best)
        mlflow.set_tag("kairos.baseline_registration", f"v{reg.version} -> @{reg.alias}")
    mlflow.set_tag("kairos.served", verdict.line)
    return registration, served


def log_and_register(
    cfg: PropensityConfig,
    ctx: Context,
    data: PropensityData,
    fitted: PropensityFit,
    result: PropensityEvaluation,
    tick: ProgressFn,
) -> PropensityRun:
    """The run in MLflow (parameters, metrics, tables, plots, model card) and the model registered:
    ``@champion`` only if it beats the champion's holdout ROC-AUC by more than ``cfg.margin``."""
    task, plan, holdout = cfg.task, data.plan, data.holdout
    model, calibrator = fitted.model, fitted.calibrator
    features = list(model.feature_names_)  # the feature row's columns, then any derived ones
    y = holdout[LABEL].to_numpy()
    tick(f"{task.name}: plots and model card", 0.7)
    report = ingest_report(ctx.data_home)
    currency = data_currency(ctx.data_home)
    manifest = manifest_for(ctx.features(plan.holdout).head(0), plan.holdout, report["source_hash"], currency)
    manifest.pop("rows")
    params = {
        **model.get_params(),
        "task": task.name,
        "label_days": task.target.label_days,
        "calibration": calibrator.method_,
        "train_cutoffs": len(plan.train),
        "first_train_cutoff": plan.train[0].date().isoformat(),
        "valid_cutoff": plan.valid.date().isoformat(),
        "calibration_cutoffs": ",".join(c.date().isoformat() for c in (plan.valid, plan.season) if c is not None),
        "holdout_cutoff": plan.holdout.date().isoformat(),
        "band_cuts": ",".join(str(c) for c in cfg.band_cuts),
        "data_as_of": ctx.as_of.isoformat() if ctx.as_of else "all",
        "data_end": ctx.end.isoformat(),
        "currency": currency,
        "inputs": len(data.features),
        "inputs_not_read": ",".join(data.text_features) or "none",
        "baseline_inputs": fitted.stacking is not None,
        "baseline_inputs_choice": fitted.inputs_choice,
        "base_rate_shift": fitted.shift.reason if fitted.shift is not None else "off",
        **(fitted.search.summary() if fitted.search is not None else {"search_trials": 0}),
    }
    meta = PropensityMeta(
        features=tuple(data.features),
        manifest=manifest,
        target=task.name,
        description=task.description,
        horizon_days=task.horizon_days,
        calibrator=calibrator.to_dict(),
        bands=cfg.band_cuts,
        base_rate=float(y.mean()),
        population=task.population,
        holdout_cutoff=plan.holdout.isoformat(),
        stacking=fitted.stacking.to_dict() if fitted.stacking is not None else None,
    )
    registration = None
    tags = {"kairos.data_hash": report["source_hash"]}
    with registry.job_run(cfg.tracking_uri, f"kairos-{task.family}", task.name, tags) as job:
        mlflow.log_params(params)
        mlflow.log_metrics({**result.metrics, **{k: float(v) for k, v in result.sizes.items()}})
        mlflow.log_dict(manifest, "feature_manifest.json")
        mlflow.log_dict(calibrator.to_dict(), "calibrator.json")
        mlflow.log_dict({"rfm_score": result.rfm.to_dict()}, "baselines.json")
        if fitted.search is not None:
            fitted.search.trials.to_csv(job.folder / "search_trials.csv", index=False)
            mlflow.log_artifact(str(job.folder / "search_trials.csv"))
        # the feature row's columns only: the snapshot the monitor compares it with has no derived columns
        row_features = [f for f in features if f not in DERIVED_COLUMNS]
        mlflow.log_dict(reference_profile(holdout, row_features, rows_are="the latest cutoff's rows"), PROFILE_FILE)
        versus_line = result.versus.describe("kairos", result.best_baseline)
        why = calibration_note(
            y,
            result.scores["kairos"],
            data.calibration[LABEL].to_numpy(),
            [c for c in (plan.valid, plan.season) if c is not None],
            plan.holdout,
        )
        notes = (why,) if why else ()
        if why:
            mlflow.set_tag("kairos.calibration_note", why)
        mlflow.log_dict(
            {"best_baseline": result.best_baseline, "line": versus_line, **result.versus.to_dict()},
            "vs_best_baseline.json",
        )
        mlflow.set_tag("kairos.vs_best_baseline", versus_line)
        folder = job.folder
        result.table.to_csv(folder / "holdout_metrics.csv")
        mlflow.log_artifact(str(folder / "holdout_metrics.csv"))
        plots = _plots(folder, y, result.scores, model, holdout[features], result.raw)
        for path in plots.values():
            mlflow.log_artifact(str(path), artifact_path="plots")
        info = log_model(model, meta, holdout[features].head(5))
        served = None
        if cfg.register:
            tick(f"{task.name}: the gate (candidate, champion, best baseline)", 0.8)
            registration, served = _gate_and_register(cfg, job, info.model_uri, meta, manifest, model, data, result)
        card = _card(
            task,
            params,
            result.table,
            result.sizes,
            plan,
            registration,
            report["source_hash"],
            plots,
            calibrator,
            model,
            job.run_id,
            currency,
            (versus_line, *notes),
            served.line if served is not None else "",
        )
        (folder / "model_card.md").write_text(card, encoding="utf-8")
        mlflow.log_artifact(str(folder / "model_card.md"))
        for reg in (registration, served.baseline if served is not None else None):
            if reg is not None:
                job.client.update_model_version(task.name, reg.version, description=card)
    return PropensityRun(
        task.name,
        job.run_id,
        result.metrics,
        result.table,
        registration,
        plan,
        result.sizes,
        result.quality,
        card,
        result.best_baseline,
        result.versus,
        served,
        notes,
    )


def train_task(
    task: Task,
    data_home: Path,
    tracking_uri: str,
    *,
    margin: float = 0.0,
    register: bool = True,
    seed: int = 0,
    sufficiency: Sufficiency | None = None,
    band_cuts: tuple[float, float] = (0.3, 0.6),
    context: Context | None = None,
    as_of: datetime | None = None,
    progress: ProgressFn | None = None,
    baseline_inputs: bool = True,
    search_budget: SearchBudget | None = None,
    base_rate_shift: bool = True,
) -> PropensityRun:
    """Train one propensity model, evaluate it beside its baselines on the holdout, log and register it:
    :func:`build_data` -> :func:`fit` -> :func:`evaluate` -> :func:`log_and_register`.

    ``as_of`` trains on the data as it stood then (:meth:`Context.open`); a given ``context`` carries its own.

    Raises:
        InsufficientDataError: the data is too thin (every missing item is named); nothing is logged.
    """
    tick = progress or (lambda step, frac: None)
    cfg = PropensityConfig(
        task,
        tracking_uri,
        margin,
        register,
        seed,
        sufficiency or Sufficiency(),
        band_cuts,
        baseline_inputs,
        search_budget or SearchBudget(),
        base_rate_shift,
    )
    ctx = context or Context.open(data_home, as_of)
    data = build_data(cfg, ctx, tick)
    fitted = fit(cfg, data, tick)
    result = evaluate(cfg, ctx, data, fitted, tick)
    run = log_and_register(cfg, ctx, data, fitted, result, tick)
    tick(f"{task.name}: done", 1.0)
    return run


def _plots(
    folder: Path,
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    model: LightGBMClassifier,
    X: pd.DataFrame,
    raw: np.ndarray,
) -> dict[str, Path]:
    from features.definitions import DESCRIPTIONS
    from training import plots

    text = model.to_text()
    sample = X.sample(n=min(len(X), 2000), random_state=0) if len(X) > 2000 else X
    probabilities = {k: v for k, v in scores.items() if k in ("kairos", "kairos_uncalibrated")}
    return {
        "Cumulative gains": plots.gains_chart(y, scores, folder / "gains.png"),
        "Calibration": plots.calibration_curve(y, probabilities, folder / "calibration.png"),
        "Feature importance": plots.feature_importance(text, folder / "importance.png", descriptions=DESCRIPTIONS),
        "SHAP summary": plots.shap_summary(text, sample, folder / "shap_summary.png"),
    }


def _card(
    task: Task,
    params: dict[str, Any],
    table: pd.DataFrame,
    sizes: dict[str, int],
    plan: CutoffPlan,
    registration: registry.Registration | None,
    data_hash: str,
    plots: dict[str, Path],
    calibrator: ProbabilityCalibrator,
    model: LightGBMClassifier,
    run_id: str,
    currency: str | None = None,
    comparisons: Sequence[str] = (),
    served: str = "",
) -> str:
    from features.definitions import DESCRIPTIONS
    from training.model_card import DataSummary, ModelCard, render_model_card

    gains = model.booster_.feature_importance(importance_type="gain")
    top = sorted(zip(model.feature_names_, gains.tolist(), strict=True), key=lambda kv: -kv[1])[:10]
    return render_model_card(
        ModelCard(
            name=task.name,
            target=task.description,
            data=DataSummary(
                train_cutoffs=plan.train,
                valid_cutoff=plan.valid,
                holdout_cutoff=plan.holdout,
                rows={"train": sizes["train_rows"], "valid": sizes["valid_rows"], "holdout": sizes["holdout_rows"]},
                positives={
                    "train": sizes["train_positives"],
                    "valid": sizes["valid_positives"],
                    "holdout": sizes["holdout_positives"],
                },
                data_hash=data_hash,
                currency=currency,
            ),
            metrics={str(k): {m: float(v) for m, v in row.items()} for k, row in table.iterrows()},
            candidate="kairos",
            baselines=[n for n in table.index if n not in ("kairos", "kairos_uncalibrated")],
            primary_metric="roc_auc",
            version=registration.version if registration else None,
            alias=registration.alias if registration else None,
            decision=registration.reason if registration else "not registered",
            calibration=calibrator.to_dict(),
            top_features=top,
            descriptions=DESCRIPTIONS,
            plots={title: f"plots/{path.name}" for title, path in plots.items()},
            params=params,
            run_id=run_id,
            created_at=datetime.now(UTC),
            comparisons=comparisons,
            served=served,
        )
    )


def train_many(
    tasks: Sequence[Task],
    data_home: Path,
    tracking_uri: str,
    *,
    progress: ProgressFn | None = None,
    as_of: datetime | None = None,
    **kwargs: Any,
) -> dict[str, PropensityRun | InsufficientDataError]:
    """Train several tasks sharing one feature cache (on the data as of ``as_of`` when given); a task
    without enough data is reported, not fatal."""
    ctx = Context.open(data_home, as_of)
    out: dict[str, PropensityRun | InsufficientDataError] = {}
    for i, task in enumerate(tasks):

        def tick(step: str, frac: float, i: int = i) -> None:
            if progress:
                progress(step, (i + frac) / len(tasks))

        try:
            out[task.name] = train_task(task, data_home, tracking_uri, context=ctx, progress=tick, **kwargs)
        except InsufficientDataError as exc:
            out[task.name] = exc
    return out


def metrics_json(run: PropensityRun) -> str:
    return json.dumps({"task": run.task, "metrics": run.metrics, "quality": run.quality}, indent=2, default=float)
