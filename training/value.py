"""Value jobs: LightGBM spend and order-count models over a horizon, and the probabilistic models
(BG/NBD, MBG/NBD, Gamma-Gamma: P(alive), expected orders, next order date, CLV), fitted in the same run
and compared on the same temporal holdout.

The LightGBM value model's labels are ``horizon_days`` long, so a 365-day horizon needs about
990 days of data (history, training windows, validation, holdout); shorter data must use a shorter
``horizon_days`` and the job says so. The probabilistic models need no labels to fit: the registered
``clv`` bundle is fitted on all the data and answers for any horizon.

The ``value`` registration goes through the gate (training/gate.py): Kairos's regressors are ``@champion``
only when they beat the best baseline (last period, BG/NBD or MBG/NBD x Gamma-Gamma, each read off the
feature row as served: :class:`models.baselines.ValueBaseline`) on holdout Spearman of spend, are not
significantly worse on MAE, and beat the champion; otherwise the best baseline is served and labelled.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from bundles import registry
from bundles.errors import ModelNotFoundError
from bundles.value import BASELINE_PREFIX, CLV_MODEL, VALUE_MODEL, ClvBundle, ValueBundle, ValueModels, baseline_kind
from features.contract import Col
from features.datasets import LABEL, ORDERS_LABEL, ValueTarget, build_training_set
from features.definitions import NUMERIC_FEATURES
from features.errors import KairosError
from features.store import NO_PRICES, data_currency, data_has_prices, ingest_report, manifest_for
from models.baselines import ValueBaseline
from models.clv import BGNBD, CLV_FIELDS, GammaGamma, ModifiedBGNBD, fit_with_penalty, rfm_summary
from models.evaluation import decile_calibration, value_report
from models.intervals import MAE, SPEARMAN, Interval, Metric, paired_bootstrap
from models.value import LightGBMRegressor
from training import gate
from training.gate import Incumbent
from training.propensity import (
    Context,
    CutoffPlan,
    InsufficientDataError,
    ProgressFn,
    Sufficiency,
    order_history,
    plan_cutoffs,
)

EXPERIMENT = "kairos-value"
WEEK = 7.0


@dataclass
class ValueRun:
    run_id: str
    horizon_days: int
    metrics: dict[str, float]
    spend: pd.DataFrame  # one row per model: MAE, RMSE, Spearman on holdout spend
    orders: pd.DataFrame  # the same for order counts
    deciles: pd.DataFrame  # decile calibration of Kairos's spend model
    registration: registry.Registration | None
    clv_registration: registry.Registration | None
    plan: CutoffPlan
    clv_params: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    versus: dict[str, tuple[str, Interval]] = field(default_factory=dict)  # spend metric -> (best baseline, interval)
    served: Served | None = None  # what the gate decided is served (None when not registering)

    @property
    def decision(self) -> str:
        """Which value model is served and why (``serving the last_period baseline: kairos does not beat ...``)."""
        return self.served.line if self.served is not None else "not registered"

    @property
    def versus_lines(self) -> list[str]:
        """One line per spend metric: kairos against the best baseline on it, with the 95 % interval."""
        return [iv.describe("kairos", f"{best} on spend") for best, iv in self.versus.values()]


SPEND_BASELINES = ("bgnbd_gamma_gamma", "mbgnbd_gamma_gamma", "last_period")


def versus_best_baseline(
    y: np.ndarray, predictions: dict[str, np.ndarray], metric: Metric, seed: int = 0
) -> tuple[str, Interval]:
    """The baseline best on ``metric`` over these rows and the paired bootstrap 95 % interval of
    (kairos - it)."""
    sign = 1.0 if metric.higher_is_better else -1.0
    best = max(SPEND_BASELINES, key=lambda b: sign * metric(y, predictions[b]))
    return best, paired_bootstrap(metric, y, predictions["kairos"], predictions[best], seed=seed)


@dataclass(frozen=True)
class ProbabilisticModels:
    """BG/NBD, MBG/NBD and Gamma-Gamma fitted on one calibration period, with each customer's summary."""

    bgnbd: BGNBD
    mbgnbd: ModifiedBGNBD
    gamma: GammaGamma | None
    summary: pd.DataFrame
    as_of: datetime

    def predict(self, keys: pd.Series, horizon_days: float, variant: str = "bgnbd") -> pd.DataFrame:
        """Per key: p_alive, expected orders, expected order value and spend in the horizon; the
        median days to the next order. Customers who never ordered get zeros and NaN days."""
        model = self.bgnbd if variant == "bgnbd" else self.mbgnbd
        s = self.summary
        x, t_x, big_t = s["frequency"], s["recency"], s["T"]
        t = horizon_days / WEEK
        expected = model.expected_purchases(t, x, t_x, big_t)
        # Gamma-Gamma is fitted on repeat buyers; everyone gets its conditional mean (population
        # mean for one-time buyers). Without a fit (too few repeat buyers) the mean order value is used.
        if self.gamma is not None:
            value = self.gamma.conditional_expected_value(x, s["monetary_value"].clip(lower=0.01))
        else:
            value = np.full(len(s), float(s["first_value"].mean()))
        frame = pd.DataFrame(
            {
                "p_alive": model.p_alive(x, t_x, big_t),
                "expected_orders": expected,
                "p_purchase": model.probability_of_purchase(t, x, t_x, big_t),
                "expected_order_value": value,
                "expected_spend": expected * value,
                "next_order_days": model.expected_next_purchase_days(x, t_x, big_t, WEEK),
            },
            index=s.index,
        )
        if tuple(frame.columns) != CLV_FIELDS:  # what the bundle promises its readers
            raise RuntimeError(f"CLV columns {list(frame.columns)} differ from the promised {list(CLV_FIELDS)}")
        out = frame.reindex(keys.to_numpy())
        fill = {"p_alive": 0.0, "expected_orders": 0.0, "p_purchase": 0.0, "expected_spend": 0.0}
        return out.fillna(fill).set_index(pd.RangeIndex(len(keys)))

    def params(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "time_unit_days": WEEK,
            "bgnbd": self.bgnbd.to_dict(),
            "mbgnbd": self.mbgnbd.to_dict(),
            "gamma_gamma": self.gamma.to_dict() if self.gamma is not None else None,
        }


def fit_probabilistic(history: pd.DataFrame, as_of: datetime) -> ProbabilisticModels:
    """Fit BG/NBD, MBG/NBD and Gamma-Gamma on the orders before ``as_of`` (weeks, day-level transactions)."""
    last_day = (pd.Timestamp(as_of).tz_convert("UTC").tz_localize(None) - pd.Timedelta(days=1)).normalize()
    summary = rfm_summary(history, Col.CUSTOMER_KEY, Col.ORDERED_AT, Col.AMOUNT, last_day, time_unit_days=WEEK)
    first = history.sort_values(Col.ORDERED_AT).groupby(Col.CUSTOMER_KEY)[Col.AMOUNT].first()
    summary["first_value"] = first.reindex(summary.index).to_numpy()
    x, t_x, big_t = summary["frequency"], summary["recency"], summary["T"]
    bg = fit_with_penalty(lambda c: BGNBD(penalizer_coef=c), x, t_x, big_t)
    mbg = fit_with_penalty(lambda c: ModifiedBGNBD(penalizer_coef=c), x, t_x, big_t)
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    gamma = None
    if len(repeat) >= 20:
        gamma = fit_with_penalty(lambda c: GammaGamma(penalizer_coef=c), repeat["frequency"], repeat["monetary_value"])
    return ProbabilisticModels(bg, mbg, gamma, summary, as_of)


@dataclass(frozen=True)
class ValueConfig:
    """Everything one value training run is a function of, besides the data."""

    tracking_uri: str
    horizon_days: int = 365
    margin: float = 0.0  # the lower end of (new - champion) holdout Spearman of spend must be above it
    register: bool = True
    seed: int = 0
    sufficiency: Sufficiency = field(default_factory=Sufficiency)


@dataclass(frozen=True)
class ValueData:
    """Rolling-origin training rows, validation and holdout, labelled with spend and orders in the horizon."""

    plan: CutoffPlan
    train: pd.DataFrame
    valid: pd.DataFrame
    holdout: pd.DataFrame


@dataclass(frozen=True)
class ValueFit:
    spend: LightGBMRegressor  # Tweedie
    orders: LightGBMRegressor  # Poisson


@dataclass(frozen=True)
class ValueEvaluation:
    """The models beside the probabilistic ones and "same as the last period" on the holdout."""

    probabilistic: ProbabilisticModels  # fitted on the history before the holdout cutoff
    spend_true: np.ndarray
    spend_pred: dict[str, np.ndarray]  # by model
    spend: pd.DataFrame
    orders: pd.DataFrame
    deciles: pd.DataFrame
    metrics: dict[str, float]
    sizes: dict[str, int]
    versus: dict[str, tuple[str, Interval]]  # spend metric -> (best baseline, kairos - it on the holdout)
    # each baseline as it would be served (fitted on the feature rows at the holdout cutoff)
    baselines: dict[str, ValueBaseline] = field(default_factory=dict)


def build_data(cfg: ValueConfig, ctx: Context, tick: ProgressFn) -> ValueData:
    """The labelled sets of one run.

    Raises:
        InsufficientDataError: too few customers spent in the horizon in some set (each one named).
    """
    horizon_days, rules = cfg.horizon_days, cfg.sufficiency
    plan = plan_cutoffs(ctx.start, ctx.end, horizon_days, rules.min_history_days, overlap_train_valid=True)
    target = ValueTarget(horizon_days)
    tick("value: building training, validation and holdout sets", 0.05)
    train = build_training_set(ctx.tables, plan.train, target.labels, ctx.features)
    valid = build_training_set(ctx.tables, [plan.valid], target.labels, ctx.features)
    holdout = build_training_set(ctx.tables, [plan.holdout], target.labels, ctx.features)
    problems = []
    for name, frame in (("training", train), ("validation", valid), ("holdout", holdout)):
        buyers = int((frame[LABEL] > 0).sum())
        need = rules.min_positives if name == "training" else rules.min_holdout_per_class
        if buyers < need:
            problems.append(f"{name} has {buyers} customers who spent in the horizon, need at least {need}")
    if problems:
        raise InsufficientDataError("value: not registering; " + "; ".join(problems))
    return ValueData(plan, train, valid, holdout)


def fit(cfg: ValueConfig, data: ValueData, tick: ProgressFn) -> ValueFit:
    """Spend (Tweedie) and order-count (Poisson) LightGBM regressors, early-stopped on the validation rows."""
    seed, train, valid = cfg.seed, data.train, data.valid
    tick("value: fitting LightGBM (spend: Tweedie, orders: Poisson)", 0.35)
    features = list(NUMERIC_FEATURES)
    spend_model = LightGBMRegressor(objective="tweedie", seed=seed).fit(
        train[features], train[LABEL], eval_set=(valid[features], valid[LABEL])
    )
    orders_model = LightGBMRegressor(objective="poisson", seed=seed).fit(
        train[features], train[ORDERS_LABEL], eval_set=(valid[features], valid[ORDERS_LABEL])
    )
    return ValueFit(spend_model, orders_model)


def evaluate(cfg: ValueConfig, ctx: Context, data: ValueData, fitted: ValueFit, tick: ProgressFn) -> ValueEvaluation:
    """Both regressors beside BG/NBD and MBG/NBD x Gamma-Gamma and the last period, on the holdout."""
    horizon_days, plan, train, valid, holdout = cfg.horizon_days, data.plan, data.train, data.valid, data.holdout
    spend_model, orders_model = fitted.spend, fitted.orders
    tick("value: the baselines (last period, BG/NBD and MBG/NBD x Gamma-Gamma) and the clv model", 0.55)
    history = order_history(ctx.tables, plan.holdout)
    prob = fit_probabilistic(history, plan.holdout)
    keys = holdout[Col.CUSTOMER_KEY]
    clv = prob.predict(keys, horizon_days, "mbgnbd")  # the clv bundle's model (order lines), at the holdout
    baselines = fit_baselines(cfg, ctx, data)
    spend_true = holdout[LABEL].to_numpy(np.float64)
    orders_true = holdout[ORDERS_LABEL].to_numpy(np.float64)
    # every model scored as the API and the export score the served one: float32 feature rows, the bundle's predict
    meta = {"horizon_days": horizon_days}
    served = {"kairos": ValueModels(spend_model, orders_model, meta).predict(holdout)}
    served |= {name: ValueModels(None, None, meta, b).predict(holdout) for name, b in baselines.items()}
    spend_pred = {name: pair[0] for name, pair in served.items()}
    spend_pred["clv"] = clv["expected_spend"].to_numpy()
    orders_pred = {
        "kairos": served["kairos"][1],
        "bgnbd": served["bgnbd_gamma_gamma"][1],
        "mbgnbd": served["mbgnbd_gamma_gamma"][1],
        "last_period": served["last_period"][1],
        "clv": clv["expected_orders"].to_numpy(),
    }
    spend_table = pd.DataFrame({k: value_report(spend_true, v) for k, v in spend_pred.items()}).T
    orders_table = pd.DataFrame({k: value_report(orders_true, v) for k, v in orders_pred.items()}).T
    deciles = decile_calibration(spend_true, spend_pred["kairos"])
    metrics: dict[str, float] = {}
    for kind, table in (("spend", spend_table), ("orders", orders_table)):
        for model_name, row in table.iterrows():
            metrics.update({f"{model_name}_{kind}_{k}": float(v) for k, v in row.items()})
    metrics["holdout_spearman_spend"] = metrics["kairos_spend_spearman"]
    metrics["holdout_total_spend_ratio"] = float(spend_pred["kairos"].sum() / max(spend_true.sum(), 1e-9))
    metrics["bgnbd_holdout_total_spend_ratio"] = float(
        spend_pred["bgnbd_gamma_gamma"].sum() / max(spend_true.sum(), 1e-9)
    )
    versus = {m.name: versus_best_baseline(spend_true, spend_pred, m, cfg.seed) for m in (MAE, SPEARMAN)}
    for name, (_, iv) in versus.items():
        metrics.update(
            {
                f"vs_best_baseline_spend_{name}_diff": iv.diff,
                f"vs_best_baseline_spend_{name}_low": iv.low,
                f"vs_best_baseline_spend_{name}_high": iv.high,
            }
        )
    sizes = {"train_rows": len(train), "valid_rows": len(valid), "holdout_rows": len(holdout)}
    return ValueEvaluation(
        prob, spend_true, spend_pred, spend_table, orders_table, deciles, metrics, sizes, versus, baselines
    )


def fit_baselines(cfg: ValueConfig, ctx: Context, data: ValueData) -> dict[str, ValueBaseline]:
    """Every value baseline as it would be served, fitted on every customer's feature row at the holdout
    cutoff (order history before it; no outcome is read, so nothing of the holdout's labels)."""
    rows = ctx.features(data.plan.holdout)
    return {name: ValueBaseline(name, horizon_days=cfg.horizon_days).fit(rows) for name in SPEND_BASELINES}  # type: ignore[arg-type]


def log_and_register(
    cfg: ValueConfig,
    ctx: Context,
    data: ValueData,
    fitted: ValueFit,
    result: ValueEvaluation,
    full: ProbabilisticModels,
    tick: ProgressFn,
) -> ValueRun:
    """The run in MLflow (tables, plots, model cards) and both bundles registered: ``value`` (the
    regressors, or the best baseline when they do not beat it: :func:`_gate_and_register`) and ``clv``
    (``full``'s per-customer table: :func:`_register_clv`)."""
    horizon_days, plan, holdout = cfg.horizon_days, data.plan, data.holdout
    register, data_home = cfg.register, ctx.data_home
    spend_model, orders_model = fitted.spend, fitted.orders
    prob, spend_true, spend_pred = result.probabilistic, result.spend_true, result.spend_pred
    spend_table, orders_table, deciles = result.spend, result.orders, result.deciles
    metrics, sizes = result.metrics, result.sizes
    features = list(NUMERIC_FEATURES)
    tracking_uri = cfg.tracking_uri
    report = ingest_report(data_home)
    currency = data_currency(data_home)
    manifest = manifest_for(ctx.features(plan.holdout).head(0), plan.holdout, report["source_hash"], currency)
    manifest.pop("rows")
    params = {
        **spend_model.get_params(),
        "horizon_days": horizon_days,
        "train_cutoffs": len(plan.train),
        "valid_cutoff": plan.valid.date().isoformat(),
        "holdout_cutoff": plan.holdout.date().isoformat(),
        "data_as_of": ctx.as_of.isoformat() if ctx.as_of else "all",
        "data_end": ctx.end.isoformat(),
        "currency": currency,
    }
    with registry.job_run(tracking_uri, EXPERIMENT, VALUE_MODEL, {"kairos.data_hash": report["source_hash"]}) as job:
        mlflow.log_params(params)
        mlflow.log_metrics({**metrics, **{k: float(v) for k, v in sizes.items()}})
        mlflow.log_dict(manifest, "feature_manifest.json")
        mlflow.log_dict(prob.params(), "probabilistic_holdout_fit.json")
        lines = [iv.describe("kairos", f"{best} on spend") for best, iv in result.versus.values()]
        mlflow.log_dict(
            {name: {"best_baseline": best, **iv.to_dict()} for name, (best, iv) in result.versus.items()}
            | {"lines": lines},
            "vs_best_baseline.json",
        )
        mlflow.set_tag("kairos.vs_best_baseline", "; ".join(lines))
        folder = job.folder
        spend_table.to_csv(folder / "holdout_spend.csv")
        orders_table.to_csv(folder / "holdout_orders.csv")
        deciles.to_csv(folder / "spend_deciles.csv")
        for name in ("holdout_spend.csv", "holdout_orders.csv", "spend_deciles.csv"):
            mlflow.log_artifact(str(folder / name))
        clv_deciles = decile_calibration(spend_true, spend_pred["clv"])
        plots, clv_plots = _plots(folder / "plots", spend_model, holdout[features], deciles, clv_deciles)
        mlflow.log_artifacts(str(folder / "plots"), artifact_path="plots")

        meta = {"features": features, "horizon_days": horizon_days, "manifest": manifest}
        ValueBundle.write(folder / "value", spend_model, orders_model, meta)
        customers = full.summary.index.to_series()
        scored = full.predict(customers, 365.0, "mbgnbd")
        scored.insert(0, Col.CUSTOMER_KEY, customers.to_numpy())
        ClvBundle.write(folder / "clv", full.params(), scored)
        info = registry.log_bundle(folder / "value", VALUE_MODEL, {"kairos": {"target": VALUE_MODEL}})
        clv_info = registry.log_bundle(folder / "clv", CLV_MODEL, {"kairos": {"target": CLV_MODEL}})
        registration = clv_registration = served = None
        if register:
            tick("value: the gate (candidate, champion, best baseline)", 0.85)
            registration, served = _gate_and_register(cfg, job, info.model_uri, meta, data, fitted, result)
            clv_registration = _register_clv(job, clv_info.model_uri, report["source_hash"], full, metrics)
            mlflow.set_tag(
                "kairos.registration",
                f"value v{registration.version} -> @{registration.alias}; "
                f"clv v{clv_registration.version} -> @{clv_registration.alias}",
            )
        facts = _CardFacts(horizon_days, plan, sizes, report["source_hash"], job.run_id, params, currency)
        for name, candidate, reg, card_plots in (
            (VALUE_MODEL, "kairos", registration, plots),
            (CLV_MODEL, "clv", clv_registration, clv_plots),
        ):
            value_card = name == VALUE_MODEL
            card = _card(
                name,
                candidate,
                facts,
                spend_table,
                orders_table,
                reg,
                card_plots,
                spend_model,
                full,
                lines if value_card else [],
                served.line if value_card and served is not None else "",
            )
            (folder / f"model_card_{name}.md").write_text(card, encoding="utf-8")
            mlflow.log_artifact(str(folder / f"model_card_{name}.md"))
            if reg is not None:
                job.client.update_model_version(name, reg.version, description=card)
        if served is not None and served.baseline is not None:  # the served baseline's own card
            card = _card(
                VALUE_MODEL,
                served.baseline_name,
                facts,
                spend_table,
                orders_table,
                served.baseline,
                {},
                spend_model,
                full,
                lines,
                served.line,
            )
            (folder / "model_card_value_baseline.md").write_text(card, encoding="utf-8")
            mlflow.log_artifact(str(folder / "model_card_value_baseline.md"))
            job.client.update_model_version(VALUE_MODEL, served.baseline.version, description=card)
    return ValueRun(
        job.run_id,
        horizon_days,
        metrics,
        spend_table,
        orders_table,
        deciles,
        registration,
        clv_registration,
        plan,
        full.params(),
        sizes,
        result.versus,
        served,
    )


@dataclass(frozen=True)
class Served:
    """The value gate's outcome: the line saying which model is served and why, what is served
    (``candidate``, ``baseline`` or ``incumbent``), and the baseline's registration when it took ``@champion``."""

    line: str
    what: str
    baseline: registry.Registration | None = None
    baseline_name: str = ""


def champion_on(cfg: ValueConfig, holdout: pd.DataFrame) -> Incumbent | None:
    """The current ``value@champion`` scored (spend) on the candidate's ``holdout`` rows, loaded and verified as
    the API loads it (Kairos's regressors or a baseline alike); None when there is none. A champion that cannot
    be loaded, lacks a feature of the rows or predicts over another horizon comes back without scores, and why."""
    try:
        version, kind = registry.resolve_kind(cfg.tracking_uri, VALUE_MODEL, registry.CHAMPION, None)
    except ModelNotFoundError:
        return None
    baseline = kind.removeprefix(BASELINE_PREFIX) if kind.startswith(BASELINE_PREFIX) else None
    try:
        loader = ValueBundle()
        with tempfile.TemporaryDirectory() as tmp:
            fetched = loader.fetch(cfg.tracking_uri, VALUE_MODEL, registry.CHAMPION, Path(tmp), version=version)
            champion = loader.build(fetched.folder, fetched.provenance, None)
        if champion.horizon_days != cfg.horizon_days:
            raise KairosError(f"it predicts {champion.horizon_days} days of spend, this run {cfg.horizon_days}")
        missing = [f for f in champion.features if f not in holdout.columns]
        if missing:
            raise KairosError(f"the holdout lacks the champion's feature(s) {missing}")
        scores = champion.predict(holdout)[0]
    except Exception as exc:  # any failure to score the champion: the gate says so and does not rely on it
        return Incumbent(version, baseline, None, str(exc))
    return Incumbent(version, baseline, scores)


def _gate_and_register(
    cfg: ValueConfig,
    job: registry.JobRun,
    model_uri: str,
    meta: dict[str, Any],
    data: ValueData,
    fitted: ValueFit,
    result: ValueEvaluation,
) -> tuple[registry.Registration, Served]:
    """Register the candidate (``@champion`` only through the gate, training/gate.py: Spearman of spend selects,
    MAE of spend guards) and, when the best baseline is what is to be served, that baseline as ``@champion``."""
    holdout, y = data.holdout, result.spend_true
    best, versus = result.versus[SPEARMAN.name]
    guard = result.versus[MAE.name]
    # scored as the API scores it, so an identical retrain gives the champion's very numbers
    candidate = ValueModels(fitted.spend, fitted.orders, meta).predict(holdout)[0]
    verdict = gate.decide(
        y,
        candidate,
        best,
        result.spend_pred[best],
        versus,
        champion_on(cfg, holdout),
        margin=cfg.margin,
        seed=cfg.seed,
        metric=SPEARMAN,
        metric_name="spearman",
        guard=guard,
    )
    tags = {"kairos.run_id": job.run_id, "kairos.definition_hash": str(meta["manifest"].get("definition_hash", ""))}
    checksums = f"{registry.BUNDLE_DIR}/{registry.CHECKSUMS}"
    registration = registry.register_decided(
        job.client,
        model_uri,
        VALUE_MODEL,
        alias=verdict.candidate_alias,
        reason=verdict.candidate_reason,
        metric_name="holdout_spearman_spend",
        metric_value=result.metrics["holdout_spearman_spend"],
        extra_tags=tags,
        checksum_file=checksums,
    )
    served = Served(verdict.line, verdict.served, None, best)
    if verdict.registers_baseline:
        folder = job.folder / "value_baseline"
        ValueBundle.write_baseline(folder, result.baselines[best], meta)
        info = registry.log_bundle(folder, f"{VALUE_MODEL}_baseline", {"kairos": {"target": VALUE_MODEL}})
        reg = registry.register_decided(
            job.client,
            info.model_uri,
            VALUE_MODEL,
            alias=registry.CHAMPION,
            reason=verdict.line,
            metric_name="holdout_spearman_spend",
            metric_value=float(result.metrics[f"{best}_spend_spearman"]),
            extra_tags={**tags, registry.TAG_KIND: baseline_kind(best)},
            checksum_file=checksums,
        )
        served = Served(verdict.line, verdict.served, reg, best)
        mlflow.set_tag("kairos.baseline_registration", f"v{reg.version} -> @{reg.alias}")
    mlflow.set_tag("kairos.served", verdict.line)
    return registration, served


TAG_CLV_DATA = "kairos.clv_data"  # "<data hash>@<as of>": the data a clv table was fitted on


def _register_clv(
    job: registry.JobRun, model_uri: str, data_hash: str, full: ProbabilisticModels, metrics: dict[str, float]
) -> registry.Registration:
    """Register the ``clv`` table. It is not a candidate against baselines (it *is* the probabilistic model,
    and nothing else answers P(alive) or the next order date), and it is a snapshot as of the data's end: a
    table fitted on other data, or on the same data as of a later date, takes ``@champion`` (an older table
    is stale, not safer); a refit on the champion's very data, or as of an earlier date, stays ``@challenger``."""
    fitted_on = f"{data_hash}@{full.as_of.isoformat()}"
    try:
        champion = job.client.get_model_version_by_alias(CLV_MODEL, registry.CHAMPION)
    except MlflowException:  # no such model or alias yet
        champion = None
    if champion is None:
        alias, reason = registry.CHAMPION, "the first clv table"
    else:
        theirs = str(champion.tags.get(TAG_CLV_DATA) or "")
        their_hash, _, their_as_of = theirs.partition("@")
        if their_hash != data_hash:
            alias = registry.CHAMPION
            reason = f"fitted on other data than champion v{champion.version}: the table as of {full.as_of.date()}"
        elif full.as_of.isoformat() > their_as_of:
            alias, reason = registry.CHAMPION, f"the same data as champion v{champion.version}, as of a later date"
        else:
            alias = registry.CHALLENGER
            reason = f"the same data as champion v{champion.version}, not as of a later date: the served table stays"
    return registry.register_decided(
        job.client,
        model_uri,
        CLV_MODEL,
        alias=alias,
        reason=reason,
        metric_name="holdout_spearman_spend",
        metric_value=metrics["clv_spend_spearman"],
        extra_tags={"kairos.run_id": job.run_id, TAG_CLV_DATA: fitted_on},
        checksum_file=f"{registry.BUNDLE_DIR}/{registry.CHECKSUMS}",
    )


def train_value(
    data_home: Path,
    tracking_uri: str,
    *,
    horizon_days: int = 365,
    margin: float = 0.0,
    register: bool = True,
    seed: int = 0,
    sufficiency: Sufficiency | None = None,
    context: Context | None = None,
    as_of: datetime | None = None,
    progress: ProgressFn | None = None,
) -> ValueRun:
    """Spend and order-count models over ``horizon_days``, beside BG/NBD x Gamma-Gamma and the
    "same as the last period" baseline on one temporal holdout; registers ``value`` and ``clv``:
    :func:`build_data` -> :func:`fit` -> :func:`evaluate` -> the probabilistic models refitted on all
    data -> :func:`log_and_register`.

    Raises:
        InsufficientDataError: :data:`features.store.NO_PRICES` for data without prices (spend cannot be
            learnt from amounts that are not there), or too little data for an honest run.
    """
    if not data_has_prices(context.data_home if context is not None else data_home):
        raise InsufficientDataError(NO_PRICES)
    tick = progress or (lambda step, frac: None)
    cfg = ValueConfig(tracking_uri, horizon_days, margin, register, seed, sufficiency or Sufficiency())
    ctx = context or Context.open(data_home, as_of)
    data = build_data(cfg, ctx, tick)
    fitted = fit(cfg, data, tick)
    result = evaluate(cfg, ctx, data, fitted, tick)
    tick("value: refitting the probabilistic models on all data", 0.7)
    full = fit_probabilistic(order_history(ctx.tables, ctx.end + pd.Timedelta(days=1)), ctx.end)
    run = log_and_register(cfg, ctx, data, fitted, result, full, tick)
    tick("value: done", 1.0)
    return run


@dataclass(frozen=True)
class _CardFacts:
    horizon_days: int
    plan: CutoffPlan
    sizes: dict[str, int]
    data_hash: str
    run_id: str
    params: dict[str, Any]
    currency: str


def _plots(
    folder: Path, spend_model: LightGBMRegressor, X: pd.DataFrame, deciles: pd.DataFrame, clv_deciles: pd.DataFrame
) -> tuple[dict[str, Path], dict[str, Path]]:
    """The value card's plots (deciles, importance and SHAP of the spend model) and the clv card's (deciles)."""
    from features.definitions import DESCRIPTIONS
    from training import plots

    text = spend_model.to_text()
    sample = X.sample(n=min(len(X), 2000), random_state=0) if len(X) > 2000 else X
    value = {
        "Value calibration by decile": plots.decile_chart(deciles, folder / "deciles.png"),
        "Feature importance (spend)": plots.feature_importance(
            text, folder / "importance.png", descriptions=DESCRIPTIONS
        ),
        "SHAP summary (spend)": plots.shap_summary(text, sample, folder / "shap_summary.png"),
    }
    clv = {
        "Value calibration by decile (MBG/NBD x Gamma-Gamma)": plots.decile_chart(
            clv_deciles, folder / "deciles_clv.png"
        )
    }
    return value, clv


def _card(
    name: str,
    candidate: str,
    facts: _CardFacts,
    spend: pd.DataFrame,
    orders: pd.DataFrame,
    registration: registry.Registration | None,
    plots: dict[str, Path],
    spend_model: LightGBMRegressor,
    full: Any,
    comparisons: list[str] | None = None,
    served: str = "",
) -> str:
    """The model card of the ``value`` (LightGBM) or ``clv`` (MBG/NBD x Gamma-Gamma) version."""
    from features.definitions import DESCRIPTIONS
    from training.model_card import DataSummary, ModelCard, render_model_card

    h = facts.horizon_days
    if name == VALUE_MODEL and candidate != "kairos":  # a baseline served in Kairos's place
        target = (
            f"Spend and number of orders in the {h} days after the cutoff from the {candidate} baseline, read off "
            "each customer's feature row (models/baselines.py ValueBaseline): Kairos's LightGBM value model did "
            "not beat it on the holdout, so it is served in its place."
        )
        top = []
        own_orders = {"bgnbd_gamma_gamma": "bgnbd", "mbgnbd_gamma_gamma": "mbgnbd"}.get(candidate, candidate)
    elif name == VALUE_MODEL:
        target = (
            f"Spend (LightGBM, Tweedie) and number of orders (LightGBM, Poisson) in the {h} days after the "
            "cutoff, for every customer known at the cutoff."
        )
        gains = spend_model.booster_.feature_importance(importance_type="gain")
        top = sorted(zip(spend_model.feature_names_, gains.tolist(), strict=True), key=lambda kv: -kv[1])[:10]
        own_orders = "kairos"
    else:
        target = (
            f"P(alive), expected orders and spend per customer from MBG/NBD x Gamma-Gamma fitted on the order lines "
            f"(row clv; the rows bgnbd_gamma_gamma and mbgnbd_gamma_gamma are the value baselines read off the "
            f"feature row), judged on spend in the "
            f"{h} days after the holdout cutoff; the registered bundle is refitted on all orders and predicts "
            f"365 days from the data's end. Parameters: {json.dumps(full.params(), sort_keys=True)}."
        )
        top = []
        own_orders = "clv"
    own = orders.loc[own_orders]
    limitations = [
        f"Orders in the horizon: MAE {own['mae']:.3f}, Spearman {own['spearman']:.3f} (BG/NBD "
        f"{orders.loc['bgnbd', 'spearman']:.3f}, last-period baseline {orders.loc['last_period', 'spearman']:.3f}).",
        f"Spend is in {facts.currency}, the data's currency; the metrics table is about spend only. There are no "
        "calibrated probabilities here: ECE, lift and calibration do not apply.",
    ]
    return render_model_card(
        ModelCard(
            name=name,
            target=target,
            data=DataSummary(
                train_cutoffs=facts.plan.train,
                valid_cutoff=facts.plan.valid,
                holdout_cutoff=facts.plan.holdout,
                rows={
                    "train": facts.sizes["train_rows"],
                    "valid": facts.sizes["valid_rows"],
                    "holdout": facts.sizes["holdout_rows"],
                },
                data_hash=facts.data_hash,
                currency=facts.currency,
            ),
            metrics={str(k): {m: float(v) for m, v in row.items()} for k, row in spend.iterrows()},
            candidate=candidate,
            primary_metric="spearman",
            version=registration.version if registration else None,
            alias=registration.alias if registration else None,
            decision=registration.reason if registration else "not registered",
            top_features=top,
            descriptions=DESCRIPTIONS,
            plots={title: f"plots/{path.name}" for title, path in plots.items()},
            limitations=limitations,
            params=facts.params,
            run_id=facts.run_id,
            created_at=datetime.now(UTC),
            comparisons=comparisons or (),
            served=served,
        )
    )
