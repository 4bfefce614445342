"""Personal picks from implicit-feedback matrix factorisation (the ``implicit`` library).

Each customer's row of the customer x item matrix holds a preference weight ``r`` built from what
they did: purchases weighted by quantity (``log1p``) and recency (exponential decay with a
half-life), views and add-to-carts as weaker signals. Alternating least squares (or BPR) learns a
factor vector per customer and per item; an item's score for a customer is the dot product.

Fold-in: :meth:`ImplicitRecommender.with_recent` returns a view of the model that also knows
events after the training end; a customer with such events gets a new factor vector solved from
the item factors (the ALS least-squares step, the same as implicit's ``recalculate_user``), so
answers react to today's events without a retrain. A customer the model never saw and with no
recent events gets no answer (cold start belongs to the rules / fallback layer).

Serving folds in what the online store received since the snapshot: :class:`RecentActivity` reads one
customer's item events (views, add-to-carts, removals, orders, checkouts) and :func:`with_activity` gives
the view of a model (this one, or a blend holding it as ``personal_``) that knows them. The answer is
asked at the data's clock (``RecentActivity.now``), never the server's: an old data set decays from its
own end.

Artifacts: factors as ``.npy``, histories as ``.npz`` (sparse CSR, no pickle), id maps as Parquet,
parameters as JSON; the implicit model object is rebuilt from the factors when wanted
(:meth:`ImplicitRecommender.as_implicit`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Self, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from threadpoolctl import threadpool_limits

from features.realtime import Event, EventKind
from models.base import Estimator, check_fitted
from models.recs.base import IX, InteractionKind, Query, Recommendation, RecSource

_LN2 = float(np.log(2.0))
ARTIFACT_FORMAT = 1


def read_model_meta(folder: Path, class_name: str) -> dict[str, Any]:
    """``model.json`` of a saved factor model, checked to be ``class_name``'s in the current format."""
    meta: dict[str, Any] = json.loads((Path(folder) / "model.json").read_text())
    if meta.get("format") != ARTIFACT_FORMAT or meta.get("class") != class_name:
        raise ValueError(f"{folder} does not hold a {class_name} artifact of format {ARTIFACT_FORMAT}")
    return meta


def _now_ts(value: datetime | pd.Timestamp | None, default: pd.Timestamp) -> pd.Timestamp:
    if value is None:
        return default
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@dataclass(frozen=True)
class _Weighted:
    """Interactions reduced to (row, column) preference weights, plus which pairs were purchases."""

    rows: np.ndarray
    cols: np.ndarray
    weight: np.ndarray
    bought: np.ndarray


@dataclass(frozen=True)
class _RecentRows:
    """One customer's events after the training end: item columns, epoch seconds, preference weight before
    decay, purchase flags (what a fold-in needs, without a data frame: a served answer folds in per request)."""

    cols: np.ndarray
    seconds: np.ndarray
    kind: np.ndarray
    bought: np.ndarray


class ImplicitRecommender(Estimator):
    """Personal recommendations from implicit-feedback matrix factorisation.

    Args:
        factors: length of the factor vectors.
        iterations: ALS sweeps (or BPR epochs).
        regularization: L2 penalty on the factors.
        alpha: confidence scale; an observed pair has confidence ``1 + alpha * r``.
        algorithm: ``"als"`` (:class:`implicit.cpu.als.AlternatingLeastSquares`) or ``"bpr"``
            (:class:`implicit.cpu.bpr.BayesianPersonalizedRanking`, which uses only which pairs
            were observed, not their weights; its fold-in is the same least-squares step on its
            item factors, an approximation for a model not trained by least squares). ALS ranked
            better on both Online Retail II and the synthetic world.
        learning_rate: BPR's step size (ignored by ALS).
        half_life_days: an event this many days before the training end (or the time of asking)
            weighs half as much as one at that moment (90 ranked next purchases better than 180
            or 365 on Online Retail II and the synthetic world).
        view_weight: weight of a view relative to a purchase of one unit.
        cart_weight: weight of an add-to-cart relative to a purchase of one unit.
        filter_bought: never recommend an item the customer already bought.
        num_threads: threads used by implicit.
        random_state: seed of the factor initialisation (and BPR's sampling).
    """

    source = RecSource.PERSONAL
    # events after the training end, per customer (set only on the views made by with_recent)
    _recent: Mapping[str, _RecentRows] = MappingProxyType({})

    def __init__(
        self,
        factors: int = 64,
        iterations: int = 15,
        regularization: float = 0.05,
        alpha: float = 10.0,
        algorithm: str = "als",
        learning_rate: float = 0.01,
        half_life_days: float = 90.0,
        view_weight: float = 0.1,
        cart_weight: float = 0.3,
        filter_bought: bool = True,
        num_threads: int = 2,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.iterations = iterations
        self.regularization = regularization
        self.alpha = alpha
        self.algorithm = algorithm
        self.learning_rate = learning_rate
        self.half_life_days = half_life_days
        self.view_weight = view_weight
        self.cart_weight = cart_weight
        self.filter_bought = filter_bought
        self.num_threads = num_threads
        self.random_state = random_state

    # ------------------------------------------------------------------ fit

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Learn customer and item factors from ``interactions`` (:class:`IX` columns).

        Rows without a customer key (guests, anonymous sessions) and purchases of no positive
        quantity (returns) are ignored. ``items`` (``item_id``, optional ``name`` and ``category``)
        gives the names used in reasons and the categories used by ``Query.category``.
        """
        if self.algorithm not in ("als", "bpr"):
            raise ValueError(f"algorithm must be 'als' or 'bpr', got {self.algorithm!r}")
        missing = {IX.CUSTOMER, IX.ITEM, IX.TS} - set(interactions.columns)
        if missing:
            raise ValueError(f"interactions lack columns {sorted(missing)}")
        ix = self._clean(interactions)
        if ix.empty:
            raise ValueError("no interactions with a customer key to learn from")
        self.trained_until_ = pd.Timestamp(ix[IX.TS].max())
        customers = np.sort(ix[IX.CUSTOMER].unique())
        item_ids = np.sort(ix[IX.ITEM].unique())
        self.customer_ids_ = customers.astype(object)
        self.item_ids_ = item_ids.astype(object)
        self._index()
        self._set_items(items)
        w = self._weigh(ix, self.trained_until_)
        shape = (len(customers), len(item_ids))
        self.history_ = sp.csr_matrix((w.weight, (w.rows, w.cols)), shape=shape, dtype=np.float32)
        self.history_.sum_duplicates()
        self.bought_ = sp.csr_matrix((w.bought.astype(np.float32), (w.rows, w.cols)), shape=shape, dtype=np.float32)
        self.bought_.sum_duplicates()
        self.bought_.data = (self.bought_.data > 0).astype(np.float32)
        self.bought_.eliminate_zeros()
        with threadpool_limits(1, "blas"):  # implicit runs its own threads; nested BLAS threads slow it down
            model = self._new_model()
            model.fit(self._confidence(self.history_), show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._normalise()
        return self

    def _new_model(self) -> Any:
        if self.algorithm == "bpr":
            return BayesianPersonalizedRanking(
                factors=self.factors,
                learning_rate=self.learning_rate,
                regularization=self.regularization,
                iterations=self.iterations,
                num_threads=self.num_threads,
                random_state=self.random_state,
            )
        return AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            iterations=self.iterations,
            num_threads=self.num_threads,
            random_state=self.random_state,
        )

    def as_implicit(self) -> Any:
        """The implicit model object rebuilt from the learned factors (no refit).

        For ALS, ``recommend(..., recalculate_user=True)`` on it with a row of
        ``1 + alpha * r`` confidences folds a customer in exactly as :meth:`with_recent` does.
        """
        with threadpool_limits(1, "blas"):
            model = self._new_model()
        model.user_factors = self.user_factors_.copy()
        model.item_factors = self.item_factors_.copy()
        return model

    @staticmethod
    def _clean(interactions: pd.DataFrame) -> pd.DataFrame:
        ix = interactions[interactions[IX.CUSTOMER].notna() & interactions[IX.ITEM].notna()]
        out = pd.DataFrame(
            {
                IX.CUSTOMER: ix[IX.CUSTOMER].astype(str).to_numpy(dtype=object),
                IX.ITEM: ix[IX.ITEM].astype(str).to_numpy(dtype=object),
                IX.TS: pd.to_datetime(ix[IX.TS], utc=True),
                IX.QUANTITY: (
                    pd.to_numeric(ix[IX.QUANTITY], errors="coerce").fillna(1.0).to_numpy(dtype=np.float64)
                    if IX.QUANTITY in ix.columns
                    else 1.0
                ),
                IX.EVENT: (
                    ix[IX.EVENT].astype(str).to_numpy(dtype=object)
                    if IX.EVENT in ix.columns
                    else InteractionKind.PURCHASE.value
                ),
            }
        )
        known = out[IX.EVENT].isin([e.value for e in InteractionKind])
        returns = (out[IX.EVENT] == InteractionKind.PURCHASE.value) & (out[IX.QUANTITY] <= 0)
        return out[known & ~returns].reset_index(drop=True)

    def _index(self) -> None:
        self._customer_row = {c: i for i, c in enumerate(self.customer_ids_)}
        self._item_col = {it: j for j, it in enumerate(self.item_ids_)}

    def _normalise(self) -> None:
        norms = np.linalg.norm(self.item_factors_, axis=1, keepdims=True)
        self._unit_items = self.item_factors_ / np.maximum(norms, 1e-12)
        # the fold-in's item factors and their regularised Gram matrix: the same for every customer folded in
        self._y64 = self.item_factors_.astype(np.float64)
        self._gram = self._y64.T @ self._y64 + self.regularization * np.eye(self._y64.shape[1])

    def _set_items(self, items: pd.DataFrame | None) -> None:
        names = pd.Series(self.item_ids_, index=self.item_ids_, dtype=object)
        cats = pd.Series(None, index=self.item_ids_, dtype=object)
        if items is not None and IX.ITEM in items.columns:
            cat = items.assign(**{IX.ITEM: items[IX.ITEM].astype(str)}).drop_duplicates(IX.ITEM).set_index(IX.ITEM)
            if IX.NAME in cat.columns:
                known = cat[IX.NAME].reindex(names.index)
                names = known.where(known.notna(), names).astype(object)
            if IX.CATEGORY in cat.columns:
                cats = cat[IX.CATEGORY].reindex(cats.index).astype(object)
        self.item_names_ = np.array([str(n) for n in names.to_numpy()], dtype=object)
        self.item_categories_ = np.array([None if pd.isna(c) else str(c) for c in cats.to_numpy()], dtype=object)

    def _weigh(self, ix: pd.DataFrame, now: pd.Timestamp) -> _Weighted:
        """Preference weight of each event: kind x log1p(quantity) x recency decay to ``now``."""
        rows = _codes(ix[IX.CUSTOMER], self._customer_row)
        cols = _codes(ix[IX.ITEM], self._item_col)
        age_days = (now - ix[IX.TS]).dt.total_seconds().to_numpy() / 86400.0
        decay = np.exp(-_LN2 * np.maximum(age_days, 0.0) / self.half_life_days)
        kind, bought = self._kinds(ix[IX.EVENT].to_numpy(), ix[IX.QUANTITY].to_numpy(dtype=np.float64))
        return _Weighted(rows, cols, (kind * decay).astype(np.float32), bought)

    def _kinds(self, event: np.ndarray, quantity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Preference weight before decay (kind x log1p(quantity)) and purchase flag of each event."""
        bought = event == InteractionKind.PURCHASE.value
        kind = np.where(
            bought,
            np.log1p(np.maximum(quantity, 1.0)) / _LN2,
            np.where(event == InteractionKind.VIEW.value, self.view_weight, self.cart_weight),
        )
        return kind, bought

    def _confidence(self, weights: sp.csr_matrix) -> sp.csr_matrix:
        conf = weights.copy().astype(np.float32)
        conf.data = 1.0 + self.alpha * conf.data
        return conf

    # ------------------------------------------------------------ fold-in

    def with_recent(self, recent_interactions: pd.DataFrame) -> Self:
        """A view of this model that also knows events after the training end.

        The returned object shares the learned factors (nothing is copied, ``self`` is not
        changed) and answers like this one, except that a customer with rows in
        ``recent_interactions`` gets a factor vector solved afresh from their training history
        (decayed to the time of asking) plus these events; a customer unknown at training time
        is folded in from these events alone. Events at or before the training end are already
        in the model and are ignored; items unknown at training time are ignored.
        """
        ix = self._clean(recent_interactions)
        cols = _codes(ix[IX.ITEM], self._item_col)
        seconds = (ix[IX.TS] - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)
        keep = (seconds > self.trained_until_.timestamp()) & (cols >= 0)
        ix = ix[keep].reset_index(drop=True)
        kind, bought = self._kinds(ix[IX.EVENT].to_numpy(), ix[IX.QUANTITY].to_numpy(dtype=np.float64))
        cols, seconds = cols[keep], seconds[keep]
        groups = ix.groupby(IX.CUSTOMER, sort=False).indices
        return self._view({str(c): _RecentRows(cols[i], seconds[i], kind[i], bought[i]) for c, i in groups.items()})

    def with_events(
        self, customer_key: str, items: Sequence[str], kinds: Sequence[str], seconds: Sequence[float]
    ) -> Self:
        """:meth:`with_recent` for one customer's events given as plain lists (item, :class:`InteractionKind`
        value, epoch seconds; quantity 1): no data frame, so cheap enough to run per served request."""
        get = self._item_col.get
        cols = np.fromiter((get(i, -1) for i in items), dtype=np.int64, count=len(items))
        secs = np.asarray(seconds, dtype=np.float64)
        keep = (cols >= 0) & (secs > self.trained_until_.timestamp())
        if not keep.any():
            return self._view({})
        kind, bought = self._kinds(np.asarray(kinds, dtype=object)[keep], np.ones(int(keep.sum())))
        return self._view({customer_key: _RecentRows(cols[keep], secs[keep], kind, bought)})

    def _view(self, recent: dict[str, _RecentRows]) -> Self:
        view = copy.copy(self)
        view._recent = recent
        return view

    def _fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        """Customer factors solved from confidence rows with the item factors fixed (one ALS step)."""
        y, base = self._y64, self._gram
        out = np.zeros((rows.shape[0], y.shape[1]), dtype=np.float32)
        for r in range(rows.shape[0]):
            lo, hi = rows.indptr[r], rows.indptr[r + 1]
            if lo == hi:
                continue
            cols = rows.indices[lo:hi]
            conf = rows.data[lo:hi].astype(np.float64)
            yi = y[cols]
            a = base + (yi.T * (conf - 1.0)) @ yi
            out[r] = np.linalg.solve(a, yi.T @ conf)
        return out

    def _user_state(self, customer: str | None, now: pd.Timestamp) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Factor vector, past-item columns and bought-item columns of one customer (None if unknown)."""
        recent = self._recent.get(customer) if customer is not None else None
        row_i = self._customer_row.get(customer) if customer is not None else None
        if row_i is None and recent is None:
            return None
        if row_i is not None:
            lo, hi = self.history_.indptr[row_i], self.history_.indptr[row_i + 1]
            past, weight = self.history_.indices[lo:hi], self.history_.data[lo:hi]
            bought = self.bought_.indices[self.bought_.indptr[row_i] : self.bought_.indptr[row_i + 1]]
            if recent is None:
                return self.user_factors_[row_i], past, bought
            age_days = max((now - self.trained_until_).total_seconds(), 0.0) / 86400.0
            weight = weight * np.float32(np.exp(-_LN2 * age_days / self.half_life_days))
        else:
            past = bought = np.empty(0, dtype=np.int32)
            weight = np.empty(0, dtype=np.float32)
        assert recent is not None
        age_days = np.maximum(now.timestamp() - recent.seconds, 0.0) / 86400.0
        recent_weight = (recent.kind * np.exp(-_LN2 * age_days / self.half_life_days)).astype(np.float32)
        cols = np.concatenate([past, recent.cols]).astype(np.int64)
        cols, inverse = np.unique(cols, return_inverse=True)
        summed = np.bincount(inverse, weights=np.concatenate([weight, recent_weight]), minlength=len(cols))
        row = sp.csr_matrix((summed.astype(np.float32), cols, np.array([0, len(cols)])), shape=(1, len(self.item_ids_)))
        bought = np.union1d(bought, recent.cols[recent.bought]).astype(np.int32)
        return self._fold_in(self._confidence(row))[0], cols, bought

    # ---------------------------------------------------------- recommend

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        """At most ``k`` items for ``query.customer_key``, best first; [] for an unknown customer."""
        return self.recommend_batch([query], k)[0]

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]:
        """Answers for many queries: one matrix product for all known customers, then top-k."""
        out: list[list[Recommendation]] = [[] for _ in queries]
        states: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        for qi, q in enumerate(queries):
            state = self._user_state(q.customer_key, _now_ts(q.now, self.trained_until_))
            if state is not None:
                states.append((qi, *state))
        if not states or k <= 0:
            return out
        users = np.vstack([s[1] for s in states])
        scores = users @ self.item_factors_.T
        for (qi, _, past, bought), s in zip(states, scores, strict=True):
            q = queries[qi]
            mask = self._blocked(q, bought)
            s = np.where(mask, -np.inf, s)
            n_ok = int((~mask).sum())
            top = _top_k(s, min(k, n_ok))
            reasons = self._reasons(top, past, bought)
            out[qi] = [
                Recommendation(item_id=str(self.item_ids_[j]), score=float(s[j]), source=self.source, reason=why)
                for j, why in zip(top, reasons, strict=True)
            ]
        return out

    def _blocked(self, q: Query, bought: np.ndarray) -> np.ndarray:
        mask = np.zeros(len(self.item_ids_), dtype=bool)
        for it in (*q.cart, *q.exclude):
            j = self._item_col.get(it)
            if j is not None:
                mask[j] = True
        if self.filter_bought and len(bought):
            mask[bought] = True
        if q.category is not None:
            mask |= self.item_categories_ != q.category
        return mask

    def _reasons(self, top: np.ndarray, past: np.ndarray, bought: np.ndarray) -> list[str]:
        """For each recommended item, name the past item whose factors point most nearly its way.

        A bought item is named if there is one; otherwise one the customer looked at or carted.
        """
        seeds = bought if len(bought) else past
        if len(seeds) == 0:
            return ["picked for you"] * len(top)
        best = seeds[np.argmax(self._unit_items[seeds] @ self._unit_items[top].T, axis=0)]
        verb = "bought" if len(bought) else "looked at"
        return [f"because you {verb} {self.item_names_[b]}" for b in best]

    # ----------------------------------------------------------- save/load

    def save(self, folder: Path) -> None:
        """Write the model into ``folder``: JSON, Parquet, ``.npy`` and ``.npz`` files only."""
        check_fitted(self, "item_factors_")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": ARTIFACT_FORMAT,
            "class": type(self).__name__,
            "params": self.get_params(),
            "trained_until": self.trained_until_.isoformat(),
            "implicit_version": _implicit_version(),
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=2))
        np.save(folder / "user_factors.npy", self.user_factors_, allow_pickle=False)
        np.save(folder / "item_factors.npy", self.item_factors_, allow_pickle=False)
        sp.save_npz(folder / "history.npz", self.history_)
        sp.save_npz(folder / "bought.npz", self.bought_)
        pd.DataFrame({IX.CUSTOMER: pd.array(self.customer_ids_, dtype="string")}).to_parquet(
            folder / "customers.parquet", index=False
        )
        pd.DataFrame(
            {
                IX.ITEM: pd.array(self.item_ids_, dtype="string"),
                IX.NAME: pd.array(self.item_names_, dtype="string"),
                IX.CATEGORY: pd.array(self.item_categories_, dtype="string"),
            }
        ).to_parquet(folder / "items.parquet", index=False)

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Read a model written by :meth:`save` (no pickle anywhere)."""
        folder = Path(folder)
        meta = read_model_meta(folder, cls.__name__)
        model = cls(**meta["params"])
        model.trained_until_ = pd.Timestamp(meta["trained_until"])
        model.user_factors_ = np.load(folder / "user_factors.npy", allow_pickle=False)
        model.item_factors_ = np.load(folder / "item_factors.npy", allow_pickle=False)
        model.history_ = sp.load_npz(folder / "history.npz").tocsr()
        model.bought_ = sp.load_npz(folder / "bought.npz").tocsr()
        customers = pd.read_parquet(folder / "customers.parquet")
        items = pd.read_parquet(folder / "items.parquet")
        model.customer_ids_ = customers[IX.CUSTOMER].astype(str).to_numpy(dtype=object)
        model.item_ids_ = items[IX.ITEM].astype(str).to_numpy(dtype=object)
        model.item_names_ = items[IX.NAME].astype(str).to_numpy(dtype=object)
        model.item_categories_ = np.array([None if pd.isna(c) else str(c) for c in items[IX.CATEGORY]], dtype=object)
        model._index()
        model._normalise()
        return model


_M = TypeVar("_M")
_IX_COLUMNS = (IX.CUSTOMER, IX.ITEM, IX.BASKET, IX.TS, IX.QUANTITY, IX.EVENT)
RECENT_SLOTS = 3  # at most this many places of an answer go to items carted or viewed since the snapshot
_FOLDED_EVENTS = {
    EventKind.VIEW: InteractionKind.VIEW.value,
    EventKind.ADD_TO_CART: InteractionKind.ADD_TO_CART.value,
    EventKind.ORDER: InteractionKind.PURCHASE.value,
}


@dataclass(frozen=True)
class RecentActivity:
    """What one customer did, item by item, since the snapshot, and the data's clock to answer at.

    Attributes:
        now: the data's clock (the online store's: its snapshot's as-of, or the latest event applied when
            later); None: the models' training end.
        bought: items ordered since, latest first.
        carted: items added to the cart since and still there (not removed, ordered or checked out after),
            latest first.
        viewed: items viewed since and neither in the cart nor bought since, latest first.
        customer_key: whose events these are.
        rows: the views, add-to-carts and orders to fold in, in time order: (item, :class:`InteractionKind`
            value, epoch seconds, basket: the session or the event id).
    """

    now: datetime | None
    bought: tuple[str, ...] = ()
    carted: tuple[str, ...] = ()
    viewed: tuple[str, ...] = ()
    customer_key: str | None = None
    rows: tuple[tuple[str, str, float, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.bought or self.carted or self.viewed)

    @property
    def interactions(self) -> pd.DataFrame:
        """:attr:`rows` as an interactions frame (:class:`IX` columns, quantity 1)."""
        rows = self.rows
        return pd.DataFrame(
            {
                IX.CUSTOMER: [self.customer_key] * len(rows),
                IX.ITEM: [r[0] for r in rows],
                IX.BASKET: [r[3] for r in rows],
                IX.TS: pd.to_datetime([r[2] for r in rows], unit="s", utc=True),
                IX.QUANTITY: np.ones(len(rows)),
                IX.EVENT: [r[1] for r in rows],
            },
            columns=list(_IX_COLUMNS),
        )

    @classmethod
    def from_events(cls, customer_key: str, events: Sequence[Event], now: datetime | None) -> RecentActivity:
        """Read ``customer_key``'s events (in time order, as :meth:`features.online.InMemoryOnlineStore.recent_events`
        gives them): an order names one purchased item; a checkout empties the cart (its items are bought
        through their orders); events without an item, other than a checkout, are ignored."""
        bought: dict[str, float] = {}
        cart: dict[str, float] = {}
        viewed: dict[str, float] = {}
        rows: list[tuple[str, str, float, str]] = []
        for e in sorted(events, key=lambda e: (e.ts, e.received)):
            item, t = e.item_id, e.ts
            if e.type is EventKind.CHECKOUT:
                cart.clear()
            if item is None:
                continue
            if e.type is EventKind.ORDER:
                bought[item] = t
                cart.pop(item, None)
            elif e.type is EventKind.ADD_TO_CART:
                cart[item] = t
            elif e.type is EventKind.REMOVE_FROM_CART:
                cart.pop(item, None)
            elif e.type is EventKind.VIEW:
                viewed[item] = t
            kind = _FOLDED_EVENTS.get(e.type)
            if kind is not None:
                rows.append((item, kind, t, e.session_id or e.id))

        def latest_first(times: dict[str, float], *without: dict[str, float]) -> tuple[str, ...]:
            kept = [(t, i) for i, t in times.items() if not any(i in w for w in without)]
            return tuple(i for _, i in sorted(kept, key=lambda p: (-p[0], p[1])))

        return cls(
            now=now,
            bought=latest_first(bought),
            carted=latest_first(cart, bought),
            viewed=latest_first(viewed, cart, bought),
            customer_key=customer_key,
            rows=tuple(rows),
        )

    def first(self, exclude: frozenset[str] | set[str], slots: int = RECENT_SLOTS) -> list[Recommendation]:
        """The items that lead a folded-in answer: carted ones, then viewed ones, latest first, at most
        ``slots``; scored in (2, 3), above a blend's own items (1, 2) and new picks (0, 1)."""
        picks = [(i, "still in your cart") for i in self.carted if i not in exclude]
        picks += [(i, "you looked at this recently") for i in self.viewed if i not in exclude]
        picks = picks[:slots]
        return [
            Recommendation(item, 2.0 + (slots - rank) / (slots + 1), RecSource.PERSONAL, why)
            for rank, (item, why) in enumerate(picks)
        ]


def with_activity(model: _M, activity: RecentActivity) -> _M:
    """A view of ``model`` that also knows ``activity`` (nothing copied but the view, ``model`` unchanged).

    ``model`` is an :class:`ImplicitRecommender` (folded in by :meth:`ImplicitRecommender.with_events`, the same
    as :meth:`ImplicitRecommender.with_recent` of :attr:`RecentActivity.interactions`), or a recommender holding
    one as ``personal_`` (the repeat + personal blend): that part is folded in. Any other model is returned as it
    is.
    """
    if not activity.rows or activity.customer_key is None:
        return model
    items, kinds, seconds, _ = zip(*activity.rows, strict=True)
    if isinstance(model, ImplicitRecommender):
        return model.with_events(activity.customer_key, items, kinds, seconds)
    inner = getattr(model, "personal_", None)
    if not isinstance(inner, ImplicitRecommender):
        return model
    view = copy.copy(model)
    view.personal_ = inner.with_events(activity.customer_key, items, kinds, seconds)  # type: ignore[attr-defined]
    return view


_FEW_ROWS = 1_000  # up to this many rows, dict lookups beat pandas (which turns the whole dict into a Series)


def _codes(values: pd.Series, index: Mapping[str, int]) -> np.ndarray:
    """``index[value]`` per value, -1 where absent: a few rows (a fold-in) by plain lookups, many by pandas."""
    if len(values) <= _FEW_ROWS:
        get = index.get
        return np.fromiter((get(v, -1) for v in values), dtype=np.int64, count=len(values))
    return values.map(index).fillna(-1).to_numpy(dtype=np.int64)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first (ties by index, so answers are stable)."""
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


def _implicit_version() -> str:
    import implicit

    return str(getattr(implicit, "__version__", "unknown"))
