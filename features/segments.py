"""Customer segments from a feature snapshot: RFM scores and segments, lifecycle stages, behavioural flags.

Segments are pure, vectorised functions of one snapshot's feature frame (``customer_key`` plus the
catalogue's features). They update themselves: every new snapshot gives every customer a segment
again, and :func:`transition_matrix` counts who moved where since the previous snapshot.

A frame may lack whole feature families (Online Retail II has no web, engagement or profile data):
a flag whose inputs are absent is False for everyone and listed under ``not_available`` in the
result's ``attrs`` (see :func:`missing_inputs`); only the order features that RFM and the lifecycle
stand on are required. ``docs/segments.md`` gives every rule in a marketer's words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.conditions import Condition, ConditionError, ValueKind
from features.contract import Col
from features.errors import KairosError

__all__ = [
    "FLAGS",
    "Feat",
    "Lifecycle",
    "RfmSegment",
    "SegCol",
    "SegmentConfig",
    "SegmentInputError",
    "TransitionSummary",
    "assign_segments",
    "missing_inputs",
    "quantile_scores",
    "summarise_transitions",
    "transition_matrix",
]


class SegmentInputError(KairosError):
    """The feature frame lacks a column that RFM scores or lifecycle stages cannot do without."""


class Feat:
    """Names of the catalogue features that segments read (the feature catalogue's vocabulary)."""

    RECENCY_DAYS = "recency_days"
    ORDERS_LIFETIME: Final = "orders_lifetime"
    ORDERS_365D = "orders_365d"
    MONETARY_LIFETIME = "monetary_lifetime"
    MONETARY_365D: Final = "monetary_365d"
    TENURE_DAYS = "tenure_days"
    GAP_MEAN_DAYS = "gap_mean_days"
    ORDER_VALUE_TREND = "order_value_trend"
    BASKET_SIZE_TREND = "basket_size_trend"
    TOP_BRAND_SHARE = "top_brand_share"
    VIEWS_30D = "views_30d"
    VIEWS_SINCE_LAST_ORDER = "views_since_last_order"
    DAYS_TO_ANNIVERSARY = "days_to_anniversary"
    CONSENT_EMAIL = "consent_email"
    CONSENT_SMS = "consent_sms"
    CONSENT_PUSH = "consent_push"

    @staticmethod
    def abandoned_carts(window_days: int) -> str:
        return f"abandoned_carts_{window_days}d"


class SegCol:
    """Columns of the frame that :func:`assign_segments` returns."""

    R_SCORE = "r_score"
    F_SCORE = "f_score"
    M_SCORE = "m_score"
    RFM_SEGMENT = "rfm_segment"
    LIFECYCLE = "lifecycle"
    RHYTHM_DAYS = "rhythm_days"
    FLAG_RECENT_ABANDONED_CART = "flag_recent_abandoned_cart"
    FLAG_BROWSES_NEVER_BUYS = "flag_browses_never_buys"
    FLAG_ONE_AND_DONE = "flag_one_and_done"
    FLAG_SINGLE_BRAND = "flag_single_brand"
    FLAG_FLAT_OR_SHRINKING_BASKET = "flag_flat_or_shrinking_basket"
    FLAG_HIGH_VALUE_AT_RISK = "flag_high_value_at_risk"
    FLAG_ANNIVERSARY_7D = "flag_anniversary_7d"
    FLAG_OPTED_OUT_EVERYWHERE = "flag_opted_out_everywhere"


FLAGS: tuple[str, ...] = (
    SegCol.FLAG_RECENT_ABANDONED_CART,
    SegCol.FLAG_BROWSES_NEVER_BUYS,
    SegCol.FLAG_ONE_AND_DONE,
    SegCol.FLAG_SINGLE_BRAND,
    SegCol.FLAG_FLAT_OR_SHRINKING_BASKET,
    SegCol.FLAG_HIGH_VALUE_AT_RISK,
    SegCol.FLAG_ANNIVERSARY_7D,
    SegCol.FLAG_OPTED_OUT_EVERYWHERE,
)

NOT_AVAILABLE = "not_available"  # attrs key: flag -> the input columns the frame lacked
POPULATION_GAP = "population_gap_days"  # attrs key: the median gap between orders of repeat buyers
NEW_ROW = "(new)"  # transition matrix row: not in the previous snapshot
GONE_COLUMN = "(gone)"  # transition matrix column: not in the current snapshot


class RfmSegment(StrEnum):
    """The named RFM segments, best first; ``Lead`` for customers who never bought."""

    CHAMPIONS = "Champions"
    LOYAL = "Loyal"
    POTENTIAL_LOYALIST = "Potential loyalist"
    NEW = "New"
    PROMISING = "Promising"
    NEED_ATTENTION = "Need attention"
    ABOUT_TO_SLEEP = "About to sleep"
    AT_RISK = "At risk"
    CANT_LOSE_THEM = "Can't lose them"
    HIBERNATING = "Hibernating"
    LOST = "Lost"
    LEAD = "Lead"


class Lifecycle(StrEnum):
    """Lifecycle stages, in the order a customer passes through them."""

    LEAD = "lead"
    NEW = "new"
    ACTIVE = "active"
    AT_RISK = "at_risk"
    LAPSED = "lapsed"
    CHURNED = "churned"


_S = RfmSegment
# The R x FM grid. Rows: R = 5 (bought most recently) down to 1; columns: FM = 1 .. 5, where
# FM = (F + M) // 2. The pattern is the widely used R-by-F map (Champions 5[4-5], Loyal [3-4][4-5],
# Potential loyalist [4-5][2-3], New 51, Promising 41, About to sleep 3[1-2], Need attention 33,
# At risk [1-2][3-4], Can't lose them [1-2]5, Hibernating [1-2][1-2]) with F replaced by the joint
# FM score, and its bottom-left corner split: R = 1 there is Lost, R = 2 stays Hibernating.
RFM_GRID: tuple[tuple[RfmSegment, ...], ...] = (
    (_S.NEW, _S.POTENTIAL_LOYALIST, _S.POTENTIAL_LOYALIST, _S.CHAMPIONS, _S.CHAMPIONS),  # R = 5
    (_S.PROMISING, _S.POTENTIAL_LOYALIST, _S.POTENTIAL_LOYALIST, _S.LOYAL, _S.LOYAL),  # R = 4
    (_S.ABOUT_TO_SLEEP, _S.ABOUT_TO_SLEEP, _S.NEED_ATTENTION, _S.LOYAL, _S.LOYAL),  # R = 3
    (_S.HIBERNATING, _S.HIBERNATING, _S.AT_RISK, _S.AT_RISK, _S.CANT_LOSE_THEM),  # R = 2
    (_S.LOST, _S.LOST, _S.AT_RISK, _S.AT_RISK, _S.CANT_LOSE_THEM),  # R = 1
)
_SEGMENTS = list(RfmSegment)
_GRID_CODES = np.array([[_SEGMENTS.index(s) for s in row] for row in RFM_GRID], dtype=np.int8)
_STAGES = list(Lifecycle)


class SegmentConfig(BaseModel):
    """Thresholds of segments, lifecycle stages and flags. Frozen; unknown fields are refused.

    Lifecycle stages compare the days since the last order with the customer's *rhythm*: the mean
    gap between their orders (``rhythm="own"``; customers with fewer than two orders get the
    population's median gap), everyone the population median (``"population"``), or one fixed
    number of days for everyone (``"fixed"``, ``fixed_gap_days``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    frequency_feature: Literal["orders_lifetime", "orders_365d"] = Field(
        default=Feat.ORDERS_LIFETIME, description="F score: orders ever (default) or in the last 365 days."
    )
    monetary_feature: Literal["monetary_365d", "monetary_lifetime"] = Field(
        default=Feat.MONETARY_365D, description="M score: spend in the last 365 days (default) or ever."
    )

    rhythm: Literal["own", "population", "fixed"] = Field(
        default="own", description="Whose purchase rhythm sets the stages."
    )
    fixed_gap_days: float = Field(default=30.0, gt=0, description="The rhythm of everyone when rhythm='fixed'.")
    min_gap_days: float = Field(default=7.0, gt=0, description="A rhythm is never taken as shorter than this.")
    fallback_gap_days: float = Field(default=60.0, gt=0, description="Population rhythm when nobody has two orders.")
    new_days: float = Field(default=30.0, ge=0, description="New: first order at most this many days ago.")
    new_gap_multiplier: float = Field(
        default=2.0, ge=0, description="New: one order, silent < this x population rhythm."
    )
    new_max_days: float = Field(
        default=180.0, ge=0, description="New by the one-order rule for at most this many days."
    )
    active_multiplier: float = Field(default=1.5, gt=0, description="Active: silent at most this x own rhythm.")
    at_risk_multiplier: float = Field(default=3.0, gt=0, description="At risk: silent at most this x own rhythm.")
    lapsed_multiplier: float = Field(default=6.0, gt=0, description="Lapsed: silent at most this x own rhythm ...")
    lapsed_min_days: float = Field(
        default=365.0, ge=0, description="... or at most this many days (churned never earlier)."
    )
    churned_max_days: float = Field(default=730.0, gt=0, description="Churned: always after this many silent days.")

    abandoned_cart_window_days: Literal[1, 7, 30] = Field(default=7, description="Recent abandoned cart: window.")
    browse_min_views: int = Field(
        default=10, ge=1, description="Browses, never buys: product views since the last order."
    )
    single_brand_min_share: float = Field(
        default=0.8, gt=0, le=1, description="Single-brand: share of units of one brand."
    )
    single_brand_min_orders: int = Field(default=2, ge=1, description="Single-brand: at least this many orders.")
    basket_trend_max: float = Field(
        default=0.05, description="Flat or shrinking basket: growth of at most this (+5 %)."
    )
    high_value_share: float = Field(
        default=0.2, gt=0, le=1, description="High value: top share of buyers by lifetime spend."
    )
    anniversary_days: int = Field(
        default=7, ge=0, le=365, description="Anniversary: days until the first-order anniversary."
    )
    rules: dict[str, str] = Field(
        default_factory=dict,
        description="Your own segments: name -> condition over features, segment columns and customer "
        "attributes (attr_<name>); each gives a boolean column rule_<name>.",
    )

    @field_validator("rules")
    @classmethod
    def _parse_rules(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _RULE_NAME.match(name):
                raise ValueError(f"rules.{name}: a rule name is lower case letters, digits and _")
            try:
                _rule(text)
            except ConditionError as exc:
                raise ValueError(f"rules.{name}: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _stages_in_order(self) -> SegmentConfig:
        if not self.active_multiplier <= self.at_risk_multiplier <= self.lapsed_multiplier:
            raise ValueError("multipliers must satisfy active <= at_risk <= lapsed")
        if self.lapsed_min_days > self.churned_max_days:
            raise ValueError("lapsed_min_days must not exceed churned_max_days")
        return self


RULE_PREFIX = "rule_"  # the column of a segment rule: rule_<name>
_RULE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _rule_names() -> dict[str, ValueKind]:
    from features.definitions import FEATURES  # the catalogue (its module does not import segments)

    names: dict[str, ValueKind] = {f.name: ("string" if f.dtype == "string" else "number") for f in FEATURES}
    names |= {c: "number" for c in (SegCol.R_SCORE, SegCol.F_SCORE, SegCol.M_SCORE, SegCol.RHYTHM_DAYS)}
    names |= {SegCol.RFM_SEGMENT: "string", SegCol.LIFECYCLE: "string"}
    return names | {flag: "bool" for flag in FLAGS}


_RULES: dict[str, Condition] = {}


def _rule(text: str) -> Condition:
    found = _RULES.get(text)
    if found is None:
        found = _RULES[text] = Condition(text, _rule_names())
    return found


# Inputs of each flag; a flag is computed only when the frame has all of them (basket: any of them).
def _flag_inputs(config: SegmentConfig) -> dict[str, tuple[str, ...]]:
    return {
        SegCol.FLAG_RECENT_ABANDONED_CART: (Feat.abandoned_carts(config.abandoned_cart_window_days),),
        SegCol.FLAG_BROWSES_NEVER_BUYS: (Feat.VIEWS_SINCE_LAST_ORDER, Feat.VIEWS_30D),
        SegCol.FLAG_ONE_AND_DONE: (Feat.ORDERS_LIFETIME,),
        SegCol.FLAG_SINGLE_BRAND: (Feat.TOP_BRAND_SHARE, Feat.ORDERS_LIFETIME),
        SegCol.FLAG_FLAT_OR_SHRINKING_BASKET: (Feat.ORDER_VALUE_TREND, Feat.BASKET_SIZE_TREND),
        SegCol.FLAG_HIGH_VALUE_AT_RISK: (Feat.MONETARY_LIFETIME,),
        SegCol.FLAG_ANNIVERSARY_7D: (Feat.DAYS_TO_ANNIVERSARY,),
        SegCol.FLAG_OPTED_OUT_EVERYWHERE: (Feat.CONSENT_EMAIL, Feat.CONSENT_SMS, Feat.CONSENT_PUSH),
    }


_ANY_OF = frozenset({SegCol.FLAG_FLAT_OR_SHRINKING_BASKET})


def missing_inputs(columns: Iterable[str], config: SegmentConfig | None = None) -> dict[str, tuple[str, ...]]:
    """Flags that cannot be computed from a frame with ``columns``, each with the inputs it lacks."""
    have = set(columns)
    out: dict[str, tuple[str, ...]] = {}
    for flag, needed in _flag_inputs(config or SegmentConfig()).items():
        lacking = tuple(c for c in needed if c not in have)
        if lacking and (flag not in _ANY_OF or len(lacking) == len(needed)):
            out[flag] = lacking
    return out


def quantile_scores(values: pd.Series | np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Scores 1-5 by quintile of rank: score = 1 + floor(5 x (customers strictly worse) / n).

    Equal values always get the same score (the score of the first of them), so the result does not
    depend on row order. Missing values count as the worst. Returns int8.
    """
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return np.empty(0, dtype=np.int8)
    key = x if higher_is_better else -x
    worse = pd.Series(key).rank(method="min", na_option="top").to_numpy() - 1.0
    return (1 + np.floor(5.0 * worse / n)).astype(np.int8)


def _column(features: pd.DataFrame, name: str) -> np.ndarray:
    return features[name].to_numpy(dtype=np.float64, na_value=np.nan)


def _require(features: pd.DataFrame, names: Iterable[str]) -> None:
    lacking = [n for n in dict.fromkeys([Col.CUSTOMER_KEY, *names]) if n not in features.columns]
    if lacking:
        raise SegmentInputError(
            f"the feature frame lacks {', '.join(lacking)}: segments need the orders family "
            "(build the snapshot with features.store.compute_features)"
        )


def _rhythm(features: pd.DataFrame, buyer: np.ndarray, config: SegmentConfig) -> tuple[np.ndarray, float]:
    """Each customer's expected days between orders, and the population's (median of repeat buyers)."""
    orders = np.nan_to_num(_column(features, Feat.ORDERS_LIFETIME))
    if Feat.GAP_MEAN_DAYS in features.columns:
        own = _column(features, Feat.GAP_MEAN_DAYS)
    else:  # the mean of consecutive gaps is (last - first) / (orders - 1)
        span = _column(features, Feat.TENURE_DAYS) - _column(features, Feat.RECENCY_DAYS)
        with np.errstate(divide="ignore", invalid="ignore"):
            own = np.where(orders >= 2, span / (orders - 1), np.nan)
    repeat = buyer & (orders >= 2) & np.isfinite(own)
    population = float(np.median(own[repeat])) if repeat.any() else config.fallback_gap_days
    population = max(population, config.min_gap_days)
    if config.rhythm == "fixed":
        return np.full(len(features), config.fixed_gap_days), config.fixed_gap_days
    if config.rhythm == "population":
        return np.full(len(features), population), population
    return np.where(repeat, np.maximum(own, config.min_gap_days), population), population


def _lifecycle(
    features: pd.DataFrame, buyer: np.ndarray, config: SegmentConfig
) -> tuple[np.ndarray, np.ndarray, float]:
    recency = _column(features, Feat.RECENCY_DAYS)
    tenure = _column(features, Feat.TENURE_DAYS)
    orders = np.nan_to_num(_column(features, Feat.ORDERS_LIFETIME))
    rhythm, reference = _rhythm(features, buyer, config)
    churn_after = np.clip(config.lapsed_multiplier * rhythm, config.lapsed_min_days, config.churned_max_days)
    new_window = min(config.new_gap_multiplier * reference, config.new_max_days)
    with np.errstate(invalid="ignore"):  # NaN recency (leads) compares False
        conditions = [
            ~buyer,
            recency > churn_after,
            (tenure <= config.new_days) | ((orders <= 1) & (recency < new_window)),
            recency <= config.active_multiplier * rhythm,
            recency <= config.at_risk_multiplier * rhythm,
        ]
    stages = (Lifecycle.LEAD, Lifecycle.CHURNED, Lifecycle.NEW, Lifecycle.ACTIVE, Lifecycle.AT_RISK)
    codes = np.select(conditions, [_STAGES.index(s) for s in stages], default=_STAGES.index(Lifecycle.LAPSED))
    codes = codes.astype(np.int8)
    return codes, np.where(buyer, rhythm, np.nan), reference


def _flags(
    features: pd.DataFrame, buyer: np.ndarray, stage: np.ndarray, config: SegmentConfig, skip: set[str]
) -> dict[str, np.ndarray]:
    n = len(features)
    has = features.columns

    def col(name: str) -> np.ndarray:
        return _column(features, name) if name in has else np.full(n, np.nan)

    orders = np.nan_to_num(col(Feat.ORDERS_LIFETIME))
    value_trend, size_trend = col(Feat.ORDER_VALUE_TREND), col(Feat.BASKET_SIZE_TREND)
    trend = np.fmax(value_trend, size_trend)  # the larger growth; one known trend is enough
    spend_share_above = np.zeros(n)
    if buyer.any() and SegCol.FLAG_HIGH_VALUE_AT_RISK not in skip:
        spend = np.nan_to_num(col(Feat.MONETARY_LIFETIME)[buyer])
        worse = pd.Series(spend).rank(method="min").to_numpy() - 1.0
        spend_share_above[buyer] = worse / len(spend)  # share of buyers who spent strictly less
    tenure = col(Feat.TENURE_DAYS)
    slipping = np.isin(stage, [_STAGES.index(Lifecycle.AT_RISK), _STAGES.index(Lifecycle.LAPSED)])
    consents = [np.nan_to_num(col(c)) for c in (Feat.CONSENT_EMAIL, Feat.CONSENT_SMS, Feat.CONSENT_PUSH)]

    with np.errstate(invalid="ignore"):  # NaN compares False: an unknown value never raises a flag
        out = {
            SegCol.FLAG_RECENT_ABANDONED_CART: col(Feat.abandoned_carts(config.abandoned_cart_window_days)) >= 1,
            SegCol.FLAG_BROWSES_NEVER_BUYS: (col(Feat.VIEWS_SINCE_LAST_ORDER) >= config.browse_min_views)
            & (col(Feat.VIEWS_30D) > 0),
            SegCol.FLAG_ONE_AND_DONE: buyer & (orders == 1) & (stage != _STAGES.index(Lifecycle.NEW)),
            SegCol.FLAG_SINGLE_BRAND: (col(Feat.TOP_BRAND_SHARE) >= config.single_brand_min_share)
            & (orders >= config.single_brand_min_orders),
            SegCol.FLAG_FLAT_OR_SHRINKING_BASKET: trend <= config.basket_trend_max,
            SegCol.FLAG_HIGH_VALUE_AT_RISK: buyer & slipping & (spend_share_above >= 1.0 - config.high_value_share),
            SegCol.FLAG_ANNIVERSARY_7D: (col(Feat.DAYS_TO_ANNIVERSARY) <= config.anniversary_days)
            & ~(tenure <= config.anniversary_days),  # a first order this week is no anniversary
            SegCol.FLAG_OPTED_OUT_EVERYWHERE: (consents[0] < 0.5) & (consents[1] < 0.5) & (consents[2] < 0.5),
        }
    for flag in skip:
        out[flag] = np.zeros(n, dtype=bool)
    return out


def assign_segments(features: pd.DataFrame, config: SegmentConfig = SegmentConfig()) -> pd.DataFrame:
    """RFM scores and segment, lifecycle stage and behavioural flags for every customer of a snapshot.

    Args:
        features: One row per ``customer_key`` with the catalogue's features. Required: the order
            features ``recency_days``, ``orders_lifetime``, ``tenure_days`` and the configured F and M
            features; every other input is optional.
        config: Thresholds (documented defaults).

    Returns:
        One row per input row, in input order: ``customer_key``; ``r_score``, ``f_score``,
        ``m_score`` (nullable Int8, 1-5, null for leads); ``rfm_segment`` and ``lifecycle``
        (categoricals: exactly one per customer, ``Lead`` / ``lead`` for customers who never
        bought); ``rhythm_days`` (the purchase rhythm the lifecycle used, null for leads) and one
        boolean column per flag in :data:`FLAGS`, then one ``rule_<name>`` per rule of the config (its
        condition over the features and the columns above). ``attrs["not_available"]`` maps every flag that
        could not be computed (False for all) to the inputs the frame lacked;
        ``attrs["population_gap_days"]`` is the population rhythm.

    Raises:
        SegmentInputError: A required order feature is absent, or a rule names what the frame lacks (a
            customer attribute the data does not have, say): the message names the rule.
    """
    _require(
        features,
        (Feat.RECENCY_DAYS, Feat.ORDERS_LIFETIME, Feat.TENURE_DAYS, config.frequency_feature, config.monetary_feature),
    )
    n = len(features)
    recency = _column(features, Feat.RECENCY_DAYS)
    buyer = np.isfinite(recency)

    scores = {}
    for name, feature, higher in (
        (SegCol.R_SCORE, Feat.RECENCY_DAYS, False),
        (SegCol.F_SCORE, config.frequency_feature, True),
        (SegCol.M_SCORE, config.monetary_feature, True),
    ):
        score = np.zeros(n, dtype=np.int8)
        score[buyer] = quantile_scores(np.nan_to_num(_column(features, feature)[buyer]), higher)
        scores[name] = score
    fm = (scores[SegCol.F_SCORE].astype(np.int16) + scores[SegCol.M_SCORE]) // 2
    segment = np.full(n, _SEGMENTS.index(RfmSegment.LEAD), dtype=np.int8)
    segment[buyer] = _GRID_CODES[5 - scores[SegCol.R_SCORE][buyer], fm[buyer] - 1]

    stage, rhythm, reference = _lifecycle(features, buyer, config)
    lacking = missing_inputs(features.columns, config)
    flags = _flags(features, buyer, stage, config, set(lacking))

    out = pd.DataFrame(
        {
            Col.CUSTOMER_KEY: features[Col.CUSTOMER_KEY].to_numpy(),
            **{name: pd.arrays.IntegerArray(score, ~buyer) for name, score in scores.items()},
            SegCol.RFM_SEGMENT: pd.Categorical.from_codes(segment, categories=[s.value for s in _SEGMENTS]),
            SegCol.LIFECYCLE: pd.Categorical.from_codes(stage, categories=[s.value for s in _STAGES]),
            SegCol.RHYTHM_DAYS: rhythm,
            **{flag: flags[flag] for flag in FLAGS},
        },
        index=features.index,
    )
    if config.rules:
        both = pd.concat([features.drop(columns=list(out.columns), errors="ignore"), out], axis=1)
        for name, text in config.rules.items():
            try:
                out[RULE_PREFIX + name] = _rule(text).evaluate(both)
            except ConditionError as exc:
                raise SegmentInputError(f"segment rule {name!r}: {exc}") from exc
    out.attrs[NOT_AVAILABLE] = lacking
    out.attrs[POPULATION_GAP] = reference
    return out


def _order(labels: Iterable[str]) -> list[str]:
    """Known segment / stage labels in their canonical order, then any others sorted."""
    canonical = [s.value for s in _SEGMENTS] + [s.value for s in _STAGES]
    present = set(labels)
    return [c for c in canonical if c in present] + sorted(present - set(canonical))


def _label_codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes into a list of text labels (a missing value is the label "nan")."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return codes, [str(u) for u in uniques]


def transition_matrix(previous: pd.DataFrame, current: pd.DataFrame, column: str) -> pd.DataFrame:
    """How many customers moved from each previous segment (rows) to each current one (columns).

    Customers are matched by ``customer_key``. A customer absent from the previous snapshot is
    counted in row ``(new)``; one absent from the current snapshot in column ``(gone)``. Both axes
    list every label seen in either snapshot (canonical order), so the diagonal is "stayed".
    """
    before, before_labels = _label_codes(previous[column])
    after, after_labels = _label_codes(current[column])
    labels = _order([*before_labels, *after_labels])
    rows, cols = [*labels, NEW_ROW], [*labels, GONE_COLUMN]
    keys, _ = pd.factorize(pd.concat([previous[Col.CUSTOMER_KEY], current[Col.CUSTOMER_KEY]], ignore_index=True))
    old_keys, new_keys = keys[: len(previous)], keys[len(previous) :]
    if np.bincount(old_keys).max(initial=0) > 1 or np.bincount(new_keys).max(initial=0) > 1:
        raise ValueError("a snapshot lists a customer_key twice: segments must be one row per customer")
    src = np.full(keys.max(initial=-1) + 1, len(rows) - 1, dtype=np.int64)  # (new) unless seen before
    dst = np.full(len(src), len(cols) - 1, dtype=np.int64)  # (gone) unless seen now
    src[old_keys] = np.array([rows.index(x) for x in before_labels], dtype=np.int64)[before]
    dst[new_keys] = np.array([cols.index(x) for x in after_labels], dtype=np.int64)[after]
    counts = np.bincount(src * len(cols) + dst, minlength=len(rows) * len(cols)).reshape(len(rows), len(cols))
    return pd.DataFrame(counts, index=pd.Index(rows, name="previous"), columns=pd.Index(cols, name="current"))


@dataclass(frozen=True)
class TransitionSummary:
    """What a transition matrix says in a few numbers.

    Attributes:
        stayed: customers in both snapshots with the same segment.
        moved: customers in both snapshots whose segment changed.
        entered: customers only in the current snapshot.
        left: customers only in the previous snapshot.
        moves: every changed pair (previous, current, customers), largest first; new and gone excluded.
    """

    stayed: int
    moved: int
    entered: int
    left: int
    moves: pd.DataFrame

    @property
    def moved_share(self) -> float:
        """Share of customers present in both snapshots who changed segment."""
        both = self.stayed + self.moved
        return self.moved / both if both else 0.0


def summarise_transitions(matrix: pd.DataFrame) -> TransitionSummary:
    """Stayed / moved / entered / left counts and the list of moves, from :func:`transition_matrix`."""
    core = matrix.drop(index=NEW_ROW, columns=GONE_COLUMN, errors="ignore")
    long = core.stack().rename("customers").reset_index()
    long.columns = pd.Index(["previous", "current", "customers"])
    changed = long[(long["previous"] != long["current"]) & (long["customers"] > 0)]
    stayed = int(long.loc[long["previous"] == long["current"], "customers"].sum())
    moves = changed.sort_values(["customers", "previous", "current"], ascending=[False, True, True])
    return TransitionSummary(
        stayed=stayed,
        moved=int(changed["customers"].sum()),
        entered=int(matrix.loc[NEW_ROW].sum()) if NEW_ROW in matrix.index else 0,
        left=int(matrix[GONE_COLUMN].sum()) if GONE_COLUMN in matrix.columns else 0,
        moves=moves.reset_index(drop=True),
    )


def load_segment_config(path: Path) -> SegmentConfig:
    """A segment configuration from a YAML file (any :class:`SegmentConfig` field: thresholds, and ``rules``,
    your own segments as conditions): what ``kairos features build --segments FILE`` reads.

    Raises:
        SegmentInputError: the file is missing or not YAML, or a field is unknown or invalid (named by its path).
    """
    import yaml
    from pydantic import ValidationError

    path = Path(path)
    if not path.is_file():
        raise SegmentInputError(f"segment configuration {str(path)!r} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SegmentInputError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SegmentInputError(f"{path}: expected a mapping of settings at the top level")
    try:
        return SegmentConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {str(err['msg']).removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise SegmentInputError(f"{path}: {problems}") from exc


def with_band_positions(config: SegmentConfig, bands: Mapping[str, Sequence[str]]) -> SegmentConfig:
    """The configuration with band names in its rules' ordering comparisons replaced by their positions in the
    data's declared band order (``features.store.attribute_bands``), not the order seen in one snapshot.

    Raises:
        SegmentInputError: a rule names a band that is not one of the attribute's bands.
    """
    if not config.rules:
        return config
    rules = {}
    for name, text in config.rules.items():
        try:
            rules[name] = _rule(text).with_band_positions(bands)
        except ConditionError as exc:
            raise SegmentInputError(f"segment rule {name!r}: {exc}") from exc
    return config.model_copy(update={"rules": rules})
