"""Per-customer reasons: the features that push one customer's score up most, in human words.

LightGBM's ``pred_contrib`` gives exact TreeSHAP contributions: per row, one value per feature plus
the expected value (bias) in the last column, summing to the raw score (log-odds for a binary
model). :meth:`ReasonExplainer.explain` picks per row the ``k`` features with the largest *positive*
contribution (the drivers of a high score) and words them with a template registry:

* special templates for the common drivers, e.g. ``recency_days`` with ``gap_mean_days`` ->
  "no order for 142 days, three times the usual gap"; ``orders_90d`` -> "3 orders in the last 90
  days"; ``monetary_365d`` -> "spent £420 in the last 365 days"; ``views_7d`` -> "viewed 12 items in
  the last 7 days"; a null order feature -> "never ordered";
* a generic fallback from the feature's description: "{description}: {value}" (shares as percents).

Templates see only numeric aggregates of the model's inputs (never names, e-mails or phone numbers),
so no personal data can reach a reason. :func:`band` turns probabilities into low / medium / high.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.defs.orders import TREND_RECENT

BANDS = ("low", "medium", "high")
DEFAULT_CUTS = (0.3, 0.6)
_EXTRA_CANDIDATES = 6  # candidates beyond k, so that a repeated text can be skipped and k still found


@dataclass(frozen=True, slots=True)
class Reason:
    """One driver of one customer's score.

    Attributes:
        feature: the model feature.
        value: its value for the customer (NaN when missing).
        contribution: its TreeSHAP contribution to the raw score (log-odds for a binary model), > 0.
        text: the driver in human words.
    """

    feature: str
    value: float
    contribution: float
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "value": None if math.isnan(self.value) else self.value,
            "contribution": self.contribution,
            "text": self.text,
        }


# --------------------------------------------------------------------------------------------------
# Formatting helpers


def format_number(value: float) -> str:
    """A short human number: ``1,234`` / ``42`` / ``3.5`` / ``0.012`` (``unknown`` for NaN)."""
    if math.isnan(value):
        return "unknown"
    if math.isinf(value):
        return "infinite"
    if abs(value) >= 100 or abs(value - round(value)) < 1e-9:
        return f"{round(value):,}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def _count(n: float, one: str, many: str) -> str:
    rounded = round(n)
    if rounded == 0 and n != 0:
        return f"{format_number(n)} {many}"
    return f"{'no' if rounded == 0 else f'{rounded:,}'} {one if rounded == 1 else many}"


def _days(value: float) -> str:
    n = round(value)
    if n <= 0:
        return "less than a day"
    return f"{n:,} day" if n == 1 else f"{n:,} days"


def _ago(value: float) -> str:
    return "today" if round(value) <= 0 else f"{_days(value)} ago"


def _window(match: re.Match[str]) -> str:
    """'in the last 90 days' / 'in the last day' / 'ever' from a pattern's ``window`` group."""
    w = match.groupdict().get("window")
    if w is None:
        return "ever"
    return "in the last day" if int(w) == 1 else f"in the last {int(w)} days"


_NUMBER_WORDS = {2: "twice", 3: "three times", 4: "four times", 5: "five times", 6: "six times"}
_NUMBER_WORDS |= {7: "seven times", 8: "eight times", 9: "nine times", 10: "ten times"}


def times_words(ratio: float) -> str:
    """'twice', 'three times', 'one and a half times', '2.5 times', '14 times'."""
    half = round(ratio * 2) / 2
    if half == 1.5:
        return "one and a half times"
    if half == round(half) and int(half) in _NUMBER_WORDS:
        return _NUMBER_WORDS[int(half)]
    return f"{format_number(half if ratio < 10 else round(ratio))} times"


def _percent(share: float) -> str:
    pct = share * 100
    return f"{pct:.0f}%" if abs(pct) >= 1 or pct == 0 else f"{pct:.1f}%"


_SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$", "JPY": "¥"}
DEFAULT_CURRENCY = "GBP"  # a bundle or snapshot that records no currency predates issue 18: its data was in GBP


def currency_of(manifest: Mapping[str, Any] | None) -> str:
    """The currency a feature manifest records (``features.store.manifest_for``; every model trained since
    issue 18 carries one), else :data:`DEFAULT_CURRENCY`: what reasons and reports print amounts in."""
    code = (manifest or {}).get("currency")
    return str(code) if code else DEFAULT_CURRENCY


def format_money(amount: float, currency: str, decimals: int = 0) -> str:
    """An amount in ``currency``: the symbol before it for GBP, EUR, USD and JPY ('£1,234'), another ISO
    code after it ('1,234 SEK'), anything else (a symbol) before it."""
    sign = "-" if amount < 0 else ""
    number = f"{abs(amount):,.{decimals}f}" if decimals else f"{round(abs(amount)):,}"
    code = currency.upper()
    if code in _SYMBOLS:
        return f"{sign}{_SYMBOLS[code]}{number}"
    if len(code) == 3 and code.isalpha():
        return f"{sign}{number} {code}"
    return f"{sign}{currency}{number}"


# --------------------------------------------------------------------------------------------------
# Template registry


@dataclass
class ReasonContext:
    """What a template sees: one feature of one customer, the customer's other features, the words.

    Attributes:
        feature: feature name.
        value: its value (NaN when missing).
        description: the feature's description (or its name with spaces when none is known).
        match: the template pattern's match on the feature name (named groups such as ``window``).
        other: value of another feature of the same customer (NaN when not in the frame).
        money: formats an amount in the configured currency.
    """

    feature: str
    value: float
    description: str
    match: re.Match[str]
    other: Callable[[str], float]
    money: Callable[[float], str]


Template: TypeAlias = Callable[[ReasonContext], str | None]
"""A template returns the reason's text, or None to let the next matching template (or the
generic fallback) word it."""


def _known(template: Template) -> Template:
    """The template for known values; a missing value goes to the next template or the fallback."""

    def wrapped(c: ReasonContext) -> str | None:
        return None if math.isnan(c.value) else template(c)

    return wrapped


def _never_ordered_or(text: Callable[[ReasonContext], str]) -> Template:
    def template(c: ReasonContext) -> str:
        return "never ordered" if math.isnan(c.value) else text(c)

    return template


def _average_order(c: ReasonContext) -> str | None:
    if not math.isnan(c.value):
        return f"average order {c.money(c.value)}"
    # unknown for a buyer: the data has no prices (no amount to print, and "never ordered" would be false)
    return "never ordered" if math.isnan(c.other("recency_days")) else None


def _recency(c: ReasonContext) -> str:
    if math.isnan(c.value):
        return "never ordered"
    gap = c.other("gap_mean_days")
    if math.isnan(gap) or gap <= 0:
        return f"last order {_ago(c.value)}"
    ratio = c.value / gap
    if ratio >= 1.5:
        return f"no order for {_days(c.value)}, {times_words(ratio)} the usual gap"
    if ratio >= 0.75:
        return f"last order {_ago(c.value)}, about the usual gap ({_days(gap)})"
    return f"last order {_ago(c.value)}, sooner than the usual gap ({_days(gap)})"


def _no_gap_yet(c: ReasonContext) -> str:
    return "never ordered" if math.isnan(c.other("recency_days")) else "only one purchase day so far"


def _gap_mean(c: ReasonContext) -> str:
    if math.isnan(c.value):
        return _no_gap_yet(c)
    return "buys almost every day" if round(c.value) <= 1 else f"buys every {_days(c.value)} on average"


def _gap_std(c: ReasonContext) -> str:
    if math.isnan(c.value):
        return "never ordered" if math.isnan(c.other("recency_days")) else "fewer than three purchase days so far"
    if c.value < 1:
        return "buys at a very regular rhythm"
    return f"days between purchases vary by about {_days(c.value)}"


def _overdue(c: ReasonContext) -> str:
    if math.isnan(c.value):
        return _no_gap_yet(c)
    if c.value >= 1.5:
        return f"next order overdue: {times_words(c.value)} the usual gap since the last one"
    if c.value >= 1.0:
        return "next order due now (the usual gap has passed)"
    return f"next order not due yet ({_percent(c.value)} of the usual gap so far)"


def _trend(what: str) -> Template:
    def template(c: ReasonContext) -> str:
        if math.isnan(c.value):
            return "never ordered" if math.isnan(c.other("recency_days")) else f"fewer than {TREND_RECENT + 1} orders"
        if abs(c.value) < 0.005:
            return f"{what} unchanged in the last {TREND_RECENT} orders against the earlier ones"
        direction = "up" if c.value > 0 else "down"
        return f"{what} {direction} {_percent(abs(c.value))} in the last {TREND_RECENT} orders against the earlier ones"

    return template


def _orders(c: ReasonContext) -> str:
    return f"{_count(c.value, 'order', 'orders')} {_window(c.match)}"


def _monetary(c: ReasonContext) -> str:
    if c.match.groupdict().get("window") is None:
        return "spent nothing so far" if c.value == 0 else f"spent {c.money(c.value)} in total"
    return f"spent {'nothing' if c.value == 0 else c.money(c.value)} {_window(c.match)}"


_CHANNEL_WORDS = {
    "email": ("an e-mail", "e-mails"),
    "sms": ("an SMS message", "SMS messages"),
    "push": ("a push notification", "push notifications"),
}


def _channel(c: ReasonContext) -> tuple[str, str]:
    return _CHANNEL_WORDS.get(c.match["channel"], (f"a {c.match['channel']} message", f"{c.match['channel']} messages"))


def _message_counts(c: ReasonContext) -> str:
    verb = {"sends": "received", "opens": "opened", "clicks": "clicked"}[c.match["event"]]
    _, many = _channel(c)
    n = round(c.value)
    amount = "no" if n == 0 else f"{n:,}"
    return f"{verb} {amount} {many if n != 1 else many.removesuffix('s')} {_window(c.match)}"


def _message_rate(c: ReasonContext) -> str:
    _, many = _channel(c)
    if math.isnan(c.value):
        return f"no {many} sent in the last 365 days"
    return f"{c.match['event']}s {_percent(c.value)} of {many}"


def _days_since_open(c: ReasonContext) -> str:
    one, _ = _channel(c)
    return f"never opened {one}" if math.isnan(c.value) else f"last opened {one} {_ago(c.value)}"


def _unsubscribes(c: ReasonContext) -> str:
    _, many = _channel(c)
    if round(c.value) == 0:
        return f"no unsubscribes from {many} {_window(c.match)}"
    return f"unsubscribed from {many} {_count(c.value, 'time', 'times')} {_window(c.match)}"


def _consent(c: ReasonContext) -> str:
    _, many = _channel(c)
    return f"opted in to {many}" if c.value >= 0.5 else f"not opted in to {many}"


_HOW = re.compile(r"in the last (?P<window>\d+) days on (?P<day>\w+) (?P<hours>[\d:\-]+) local time")


def _hour_of_week(c: ReasonContext) -> str | None:
    found = _HOW.search(c.description)
    if found is None:
        return None
    when = f"on {found['day']} {found['hours']} local time"
    if round(c.value) == 0:
        return f"never active {when} in the last {found['window']} days"
    return f"active {_count(c.value, 'time', 'times')} {when} in the last {found['window']} days"


def _web(verb: str, one: str, many: str) -> Template:
    def template(c: ReasonContext) -> str:
        return f"{verb} {_count(c.value, one, many)} {_window(c.match)}".strip()

    return template


_W = r"(?:(?P<window>\d+)d|lifetime)"
DEFAULT_TEMPLATES: tuple[tuple[str, Template], ...] = (
    ("recency_days", _recency),
    ("tenure_days", _never_ordered_or(lambda c: f"first order {_ago(c.value)}")),
    (rf"orders_{_W}", _known(_orders)),
    (rf"monetary_{_W}", _known(_monetary)),
    ("avg_order_value", _average_order),
    ("items_per_order", _never_ordered_or(lambda c: f"{format_number(c.value)} units per order on average")),
    ("gap_mean_days", _gap_mean),
    ("gap_std_days", _gap_std),
    ("overdue_ratio", _overdue),
    ("n_categories", _known(lambda c: f"bought from {_count(c.value, 'category', 'categories')}")),
    ("n_brands", _known(lambda c: f"bought {_count(c.value, 'brand', 'brands')}")),
    ("order_value_trend", _trend("order value")),
    ("basket_size_trend", _trend("units per order")),
    (rf"views_{_W}", _known(_web("viewed", "item", "items"))),
    (r"add_to_carts_(?P<window>\d+)d", _known(_web("added", "item to the cart", "items to the cart"))),
    (r"sessions_(?P<window>\d+)d", _known(lambda c: f"{_count(c.value, 'visit', 'visits')} {_window(c.match)}")),
    (r"abandoned_carts_(?P<window>\d+)d", _known(_web("abandoned", "cart", "carts"))),
    ("views_since_last_order", _known(lambda c: f"viewed {_count(c.value, 'item', 'items')} since the last order")),
    (
        "cart_size",
        _known(
            lambda c: "empty cart" if round(c.value) == 0 else f"{_count(c.value, 'item', 'items')} in the cart now"
        ),
    ),
    (
        "days_since_last_visit",
        lambda c: "never visited the site or app" if math.isnan(c.value) else f"last visit {_ago(c.value)}",
    ),
    (r"(?P<event>sends|opens|clicks)_(?P<channel>[a-z]+)_(?P<window>\d+)d", _known(_message_counts)),
    (r"(?P<event>open|click)_rate_(?P<channel>[a-z]+)", _message_rate),
    (r"days_since_open_(?P<channel>[a-z]+)", _days_since_open),
    (r"unsubscribes_(?P<channel>[a-z]+)_(?P<window>\d+)d", _known(_unsubscribes)),
    (r"consent_(?P<channel>[a-z]+)", _known(_consent)),
    (r"how_\d+", _known(_hour_of_week)),
    ("age_years", lambda c: "age unknown" if math.isnan(c.value) else f"aged {round(c.value)}"),
    (
        "customer_age_days",
        lambda c: "registration date unknown" if math.isnan(c.value) else f"registered {_ago(c.value)}",
    ),
    (
        "days_to_anniversary",
        _never_ordered_or(
            lambda c: (
                "anniversary of the first order today"
                if round(c.value) <= 0
                else f"anniversary of the first order in {_days(c.value)}"
            )
        ),
    ),
)


def _generic(c: ReasonContext) -> str | None:
    if math.isnan(c.value):
        return f"{c.description}: unknown"
    if c.description.startswith("share of"):
        return f"{c.description}: {_percent(c.value)}"
    return f"{c.description}: {format_number(c.value)}"


# --------------------------------------------------------------------------------------------------
# Contributions and the explainer


def as_booster(model: Any) -> tuple[lgb.Booster, int | None]:
    """A LightGBM booster (and the iteration to predict with) from a booster, its text, or a fitted
    estimator with ``booster_`` (and ``best_iteration_``)."""
    if isinstance(model, lgb.Booster):
        return model, None
    if isinstance(model, str):
        return lgb.Booster(model_str=model), None
    booster = getattr(model, "booster_", None)
    if isinstance(booster, lgb.Booster):
        return booster, getattr(model, "best_iteration_", None)
    raise TypeError(f"expected a lightgbm.Booster, its model text or a fitted estimator, got {type(model).__name__}")


def contributions(model: Any, X: pd.DataFrame) -> pd.DataFrame:
    """TreeSHAP contributions per row and feature (``booster.predict(pred_contrib=True)``).

    Columns: the model's features in its order, then ``bias`` (the expected raw score); each row
    sums to the row's raw score (log-odds for a binary model). Index: ``X``'s index.

    A model that is not LightGBM but has its own ``contributions(X)`` in the same layout (a served
    baseline, :class:`models.baselines.PropensityBaseline`) answers for itself.
    """
    own = getattr(model, "contributions", None)
    if callable(own) and not isinstance(model, lgb.Booster) and getattr(model, "booster_", None) is None:
        if not isinstance(X, pd.DataFrame):
            raise TypeError("X: expected a pandas DataFrame with the model's feature columns")
        return own(X)
    booster, iteration = as_booster(model)
    names = [str(n) for n in booster.feature_name()]
    matrix = _model_matrix(X, names)
    raw = booster.predict(matrix, pred_contrib=True, num_iteration=iteration)
    contrib = np.asarray(raw, dtype=np.float64)
    if contrib.shape != (len(X), len(names) + 1):
        raise ValueError(f"pred_contrib returned shape {contrib.shape}; expected a single-output model")
    return pd.DataFrame(contrib, columns=[*names, "bias"], index=X.index)


def _model_matrix(X: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    if not isinstance(X, pd.DataFrame):
        raise TypeError("X: expected a pandas DataFrame with the model's feature columns")
    missing = [n for n in names if n not in X.columns]
    if missing:
        raise ValueError(f"X: missing {len(missing)} model feature(s), e.g. {missing[:5]}")
    try:
        # float32, as LightGBMClassifier predicts: the contributions then sum to the score it serves
        return X[list(names)].to_numpy(np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"X: model features must be numeric ({exc})") from exc


class ReasonExplainer:
    """Words the top drivers of each customer's score.

    Args:
        descriptions: feature name -> human description (``features.definitions.DESCRIPTIONS``).
        templates: extra templates, keyed by a regular expression that must match the whole feature
            name (an exact name is such a pattern); tried before the default ones. Named groups of the
            pattern are available to the template as ``context.match``.
        currency: ISO code (``GBP`` -> £, ``EUR`` -> €, ``USD`` -> $, ``JPY`` -> ¥; other codes are
            written after the amount) or a symbol written before it.
    """

    def __init__(
        self,
        descriptions: Mapping[str, str],
        templates: Mapping[str, Template] | None = None,
        currency: str = DEFAULT_CURRENCY,
    ) -> None:
        self.descriptions = descriptions
        self.templates = templates
        self.currency = currency

    def _matcher(self) -> Callable[[str], list[tuple[re.Match[str], Template]]]:
        """feature -> the templates whose pattern matches it (user ones first), cached per feature."""
        user = [(re.compile(p), t) for p, t in (self.templates or {}).items()]
        compiled = [*user, *((re.compile(p), t) for p, t in DEFAULT_TEMPLATES)]
        cache: dict[str, list[tuple[re.Match[str], Template]]] = {}

        def matching(feature: str) -> list[tuple[re.Match[str], Template]]:
            if feature not in cache:
                found = [(m, t) for pattern, t in compiled if (m := pattern.fullmatch(feature)) is not None]
                any_name = re.fullmatch(r".*", feature)
                assert any_name is not None  # ".*" matches every name
                cache[feature] = [*found, (any_name, _generic)]
            return cache[feature]

        return matching

    def money(self, amount: float) -> str:
        """An amount in the configured currency, rounded to whole units: '£1,234'."""
        return format_money(amount, self.currency)

    def describe(self, feature: str, value: float, other: Callable[[str], float] | None = None) -> str:
        """The text of one feature value ("3 orders in the last 90 days"); ``other`` reads the same
        customer's other features (default: all unknown)."""
        return self._text(feature, value, other or (lambda name: math.nan), self._matcher())

    def _text(
        self,
        feature: str,
        value: float,
        other: Callable[[str], float],
        matching: Callable[[str], list[tuple[re.Match[str], Template]]],
    ) -> str:
        description = self.descriptions.get(feature) or feature.replace("_", " ")
        for match, template in matching(feature):
            text = template(ReasonContext(feature, value, description, match, other, self.money))
            if text:
                return text
        raise AssertionError("the generic template always answers")  # pragma: no cover

    def explain(self, model: Any, X: pd.DataFrame, k: int = 3) -> list[list[Reason]]:
        """The top ``k`` reasons per row of ``X``, strongest first.

        Args:
            model: a ``lightgbm.Booster``, its model text, a fitted estimator with ``booster_``, or a
                model with its own ``contributions(X)`` (a served baseline).
            X: the rows scored, with (at least) the model's features; other columns of the same row
                (e.g. ``gap_mean_days``) are read by templates when present.
            k: reasons per row.

        Returns:
            One list per row of ``X`` (same order). Only features with a *positive* contribution are
            reasons (they push the score up); a row with fewer than ``k`` of them gets fewer reasons,
            possibly none. A reason whose text repeats an earlier one of the same row (for a lead,
            several order features all read "never ordered") is skipped in favour of the next driver.
        """
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected a positive integer, got {k!r}")
        contrib_frame = contributions(model, X)
        names = list(contrib_frame.columns[:-1])
        contrib = contrib_frame.to_numpy()[:, :-1]
        values = X[names].to_numpy(np.float64)  # as given (the model saw them as float32)
        n, p = contrib.shape
        m = min(p, k + _EXTRA_CANDIDATES)
        # the m largest contributions per row (unordered), then ordered: largest first, ties by column
        top = np.argpartition(-contrib, m - 1, axis=1)[:, :m] if m < p else np.tile(np.arange(p), (n, 1))
        top_vals = np.take_along_axis(contrib, top, axis=1)
        order = np.lexsort((top, -top_vals), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        top_vals = np.take_along_axis(top_vals, order, axis=1)

        matching = self._matcher()
        columns: dict[str, np.ndarray] = {}
        out: list[list[Reason]] = []
        for i in range(n):

            def other(name: str, row: int = i) -> float:
                if name not in columns:
                    columns[name] = (
                        pd.to_numeric(X[name], errors="coerce").to_numpy(np.float64)
                        if name in X.columns
                        else np.full(n, np.nan)
                    )
                return float(columns[name][row])

            reasons: list[Reason] = []
            seen: set[str] = set()
            for j, c in zip(top[i], top_vals[i], strict=True):
                if c <= 0 or len(reasons) == k:
                    break
                value = float(values[i, j])
                text = self._text(names[j], value, other, matching)
                if text in seen:
                    continue
                seen.add(text)
                reasons.append(Reason(names[j], value, float(c), text))
            out.append(reasons)
        return out


def band_codes(p: Sequence[float] | np.ndarray | pd.Series, cuts: Sequence[float] = DEFAULT_CUTS) -> np.ndarray:
    """The position in :data:`BANDS` of each probability's band (int8): 0 low, 1 medium, 2 high.

    ``p < cuts[0]`` is low, ``cuts[0] <= p < cuts[1]`` medium, ``p >= cuts[1]`` high. ``cuts`` must be
    two increasing numbers strictly inside (0, 1); ``p`` must be probabilities (NaN raises).
    """
    lo_hi = [float(c) for c in cuts]
    if len(lo_hi) != 2 or not (0.0 < lo_hi[0] < lo_hi[1] < 1.0):
        raise ValueError(f"cuts: expected two increasing numbers strictly between 0 and 1, got {list(cuts)!r}")
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"p: expected a 1-D array, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0.0) | (arr > 1.0)
    if bad.any():
        raise ValueError(
            f"p: {int(bad.sum())} values are not probabilities in [0, 1] (first at row {int(np.argmax(bad))})"
        )
    return np.searchsorted(lo_hi, arr, side="right").astype(np.int8)


def band(p: Sequence[float] | np.ndarray | pd.Series, cuts: Sequence[float] = DEFAULT_CUTS) -> np.ndarray:
    """``"low"`` / ``"medium"`` / ``"high"`` per probability (the rules of :func:`band_codes`)."""
    return np.asarray(BANDS, dtype=object)[band_codes(p, cuts)]
