"""Next-best-offer: score every eligible offer by expected incremental profit, decide per customer, and
allocate a campaign within its budget. "No offer" is always a candidate and wins unless some offer is
expected to earn more than it costs.

For a customer with expected order value ``V`` (their average order value; the population median when
they have none), purchase probability ``p0`` without an offer and ``p0 + u_k`` with offer ``k``:

    expected incremental profit(k) = u_k x margin_rate x V  -  [fixed_k + (p0 + u_k) x (rate_k x V + amount_k)]

The first term is the margin of the purchases the offer adds; the second its expected cost, paid on
every redemption, including by customers who would have bought anyway (that is why a blanket discount
loses money). ``u_k`` and ``p0`` come from the uplift model trained on logged randomised sends (source
``uplift_model``). Without one, the CRM playbook decides (source ``rules``, labelled as such): a rule
(abandoned cart -> cart reminder, high value at risk -> win-back, one-and-done -> second order,
anniversary -> thank-you bonus, browses but never buys -> offer on the most-viewed category) gives the
offers that serve it their catalogue's ``assumed_uplift`` (an assumption, not a measurement) and the
purchase probability comes from the customer's own order rhythm, ``1 - exp(-30 x orders_365d / 365)``.

An offer is a candidate for a customer only when its eligibility rule holds, today is within its
validity dates, the customer has had it fewer than ``max_per_customer`` times in that window, and at
least one of its channels is both consented and allowed by the contact policy (consent is a hard
filter: it is read from the ``consent_*`` features whatever the policy says). Customers in the global
control group (:mod:`models.decisioning.control`) get "no offer" with status ``control_group``.

Batch allocation (:func:`allocate`) maximises total expected incremental profit subject to the campaign
budget (expected cost) and each offer's budget, one offer per customer at most. It is the Lagrangian
relaxation of that multiple-choice knapsack: each customer takes ``argmax_k profit_k - lambda x cost_k``
(or nothing when no term is positive), with the budget's shadow price ``lambda`` found by bisection so
the campaign budget is met (``lambda = 0`` when the budget does not bind: everyone gets their best
offer). A greedy pass then walks customers from the most valuable down and gives each the best offer
that still fits the campaign and the offer's remaining budget, and a last pass spends what is left by
profit per unit of cost. Budgets are never exceeded (in expected cost).

Caution. When the uplift model knows how uncertain it is (the cells learner's posterior standard
deviation), ``caution = z`` makes every choice on the lower bound ``profit - z x sd(profit)``: an offer is
sent only when it is expected to earn more than it costs even if its uplift is ``z`` standard deviations
below the estimate, and among offers the best lower bound wins (an offer whose estimate is high only
because its few sends were lucky loses to a well-measured one). ``caution = 0`` decides on the mean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from features.contract import Channel, Col
from features.segments import SegCol
from models.decisioning.control import CONTROL_GROUP, ControlGroup
from models.decisioning.offers import Catalogue, CatalogueError, Play
from models.decisioning.uplift import UpliftModel
from models.reasons import DEFAULT_CURRENCY, format_money

__all__ = [
    "AllocationSummary",
    "ChannelsInput",
    "NextBestOffer",
    "OfferScores",
    "OfferSource",
    "Status",
    "allocate",
    "decide",
    "expected_order_value",
    "history_counts",
    "score_offers",
]

AVG_ORDER_VALUE = "avg_order_value"
ORDERS_365D = "orders_365d"
HORIZON_DAYS = 30.0
CHANNEL_ORDER = (Channel.EMAIL, Channel.SMS, Channel.PUSH)
CONSENT_COLUMNS = {Channel.EMAIL: "consent_email", Channel.SMS: "consent_sms", Channel.PUSH: "consent_push"}

ChannelsInput = Mapping[str, Iterable[str]] | Callable[[str], Iterable[str]] | None
"""Channels the contact policy allows now, per customer_key: a mapping or a callable (None: any consented)."""


class OfferSource(StrEnum):
    """Where an offer's uplift comes from: the uplift model, or the CRM playbook's rules."""

    UPLIFT_MODEL = "uplift_model"
    RULES = "rules"


class Status(StrEnum):
    OFFER = "offer"
    NO_OFFER = "no_offer"
    CONTROL = CONTROL_GROUP
    NOT_CONTACTABLE = "not_contactable"
    OVER_BUDGET = "over_budget"


# playbook rule -> (segment flag that triggers it, words for the reason)
PLAYBOOK: dict[Play, tuple[str, str]] = {
    Play.CART_REMINDER: (SegCol.FLAG_RECENT_ABANDONED_CART, "abandoned cart -> cart reminder"),
    Play.WIN_BACK: (SegCol.FLAG_HIGH_VALUE_AT_RISK, "high value at risk -> win-back"),
    Play.SECOND_ORDER: (SegCol.FLAG_ONE_AND_DONE, "one-and-done -> second-order incentive"),
    Play.BROWSE_ABANDON: (SegCol.FLAG_BROWSES_NEVER_BUYS, "browses but never buys -> offer on the most-viewed"),
    Play.ANNIVERSARY: (SegCol.FLAG_ANNIVERSARY_7D, "first-order anniversary -> thank-you bonus"),
}
MOST_VIEWED = "most_viewed_category_30d"

# why an offer is not a candidate (bit flags, for reasons and counts)
WHY_RULE, WHY_DATES, WHY_CAP, WHY_CHANNEL = 1, 2, 4, 8
_WHY_WORDS = {
    WHY_RULE: "eligibility rule",
    WHY_DATES: "outside its dates",
    WHY_CAP: "limit per customer reached",
    WHY_CHANNEL: "no allowed channel",
}


def population_order_value(frame: pd.DataFrame) -> float:
    """The median positive ``avg_order_value`` of ``frame``: the value of an order by someone without one.

    Raises:
        CatalogueError: the frame has no ``avg_order_value`` or nobody has a positive one.
    """
    aov, own = _order_values(frame)
    return _median_of_own(aov, own)


def _order_values(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``avg_order_value`` as floats, and whether each is a real (finite, positive) order value."""
    if AVG_ORDER_VALUE not in frame.columns:
        raise CatalogueError(f"the features need {AVG_ORDER_VALUE} to value an order")
    aov = pd.to_numeric(frame[AVG_ORDER_VALUE], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return aov, np.isfinite(aov) & (aov > 0)


def _median_of_own(aov: np.ndarray, own: np.ndarray) -> float:
    if not own.any():
        raise CatalogueError(f"nobody has a positive {AVG_ORDER_VALUE}; no order value to fall back on")
    return float(np.median(aov[own]))


def expected_order_value(frame: pd.DataFrame, fallback: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's expected order value and whether it fell back to the population's.

    Args:
        frame: rows with ``avg_order_value``.
        fallback: the value for customers without a positive one of their own (leads, say); the trained
            bundle carries the population median so that one customer's answer does not depend on who
            else is in the request. None: the median of ``frame`` itself.

    Raises:
        CatalogueError: the frame has no ``avg_order_value``, or no fallback is given and nobody in the
            frame has a positive one.
    """
    aov, own = _order_values(frame)
    if fallback is None:
        if own.all():
            return aov, ~own
        fallback = _median_of_own(aov, own)
    elif not (np.isfinite(fallback) and fallback > 0):
        raise ValueError(f"the fallback order value must be a finite number > 0, got {fallback}")
    return np.where(own, aov, float(fallback)), ~own


def history_counts(history: pd.DataFrame | None, keys: np.ndarray, catalogue: Catalogue) -> np.ndarray:
    """``(n, n_offers)`` sends of each offer to each customer within the offer's validity window.

    Args:
        history: logged sends with ``customer_key``, ``offer_id``, ``sent_at`` (the messages table).
        keys: the customers, in row order.
        catalogue: the offers.
    """
    out = np.zeros((len(keys), len(catalogue.offers)), dtype=np.int64)
    if history is None or history.empty:
        return out
    lacking = [c for c in (Col.CUSTOMER_KEY, Col.OFFER_ID, Col.SENT_AT) if c not in history.columns]
    if lacking:
        raise CatalogueError(f"offer history lacks {', '.join(lacking)}")
    sent = pd.to_datetime(history[Col.SENT_AT], utc=True)
    position = pd.Series(np.arange(len(keys)), index=pd.Index(keys, dtype=object))
    for j, offer in enumerate(catalogue.offers):
        rows = history[(history[Col.OFFER_ID] == offer.id) & (sent >= offer.valid_from) & (sent <= offer.valid_to)]
        counts = rows[Col.CUSTOMER_KEY].value_counts()
        hit = counts.index.intersection(position.index)
        out[position.loc[hit].to_numpy(), j] = counts.loc[hit].to_numpy()
    return out


@dataclass
class OfferScores:
    """Everything known about every (customer, offer) pair; arrays are ``(n,)`` or ``(n, n_offers)``.

    ``profit`` is the expected incremental profit; ``eligible`` already excludes the control group,
    rule failures, dates, caps and channels (``why_not`` says which, as bit flags).
    """

    keys: np.ndarray
    offer_ids: list[str]
    names: list[str]
    source: np.ndarray  # (n_offers,) OfferSource of each offer's uplift
    order_value: np.ndarray
    order_value_fallback: np.ndarray
    p_base: np.ndarray
    uplift: np.ndarray
    p_offer: np.ndarray
    margin: np.ndarray
    cost: np.ndarray
    profit: np.ndarray
    profit_low: np.ndarray  # profit - caution x its standard deviation: what decisions rank on
    eligible: np.ndarray
    why_not: np.ndarray
    channels: list[list[list[str]]]  # per customer, per offer: usable channels in preference order
    control: np.ndarray
    contactable: np.ndarray
    rule_reason: np.ndarray  # (n, n_offers) playbook words where rules gave the uplift, else ""
    most_viewed: np.ndarray
    currency: str = DEFAULT_CURRENCY
    control_share: float = 0.05
    caution: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)


def _allowed_channels(
    keys: np.ndarray, frame: pd.DataFrame, allowed: ChannelsInput, used: Iterable[Channel] = CHANNEL_ORDER
) -> list[list[str]]:
    """Per customer: channels both consented and allowed by the policy, in the policy's order.

    Only the ``used`` channels (those some offer of the catalogue goes out on) need a consent column; a
    channel outside them is never usable, so its consent is not read.
    """
    used = [ch for ch in CHANNEL_ORDER if ch in set(used)]
    lacking = [CONSENT_COLUMNS[ch] for ch in used if CONSENT_COLUMNS[ch] not in frame.columns]
    if lacking:
        raise CatalogueError(
            f"consent is a hard filter: the features need {', '.join(lacking)} (the catalogue's offers go out on "
            f"{', '.join(str(c) for c in used)})"
        )
    consent = {
        ch: pd.to_numeric(frame[CONSENT_COLUMNS[ch]], errors="coerce").fillna(0).to_numpy() >= 0.5 for ch in used
    }
    out: list[list[str]] = []
    for i, key in enumerate(keys):
        if allowed is None:
            wanted: Iterable[str] = [str(c) for c in CHANNEL_ORDER]
        elif callable(allowed):
            wanted = allowed(key)
        else:
            wanted = allowed.get(key, ())
        chosen = []
        for ch in wanted:
            try:
                channel = Channel(str(ch))
            except ValueError as exc:
                raise CatalogueError(f"allowed channels for a customer hold unknown channel {ch!r}") from exc
            if channel in consent and consent[channel][i] and str(channel) not in chosen:
                chosen.append(str(channel))
        out.append(chosen)
    return out


def _rules_uplift(frame: pd.DataFrame, catalogue: Catalogue) -> tuple[np.ndarray, np.ndarray]:
    """Assumed uplift per (customer, offer) from the playbook, and the words of the rule that fired."""
    n, k = len(frame), len(catalogue.offers)
    uplift = np.zeros((n, k))
    words = np.full((n, k), "", dtype=object)
    for j, offer in enumerate(catalogue.offers):
        for play in reversed(offer.plays):  # the first listed play wins the reason
            flag, text = PLAYBOOK[play]
            if flag not in frame.columns:
                continue
            fired = pd.Series(frame[flag]).astype("boolean").fillna(False).to_numpy(dtype=bool)
            uplift[fired, j] = offer.assumed_uplift
            words[fired, j] = text
    return uplift, words


def _no_rules(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n, k)), np.full((n, k), "", dtype=object)


def _rhythm_probability(frame: pd.DataFrame) -> np.ndarray:
    if ORDERS_365D not in frame.columns:
        raise CatalogueError(f"rules need {ORDERS_365D} (or a p_base) for the purchase probability")
    rate = pd.to_numeric(frame[ORDERS_365D], errors="coerce").fillna(0).to_numpy(dtype=np.float64) / 365.0
    return 1.0 - np.exp(-HORIZON_DAYS * rate)


def score_offers(
    frame: pd.DataFrame,
    catalogue: Catalogue,
    *,
    now: datetime,
    uplift: UpliftModel | None = None,
    history: pd.DataFrame | None = None,
    allowed_channels: ChannelsInput = None,
    control: ControlGroup | None = None,
    p_base: np.ndarray | None = None,
    caution: float = 0.0,
    fallback_order_value: float | None = None,
) -> OfferScores:
    """Score every offer of ``catalogue`` for every customer of ``frame``.

    Args:
        frame: one row per customer: ``customer_key``, the features (``features.store``) and segment
            columns (``features.segments.assign_segments``) the rules and the uplift model read.
        catalogue: the offers.
        now: decision time (timezone-aware), for validity dates.
        uplift: a fitted uplift model; offers it has no arm for (or all offers, when None) use the rules.
        history: logged sends (``customer_key, offer_id, sent_at``) for the per-customer limits.
        allowed_channels: channels the contact policy allows now (see :data:`ChannelsInput`).
        control: the global control group (default 5%).
        p_base: purchase probability without an offer, used only where rules give the uplift (default:
            the customer's own rhythm).
        caution: decide on ``profit - caution x sd(profit)`` where the uplift model gives a standard
            deviation (0: on the expected profit).
        fallback_order_value: the order value of customers without one (see :func:`expected_order_value`).

    Raises:
        CatalogueError: a column the rules, costs or consent need is absent.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not (np.isfinite(caution) and caution >= 0):
        raise ValueError(f"caution must be a finite number >= 0, got {caution}")
    if Col.CUSTOMER_KEY not in frame.columns:
        raise CatalogueError("the features need a customer_key column")
    frame = frame.reset_index(drop=True)
    keys = frame[Col.CUSTOMER_KEY].astype(str).to_numpy()
    n, k = len(frame), len(catalogue.offers)
    control = control or ControlGroup()
    order_value, fallback = expected_order_value(frame, fallback_order_value)

    arms = {a: i for i, a in enumerate(uplift.arms_)} if uplift is not None else {}
    modelled = [j for j, o in enumerate(catalogue.offers) if o.id in arms]
    # the playbook and the rhythm probability are read only when some offer is decided by the rules
    by_rules = len(modelled) < k
    rules_uplift, rule_words = _rules_uplift(frame, catalogue) if by_rules else _no_rules(n, k)
    source = np.array([OfferSource.RULES.value] * k, dtype=object)
    if p_base is not None:
        base = np.asarray(p_base, dtype=np.float64)
    elif by_rules or uplift is None:
        base = _rhythm_probability(frame)
    else:
        base = np.zeros(n)  # replaced by the model's below
    up = rules_uplift.copy()
    up_sd = np.zeros((n, k))
    if uplift is not None and modelled:
        model_base = uplift.predict_base(frame)
        model_up = uplift.predict_uplift(frame)
        model_sd = uplift.predict_uplift_sd(frame)
        base = model_base
        for j in modelled:
            up[:, j] = model_up[:, arms[catalogue.offers[j].id]]
            if model_sd is not None:
                up_sd[:, j] = model_sd[:, arms[catalogue.offers[j].id]]
            source[j] = OfferSource.UPLIFT_MODEL.value
            rule_words[:, j] = ""
    p_offer = np.clip(base[:, None] + up, 0.0, 1.0)
    up = p_offer - base[:, None]
    margin = up * catalogue.margin_rate * order_value[:, None]
    cost = np.column_stack([o.cost.expected_cost(p_offer[:, j], order_value) for j, o in enumerate(catalogue.offers)])
    profit = margin - cost
    # d profit / d uplift: the margin of an added order minus what its redemption costs
    slope = np.column_stack(
        [
            catalogue.margin_rate * order_value - o.cost.discount_rate * order_value - o.cost.discount_amount
            for o in catalogue.offers
        ]
    )
    profit_low = profit - caution * np.abs(slope) * up_sd

    used_channels = {c for o in catalogue.offers for c in o.channels}
    allowed = _allowed_channels(keys, frame, allowed_channels, used_channels)
    counts = history_counts(history, keys, catalogue)
    why = np.zeros((n, k), dtype=np.int64)
    usable: list[list[list[str]]] = [[[] for _ in range(k)] for _ in range(n)]
    rules = catalogue.eligible(frame)
    for j, offer in enumerate(catalogue.offers):
        why[~rules[:, j], j] |= WHY_RULE
        if not offer.valid_at(now):
            why[:, j] |= WHY_DATES
        if offer.max_per_customer is not None:
            why[counts[:, j] >= offer.max_per_customer, j] |= WHY_CAP
        offered = {str(c) for c in offer.channels}
        for i in range(n):
            chans = [c for c in allowed[i] if c in offered]
            usable[i][j] = chans
            if not chans:
                why[i, j] |= WHY_CHANNEL
    held_out = control.contains(keys)
    eligible = (why == 0) & ~held_out[:, None]
    most_viewed = (
        frame[MOST_VIEWED].astype(object).where(frame[MOST_VIEWED].notna(), "").to_numpy()
        if MOST_VIEWED in frame.columns
        else np.full(n, "", dtype=object)
    )
    return OfferScores(
        keys=keys,
        offer_ids=catalogue.offer_ids,
        names=[o.name for o in catalogue.offers],
        source=source,
        order_value=order_value,
        order_value_fallback=fallback,
        p_base=base,
        uplift=up,
        p_offer=p_offer,
        margin=margin,
        cost=cost,
        profit=profit,
        profit_low=profit_low,
        eligible=eligible,
        why_not=why,
        channels=usable,
        control=held_out,
        contactable=np.array([bool(a) for a in allowed]),
        rule_reason=rule_words,
        most_viewed=most_viewed,
        currency=catalogue.currency or DEFAULT_CURRENCY,
        control_share=control.share,
        caution=caution,
    )


# --- decisions ----------------------------------------------------------------------------------------


def _money(x: float, currency: str) -> str:
    return format_money(x, currency, decimals=2)


def _offer_reason(s: OfferScores, i: int, j: int, n_candidates: int) -> str:
    cur = s.currency
    if s.source[j] == OfferSource.RULES:
        target = f" ({s.most_viewed[i]})" if s.rule_reason[i, j].startswith("browses") and s.most_viewed[i] else ""
        how = f"rule '{s.rule_reason[i, j]}'{target}, assumed uplift {100 * s.uplift[i, j]:+.1f} pts (not measured)"
    else:
        how = f"uplift model: {100 * s.uplift[i, j]:+.1f} pts purchase probability"
    bound = f" (cautious lower bound {_money(s.profit_low[i, j], cur)})" if s.caution > 0 else ""
    return (
        f"{s.offer_ids[j]} ({s.names[j]}): {how}; incremental margin {_money(s.margin[i, j], cur)} - expected cost "
        f"{_money(s.cost[i, j], cur)} = {_money(s.profit[i, j], cur)}{bound}; best of {n_candidates} eligible offer(s)"
    )


def _no_offer_reason(s: OfferScores, i: int) -> tuple[str, str]:
    if s.control[i]:
        return Status.CONTROL, f"held out in the global control group ({100 * s.control_share:g}% of customers)"
    if not s.contactable[i]:
        return Status.NOT_CONTACTABLE, "no channel is both consented and allowed by the contact policy now"
    cand = np.flatnonzero(s.eligible[i])
    if not len(cand):
        why = s.why_not[i]
        parts = [f"{s.offer_ids[j]}: {_why_words(int(why[j]))}" for j in range(len(s.offer_ids))]
        return Status.NO_OFFER, "no offer: none is eligible (" + "; ".join(parts) + ")"
    best = cand[np.argmax(s.profit_low[i, cand])]
    if s.caution > 0:
        return Status.NO_OFFER, (
            f"no offer: none of {len(cand)} eligible offer(s) is clearly expected to earn more than it costs "
            f"(best {s.offer_ids[best]}: {_money(s.profit[i, best], s.currency)}, cautious lower bound "
            f"{_money(s.profit_low[i, best], s.currency)})"
        )
    return Status.NO_OFFER, (
        f"no offer: none of {len(cand)} eligible offer(s) is expected to earn more than it costs "
        f"(best {s.offer_ids[best]}: {_money(s.profit[i, best], s.currency)})"
    )


def _why_words(bits: int) -> str:
    return ", ".join(words for bit, words in _WHY_WORDS.items() if bits & bit) or "eligible"


def _rows(
    s: OfferScores, choice: np.ndarray, status_override: dict[int, tuple[str, str]] | None = None
) -> pd.DataFrame:
    """One row per customer for a choice (offer column index, -1 for none)."""
    n = len(s)
    rows: dict[str, list[Any]] = {
        Col.CUSTOMER_KEY: list(s.keys),
        "status": [],
        Col.OFFER_ID: [],
        "channel": [],
        "channels": [],
        "expected_profit": [],
        "uplift": [],
        "p_buy_base": list(s.p_base),
        "p_buy_offer": [],
        "expected_cost": [],
        "expected_order_value": list(s.order_value),
        "source": [],
        "reason": [],
    }
    n_cand = s.eligible.sum(axis=1)
    model_source = OfferSource.UPLIFT_MODEL if (s.source == OfferSource.UPLIFT_MODEL).any() else OfferSource.RULES
    for i in range(n):
        j = int(choice[i])
        if j >= 0:
            rows["status"].append(Status.OFFER.value)
            rows[Col.OFFER_ID].append(s.offer_ids[j])
            rows["channel"].append(s.channels[i][j][0])
            rows["channels"].append(list(s.channels[i][j]))
            rows["expected_profit"].append(float(s.profit[i, j]))
            rows["uplift"].append(float(s.uplift[i, j]))
            rows["p_buy_offer"].append(float(s.p_offer[i, j]))
            rows["expected_cost"].append(float(s.cost[i, j]))
            rows["source"].append(str(s.source[j]))
            rows["reason"].append(_offer_reason(s, i, j, int(n_cand[i])))
        else:
            status, reason = (status_override or {}).get(i) or _no_offer_reason(s, i)
            rows["status"].append(str(status))
            rows[Col.OFFER_ID].append(None)
            rows["channel"].append(None)
            rows["channels"].append([])
            rows["expected_profit"].append(0.0)
            rows["uplift"].append(0.0)
            rows["p_buy_offer"].append(float(s.p_base[i]))
            rows["expected_cost"].append(0.0)
            rows["source"].append(str(model_source))
            rows["reason"].append(reason)
    return pd.DataFrame(rows)


def _best_choice(s: OfferScores) -> np.ndarray:
    masked = np.where(s.eligible, s.profit_low, -np.inf)
    if not masked.size:
        return np.full(len(s), -1)
    best = np.argmax(masked, axis=1)
    return np.where(masked[np.arange(len(s)), best] > 0, best, -1)


def decide(scores: OfferScores) -> pd.DataFrame:
    """Each customer's best offer by expected incremental profit (its cautious lower bound when
    ``scores.caution > 0``), or none, with status, channel and reason.

    Returns:
        One row per customer, in input order: ``customer_key, status, offer_id, channel, channels,
        expected_profit, uplift, p_buy_base, p_buy_offer, expected_cost, expected_order_value, source,
        reason``. ``status`` is ``offer``, ``no_offer``, ``control_group`` or ``not_contactable``.
    """
    return _rows(scores, _best_choice(scores))


@dataclass(frozen=True)
class AllocationSummary:
    """What a campaign allocation spends and expects to earn (expected values)."""

    budget: float | None
    spent: float
    expected_profit: float
    shadow_price: float
    offers: dict[str, int]
    spent_by_offer: dict[str, float]
    control: int
    over_budget: int
    no_offer: int
    not_contactable: int


def _offer_budgets(catalogue: Catalogue) -> np.ndarray:
    return np.array([np.inf if o.budget is None else o.budget for o in catalogue.offers], dtype=np.float64)


def allocate(
    scores: OfferScores, catalogue: Catalogue, budget: float | None = None
) -> tuple[pd.DataFrame, AllocationSummary]:
    """Give at most one offer per customer maximising expected incremental profit within the budgets.

    Args:
        scores: from :func:`score_offers` (same catalogue).
        catalogue: the offers (their budgets) and the campaign budget.
        budget: campaign budget (expected cost); default the catalogue's (None = unlimited).

    Returns:
        The decisions (as :func:`decide`, plus status ``over_budget`` for customers whose best offer did
        not fit) and a summary. Totals of expected cost never exceed the campaign or any offer budget.
    """
    if scores.offer_ids != catalogue.offer_ids:
        raise CatalogueError("scores were computed with another catalogue")
    total_budget = catalogue.budget if budget is None else budget
    if total_budget is not None and total_budget < 0:
        raise ValueError("budget must not be negative")
    n = len(scores)
    rows = np.arange(n)
    valued = np.where(scores.eligible & (scores.profit_low > 0), scores.profit_low, -np.inf)
    cost = np.maximum(scores.cost, 1e-12)

    def choose(lam: float) -> tuple[np.ndarray, np.ndarray]:
        adjusted = valued - lam * cost
        best = np.argmax(adjusted, axis=1) if n else np.zeros(0, dtype=np.int64)
        take = adjusted[rows, best] > 0 if n else np.zeros(0, dtype=bool)
        return best, take

    def spend(lam: float) -> float:
        best, take = choose(lam)
        return float(cost[rows[take], best[take]].sum())

    lam = 0.0
    cap = np.inf if total_budget is None else float(total_budget)
    if n and spend(0.0) > cap:
        hi = 1.0
        while spend(hi) > cap and hi < 1e9:
            hi *= 2.0
        lo = 0.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if spend(mid) > cap else (lo, mid)
        lam = hi

    remaining = cap
    offer_left = _offer_budgets(catalogue)
    choice = np.full(n, -1)
    adjusted = valued - lam * cost
    wanted = np.isfinite(valued).any(axis=1) if n else np.zeros(0, dtype=bool)
    first = rows[wanted][np.argsort(-adjusted[wanted].max(axis=1), kind="stable")]
    for i in first:  # greedy repair: best adjusted offer that still fits
        for j in np.argsort(-adjusted[i], kind="stable"):
            if adjusted[i, j] <= 0:
                break
            c = cost[i, j]
            if c <= remaining and c <= offer_left[j]:
                choice[i] = j
                remaining -= c
                offer_left[j] -= c
                break
    left = rows[wanted & (choice < 0)]
    if len(left):  # spend what the rounding left, by profit per unit of cost
        ratio = np.where(np.isfinite(valued[left]), valued[left] / cost[left], -np.inf)
        order = np.argsort(-ratio.max(axis=1), kind="stable")
        for i, r in zip(left[order], ratio[order], strict=True):
            for j in np.argsort(-r, kind="stable"):
                if not np.isfinite(r[j]):
                    break
                c = cost[i, j]
                if c <= remaining and c <= offer_left[j]:
                    choice[i] = j
                    remaining -= c
                    offer_left[j] -= c
                    break

    override = {
        int(i): (
            Status.OVER_BUDGET.value,
            f"over budget: {scores.offer_ids[int(np.argmax(valued[i]))]} would earn "
            f"{_money(float(valued[i].max()), scores.currency)} but the campaign or offer budget is spent",
        )
        for i in rows[wanted & (choice < 0)]
    }
    frame = _rows(scores, choice, override)
    given = choice >= 0
    spent_by = {oid: float(cost[rows[given & (choice == j)], j].sum()) for j, oid in enumerate(scores.offer_ids)}
    summary = AllocationSummary(
        budget=total_budget,
        spent=float(sum(spent_by.values())),
        expected_profit=float(scores.profit[rows[given], choice[given]].sum()),
        shadow_price=lam,
        offers={oid: int((choice == j).sum()) for j, oid in enumerate(scores.offer_ids)},
        spent_by_offer=spent_by,
        control=int(scores.control.sum()),
        over_budget=len(override),
        no_offer=int((frame["status"] == Status.NO_OFFER).sum()),
        not_contactable=int((frame["status"] == Status.NOT_CONTACTABLE).sum()),
    )
    return frame, summary


@dataclass(frozen=True)
class NextBestOffer:
    """The decision service's entry point: a catalogue, an optional uplift model and the control group."""

    catalogue: Catalogue
    uplift: UpliftModel | None = None
    control: ControlGroup = field(default_factory=ControlGroup)
    caution: float = 0.0
    fallback_order_value: float | None = None

    def score(
        self,
        frame: pd.DataFrame,
        *,
        now: datetime,
        history: pd.DataFrame | None = None,
        allowed_channels: ChannelsInput = None,
        p_base: np.ndarray | None = None,
    ) -> OfferScores:
        return score_offers(
            frame,
            self.catalogue,
            now=now,
            uplift=self.uplift,
            history=history,
            allowed_channels=allowed_channels,
            control=self.control,
            p_base=p_base,
            caution=self.caution,
            fallback_order_value=self.fallback_order_value,
        )

    def decide(self, frame: pd.DataFrame, *, now: datetime, **kwargs: Any) -> pd.DataFrame:
        """Per-customer decisions (see :func:`decide`)."""
        return decide(self.score(frame, now=now, **kwargs))

    def allocate(
        self, frame: pd.DataFrame, *, now: datetime, budget: float | None = None, **kwargs: Any
    ) -> tuple[pd.DataFrame, AllocationSummary]:
        """A campaign's allocation within its budgets (see :func:`allocate`)."""
        return allocate(self.score(frame, now=now, **kwargs), self.catalogue, budget)
