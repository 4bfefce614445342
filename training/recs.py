"""The recommendations job: temporal evaluation against baselines -> the gate per served slot -> refit
on all data -> one verified bundle in MLflow -> registry alias by the served completion's recall@10.

The bundle holds every recommender the storefront and campaigns use (bought together, repeat +
personal, similar items, buy again, popular), the item catalogue and the customers' purchase history
for the business rules, each in its own folder of NumPy / Parquet / JSON files; and **what the gate
chose** for each served slot (:func:`served_choice`): next basket, a cart with a known customer, an
anonymous cart. Kairos's model serves a slot only when its recall@10 difference to the best baseline of
that evaluation has a paired bootstrap 95 % interval above zero; otherwise that baseline is refitted on
all data and served, labelled ``baseline:<name>`` (never worse than the best baseline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from bundles import registry
from bundles.recs import (
    CART_ANONYMOUS_SLOT,
    CART_KNOWN_SLOT,
    NEXT_BASKET_SLOT,
    PARTS,
    RecsBundle,
    RecsModel,
)
from features.errors import KairosError
from features.ingest import export_has_dates
from features.store import ingest_report
from models.recs.base import IX, Recommender
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
    BASKET_COMPLETION_ANONYMOUS,
    COOCCURRENCE_COUNT,
    NEXT_BASKET,
    PERSONAL_BASELINES,
    TIFU_KNN,
    UP_CF,
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
#: The served cart answer's recall@10 (customer known; the model the gate chose for it) on the temporal split.
SELECTION_METRIC = "served_basket_completion_recall_at_10"
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
    completion: dict[str, pd.DataFrame] = field(default_factory=dict)  # protocol (c): mode -> summary over seeds
    served: dict[str, dict[str, str]] = field(default_factory=dict)  # slot -> the gate's choice (served_choice)
    explore_check: str = ""  # protocol (b): Kairos next basket's explore recall against global popularity


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


#: The label each evaluated model is served under (bundles/recs.py ``SERVABLE``; the API's kind / baseline).
SERVED_LABELS = {
    "G-TopFreq": "baseline:g_topfreq",
    "P-TopFreq": "baseline:p_topfreq",
    "GP-TopFreq": "baseline:gp_topfreq",
    TIFU_KNN: "baseline:tifuknn",
    UP_CF: "baseline:upcf",
    COOCCURRENCE_COUNT: "baseline:cooccurrence_count",
    KAIROS_NEXT: "kairos:repeat_ranker",
    KAIROS_CART: "kairos:cart_blend",
    KAIROS_TOGETHER: "kairos:bought_together",
    KAIROS_PERSONAL: "kairos:repeat_personal",
}
#: Per served slot: the Kairos models that may serve it (the first is kept on a tie) and the evaluations that
#: judge it, best evidence first (protocol (b) / (c) when the run held out last baskets, else the temporal one).
SLOT_CANDIDATES = {
    NEXT_BASKET_SLOT: (KAIROS_NEXT,),
    CART_KNOWN_SLOT: (KAIROS_CART,),
    CART_ANONYMOUS_SLOT: (KAIROS_TOGETHER, KAIROS_CART),  # today's bought together unless the blend does better
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
    times. The completion models and their cart baselines (G-TopFreq, the co-occurrence count) are also
    judged on the same carts without the customer (``basket_completion_anonymous``), from the same fit."""
    tick("evaluating against baselines", 0.05)
    models = {**baseline_models(), **_models(), KAIROS_NEXT: RepeatRanker(), KAIROS_CART: CartBlend()}
    tasks: dict[str, tuple[str, ...]] = baseline_tasks()
    for anonymous_too in ("G-TopFreq", COOCCURRENCE_COUNT):  # the anonymous carts' baselines
        tasks[anonymous_too] = (*tasks[anonymous_too], BASKET_COMPLETION_ANONYMOUS)
    tasks |= {
        KAIROS_TOGETHER: (BASKET_COMPLETION, BASKET_COMPLETION_ANONYMOUS),
        KAIROS_PERSONAL: (NEXT_BASKET,),
        KAIROS_NEXT: (NEXT_BASKET,),
        KAIROS_CART: (BASKET_COMPLETION, BASKET_COMPLETION_ANONYMOUS),
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


#: Protocol (c)'s modes: the customer known, and the same carts anonymous.
COMPLETION_MODES = {"customer known": False, "anonymous": True}


def evaluate_completion_protocol(cfg: RecsConfig, data: RecsData, tick: ProgressFn) -> dict[str, pd.DataFrame]:
    """Protocol (c) on the held-out last baskets of protocol (b) (same users, same seeds): one item of each
    hidden, the rest as the cart, with the customer known and anonymous; Kairos cart blend and bought together
    beside the completion baselines (G/P/GP-TopFreq and the co-occurrence count; anonymous: G-TopFreq and the
    count), each Kairos model's recall@k difference to the best with a paired bootstrap 95 % interval.

    Returns:
        mode (:data:`COMPLETION_MODES`) -> the summary over seeds.
    """
    tick("evaluating: basket completion on the held-out last baskets", 0.4)
    tasks = baseline_tasks()
    out: dict[str, pd.DataFrame] = {}
    for mode, anonymous in COMPLETION_MODES.items():
        baselines = {
            name: model
            for name, model in baseline_models().items()
            if BASKET_COMPLETION in tasks[name] and (not anonymous or name not in PERSONAL_BASELINES)
        }
        models = {**baselines, KAIROS_TOGETHER: BoughtTogether(), KAIROS_CART: CartBlend()}
        try:
            result = evaluate_last_basket(
                models, data.interactions, data.items, cfg.k, test_share=cfg.test_users,
                seeds=tuple(range(cfg.seeds)), task=BASKET_COMPLETION, anonymous=anonymous,
            )  # fmt: skip
        except ValueError as exc:
            raise KairosError(str(exc)) from exc
        out[mode] = result.summary(baselines=list(baselines), seed=cfg.seed)
    return out


def explore_check(summary: pd.DataFrame, k: int) -> str:
    """Protocol (b): does Kairos next basket's recall on items new to the customer (explore) beat global
    popularity's (G-TopFreq)? One line, with both figures; empty when either is missing."""
    rows = summary.set_index("model")
    col = f"explore_recall@{k}"
    if KAIROS_NEXT not in rows.index or "G-TopFreq" not in rows.index or col not in rows.columns:
        return ""
    mine, popular = float(rows.loc[KAIROS_NEXT, col]), float(rows.loc["G-TopFreq", col])
    verdict = "beats" if mine > popular else "does not beat"
    return f"explore recall@{k}: {KAIROS_NEXT} {mine:.4f} {verdict} global popularity (G-TopFreq) {popular:.4f}"


def gate_slot(frame: pd.DataFrame | None, kairos: Sequence[str], evidence: str, k: int = 10) -> dict[str, str]:
    """The gate for one served slot on one evaluation (``frame``: a task's rows of the temporal table, or a
    protocol summary, with :func:`~training.recs_eval.with_intervals`' columns): among ``kairos`` the model of
    highest recall@k whose difference to the best baseline has a 95 % interval above zero (ties to the earlier
    in ``kairos``); when none has, that best baseline.

    Returns:
        ``chosen`` (a model name), ``evidence``, ``why`` (the figures); empty when ``frame`` judged none of
        ``kairos`` against a baseline.
    """
    if frame is None or "best_baseline" not in frame.columns:
        return {}
    rows = frame[frame["evaluated"].astype(bool)] if "evaluated" in frame.columns else frame
    rows = rows.drop_duplicates("model").set_index("model")
    col = f"recall@{k}"
    judged = [n for n in kairos if n in rows.index and isinstance(rows.loc[n, "best_baseline"], str)]
    judged = [n for n in judged if rows.loc[n, f"{col}_diff_low"] == rows.loc[n, f"{col}_diff_low"]]
    if not judged:
        return {}
    best = str(rows.loc[judged[0], "best_baseline"])

    def figures(name: str) -> str:
        r = rows.loc[name]
        low, high = r[f"{col}_diff_low"], r[f"{col}_diff_high"]
        return f"{name} {col} {r[f'{col}_diff']:+.4f} [{low:+.4f}, {high:+.4f}] vs {best}"

    winners = [n for n in judged if float(rows.loc[n, f"{col}_diff_low"]) > 0]
    if winners:
        chosen = max(winners, key=lambda n: (float(rows.loc[n, col]), -list(kairos).index(n)))
        return {"chosen": chosen, "evidence": evidence, "why": f"{figures(chosen)}: interval above zero"}
    why = "; ".join(figures(n) for n in judged) + ": Kairos not better with the interval above zero"
    return {"chosen": best, "evidence": evidence, "why": why}


def served_choice(
    table: pd.DataFrame,
    last_basket: pd.DataFrame | None,
    completion: dict[str, pd.DataFrame],
    customers: int,
    k: int = 10,
) -> dict[str, dict[str, str]]:
    """What each slot serves (:func:`gate_slot` on the best evidence the run has: protocol (b) / (c) when they
    ran, else the temporal table). Next basket is not a slot without customers; it is Kairos repeat + personal
    (as before the gate) when no evaluation could judge it. A cart with a known customer is served like an
    anonymous one when no order names a customer."""
    task = table[table["task"] == NEXT_BASKET] if "task" in table.columns else table
    out: dict[str, dict[str, str]] = {}
    if customers:
        nxt = gate_slot(last_basket, SLOT_CANDIDATES[NEXT_BASKET_SLOT], "last basket held out", k) or gate_slot(
            task, SLOT_CANDIDATES[NEXT_BASKET_SLOT], "temporal split", k
        )
        out[NEXT_BASKET_SLOT] = nxt or {
            "chosen": KAIROS_PERSONAL,
            "evidence": "none",
            "why": "next basket could not be evaluated on this data: repeat + personal, as before the gate",
        }
    for slot, protocol_mode, temporal_task in (
        (CART_KNOWN_SLOT, "customer known", BASKET_COMPLETION),
        (CART_ANONYMOUS_SLOT, "anonymous", BASKET_COMPLETION_ANONYMOUS),
    ):
        if slot == CART_KNOWN_SLOT and not customers:
            continue
        kairos = SLOT_CANDIDATES[slot]
        chosen = gate_slot(completion.get(protocol_mode), kairos, f"last basket held out, {protocol_mode}", k)
        out[slot] = chosen or gate_slot(table[table["task"] == temporal_task], kairos, "temporal split", k)
    if CART_ANONYMOUS_SLOT in out and not out[CART_ANONYMOUS_SLOT]:
        del out[CART_ANONYMOUS_SLOT]
    if not customers and CART_ANONYMOUS_SLOT in out:
        out[CART_KNOWN_SLOT] = dict(out[CART_ANONYMOUS_SLOT])
    return {slot: choice for slot, choice in out.items() if choice}


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


def _fresh(name: str) -> Recommender:
    """An unfitted model by its evaluation name (a baseline of :func:`baseline_models` or a Kairos model)."""
    kairos: dict[str, Callable[[], Recommender]] = {
        KAIROS_NEXT: RepeatRanker,
        KAIROS_CART: CartBlend,
        KAIROS_TOGETHER: BoughtTogether,
        KAIROS_PERSONAL: RepeatThenPersonal,
    }
    if name in kairos:
        return kairos[name]()
    return baseline_models()[name]


def fit(data: RecsData, tick: ProgressFn, choice: dict[str, dict[str, str]] | None = None) -> RecsModel:
    """Every recommender, the catalogue and the purchase history refitted on all data: what is served.

    ``choice`` (:func:`served_choice`): per slot, the model the gate chose, refitted on all data (one fit per
    model, whichever slots it serves) and recorded in the manifest's ``served`` with its label and why; a slot
    not chosen serves what it did before the gate (repeat + personal, bought together).

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
    fitted: dict[str, Recommender] = {KAIROS_TOGETHER: together}
    if repeat is not None:
        fitted[KAIROS_PERSONAL] = repeat
    served: dict[str, tuple[str, Recommender]] = {}
    for slot, chosen in (choice or {}).items():
        name = chosen["chosen"]
        if name not in fitted:
            tick(f"refitting the served {slot.replace('_', ' ')} model ({name})", 0.7)
            fitted[name] = _fresh(name).fit(interactions, items)
        served[slot] = (SERVED_LABELS[name], fitted[name])
    manifest["served"] = {slot: {"model": SERVED_LABELS[c["chosen"]], **c} for slot, c in (choice or {}).items()}
    return RecsModel(together, repeat, similar, buy_again, popular, catalogue, history, manifest, served)


def log_and_register(
    cfg: RecsConfig,
    data: RecsData,
    model: RecsModel,
    table: pd.DataFrame,
    metrics: dict[str, float],
    last_basket: pd.DataFrame | None = None,
    completion: dict[str, pd.DataFrame] | None = None,
) -> RecsRun:
    """The run in MLflow and the bundle registered: ``@champion`` only if its served basket-completion recall
    (:data:`SELECTION_METRIC`) beats the champion's by more than ``cfg.margin``. Each slot of the bundle
    already serves Kairos's model only where it beat the best baseline (:func:`served_choice`), else that
    baseline, so what is registered is never worse than the best baseline on this run's evidence."""
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
        for mode, summary in (completion or {}).items():
            mlflow.log_text(summary.to_csv(index=False), f"completion_{mode.replace(' ', '_')}_evaluation.csv")
        served = ", ".join(f"{slot}={entry['model']}" for slot, entry in model.manifest.get("served", {}).items())
        if served:
            mlflow.set_tag("kairos.served", served)
        mlflow.log_text(model_card(cfg, data, model, table, last_basket, completion), "model_card.md")
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
    cfg: RecsConfig,
    data: RecsData,
    model: RecsModel,
    table: pd.DataFrame,
    last_basket: pd.DataFrame | None = None,
    completion: dict[str, pd.DataFrame] | None = None,
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
    for mode, summary in (completion or {}).items():
        lines += [
            "",
            f"## Basket completion, last basket held out, {mode} ({cfg.seeds} seeds, {cfg.test_users:.0%} of the "
            "customers)",
            "",
            "```",
            summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
            "```",
        ]
    served = model.manifest.get("served", {})
    if served:
        lines += ["", "## Served (the gate)", ""]
        lines += [
            f"- {slot}: `{e['model']}` on the {e.get('evidence', '?')}: {e.get('why', '')}"
            for slot, e in served.items()
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
    completion: dict[str, pd.DataFrame] = {}
    explore = ""
    if cfg.protocol == LAST_BASKET_PROTOCOL:
        last_basket, label = evaluate_last_basket_protocol(cfg, data, tick)
        metrics |= _last_basket_metrics(last_basket, cfg.k)
        completion = evaluate_completion_protocol(cfg, data, tick)
        metrics |= _completion_metrics(completion, cfg.k)
        explore = explore_check(last_basket, cfg.k)
        if explore:
            metrics["last_basket_explore_beats_popularity"] = float(" beats " in explore)
    choice = next_basket_choice(metrics, table[table["task"] == NEXT_BASKET], last_basket)
    if choice:
        metrics["next_basket_kairos_chosen"] = float(choice["chosen"] == KAIROS_NEXT)
    served = served_choice(table, last_basket, completion, data.customers, cfg.k)
    model = fit(data, tick, served)
    if choice:
        model.manifest["next_basket"] = choice | {"served": model.served_label(NEXT_BASKET_SLOT) or ""}
    metrics |= _served_metrics(served, table, completion, cfg.k)
    metrics[SELECTION_METRIC] = _selection_value(table, served, cfg.k)
    tick("logging to MLflow", 0.85)
    run = log_and_register(cfg, data, model, table, metrics, last_basket, completion)
    run.last_basket, run.last_basket_label = last_basket, label
    run.next_basket_choice = choice
    run.completion, run.served, run.explore_check = completion, served, explore
    tick("done", 1.0)
    return run


def _selection_value(table: pd.DataFrame, served: dict[str, dict[str, str]], k: int) -> float:
    """The temporal basket-completion recall@k of the model serving carts (a known customer's, else an
    anonymous one's; Kairos bought together when no slot was chosen): what the registry compares versions by."""
    chosen = served.get(CART_KNOWN_SLOT) or served.get(CART_ANONYMOUS_SLOT) or {"chosen": KAIROS_TOGETHER}
    rows = table[(table["task"] == BASKET_COMPLETION) & table["evaluated"].astype(bool)]
    hit = rows.loc[rows["model"] == chosen["chosen"], f"recall@{k}"]
    if not len(hit):
        hit = rows.loc[rows["model"] == KAIROS_TOGETHER, f"recall@{k}"]
    return float(hit.iloc[0])


def _completion_metrics(completion: dict[str, pd.DataFrame], k: int) -> dict[str, float]:
    """Protocol (c): each Kairos completion model's recall@k and its interval to the best baseline, per mode."""
    out: dict[str, float] = {}
    for mode, summary in completion.items():
        rows = summary.set_index("model")
        tag = "known" if mode == "customer known" else "anonymous"
        for name, short in ((KAIROS_CART, "cart_blend"), (KAIROS_TOGETHER, "bought_together")):
            if name not in rows.index:
                continue
            out[f"completion_{tag}_{short}_recall_at_{k}"] = float(rows.loc[name, f"recall@{k}"])
            for col in ("diff", "diff_low", "diff_high"):
                if f"recall@{k}_{col}" in rows.columns:
                    out[f"completion_{tag}_{short}_recall_at_{k}_{col}"] = float(rows.loc[name, f"recall@{k}_{col}"])
    return out


def _served_metrics(
    served: dict[str, dict[str, str]], table: pd.DataFrame, completion: dict[str, pd.DataFrame], k: int
) -> dict[str, float]:
    """Per slot, 1.0 when Kairos's own model serves it (0.0: a baseline), and the served cart model's recall
    on the evaluation that chose it (``served_cart_known_recall_at_10`` / ``served_cart_anonymous_...``)."""
    out = {f"served_{slot}_kairos": float(c["chosen"].startswith("Kairos")) for slot, c in served.items()}
    for slot, mode, task in (
        (CART_KNOWN_SLOT, "customer known", BASKET_COMPLETION),
        (CART_ANONYMOUS_SLOT, "anonymous", BASKET_COMPLETION_ANONYMOUS),
    ):
        if slot not in served:
            continue
        name = served[slot]["chosen"]
        frame = completion.get(mode) if served[slot]["evidence"].startswith("last basket") else None
        rows = frame if frame is not None else table[(table["task"] == task) & table["evaluated"].astype(bool)]
        hit = rows[rows["model"] == name]
        if len(hit):
            out[f"served_{slot}_recall_at_{k}"] = float(hit[f"recall@{k}"].iloc[0])
    return out
