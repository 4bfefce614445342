"""Lookalike audiences: from a seed list of customers, rank the rest of the base by how much they resemble it.

Two methods over the same profile (the feature-store columns, optionally each customer's category mix):

* ``pu`` (default): a **positive-unlabelled** classifier. The seed is the labelled positive class, the
  rest of the base is unlabelled (it holds more customers like the seed, unmarked). Under the usual
  assumption that the seed was picked from the lookalikes independently of their profile ("selected
  completely at random", Elkan & Noto 2008), a classifier of seed vs unlabelled ranks the unlabelled
  exactly as the probability of belonging would. It is bagged (Mordelet & Vert 2014): ``n_bags``
  L2-regularised logistic regressions, each of the seed against a fresh random sample of the
  unlabelled (``unlabelled_ratio`` times the seed's size), averaged. Logistic rather than LightGBM
  because seeds are small (tens to a few thousand customers): a linear model on standardised features
  does not memorise them, fits in milliseconds on a 100k base, is deterministic, and its coefficients
  give every customer's reasons directly (coefficient x standardised value, summed per family of
  features), where a tree ensemble would need SHAP values to explain itself.
* ``embedding``: nearest neighbours in a learned embedding: PCA of the standardised profile to
  ``n_components`` dimensions; a customer's score is their mean cosine similarity to their
  ``n_neighbours`` nearest seed customers.

Reasons say in words which families of features make a customer like the seed ("like the seed in:
spend band, category mix, city"). The seed itself is never in the answer. Pure computation: no files
but :meth:`Lookalike.to_dict` / :meth:`Lookalike.from_dict` (JSON).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any, Self

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from features.contract import Col
from features.errors import InputDataError, KairosError
from models.base import Estimator, check_fitted

__all__ = [
    "METHODS",
    "Lookalike",
    "LookalikeError",
    "category_mix",
    "family_of",
    "precision_recall_at",
    "profile_columns",
    "rfm_nearest_scores",
]

FORMAT_VERSION = 1
METHODS = ("pu", "embedding")
MIX_PREFIX = "mix_"  # category-share columns made by :func:`category_mix`
TEXT_COLUMNS = ("country", "city", "gender", "age_band", "most_viewed_category_30d")
# never similarity: consent decides who may be contacted, not who is alike; the hour-of-week histogram is
# 168 sparse columns that would drown the rest
_SKIP_PREFIXES = ("consent_", "how_")

# column prefix (or name) -> the family it is reported under, first match wins
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("monetary_", "spend band"),
    ("avg_order_value", "spend band"),
    ("order_value_trend", "spend band"),
    ("recency_days", "recency"),
    ("orders_", "order frequency"),
    ("gap_", "order rhythm"),
    ("overdue_ratio", "order rhythm"),
    ("tenure_days", "tenure"),
    ("customer_age_days", "tenure"),
    (MIX_PREFIX, "category mix"),
    ("n_categories", "category mix"),
    ("most_viewed_category_30d", "category mix"),
    ("n_brands", "brand loyalty"),
    ("top_brand_share", "brand loyalty"),
    ("items_per_order", "basket size"),
    ("basket_size_trend", "basket size"),
    ("online_share", "online share"),
    ("discount_share", "discount use"),
    ("return_rate", "returns"),
    ("cancel_rate", "returns"),
    ("views_", "site browsing"),
    ("sessions_", "site browsing"),
    ("add_to_carts_", "site browsing"),
    ("abandoned_carts_", "site browsing"),
    ("days_since_last_visit", "site browsing"),
    ("cart_size", "site browsing"),
    ("sends_", "message engagement"),
    ("opens_", "message engagement"),
    ("clicks_", "message engagement"),
    ("open_rate_", "message engagement"),
    ("click_rate_", "message engagement"),
    ("days_since_open_", "message engagement"),
    ("unsubscribes_", "message engagement"),
    ("age_", "age band"),
    ("gender", "gender"),
    ("country", "country"),
    ("city", "city"),
    ("loyalty_member", "loyalty membership"),
    ("days_to_anniversary", "tenure"),
    ("attr_", "customer attributes"),
)


class LookalikeError(KairosError):
    """A seed or a base the lookalike cannot work with; the message says what is wrong."""


def family_of(column: str) -> str:
    """The words a feature column is reported under in reasons (``monetary_365d`` -> ``spend band``)."""
    for prefix, family in _FAMILIES:
        if column.startswith(prefix):
            return family
    return column.replace("_", " ")


def profile_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of a feature frame a lookalike compares on: every numeric feature (not consent, not the
    hour-of-week bins), the text profile columns present, and any category-mix column."""
    out = []
    for column in frame.columns:
        if column == Col.CUSTOMER_KEY or column.startswith(_SKIP_PREFIXES):
            continue
        if column in TEXT_COLUMNS or pd.api.types.is_numeric_dtype(frame[column]):
            if pd.api.types.is_bool_dtype(frame[column]) and not column.startswith(MIX_PREFIX):
                continue  # segment flags are derived from the numeric features already present
            out.append(column)
    return out


def category_mix(lines: pd.DataFrame, items: pd.DataFrame, top: int = 20) -> pd.DataFrame:
    """Each customer's share of order lines per category (the ``top`` most bought categories, the rest
    pooled in ``mix_other``): one row per customer_key, columns ``mix_<category>``.

    Args:
        lines: order lines with ``customer_key`` and ``item_id`` (already cut at the as-of instant).
        items: the catalogue with ``item_id`` and ``category``.
        top: how many categories get their own column.

    Raises:
        InputDataError: a column is missing.
    """
    for name, frame, cols in (
        ("order_lines", lines, (Col.CUSTOMER_KEY, Col.ITEM_ID)),
        ("items", items, (Col.ITEM_ID,)),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise InputDataError(f"{name} lacks column(s) {missing}")
    if Col.CATEGORY not in items.columns or items[Col.CATEGORY].notna().sum() == 0:
        return pd.DataFrame({Col.CUSTOMER_KEY: pd.Series(dtype=str)})
    cats = items[[Col.ITEM_ID, Col.CATEGORY]].dropna().drop_duplicates(Col.ITEM_ID)
    bought = lines.loc[lines[Col.CUSTOMER_KEY].notna(), [Col.CUSTOMER_KEY, Col.ITEM_ID]].merge(cats, on=Col.ITEM_ID)
    if bought.empty:
        return pd.DataFrame({Col.CUSTOMER_KEY: pd.Series(dtype=str)})
    leaders = bought[Col.CATEGORY].value_counts().index[:top]
    category = bought[Col.CATEGORY].where(bought[Col.CATEGORY].isin(leaders), "other").astype(str)
    slug = category.str.lower().str.replace(r"[^a-z0-9]+", "_", regex=True).str.strip("_")
    counts = pd.crosstab(bought[Col.CUSTOMER_KEY].astype(str), MIX_PREFIX + slug)
    shares = counts.div(counts.sum(axis=1), axis=0).astype(np.float32)
    shares.columns.name = None
    return shares.reset_index().rename(columns={"row_0": Col.CUSTOMER_KEY, "index": Col.CUSTOMER_KEY})


def _text(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A text column as plain strings, missing values (and an absent column) as ``""``."""
    if column not in frame.columns:
        return np.full(len(frame), "", dtype=object)
    values = frame[column].astype(object)
    return values.where(values.notna(), "").astype(str).to_numpy(dtype=object)


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


class Lookalike(Estimator):
    """Rank a base by similarity to a seed of its customers (see the module docstring).

    Args:
        method: ``pu`` (bagged positive-unlabelled logistic regression) or ``embedding`` (PCA + nearest
            seed neighbours).
        columns: profile columns to compare on; None: :func:`profile_columns` of the fitted frame.
        n_bags: logistic regressions averaged (``pu``).
        unlabelled_ratio: unlabelled customers per seed customer in each bag (``pu``).
        l2: inverse regularisation strength ``C`` of each regression (``pu``).
        n_components: embedding dimensions (``embedding``).
        n_neighbours: nearest seed customers averaged (``embedding``).
        max_levels: most frequent values of a text column that get their own indicator.
        random_state: seed of the bag samples and of PCA.
    """

    def __init__(
        self,
        method: str = "pu",
        columns: Sequence[str] | None = None,
        n_bags: int = 10,
        unlabelled_ratio: float = 3.0,
        l2: float = 0.1,
        n_components: int = 16,
        n_neighbours: int = 10,
        max_levels: int = 20,
        random_state: int = 0,
    ) -> None:
        self.method = method
        self.columns = columns
        self.n_bags = n_bags
        self.unlabelled_ratio = unlabelled_ratio
        self.l2 = l2
        self.n_components = n_components
        self.n_neighbours = n_neighbours
        self.max_levels = max_levels
        self.random_state = random_state

    # --- the design matrix ------------------------------------------------------------------------

    def _design(self, frame: pd.DataFrame) -> np.ndarray:
        """Standardised numeric columns (signed log, fitted centre and scale, missing -> 0) and text indicators."""
        parts = []
        if self.numeric_:
            raw = np.column_stack(
                [
                    pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                    if c in frame.columns
                    else np.full(len(frame), np.nan)
                    for c in self.numeric_
                ]
            )
            z = (_signed_log(raw) - self.center_) / self.scale_
            parts.append(np.where(np.isfinite(z), z, 0.0))
        for column, levels in self.levels_.items():
            values = _text(frame, column)
            for level in levels:
                parts.append(((values == level).astype(np.float64) - self.level_mean_[f"{column}={level}"])[:, None])
        return np.hstack(parts) if parts else np.zeros((len(frame), 0))

    def _check_frame(self, frame: pd.DataFrame) -> None:
        if not isinstance(frame, pd.DataFrame) or Col.CUSTOMER_KEY not in frame.columns:
            raise InputDataError("the base must be a DataFrame with a customer_key column")
        if frame[Col.CUSTOMER_KEY].isna().any():
            raise InputDataError(f"the base has {int(frame[Col.CUSTOMER_KEY].isna().sum())} rows without customer_key")

    # --- fit ----------------------------------------------------------------------------------------

    def fit(self, frame: pd.DataFrame, seed: Iterable[str]) -> Self:
        """Learn what sets the seed apart from the rest of ``frame``.

        Args:
            frame: the base, one row per customer: ``customer_key`` and profile columns.
            seed: customer keys of the seed (every one must be in ``frame``).

        Raises:
            LookalikeError: unknown method, fewer than 2 seed customers, seed keys missing from the base,
                or no unlabelled customers left.
            InputDataError: no customer_key column, or keys missing.
        """
        if self.method not in METHODS:
            raise LookalikeError(f"method must be one of {list(METHODS)}, got {self.method!r}")
        self._check_frame(frame)
        keys = frame[Col.CUSTOMER_KEY].astype(str).to_numpy()
        wanted = list(dict.fromkeys(str(k) for k in seed))
        present = set(keys)
        unknown = [k for k in wanted if k not in present]
        if unknown:
            raise LookalikeError(f"{len(unknown)} seed customer(s) are not in the base, e.g. {unknown[0]!r}")
        if len(wanted) < 2:
            raise LookalikeError(f"the seed needs at least 2 customers, got {len(wanted)}")
        is_seed = np.isin(keys, wanted)
        if is_seed.all():
            raise LookalikeError("every customer of the base is in the seed: nobody is left to rank")
        columns = list(self.columns) if self.columns is not None else profile_columns(frame)
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            raise InputDataError(f"the base lacks profile column(s) {absent}")
        text = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
        self.numeric_ = [c for c in columns if c not in text]
        if self.numeric_:
            raw = _signed_log(frame[self.numeric_].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64))
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: centre 0, scale 1 below
                center = np.nanmean(raw, axis=0)
                scale = np.nanstd(raw, axis=0)
            self.center_ = np.where(np.isfinite(center), center, 0.0)
            self.scale_ = np.where(np.isfinite(scale) & (scale > 1e-9), scale, 1.0)
        else:
            self.center_ = np.zeros(0)
            self.scale_ = np.ones(0)
        self.levels_: dict[str, list[str]] = {}
        self.level_mean_: dict[str, float] = {}
        for column in text:
            values = _text(frame, column)
            counts = pd.Series(values[values != ""]).value_counts()
            levels = [str(v) for v in counts.index[: self.max_levels]]
            self.levels_[column] = levels
            for level in levels:
                self.level_mean_[f"{column}={level}"] = float((values == level).mean())
        self.names_ = [*self.numeric_, *(f"{c}={lv}" for c, lvs in self.levels_.items() for lv in lvs)]
        X = self._design(frame)
        self.seed_keys_ = sorted(wanted)
        self.seed_mean_ = X[is_seed].mean(axis=0)
        if self.method == "pu":
            self._fit_pu(X, is_seed)
        else:
            self._fit_embedding(X, is_seed)
        return self

    def _fit_pu(self, X: np.ndarray, is_seed: np.ndarray) -> None:
        rng = np.random.default_rng(self.random_state)
        positive, unlabelled = np.flatnonzero(is_seed), np.flatnonzero(~is_seed)
        take = min(len(unlabelled), max(1, round(self.unlabelled_ratio * len(positive))))
        coefs, intercepts = [], []
        for _ in range(self.n_bags):
            sample = rng.choice(unlabelled, take, replace=False)
            rows = np.concatenate([positive, sample])
            y = np.concatenate([np.ones(len(positive)), np.zeros(take)])
            model = LogisticRegression(C=self.l2, class_weight="balanced", max_iter=2000)
            model.fit(X[rows], y)
            coefs.append(model.coef_[0])
            intercepts.append(float(model.intercept_[0]))
        self.coef_ = np.asarray(coefs)
        self.intercept_ = np.asarray(intercepts)

    def _fit_embedding(self, X: np.ndarray, is_seed: np.ndarray) -> None:
        k = max(1, min(self.n_components, X.shape[1], X.shape[0] - 1))
        pca = PCA(n_components=k, random_state=self.random_state).fit(X)
        self.components_ = pca.components_
        self.embedding_mean_ = pca.mean_
        self.seed_embedding_ = self._unit(self._embed(X[is_seed]))

    def _embed(self, X: np.ndarray) -> np.ndarray:
        return (X - self.embedding_mean_) @ self.components_.T

    @staticmethod
    def _unit(E: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(E, axis=1, keepdims=True)
        return E / np.where(norm > 0, norm, 1.0)

    # --- scores and answers ---------------------------------------------------------------------------

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Similarity to the seed for each row of ``frame`` (higher = more alike): the bagged classifiers'
        mean probability (``pu``) or the mean cosine similarity to the nearest seed customers (``embedding``)."""
        check_fitted(self, "seed_keys_")
        self._check_frame(frame)
        X = self._design(frame)
        if self.method == "pu":
            logits = X @ self.coef_.T + self.intercept_
            return np.asarray((1.0 / (1.0 + np.exp(-logits))).mean(axis=1), dtype=np.float64)
        sims = self._unit(self._embed(X)) @ self.seed_embedding_.T
        k = min(self.n_neighbours, sims.shape[1])
        nearest = -np.partition(-sims, k - 1, axis=1)[:, :k]
        return np.asarray(nearest.mean(axis=1), dtype=np.float64)

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per row and family of features, how much it makes the customer like the seed (positive = alike).

        ``pu``: the mean coefficient x the standardised value, summed per family. ``embedding``: per
        feature, how much closer the customer is to the seed's mean than the average customer is
        (``|seed mean| - |x - seed mean|``), summed per family.
        """
        check_fitted(self, "seed_keys_")
        X = self._design(frame)
        if self.method == "pu":
            parts = X * self.coef_.mean(axis=0)
        else:
            parts = np.abs(self.seed_mean_) - np.abs(X - self.seed_mean_)
        families = [family_of(n) for n in self.names_]
        table = pd.DataFrame(parts, columns=self.names_)
        return table.T.groupby(families, sort=False).sum().T

    def rank(
        self,
        frame: pd.DataFrame,
        *,
        size: int | None = None,
        threshold: float | None = None,
        reasons: int = 3,
    ) -> pd.DataFrame:
        """The base without the seed, most alike first, cut at ``size`` customers and/or a ``threshold``.

        Returns:
            ``customer_key, score, rank, reasons`` (``"like the seed in: spend band, category mix, city"``).

        Raises:
            LookalikeError: a negative size.
        """
        if size is not None and size < 0:
            raise LookalikeError(f"size must be >= 0, got {size}")
        scores = self.score(frame)
        keys = frame[Col.CUSTOMER_KEY].astype(str).to_numpy()
        keep = ~np.isin(keys, self.seed_keys_)
        if threshold is not None:
            keep &= scores >= threshold
        rows = np.flatnonzero(keep)
        order = rows[np.lexsort((keys[rows], -scores[rows]))]
        if size is not None:
            order = order[:size]
        words = self._reasons(frame.iloc[order], reasons) if len(order) else []
        return pd.DataFrame(
            {
                Col.CUSTOMER_KEY: keys[order],
                "score": scores[order],
                "rank": np.arange(1, len(order) + 1),
                "reasons": words,
            }
        )

    def _reasons(self, frame: pd.DataFrame, top: int) -> list[str]:
        table = self.contributions(frame)
        names = np.asarray(table.columns)
        values = table.to_numpy()
        out = []
        for row in values:
            best = [names[j] for j in np.argsort(-row, kind="stable")[:top] if row[j] > 0]
            out.append("like the seed in: " + ", ".join(best) if best else "like the seed overall, no single trait")
        return out

    # --- persistence -------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The fitted state as plain JSON types."""
        check_fitted(self, "seed_keys_")
        params = self.get_params()
        params["columns"] = list(params["columns"]) if params["columns"] is not None else None
        state: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "params": params,
            "numeric": self.numeric_,
            "center": self.center_.tolist(),
            "scale": self.scale_.tolist(),
            "levels": self.levels_,
            "level_mean": self.level_mean_,
            "names": self.names_,
            "seed_keys": self.seed_keys_,
            "seed_mean": self.seed_mean_.tolist(),
        }
        if self.method == "pu":
            state |= {"coef": self.coef_.tolist(), "intercept": self.intercept_.tolist()}
        else:
            state |= {
                "components": self.components_.tolist(),
                "embedding_mean": self.embedding_mean_.tolist(),
                "seed_embedding": self.seed_embedding_.tolist(),
            }
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Lookalike:
        """Rebuild a fitted model from :meth:`to_dict`.

        Raises:
            LookalikeError: another format version.
        """
        if state.get("format_version") != FORMAT_VERSION:
            raise LookalikeError(
                f"lookalike format {state.get('format_version')!r}; this Kairos reads {FORMAT_VERSION}"
            )
        model = cls(**state["params"])
        model.numeric_ = list(state["numeric"])
        model.center_ = np.asarray(state["center"], dtype=np.float64)
        model.scale_ = np.asarray(state["scale"], dtype=np.float64)
        model.levels_ = {k: list(v) for k, v in state["levels"].items()}
        model.level_mean_ = dict(state["level_mean"])
        model.names_ = list(state["names"])
        model.seed_keys_ = list(state["seed_keys"])
        model.seed_mean_ = np.asarray(state["seed_mean"], dtype=np.float64)
        if model.method == "pu":
            model.coef_ = np.asarray(state["coef"], dtype=np.float64).reshape(-1, len(model.names_))
            model.intercept_ = np.asarray(state["intercept"], dtype=np.float64)
        else:
            model.components_ = np.asarray(state["components"], dtype=np.float64)
            model.embedding_mean_ = np.asarray(state["embedding_mean"], dtype=np.float64)
            model.seed_embedding_ = np.asarray(state["seed_embedding"], dtype=np.float64)
        return model


# --- the baselines and the measure ---------------------------------------------------------------------


def rfm_nearest_scores(frame: pd.DataFrame, seed: Iterable[str]) -> np.ndarray:
    """The RFM baseline: minus the distance to the nearest seed customer's centre in standardised
    (log recency, log orders, log spend) space (``recency_days``, ``orders_365d``, ``monetary_365d``;
    a lead's missing recency counts as the longest seen)."""
    keys = frame[Col.CUSTOMER_KEY].astype(str).to_numpy()
    cols = []
    for name in ("recency_days", "orders_365d", "monetary_365d"):
        if name not in frame.columns:
            raise InputDataError(f"the RFM baseline needs {name}")
        v = pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        fill = np.nanmax(v) if np.isfinite(v).any() else 0.0
        v = np.log1p(np.clip(np.where(np.isfinite(v), v, fill), 0, None))
        sd = v.std()
        cols.append((v - v.mean()) / (sd if sd > 0 else 1.0))
    Z = np.column_stack(cols)
    seed_rows = np.isin(keys, list(seed))
    if not seed_rows.any():
        raise LookalikeError("no seed customer is in the base")
    centre = Z[seed_rows].mean(axis=0)
    return np.asarray(-np.linalg.norm(Z - centre, axis=1), dtype=np.float64)


def precision_recall_at(ranked: Sequence[str], relevant: Iterable[str], n: int) -> tuple[float, float]:
    """Precision and recall of the first ``n`` of ``ranked`` against the ``relevant`` keys."""
    truth = set(relevant)
    top = list(ranked)[:n]
    hits = sum(1 for k in top if k in truth)
    return (hits / len(top) if top else float("nan")), (hits / len(truth) if truth else float("nan"))
