"""Basket completion that knows the customer: the cart's neighbours blended with the customer's own items
and the best sellers, with the item-item model and the weights chosen on validation customers.

Three parts score the items for a query (each divided by its best score in that answer, so in [0, 1]):

- **cart**: an item-item model's answer for the cart: cosine, lift or PMI co-occurrence
  (:class:`~models.recs.cooccurrence.BoughtTogether`), EASE on basket rows (:class:`~models.recs.ease.EASE`)
  or the plain co-occurrence count (:class:`~models.recs.cooccurrence_count.CooccurrenceCount`);
- **own**: the customer's TIFU-KNN time-decayed item frequency (:func:`~models.recs.tifuknn.personal_vectors`);
- **popular**: the items in the most baskets.

The score is ``w_cart · cart + w_own · own + w_popular · popular``. **Chosen on validation customers**:
a ``validation_share`` of the customers with two or more baskets (at most ``max_validation``, drawn with
``seed``) lose their last basket from the data; in each such basket of two or more items one item is
hidden and the rest is the cart. Every item-item model of ``item_models`` is fitted on the rest, and
every weight triple on a grid of step ``weight_step`` (summing to 1) is scored by the hit rate at
``k_select``: the best model and weights with the customer known (``known_``) and, with ``w_own = 0``,
for an anonymous cart (``anonymous_``); ties go to the earlier model of ``item_models`` and then to the
larger cart weight. The chosen item-item model(s), the own vectors and the best sellers are then fitted
on all the data.

Answers: a customer known to the model gets the ``known_`` blend; an anonymous cart, or a customer the
model never saw, the ``anonymous_`` blend. Each item's source is the part that gave it the most weighted
score (``BOUGHT_TOGETHER`` with the item-item model's reason, ``BUY_AGAIN``, ``POPULAR``); never an item
of the cart or of ``exclude``; ``query.category`` is honoured; ``query.now`` is not used.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from models.base import Estimator, check_fitted
from models.recs.base import IX, InteractionKind, Query, Recommendation, Recommender, RecSource
from models.recs.baskets import basket_matrices, categories_for, csr_arrays, csr_from, prefixed
from models.recs.cooccurrence import BoughtTogether
from models.recs.cooccurrence_count import CooccurrenceCount
from models.recs.ease import EASE
from models.recs.popular import load_npz, read_params, read_strings, write_params
from models.recs.tifuknn import personal_vectors
from models.recs.user_knn import customer_orders

ITEM_MODELS = ("cosine", "lift", "pmi", "ease", "count")
PARTS = ("cart", "own", "popular")
POPULAR_REASON = "popular with customers"


def item_model(name: str) -> Recommender:
    """A fresh item-item model by its name in :data:`ITEM_MODELS`."""
    if name in ("cosine", "lift", "pmi"):
        return BoughtTogether(measure=name)
    if name == "ease":
        return EASE(rows="basket")
    if name == "count":
        return CooccurrenceCount()
    raise ValueError(f"unknown item-item model {name!r}; known: {ITEM_MODELS}")


def _load_item_model(name: str, folder: Path) -> Recommender:
    if name in ("cosine", "lift", "pmi"):
        return BoughtTogether.load(folder)
    if name == "ease":
        return EASE.load(folder)
    return CooccurrenceCount.load(folder)


def weight_grid(step: float, with_own: bool) -> list[tuple[float, float, float]]:
    """(cart, own, popular) weights on a grid of ``step`` summing to 1 (own 0 when not ``with_own``),
    larger cart weights first."""
    n = round(1.0 / step)
    out = []
    for c, o in itertools.product(range(n, -1, -1), range(n + 1)):
        if c + o <= n and (with_own or o == 0):
            out.append((c / n, o / n, (n - c - o) / n))
    return out


def _last_baskets(interactions: pd.DataFrame, customers: Sequence[str]) -> pd.Series:
    """customer -> id of their last purchase basket (by first-line time, ties by first row)."""
    rows = interactions
    if IX.EVENT in rows.columns:
        rows = rows[(rows[IX.EVENT].astype("string") == InteractionKind.PURCHASE.value).fillna(True).to_numpy()]
    rows = rows[rows[IX.CUSTOMER].astype("string").isin(list(customers)).fillna(False).to_numpy()]
    frame = pd.DataFrame(
        {
            "c": rows[IX.CUSTOMER].astype(str).to_numpy(),
            "b": rows[IX.BASKET].astype(str).to_numpy(),
            "pos": np.arange(len(rows)),
            "ts": pd.to_datetime(rows[IX.TS], utc=True).to_numpy() if IX.TS in rows.columns else pd.NaT,
        }
    )
    first = frame.groupby(["c", "b"], sort=False).agg(ts=("ts", "min"), pos=("pos", "min")).reset_index()
    first = first.sort_values(["c", "ts", "pos"], kind="stable")
    return first.groupby("c", sort=True)["b"].last()


class CartBlend(Estimator):
    """Cart neighbours + the customer's own items + best sellers, blended (see the module doc).

    Args:
        item_models: the item-item models tried (names of :data:`ITEM_MODELS`).
        weight_step: the grid step of the weights.
        validation_share: share of the customers with two or more baskets whose last basket validates.
        max_validation: the most validation customers.
        n_candidates: items asked of each part per answer.
        k_select: the cut-off of the validation hit rate.
        group_size, within_decay, group_decay: TIFU-KNN's own vectors.
        seed: the draw of the validation customers and of the hidden items.

    Fitted attributes: ``known_`` and ``anonymous_`` (``model`` and the three weights), ``validation_``
    (hit rates of the chosen blends and of each part alone, and the cases), ``item_models_`` (name ->
    fitted model), ``profile_`` and ``orders_`` (customers × items), ``popularity_`` (baskets per item).
    """

    source = RecSource.BOUGHT_TOGETHER

    def __init__(
        self,
        item_models: tuple[str, ...] = ("cosine", "ease", "count", "lift", "pmi"),
        weight_step: float = 0.1,
        validation_share: float = 0.2,
        max_validation: int = 3000,
        n_candidates: int = 50,
        k_select: int = 10,
        group_size: int = 7,
        within_decay: float = 0.9,
        group_decay: float = 0.7,
        seed: int = 0,
    ) -> None:
        self.item_models = item_models
        self.weight_step = weight_step
        self.validation_share = validation_share
        self.max_validation = max_validation
        self.n_candidates = n_candidates
        self.k_select = k_select
        self.group_size = group_size
        self.within_decay = within_decay
        self.group_decay = group_decay
        self.seed = seed

    def _check_params(self) -> None:
        if not self.item_models or any(m not in ITEM_MODELS for m in self.item_models):
            raise ValueError(f"CartBlend: item_models must be names of {ITEM_MODELS}, got {self.item_models}")
        if not 0 < self.weight_step <= 1 or abs(round(1 / self.weight_step) * self.weight_step - 1) > 1e-9:
            raise ValueError(f"CartBlend: weight_step must divide 1, got {self.weight_step}")
        if not 0 < self.validation_share < 1:
            raise ValueError(f"CartBlend: validation_share must be in (0, 1), got {self.validation_share}")
        if min(self.max_validation, self.n_candidates, self.k_select) < 1:
            raise ValueError("CartBlend: max_validation, n_candidates and k_select must be at least 1")

    # --- the parts ----------------------------------------------------------------------------

    def _own_state(self, interactions: pd.DataFrame) -> dict[str, Any]:
        data = basket_matrices(interactions)
        n = len(data.customer_ids)
        profile = personal_vectors(
            data.basket_customer, data.incidence, n, self.group_size, self.within_decay, self.group_decay
        )
        return {
            "item_ids": data.item_ids,
            "customer_ids": data.customer_ids,
            "profile": profile.tocsr(),
            "orders": customer_orders(data.basket_customer, data.incidence, n),
            "popularity": np.asarray(data.incidence.sum(axis=0)).ravel(),
        }

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Choose the item-item model and the weights on validation customers, then fit on all the data.

        Raises:
            ValueError: bad parameters, or input refused by :func:`~models.recs.baskets.basket_matrices`.
        """
        self._check_params()
        rng = np.random.default_rng(self.seed)
        whole = basket_matrices(interactions)
        _, start = whole.customer_baskets()
        eligible = whole.customer_ids[np.diff(start) >= 2]
        n_valid = min(self.max_validation, round(self.validation_share * len(eligible)))
        chosen = np.sort(rng.choice(eligible, size=n_valid, replace=False)) if n_valid else eligible[:0]
        last = _last_baskets(interactions, [str(c) for c in chosen])
        held = interactions[IX.BASKET].astype("string").isin(set(last.to_numpy())).fillna(False).to_numpy()
        train = interactions[~held].reset_index(drop=True)
        cases = self._cases(interactions[held], last, train, rng) if held.any() else []
        self.validation_ = {"cases": float(len(cases))}
        if cases:
            self._choose(train, items, cases)
        else:  # too few customers to validate on: the cart model alone, the first of the list
            self.known_: dict[str, Any] = {"model": self.item_models[0], "cart": 1.0, "own": 0.0, "popular": 0.0}
            self.anonymous_ = dict(self.known_)
        names = sorted({str(self.known_["model"]), str(self.anonymous_["model"])})
        self.item_models_ = {name: item_model(name).fit(interactions, items) for name in names}
        state = self._own_state(interactions)
        self.item_ids_ = state["item_ids"]
        self.customer_ids_ = state["customer_ids"]
        self.categories_ = categories_for(self.item_ids_, items)
        self.profile_ = state["profile"]
        self.orders_ = state["orders"]
        self.popularity_ = state["popularity"].astype(np.float64)
        self._index()
        return self

    def _cases(
        self, held: pd.DataFrame, last: pd.Series, train: pd.DataFrame, rng: np.random.Generator
    ) -> list[tuple[str, tuple[str, ...], str]]:
        """(customer, cart, hidden item) per validation basket of two or more items whose hidden item is
        bought in ``train``."""
        known = set(train[IX.ITEM].dropna().astype(str))
        baskets = held.groupby(held[IX.BASKET].astype(str))[IX.ITEM].agg(lambda s: sorted(set(s.astype(str))))
        out = []
        for customer, basket in last.items():
            items = baskets.get(basket, [])
            if len(items) < 2:
                continue
            hidden = items[int(rng.integers(len(items)))]
            if hidden in known:
                out.append((str(customer), tuple(i for i in items if i != hidden), hidden))
        return out

    def _choose(
        self, train: pd.DataFrame, items: pd.DataFrame | None, cases: list[tuple[str, tuple[str, ...], str]]
    ) -> None:
        state = self._own_state(train)
        item_pos = {str(x): p for p, x in enumerate(state["item_ids"])}
        cust_pos = {str(x): p for p, x in enumerate(state["customer_ids"])}
        popularity = state["popularity"]
        top_popular = np.lexsort((np.arange(len(popularity)), -popularity))[: self.n_candidates]
        best: dict[str, tuple[float, ...]] = {}
        choice: dict[str, dict[str, Any]] = {}
        for rank, name in enumerate(self.item_models):
            model = item_model(name).fit(train, items)
            parts = np.zeros((len(cases), 3 * self.n_candidates + 1, 3))
            target = np.zeros((len(cases), parts.shape[1]), dtype=bool)
            for q, (customer, cart, hidden) in enumerate(cases):
                blocked = {item_pos[i] for i in cart if i in item_pos}
                scored: dict[int, list[float]] = {}
                for rec in model.recommend(Query(cart=cart), self.n_candidates):
                    if rec.item_id in item_pos:
                        scored.setdefault(item_pos[rec.item_id], [0.0, 0.0, 0.0])[0] = rec.score
                u = cust_pos.get(customer)
                if u is not None:
                    s, e = state["profile"].indptr[u], state["profile"].indptr[u + 1]
                    idx, val = state["profile"].indices[s:e], state["profile"].data[s:e]
                    for j in np.argsort(-val, kind="stable")[: self.n_candidates]:
                        if int(idx[j]) not in blocked:
                            scored.setdefault(int(idx[j]), [0.0, 0.0, 0.0])[1] = float(val[j])
                for j in top_popular.tolist():
                    if j not in blocked:
                        scored.setdefault(j, [0.0, 0.0, 0.0])[2] = float(popularity[j])
                codes = list(scored)
                values = np.array([scored[c] for c in codes]).reshape(-1, 3)
                top = values.max(axis=0)
                parts[q, : len(codes)] = values / np.where(top > 0, top, 1.0)
                hid = item_pos[hidden]
                if hid in scored:
                    target[q, codes.index(hid)] = True
            for mode, with_own in (("known", True), ("anonymous", False)):
                for w in weight_grid(self.weight_step, with_own):
                    hit = _hit_rate(parts, target, np.array(w), self.k_select)
                    key = (round(hit, 12), -rank, w[0])
                    if mode not in best or key > best[mode]:
                        best[mode] = key
                        choice[mode] = {"model": name, "cart": w[0], "own": w[1], "popular": w[2]}
            for part, unit in zip(PARTS, np.eye(3), strict=True):
                self.validation_[f"hit@{self.k_select}_{name}_{part}_only"] = _hit_rate(
                    parts, target, unit, self.k_select
                )
        self.known_, self.anonymous_ = choice["known"], choice["anonymous"]
        self.validation_[f"hit@{self.k_select}_known"] = float(best["known"][0])
        self.validation_[f"hit@{self.k_select}_anonymous"] = float(best["anonymous"][0])

    def _index(self) -> None:
        self._item_pos = {str(x): p for p, x in enumerate(self.item_ids_)}
        self._customer_pos = {str(x): p for p, x in enumerate(self.customer_ids_)}
        self._popular = np.lexsort((np.arange(len(self.popularity_)), -self.popularity_))[: self.n_candidates]

    # --- answers --------------------------------------------------------------------------------

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        """The blended answer (see the module doc)."""
        check_fitted(self, "item_models_")
        if k < 1:
            return []
        u = self._customer_pos.get(query.customer_key) if query.customer_key is not None else None
        blend = self.known_ if u is not None else self.anonymous_
        weights = np.array([blend["cart"], blend["own"], blend["popular"]])
        blocked = {self._item_pos[i] for i in (*query.cart, *query.exclude) if i in self._item_pos}
        scored: dict[int, list[float]] = {}
        reasons: dict[int, str] = {}
        if weights[0] > 0 and query.cart:
            asked = Query(cart=query.cart, exclude=query.exclude, category=query.category)
            for rec in self.item_models_[blend["model"]].recommend(asked, self.n_candidates):
                code = self._item_pos.get(rec.item_id)
                if code is not None:
                    scored.setdefault(code, [0.0, 0.0, 0.0])[0] = rec.score
                    reasons[code] = rec.reason
        if weights[1] > 0 and u is not None:
            s, e = self.profile_.indptr[u], self.profile_.indptr[u + 1]
            idx, val = self.profile_.indices[s:e], self.profile_.data[s:e]
            for j in np.argsort(-val, kind="stable")[: self.n_candidates]:
                scored.setdefault(int(idx[j]), [0.0, 0.0, 0.0])[1] = float(val[j])
        if weights[2] > 0:
            for j in self._popular.tolist():
                scored.setdefault(j, [0.0, 0.0, 0.0])[2] = float(self.popularity_[j])
        codes = np.array([c for c in scored if c not in blocked], dtype=np.int64)
        if query.category is not None and len(codes):
            codes = codes[self.categories_[codes] == query.category]
        if not len(codes):
            return []
        values = np.array([scored[c] for c in codes.tolist()])
        top = values.max(axis=0)
        weighted = values / np.where(top > 0, top, 1.0) * weights
        total = weighted.sum(axis=1)
        keep = total > 0
        codes, weighted, total = codes[keep], weighted[keep], total[keep]
        order = np.lexsort((codes, -total))[:k]
        out = []
        for r in order.tolist():
            code, part = int(codes[r]), int(np.argmax(weighted[r]))
            item = str(self.item_ids_[code])
            if part == 0:
                out.append(Recommendation(item, float(total[r]), RecSource.BOUGHT_TOGETHER, reasons[code]))
            elif part == 1:
                n = int(self.orders_[u, code]) if u is not None else 0
                reason = f"you bought this in {n} order{'' if n == 1 else 's'}"
                out.append(Recommendation(item, float(total[r]), RecSource.BUY_AGAIN, reason))
            else:
                out.append(Recommendation(item, float(total[r]), RecSource.POPULAR, POPULAR_REASON))
        return out

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]:
        """One answer per query, in order."""
        return [self.recommend(q, k) for q in queries]

    # --- files ----------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """``params.json`` (parameters, choices, validation figures), ``items.parquet``,
        ``customers.parquet``, ``own.npz`` and one folder per fitted item-item model (no pickle)."""
        check_fitted(self, "item_models_")
        folder = Path(folder)
        params = self.get_params()
        params["item_models"] = list(self.item_models)
        write_params(
            folder,
            {"params": params, "known": self.known_, "anonymous": self.anonymous_, "validation": self.validation_},
        )
        pd.DataFrame(
            {IX.ITEM: pd.array(self.item_ids_, dtype="string"), IX.CATEGORY: pd.array(self.categories_, dtype="string")}
        ).to_parquet(folder / "items.parquet", index=False)
        pd.DataFrame({IX.CUSTOMER: pd.array(self.customer_ids_, dtype="string")}).to_parquet(
            folder / "customers.parquet", index=False
        )
        np.savez(
            folder / "own.npz",
            **prefixed("profile", csr_arrays(self.profile_)),
            **prefixed("orders", csr_arrays(self.orders_)),
            popularity=self.popularity_,
        )
        for name, model in self.item_models_.items():
            model.save(folder / f"item_{name}")

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Rebuild a fitted model from :meth:`save`'s folder."""
        folder = Path(folder)
        meta = read_params(folder)
        params = dict(meta["params"])
        params["item_models"] = tuple(params["item_models"])
        model = cls(**params)
        model.known_, model.anonymous_ = dict(meta["known"]), dict(meta["anonymous"])
        model.validation_ = dict(meta["validation"])
        names = sorted({str(model.known_["model"]), str(model.anonymous_["model"])})
        model.item_models_ = {name: _load_item_model(name, folder / f"item_{name}") for name in names}
        model.item_ids_ = read_strings(folder / "items.parquet", IX.ITEM)
        model.categories_ = read_strings(folder / "items.parquet", IX.CATEGORY)
        model.customer_ids_ = read_strings(folder / "customers.parquet", IX.CUSTOMER)
        arrays = load_npz(folder / "own.npz")
        model.profile_ = csr_from(arrays, "profile")
        model.orders_ = csr_from(arrays, "orders")
        model.popularity_ = arrays["popularity"]
        model._index()
        return model


def _hit_rate(parts: np.ndarray, target: np.ndarray, weights: np.ndarray, k: int) -> float:
    """Share of the cases whose hidden item (``target``) is among the ``k`` best by the weighted parts
    (a positive score needed; ties counted in its favour)."""
    score = parts @ weights
    hidden = np.where(target.any(axis=1), (score * target).sum(axis=1), 0.0)
    ahead = (score > hidden[:, None]).sum(axis=1)
    return float(np.mean((hidden > 0) & (ahead < k))) if len(score) else 0.0
