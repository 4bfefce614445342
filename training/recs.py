"""The recommendations job: temporal evaluation against baselines -> refit on all data -> one verified
bundle in MLflow -> registry alias by basket-completion recall@10.

The bundle holds every recommender the storefront and campaigns use (bought together, repeat +
personal, similar items, buy again, popular), the item catalogue and the customers' purchase history
for the business rules, each in its own folder of NumPy / Parquet / JSON files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from bundles import registry
from bundles.recs import RecsBundle, RecsModel
from features.errors import KairosError
from models.recs.blend import RepeatThenPersonal
from models.recs.buy_again import BuyAgain
from models.recs.cooccurrence import BoughtTogether
from models.recs.personal import ImplicitRecommender
from models.recs.popular import Popular
from models.recs.rules import CustomerHistory, ItemCatalogue
from models.recs.similar import SimilarItems
from training.recs_eval import BASKET_COMPLETION, NEXT_BASKET, baseline_models, evaluate, load_home

MODEL_NAME = "recs"
EXPERIMENT = "kairos-recs"
SELECTION_METRIC = "basket_completion_recall_at_10"
ProgressFn = Callable[[str, float], None]


@dataclass
class RecsRun:
    """What a run produced: the evaluation table, the headline metrics and the registration."""

    run_id: str
    table: pd.DataFrame
    metrics: dict[str, float]
    registration: registry.Registration | None


def _models() -> dict[str, Any]:
    return {"Kairos bought together": BoughtTogether(), "Kairos repeat + personal": RepeatThenPersonal()}


def _metrics(table: pd.DataFrame, k: int) -> dict[str, float]:
    """Headline figures: each task's Kairos model and its best baseline."""
    out: dict[str, float] = {}
    for task, kairos in ((BASKET_COMPLETION, "Kairos bought together"), (NEXT_BASKET, "Kairos repeat + personal")):
        rows = table[table["task"] == task].set_index("model")
        for metric in (f"recall@{k}", f"ndcg@{k}", "mrr"):
            key = metric.replace("@", "_at_")
            out[f"{task}_{key}"] = float(rows.loc[kairos, metric])
            baselines = rows.drop(index=[m for m in rows.index if m.startswith("Kairos")])
            out[f"{task}_best_baseline_{key}"] = float(baselines[metric].max())
        out[f"{task}_coverage"] = float(rows.loc[kairos, "coverage"])
    return out


def train_recs(
    data_home: Path,
    tracking_uri: str,
    *,
    test_days: int = 90,
    k: int = 10,
    margin: float = 0.0,
    register: bool = True,
    progress: ProgressFn | None = None,
) -> RecsRun:
    """Evaluate on the last ``test_days`` (fit before), refit everything on all data, log and register."""
    tick = progress or (lambda step, frac: None)
    registry.quiet_mlflow()
    interactions, items = load_home(Path(data_home))
    end = pd.Timestamp(interactions["ts"].max())
    split_at = (end - timedelta(days=test_days)).floor("D")
    if split_at <= pd.Timestamp(interactions["ts"].min()):
        raise KairosError(f"{test_days} test days leave no training history before them")

    tick("evaluating against baselines", 0.05)
    models = {**baseline_models(), **_models()}
    tasks: dict[str, tuple[str, ...]] = {name: (BASKET_COMPLETION, NEXT_BASKET) for name in baseline_models()}
    tasks |= {"Kairos bought together": (BASKET_COMPLETION,), "Kairos repeat + personal": (NEXT_BASKET,)}
    table = evaluate(models, interactions, items, split_at.to_pydatetime(), test_days, k, tasks=tasks)
    metrics = _metrics(table, k)

    tick("refitting on all data", 0.5)
    personal = ImplicitRecommender().fit(interactions, items)
    fitted: dict[str, Any] = {
        "bought_together": BoughtTogether().fit(interactions, items),
        "repeat_personal": RepeatThenPersonal(personal=personal).fit(interactions, items),
        "similar": SimilarItems(base=personal).fit(interactions, items),
        "buy_again": BuyAgain().fit(interactions, items),
        "popular": Popular().fit(interactions, items),
    }
    catalogue = ItemCatalogue.from_items(items)
    history = CustomerHistory().fit(interactions, catalogue)

    manifest = {"models": sorted(fitted), "trained_until": end.isoformat(), "split_at": split_at.isoformat()}
    model = RecsModel(
        fitted["bought_together"],
        fitted["repeat_personal"],
        fitted["similar"],
        fitted["buy_again"],
        fitted["popular"],
        catalogue,
        history,
        manifest,
    )

    tick("logging to MLflow", 0.85)
    with registry.job_run(tracking_uri, EXPERIMENT, MODEL_NAME) as job:
        bundle = job.folder / "bundle"
        RecsBundle.write(bundle, model)
        mlflow.log_params({"test_days": test_days, "k": k, "split_at": split_at.isoformat(), "margin": margin})
        mlflow.log_metrics(metrics)
        mlflow.log_text(table.to_csv(index=False), "evaluation.csv")
        registration = registry.log_and_register(
            job,
            bundle,
            MODEL_NAME,
            metadata={"kairos": manifest},
            register=register,
            metric_name=SELECTION_METRIC,
            metric_value=metrics[SELECTION_METRIC],
            margin=margin,
        )
    tick("done", 1.0)
    return RecsRun(job.run_id, table, metrics, registration)
