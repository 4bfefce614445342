"""``kairos backtest``: score the registered model as of a past date and compare with what then happened.

The model's features are computed as of the date (only events before it), its scores set beside the
outcomes observed after it, and the baselines are fitted as of the same date. A model whose own
training labels reach past the date has partly seen the outcome; the result says so.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from bundles import registry
from bundles.propensity import PropensityBundle
from features.contract import Col
from features.datasets import LABEL
from features.errors import KairosError
from features.store import as_of_view, compute_features
from models.evaluation import binary_report
from models.rfm import RFMLogistic, RFMScore
from training.propensity import (
    Context,
    bgnbd_scores,
    fit_bgnbd,
    order_history,
    steps_for,
    task_by_name,
)


@dataclass
class BacktestResult:
    model: str
    version: str
    as_of: datetime
    outcome_until: datetime
    table: pd.DataFrame  # one row per model, binary_report columns
    scores: pd.DataFrame  # customer_key, score, outcome
    in_sample: bool  # the model's training labels reach past as_of
    note: str
    model_kind: str = "kairos"  # the served version's kind: kairos, or baseline:<name> (the gate served a baseline)


def backtest(
    name: str,
    data_home: Path,
    tracking_uri: str,
    as_of: datetime,
    *,
    alias: str = registry.CHAMPION,
) -> BacktestResult:
    """Score ``name@alias`` as of ``as_of`` and evaluate against the outcomes after it.

    Raises:
        KairosError: the outcome is not known yet (the horizon runs past the data), or the model is
            missing or fails its checksum.
    """
    bundle = PropensityBundle()
    with tempfile.TemporaryDirectory() as tmp:
        fetched = bundle.fetch(tracking_uri, name, alias, Path(tmp))
        model = bundle.build(fetched.folder, fetched.provenance, None)
    meta = fetched.provenance.metadata
    horizon = model.horizon_days or 0
    task = task_by_name(name, horizon_days=horizon) if name in ("churn", "purchase") and horizon else task_by_name(name)
    ctx = Context.open(data_home)
    outcome_until = as_of + timedelta(days=task.target.label_days)
    if outcome_until > ctx.end + timedelta(days=1):
        raise KairosError(
            f"the outcome of {as_of.date()} is known only after {outcome_until.date()}; the data ends "
            f"{ctx.end.date()}: choose an earlier --as-of"
        )
    # the features of that day from the tables as they stood then (the labels need what came after)
    feats = compute_features(as_of_view(ctx.tables, as_of), as_of)
    labels = task.target.labels(ctx.tables, as_of).execute()
    rows = feats.merge(labels, on=Col.CUSTOMER_KEY, how="inner")
    if rows[LABEL].nunique() < 2:
        raise KairosError(f"as of {as_of.date()} the outcome has a single class; nothing to evaluate")
    y = rows[LABEL].to_numpy()
    # the served version's row says which model it is: kairos, or baseline:<name> when the gate serves a baseline
    served = model.model_kind
    scores = {served: model.score(rows)}
    scores["rfm_score"] = RFMScore(direction=task.rfm_direction).fit(rows).decision_function(rows)  # type: ignore[arg-type]
    earlier = as_of - timedelta(days=steps_for(task.target.label_days))
    past = ctx.features(earlier).merge(task.target.labels(ctx.tables, earlier).execute(), on=Col.CUSTOMER_KEY)
    if past[LABEL].nunique() == 2:
        scores["rfm_logistic"] = RFMLogistic().fit(past, past[LABEL].to_numpy()).predict_proba(rows)
    if task.bgnbd is not None:
        bg, summary = fit_bgnbd(order_history(ctx.tables, as_of), as_of)
        scores["bgnbd"] = bgnbd_scores(bg, summary, rows[Col.CUSTOMER_KEY], task.horizon_days, task.bgnbd)
    table = pd.DataFrame({k: binary_report(y, v, probabilities=k != "rfm_score") for k, v in scores.items()}).T
    table.index.name = "model"
    holdout_cutoff = meta.get("holdout_cutoff")
    in_sample = bool(holdout_cutoff) and pd.Timestamp(holdout_cutoff) > pd.Timestamp(as_of)
    note = (
        f"v{model.version} was trained on labels up to {str(holdout_cutoff)[:10]}, after {as_of.date()}: "
        "it has seen part of this outcome, so the figures flatter it"
        if in_sample
        else "out of sample: the model never saw these outcomes"
    )
    per_customer = pd.DataFrame(
        {Col.CUSTOMER_KEY: rows[Col.CUSTOMER_KEY], "score": scores[served], "outcome": y.astype(np.int8)}
    )
    return BacktestResult(name, model.version, as_of, outcome_until, table, per_customer, in_sample, note, served)
