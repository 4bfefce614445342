"""The offers job: logged sends -> uplift (X-learner over LightGBM) -> held-out Qini and off-policy value
-> an optional outside check of the policy (on a synthetic world, its true profit against the planted
truth: ``synth.checks``) -> one verified bundle in MLflow, registered as "offers".

Dataset. Every logged campaign message is a randomised experiment: it carried no offer or one offer
drawn at random. Its outcome is any order by the customer within 30 days after the send. Its features
are those of the latest monthly cutoff before the send (never a feature from after the send), with the
"days since" features aged by the days from the cutoff to the send, as the online store ages them.
Sends whose 30-day window is not complete by the end of the data are left out.

Split. Sends in the last ``holdout_days`` form the holdout; training uses sends whose whole outcome
window ends before the holdout starts, so no training label sees a holdout day.

Model. The default learner is ``cells`` over :data:`DEFAULT_CELLS` (differences in purchase rates per
offer and cell, shrunk by empirical Bayes; see :mod:`models.decisioning.uplift`), deciding on a lower
bound of the profit. How cautious (``caution`` = standard deviations below the estimate) is chosen per
run on a validation split of the training sends: the last ``holdout_days`` of them, with a model fitted
on the sends whose outcome window ends before; the caution with the best doubly robust incremental
profit wins if it beats no caution by more than a paired standard error, and the final model is refitted
on every training send. The control sends the purchase probability without an offer is fitted on
(:data:`BASELINES`: all of them, or those without another offer in their outcome window, optionally
weighted toward recent sends) are chosen first on the same split, by log loss. The holdout and any
outside check are read only after those choices. Method and cells were chosen the same way
(docs/offers.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from bundles import registry
from bundles.offers import MODEL_NAME, OffersBundle
from features.contract import Col, OrderStatus
from features.definitions import FEATURES, GROUPS, definition_hash, population
from features.errors import KairosError
from features.ingest import require_dates
from features.segments import assign_segments
from features.store import attribute_bands, data_currency, data_end, ingest_report, latest_snapshot, open_tables
from models.decisioning.control import ControlGroup
from models.decisioning.nbo import (
    NextBestOffer,
    expected_order_value,
    population_order_value,
    score_offers,
)
from models.decisioning.offers import EXAMPLE_CATALOGUE, Catalogue, load_catalogue
from models.decisioning.uplift import CONTROL, P_BASE, UpliftModel, treatment_labels
from models.decisioning.uplift_metrics import (
    auuc,
    dr_difference,
    dr_value,
    ips_value,
    policy_contrast,
    qini_auc,
    qini_coefficient,
    uplift_at_k,
)

EXPERIMENT = "kairos-offers"
SELECTION_METRIC = "ope_dr_incremental_profit_per_send"
HORIZON_DAYS = 30
OUTCOME = "bought_30d"
SENT_AT = Col.SENT_AT
CUTOFF = "cutoff"
SKIP_GROUPS = ("hour_of_week",)  # 168 hour-of-week bins: send time's business, costly, no uplift signal
# nested cells of the default learner: predicted purchase probability without an offer, lifecycle stage,
# order value band (chosen on validation sends, docs/offers.md)
# Chosen on validation sends (synthetic 5,000, docs/offers.md): with loyalty_member the best caution's
# DR incremental profit was 0.45 per send (s.e. 0.19) against 0.30 (0.16) without it.
DEFAULT_CELLS = (P_BASE, "lifecycle", "avg_order_value", "loyalty_member")
CAUTION_GRID = (0.0, 0.5, 1.0, 1.5, 2.0)
# offers sent to the same customer in the 30 days before or after a send (itself excluded): the logged
# policy's other offers, which buy orders inside the send's outcome window
OTHER_OFFERS = "other_offers_30d"
# the control sends the purchase probability without an offer is fitted on (chosen on validation sends):
# "all" = every control send; "clean" = those whose outcome window held no other offer (what a decision
# assumes); "clean_hl<N>" = the clean ones weighted by 0.5 ** (age / N days), age counted from the latest
# send, so that the baseline follows the drift of purchase rates over time
BASELINES = ("clean", "clean_hl180", "clean_hl90", "all")
MIN_BASELINE_VALIDATION = 30  # fewest clean validation control sends to choose a baseline on
KAIROS = "Kairos (uplift x margin - cost)"
# (the policy, features and segments as of now, now, the message history, other policies to compare by
# name) -> a table and figures to log (synth.checks.OffersTruth on a synthetic world)
PolicyCheck = Callable[
    [NextBestOffer, pd.DataFrame, datetime, pd.DataFrame, dict[str, NextBestOffer]],
    tuple[pd.DataFrame, dict[str, float]],
]
ProgressFn = Callable[[str, float], None]


class InsufficientOfferDataError(KairosError):
    """The logged sends cannot support an honest uplift run; the message says what is missing."""


# --- the logged-send dataset ---------------------------------------------------------------------------


def uplift_feature_names() -> list[str]:
    """Numeric features the uplift model reads (the catalogue's, without the hour-of-week bins)."""
    skipped = {f.name for g in GROUPS if g.name in SKIP_GROUPS for f in g.features}
    return [f.name for f in FEATURES if f.dtype == "float32" and f.name not in skipped]


def uplift_columns(cells: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Columns an uplift model reads: the numeric features and any other cell column (e.g. lifecycle)."""
    features = uplift_feature_names()
    return features + [c for c in cells if c != P_BASE and c not in features]


def features_at(tables: dict[str, Any], as_of: datetime) -> pd.DataFrame:
    """Features (all groups but hour-of-week) and segments as of ``as_of``, one row per customer.

    The same definitions as :func:`features.store.compute_features`, executed group by group and joined
    in pandas (three times faster on DuckDB than one wide join, which matters at a dozen cutoffs).
    """
    import ibis

    cutoff = ibis.timestamp(as_of)
    frame = population(tables, cutoff).execute()
    for group in GROUPS:
        if group.name in SKIP_GROUPS:
            continue
        frame = frame.merge(group.build(tables, cutoff).execute(), on=Col.CUSTOMER_KEY, how="left")
    for f in FEATURES:
        if f.name not in frame.columns:
            continue
        if f.fill is not None:
            frame[f.name] = frame[f.name].fillna(f.fill)
        frame[f.name] = frame[f.name].astype(f.dtype)
    frame = frame.sort_values(Col.CUSTOMER_KEY, kind="stable").reset_index(drop=True)
    segments = assign_segments(frame)
    return frame.merge(segments, on=Col.CUSTOMER_KEY, how="left")


def _utc(ts: Any) -> datetime:
    t = pd.Timestamp(ts)
    return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).to_pydatetime()


def send_cutoffs(first: datetime, last: datetime, step_days: int) -> list[datetime]:
    """Midnight cutoffs every ``step_days`` from ``first`` up to ``last``."""
    t = datetime(first.year, first.month, first.day, tzinfo=UTC)
    out = []
    while t <= last:
        out.append(t)
        t += timedelta(days=step_days)
    return out


def build_send_dataset(
    tables: dict[str, Any],
    *,
    step_days: int = 30,
    min_history_days: int = 60,
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """One row per logged send with a complete outcome window: features as of the latest cutoff before the
    send (ages aged to the send), ``offer_id`` (None = no offer), ``sent_at``, ``cutoff`` and ``bought_30d``.

    Raises:
        InsufficientOfferDataError: no messages, or no send with both history and a full outcome window.
    """
    tick = progress or (lambda step, frac: None)
    if "messages" not in tables:
        hint = (
            "; it has campaign exposures: `kairos train offers --from-campaigns` shows what they can and cannot "
            "teach (docs/offers.md)"
            if "exposures" in tables
            else ""
        )
        raise InsufficientOfferDataError(f"no messages table: the export has no logged offer sends{hint}")
    msgs = tables["messages"].select(Col.MESSAGE_ID, Col.CUSTOMER_KEY, Col.CHANNEL, Col.OFFER_ID, SENT_AT).execute()
    msgs = msgs[msgs[Col.CUSTOMER_KEY].notna()]
    if msgs.empty:
        raise InsufficientOfferDataError("the messages table is empty")
    msgs[SENT_AT] = pd.to_datetime(msgs[SENT_AT], utc=True)
    orders = tables["orders"]
    first_order = _utc(orders[Col.ORDERED_AT].min().execute())
    end = data_end(tables)
    first_cutoff = first_order + timedelta(days=min_history_days)
    last_send = end - timedelta(days=HORIZON_DAYS)
    msgs = msgs[(msgs[SENT_AT] >= first_cutoff) & (msgs[SENT_AT] <= last_send)]
    if msgs.empty:
        raise InsufficientOfferDataError(
            f"no send between {first_cutoff.date()} ({min_history_days} days of history) and {last_send.date()} "
            f"(a full {HORIZON_DAYS}-day outcome window)"
        )
    cutoffs = send_cutoffs(first_cutoff, last_send, step_days)
    cut_index = pd.DatetimeIndex(cutoffs)
    msgs[CUTOFF] = cut_index[cut_index.searchsorted(msgs[SENT_AT], side="right") - 1]
    parts = []
    used = sorted(msgs[CUTOFF].unique())
    for k, cutoff in enumerate(used):
        tick(f"features as of {pd.Timestamp(cutoff).date()}", 0.05 + 0.5 * k / len(used))
        feats = features_at(tables, _utc(cutoff))
        rows = msgs[msgs[CUTOFF] == cutoff].merge(feats, on=Col.CUSTOMER_KEY, how="inner")
        parts.append(rows)
    data = pd.concat(parts, ignore_index=True)
    gap = (data[SENT_AT] - data[CUTOFF]).dt.total_seconds().to_numpy() / 86_400.0
    for f in FEATURES:
        if f.ages and f.name in data.columns:
            data[f.name] = (data[f.name].astype(np.float64) + gap).astype(f.dtype)

    o = orders.select(Col.CUSTOMER_KEY, Col.ORDERED_AT, Col.STATUS).execute()
    o = o[o[Col.CUSTOMER_KEY].notna() & (o[Col.STATUS].fillna("") != OrderStatus.CANCELLED.value)]
    o = o.assign(**{Col.ORDERED_AT: pd.to_datetime(o[Col.ORDERED_AT], utc=True)}).sort_values(Col.ORDERED_AT)
    data = data.sort_values(SENT_AT, kind="stable")
    nxt = pd.merge_asof(
        data[[SENT_AT, Col.CUSTOMER_KEY]].reset_index(),
        o[[Col.ORDERED_AT, Col.CUSTOMER_KEY]],
        left_on=SENT_AT,
        right_on=Col.ORDERED_AT,
        by=Col.CUSTOMER_KEY,
        direction="forward",
        allow_exact_matches=False,
    ).set_index("index")
    within = (nxt[Col.ORDERED_AT] - nxt[SENT_AT]).dt.total_seconds() <= HORIZON_DAYS * 86_400
    data[OUTCOME] = within.reindex(data.index).fillna(False).astype(np.int8)
    offer = data[Col.OFFER_ID].astype(object)
    data[Col.OFFER_ID] = offer.where(offer.notna(), None)
    return with_other_offers(data.reset_index(drop=True), tables)


def count_other_offers(sends: pd.DataFrame, messages: pd.DataFrame) -> np.ndarray:
    """Per send, the offers its customer was sent in the :data:`HORIZON_DAYS` before or after it, itself
    excluded: an offer sent then can buy an order inside this send's outcome window.

    The logged policy sends offers at random on ~35 % of the messages, so a control send's 30-day purchase
    rate is the rate *with the logging policy's other offers around it*, not without any offer; the
    offers job fits the base purchase probability on the control sends where this count is 0.
    """
    offers = messages[messages[Col.OFFER_ID].notna() & messages[Col.CUSTOMER_KEY].notna()]
    keys = pd.concat([sends[Col.CUSTOMER_KEY], offers[Col.CUSTOMER_KEY]], ignore_index=True).astype(str)
    codes = pd.factorize(keys)[0].astype(np.float64)
    epoch = pd.Timestamp("2000-01-01", tz="UTC")
    send_days = (pd.to_datetime(sends[SENT_AT], utc=True) - epoch).dt.total_seconds().to_numpy() / 86_400.0
    offer_days = (pd.to_datetime(offers[SENT_AT], utc=True) - epoch).dt.total_seconds().to_numpy() / 86_400.0
    span = float(max(np.abs(send_days).max(initial=0.0), np.abs(offer_days).max(initial=0.0))) * 2 + 10 * HORIZON_DAYS
    s_key = codes[: len(sends)] * span + send_days
    o_key = np.sort(codes[len(sends) :] * span + offer_days)
    hi = np.searchsorted(o_key, s_key + HORIZON_DAYS, side="left")
    lo = np.searchsorted(o_key, s_key - HORIZON_DAYS, side="right")
    own = treatment_labels(sends[Col.OFFER_ID]) != CONTROL
    return np.maximum(hi - lo - own.astype(np.int64), 0)


def with_other_offers(sends: pd.DataFrame, tables: dict[str, Any]) -> pd.DataFrame:
    """``sends`` with :data:`OTHER_OFFERS` (from the messages table) unless it already has it."""
    if OTHER_OFFERS in sends.columns:
        return sends
    msgs = tables["messages"].select(Col.CUSTOMER_KEY, Col.OFFER_ID, SENT_AT).execute()
    return sends.assign(**{OTHER_OFFERS: count_other_offers(sends, msgs)})


def baseline_rows(sends: pd.DataFrame, baseline: str) -> np.ndarray | None:
    """The rows (or weights) of the base purchase model: every one (``"all"``: None); for ``"clean"``
    those whose outcome window held no other offer; for ``"clean_hl<N>"`` the same weighted by
    ``0.5 ** (age / N)``, age in days before the latest send of ``sends``."""
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if baseline == "all":
        return None
    clean = (sends[OTHER_OFFERS].to_numpy() == 0).astype(np.float64)
    if baseline == "clean":
        return clean
    half_life = float(baseline.removeprefix("clean_hl"))
    age = (sends[SENT_AT].max() - sends[SENT_AT]).dt.total_seconds().to_numpy() / 86_400.0
    return clean * 0.5 ** (age / half_life)


def choose_baseline(
    train: pd.DataFrame, *, validation_days: int, params: dict[str, Any], seed: int = 0
) -> tuple[str, pd.DataFrame]:
    """Which control sends the purchase probability without an offer is fitted on, chosen on validation.

    Fitted on the sends whose outcome window ends before the last ``validation_days`` of ``train``, each
    candidate predicts the validation control sends whose window held no other offer (the situation a
    decision prices: this offer or none); the lower log loss wins. "clean" fits on fewer, unbiased rows,
    "all" on every control send, biased upward by the logging policy's other offers; the half-lives
    weight recent sends more (purchase rates drift down as the customer base ages).

    Returns:
        The chosen baseline and one row per candidate (log loss, mean predicted and observed rate, rows,
        and a ``note`` when a candidate could not be fitted or judged). With fewer than
        :data:`MIN_BASELINE_VALIDATION` clean validation control sends, or a clean candidate that cannot
        be fitted (too few clean control sends), the choice falls back to ``"all"`` and the note says why.
    """
    fit, val = _split(train, validation_days)
    keep = (treatment_labels(val[Col.OFFER_ID]) == CONTROL) & (val[OTHER_OFFERS].to_numpy() == 0)
    columns = uplift_columns(params.get("cells", ()))
    y = val.loc[keep, OUTCOME].to_numpy(dtype=np.float64)
    rows: list[dict[str, Any]] = []
    for name in BASELINES:
        row: dict[str, Any] = {"baseline": name, "log_loss": np.nan, "validation_rows": int(keep.sum()), "note": ""}
        if keep.sum() < MIN_BASELINE_VALIDATION or len(np.unique(y)) < 2:
            row["note"] = f"{int(keep.sum())} clean validation control sends: too few to judge, 'all' kept"
            rows.append(row)
            continue
        try:
            m = UpliftModel(seed=seed, **params).fit(
                fit[columns], fit[Col.OFFER_ID], fit[OUTCOME], base_rows=baseline_rows(fit, name)
            )
        except ValueError as err:  # too few clean control sends to fit on: said in the table
            row["note"] = str(err)
            rows.append(row)
            continue
        p = np.clip(m.predict_base(val.loc[keep, columns]), 1e-6, 1 - 1e-6)
        row |= {
            "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
            "mean_predicted": float(p.mean()),
            "mean_observed": float(y.mean()),
            "fit_rows": m.base_rows_,
        }
        rows.append(row)
    table = pd.DataFrame(rows)
    if table["log_loss"].isna().all():
        return "all", table
    return str(table.loc[table["log_loss"].idxmin(), "baseline"]), table


# --- evaluation -----------------------------------------------------------------------------------------


def qini_table(model: UpliftModel, holdout: pd.DataFrame, k: float = 0.3) -> pd.DataFrame:
    """Per offer, on held-out sends of that offer and of no offer: Qini AUC, uplift at ``k``, observed uplift."""
    arm = treatment_labels(holdout[Col.OFFER_ID])
    up = model.predict_uplift(holdout)
    y = holdout[OUTCOME].to_numpy()
    rng = np.random.default_rng(0)
    rows = []
    for j, offer in enumerate(model.arms_):
        keep = (arm == offer) | (arm == CONTROL)
        order = rng.permutation(int(keep.sum()))  # ties broken at random, not by send time
        score, treated, yy = up[keep, j][order], (arm[keep] == offer)[order], y[keep][order]
        rows.append(
            {
                "offer_id": offer,
                "sends": int(treated.sum()),
                "control_sends": int((~treated).sum()),
                "observed_uplift": float(yy[treated].mean() - yy[~treated].mean()),
                "predicted_uplift": float(up[keep, j][treated[np.argsort(order)]].mean()),
                "qini_auc": qini_auc(score, treated, yy),
                "qini_coefficient": qini_coefficient(score, treated, yy),  # scikit-uplift's qini_auc_score
                "auuc": auuc(score, treated, yy),  # scikit-uplift's uplift_auc_score
                f"uplift_at_{round(100 * k)}": uplift_at_k(score, treated, yy, k),
            }
        )
    return pd.DataFrame(rows)


def _arms(catalogue: Catalogue) -> list[str]:
    return [CONTROL, *catalogue.offer_ids]


def logged_rewards(holdout: pd.DataFrame, catalogue: Catalogue) -> tuple[np.ndarray, np.ndarray]:
    """Each held-out send's arm code (0 = no offer, j + 1 = catalogue offer j) and realised profit.

    Profit of a send = bought x (margin_rate x order value - redemption cost of its offer) - fixed cost.
    Sends of offers not in the catalogue are marked -1 (left out of the off-policy estimates).
    """
    arms = _arms(catalogue)
    code = {a: i for i, a in enumerate(arms)}
    labels = treatment_labels(holdout[Col.OFFER_ID])
    a = np.array([code.get(x, -1) for x in labels])
    value, _ = expected_order_value(holdout)
    y = holdout[OUTCOME].to_numpy(dtype=np.float64)
    reward = y * catalogue.margin_rate * value
    for j, offer in enumerate(catalogue.offers):
        hit = a == j + 1
        c = offer.cost
        reward[hit] -= c.fixed_cost + y[hit] * (c.discount_rate * value[hit] + c.discount_amount)
    return a, reward


def best_single_offer(train: pd.DataFrame, catalogue: Catalogue) -> str:
    """The one offer a marketer would send to everyone eligible, chosen without hindsight: the catalogue
    offer whose "send it to everyone eligible" policy has the highest IPS profit per send on the training
    sends (randomised, so unbiased there), never on the holdout."""
    a, reward = logged_rewards(train, catalogue)
    keep = a >= 0
    data, a, reward = train[keep].reset_index(drop=True), a[keep], reward[keep]
    labels = treatment_labels(data[Col.OFFER_ID])
    share = pd.Series(labels).value_counts(normalize=True)
    propensity = np.array([share[lab] for lab in labels])
    rules_ok = catalogue.eligible(data)
    values = [
        ips_value(a, propensity, np.where(rules_ok[:, j], j + 1, 0), reward).value for j in range(len(catalogue.offers))
    ]
    return catalogue.offer_ids[int(np.argmax(values))]


def off_policy(
    model: UpliftModel,
    holdout: pd.DataFrame,
    catalogue: Catalogue,
    seed: int = 0,
    caution: float = 0.0,
    single_offer: str | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """IPS and DR value (profit per send) of Kairos's policy and of the baselines on held-out sends.

    Kairos's policy: the offer with the highest predicted incremental profit among those whose eligibility
    rule holds, else no offer (validity dates, caps, channels and the control group are not applied: the
    sends predate the campaign). Baselines: no offer, each single offer for everyone eligible, a random
    eligible offer (drawn once with ``seed``), and the logging policy itself.

    ``single_offer`` (chosen on the training sends by :func:`best_single_offer`) adds Kairos's paired IPS and
    DR difference with "that offer to everyone eligible", with 95 % intervals clustered by customer, beside
    the same against no offer (``*_vs_no_offer_*`` and ``*_vs_single_*`` metrics and columns).
    """
    a, reward = logged_rewards(holdout, catalogue)
    keep = a >= 0
    data, a, reward = holdout[keep].reset_index(drop=True), a[keep], reward[keep]
    arms = _arms(catalogue)
    labels = treatment_labels(data[Col.OFFER_ID])
    share = pd.Series(labels).value_counts(normalize=True)
    propensity = np.array([share[lab] for lab in labels])
    far = datetime(2000, 1, 1, tzinfo=UTC)
    scores = score_offers(
        data.assign(**{Col.CUSTOMER_KEY: [f"send{i}" for i in range(len(data))]}),
        catalogue.model_copy(
            update={"offers": tuple(o.model_copy(update={"valid_from": far}) for o in catalogue.offers)}
        ),
        now=datetime(2100, 1, 1, tzinfo=UTC),
        uplift=model,
        control=ControlGroup(share=0.0),
        allowed_channels=lambda key: ["email", "sms", "push"],
        caution=caution,
    )
    value, _ = expected_order_value(data)
    rules_ok = catalogue.eligible(data)
    # predicted profit per arm: no offer = p0 x margin x V; offer j = p_j x (margin x V - redemption) - fixed
    m = np.empty((len(data), len(arms)))
    m[:, 0] = scores.p_base * catalogue.margin_rate * value
    for j, offer in enumerate(catalogue.offers):
        c = offer.cost
        m[:, j + 1] = (
            scores.p_offer[:, j] * (catalogue.margin_rate * value - c.discount_rate * value - c.discount_amount)
            - c.fixed_cost
        )

    def choose(value: np.ndarray) -> np.ndarray:
        gain = np.where(rules_ok, value, -np.inf)
        best = np.argmax(gain, axis=1)
        return np.where(gain[np.arange(len(data)), best] > 0, best + 1, 0)

    kairos = choose(scores.profit_low)  # what decide() ranks on
    rng = np.random.default_rng(seed)
    random_pick = np.zeros(len(data), dtype=np.int64)
    for i in range(len(data)):  # a random eligible offer (no offer only when none is eligible)
        options = np.flatnonzero(rules_ok[i])
        random_pick[i] = rng.choice(options) + 1 if len(options) else 0
    policies: dict[str, np.ndarray] = {KAIROS: kairos}
    if caution > 0:
        policies["Kairos without caution (expected profit)"] = choose(scores.profit)
    policies |= {
        "no offer": np.zeros(len(data), dtype=np.int64),
        "random eligible offer": random_pick,
    }
    for j, offer in enumerate(catalogue.offers):
        policies[f"{offer.id} for everyone eligible"] = np.where(rules_ok[:, j], j + 1, 0)
    rows = []
    nothing = np.zeros(len(data), dtype=np.int64)
    single_name = None
    if single_offer is not None:
        j = catalogue.offer_ids.index(single_offer)
        single_name = f"best single offer chosen on training sends ({single_offer})"
        policies[single_name] = np.where(rules_ok[:, j], j + 1, 0)
    customers = data[Col.CUSTOMER_KEY].astype(str).to_numpy()
    for name, pi in policies.items():
        ips = ips_value(a, propensity, pi, reward)
        dr = dr_value(a, propensity, pi, reward, m)
        gain = dr_difference(a, propensity, pi, nothing, reward, m)
        contrasts = {"no_offer": policy_contrast(a, propensity, pi, nothing, reward, m, clusters=customers)}
        if single_name is not None:
            contrasts["single"] = policy_contrast(
                a, propensity, pi, policies[single_name], reward, m, clusters=customers
            )
        rows.append(
            {
                **{
                    f"{est}_vs_{b}{suffix}": getattr(c, f"{est}{suffix}")
                    for b, c in contrasts.items()
                    for est in ("ips", "dr")
                    for suffix in ("", "_low", "_high")
                },
                "policy": name,
                "ips_profit_per_send": ips.value,
                "ips_se": ips.std_error,
                "dr_profit_per_send": dr.value,
                "dr_se": dr.std_error,
                "dr_vs_no_offer": gain.value,
                "dr_vs_no_offer_se": gain.std_error,
                "matched_sends": ips.matched,
                "offer_share": float((pi > 0).mean()),
            }
        )
    rows.append(
        {
            "policy": "logged (random 35% offers)",
            "ips_profit_per_send": float(reward.mean()),
            "ips_se": float(reward.std(ddof=1) / np.sqrt(len(reward))),
            "dr_profit_per_send": float(reward.mean()),
            "dr_se": float(reward.std(ddof=1) / np.sqrt(len(reward))),
            "dr_vs_no_offer": float("nan"),
            "dr_vs_no_offer_se": float("nan"),
            "matched_sends": len(reward),
            "offer_share": float((a > 0).mean()),
        }
    )
    table = pd.DataFrame(rows)
    by = table.set_index("policy")
    none_dr, none_ips = by.loc["no offer", "dr_profit_per_send"], by.loc["no offer", "ips_profit_per_send"]
    k = KAIROS
    metrics = {
        "ope_ips_profit_per_send": float(by.loc[k, "ips_profit_per_send"]),
        "ope_dr_profit_per_send": float(by.loc[k, "dr_profit_per_send"]),
        "ope_ips_incremental_profit_per_send": float(by.loc[k, "ips_profit_per_send"] - none_ips),
        SELECTION_METRIC: float(by.loc[k, "dr_vs_no_offer"]),
        "ope_dr_incremental_se": float(by.loc[k, "dr_vs_no_offer_se"]),
        "ope_dr_random_incremental_profit_per_send": float(
            by.loc["random eligible offer", "dr_profit_per_send"] - none_dr
        ),
        "ope_kairos_offer_share": float(by.loc[k, "offer_share"]),
    }
    # the cautious policy against the same model deciding on the expected profit, paired on the same sends
    vs_mean = (
        dr_difference(a, propensity, kairos, policies["Kairos without caution (expected profit)"], reward, m)
        if caution > 0
        else None
    )
    metrics["ope_dr_vs_no_caution"] = vs_mean.value if vs_mean is not None else 0.0
    metrics["ope_dr_vs_no_caution_se"] = vs_mean.std_error if vs_mean is not None else 0.0
    for b in ("no_offer", "single") if single_name is not None else ("no_offer",):
        for est in ("ips", "dr"):
            for suffix in ("", "_low", "_high"):
                metrics[f"ope_{est}_vs_{b}{suffix}"] = float(by.loc[k, f"{est}_vs_{b}{suffix}"])
    return table, metrics


# --- the job --------------------------------------------------------------------------------------------


@dataclass
class OffersRun:
    """What a run produced: metrics, the evaluation tables and the registration."""

    run_id: str
    metrics: dict[str, float]
    qini: pd.DataFrame
    off_policy: pd.DataFrame
    truth: pd.DataFrame | None
    learners: pd.DataFrame
    registration: registry.Registration | None
    sizes: dict[str, int]
    caution: pd.DataFrame | None = None  # the validation table the caution was chosen on
    baseline: pd.DataFrame | None = None  # the validation table the base purchase model was chosen on


def _split(data: pd.DataFrame, holdout_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    last = data[SENT_AT].max()
    start = last - pd.Timedelta(days=holdout_days)
    holdout = data[data[SENT_AT] > start]
    train = data[data[SENT_AT] + pd.Timedelta(days=HORIZON_DAYS) <= start]
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def choose_caution(
    train: pd.DataFrame,
    catalogue: Catalogue,
    *,
    validation_days: int,
    params: dict[str, Any],
    grid: tuple[float, ...] = CAUTION_GRID,
    seed: int = 0,
    baseline: str = "all",
) -> tuple[float, pd.DataFrame]:
    """The caution with the best doubly robust incremental profit on a validation split of ``train``, if it
    beats no caution by more than one standard error of their paired difference; else 0.

    The validation sends are the last ``validation_days`` of ``train``; the model is fitted on the sends
    whose outcome window ends before them. Ties (within a thousandth) go to the more cautious value.

    Returns:
        The chosen caution and one row per value tried (``caution``, DR incremental profit per send and
        its standard error, offer share).

    Raises:
        InsufficientOfferDataError: the split leaves no offer to learn from or nothing to validate on.
    """
    fit, val = _split(train, validation_days)
    offers = sorted(set(treatment_labels(fit[Col.OFFER_ID]).tolist()) - {CONTROL})
    if not offers or val.empty:
        raise InsufficientOfferDataError(
            f"choosing the caution: {len(fit)} fitting and {len(val)} validation sends, offers {offers}"
        )
    columns = uplift_columns(params.get("cells", ()))
    base_rows = baseline_rows(fit, baseline) if params.get("learner") == "cells" else None
    model = UpliftModel(seed=seed, **params).fit(fit[columns], fit[Col.OFFER_ID], fit[OUTCOME], base_rows=base_rows)
    rows = []
    for z in grid:
        _, m = off_policy(model, val, catalogue, seed, caution=z)
        rows.append(
            {
                "caution": z,
                "dr_incremental_profit_per_send": m[SELECTION_METRIC],
                "dr_se": m["ope_dr_incremental_se"],
                "offer_share": m["ope_kairos_offer_share"],
                "dr_vs_no_caution": m["ope_dr_vs_no_caution"],
                "dr_vs_no_caution_se": m["ope_dr_vs_no_caution_se"],
            }
        )
    table = pd.DataFrame(rows)
    best = table["dr_incremental_profit_per_send"].max()
    top = float(table.loc[table["dr_incremental_profit_per_send"] >= best - 1e-3, "caution"].max())
    # caution is kept only when it beats deciding on the expected profit by more than one paired standard
    # error on the validation sends: the values of neighbouring cautions differ by less than their noise
    # (docs/offers.md), and an argmax over noise is a coin toss
    gain = table.set_index("caution").loc[top]
    chosen = top if top == 0 or gain["dr_vs_no_caution"] > gain["dr_vs_no_caution_se"] else 0.0
    return chosen, table


@dataclass(frozen=True)
class OffersConfig:
    """Everything one offers training run is a function of, besides the data (see :func:`train_offers`)."""

    tracking_uri: str
    catalogue_path: Path | None = None
    learner: str = "cells"
    cells: tuple[str, ...] = DEFAULT_CELLS
    caution: float | None = None  # None: chosen on validation sends
    baseline: str | None = None  # BASELINES; None: chosen on validation sends (cells learner only)
    compare_learners: bool = True
    step_days: int = 30
    holdout_days: int = 120
    margin: float = 0.0
    register: bool = True
    seed: int = 0
    uplift_params: dict[str, Any] = field(default_factory=dict)
    as_of: datetime | None = None  # the data as it stood then (None: all of it)

    def params_of(self, name: str) -> dict[str, Any]:
        """The :class:`UpliftModel` parameters of learner ``name``."""
        extra = {"cells": self.cells} if name == "cells" else {}
        return {"learner": name, **extra, **self.uplift_params}

    @property
    def others(self) -> list[str]:
        """The learners fitted for comparison only."""
        return [("x" if self.learner != "x" else "cells")] if self.compare_learners else []


@dataclass(frozen=True)
class OffersData:
    """The logged sends, split in time, and what they are decided with."""

    catalogue: Catalogue
    tables: dict[str, Any]
    data: pd.DataFrame
    train: pd.DataFrame
    holdout: pd.DataFrame
    labels: pd.Series  # the training sends' treatment labels


@dataclass(frozen=True)
class OffersFit:
    fitted: dict[str, UpliftModel]  # by learner; the registered one is cfg.learner
    caution: float
    caution_table: pd.DataFrame | None
    baseline: str = "all"
    baseline_table: pd.DataFrame | None = None


@dataclass(frozen=True)
class OffersEvaluation:
    qini: pd.DataFrame
    ope: pd.DataFrame
    learners: pd.DataFrame
    truth: pd.DataFrame | None
    metrics: dict[str, float]
    sizes: dict[str, int]


def build_data(cfg: OffersConfig, data_home: Path, sends: pd.DataFrame | None, tick: ProgressFn) -> OffersData:
    """The logged-send dataset (built here unless ``sends`` is given), split into training and holdout.

    Raises:
        InsufficientOfferDataError: no logged offer sends to learn from, or none to evaluate on.
    """
    step_days, holdout_days, catalogue_path = cfg.step_days, cfg.holdout_days, cfg.catalogue_path
    path = catalogue_path or EXAMPLE_CATALOGUE
    catalogue = (
        load_catalogue(path)
        .in_currency(data_currency(data_home), str(path))
        .with_band_positions(attribute_bands(data_home), str(path))
    )
    require_dates(data_home, "offer training")
    tables = open_tables(data_home, as_of=cfg.as_of)
    data = build_send_dataset(tables, step_days=step_days, progress=tick) if sends is None else sends
    data = with_other_offers(data, tables)
    train, holdout = _split(data, holdout_days)
    labels = treatment_labels(train[Col.OFFER_ID])
    if len(set(labels.tolist()) - {CONTROL}) == 0 or holdout.empty:
        raise InsufficientOfferDataError(
            f"{len(train)} training and {len(holdout)} holdout sends; offers in training: "
            f"{sorted(set(labels.tolist()) - {CONTROL})}"
        )

    return OffersData(catalogue, tables, data, train, holdout, labels)


def fit(cfg: OffersConfig, d: OffersData, tick: ProgressFn) -> OffersFit:
    """The caution (chosen on validation sends unless given), then every learner on the training sends."""
    learner, cells, seed, holdout_days, caution = cfg.learner, cfg.cells, cfg.seed, cfg.holdout_days, cfg.caution
    train, catalogue, params_of, others = d.train, d.catalogue, cfg.params_of, cfg.others
    caution_table = baseline_table = None
    baseline = cfg.baseline or "all"
    if learner == "cells" and cfg.baseline is None:
        tick("choosing the base purchase model on validation sends", 0.5)
        baseline, baseline_table = choose_baseline(
            train, validation_days=holdout_days, params=params_of(learner), seed=seed
        )
    if learner != "cells":
        caution = 0.0  # only the cells learner knows its uncertainty
    elif caution is None:
        tick("choosing the caution on validation sends", 0.55)
        caution, caution_table = choose_caution(
            train, catalogue, validation_days=holdout_days, params=params_of(learner), seed=seed, baseline=baseline
        )
    tick("fitting uplift models", 0.6)
    fitted: dict[str, UpliftModel] = {}
    for name in [learner, *others]:
        columns = uplift_columns(cells if name == "cells" else ())
        fitted[name] = UpliftModel(seed=seed, **params_of(name)).fit(
            train[columns],
            train[Col.OFFER_ID],
            train[OUTCOME],
            base_rows=baseline_rows(train, baseline) if name == "cells" else None,
        )
    return OffersFit(fitted, caution, caution_table, baseline, baseline_table)


def evaluate(
    cfg: OffersConfig,
    data_home: Path,
    d: OffersData,
    f: OffersFit,
    policy_check: PolicyCheck | None,
    tick: ProgressFn,
) -> OffersEvaluation:
    """Qini and off-policy value on the held-out sends for every learner, then the optional outside check."""
    learner, seed, others = cfg.learner, cfg.seed, cfg.others
    holdout, train, data, labels, tables, catalogue = d.holdout, d.train, d.data, d.labels, d.tables, d.catalogue
    fitted, caution = f.fitted, f.caution
    model = fitted[learner]
    cautions = {name: (caution if name == learner else 0.0) for name in fitted}
    tick("evaluating on held-out sends", 0.7)
    single = best_single_offer(train, catalogue)  # chosen on the training sends, without hindsight
    evaluated = {
        name: (
            qini_table(m, holdout),
            *off_policy(m, holdout, catalogue, seed, caution=cautions[name], single_offer=single),
        )
        for name, m in fitted.items()
    }
    learners = pd.DataFrame(
        [
            {
                "learner": name,
                "caution": cautions[name],
                "qini_auc_mean": float(q["qini_auc"].mean()),
                "uplift_at_30_mean": float(q["uplift_at_30"].mean()),
                SELECTION_METRIC: o_metrics[SELECTION_METRIC],
                "ope_dr_incremental_se": o_metrics["ope_dr_incremental_se"],
                "offer_share": o_metrics["ope_kairos_offer_share"],
            }
            for name, (q, _, o_metrics) in evaluated.items()
        ]
    )
    qini, ope, ope_metrics = evaluated[learner]
    metrics: dict[str, float] = {
        "caution": float(caution),
        "baseline_clean": float(f.baseline != "all"),
        "qini_auc_mean": float(qini["qini_auc"].mean()),
        "uplift_at_30_mean": float(qini["uplift_at_30"].mean()),
        "qini_coefficient_mean": float(qini["qini_coefficient"].mean()),
        "auuc_mean": float(qini["auuc"].mean()),
        **{f"qini_auc_{r.offer_id}": float(r.qini_auc) for r in qini.itertuples()},
        **ope_metrics,
    }
    truth_table = None
    # the decisions of the check are taken as of the latest snapshot, or as of the run's as-of instant
    now = cfg.as_of if cfg.as_of is not None else latest_snapshot(data_home).as_of
    history = tables["messages"].select(Col.CUSTOMER_KEY, Col.OFFER_ID, SENT_AT).execute()
    if policy_check is not None:
        tick("checking the policy (e.g. against a planted truth)", 0.8)
        frame = features_at(tables, now)
        nbo = NextBestOffer(catalogue, model, ControlGroup(), caution=caution)
        compared = {
            f"Kairos, {name} learner (comparison)": NextBestOffer(catalogue, fitted[name], ControlGroup())
            for name in others
        }
        if caution > 0:
            compared["Kairos without caution (expected profit)"] = NextBestOffer(catalogue, model, ControlGroup())
        truth_table, truth_metrics = policy_check(nbo, frame, now, history, compared)
        metrics |= truth_metrics
    sizes = {
        "sends": len(data),
        "train_sends": len(train),
        "holdout_sends": len(holdout),
        "train_offer_sends": int((labels != CONTROL).sum()),
        "cutoffs": int(data[CUTOFF].nunique()),
    }

    return OffersEvaluation(qini, ope, learners, truth_table, metrics, sizes)


def log_and_register(
    cfg: OffersConfig, data_home: Path, d: OffersData, f: OffersFit, result: OffersEvaluation, tick: ProgressFn
) -> OffersRun:
    """The run in MLflow and the bundle registered: ``@champion`` only if its doubly robust incremental
    profit per send beats the champion's by more than ``cfg.margin``."""
    learner, cells, step_days, holdout_days = cfg.learner, cfg.cells, cfg.step_days, cfg.holdout_days
    register, margin, tracking_uri = cfg.register, cfg.margin, cfg.tracking_uri
    train, holdout, catalogue = d.train, d.holdout, d.catalogue
    model, caution, caution_table = f.fitted[learner], f.caution, f.caution_table
    qini, ope, learners, truth_table = result.qini, result.ope, result.learners, result.truth
    metrics, sizes = result.metrics, result.sizes
    tick("logging to MLflow", 0.9)
    report = ingest_report(data_home)
    manifest = {
        "learner": learner,
        "caution": caution,
        "baseline": f.baseline,
        "cells": list(cells) if learner == "cells" else [],
        "features": uplift_columns(cells if learner == "cells" else ()),
        "definition_hash": definition_hash(),
        "horizon_days": HORIZON_DAYS,
        "trained_until": str(train[SENT_AT].max()),
        "holdout_from": str(holdout[SENT_AT].min()),
        "catalogue": catalogue.name,
        "currency": catalogue.currency,
        "data_hash": report["source_hash"],
        # the order value of a customer without one (a lead), so that a one-customer request has one
        "fallback_order_value": population_order_value(train),
    }
    with registry.job_run(tracking_uri, EXPERIMENT, MODEL_NAME, {"kairos.data_hash": report["source_hash"]}) as job:
        bundle = job.folder / "bundle"
        OffersBundle.write(bundle, model, catalogue, manifest)
        mlflow.log_params(
            {
                **model.get_params(),
                "caution": caution,
                "step_days": step_days,
                "holdout_days": holdout_days,
                "catalogue": catalogue.name,
            }
        )
        mlflow.log_metrics({**metrics, **{k: float(v) for k, v in sizes.items()}})
        mlflow.log_text(qini.to_csv(index=False), "qini.csv")
        mlflow.log_text(ope.to_csv(index=False), "off_policy.csv")
        mlflow.log_text(learners.to_csv(index=False), "learners.csv")
        if caution_table is not None:
            mlflow.log_text(caution_table.to_csv(index=False), "caution_validation.csv")
        if f.baseline_table is not None:
            mlflow.log_text(f.baseline_table.to_csv(index=False), "baseline_validation.csv")
        if truth_table is not None:
            mlflow.log_text(truth_table.to_csv(index=False), "truth_profit.csv")
        registration = registry.log_and_register(
            job,
            bundle,
            MODEL_NAME,
            metadata={"kairos": manifest},
            register=register,
            metric_name=SELECTION_METRIC,
            metric_value=metrics[SELECTION_METRIC],
            margin=margin,
            extra_tags={"kairos.definition_hash": manifest["definition_hash"]},
        )
    return OffersRun(
        job.run_id, metrics, qini, ope, truth_table, learners, registration, sizes, caution_table, f.baseline_table
    )


def train_offers(
    data_home: Path,
    tracking_uri: str,
    catalogue_path: Path | None = None,
    *,
    policy_check: PolicyCheck | None = None,
    learner: str = "cells",
    cells: tuple[str, ...] = DEFAULT_CELLS,
    caution: float | None = None,
    baseline: str | None = None,
    compare_learners: bool = True,
    step_days: int = 30,
    holdout_days: int = 120,
    margin: float = 0.0,
    register: bool = True,
    seed: int = 0,
    uplift_params: dict[str, Any] | None = None,
    sends: pd.DataFrame | None = None,
    as_of: datetime | None = None,
    progress: ProgressFn | None = None,
) -> OffersRun:
    """Build the logged-send dataset, fit and evaluate uplift, log and register the offers bundle:
    :func:`build_data` -> :func:`fit` -> :func:`evaluate` -> :func:`log_and_register`.

    Args:
        data_home: ingested data with a feature snapshot (the decisions of the truth comparison use it).
        tracking_uri: MLflow tracking URI.
        catalogue_path: offer catalogue YAML (default: the shipped example).
        policy_check: an outside check of the fitted policy on the latest snapshot (a synthetic world's
            true profit against the oracle: :class:`synth.checks.OffersTruth`); its table and figures
            are logged.
        learner: ``"cells"`` (default), ``"x"`` or ``"t"``: the learner registered.
        cells: the nested cells of the ``cells`` learner.
        caution: decide on the profit minus this many standard deviations (``cells`` only); None chooses
            it from :data:`CAUTION_GRID` on a validation split of the training sends.
        baseline: which control sends fit the purchase probability without an offer (``cells`` only):
            ``"clean"`` (no other offer in the outcome window) or ``"all"``; None chooses on validation
            sends (:func:`choose_baseline`).
        compare_learners: also fit the X-learner (the cells learner when ``learner="x"``) and report its
            holdout and truth figures.
        step_days: days between feature cutoffs for the sends.
        holdout_days: the last days of sends held out for evaluation.
        margin: how much the selection metric must beat the champion by.
        register: register the bundle (champion/challenger) in the model registry.
        seed: random seed.
        uplift_params: other :class:`UpliftModel` parameters (e.g. ``n_estimators``).
        sends: the logged-send dataset when already built from this home (:func:`build_send_dataset`
            with the same ``step_days``); built here when None.
        as_of: train on the data as it stood at this instant (:func:`features.store.as_of_view`).
        progress: callback ``(step, fraction)``.

    Raises:
        InsufficientOfferDataError: no logged offer sends to learn from, or none to evaluate on.
    """
    tick = progress or (lambda step, frac: None)
    cfg = OffersConfig(
        tracking_uri,
        catalogue_path,
        learner,
        tuple(cells),
        caution,
        baseline,
        compare_learners,
        step_days,
        holdout_days,
        margin,
        register,
        seed,
        dict(uplift_params or {}),
        as_of,
    )
    d = build_data(cfg, data_home, sends, tick)
    f = fit(cfg, d, tick)
    result = evaluate(cfg, data_home, d, f, policy_check, tick)
    run = log_and_register(cfg, data_home, d, f, result, tick)
    tick("done", 1.0)
    return run
