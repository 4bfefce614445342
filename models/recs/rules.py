"""The business-rule layer applied to every answer, whatever recommender produced the candidates.

:func:`apply_rules` takes candidates (one ranked list, or several in priority order), drops what may
not be shown (cart, caller exclusions, the query's item, items already bought unless replenishable or
proposed by buy-again, inactive or out-of-stock items, categories and prices outside the policy),
keeps the first occurrence of each item, and tops the answer up to ``k`` from the
:class:`~models.recs.popular.Popular` fallback (labelled ``popular`` with its reason), then, if the
fallback runs dry, from the rest of the catalogue.

Checks run on integer catalogue codes with NumPy masks; the parts that depend only on the catalogue
and the policy (active, stock, category lists, absolute price band) are computed once per policy and
cached on the catalogue, as is the fallback's ranking in catalogue codes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from models.base import Estimator, check_fitted
from models.recs.base import IX, Query, Recommendation, RecSource
from models.recs.popular import Popular, purchases, read_strings

PAID_PRICE = "unit_price"  # optional interactions column: the unit price actually paid
REPLENISHABLE = "replenishable"  # optional items column: a flag for items bought again and again
CATALOGUE_FILE = "catalogue.parquet"
CATALOGUE_REASON = "from our catalogue"
POLICY_CACHE_LIMIT = 256  # policies whose masks a catalogue keeps (filters come from callers: bounded)


@dataclass(frozen=True)
class RulePolicy:
    """Which rules apply (JSON-able through :meth:`to_dict` / :meth:`from_dict`).

    Attributes:
        exclude_bought: drop items the customer already bought (except replenishable ones and
            candidates whose source is buy-again).
        replenishable_categories: categories whose items may be recommended again after a purchase.
        exclude_inactive: drop items flagged inactive (a missing flag counts as active).
        exclude_out_of_stock: drop items flagged out of stock (a missing flag counts as in stock).
        include_categories: only these categories, when given.
        exclude_categories: never these categories.
        min_price: the lowest catalogue price allowed, when given (items without a price pass).
        max_price: the highest catalogue price allowed, when given.
        customer_price_band: keep prices within the customer's usual range: between their 10th
            percentile paid unit price divided by ``price_band_widen`` and their 90th multiplied by it.
        price_band_widen: how far the customer's band is widened (>= 1).
        fill_from_fallback: top the answer up to ``k`` items.
    """

    exclude_bought: bool = True
    replenishable_categories: frozenset[str] = field(default_factory=frozenset)
    exclude_inactive: bool = True
    exclude_out_of_stock: bool = True
    include_categories: frozenset[str] | None = None
    exclude_categories: frozenset[str] = field(default_factory=frozenset)
    min_price: float | None = None
    max_price: float | None = None
    customer_price_band: bool = False
    price_band_widen: float = 1.5
    fill_from_fallback: bool = True

    def __post_init__(self) -> None:
        if self.price_band_widen < 1:
            raise ValueError(f"price_band_widen must be >= 1, got {self.price_band_widen}")
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"min_price {self.min_price} is above max_price {self.max_price}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, frozenset):
                out[key] = sorted(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RulePolicy:
        kw = dict(data)
        for key in ("replenishable_categories", "exclude_categories", "include_categories"):
            if kw.get(key) is not None:
                kw[key] = frozenset(kw[key])
        return cls(**kw)


class ItemCatalogue:
    """What the rules know per item: name, category, price and flags, as arrays indexed by a code.

    Args:
        item_ids: item ids (unique).
        names, categories: per item (None when unknown).
        prices: per item (NaN when unknown).
        active, in_stock, replenishable: flags per item (missing flags already filled: see
            :meth:`from_items`).
    """

    def __init__(
        self,
        item_ids: Sequence[str] | np.ndarray,
        names: Sequence[str | None] | np.ndarray,
        categories: Sequence[str | None] | np.ndarray,
        prices: Sequence[float] | np.ndarray,
        active: Sequence[bool] | np.ndarray,
        in_stock: Sequence[bool] | np.ndarray,
        replenishable: Sequence[bool] | np.ndarray | None = None,
    ) -> None:
        self.item_ids = np.array([str(i) for i in item_ids], dtype=object)
        n = len(self.item_ids)
        self.names = np.array(list(names), dtype=object)
        self.categories = np.array(list(categories), dtype=object)
        self.prices = np.asarray(prices, dtype=np.float64)
        self.active = np.asarray(active, dtype=bool)
        self.in_stock = np.asarray(in_stock, dtype=bool)
        self.replenishable = np.zeros(n, dtype=bool) if replenishable is None else np.asarray(replenishable, bool)
        for name in ("names", "categories", "prices", "active", "in_stock", "replenishable"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} values for {n} items")
        self._pos = {item: p for p, item in enumerate(self.item_ids)}
        if len(self._pos) != n:
            raise ValueError("item ids must be unique")
        known = np.array([c is not None for c in self.categories], dtype=bool)
        self.category_names = np.unique(self.categories[known]).astype(object) if known.any() else np.array([], object)
        self._cat_pos = {str(c): i for i, c in enumerate(self.category_names)}
        self.category_codes = np.array(
            [self._cat_pos.get(str(c), -1) if c is not None else -1 for c in self.categories]
        )
        # per policy: the allowed mask, the replenishable mask, and the allowed mask as bytes
        self._static: dict[RulePolicy, tuple[np.ndarray, np.ndarray, bytes]] = {}
        self._fallback: dict[str | None, tuple[Popular, np.ndarray, np.ndarray]] = {}
        self._described: list[tuple[str | None, str | None, float | None]] | None = None

    def __len__(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_items(cls, items: pd.DataFrame) -> ItemCatalogue:
        """From the ingested items table; a missing ``active`` / ``in_stock`` counts as True, a missing
        ``replenishable`` as False."""
        if IX.ITEM not in items.columns:
            raise ValueError(f"items lack column {IX.ITEM!r}")
        df = items[items[IX.ITEM].notna()].drop_duplicates(IX.ITEM)
        ids = df[IX.ITEM].astype("string").to_numpy(dtype=object)

        def strings(col: str) -> list[str | None]:
            if col not in df.columns:
                return [None] * len(df)
            return [None if pd.isna(v) else str(v) for v in df[col].astype("string")]

        def flags(col: str, default: bool) -> np.ndarray:
            if col not in df.columns:
                return np.full(len(df), default)
            return df[col].astype("boolean").fillna(default).to_numpy(dtype=bool)

        price = (
            pd.to_numeric(df[IX.PRICE], errors="coerce").astype("float64").to_numpy()
            if IX.PRICE in df.columns
            else np.full(len(df), np.nan)
        )
        return cls(
            ids,
            strings(IX.NAME),
            strings(IX.CATEGORY),
            price,
            flags(IX.ACTIVE, True),
            flags(IX.IN_STOCK, True),
            flags(REPLENISHABLE, False),
        )

    def codes(self, item_ids: Iterable[str]) -> np.ndarray:
        """Catalogue codes of ``item_ids`` (-1 for an item the catalogue does not know)."""
        pos = self._pos
        return np.fromiter((pos.get(i, -1) for i in item_ids), dtype=np.int64)

    def describe(self, item_ids: Iterable[str]) -> list[tuple[str | None, str | None, float | None]]:
        """(name, category, price) per item; None for what the catalogue does not know (an unknown item,
        a missing or non-finite price). Plain Python tuples, built once: numpy indexes one item slowly."""
        described = self._described
        if described is None:
            described = self._described = [
                (n, c, p if math.isfinite(p) else None)
                for n, c, p in zip(self.names.tolist(), self.categories.tolist(), self.prices.tolist(), strict=True)
            ]
        pos, unknown = self._pos, (None, None, None)
        return [described[p] if (p := pos.get(i)) is not None else unknown for i in item_ids]

    def static_masks(self, policy: RulePolicy) -> tuple[np.ndarray, np.ndarray, bytes]:
        """(allowed, replenishable, allowed as bytes) per item: the checks that depend on the catalogue and
        policy only. The bytes (1 allowed, 0 not) serve item-by-item checks: indexed one item at a time, they
        cost a fraction of a numpy array. Cached per policy, at most :data:`POLICY_CACHE_LIMIT` policies
        (callers may let arbitrary filters through: a full cache starts again empty)."""
        cached = self._static.get(policy)
        if cached is not None:
            return cached
        if len(self._static) >= POLICY_CACHE_LIMIT:
            self._static.clear()
        ok = np.ones(len(self), dtype=bool)
        if policy.exclude_inactive:
            ok &= self.active
        if policy.exclude_out_of_stock:
            ok &= self.in_stock
        cats = self.categories
        if policy.include_categories is not None:
            ok &= np.array([c in policy.include_categories for c in cats], dtype=bool)
        if policy.exclude_categories:
            ok &= ~np.array([c in policy.exclude_categories for c in cats], dtype=bool)
        nan = np.isnan(self.prices)
        if policy.min_price is not None:
            ok &= nan | (self.prices >= policy.min_price)
        if policy.max_price is not None:
            ok &= nan | (self.prices <= policy.max_price)
        replen = self.replenishable | np.array([c in policy.replenishable_categories for c in cats], dtype=bool)
        masks = self._static[policy] = (ok, replen, ok.tobytes())
        return masks

    def fallback_codes(self, fallback: Popular, category: str | None) -> tuple[np.ndarray, np.ndarray]:
        """The fallback's ranking (of ``category`` when given) as catalogue codes and scores (cached)."""
        cached = self._fallback.get(category)
        if cached is not None and cached[0] is fallback:
            return cached[1], cached[2]
        ids, scores = fallback.ranked(category)
        codes = self.codes(ids)
        known = codes >= 0
        self._fallback[category] = (fallback, codes[known], scores[known])
        return codes[known], scores[known]

    def save(self, folder: Path) -> None:
        """Write ``catalogue.parquet`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            {
                IX.ITEM: pd.array(self.item_ids, dtype="string"),
                IX.NAME: pd.array(self.names, dtype="string"),
                IX.CATEGORY: pd.array(self.categories, dtype="string"),
                IX.PRICE: self.prices,
                IX.ACTIVE: self.active,
                IX.IN_STOCK: self.in_stock,
                REPLENISHABLE: self.replenishable,
            }
        ).to_parquet(folder / CATALOGUE_FILE, index=False)

    @classmethod
    def load(cls, folder: Path) -> ItemCatalogue:
        """Read a catalogue written by :meth:`save`."""
        path = Path(folder) / CATALOGUE_FILE
        df = pd.read_parquet(path)
        return cls(
            read_strings(path, IX.ITEM),
            read_strings(path, IX.NAME),
            read_strings(path, IX.CATEGORY),
            df[IX.PRICE].to_numpy(dtype=np.float64),
            df[IX.ACTIVE].to_numpy(dtype=bool),
            df[IX.IN_STOCK].to_numpy(dtype=bool),
            df[REPLENISHABLE].to_numpy(dtype=bool),
        )


class CustomerHistory(Estimator):
    """Per customer: the catalogue items they bought and their usual unit price (10th, 90th percentile).

    The price paid comes from the interactions' ``unit_price`` column where present, else from the
    catalogue price. Items unknown to the catalogue are left out.

    Attributes (after fit):
        customers_: customer keys, sorted; ``indptr_`` slices ``bought_`` (catalogue codes) per customer.
        price_lo_, price_hi_: each customer's 10th and 90th percentile price (NaN when unknown).
    """

    def fit(self, interactions: pd.DataFrame, catalogue: ItemCatalogue) -> Self:
        """Learn bought items and price percentiles from the purchases of known customers."""
        buys = purchases(interactions)
        buys = buys[buys[IX.CUSTOMER].notna()]
        codes = catalogue.codes(buys[IX.ITEM].astype("string"))
        price = catalogue.prices[np.maximum(codes, 0)]
        if PAID_PRICE in buys.columns:
            paid = pd.to_numeric(buys[PAID_PRICE], errors="coerce").astype("float64").to_numpy()
            price = np.where(np.isnan(paid), price, paid)
        price = np.where(codes >= 0, price, np.nan)
        df = pd.DataFrame({"c": buys[IX.CUSTOMER].astype("string").to_numpy(dtype=object), "code": codes, "p": price})
        df = df[df["code"] >= 0]
        bought = df.drop_duplicates(["c", "code"]).sort_values(["c", "code"])
        customers = bought["c"].to_numpy(dtype=object)
        self.customers_, starts = np.unique(customers, return_index=True)
        self.indptr_ = np.append(starts, len(bought)).astype(np.int64)
        self.bought_ = bought["code"].to_numpy(dtype=np.int64)
        q = df.groupby("c")["p"].quantile([0.1, 0.9]).unstack().reindex(pd.Index(self.customers_, dtype=object))
        self.price_lo_ = q[0.1].to_numpy(dtype=np.float64) if len(q) else np.zeros(0)
        self.price_hi_ = q[0.9].to_numpy(dtype=np.float64) if len(q) else np.zeros(0)
        self._bind(catalogue)
        return self

    def _bind(self, catalogue: ItemCatalogue) -> None:
        self._pos = {str(c): p for p, c in enumerate(self.customers_)}
        self._n_items = len(catalogue)

    def bought(self, customer_key: str | None) -> np.ndarray:
        """Catalogue codes of the items ``customer_key`` bought (empty when unknown)."""
        p = None if customer_key is None else self._pos.get(customer_key)
        if p is None:
            return self.bought_[:0]
        return self.bought_[self.indptr_[p] : self.indptr_[p + 1]]

    def price_band(self, customer_key: str | None) -> tuple[float, float]:
        """The customer's (10th, 90th) percentile price; NaNs when unknown."""
        p = None if customer_key is None else self._pos.get(customer_key)
        if p is None:
            return float("nan"), float("nan")
        return float(self.price_lo_[p]), float(self.price_hi_[p])

    def save(self, folder: Path, catalogue: ItemCatalogue) -> None:
        """Write ``history.parquet`` (one row per bought item) and ``prices.parquet`` into ``folder``."""
        check_fitted(self, "customers_")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        counts = np.diff(self.indptr_)
        pd.DataFrame(
            {
                IX.CUSTOMER: pd.array(np.repeat(self.customers_, counts), dtype="string"),
                IX.ITEM: pd.array(catalogue.item_ids[self.bought_], dtype="string"),
            }
        ).to_parquet(folder / "history.parquet", index=False)
        pd.DataFrame(
            {
                IX.CUSTOMER: pd.array(self.customers_, dtype="string"),
                "price_lo": self.price_lo_,
                "price_hi": self.price_hi_,
            }
        ).to_parquet(folder / "prices.parquet", index=False)

    @classmethod
    def load(cls, folder: Path, catalogue: ItemCatalogue) -> CustomerHistory:
        """Read :meth:`save`'s files, mapping item ids to ``catalogue``'s codes (unknown ones dropped)."""
        folder = Path(folder)
        hist = pd.read_parquet(folder / "history.parquet")
        prices = pd.read_parquet(folder / "prices.parquet")
        out = cls()
        out.customers_ = read_strings(folder / "prices.parquet", IX.CUSTOMER)
        pos = {c: p for p, c in enumerate(out.customers_)}
        cust = np.fromiter((pos[c] for c in hist[IX.CUSTOMER].astype("string")), dtype=np.int64, count=len(hist))
        codes = catalogue.codes(hist[IX.ITEM].astype("string"))
        keep = codes >= 0
        order = np.lexsort((codes[keep], cust[keep]))
        out.bought_ = codes[keep][order]
        out.indptr_ = np.concatenate([[0], np.cumsum(np.bincount(cust[keep], minlength=len(out.customers_)))])
        out.indptr_ = out.indptr_.astype(np.int64)
        out.price_lo_ = prices["price_lo"].to_numpy(dtype=np.float64)
        out.price_hi_ = prices["price_hi"].to_numpy(dtype=np.float64)
        out._bind(catalogue)
        return out


_LOOP_MAX = 64  # candidate lists up to this long are checked item by item, longer ones in numpy


def apply_rules(
    candidates: Sequence[Recommendation] | Sequence[Sequence[Recommendation]],
    query: Query,
    k: int,
    catalogue: ItemCatalogue,
    policy: RulePolicy | None = None,
    fallback: Popular | None = None,
    history: CustomerHistory | None = None,
) -> list[Recommendation]:
    """The answer shown to the customer: candidates that pass the rules, topped up to ``k``.

    Args:
        candidates: one ranked list, or several lists in priority order (concatenated: an earlier
            list's item wins over the same item later).
        query: the query (cart, exclusions, item, customer, category).
        k: how many items to return.
        catalogue: names, categories, prices and flags; an item it does not know is never returned.
        policy: the rules (defaults: :class:`RulePolicy`'s).
        fallback: the popularity ranking to top up from (per ``query.category`` when set, or the one
            category of ``policy.include_categories``); None: no top-up from popularity.
        history: what each customer bought and their price band (needed by ``exclude_bought`` and
            ``customer_price_band``; without it those two rules are skipped).

    Returns:
        At most ``k`` recommendations, no duplicates; exactly ``k`` when the catalogue has enough
        allowed items and ``policy.fill_from_fallback`` is on.
    """
    policy = policy or RulePolicy()
    flat = _flatten(candidates)
    if k <= 0:
        return []
    static, replen, static_bytes = catalogue.static_masks(policy)
    n = len(catalogue)
    pos = catalogue._pos
    banned = [*query.cart, *query.exclude] + ([query.item_id] if query.item_id is not None else [])
    taken = {c for c in (pos.get(i, -1) for i in banned) if c >= 0}  # banned, then every item chosen
    bought_codes: list[int] = []
    if policy.exclude_bought and history is not None and query.customer_key is not None:
        codes = history.bought(query.customer_key)
        bought_codes = codes[~replen[codes]].tolist()
    lo, hi = -math.inf, math.inf
    if policy.customer_price_band and history is not None:
        p10, p90 = history.price_band(query.customer_key)
        if not math.isnan(p10):
            lo, hi = p10 / policy.price_band_widen, p90 * policy.price_band_widen
    cat_code: int | None = None
    if query.category is not None:
        cat_code = catalogue._cat_pos.get(query.category, -2)  # -2: a category no item has

    out: list[Recommendation] = []
    if flat and len(flat) <= _LOOP_MAX:  # a short list (the hot path): item by item, in Python sets and bytes
        bought_set = set(bought_codes)
        buy_again, prices, cat_codes = RecSource.BUY_AGAIN, catalogue.prices, catalogue.category_codes
        band = math.isfinite(lo)
        for r in flat:
            code = pos.get(r.item_id, -1)
            if code < 0 or not static_bytes[code] or code in taken:
                continue
            if code in bought_set and r.source != buy_again:
                continue
            if cat_code is not None and cat_codes[code] != cat_code:
                continue
            if band:
                price = float(prices[code])
                if not (math.isnan(price) or lo <= price <= hi):
                    continue
            out.append(r)
            taken.add(code)
            if len(out) == k:
                break
        if len(out) >= k or not policy.fill_from_fallback:
            return out

    # the numpy path: a long candidate list, and the top-up
    blocked = np.zeros(n, dtype=bool)
    blocked[list(taken)] = True
    bought = np.zeros(n, dtype=bool)
    bought[bought_codes] = True

    def allowed(codes: np.ndarray, may_be_bought: np.ndarray | bool) -> np.ndarray:
        c = np.maximum(codes, 0)
        ok = (codes >= 0) & static[c] & ~blocked[c] & (~bought[c] | may_be_bought)
        if cat_code is not None:
            ok &= catalogue.category_codes[c] == cat_code
        if np.isfinite(lo):
            price = catalogue.prices[c]
            ok &= np.isnan(price) | ((price >= lo) & (price <= hi))
        return ok

    if flat and len(flat) > _LOOP_MAX:
        codes = catalogue.codes(r.item_id for r in flat)
        from_buy_again = np.fromiter((r.source == RecSource.BUY_AGAIN for r in flat), dtype=bool, count=len(flat))
        passing = np.flatnonzero(allowed(codes, from_buy_again))
        _, first = np.unique(codes[passing], return_index=True)
        for p in passing[np.sort(first)][:k]:
            out.append(flat[p])
            blocked[codes[p]] = True
    if len(out) >= k or not policy.fill_from_fallback:
        return out

    if fallback is not None:
        category = query.category
        if category is None and policy.include_categories is not None and len(policy.include_categories) == 1:
            category = next(iter(policy.include_categories))
        codes, scores = catalogue.fallback_codes(fallback, category)
        reason = fallback.reason(category)
        _top_up(out, k, codes, scores, allowed, blocked, catalogue, reason)
    if len(out) < k:  # the fallback ran dry: whatever the catalogue still allows, in catalogue order
        rest = np.arange(n)
        _top_up(out, k, rest, np.zeros(n), allowed, blocked, catalogue, CATALOGUE_REASON)
    return out


def _top_up(
    out: list[Recommendation],
    k: int,
    codes: np.ndarray,
    scores: np.ndarray,
    allowed: Any,
    blocked: np.ndarray,
    catalogue: ItemCatalogue,
    reason: str,
) -> None:
    """Append allowed, not yet chosen items from a ranking until ``out`` holds ``k`` (chunks of the ranking)."""
    start, chunk = 0, max(4 * k, 32)
    while len(out) < k and start < len(codes):
        part = codes[start : start + chunk]
        ok = np.flatnonzero(allowed(part, False))
        for p in ok[: k - len(out)]:
            code = int(part[p])
            out.append(
                Recommendation(str(catalogue.item_ids[code]), float(scores[start + p]), RecSource.POPULAR, reason)
            )
            blocked[code] = True
        start += chunk
        chunk *= 4


def _flatten(candidates: Sequence[Recommendation] | Sequence[Sequence[Recommendation]]) -> list[Recommendation]:
    flat: list[Recommendation] = []
    for c in candidates:
        if isinstance(c, Recommendation):
            flat.append(c)
        else:
            flat.extend(c)
    return flat
