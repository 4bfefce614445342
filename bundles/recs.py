"""The recommendations bundle: every recommender, the catalogue and purchase history, as one folder.

Training (``training/recs.py``) fits the parts and writes them with :meth:`RecsBundle.write`; the API
reads them back with :meth:`RecsBundle.build` into a :class:`RecsModel`.

Each answer is the recommender's candidates passed through the business rules
(:func:`models.recs.rules.apply_rules`: cart, exclusions, already bought, stock, categories, prices)
and topped up to ``k`` from the popular fallback; every item keeps its source and its reason.

A customer's answers fold in what the online store received since the snapshot (a
:class:`~models.recs.personal.RecentActivity`, asked at the data's clock): see ``docs/recommenders.md``,
"Today's events".

**What is served is what the job's gate chose** (``manifest["served"]``, :data:`SERVED_SLOTS`): per slot
(next basket, a cart with a known customer, an anonymous cart) the model that answers and its label,
``kairos:<model>`` or ``baseline:<name>`` when Kairos's model did not beat the best baseline with the
interval above zero (the API names it in ``models[].kind`` / ``baseline``). A bundle written before the
switch (no ``served``) answers as it always did: repeat + personal and bought together.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bundles.base import MANIFEST_FILE, FolderBundle, Provenance
from bundles.errors import ModelIntegrityError
from features.erasure import drop_rows
from models.recs.base import IX, Query, Recommendation, Recommender, RecSource
from models.recs.baselines import GlobalPersonalTopFreq, GlobalTopFreq, PersonalTopFreq
from models.recs.baskets import csr_arrays, csr_from, prefixed
from models.recs.blend import RepeatThenPersonal
from models.recs.buy_again import BuyAgain
from models.recs.cart_blend import CartBlend
from models.recs.cooccurrence import BoughtTogether
from models.recs.cooccurrence_count import CooccurrenceCount
from models.recs.personal import RecentActivity, with_activity
from models.recs.popular import Popular
from models.recs.repeat_ranker import RepeatRanker
from models.recs.rules import CustomerHistory, ItemCatalogue, RulePolicy, apply_rules
from models.recs.similar import SimilarItems
from models.recs.tifuknn import TIFUKNN
from models.recs.upcf import UPCF

_T = TypeVar("_T")
_CANDIDATE_FACTOR = 3  # candidates asked of a recommender per item returned (the rules drop some)
_CANDIDATE_SLACK = 5  # asked first beyond k; the full k * factor only when the rules keep fewer than k
_JUST_BOUGHT = "you bought this recently"
_STAPLE_SCORE = 1.5  # the blend's score of an own item bought in one order at the training end (own items: (1, 2))


@dataclass(frozen=True)
class Filters:
    """What the caller may restrict: categories, prices, items to leave out."""

    include_categories: frozenset[str] | None = None
    exclude_categories: frozenset[str] = frozenset()
    min_price: float | None = None
    max_price: float | None = None
    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RecsAnswer:
    items: list[Recommendation]
    cold_start: bool  # the recommender knew nothing of the customer / item / cart: fallback only
    served: str | None = None  # the served slot's label (``kairos:<model>`` / ``baseline:<name>``), if any


#: The slots the gate fills: next basket, a cart with a customer the bundle knows, an anonymous cart.
NEXT_BASKET_SLOT, CART_KNOWN_SLOT, CART_ANONYMOUS_SLOT = "next_basket", "cart_known", "cart_anonymous"
SERVED_SLOTS = (NEXT_BASKET_SLOT, CART_KNOWN_SLOT, CART_ANONYMOUS_SLOT)
KAIROS_PREFIX, BASELINE_PREFIX = "kairos:", "baseline:"
#: Each servable model by its label, and how its folder is read back.
SERVABLE: dict[str, Callable[[Path], Recommender]] = {
    "kairos:repeat_ranker": RepeatRanker.load,
    "kairos:cart_blend": CartBlend.load,
    "kairos:bought_together": BoughtTogether.load,
    "kairos:repeat_personal": RepeatThenPersonal.load,
    "baseline:g_topfreq": GlobalTopFreq.load,
    "baseline:p_topfreq": PersonalTopFreq.load,
    "baseline:gp_topfreq": GlobalPersonalTopFreq.load,
    "baseline:tifuknn": TIFUKNN.load,
    "baseline:upcf": UPCF.load,
    "baseline:cooccurrence_count": CooccurrenceCount.load,
}
#: Labels whose model is a part the bundle holds anyway (not written twice).
_SHARED_PARTS = {"kairos:bought_together": "bought_together", "kairos:repeat_personal": "repeat_personal"}
SERVED_DIR = "served"


def served_folder(label: str) -> str:
    """The bundle folder of a served model (relative): a shared part's own, else ``served/<name>``."""
    if label not in SERVABLE:
        raise ValueError(f"not a servable model: {label!r}; known: {sorted(SERVABLE)}")
    return _SHARED_PARTS.get(label, f"{SERVED_DIR}/{label.split(':', 1)[1]}")


def baseline_of(label: str | None) -> str | None:
    """``gp_topfreq`` for ``baseline:gp_topfreq``; None for Kairos's own models."""
    return label.removeprefix(BASELINE_PREFIX) if label and label.startswith(BASELINE_PREFIX) else None


class RecsModel:
    """The loaded bundle; answers are pure functions of the query (safe to call from many threads).

    ``personal`` and ``buy_again`` are None when the data named no customer (a basket-only export):
    a customer's answers are then the popular fallback, and buy again is empty."""

    def __init__(
        self,
        together: BoughtTogether,
        personal: RepeatThenPersonal | None,
        similar: SimilarItems,
        buy_again: BuyAgain | None,
        popular: Popular,
        catalogue: ItemCatalogue,
        history: CustomerHistory,
        manifest: dict[str, Any],
        served: dict[str, tuple[str, Recommender]] | None = None,
    ) -> None:
        self.together = together
        self.personal = personal
        self.similar = similar
        self.buy_again_model = buy_again
        self.popular = popular
        self.catalogue = catalogue
        self.history = history
        self.manifest = manifest
        self._categories = {str(c) for c in catalogue.category_names}
        # slot -> (label, model): the gate's choice, or (an older bundle) what was served before the switch
        legacy: dict[str, tuple[str, Recommender]] = {
            CART_KNOWN_SLOT: ("kairos:bought_together", together),
            CART_ANONYMOUS_SLOT: ("kairos:bought_together", together),
        }
        if personal is not None:
            legacy[NEXT_BASKET_SLOT] = ("kairos:repeat_personal", personal)
        self.served = {**legacy, **(served or {})}
        self._known = {str(c) for c in history.customers_}

    def served_label(self, slot: str) -> str | None:
        """The label of the model answering ``slot`` (``kairos:<model>`` / ``baseline:<name>``; None: none)."""
        part = self.served.get(slot)
        return part[0] if part is not None else None

    def describe_items(self, item_ids: Sequence[str]) -> list[tuple[str | None, str | None, float | None]]:
        """(name, category, price) per item, None for what the catalogue does not know (one lookup for all)."""
        return self.catalogue.describe(item_ids)

    def _policy(self, filters: Filters, **overrides: Any) -> RulePolicy | None:
        """The rules for ``filters``; None when nothing can pass (only unknown categories, min above max).

        Unknown categories match nothing: they are dropped from both lists before they reach the
        catalogue's per-policy caches (so arbitrary strings cannot grow them).
        """
        include = filters.include_categories
        if include is not None:
            include = frozenset(c for c in include if c in self._categories)
            if not include:
                return None
        if filters.min_price is not None and filters.max_price is not None and filters.min_price > filters.max_price:
            return None
        return RulePolicy(
            include_categories=include,
            exclude_categories=frozenset(c for c in filters.exclude_categories if c in self._categories),
            min_price=filters.min_price,
            max_price=filters.max_price,
            **overrides,
        )

    def _answer(
        self,
        candidates: list[Recommendation],
        query: Query,
        k: int,
        policy: RulePolicy | None,
        served: str | None = None,
    ) -> RecsAnswer:
        if policy is None:
            return RecsAnswer([], cold_start=False, served=served)
        items = apply_rules(candidates, query, k, self.catalogue, policy, fallback=self.popular, history=self.history)
        return RecsAnswer(items, cold_start=not candidates, served=served)

    def _ranked(
        self,
        recommend: Callable[[Query, int], list[Recommendation]],
        query: Query,
        k: int,
        policy: RulePolicy | None,
        served: str | None = None,
    ) -> RecsAnswer:
        """The recommender's candidates through the rules: the first ``k`` + slack of them, and the first ``k`` *
        factor only when the rules keep fewer than ``k`` of those. The rules keep candidates in rank order, so
        the answer is the one ``k`` * factor candidates give; building fewer is the point (the hot path)."""
        asked = min(k + _CANDIDATE_SLACK, k * _CANDIDATE_FACTOR)
        candidates = recommend(query, asked)
        answer = self._answer(candidates, query, k, policy, served)
        if len(candidates) == asked and policy is not None:
            offered = {id(r) for r in candidates}
            if sum(id(r) in offered for r in answer.items) < k:  # the rules dropped too many: ask for more
                answer = self._answer(recommend(query, k * _CANDIDATE_FACTOR), query, k, policy, served)
        return answer

    def _just_bought(self, recent: RecentActivity | None, policy: RulePolicy | None) -> frozenset[str]:
        """Items bought since the snapshot that are not replenishable (catalogue flag or the policy's
        categories): left out of every answer until the next snapshot. A replenishable one (a staple) is not."""
        if recent is None or not recent.bought:
            return frozenset()
        replenishable = self.catalogue.static_masks(policy or RulePolicy())[1]
        codes = self.catalogue.codes(recent.bought)
        return frozenset(i for i, c in zip(recent.bought, codes, strict=True) if c < 0 or not replenishable[c])

    def cart(
        self,
        cart: Sequence[str],
        customer_key: str | None,
        k: int,
        filters: Filters,
        recent: RecentActivity | None = None,
    ) -> RecsAnswer:
        """The cart's completion by the served model: for a customer the bundle knows, the ``cart_known`` slot
        (Kairos's cart blend or a baseline, own items allowed: they are the point of knowing the customer;
        bought together keeps leaving out what they bought), else the ``cart_anonymous`` slot. Items bought
        since the snapshot are left out unless replenishable."""
        known = customer_key is not None and customer_key in self._known
        label, model = self.served[CART_KNOWN_SLOT if known else CART_ANONYMOUS_SLOT]
        policy = self._policy(filters, exclude_bought=not known or label == "kairos:bought_together")
        exclude = filters.exclude | self._just_bought(recent, policy)
        query = Query(customer_key=customer_key, cart=tuple(cart), exclude=exclude)
        return self._ranked(model.recommend, query, k, policy, label)

    def for_customer(
        self, customer_key: str | None, k: int, filters: Filters, recent: RecentActivity | None = None
    ) -> RecsAnswer:
        """The customer's next basket by the served ``next_basket`` model (the gate's choice); popular for a stranger.

        With ``recent``: items carted or viewed since the snapshot lead (at most ``RECENT_SLOTS``), a model holding
        the factor model folds the events in (repeat + personal: neighbours of what was viewed, carted or bought
        move up; :func:`~models.recs.personal.with_activity`), items bought since
        are left out unless replenishable, and a replenishable one bought since is a buy-again candidate (with
        repeat + personal, ranked as one order at the training end would be; with any other served model, moved
        first of that model's items)."""
        policy = self._policy(filters, exclude_bought=False)  # own items are the point of this answer
        part = self.served.get(NEXT_BASKET_SLOT)
        label, model = part if part is not None else (None, None)
        if recent is None or recent.empty:
            now = recent.now if recent is not None else None
            query = Query(customer_key=customer_key, exclude=filters.exclude, now=now)
            known = customer_key is not None and model is not None
            cands = model.recommend(query, k * _CANDIDATE_FACTOR) if model is not None and known else []
            return self._answer(cands, query, k, policy, label)
        gone = self._just_bought(recent, policy)
        query = Query(customer_key=customer_key, exclude=filters.exclude | gone, now=recent.now)
        cands = recent.first(query.exclude)
        if customer_key is not None and model is not None:
            led = {r.item_id for r in cands}
            lead = len(cands)
            cands += [
                r for r in with_activity(model, recent).recommend(query, k * _CANDIDATE_FACTOR) if r.item_id not in led
            ]
            staples = [i for i in recent.bought if i not in gone and i not in query.exclude]
            if isinstance(model, RepeatThenPersonal):  # ranked as one order at the training end would be
                shown = {r.item_id for r in cands}
                for item in staples:
                    if item not in shown:
                        at = next((n for n, r in enumerate(cands) if r.score < _STAPLE_SCORE), len(cands))
                        cands.insert(at, Recommendation(item, _STAPLE_SCORE, RecSource.BUY_AGAIN, _JUST_BOUGHT))
            elif staples:  # any other model (its scores have no band): first of its items, latest bought first
                score = cands[lead].score if lead < len(cands) else 1.0
                moved = set(staples)
                rest = [r for r in cands[lead:] if r.item_id not in moved]
                cands = cands[:lead] + [Recommendation(i, score, RecSource.BUY_AGAIN, _JUST_BOUGHT) for i in staples]
                cands += rest
        return self._answer(cands, query, k, policy, label)

    def similar_items(self, item_id: str, customer_key: str | None, k: int, filters: Filters) -> RecsAnswer:
        """Items like ``item_id`` (factors and category)."""
        policy = self._policy(filters)
        query = Query(customer_key=customer_key, item_id=item_id, exclude=filters.exclude)
        return self._answer(self.similar.recommend(query, k * _CANDIDATE_FACTOR), query, k, policy)

    def buy_again(
        self, customer_key: str | None, k: int, filters: Filters, recent: RecentActivity | None = None
    ) -> RecsAnswer:
        """The customer's items that are due again by their own interval at the data's clock (``recent.now``);
        never topped up with others. An item bought since the snapshot is not due (it was just bought)."""
        policy = self._policy(filters, exclude_bought=False, fill_from_fallback=False)
        exclude = filters.exclude | frozenset(recent.bought if recent is not None else ())
        query = Query(customer_key=customer_key, exclude=exclude, now=recent.now if recent is not None else None)
        model = self.buy_again_model
        cands = model.recommend(query, k) if customer_key is not None and model is not None else []
        return self._answer(cands, query, k, policy)

    def fallback(self, k: int, filters: Filters, cart: Sequence[str] = (), item_id: str | None = None) -> RecsAnswer:
        """Popular items only (the store is unavailable): nothing personal, cart and exclusions still apply."""
        policy = self._policy(filters, exclude_bought=False)
        query = Query(cart=tuple(cart), item_id=item_id, exclude=filters.exclude)
        return self._answer([], query, k, policy)


# The bundle's folders, one per part (the recommenders under the names their manifest lists).
PARTS = ("bought_together", "repeat_personal", "similar", "buy_again", "popular")


class RecsBundle(FolderBundle):
    """Fetched with every file verified (:func:`bundles.registry.fetch_bundle`), then loaded and warmed."""

    kind = "recs"

    @staticmethod
    def write(folder: Path, model: RecsModel) -> None:
        """The bundle's files: one folder per recommender, the catalogue, the history and the manifest (a
        part the data could not train, such as the personal ones without customers, has no folder)."""
        folder = Path(folder)
        parts: tuple[Recommender | None, ...] = (
            model.together,
            model.personal,
            model.similar,
            model.buy_again_model,
            model.popular,
        )
        for name, part in zip(PARTS, parts, strict=True):
            if part is not None:
                part.save(folder / name)
        served = dict(model.manifest.get("served", {}))
        written: set[str] = set()
        for slot, (label, recommender) in model.served.items():
            served[slot] = {**served.get(slot, {}), "model": label}
            where = served_folder(label)
            if label not in _SHARED_PARTS and where not in written:
                recommender.save(folder / where)
                written.add(where)
        model.manifest["served"] = served  # the manifest names exactly what the folders hold
        model.catalogue.save(folder / "catalogue")
        model.history.save(folder / "history", model.catalogue)
        (folder / MANIFEST_FILE).write_text(json.dumps(model.manifest, indent=2), encoding="utf-8")

    @staticmethod
    def erase_customers(folder: Path, keys: Collection[str]) -> dict[str, int]:
        """Remove customers from a bundle folder (an erasure): their purchase history and price range, their
        own items, their due items and their row of the personal model (factors, history, purchases).

        The served models (``served/``) lose the customers' rows too: their history (P-TopFreq), their own
        vectors and orders (cart blend, TIFU-KNN, UP-CF@r), their row and column of the neighbour weights, and
        their candidate rows (the re-purchase ranker). Item-level parts (bought together, similar, popular, the
        ranker's booster) hold no customer and stay as they are.

        Returns:
            Rows removed per file (path relative to ``folder``); files without the customers are untouched.
        """
        folder = Path(folder)
        removed: dict[str, int] = {}
        for rel in ("history/history.parquet", "history/prices.parquet", "repeat_personal/own.parquet"):
            if (folder / rel).is_file():
                removed[rel] = drop_rows(folder / rel, [IX.CUSTOMER], keys)
        removed |= _erase_aligned(folder, "buy_again", keys, _drop_buy_again)
        removed |= _erase_aligned(folder, "repeat_personal/personal", keys, _drop_personal)
        removed |= _erase_served(folder, keys)
        return {k: v for k, v in removed.items() if v}

    def build(self, folder: Path, provenance: Provenance, store_features: Sequence[str] | None) -> RecsModel:
        name, version = provenance.name, provenance.version
        try:
            catalogue = ItemCatalogue.load(folder / "catalogue")
            model = RecsModel(
                BoughtTogether.load(folder / "bought_together"),
                _optional(RepeatThenPersonal.load, folder, "repeat_personal", provenance.manifest),
                SimilarItems.load(folder / "similar"),
                _optional(BuyAgain.load, folder, "buy_again", provenance.manifest),
                Popular.load(folder / "popular"),
                catalogue,
                CustomerHistory.load(folder / "history", catalogue),
                dict(provenance.manifest),
            )
            model.served.update(_served_parts(folder, provenance.manifest, model))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelIntegrityError(f"{name} v{version}: the bundle does not load: {exc}") from exc
        if not len(catalogue):
            raise ModelIntegrityError(f"{name} v{version}: empty catalogue")
        # Warm: one answer of each kind, on the best-connected item and a customer with history.
        hub = model.together.item_ids_[int(np.argmax(np.diff(model.together.nbr_indptr_)))]
        someone = str(model.history.customers_[0]) if len(model.history.customers_) else None
        none = Filters()
        for answer in (
            model.cart([str(hub)], someone, 10, none),
            model.for_customer(someone, 10, none),
            model.similar_items(str(hub), None, 10, none),
            model.fallback(10, none),
        ):
            if not answer.items:
                raise ModelIntegrityError(f"{name} v{version}: warm-up returned no items")
        return model


def _served_parts(folder: Path, manifest: dict[str, Any], model: RecsModel) -> dict[str, tuple[str, Recommender]]:
    """slot -> (label, model) of the manifest's ``served``: a shared part is the model already loaded, any
    other is read once from its folder (one model may serve two slots)."""
    shared: dict[str, Recommender | None] = {
        "kairos:bought_together": model.together,
        "kairos:repeat_personal": model.personal,
    }
    loaded: dict[str, Recommender] = {}
    out: dict[str, tuple[str, Recommender]] = {}
    for slot, entry in manifest.get("served", {}).items():
        if slot not in SERVED_SLOTS:
            raise ValueError(f"unknown served slot {slot!r}")
        label = str(entry["model"])
        if label in shared:
            part = shared[label]
            if part is None:
                raise ValueError(f"{slot} is served by {label}, which the bundle left out")
            out[slot] = (label, part)
            continue
        if label not in loaded:
            loaded[label] = SERVABLE[label](folder / served_folder(label))
        out[slot] = (label, loaded[label])
    return out


def _optional(load: Callable[[Path], _T], folder: Path, part: str, manifest: dict[str, Any]) -> _T | None:
    """A part the manifest says was skipped (its reason under ``skipped``) is None; any other is loaded
    (a missing folder then fails as a damaged bundle)."""
    if part in manifest.get("skipped", {}):
        return None
    return load(folder / part)


def _erase_aligned(
    folder: Path, part: str, keys: Collection[str], drop_arrays: Callable[[Path, np.ndarray], list[str]]
) -> dict[str, int]:
    """A part whose ``customers.parquet`` is aligned with arrays by position: the arrays lose the customers'
    rows first (``drop_arrays`` names the files it rewrote), then the list does."""
    customers_file = folder / part / "customers.parquet"
    if not customers_file.is_file():
        return {}
    customers = pd.read_parquet(customers_file)[IX.CUSTOMER].astype(str).to_numpy()
    drop = np.isin(customers, list(keys))
    if not drop.any():
        return {}
    n = int(drop.sum())
    out = {f"{part}/{name}": n for name in drop_arrays(folder / part, drop)}
    out[f"{part}/customers.parquet"] = drop_rows(customers_file, [IX.CUSTOMER], keys)
    return out


def _drop_buy_again(folder: Path, drop: np.ndarray) -> list[str]:
    """``arrays.npz``: ``indptr`` slices the per-(customer, item) arrays by customer."""
    with np.load(folder / "arrays.npz", allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    counts = np.diff(arrays["indptr"])
    keep = np.repeat(~drop, counts)
    out = {name: values[keep] for name, values in arrays.items() if name != "indptr"}
    out["indptr"] = np.concatenate([[0], np.cumsum(counts[~drop])]).astype(arrays["indptr"].dtype)
    np.savez(folder / "arrays.npz", **out)
    return ["arrays.npz"]


def _drop_personal(folder: Path, drop: np.ndarray) -> list[str]:
    """The personal model: one row per customer in the user factors and the history and purchase matrices."""
    factors = np.load(folder / "user_factors.npy", allow_pickle=False)
    np.save(folder / "user_factors.npy", factors[~drop], allow_pickle=False)
    for name in ("history.npz", "bought.npz"):
        matrix = sp.load_npz(folder / name).tocsr()
        sp.save_npz(folder / name, matrix[~drop])
    return ["user_factors.npy", "history.npz", "bought.npz"]


def _erase_served(folder: Path, keys: Collection[str]) -> dict[str, int]:
    """The served models' per-customer rows (see :meth:`RecsBundle.erase_customers`)."""
    root = folder / SERVED_DIR
    if not root.is_dir():
        return {}
    removed: dict[str, int] = {}
    for path in sorted(root.rglob("*.parquet")):
        rel = str(path.relative_to(folder))
        if path.name != "customers.parquet" and IX.CUSTOMER in pd.read_parquet(path).columns:  # P-TopFreq history
            removed[rel] = drop_rows(path, [IX.CUSTOMER], keys)
    for part in sorted(p.parent for p in root.rglob("customers.parquet")):
        removed |= _erase_aligned(folder, str(part.relative_to(folder)), keys, _drop_served_arrays)
    return removed


def _drop_served_arrays(folder: Path, drop: np.ndarray) -> list[str]:
    """A served model's arrays aligned with its ``customers.parquet``: the CSR matrices with one row per
    customer (``profile``, ``orders``; ``neighbours`` loses the column too) in ``matrices.npz`` / ``own.npz``,
    and the ranker's candidate rows in ``candidates.npz`` (customer codes renumbered)."""
    keep = np.flatnonzero(~drop)
    written = []
    for name in ("matrices.npz", "own.npz"):
        if not (folder / name).is_file():
            continue
        with np.load(folder / name, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        for prefix in sorted({key.rsplit("_", 1)[0] for key in arrays if key.endswith("_indptr")}):
            matrix = csr_from(arrays, prefix)
            if matrix.shape[0] != len(drop):
                continue
            matrix = matrix[keep]
            if prefix == "neighbours":
                matrix = matrix[:, keep]
            arrays |= prefixed(prefix, csr_arrays(matrix.tocsr()))
        np.savez(folder / name, **arrays)
        written.append(name)
    if (folder / "candidates.npz").is_file():
        with np.load(folder / "candidates.npz", allow_pickle=False) as data:
            c = {key: data[key] for key in data.files}
        counts = np.diff(c["ptr"])
        mine = ~drop[c["customers"]]  # candidate blocks are per listed customer, in ``customers`` order
        rows = np.repeat(mine, counts)
        code = np.cumsum(~drop) - 1  # old customer code -> new
        np.savez(
            folder / "candidates.npz",
            customers=code[c["customers"][mine]].astype(c["customers"].dtype),
            ptr=np.concatenate([[0], np.cumsum(counts[mine])]).astype(c["ptr"].dtype),
            items=c["items"][rows],
            static=c["static"][rows],
            last_time=c["last_time"][rows],
            customer_last=c["customer_last"][mine],
        )
        written.append("candidates.npz")
    return written
