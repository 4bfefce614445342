"""The recommendations job: temporal evaluation against baselines -> refit on all data -> one verified
bundle in MLflow -> registry alias by basket-completion recall@10.

The bundle holds every recommender the storefront and campaigns use (bought together, repeat +
personal, similar items, buy again, popular), the item catalogue and the customers' purchase history
for the business rules, each in its own folder of NumPy / Parquet / JSON files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from bundles import registry
from bundles.recs import PARTS, RecsBundle, RecsModel
from features.errors import KairosError
from features.ingest import export_has_dates
from features.store import ingest_report
from models.recs.base import IX
from models.recs.blend import RepeatThenPersonal
from models.recs.buy_again import BuyAgain
from models.recs.cart_blend import CartBlend
from models.recs.cooccurrence import BoughtTogether
from models.recs.personal import ImplicitRecommender
from models.recs.popular import Popular
from models.recs.repeat_ranker import RepeatRanker
from models.recs.rules import CustomerHistory, ItemCatalogue
from models.recs.similar import SimilarItems
from training.recs_eval import (
    BASKET_COMPLETION,
    NEXT_BASKET,
    PERSONAL_BASELINES,
    baseline_models,
    baseline_tasks,
    evaluate,
    evaluate_last_basket,
    evaluate_sets,
    format_table,
    known_customers,
    load_home,
    next_basket_models,
    random_split,
    with_intervals,
)

MODEL_NAME = "recs"
TEMPORAL = "temporal"
LAST_BASKET_PROTOCOL = "last-basket"
PROTOCOLS = (TEMPORAL, LAST_BASKET_PROTOCOL)
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
    split: str = "temporal split"  # how the evaluation cut the data (the table's title)
    skipped_parts: dict[str, str] = field(default_factory=dict)  # bundle parts left out -> why
    last_basket: pd.DataFrame | None = None  # protocol last-basket: the summary over seeds (else None)
    last_basket_label: str = ""  # how that protocol cut the data
    next_basket_choice: dict[str, str] = field(default_factory=dict)  # see next_basket_choice()


KAIROS_TOGETHER = "Kairos bought together"
KAIROS_PERSONAL = "Kairos repeat + personal"
#: Kairos's next-basket model: the learned re-purchase propensity (models/recs/repeat_ranker.py).
KAIROS_NEXT = "Kairos next basket"
#: Kairos's basket completion that knows the customer (models/recs/cart_blend.py); evaluated, not yet served.
KAIROS_CART = "Kairos cart blend"
#: What the bundle leaves out when no order names a customer, and why (recorded in its manifest).
NO_CUSTOMER_PARTS = {
    "repeat_personal": "no order names a customer: nothing personal to learn",
    "buy_again": "no order names a customer: no one's repurchase intervals",
}


def _models() -> dict[str, Any]:
    return {KAIROS_TOGETHER: BoughtTogether(), KAIROS_PERSONAL: RepeatThenPersonal()}


def _metrics(table: pd.DataFrame, k: int) -> dict[str, float]:
    """Headline figures: each evaluated task's Kairos model and its best baseline (a task the data could
    not pose has none; the table's note says why).

    Raises:
        KairosError: basket completion, which selects the champion, could not be evaluated.
    """
    out: dict[str, float] = {}
    for task, kairos in ((BASKET_COMPLETION, KAIROS_TOGETHER), (NEXT_BASKET, KAIROS_NEXT)):
        rows = table[(table["task"] == task) & table["evaluated"]].set_index("model")
        if kairos not in rows.index or not rows.loc[kairos, "queries"]:
            if task == BASKET_COMPLETION:
                raise KairosError(
                    "basket completion could not be evaluated: no test basket holds two or more items of which "
                    "one was sold in the training part; nothing to select a recommendations model by"
                )
            continue
        for metric in (f"recall@{k}", f"ndcg@{k}", "mrr"):
            key = metric.replace("@", "_at_")
            out[f"{task}_{key}"] = float(rows.loc[kairos, metric])
            baselines = rows.drop(index=[m for m in rows.index if m.startswith("Kairos")])
            out[f"{task}_best_baseline_{key}"] = float(baselines[metric].max())
        out[f"{task}_coverage"] = float(rows.loc[kairos, "coverage"])
        if (
            f"recall@{k}_diff" in rows.columns
            and rows.loc[kairos, f"recall@{k}_diff"] == rows.loc[kairos, f"recall@{k}_diff"]
        ):
            for col in ("diff", "diff_low", "diff_high"):  # paired bootstrap 95 % interval to the best baseline
                out[f"{task}_recall_at_{k}_{col}"] = float(rows.loc[kairos, f"recall@{k}_{col}"])
    return out


@dataclass(frozen=True)
class RecsConfig:
    """Everything one recommendations training run is a function of, besides the data."""

    tracking_uri: str
    test_days: int = 90  # the evaluation period at the end of the data
    k: int = 10
    margin: float = 0.0  # how much the new version must beat the champion's selection metric by
    register: bool = True
    as_of: datetime | None = None  # the data as it stood then (None: all of it)
    test_share: float = 0.2  # without order times: the share of baskets held out at random
    seed: int = 0  # the hidden-item draw, and the random split without order times
    protocol: str = TEMPORAL  # also run protocol (b) when LAST_BASKET_PROTOCOL (the champion stays temporal)
    test_users: float = 0.2  # protocol (b): the share of customers whose last basket is held out
    seeds: int = 3  # protocol (b): one split per seed 0 .. seeds - 1


@dataclass(frozen=True)
class RecsData:
    interactions: pd.DataFrame
    items: pd.DataFrame
    end: pd.Timestamp | None  # the last interaction (None: the export has no order times)
    split_at: pd.Timestamp | None  # evaluation: fit before, judge from here to the end (None: random split)
    customers: int  # distinct customers among the purchases (0: a basket-only export)
    dates: bool = True  # False: the mapping said dates: false (no order times at all)

    def split_label(self, cfg: RecsConfig) -> str:
        """How the evaluation cut the data, for the table's title and the model card."""
        if self.dates:
            return f"temporal split at {self.split_at:%Y-%m-%d}, {cfg.test_days} test days"
        return (
            f"random split of baskets ({cfg.test_share:.0%} held out, seed {cfg.seed}): the export has no dates, "
            "so these figures are not those of predicting later baskets"
        )


def build_data(cfg: RecsConfig, data_home: Path) -> RecsData:
    """Interactions and items of an ingested home, and the temporal split.

    An export without order times (mapping ``dates: false``) has no temporal split: every purchase is
    taken as known at the ingest run (one instant: no recency weighting and no order among baskets; the
    stamp lives in training only, the data keep no date) and the evaluation splits baskets at random.

    Raises:
        KairosError: the test period leaves no history before it; ``as_of`` on an export without dates.
    """
    if not export_has_dates(Path(data_home)):
        if cfg.as_of is not None:
            raise KairosError("--as-of needs order times and this export has none (its mapping says dates: false)")
        interactions, items = load_home(Path(data_home))
        known_at = pd.Timestamp(ingest_report(Path(data_home))["run_at"]).tz_convert("UTC")
        interactions = interactions.assign(**{IX.TS: known_at})
        return RecsData(interactions, items, None, None, known_customers(interactions), dates=False)
    interactions, items = load_home(Path(data_home), cfg.as_of)
    end = pd.Timestamp(interactions["ts"].max())
    split_at = (end - timedelta(days=cfg.test_days)).floor("D")
    if split_at <= pd.Timestamp(interactions["ts"].min()):
        raise KairosError(f"{cfg.test_days} test days leave no training history before them")
    return RecsData(interactions, items, end, split_at, known_customers(interactions))


def evaluate_split(cfg: RecsConfig, data: RecsData, tick: ProgressFn) -> tuple[pd.DataFrame, dict[str, float]]:
    """Every recommender fitted before the split and judged after it, beside the in-run baselines
    (G/P/GP-TopFreq, TIFU-KNN and UP-CF@r on next basket, the co-occurrence count on basket completion;
    :func:`training.recs_eval.baseline_tasks`), on a random split of baskets when the export has no order
    times."""
    tick("evaluating against baselines", 0.05)
    models = {**baseline_models(), **_models(), KAIROS_NEXT: RepeatRanker(), KAIROS_CART: CartBlend()}
    tasks: dict[str, tuple[str, ...]] = baseline_tasks()
    tasks |= {
        KAIROS_TOGETHER: (BASKET_COMPLETION,),
        KAIROS_PERSONAL: (NEXT_BASKET,),
        KAIROS_NEXT: (NEXT_BASKET,),
        KAIROS_CART: (BASKET_COMPLETION,),
    }
    personal = PERSONAL_BASELINES | {KAIROS_PERSONAL, KAIROS_NEXT}
    per_query: dict[tuple[str, str], np.ndarray] = {}
    if data.split_at is None:
        train, test = random_split(data.interactions, cfg.test_share, cfg.seed)
        table = evaluate_sets(
            models, train, test, data.items, cfg.k, now=None, seed=cfg.seed, tasks=tasks, personal=personal,
            per_query=per_query,
        )  # fmt: skip
    else:
        split = data.split_at.to_pydatetime()
        table = evaluate(
            models, data.interactions, data.items, split, cfg.test_days, cfg.k,
            seed=cfg.seed, tasks=tasks, personal=personal, per_query=per_query,
        )  # fmt: skip
    table = with_intervals(table, per_query, list(baseline_models()), cfg.k, seed=cfg.seed)
    return table, _metrics(table, cfg.k)


NO_CUSTOMERS_FOR_LAST_BASKET = (
    "--protocol last-basket holds out each test customer's last basket: this export names no customer"
)


def evaluate_last_basket_protocol(cfg: RecsConfig, data: RecsData, tick: ProgressFn) -> tuple[pd.DataFrame, str]:
    """Protocol (b) on next basket: the last basket of a random ``cfg.test_users`` share of the customers
    held out, ``cfg.seeds`` seeds; the in-run next-basket baselines beside Kairos repeat + personal, and
    the Kairos model's recall@k difference to the best baseline with a paired bootstrap 95 % interval.
    Without order times "last" is the basket whose first line comes last in the export.

    Returns:
        The summary over seeds (:meth:`training.recs_eval.LastBasketEvaluation.summary`) and its label.

    Raises:
        KairosError: no order names a customer, or no customer has two baskets.
    """
    tick("evaluating: last basket held out", 0.3)
    if not data.customers:
        raise KairosError(NO_CUSTOMERS_FOR_LAST_BASKET)
    baselines = next_basket_models()
    models = {**baselines, KAIROS_PERSONAL: RepeatThenPersonal(), KAIROS_NEXT: RepeatRanker()}
    try:
        result = evaluate_last_basket(
            models, data.interactions, data.items, cfg.k, test_share=cfg.test_users, seeds=tuple(range(cfg.seeds))
        )
    except ValueError as exc:
        raise KairosError(str(exc)) from exc
    order = "basket time" if data.dates else "position in the export (no dates)"
    label = (
        f"last basket held out (by {order}) for {cfg.test_users:.0%} of the customers with 2+ baskets, "
        f"seeds 0..{cfg.seeds - 1}"
    )
    return result.summary(baselines=list(baselines), seed=cfg.seed), label


def _last_basket_metrics(summary: pd.DataFrame, k: int) -> dict[str, float]:
    """The Kairos next-basket model's protocol-(b) figures, its best baseline's recall and the interval."""
    rows = summary.set_index("model")
    if KAIROS_NEXT not in rows.index:
        return {}
    mine = rows.loc[KAIROS_NEXT]
    out = {
        f"last_basket_{name}_at_{k}": float(mine[f"{name}@{k}"])
        for name in ("recall", "ndcg", "phr", "repeat_recall", "explore_recall")
    }
    if "best_baseline" in rows.columns:
        out[f"last_basket_best_baseline_recall_at_{k}"] = float(rows.loc[mine["best_baseline"], f"recall@{k}"])
        for col in ("diff", "diff_low", "diff_high"):
            out[f"last_basket_recall_at_{k}_{col}"] = float(mine[f"recall@{k}_{col}"])
    return out


def next_basket_choice(
    metrics: dict[str, float], table: pd.DataFrame, last_basket: pd.DataFrame | None
) -> dict[str, str]:
    """Which next-basket model the evidence says to serve, gated like the propensity models: Kairos next
    basket only when its recall@k difference to the best baseline has a 95 % interval above zero (on
    protocol (b) when it ran, else on the temporal split); otherwise the best baseline, labelled so.

    Returns:
        ``chosen`` (a model name), ``evidence`` (which evaluation), ``why`` (the figures), or an empty dict
        when next basket was not evaluated.
    """
    for prefix, evidence, frame in (
        ("last_basket_recall_at_10", "last basket held out", last_basket),
        ("next_basket_recall_at_10", "temporal split", table),
    ):
        low = metrics.get(f"{prefix}_diff_low")
        if low is None or frame is None:
            continue
        diff, high = metrics[f"{prefix}_diff"], metrics[f"{prefix}_diff_high"]
        rows = frame[frame["model"] == KAIROS_NEXT]
        best = str(rows["best_baseline"].iloc[0]) if len(rows) and "best_baseline" in rows.columns else "best baseline"
        figures = f"recall@10 {diff:+.4f} [{low:+.4f}, {high:+.4f}] vs {best}"
        if low > 0:
            return {"chosen": KAIROS_NEXT, "evidence": evidence, "why": f"{figures}: interval above zero"}
        return {
            "chosen": best,
            "evidence": evidence,
            "why": f"{figures}: Kairos not better with the interval above zero",
        }
    return {}


def _basket_factors(interactions: pd.DataFrame, items: pd.DataFrame) -> ImplicitRecommender:
    """Item factors learned with each order as a row (the items of one basket are alike): what similar
    items stand on when no order names its customer. No customer is stored: similar items keep the
    item factors only."""
    return ImplicitRecommender().fit(interactions.assign(**{IX.CUSTOMER: interactions[IX.BASKET]}), items)


def fit(data: RecsData, tick: ProgressFn) -> RecsModel:
    """Every recommender, the catalogue and the purchase history refitted on all data: what is served.

    Without customers (a basket-only export) the personal parts are left out and the manifest says why
    (``skipped``); similar items then learn their item factors from the baskets."""
    tick("refitting on all data", 0.5)
    interactions, items = data.interactions, data.items
    together = BoughtTogether().fit(interactions, items)
    repeat: RepeatThenPersonal | None = None
    buy_again: BuyAgain | None = None
    if data.customers:
        personal = ImplicitRecommender().fit(interactions, items)
        repeat = RepeatThenPersonal(personal=personal).fit(interactions, items)
        buy_again = BuyAgain().fit(interactions, items)
        skipped: dict[str, str] = {}
    else:
        personal = _basket_factors(interactions, items)
        skipped = dict(NO_CUSTOMER_PARTS)
    if not data.dates and buy_again is not None:
        buy_again, skipped["buy_again"] = None, "the export has no dates: no repurchase intervals"
    similar = SimilarItems(base=personal).fit(interactions, items)
    popular = Popular().fit(interactions, items)
    catalogue = ItemCatalogue.from_items(items)
    history = CustomerHistory().fit(interactions, catalogue)
    manifest = {
        "models": sorted(set(PARTS) - set(skipped)),
        "skipped": skipped,
        "customers": data.customers,
        "dates": data.dates,
        "trained_until": data.end.isoformat() if data.end is not None else None,
        "split_at": data.split_at.isoformat() if data.split_at is not None else None,
        "split": "temporal" if data.dates else "random",
    }
    return RecsModel(together, repeat, similar, buy_again, popular, catalogue, history, manifest)


def log_and_register(
    cfg: RecsConfig,
    data: RecsData,
    model: RecsModel,
    table: pd.DataFrame,
    metrics: dict[str, float],
    last_basket: pd.DataFrame | None = None,
) -> RecsRun:
    """The run in MLflow and the bundle registered: ``@champion`` only if its basket-completion recall
    beats the champion's by more than ``cfg.margin``."""
    with registry.job_run(cfg.tracking_uri, EXPERIMENT, MODEL_NAME) as job:
        bundle = job.folder / "bundle"
        RecsBundle.write(bundle, model)
        params = {
            "test_days": cfg.test_days,
            "k": cfg.k,
            "split_at": data.split_at.isoformat() if data.split_at is not None else "random (no dates)",
            "margin": cfg.margin,
            "data_as_of": cfg.as_of.isoformat() if cfg.as_of else "all",
            "customers": data.customers,
            "evaluated_tasks": ",".join(sorted(set(table.loc[table["evaluated"], "task"]))),
            "protocol": cfg.protocol,
        }
        if last_basket is not None:
            params |= {"last_basket_test_users": cfg.test_users, "last_basket_seeds": cfg.seeds}
        if "next_basket" in model.manifest:
            params |= {"next_basket_chosen": model.manifest["next_basket"]["chosen"]}
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_text(table.to_csv(index=False), "evaluation.csv")
        if last_basket is not None:
            mlflow.log_text(last_basket.to_csv(index=False), "last_basket_evaluation.csv")
        mlflow.log_text(model_card(cfg, data, model, table, last_basket), "model_card.md")
        registration = registry.log_and_register(
            job,
            bundle,
            MODEL_NAME,
            metadata={"kairos": model.manifest},
            register=cfg.register,
            metric_name=SELECTION_METRIC,
            metric_value=metrics[SELECTION_METRIC],
            margin=cfg.margin,
        )
    skipped = dict(model.manifest["skipped"])
    return RecsRun(job.run_id, table, metrics, registration, data.split_label(cfg), skipped)


def model_card(
    cfg: RecsConfig, data: RecsData, model: RecsModel, table: pd.DataFrame, last_basket: pd.DataFrame | None = None
) -> str:
    """The recommendations card: how the data were split, the evaluation table, what was not evaluated
    and which parts the bundle leaves out (markdown, logged beside the bundle)."""
    lines = [
        "# Model card: recommendations",
        "",
        f"- Evaluation: {data.split_label(cfg)}; k = {cfg.k}.",
        f"- Customers in the data: {data.customers:,}; order times: {'yes' if data.dates else 'none (dates: false)'}.",
        f"- Trained until: {data.end:%Y-%m-%d %H:%M} UTC." if data.end is not None else "- Trained until: no dates.",
        "",
        "## Evaluation",
        "",
        "```",
        format_table(table),
        "```",
    ]
    if last_basket is not None:
        lines += [
            "",
            f"## Next basket, last basket held out ({cfg.seeds} seeds, {cfg.test_users:.0%} of the customers)",
            "",
            "Means over seeds; recall@k difference to the best baseline with a paired bootstrap 95 % interval "
            "over the test users of every seed. Not used to pick the champion.",
            "",
            "```",
            last_basket.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
            "```",
        ]
    skipped = model.manifest.get("skipped", {})
    if skipped:
        lines += ["", "## Left out of the bundle", ""] + [f"- {part}: {why}" for part, why in sorted(skipped.items())]
    return "\n".join(lines) + "\n"


def train_recs(
    data_home: Path,
    tracking_uri: str,
    *,
    test_days: int = 90,
    k: int = 10,
    margin: float = 0.0,
    register: bool = True,
    as_of: datetime | None = None,
    test_share: float = 0.2,
    protocol: str = TEMPORAL,
    test_users: float = 0.2,
    seeds: int = 3,
    progress: ProgressFn | None = None,
) -> RecsRun:
    """Evaluate on the last ``test_days`` (fit before), refit everything on all data, log and register:
    :func:`build_data` -> :func:`evaluate_split` -> :func:`fit` -> :func:`log_and_register`. With
    ``as_of``, "all data" is the order lines placed before it. An export without order times is
    evaluated on a random ``test_share`` of its baskets instead.

    ``protocol="last-basket"`` also runs protocol (b) on next basket (:func:`evaluate_last_basket_protocol`:
    ``test_users`` share of the customers, ``seeds`` splits); its figures are logged (``last_basket_*``
    metrics, ``last_basket_evaluation.csv``) and shown, while the champion is still picked on the temporal
    evaluation."""
    if protocol not in PROTOCOLS:
        raise KairosError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if seeds < 1:
        raise KairosError(f"seeds must be at least 1, got {seeds}")
    tick = progress or (lambda step, frac: None)
    cfg = RecsConfig(
        tracking_uri, test_days, k, margin, register, as_of, test_share, protocol=protocol, test_users=test_users,
        seeds=seeds,
    )  # fmt: skip
    data = build_data(cfg, data_home)
    if protocol == LAST_BASKET_PROTOCOL and not data.customers:
        raise KairosError(NO_CUSTOMERS_FOR_LAST_BASKET)  # before any fitting
    table, metrics = evaluate_split(cfg, data, tick)
    last_basket, label = None, ""
    if cfg.protocol == LAST_BASKET_PROTOCOL:
        last_basket, label = evaluate_last_basket_protocol(cfg, data, tick)
        metrics |= _last_basket_metrics(last_basket, cfg.k)
    choice = next_basket_choice(metrics, table[table["task"] == NEXT_BASKET], last_basket)
    if choice:
        metrics["next_basket_kairos_chosen"] = float(choice["chosen"] == KAIROS_NEXT)
    model = fit(data, tick)
    if choice:
        # the choice is recorded; serving still answers next basket with repeat + personal (not yet switched)
        model.manifest["next_basket"] = choice | {"served": KAIROS_PERSONAL}
    tick("logging to MLflow", 0.85)
    run = log_and_register(cfg, data, model, table, metrics, last_basket)
    run.last_basket, run.last_basket_label = last_basket, label
    run.next_basket_choice = choice
    tick("done", 1.0)
    return run
