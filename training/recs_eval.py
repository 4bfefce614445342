"""Honest temporal evaluation of recommenders against the standard baselines, in the same run.

Every model is fitted on the interactions before the split time T and judged on the purchases in
``[T, T + test_days)``:

- **basket completion**: for every test order with at least two distinct items, one item (chosen with
  a fixed seed, the same for every model) is hidden and the model ranks it from the rest of the basket
  given as the cart. An order whose hidden item never appeared in training cannot be answered by any
  model that learns from history; it is skipped and the count is reported (never dropped silently).
  The query carries the order's customer (``None`` for a guest) unless ``anonymous_carts`` is set, so
  personal baselines compete on the same footing as cart-only models.
- **next basket**: for every known customer who bought in the test window and has training history,
  the relevant set is the distinct items bought in the window; the model is asked by customer key with
  ``now = T``. Customers without training history (cold start) are counted and skipped.

Per model and task: recall@k, NDCG@k, MRR, hit rate, precision@k (definitions in
:mod:`models.recs.metrics`), catalogue coverage and popularity bias (mean training-popularity
percentile of the recommended slots, plus ARP), the fill rate (mean list length / k), contract
violations (a list longer than k, a duplicate, or an item of the cart or ``exclude``), fit time and
recommendation time per query.

The in-run baselines (:func:`baseline_models`, judged on the tasks of :func:`baseline_tasks`): G/P/GP-TopFreq
on both tasks, TIFU-KNN and UP-CF@r on next basket, the plain co-occurrence count on basket completion.
:func:`with_intervals` adds each other model's recall@k difference to the best baseline of its task with a
paired bootstrap 95 % interval.

Protocol (b), leave the last basket out (:func:`evaluate_last_basket`): for several seeds, the last basket
of a random share of the customers with two or more baskets is held out, and next basket is judged with
the reality-check metrics (recall@k, NDCG@k, PHR@k, recall over repeat and over explore items).

Usage::

    python -m training.recs_eval --data HOME --split-at 2011-09-01 --test-days 90
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from features.store import open_tables
from models.recs import metrics as m
from models.recs.base import IX, InteractionKind, Query, Recommendation, Recommender, interactions_from_tables
from models.recs.baselines import GlobalPersonalTopFreq, GlobalTopFreq, PersonalTopFreq

logger = logging.getLogger(__name__)

BASKET_COMPLETION = "basket_completion"
NEXT_BASKET = "next_basket"
TASKS = (BASKET_COMPLETION, NEXT_BASKET)
#: Basket completion asked without the customer key, judged on the same fit as the other tasks (named in
#: ``tasks=`` of :func:`evaluate_sets`; never run unless named).
BASKET_COMPLETION_ANONYMOUS = "basket_completion_anonymous"
KNOWN_TASKS = (*TASKS, BASKET_COMPLETION_ANONYMOUS)
_BATCH = 2048


def _utc(ts: datetime | str | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(ts)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def temporal_split(
    interactions: pd.DataFrame, split_at: datetime | str, test_days: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cut the interactions at ``split_at``: training strictly before, test in ``[split_at, +test_days)``.

    Args:
        interactions: the interactions frame (:class:`~models.recs.base.IX` columns).
        split_at: the split time T (a naive time is taken as UTC).
        test_days: length of the test window in days (> 0).

    Returns:
        ``(train, test)``, both with all event kinds; rows after the test window are in neither.

    Raises:
        ValueError: ``test_days`` < 1, or either side is empty.
    """
    if test_days < 1:
        raise ValueError(f"test_days must be at least 1, got {test_days}")
    start = _utc(split_at)
    end = start + pd.Timedelta(days=test_days)
    ts = pd.to_datetime(interactions[IX.TS], utc=True)
    train = interactions[(ts < start).to_numpy()].reset_index(drop=True)
    test = interactions[((ts >= start) & (ts < end)).to_numpy()].reset_index(drop=True)
    if train.empty or test.empty:
        raise ValueError(
            f"split at {start} with a {test_days}-day test window leaves {len(train)} training and {len(test)} "
            f"test interactions (data span {ts.min()} .. {ts.max()})"
        )
    return train, test


def random_split(interactions: pd.DataFrame, test_share: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cut the interactions by basket at random (seeded): for an export without order times, where no
    temporal split exists. Each basket falls wholly on one side; a customer's baskets may fall on both,
    in any order (the figures are then not those of predicting the future, and are labelled so).

    Args:
        interactions: the interactions frame (:class:`~models.recs.base.IX` columns).
        test_share: the share of baskets held out, in (0, 1).
        seed: the seed of the draw (same seed, same data: same split).

    Returns:
        ``(train, test)``.

    Raises:
        ValueError: ``test_share`` outside (0, 1), or either side is empty.
    """
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must be between 0 and 1, got {test_share}")
    baskets = np.sort(interactions[IX.BASKET].dropna().astype(str).unique())
    held = np.random.default_rng(seed).random(len(baskets)) < test_share
    test_ids = set(baskets[held])
    in_test = interactions[IX.BASKET].astype(str).isin(test_ids).to_numpy()
    train = interactions[~in_test].reset_index(drop=True)
    test = interactions[in_test].reset_index(drop=True)
    if train.empty or test.empty:
        raise ValueError(
            f"a random {test_share:.0%} of {len(baskets)} baskets leaves {len(train)} training and {len(test)} "
            "test interactions"
        )
    return train, test


def _purchases(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame
    if IX.EVENT in rows.columns:
        rows = rows[rows[IX.EVENT].astype("string") == InteractionKind.PURCHASE.value]
    return rows[rows[IX.ITEM].notna() & rows[IX.BASKET].notna()]


@dataclass
class TaskResult:
    """What one model did on one task.

    Attributes:
        task: ``basket_completion`` or ``next_basket``.
        queries: queries scored.
        skipped: eligible queries left out, for the reason in ``note`` (reported, never silent).
        ineligible: test cases outside the task's definition (single-item orders; guests' orders).
        per_query: metric name -> one value per query (recall, ndcg, mrr, hit, precision).
        lists: the recommended item ids per query.
        violations: lists that broke the contract (too long, duplicates, cart or excluded items).
        seconds: wall time spent in ``recommend_batch``.
        note: what was skipped and why.
    """

    task: str
    queries: int
    skipped: int
    ineligible: int
    per_query: dict[str, np.ndarray] = field(default_factory=dict)
    lists: list[list[str]] = field(default_factory=list)
    violations: int = 0
    seconds: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class CompletionCases:
    """Test baskets with one hidden item each, the same for every model.

    Attributes:
        queries: one cart query per kept basket (the rest of the basket as the cart).
        hidden: the hidden item of each kept basket.
        eligible: baskets with at least two distinct items.
        skipped: eligible baskets whose hidden item never appeared in training.
        ineligible: baskets with fewer than two distinct items.
    """

    queries: list[Query]
    hidden: list[str]
    eligible: int
    skipped: int
    ineligible: int


def completion_cases(
    test: pd.DataFrame,
    known_items: Collection[str],
    seed: int = 0,
    *,
    anonymous_carts: bool = False,
) -> CompletionCases:
    """Hide one item per test basket (seeded) and build the cart queries.

    Baskets are taken in basket-id order and their items in order of first appearance, so the same seed
    hides the same items on the same data. A basket whose hidden item is not in ``known_items`` is
    skipped (not re-drawn) and counted.

    Args:
        test: test interactions (only purchases are used).
        known_items: the items seen in training.
        seed: seed of the hidden-item draw.
        anonymous_carts: drop the customer key from the queries (a guest's cart for every basket).

    Returns:
        The queries, their hidden items and the counts of eligible, skipped and ineligible baskets.
    """
    rows = _purchases(test).drop_duplicates([IX.BASKET, IX.ITEM])
    rows = rows.assign(**{IX.BASKET: rows[IX.BASKET].astype(str), IX.ITEM: rows[IX.ITEM].astype(str)})
    rows = rows.sort_values(IX.BASKET, kind="stable")
    grouped = rows.groupby(IX.BASKET, sort=True)
    baskets = pd.DataFrame(
        {
            "items": grouped[IX.ITEM].agg(list),
            "customer": grouped[IX.CUSTOMER].first(),
            "ts": grouped[IX.TS].min(),
        }
    )
    sizes = baskets["items"].map(len).to_numpy()
    eligible = baskets[sizes >= 2]
    draw = np.random.default_rng(seed).integers(0, sizes[sizes >= 2]) if len(eligible) else np.array([], int)
    known = set(known_items)
    queries: list[Query] = []
    hidden: list[str] = []
    skipped = 0
    for items, customer, ts, pick in zip(eligible["items"], eligible["customer"], eligible["ts"], draw, strict=True):
        target = items[pick]
        if target not in known:
            skipped += 1
            continue
        cart = tuple(items[:pick] + items[pick + 1 :])
        key = None if anonymous_carts or pd.isna(customer) else str(customer)
        queries.append(Query(customer_key=key, cart=cart, now=_utc(ts).to_pydatetime()))
        hidden.append(target)
    return CompletionCases(queries, hidden, len(eligible), skipped, int((sizes < 2).sum()))


def _run(model: Recommender, queries: Sequence[Query], k: int) -> tuple[list[list[Recommendation]], float]:
    began = time.perf_counter()
    out: list[list[Recommendation]] = []
    for start in range(0, len(queries), _BATCH):
        out.extend(model.recommend_batch(list(queries[start : start + _BATCH]), k))
    if len(out) != len(queries):
        raise RuntimeError(f"recommend_batch returned {len(out)} lists for {len(queries)} queries")
    return out, time.perf_counter() - began


def _violates(recs: list[Recommendation], query: Query, k: int) -> bool:
    ids = [rec.item_id for rec in recs]
    blocked = set(query.cart) | set(query.exclude)
    return len(ids) > k or len(set(ids)) != len(ids) or any(item in blocked for item in ids)


def _score(
    task: str,
    queries: Sequence[Query],
    relevant: Sequence[Collection[str]],
    answers: list[list[Recommendation]],
    k: int,
) -> tuple[dict[str, np.ndarray], list[list[str]], int]:
    lists = [[rec.item_id for rec in recs][:k] for recs in answers]
    per_query = {
        "recall": np.array([m.recall_at_k(ids, rel, k) for ids, rel in zip(lists, relevant, strict=True)]),
        "ndcg": np.array([m.ndcg_at_k(ids, rel, k) for ids, rel in zip(lists, relevant, strict=True)]),
        "mrr": np.array([m.reciprocal_rank(ids, rel, k) for ids, rel in zip(lists, relevant, strict=True)]),
        "hit": np.array([m.hit_at_k(ids, rel, k) for ids, rel in zip(lists, relevant, strict=True)]),
        "precision": np.array([m.precision_at_k(ids, rel, k) for ids, rel in zip(lists, relevant, strict=True)]),
    }
    violations = sum(_violates(recs, q, k) for recs, q in zip(answers, queries, strict=True))
    if violations:
        logger.warning("%s: %d of %d lists break the recommender contract", task, violations, len(answers))
    return per_query, lists, violations


def basket_completion(
    model: Recommender,
    test_baskets: pd.DataFrame,
    known_items: Collection[str],
    k: int = 10,
    seed: int = 0,
    *,
    anonymous_carts: bool = False,
) -> TaskResult:
    """Score a fitted model on hidden-item basket completion.

    Args:
        model: a fitted recommender.
        test_baskets: test interactions (purchases are grouped into baskets by order id).
        known_items: items seen in training (a basket whose hidden item is not among them is skipped).
        k: cut-off.
        seed: seed of the hidden-item draw (use the same for every model).
        anonymous_carts: ask without the customer key.

    Returns:
        The per-query metrics, lists and the skipped count.
    """
    cases = completion_cases(test_baskets, known_items, seed, anonymous_carts=anonymous_carts)
    answers, seconds = _run(model, cases.queries, k)
    per_query, lists, violations = _score(BASKET_COMPLETION, cases.queries, [{h} for h in cases.hidden], answers, k)
    note = (
        f"{cases.skipped} of {cases.eligible} baskets with 2+ items skipped: hidden item unseen in training; "
        f"{cases.ineligible} single-item baskets not eligible"
    )
    return TaskResult(
        BASKET_COMPLETION,
        len(cases.queries),
        cases.skipped,
        cases.ineligible,
        per_query,
        lists,
        violations,
        seconds,
        note,
    )


def next_basket(
    model: Recommender, train: pd.DataFrame, test: pd.DataFrame, k: int = 10, now: datetime | None = None
) -> TaskResult:
    """Score a fitted model on next-basket prediction for returning customers.

    Args:
        model: a fitted recommender.
        train: training interactions (who has history).
        test: test interactions; relevant = the distinct items each customer bought here.
        k: cut-off.
        now: the time of asking (the split time); default: the last training timestamp.

    Returns:
        The per-query metrics and lists; ``skipped`` counts test customers without training history.
    """
    bought = _purchases(test)
    guests = int(bought.loc[bought[IX.CUSTOMER].isna(), IX.BASKET].nunique())
    bought = bought[bought[IX.CUSTOMER].notna()]
    relevant_by = bought.groupby(bought[IX.CUSTOMER].astype(str))[IX.ITEM].agg(lambda s: frozenset(s.astype(str)))
    history = _purchases(train)
    returning = set(history[IX.CUSTOMER].dropna().astype(str))
    keep = relevant_by[relevant_by.index.isin(returning)].sort_index()
    when = now if now is not None else _utc(pd.to_datetime(train[IX.TS], utc=True).max()).to_pydatetime()
    queries = [Query(customer_key=key, now=when) for key in keep.index]
    relevant = list(keep.to_numpy())
    answers, seconds = _run(model, queries, k)
    per_query, lists, violations = _score(NEXT_BASKET, queries, relevant, answers, k)
    known_items = set(history[IX.ITEM].astype(str))
    own = history[history[IX.CUSTOMER].notna()]
    own_items = own.groupby(own[IX.CUSTOMER].astype(str))[IX.ITEM].agg(lambda s: frozenset(s.astype(str)))
    n_rel = sum(len(r) for r in relevant)
    unseen = sum(len(r - known_items) for r in relevant)
    repeats = sum(len(r & own_items.get(key, frozenset())) for key, r in zip(keep.index, relevant, strict=True))
    skipped = len(relevant_by) - len(keep)
    note = (
        f"{skipped} of {len(relevant_by)} test customers skipped: no training history; {guests} guest orders "
        f"not eligible; of {n_rel} relevant items, {repeats / max(n_rel, 1):.1%} are repeats of the customer's "
        f"own training purchases and {unseen / max(n_rel, 1):.1%} were never sold in training"
    )
    return TaskResult(NEXT_BASKET, len(queries), skipped, guests, per_query, lists, violations, seconds, note)


def training_popularity(train: pd.DataFrame, catalogue: Collection[str]) -> dict[str, float]:
    """Training orders holding each item, over the catalogue and every trained item (0 if never bought)."""
    rows = _purchases(train)
    counts = rows.groupby(rows[IX.ITEM].astype(str))[IX.BASKET].nunique()
    popularity = dict.fromkeys((str(item) for item in catalogue), 0.0)
    popularity.update({str(item): float(n) for item, n in counts.items()})
    return popularity


def summarise(
    name: str, result: TaskResult, k: int, catalogue: Collection[str], popularity: Mapping[str, float], fit_s: float
) -> dict[str, object]:
    """One table row: the mean of each per-query metric plus coverage, popularity bias and timings."""

    def mean(key: str) -> float:
        values = result.per_query.get(key, np.array([]))
        return float(values.mean()) if len(values) else float("nan")

    percentiles = m.popularity_percentiles(popularity)
    return {
        "model": name,
        "task": result.task,
        "queries": result.queries,
        "skipped": result.skipped,
        f"recall@{k}": mean("recall"),
        f"ndcg@{k}": mean("ndcg"),
        "mrr": mean("mrr"),
        f"hit@{k}": mean("hit"),
        f"precision@{k}": mean("precision"),
        "coverage": m.catalogue_coverage(result.lists, catalogue),
        "pop_bias": m.popularity_bias(result.lists, percentiles),
        "arp": m.average_recommendation_popularity(result.lists, popularity),
        "fill": float(np.mean([len(ids) for ids in result.lists]) / k) if result.lists else float("nan"),
        "violations": result.violations,
        "fit_s": fit_s,
        "ms_per_query": 1000 * result.seconds / max(result.queries, 1),
        "note": result.note,
    }


TIFU_KNN = "TIFU-KNN"
UP_CF = "UP-CF@r"
COOCCURRENCE_COUNT = "co-occurrence count"
#: UP-CF@r's neighbours per customer in the in-run baseline: the paper sums over every customer with a
#: positive similarity (``n_neighbours=None``); with q = 5 the far neighbours weigh next to nothing, and
#: the cap keeps the scoring matrix sparse on tens of thousands of customers.
UPCF_NEIGHBOURS = 300


def baseline_models() -> dict[str, Recommender]:
    """The in-run baselines, unfitted: G-TopFreq (also the item-popularity baseline), P- and GP-TopFreq,
    TIFU-KNN and UP-CF@r (next basket) and the plain co-occurrence count (basket completion), with the
    default parameters of :mod:`models.recs.tifuknn`, :mod:`models.recs.upcf` and
    :mod:`models.recs.cooccurrence_count` (see docs/recommenders.md). :func:`baseline_tasks` says which task
    each is judged on."""
    from models.recs.cooccurrence_count import CooccurrenceCount
    from models.recs.tifuknn import TIFUKNN
    from models.recs.upcf import UPCF

    return {
        "G-TopFreq": GlobalTopFreq(),
        "P-TopFreq": PersonalTopFreq(),
        "GP-TopFreq": GlobalPersonalTopFreq(),
        TIFU_KNN: TIFUKNN(),
        UP_CF: UPCF(n_neighbours=UPCF_NEIGHBOURS),
        COOCCURRENCE_COUNT: CooccurrenceCount(),
    }


def baseline_tasks() -> dict[str, tuple[str, ...]]:
    """The task(s) each of :func:`baseline_models` is judged on: the frequency baselines on both, the
    next-basket methods on next basket, the co-occurrence count on basket completion."""
    return {
        "G-TopFreq": TASKS,
        "P-TopFreq": TASKS,
        "GP-TopFreq": TASKS,
        TIFU_KNN: (NEXT_BASKET,),
        UP_CF: (NEXT_BASKET,),
        COOCCURRENCE_COUNT: (BASKET_COMPLETION,),
    }


#: The baselines that learn from customers' own purchases (skipped when no order names a customer).
PERSONAL_BASELINES = frozenset({"P-TopFreq", "GP-TopFreq", TIFU_KNN, UP_CF})

NO_CUSTOMERS = (
    "not evaluated: no training order names a customer (a basket-only export); personal recommenders need customers"
)
NO_RETURNING = "not evaluated: no customer buys in the test part who also bought in the training part"


def known_customers(interactions: pd.DataFrame) -> int:
    """Distinct customers among the purchases (0 for a basket-only export: every order anonymous)."""
    return int(_purchases(interactions)[IX.CUSTOMER].dropna().nunique())


def _skipped_row(name: str, task: str, k: int, note: str) -> dict[str, object]:
    """A table row for a model x task that could not be evaluated: no figures, the reason in ``note``."""
    nan = float("nan")
    metrics = (f"recall@{k}", f"ndcg@{k}", "mrr", f"hit@{k}", f"precision@{k}", "coverage", "pop_bias", "arp", "fill")
    return {
        "model": name,
        "task": task,
        "evaluated": False,
        "queries": 0,
        "skipped": 0,
        **dict.fromkeys(metrics, nan),
        "violations": 0,
        "fit_s": nan,
        "ms_per_query": nan,
        "note": note,
    }


def evaluate(
    models: Mapping[str, Recommender],
    interactions: pd.DataFrame,
    items: pd.DataFrame | None,
    split_at: datetime | str,
    test_days: int,
    k: int = 10,
    *,
    seed: int = 0,
    tasks: Mapping[str, Collection[str]] | None = None,
    anonymous_carts: bool = False,
    personal: Collection[str] = PERSONAL_BASELINES,
    per_query: dict[tuple[str, str], np.ndarray] | None = None,
) -> pd.DataFrame:
    """Fit every model on the data before ``split_at`` and score it on the tasks after.

    Args:
        models: name -> unfitted recommender (fitted here on the training part with ``items``).
        interactions: all interactions (:class:`~models.recs.base.IX` columns).
        items: the catalogue (its ids define coverage); None: the items in ``interactions``.
        split_at: the split time T.
        test_days: test window length in days.
        k: cut-off.
        seed: seed of the hidden-item draw.
        tasks: name -> the tasks to run that model on; models not named run on both.
        anonymous_carts: basket-completion queries without the customer key.
        personal: the models that learn from customers' own purchases (see :func:`evaluate_sets`).
        per_query: if given, filled as in :func:`evaluate_sets`.

    Returns:
        One row per model x task (see :func:`evaluate_sets`).
    """
    train, test = temporal_split(interactions, split_at, test_days)
    now = _utc(split_at).to_pydatetime()
    return evaluate_sets(
        models, train, test, items, k, now=now, seed=seed, tasks=tasks, anonymous_carts=anonymous_carts,
        personal=personal, per_query=per_query,
    )  # fmt: skip


def evaluate_sets(
    models: Mapping[str, Recommender],
    train: pd.DataFrame,
    test: pd.DataFrame,
    items: pd.DataFrame | None,
    k: int = 10,
    *,
    now: datetime | None,
    seed: int = 0,
    tasks: Mapping[str, Collection[str]] | None = None,
    anonymous_carts: bool = False,
    personal: Collection[str] = PERSONAL_BASELINES,
    per_query: dict[tuple[str, str], np.ndarray] | None = None,
) -> pd.DataFrame:
    """Fit every model on ``train`` and score it on the tasks in ``test`` (a temporal or a random split).

    A task that the data cannot pose is not run, and its rows say so (``evaluated`` False, no figures,
    the reason in ``note``): next basket when no test customer has training history; every task of a
    ``personal`` model when no training order names a customer (such a model has nothing to learn and
    is not fitted).

    Args:
        models: name -> unfitted recommender.
        train: the training interactions.
        test: the test interactions.
        items: the catalogue (its ids define coverage); None: the items in ``train`` and ``test``.
        k: cut-off.
        now: the time of asking for next basket (the split time); None: the last training time.
        seed: seed of the hidden-item draw.
        tasks: name -> the tasks to run that model on; models not named run on both. A model named with
            ``BASKET_COMPLETION_ANONYMOUS`` is also judged on the same completion queries without the
            customer key, from the same fit.
        anonymous_carts: basket-completion queries without the customer key.
        personal: the models that learn from customers' own purchases.
        per_query: if given, filled with (model, task) -> recall@k per query; the queries of one task are
            the same, in the same order, for every model (the pairs of :func:`with_intervals`).

    Returns:
        One row per model x task: ``model, task, evaluated, queries, skipped, recall@k, ndcg@k, mrr,
        hit@k, precision@k, coverage, pop_bias, arp, fill, violations, fit_s, ms_per_query, note``.
    """
    every = pd.concat([train[IX.ITEM], test[IX.ITEM]])
    catalogue = set(items[IX.ITEM].astype(str)) if items is not None and len(items) else set(every.astype(str))
    popularity = training_popularity(train, catalogue)
    known = set(train[IX.ITEM].dropna().astype(str))
    has_customers = known_customers(train) > 0
    returning = set(_purchases(train)[IX.CUSTOMER].dropna().astype(str))
    next_possible = bool(returning & set(_purchases(test)[IX.CUSTOMER].dropna().astype(str)))
    rows = []
    for name, model in models.items():
        wanted = tuple(tasks.get(name, TASKS)) if tasks is not None else TASKS
        unknown = [task for task in wanted if task not in KNOWN_TASKS]
        if unknown:
            raise ValueError(f"unknown task {unknown[0]!r}; known: {KNOWN_TASKS}")
        why: dict[str, str] = {}  # task -> why it cannot be posed for this model
        for task in wanted:
            if not has_customers and (name in personal or task == NEXT_BASKET):
                why[task] = NO_CUSTOMERS
            elif task == NEXT_BASKET and not next_possible:
                why[task] = NO_RETURNING
        fitted, fit_s = None, float("nan")
        if len(why) < len(wanted):
            began = time.perf_counter()
            fitted = model.fit(train, items)
            fit_s = time.perf_counter() - began
            logger.info("%s fitted in %.1f s", name, fit_s)
        for task in wanted:
            if task in why or fitted is None:
                rows.append(_skipped_row(name, task, k, why[task]))
                continue
            if task in (BASKET_COMPLETION, BASKET_COMPLETION_ANONYMOUS):
                anonymous = anonymous_carts or task == BASKET_COMPLETION_ANONYMOUS
                result = basket_completion(fitted, test, known, k, seed, anonymous_carts=anonymous)
            else:
                result = next_basket(fitted, train, test, k, now=now)
            rows.append({"evaluated": True, **summarise(name, result, k, catalogue, popularity, fit_s), "task": task})
            if per_query is not None:
                per_query[(name, task)] = result.per_query["recall"]
    order = ["model", "task", "evaluated"]
    table = pd.DataFrame(rows)
    return table[order + [c for c in table.columns if c not in order]] if len(table) else table


# --- protocol (b): leave the last basket out -------------------------------------------------------

LAST_BASKET = "last_basket"
#: Per-user figures of the last-basket protocol (repeat / explore recall are NaN where undefined).
LAST_BASKET_METRICS = ("recall", "ndcg", "phr", "repeat_recall", "explore_recall")


@dataclass(frozen=True)
class LastBasketSplit:
    """One draw of the leave-last-basket-out protocol.

    Attributes:
        seed: the seed of the draw.
        train: every interaction except the test users' last baskets (and, for a test user, any
            non-purchase event at or after that basket's time).
        customers: the test users, sorted.
        relevant: per test user, the distinct items of their held-out last basket.
        history: per test user, the distinct items they bought in ``train`` (repeat vs explore).
        asked_at: per test user, the time of the held-out basket (None: the export has no order times).
        eligible: customers with two or more baskets (the pool the test users are drawn from).
    """

    seed: int
    train: pd.DataFrame
    customers: list[str]
    relevant: list[frozenset[str]]
    history: list[frozenset[str]]
    asked_at: list[datetime | None]
    eligible: int


def _basket_order(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per basket: its customer, first-line time (NaT without times) and first row position,
    sorted into each customer's buying order: by time, ties (and exports without times) by the first
    row of the basket in the export."""
    frame = pd.DataFrame(
        {
            "customer": rows[IX.CUSTOMER].astype(str).to_numpy(),
            "basket": rows[IX.BASKET].astype(str).to_numpy(),
            "pos": np.arange(len(rows)),
        }
    )
    has_times = IX.TS in rows.columns and bool(rows[IX.TS].notna().any())
    if has_times:
        ts = pd.to_datetime(rows[IX.TS], utc=True)
        if ts.isna().any():
            raise ValueError(
                f"last-basket protocol: {int(ts.isna().sum())} purchase rows have no {IX.TS!r} while others have "
                "one; the order of baskets is undefined"
            )
        frame["ts"] = ts.to_numpy()
    else:
        frame["ts"] = pd.NaT
    first = frame.groupby(["customer", "basket"], sort=False).agg(ts=("ts", "min"), pos=("pos", "min")).reset_index()
    return first.sort_values(["customer", "ts", "pos"], kind="stable").reset_index(drop=True)


def last_basket_split(interactions: pd.DataFrame, test_share: float = 0.2, seed: int = 0) -> LastBasketSplit:
    """Hold out the last basket of a seeded random share of the customers with two or more baskets.

    "Last" is by the basket's first line time; baskets with the same time, and every basket of an export
    without order times, are ordered by where their first row stands in the export (a later row: a later
    basket). The test users are ``round(test_share x eligible)`` (at least one) drawn without replacement
    among the eligible customers sorted by key; every other customer's history is wholly in training.

    Args:
        interactions: the interactions frame (:class:`~models.recs.base.IX` columns); customers required,
            timestamps optional.
        test_share: the share of eligible customers held out, in (0, 1).
        seed: the seed of the draw (same data, same seed: same split).

    Returns:
        The split.

    Raises:
        ValueError: ``test_share`` outside (0, 1); no purchase names a customer (a basket-only export
            without customers); no customer has two baskets; a purchase without a time among timed ones.
    """
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must be between 0 and 1, got {test_share}")
    bought = _purchases(interactions)
    bought = bought[bought[IX.CUSTOMER].notna()]
    if bought.empty:
        raise ValueError(
            "last-basket protocol: no purchase names a customer (column customer_key); it holds out each test "
            "customer's last basket, so it needs customers"
        )
    order = _basket_order(bought)
    sizes = order.groupby("customer", sort=True).size()
    eligible = sizes.index[sizes >= 2].to_numpy()
    if len(eligible) == 0:
        raise ValueError(
            "last-basket protocol: no customer has two or more baskets (one to learn from, one to hold out)"
        )
    n_test = max(1, round(test_share * len(eligible)))
    chosen = np.sort(np.random.default_rng(seed).choice(eligible, size=n_test, replace=False))
    last = order.groupby("customer", sort=False).tail(1).set_index("customer")
    held = last.loc[chosen]
    held_baskets = set(held["basket"])
    customer_col = interactions[IX.CUSTOMER].astype("string")
    in_held = interactions[IX.BASKET].astype("string").isin(held_baskets).fillna(False).to_numpy(dtype=bool)
    drop = in_held
    if IX.TS in interactions.columns and IX.EVENT in interactions.columns and held["ts"].notna().all():
        # a test user's views and carts from the held-out basket's time on (their purchases are in baskets
        # ordered before it, and stay, even at the same instant)
        cut = customer_col.map(held["ts"].to_dict())
        ts = pd.to_datetime(interactions[IX.TS], utc=True)
        later = (ts >= pd.to_datetime(cut, utc=True)).fillna(False).to_numpy(dtype=bool)
        event = interactions[IX.EVENT].astype("string") != InteractionKind.PURCHASE.value
        drop = drop | (later & event.fillna(True).to_numpy(dtype=bool))
    train = interactions[~drop].reset_index(drop=True)
    lines = bought[bought[IX.BASKET].astype(str).isin(held_baskets)]
    relevant_by = lines.groupby(lines[IX.CUSTOMER].astype(str))[IX.ITEM].agg(lambda s: frozenset(s.astype(str)))
    past = _purchases(train)
    past = past[past[IX.CUSTOMER].astype("string").isin(set(chosen)).fillna(False).to_numpy(dtype=bool)]
    history_by = past.groupby(past[IX.CUSTOMER].astype(str))[IX.ITEM].agg(lambda s: frozenset(s.astype(str)))
    customers = [str(c) for c in chosen]
    asked = [None if pd.isna(t) else _utc(t).to_pydatetime() for t in held["ts"]]
    return LastBasketSplit(
        seed,
        train,
        customers,
        [relevant_by[c] for c in customers],
        [history_by.get(c, frozenset()) for c in customers],
        asked,
        len(eligible),
    )


def last_basket_scores(
    lists: Sequence[Sequence[str]], relevant: Sequence[frozenset[str]], history: Sequence[frozenset[str]], k: int
) -> dict[str, np.ndarray]:
    """Per test user, the next-basket figures of the reality-check literature (Li et al., "A Next Basket
    Recommendation Reality Check", TOIS 2023): recall@k, NDCG@k, PHR@k (1 if at least one item of the
    basket is in the top k), and recall@k over the basket's repeat items (bought by the user before) and
    over its explore items (new to the user), each NaN for a user whose basket has none of that kind.
    The mean over users of each array is the reported figure (the repeat / explore means skip NaN)."""
    out: dict[str, list[float]] = {name: [] for name in LAST_BASKET_METRICS}
    nan = float("nan")
    for ids, rel, past in zip(lists, relevant, history, strict=True):
        top = list(ids)[:k]
        repeat, explore = rel & past, rel - past
        out["recall"].append(m.recall_at_k(top, rel, k))
        out["ndcg"].append(m.ndcg_at_k(top, rel, k))
        out["phr"].append(m.hit_at_k(top, rel, k))
        out["repeat_recall"].append(m.recall_at_k(top, repeat, k) if repeat else nan)
        out["explore_recall"].append(m.recall_at_k(top, explore, k) if explore else nan)
    return {name: np.array(values, dtype=float) for name, values in out.items()}


@dataclass
class LastBasketEvaluation:
    """The last-basket protocol over several seeds.

    Attributes:
        table: one row per model x seed (see :func:`evaluate_last_basket`).
        per_user: (model, seed) -> metric -> one value per test user of that seed (same users, same
            order for every model of a seed: the pairs of a paired bootstrap).
        k: the cut-off.
    """

    table: pd.DataFrame
    per_user: dict[tuple[str, int], dict[str, np.ndarray]]
    k: int

    def pooled(self, model: str, metric: str = "recall") -> np.ndarray:
        """One model's per-user figures over every seed, seeds in order (pairable across models)."""
        seeds = sorted({seed for name, seed in self.per_user if name == model})
        return np.concatenate([self.per_user[(model, seed)][metric] for seed in seeds])

    def summary(self, baselines: Collection[str] = (), *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
        """Mean and spread over seeds per model; with ``baselines`` named, each other model's recall@k
        difference to the best baseline (by mean recall@k) with a paired bootstrap 95 % interval over
        the test users of every seed (:func:`models.intervals.paired_mean_bootstrap`)."""
        from models.intervals import paired_mean_bootstrap

        k = self.k
        figures = [f"{name}@{k}" for name in LAST_BASKET_METRICS]
        done = self.table[self.table["evaluated"]]
        grouped = done.groupby("model", sort=False)
        out = grouped[figures].mean()
        out[f"recall@{k}_sd"] = grouped[f"recall@{k}"].std(ddof=1)
        out["seeds"] = grouped.size()
        out["users"] = grouped["users"].sum()
        out["fit_s"] = grouped["fit_s"].mean()
        present = [name for name in baselines if name in out.index]
        if present:
            best = max(present, key=lambda name: (out.loc[name, f"recall@{k}"], name))
            out["best_baseline"] = best
            for col in ("diff", "diff_low", "diff_high"):
                out[f"recall@{k}_{col}"] = float("nan")
            for name in out.index:
                if name in present:
                    continue
                interval = paired_mean_bootstrap(
                    self.pooled(name), self.pooled(best), n_resamples=n_resamples, seed=seed
                )
                out.loc[name, [f"recall@{k}_diff", f"recall@{k}_diff_low", f"recall@{k}_diff_high"]] = [
                    interval.difference, interval.low, interval.high,
                ]  # fmt: skip
        return out.reset_index()


def completion_queries(
    split: LastBasketSplit, *, anonymous: bool = False
) -> tuple[list[Query], list[frozenset[str]], list[frozenset[str]], str]:
    """Protocol (c)'s queries from a last-basket split: in each held-out basket of two or more items one
    item is hidden (drawn with the split's seed, items in id order) and the rest is the cart. A basket
    whose hidden item was never bought in training is skipped (no model that learns from history can name
    it) and counted in the note, as are single-item baskets.

    Returns:
        (queries, relevant = {hidden item} per query, the customer's training items per query, note).
    """
    rng = np.random.default_rng(split.seed)
    known = set(_purchases(split.train)[IX.ITEM].dropna().astype(str))
    queries: list[Query] = []
    relevant: list[frozenset[str]] = []
    history: list[frozenset[str]] = []
    single = unseen = 0
    for customer, basket, past, when in zip(
        split.customers, split.relevant, split.history, split.asked_at, strict=True
    ):
        items = sorted(basket)
        if len(items) < 2:
            single += 1
            continue
        hidden = items[int(rng.integers(len(items)))]
        if hidden not in known:
            unseen += 1
            continue
        cart = tuple(item for item in items if item != hidden)
        queries.append(Query(customer_key=None if anonymous else customer, cart=cart, now=when))
        relevant.append(frozenset({hidden}))
        history.append(past)
    repeats = sum(len(r & h) for r, h in zip(relevant, history, strict=True))
    note = (
        f"seed {split.seed}: one item hidden in the last basket of {len(queries)} of {len(split.customers)} test "
        f"customers ({'anonymous' if anonymous else 'customer known'}); {single} single-item baskets and {unseen} "
        f"with the hidden item unseen in training skipped; {repeats / max(len(queries), 1):.1%} of the hidden "
        "items are repeats"
    )
    return queries, relevant, history, note


def evaluate_last_basket(
    models: Mapping[str, Recommender],
    interactions: pd.DataFrame,
    items: pd.DataFrame | None,
    k: int = 10,
    *,
    test_share: float = 0.2,
    seeds: Sequence[int] = (0, 1, 2),
    task: str = NEXT_BASKET,
    anonymous: bool = False,
) -> LastBasketEvaluation:
    """Protocol (b): for each seed, hold out the last basket of a random ``test_share`` of the customers
    (:func:`last_basket_split`), fit every model (a fresh copy) on the rest and ask it for each test
    user's next basket (``now`` = the held-out basket's time; without order times the model's default).

    Protocol (c), ``task=BASKET_COMPLETION``: the same held-out baskets, one item of each hidden
    (:func:`completion_queries`) and the rest given as the cart, with the customer (or, ``anonymous``,
    without); the figures are those of one relevant item (recall = PHR = hit rate; repeat / explore
    recall: the hit rate on hidden items the customer had / had not bought before).

    Args:
        models: name -> unfitted next-basket recommender.
        interactions: all interactions; customers required, order times optional.
        items: the catalogue passed to ``fit``.
        k: cut-off.
        test_share: share of the customers with two or more baskets held out per seed.
        seeds: one split per seed.
        task: ``NEXT_BASKET`` (protocol (b)) or ``BASKET_COMPLETION`` (protocol (c)).
        anonymous: protocol (c) without the customer key in the queries.

    Returns:
        The table (one row per model x seed: ``model, seed, evaluated, users, recall@k, ndcg@k, phr@k,
        repeat_recall@k, explore_recall@k, repeat_users, explore_users, violations, fit_s,
        ms_per_query, note``) and the per-user figures.

    Raises:
        ValueError: no seed, or the split's (see :func:`last_basket_split`).
    """
    if not seeds:
        raise ValueError("evaluate_last_basket needs at least one seed")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {TASKS}")
    rows: list[dict[str, object]] = []
    per_user: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    for seed in seeds:
        split = last_basket_split(interactions, test_share, seed)
        if task == NEXT_BASKET:
            queries = [Query(customer_key=c, now=when) for c, when in zip(split.customers, split.asked_at, strict=True)]
            relevant, history = split.relevant, split.history
            n_rel = sum(len(r) for r in relevant)
            n_rep = sum(len(r & h) for r, h in zip(relevant, history, strict=True))
            note = (
                f"seed {seed}: last basket of {len(queries)} of {split.eligible} customers with 2+ baskets held "
                f"out; {n_rep / max(n_rel, 1):.1%} of the held-out items are repeats"
            )
        else:
            queries, relevant, history, note = completion_queries(split, anonymous=anonymous)
        for name, unfitted in models.items():
            began = time.perf_counter()
            fitted = copy.deepcopy(unfitted).fit(split.train, items)
            fit_s = time.perf_counter() - began
            logger.info("%s (seed %d) fitted in %.1f s", name, seed, fit_s)
            answers, seconds = _run(fitted, queries, k)
            lists = [[rec.item_id for rec in recs][:k] for recs in answers]
            scores = last_basket_scores(lists, relevant, history, k)
            per_user[(name, seed)] = scores
            violations = sum(_violates(recs, q, k) for recs, q in zip(answers, queries, strict=True))
            rows.append(
                {
                    "model": name,
                    "seed": seed,
                    "evaluated": True,
                    "users": len(queries),
                    **{f"{metric}@{k}": _nanmean(v) for metric, v in scores.items()},
                    "repeat_users": int(np.isfinite(scores["repeat_recall"]).sum()),
                    "explore_users": int(np.isfinite(scores["explore_recall"]).sum()),
                    "violations": violations,
                    "fit_s": fit_s,
                    "ms_per_query": 1000 * seconds / max(len(queries), 1),
                    "note": note,
                }
            )
    return LastBasketEvaluation(pd.DataFrame(rows), per_user, k)


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def next_basket_models() -> dict[str, Recommender]:
    """The next-basket baselines of :func:`baseline_models` (unfitted), for the last-basket protocol."""
    tasks = baseline_tasks()
    return {name: model for name, model in baseline_models().items() if NEXT_BASKET in tasks[name]}


def with_intervals(
    table: pd.DataFrame,
    per_query: Mapping[tuple[str, str], np.ndarray],
    baselines: Collection[str],
    k: int = 10,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """The table with, per task, each non-baseline model's recall@k difference to the task's best
    evaluated baseline (by mean recall@k) and its paired bootstrap 95 % interval over the task's queries
    (:func:`models.intervals.paired_mean_bootstrap`): columns ``best_baseline``, ``recall@k_diff``,
    ``recall@k_diff_low``, ``recall@k_diff_high`` (empty on the baselines' rows and where a task has no
    evaluated baseline)."""
    from models.intervals import paired_mean_bootstrap

    out = table.copy()
    cols = [f"recall@{k}_diff", f"recall@{k}_diff_low", f"recall@{k}_diff_high"]
    out["best_baseline"] = pd.Series([None] * len(out), dtype="object", index=out.index)
    for col in cols:
        out[col] = float("nan")
    for task, rows in out[out["evaluated"].astype(bool)].groupby("task", sort=False):
        base = rows[rows["model"].isin(list(baselines)) & (rows["queries"] > 0)]
        if base.empty:
            continue
        best = str(base.sort_values([f"recall@{k}", "model"], ascending=[False, True])["model"].iloc[0])
        for index, name in rows.loc[~rows["model"].isin(list(baselines)) & (rows["queries"] > 0), "model"].items():
            interval = paired_mean_bootstrap(
                per_query[(str(name), str(task))], per_query[(best, str(task))], n_resamples=n_resamples, seed=seed
            )
            out.loc[index, "best_baseline"] = best
            out.loc[index, cols] = [interval.difference, interval.low, interval.high]
    return out


def kairos_models() -> tuple[dict[str, Recommender], dict[str, tuple[str, ...]]]:
    """The Kairos recommenders, with the task each is judged on."""
    from models.recs.blend import RepeatThenPersonal
    from models.recs.cooccurrence import BoughtTogether
    from models.recs.personal import ImplicitRecommender

    found: dict[str, Recommender] = {
        "Kairos BoughtTogether": BoughtTogether(),
        # own items by recency-weighted frequency, then implicit-ALS picks of new items
        "Kairos Repeat+Personal": RepeatThenPersonal(),
        "Kairos Implicit (new items only)": ImplicitRecommender(),
    }
    tasks: dict[str, tuple[str, ...]] = {
        "Kairos BoughtTogether": (BASKET_COMPLETION,),
        "Kairos Repeat+Personal": (NEXT_BASKET,),
        "Kairos Implicit (new items only)": (NEXT_BASKET,),
    }
    return found, tasks


def load_home(home: Path, as_of: datetime | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Interactions (purchases) and items from an ingested data home (nothing is ingested here); with
    ``as_of``, only the order lines placed before it (:func:`features.store.as_of_view`)."""
    folder = Path(home) / "ingested"
    if as_of is None:
        lines = pd.read_parquet(folder / "order_lines.parquet")
    else:
        lines = open_tables(Path(home), as_of=as_of)["order_lines"].execute()
    items = pd.read_parquet(folder / "items.parquet")
    return interactions_from_tables(lines), items


def format_table(table: pd.DataFrame) -> str:
    """The figures as fixed-width text (notes listed once per task underneath)."""
    shown = table.drop(columns=["note"])
    text = shown.to_string(index=False, float_format=lambda v: f"{v:.4f}")
    notes = table.drop_duplicates(["task", "note"])[["task", "note"]]
    return text + "\n\n" + "\n".join(f"{task}: {note}" for task, note in notes.itertuples(index=False))


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate the baselines and the Kairos recommenders on an ingested home; print the table."""
    parser = argparse.ArgumentParser(prog="python -m training.recs_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="data home holding ingested/*.parquet")
    parser.add_argument("--split-at", required=True, help="split time T (ISO date or time, UTC)")
    parser.add_argument("--test-days", type=int, default=90)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--anonymous-carts", action="store_true", help="basket completion without customer keys")
    parser.add_argument("--out", type=Path, help="also write the table as Parquet here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    interactions, items = load_home(args.data)
    models = baseline_models()
    extra, kairos_tasks = kairos_models()
    models.update(extra)
    tasks = baseline_tasks() | kairos_tasks
    split = datetime.fromisoformat(args.split_at)
    split = split.replace(tzinfo=UTC) if split.tzinfo is None else split
    table = evaluate(
        models, interactions, items, split, args.test_days, args.k,
        seed=args.seed, tasks=tasks, anonymous_carts=args.anonymous_carts,
        personal=PERSONAL_BASELINES | {name for name, wanted in tasks.items() if wanted == (NEXT_BASKET,)},
    )  # fmt: skip
    end = split + timedelta(days=args.test_days)
    print(f"train < {split:%Y-%m-%d}, test [{split:%Y-%m-%d}, {end:%Y-%m-%d}), k={args.k}, seed={args.seed}")
    print(format_table(table.sort_values(["task", "model"], kind="stable")))
    if args.out is not None:
        table.to_parquet(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
