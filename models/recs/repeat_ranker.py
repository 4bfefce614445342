"""Next basket by a learned re-purchase propensity: a LightGBM model over customer × candidate items.

Candidates for a customer are their own items (the ``max_own`` best by TIFU-KNN's time-decayed
frequency) plus items new to them: the ``neighbour_candidates`` best of the TIFU-KNN neighbours' mean
vector and the ``popular_candidates`` best sellers. Each candidate gets features (``FEATURES``):

- the customer × item history: TIFU-KNN's own vector value, the orders holding the item and their share
  of the customer's orders, the baskets since the item was last bought, the days since then, the
  customer's own interval between two purchases of the item and how far past it they are (``due``);
- the neighbours' mean vector value (Hu et al., SIGIR 2020) and whether the item is the customer's own;
- the customer: orders, mean basket size, mean days between orders, days since the last order;
- the item: baskets holding it (log) and its repeat rate (the share of its buyers who bought it twice).

**Leakage-free training.** The labels are each customer's last basket of the training data (customers
with two or more baskets, at most ``max_label_customers``, drawn with ``seed``); every feature of a
labelled customer, the neighbours and the item figures are computed from the data without those
baskets, as of the labelled basket's time. A LightGBM binary classifier (:class:`models.churn.
LightGBMClassifier`) learns P(item in the basket); early stopping and the one blend parameter are on
**validation users** (a ``validation_share`` of the labelled customers, fitted on the rest):
``explore_slots_``, the most places of ``k`` that items new to the customer may take above the
customer's own items (chosen from ``explore_slots_grid`` by mean recall@``k_select``, ties to fewer).
The answer is then computed from all the training data.

Answers: only for a customer seen in training (anyone else gets an empty list: the business-rule layer
fills from its fallback); own items as ``BUY_AGAIN`` ("you bought this in N orders"), neighbours' items
as ``PERSONAL``, best sellers as ``POPULAR``; ``query.now`` is the time of asking (default: the last
training basket), from which the days-since features are counted. Without order times those features
are missing (LightGBM's missing-value branch) and the order of the rows orders the baskets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.base import Estimator, check_fitted
from models.churn import LightGBMClassifier
from models.recs.base import IX, Query, Recommendation, RecSource
from models.recs.baskets import Baskets, basket_matrices, blocked_codes, categories_for
from models.recs.cooccurrence_count import keep_top_per_row
from models.recs.popular import SECONDS_PER_DAY, load_npz, read_params, read_strings, to_epoch, write_params
from models.recs.tifuknn import cosine_neighbours, personal_vectors
from models.recs.user_knn import NEIGHBOUR_REASON, row_blocks

#: The static features (known at fit) then the three counted from the time of asking.
STATIC = (
    "own",
    "tifu_own",
    "neighbours",
    "orders",
    "order_share",
    "baskets_since",
    "interval_days",
    "customer_orders",
    "customer_basket_size",
    "customer_gap_days",
    "item_log_baskets",
    "item_repeat_rate",
)
TIMED = ("days_since", "due", "customer_days_since")
FEATURES = STATIC + TIMED
_OWN, _TIFU, _NBR, _ORDERS = 0, 1, 2, 3
POPULAR_REASON = "popular with customers"
_ONE_THREAD_ROWS = 5_000  # candidate rows scored on one thread (an answer, or a small batch of them)


@dataclass(frozen=True)
class Candidates:
    """Candidate rows of some customers: ``ptr`` slices the rows per customer (in ``customers`` order).

    Attributes:
        customers: customer codes; ptr: row offsets per customer (len + 1).
        items: item code per row; static: rows × ``STATIC`` features (float32).
        last_time: per row, when the customer last bought the item (epoch s; NaN: never, or no times).
        customer_last: per customer, the time of their last basket (NaN without times).
    """

    customers: np.ndarray
    ptr: np.ndarray
    items: np.ndarray
    static: np.ndarray
    last_time: np.ndarray
    customer_last: np.ndarray

    def matrix(self, now: np.ndarray) -> np.ndarray:
        """rows × ``FEATURES``: the static features and those counted from ``now`` (per customer, epoch s)."""
        per_row = np.repeat(now, np.diff(self.ptr))
        days = (per_row - self.last_time) / SECONDS_PER_DAY
        interval = self.static[:, STATIC.index("interval_days")].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            due = np.where(interval > 0, days / interval, np.nan)
        customer_days = (per_row - np.repeat(self.customer_last, np.diff(self.ptr))) / SECONDS_PER_DAY
        timed = np.column_stack([days, due, customer_days]).astype(np.float32)
        return np.hstack([self.static, timed])


def _history(data: Baskets) -> dict[str, np.ndarray]:
    """Per (customer, item) pair sorted by customer then item: count, last sequence number, first and last
    time; per customer: orders, mean basket size, first and last time; per item: baskets, repeat rate."""
    n_customers = len(data.customer_ids)
    order, start = data.customer_baskets()
    owner = data.basket_customer[order]
    seq = np.arange(len(order)) - start[owner]
    times = data.basket_time[order] if data.basket_time is not None else np.full(len(order), np.nan)
    coo = data.incidence[order].tocoo()
    pairs = pd.DataFrame({"c": owner[coo.row], "i": coo.col.astype(np.int64), "seq": seq[coo.row], "t": times[coo.row]})
    grouped = pairs.groupby(["c", "i"], sort=True)
    stats = grouped.agg(count=("seq", "size"), last_seq=("seq", "max"), first=("t", "min"), last=("t", "max"))
    c = stats.index.get_level_values(0).to_numpy(np.int64)
    i = stats.index.get_level_values(1).to_numpy(np.int64)
    count = stats["count"].to_numpy(np.float64)
    sizes = np.asarray(data.incidence[order].sum(axis=1)).ravel()
    n_orders = np.bincount(owner, minlength=n_customers).astype(np.float64)
    first_t = np.full(n_customers, np.nan)
    last_t = np.full(n_customers, np.nan)
    if len(order):
        nonempty = np.flatnonzero(n_orders > 0)
        first_t[nonempty] = times[start[nonempty]]
        last_t[nonempty] = times[start[nonempty + 1] - 1]
    n_items = len(data.item_ids)
    buyers = np.bincount(i, minlength=n_items).astype(np.float64)
    repeaters = np.bincount(i[count >= 2], minlength=n_items).astype(np.float64)
    return {
        "c": c,
        "i": i,
        "count": count,
        "last_seq": stats["last_seq"].to_numpy(np.float64),
        "first": stats["first"].to_numpy(np.float64),
        "last": stats["last"].to_numpy(np.float64),
        "ptr": np.concatenate([[0], np.cumsum(np.bincount(c, minlength=n_customers))]).astype(np.int64),
        "n_orders": n_orders,
        "basket_size": np.bincount(owner, weights=sizes, minlength=n_customers) / np.maximum(n_orders, 1),
        "first_t": first_t,
        "last_t": last_t,
        "item_baskets": np.asarray(data.incidence.sum(axis=0)).ravel(),
        "repeat_rate": np.where(buyers > 0, repeaters / np.maximum(buyers, 1), 0.0),
    }


class RepeatRanker(Estimator):
    """Own items and neighbours' items ranked by a learned re-purchase propensity (see the module doc).

    Args:
        max_own: the most own items per customer taken as candidates (the best by TIFU-KNN's own vector).
        neighbour_candidates: new items per customer from the neighbours' mean vector.
        popular_candidates: best sellers per customer (the ones new to them).
        explore_slots_grid: the choices of ``explore_slots_`` tried on the validation users.
        group_size, within_decay, group_decay, n_neighbours: TIFU-KNN's vectors and neighbours
            (:class:`models.recs.tifuknn.TIFUKNN`).
        neighbour_items: each neighbour brings its this many strongest items to the neighbours' mean
            (None: all; the mean over 300 neighbours' whole vectors is most of the fit's time on a grocery
            catalogue, and the weak tail rarely makes a candidate).
        validation_share: share of the labelled customers kept for early stopping and the blend choice.
        max_label_customers: the most customers whose last basket is a label (drawn with ``seed``).
        k_select: the cut-off of the validation recall.
        negative_share: the share of the training users' negative rows the model learns from (drawn with
            ``seed``; the positives all kept): fits faster, and a uniform draw leaves the order of the
            scores within a customer as it was learned (only the intercept moves).
        n_estimators, learning_rate, num_leaves, min_child_samples, seed, n_jobs: the LightGBM model's.

    Fitted attributes: ``ranker_`` (the classifier), ``explore_slots_``, ``validation_`` (validation
    recall per grid choice, and users), the item and customer ids, ``candidates_`` (every customer's rows).
    """

    source = RecSource.BUY_AGAIN

    def __init__(
        self,
        max_own: int = 100,
        neighbour_candidates: int = 30,
        popular_candidates: int = 20,
        explore_slots_grid: tuple[int, ...] = (0, 1, 2, 3, 5, 10),
        group_size: int = 7,
        within_decay: float = 0.9,
        group_decay: float = 0.7,
        n_neighbours: int = 300,
        neighbour_items: int | None = 50,
        validation_share: float = 0.2,
        max_label_customers: int = 20_000,
        k_select: int = 10,
        negative_share: float = 0.3,
        n_estimators: int = 200,
        learning_rate: float = 0.1,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        seed: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.max_own = max_own
        self.neighbour_candidates = neighbour_candidates
        self.popular_candidates = popular_candidates
        self.explore_slots_grid = explore_slots_grid
        self.group_size = group_size
        self.within_decay = within_decay
        self.group_decay = group_decay
        self.n_neighbours = n_neighbours
        self.neighbour_items = neighbour_items
        self.validation_share = validation_share
        self.max_label_customers = max_label_customers
        self.k_select = k_select
        self.negative_share = negative_share
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.seed = seed
        self.n_jobs = n_jobs

    def _check_params(self) -> None:
        if self.neighbour_items is not None and self.neighbour_items < 1:
            raise ValueError(f"RepeatRanker: neighbour_items must be at least 1 or None, got {self.neighbour_items}")
        if self.max_own < 1:
            raise ValueError(f"RepeatRanker: max_own must be at least 1, got {self.max_own}")
        if self.neighbour_candidates < 0 or self.popular_candidates < 0:
            raise ValueError("RepeatRanker: neighbour_candidates and popular_candidates must be >= 0")
        if not self.explore_slots_grid or min(self.explore_slots_grid) < 0:
            raise ValueError(f"RepeatRanker: explore_slots_grid needs values >= 0, got {self.explore_slots_grid}")
        if not 0.0 <= self.validation_share < 1.0:
            raise ValueError(f"RepeatRanker: validation_share must be in [0, 1), got {self.validation_share}")
        if not 0.0 < self.negative_share <= 1.0:
            raise ValueError(f"RepeatRanker: negative_share must be in (0, 1], got {self.negative_share}")
        if self.max_label_customers < 1 or self.k_select < 1:
            raise ValueError("RepeatRanker: max_label_customers and k_select must be at least 1")

    # --- features -------------------------------------------------------------------------------

    def _candidates(self, data: Baskets, customers: np.ndarray) -> Candidates:
        """The candidate rows of ``customers`` (codes) from the baskets ``data`` (see the module doc)."""
        n_customers, n_items = len(data.customer_ids), len(data.item_ids)
        hist = _history(data)
        profile = personal_vectors(
            data.basket_customer, data.incidence, n_customers, self.group_size, self.within_decay, self.group_decay
        )
        profile.sort_indices()
        nbrs = cosine_neighbours(profile, self.n_neighbours)
        found = np.diff(nbrs.indptr)
        nbrs.data[:] = np.repeat(1.0 / np.maximum(found, 1), found)  # the neighbours' mean
        brought = profile if self.neighbour_items is None else keep_top_per_row(profile, self.neighbour_items)
        popular = np.lexsort((np.arange(n_items), -hist["item_baskets"]))[: self.popular_candidates]
        log_baskets = np.log1p(hist["item_baskets"])
        gap = np.where(
            hist["n_orders"] > 1, (hist["last_t"] - hist["first_t"]) / np.maximum(hist["n_orders"] - 1, 1), np.nan
        )
        items_out, static_out, last_out, counts = [], [], [], []
        for s, e in row_blocks(len(customers), 512):
            block = customers[s:e]
            mean = (nbrs[block] @ brought).tocsr()
            mean.sort_indices()
            for r, u in enumerate(block.tolist()):
                p0, p1 = hist["ptr"][u], hist["ptr"][u + 1]
                own_items = hist["i"][p0:p1]
                tifu = profile.data[profile.indptr[u] : profile.indptr[u + 1]]
                keep = np.lexsort((own_items, -tifu))[: self.max_own]
                own_items, tifu, span = own_items[keep], tifu[keep], np.arange(p0, p1)[keep]
                m_idx = mean.indices[mean.indptr[r] : mean.indptr[r + 1]]
                m_val = mean.data[mean.indptr[r] : mean.indptr[r + 1]]
                new = ~np.isin(m_idx, own_items)
                explore = _top_codes(m_idx[new], m_val[new], self.neighbour_candidates)
                pops = popular[~np.isin(popular, own_items) & ~np.isin(popular, explore)]
                cand = np.concatenate([own_items, explore, pops]).astype(np.int64)
                nbr_val = np.zeros(len(cand))
                if len(m_idx):
                    pos = np.minimum(np.searchsorted(m_idx, cand), len(m_idx) - 1)
                    nbr_val = np.where(m_idx[pos] == cand, m_val[pos], 0.0)
                n_own, n = len(own_items), len(cand)
                f = np.full((n, len(STATIC)), np.nan, dtype=np.float64)
                f[:, _OWN] = np.arange(n) < n_own
                f[:, _TIFU] = np.concatenate([tifu, np.zeros(n - n_own)])
                f[:, _NBR] = nbr_val
                f[:, _ORDERS] = np.concatenate([hist["count"][span], np.zeros(n - n_own)])
                f[:, STATIC.index("order_share")] = f[:, _ORDERS] / max(hist["n_orders"][u], 1.0)
                f[:n_own, STATIC.index("baskets_since")] = hist["n_orders"][u] - 1 - hist["last_seq"][span]
                count = hist["count"][span]
                with np.errstate(divide="ignore", invalid="ignore"):
                    f[:n_own, STATIC.index("interval_days")] = np.where(
                        count > 1, (hist["last"][span] - hist["first"][span]) / (count - 1) / SECONDS_PER_DAY, np.nan
                    )
                f[:, STATIC.index("customer_orders")] = hist["n_orders"][u]
                f[:, STATIC.index("customer_basket_size")] = hist["basket_size"][u]
                f[:, STATIC.index("customer_gap_days")] = gap[u] / SECONDS_PER_DAY
                f[:, STATIC.index("item_log_baskets")] = log_baskets[cand]
                f[:, STATIC.index("item_repeat_rate")] = hist["repeat_rate"][cand]
                last = np.concatenate([hist["last"][span], np.full(n - n_own, np.nan)])
                items_out.append(cand)
                static_out.append(f.astype(np.float32))
                last_out.append(last)
                counts.append(n)
        empty = np.zeros((0, len(STATIC)), dtype=np.float32)
        return Candidates(
            customers=customers.astype(np.int64),
            ptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64) if counts else np.zeros(1, np.int64),
            items=np.concatenate(items_out) if items_out else np.zeros(0, np.int64),
            static=np.vstack(static_out) if static_out else empty,
            last_time=np.concatenate(last_out) if last_out else np.zeros(0),
            customer_last=hist["last_t"][customers],
        )

    # --- fit ------------------------------------------------------------------------------------

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Learn the propensity model on each customer's last training basket (leakage-free, see the
        module doc), choose ``explore_slots_`` on validation users, then build every customer's candidates
        from all the data.

        Raises:
            ValueError: no purchase names a customer, no customer has two baskets, or the labels hold one
                class only (bad parameters or input, as in :func:`~models.recs.baskets.basket_matrices`).
        """
        self._check_params()
        data = basket_matrices(interactions)
        n_customers = len(data.customer_ids)
        if n_customers == 0:
            raise ValueError("RepeatRanker: no purchase has a customer key; it needs customers' basket sequences")
        order, start = data.customer_baskets()
        n_orders = np.diff(start)
        eligible = np.flatnonzero(n_orders >= 2)
        if not len(eligible):
            raise ValueError("RepeatRanker: no customer has two or more baskets (one to learn from, one as label)")
        rng = np.random.default_rng(self.seed)
        labelled = np.sort(rng.choice(eligible, size=min(len(eligible), self.max_label_customers), replace=False))
        label_rows = order[start[labelled + 1] - 1]  # each labelled customer's last basket
        keep = np.ones(data.incidence.shape[0], dtype=bool)
        keep[label_rows] = False
        past = Baskets(
            data.item_ids,
            data.customer_ids,
            data.incidence[keep],
            data.basket_customer[keep],
            data.basket_time[keep] if data.basket_time is not None else None,
        )
        cands = self._candidates(past, labelled)
        label_time = data.basket_time[label_rows] if data.basket_time is not None else np.full(len(labelled), np.nan)
        X = cands.matrix(label_time)
        truth = data.incidence[label_rows]
        row_customer = np.repeat(np.arange(len(labelled)), np.diff(cands.ptr))
        y = np.asarray(truth[row_customer, cands.items]).ravel() > 0
        valid_users = rng.random(len(labelled)) < self.validation_share
        in_valid = valid_users[row_customer]
        ranker = LightGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            seed=self.seed,
            n_jobs=self.n_jobs,
        )
        frame = pd.DataFrame(X, columns=list(FEATURES))
        has_valid = bool(in_valid.any()) and len(np.unique(y[in_valid])) == 2 and len(np.unique(y[~in_valid])) == 2
        base = ~in_valid if has_valid else np.ones(len(y), dtype=bool)
        learn = base & (y | (rng.random(len(y)) < self.negative_share))
        if len(np.unique(y[learn])) < 2:  # too few rows to thin out
            learn = base
        if has_valid:
            ranker.fit(frame[learn], y[learn].astype(int), eval_set=(frame[in_valid], y[in_valid].astype(int)))
        else:
            ranker.fit(frame[learn], y[learn].astype(int))
        self.ranker_ = ranker
        self.validation_ = self._choose_slots(cands, X, y, valid_users, truth) if has_valid else {}
        grid = sorted(set(self.explore_slots_grid))
        if self.validation_:
            self.explore_slots_ = max(grid, key=lambda s: (round(self.validation_[f"recall@{s}"], 12), -s))
        else:
            self.explore_slots_ = max(grid)
        self.item_ids_ = data.item_ids
        self.categories_ = categories_for(data.item_ids, items)
        self.customer_ids_ = data.customer_ids
        self.candidates_ = self._candidates(data, np.arange(n_customers))
        self.trained_until_ = float(np.nanmax(data.basket_time)) if data.basket_time is not None else float("nan")
        self._index()
        return self

    def _choose_slots(
        self, cands: Candidates, X: np.ndarray, y: np.ndarray, valid_users: np.ndarray, truth: sp.csr_matrix
    ) -> dict[str, float]:
        """Mean recall@``k_select`` of the validation users per ``explore_slots`` choice (and their count)."""
        score = self.ranker_.predict_proba(X)
        out: dict[str, float] = {"users": float(valid_users.sum())}
        users = np.flatnonzero(valid_users)
        basket_sizes = np.diff(truth.indptr)
        for slots in sorted(set(self.explore_slots_grid)):
            recalls = []
            for u in users.tolist():
                s, e = cands.ptr[u], cands.ptr[u + 1]
                ranked = _ordered(score[s:e], cands.static[s:e, _OWN] > 0, slots)
                top = ranked[: self.k_select]
                recalls.append(float(y[s:e][top].sum()) / max(basket_sizes[u], 1))
            out[f"recall@{slots}"] = float(np.mean(recalls)) if recalls else 0.0
        return out

    def _index(self) -> None:
        self._item_pos = {str(x): p for p, x in enumerate(self.item_ids_)}
        self._customer_pos = {str(x): p for p, x in enumerate(self.customer_ids_)}

    # --- answers --------------------------------------------------------------------------------

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        """The customer's best candidates by propensity (see the module doc)."""
        return self.recommend_batch([query], k)[0]

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]:
        """One answer per query, in order (the features of all the queries scored in one call)."""
        check_fitted(self, "ranker_")
        asked = [
            self._customer_pos.get(q.customer_key) if q.customer_key is not None and k >= 1 else None for q in queries
        ]
        known = [i for i, u in enumerate(asked) if u is not None]
        out: list[list[Recommendation]] = [[] for _ in queries]
        if not known:
            return out
        c = self.candidates_
        users = np.array([asked[i] for i in known], dtype=np.int64)
        starts, ends = c.ptr[users], c.ptr[users + 1]
        rows = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
        sub = Candidates(
            users,
            np.concatenate([[0], np.cumsum(ends - starts)]),
            c.items[rows],
            c.static[rows],
            c.last_time[rows],
            c.customer_last[users],
        )
        now = np.array([self._now(queries[i]) for i in known])
        score = self._propensity(sub.matrix(now)) if len(rows) else np.zeros(0)
        for j, i in enumerate(known):
            s, e = sub.ptr[j], sub.ptr[j + 1]
            out[i] = self._answer(queries[i], sub.items[s:e], score[s:e], sub.static[s:e], k)
        return out

    def _propensity(self, X: np.ndarray) -> np.ndarray:
        """P(item in the next basket) per candidate row; an answer's few hundred rows on one thread (LightGBM's
        OpenMP start-up costs more than it saves there, and far more on a busy machine: 46 -> 9 ms for 150 rows
        on a loaded 2-core machine), the same predictions."""
        booster, best = self.ranker_.booster_, self.ranker_.best_iteration_
        if len(X) <= _ONE_THREAD_ROWS:
            return np.asarray(booster.predict(X, num_iteration=best, num_threads=1), dtype=np.float64)
        return np.asarray(booster.predict(X, num_iteration=best), dtype=np.float64)

    def _now(self, query: Query) -> float:
        return to_epoch(query.now) if query.now is not None else self.trained_until_

    def _answer(
        self, query: Query, items: np.ndarray, score: np.ndarray, static: np.ndarray, k: int
    ) -> list[Recommendation]:
        allowed = np.ones(len(items), dtype=bool)
        blocked = blocked_codes(query, self._item_pos)
        if len(blocked):
            allowed &= ~np.isin(items, blocked)
        if query.category is not None:
            allowed &= self.categories_[items] == query.category
        items, score, static = items[allowed], score[allowed], static[allowed]
        ranked = _ordered(score, static[:, _OWN] > 0, self.explore_slots_)[:k]
        out: list[Recommendation] = []
        previous = float("inf")
        for r in ranked.tolist():
            value = min(float(score[r]), previous)  # an explore item held below own items keeps the order
            previous = value
            item = str(self.item_ids_[items[r]])
            if static[r, _OWN] > 0:
                n = int(static[r, _ORDERS])
                reason = f"you bought this in {n} order{'' if n == 1 else 's'}"
                out.append(Recommendation(item, value, RecSource.BUY_AGAIN, reason))
            elif static[r, _NBR] > 0:
                out.append(Recommendation(item, value, RecSource.PERSONAL, NEIGHBOUR_REASON))
            else:
                out.append(Recommendation(item, value, RecSource.POPULAR, POPULAR_REASON))
        return out

    # --- files ----------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """``params.json`` (parameters, the choice, the LightGBM text), ``items.parquet``,
        ``customers.parquet`` and ``candidates.npz`` (no pickle)."""
        check_fitted(self, "ranker_")
        folder = Path(folder)
        params = self.get_params()
        params["explore_slots_grid"] = list(self.explore_slots_grid)
        write_params(
            folder,
            {
                "params": params,
                "explore_slots": self.explore_slots_,
                "validation": self.validation_,
                "trained_until": None if np.isnan(self.trained_until_) else self.trained_until_,
                "booster": self.ranker_.to_text(),
            },
        )
        pd.DataFrame(
            {IX.ITEM: pd.array(self.item_ids_, dtype="string"), IX.CATEGORY: pd.array(self.categories_, dtype="string")}
        ).to_parquet(folder / "items.parquet", index=False)
        pd.DataFrame({IX.CUSTOMER: pd.array(self.customer_ids_, dtype="string")}).to_parquet(
            folder / "customers.parquet", index=False
        )
        c = self.candidates_
        np.savez(
            folder / "candidates.npz",
            customers=c.customers,
            ptr=c.ptr,
            items=c.items,
            static=c.static,
            last_time=c.last_time,
            customer_last=c.customer_last,
        )

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Rebuild a fitted model from :meth:`save`'s folder."""
        folder = Path(folder)
        meta = read_params(folder)
        params = dict(meta["params"])
        params["explore_slots_grid"] = tuple(params["explore_slots_grid"])
        model = cls(**params)
        model.ranker_ = LightGBMClassifier.from_text(meta["booster"])
        model.explore_slots_ = int(meta["explore_slots"])
        model.validation_ = dict(meta["validation"])
        model.trained_until_ = float("nan") if meta["trained_until"] is None else float(meta["trained_until"])
        model.item_ids_ = read_strings(folder / "items.parquet", IX.ITEM)
        model.categories_ = read_strings(folder / "items.parquet", IX.CATEGORY)
        model.customer_ids_ = read_strings(folder / "customers.parquet", IX.CUSTOMER)
        a = load_npz(folder / "candidates.npz")
        model.candidates_ = Candidates(
            a["customers"], a["ptr"], a["items"], a["static"], a["last_time"], a["customer_last"]
        )
        model._index()
        return model


def _top_codes(codes: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` codes of the largest values, best first, ties by code (a partition first: the rows are long)."""
    if len(values) > n:
        kth = np.partition(values, len(values) - n)[len(values) - n]
        near = values >= kth
        codes, values = codes[near], values[near]
    return codes[np.lexsort((codes, -values))[:n]]


def _ordered(score: np.ndarray, own: np.ndarray, explore_slots: int) -> np.ndarray:
    """Positions by score (best first, ties by position), where at most ``explore_slots`` items new to the
    customer stand above their own items: the other new items follow the last own item, in score order."""
    ranked = np.lexsort((np.arange(len(score)), -score))
    new = ~own[ranked]
    early = new & (np.cumsum(new) <= explore_slots)
    front = ranked[~new | early]
    return np.concatenate([front, ranked[new & ~early]])
