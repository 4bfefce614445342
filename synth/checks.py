"""Checks of fitted models against what a synthetic world planted: the measures real data cannot give.

The training jobs know nothing of synthetic worlds; they take an optional check and log what it
returns. These are those checks, built from a world's ``truth/`` folder (:mod:`synth.truth`):

* :class:`SendTimeTruth` for ``train_sendtime(planted_check=...)``: the share of customers whose
  recommended slot is within +-1 h of their planted preferred local hour;
* :class:`OffersTruth` for ``train_offers(policy_check=...)``: the true expected profit of the
  policy's decisions against the oracle (the planted uplift) and the baselines.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import Col
from features.store import open_tables
from models.decisioning.nbo import NextBestOffer, allocate, decide
from models.decisioning.offers import Catalogue
from models.decisioning.sendtime import CHANNELS, SendTimeModel, hour_distance
from synth.truth import load_truth, truth_people


def customer_ids(data_home: Path) -> pd.DataFrame:
    """``customer_id, customer_key`` of an ingested home: how planted persons are found again."""
    return open_tables(Path(data_home))["customers"].select(Col.CUSTOMER_ID, Col.CUSTOMER_KEY).execute()


# --- send time ------------------------------------------------------------------------------------


class SendTimeTruth:
    """The planted-preference check of a send-time model fitted before a split."""

    def __init__(self, truth_dir: Path, data_home: Path) -> None:
        self.people = truth_people(Path(truth_dir), customer_ids(data_home))

    def __call__(self, model: SendTimeModel, split: datetime, sends_before: pd.DataFrame) -> pd.DataFrame:
        return evaluate_planted(model, self.people, split, sends_before)


def evaluate_planted(
    model: SendTimeModel,
    people: pd.DataFrame,
    now: datetime,
    sends_before: pd.DataFrame,
    channels: Sequence[str] = CHANNELS,
    quiet: tuple[int, int] | None = (22, 8),
) -> pd.DataFrame:
    """Share of customers whose recommended slot is within +-1 h of their planted preferred local hour.

    Args:
        model: Fitted on data before ``now``.
        people: :func:`synth.truth.truth_people` (``customer_key`` and ``pref_hour_<channel>``).
        now: The time of the recommendation (the split).
        sends_before: Messages before ``now`` (``customer_key``, ``channel``): defines the "with sends" group.
        channels: Channels to evaluate.
        quiet: Quiet hours for the recommendation.

    Returns:
        One row per channel and group (``all`` / ``with_sends``): ``customers``, ``kairos``,
        ``population_curve``, ``best_single_hour`` (the truth-chosen hour) and ``single_hour``.
    """
    rows = []
    keys = people[Col.CUSTOMER_KEY].astype(str).to_numpy()
    for channel in channels:
        planted = people[f"pref_hour_{channel}"].to_numpy(dtype=np.int64)
        ours = model.best_slots_batch(keys, channel, now, quiet=quiet)
        zones = ours["timezone"].tolist()
        pop = model.best_slots_batch(["\x00population"] * len(keys), channel, now, quiet=quiet, timezones=zones)
        our_hour = np.array([t.hour if t is not None else -99 for t in ours["best_local"]])
        pop_hour = np.array([t.hour if t is not None else -99 for t in pop["best_local"]])
        sent = set(sends_before.loc[sends_before[Col.CHANNEL] == channel, Col.CUSTOMER_KEY].astype(str))
        with_sends = np.array([k in sent for k in keys])
        for group, mask in (("all", np.ones(len(keys), dtype=bool)), ("with_sends", with_sends)):
            if not mask.any():
                continue
            within = hour_distance(our_hour[mask], planted[mask]) <= 1
            pop_within = hour_distance(pop_hour[mask], planted[mask]) <= 1
            single = np.array([(hour_distance(np.full(mask.sum(), h), planted[mask]) <= 1).mean() for h in range(24)])
            rows.append(
                {
                    "channel": channel,
                    "group": group,
                    "customers": int(mask.sum()),
                    "kairos": float(within.mean()),
                    "population_curve": float(pop_within.mean()),
                    "best_single_hour": float(single.max()),
                    "single_hour": int(single.argmax()),
                    "kairos_source_customer": float((ours["source"].to_numpy()[mask] == "customer").mean()),
                }
            )
    return pd.DataFrame(rows)


# --- offers ---------------------------------------------------------------------------------------


class OffersTruth:
    """The true-profit check of a next-best-offer policy on one snapshot."""

    def __init__(self, truth_dir: Path, data_home: Path) -> None:
        self.truth_dir = Path(truth_dir)
        self.customers = customer_ids(data_home)

    def __call__(
        self,
        nbo: NextBestOffer,
        frame: pd.DataFrame,
        now: datetime,
        history: pd.DataFrame | None,
        others: dict[str, NextBestOffer],
    ) -> tuple[pd.DataFrame, dict[str, float]]:
        truth = load_truth(self.truth_dir, self.customers, now)
        return truth_comparison(nbo, frame, truth, now=now, history=history, others=others)


def true_profit(truth: pd.DataFrame, catalogue: Catalogue, order_value: np.ndarray) -> np.ndarray:
    """``(n, n_offers)`` true expected incremental profit of each offer.

    The offer's effect is the generator's (:func:`synth.messages.apply_offers`): with planted
    baseline ``p0`` and uplift ``u``, a positive ``u`` adds a purchase with probability ``u / (1 - p0)``
    when none was coming, a negative one cancels a coming purchase with probability ``-u / p0``. With the
    person's real purchase probability ``p`` now, buying becomes ``p + (1 - p) u / (1 - p0)`` or
    ``p (1 + u / p0)`` (``p0 + u`` exactly when ``p = p0``).
    """
    p0 = truth["baseline_30d"].to_numpy(dtype=np.float64)
    p = truth["p_natural"].to_numpy(dtype=np.float64)
    cols = []
    for offer in catalogue.offers:
        u = truth.get(f"uplift_{offer.id}", pd.Series(0.0, index=truth.index)).to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            p_offer = np.where(u >= 0, p + (1 - p) * u / np.maximum(1 - p0, 1e-9), p * (1 + u / np.maximum(p0, 1e-9)))
        p_offer = np.clip(np.nan_to_num(p_offer, nan=0.0), 0.0, 1.0)
        cost = offer.cost.expected_cost(p_offer, order_value)
        cols.append((p_offer - p) * catalogue.margin_rate * order_value - cost)
    return np.nan_to_num(np.column_stack(cols))


def _codes(decisions: pd.DataFrame, catalogue: Catalogue) -> np.ndarray:
    """Offer column index of each decision, -1 for no offer."""
    ids = catalogue.offer_ids
    return np.array([-1 if pd.isna(o) else ids.index(o) for o in decisions[Col.OFFER_ID]], dtype=np.int64)


def truth_comparison(
    nbo: NextBestOffer,
    frame: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    now: datetime,
    history: pd.DataFrame | None,
    others: dict[str, NextBestOffer] | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """True expected profit of Kairos's decisions against the oracle and the baselines, on one snapshot.

    Every policy chooses among the same candidates (eligible, valid, under the cap, a usable channel,
    not in the control group); the order value is the person's planted basket value. ``others`` adds
    rows for other models (e.g. the previous learner), each choosing among its own candidates, which
    are the same ones: candidates do not depend on the model.
    """
    frame = frame.reset_index(drop=True)
    known = frame[Col.CUSTOMER_KEY].isin(truth[Col.CUSTOMER_KEY])
    frame = frame[known.to_numpy()].reset_index(drop=True)
    t = frame[[Col.CUSTOMER_KEY]].merge(truth, on=Col.CUSTOMER_KEY, how="left")
    scores = nbo.score(frame, now=now, history=history)
    value = t["basket_value"].to_numpy(dtype=np.float64)
    value = np.where(np.isfinite(value) & (value > 0), value, scores.order_value)
    truth_profit = true_profit(t, nbo.catalogue, value)
    cand = scores.eligible
    n = len(frame)
    rows = np.arange(n)

    def total(choice: np.ndarray) -> float:
        given = choice >= 0
        return float(truth_profit[rows[given], choice[given]].sum())

    kairos = decide(scores)
    k_choice = _codes(kairos, nbo.catalogue)
    masked = np.where(cand, truth_profit, -np.inf)
    best = np.argmax(masked, axis=1)
    oracle = np.where(masked[rows, best] > 0, best, -1)
    per_offer = np.where(cand, truth_profit, 0.0).sum(axis=0)
    single = int(np.argmax(per_offer))  # in hindsight: the offer whose true total is best
    # without hindsight: the one offer the uplift model expects to earn most across its candidates
    believed = int(np.argmax(np.where(cand, scores.profit, 0.0).sum(axis=0)))
    n_cand = cand.sum(axis=1)
    random_total = float(
        np.where(n_cand > 0, np.where(cand, truth_profit, 0.0).sum(axis=1) / np.maximum(n_cand, 1), 0).sum()
    )
    rules = NextBestOffer(nbo.catalogue, None, nbo.control)
    r_scores = rules.score(frame, now=now, history=history)
    r_choice = _codes(decide(r_scores), nbo.catalogue)
    alloc, summary = allocate(scores, nbo.catalogue)
    a_choice = _codes(alloc, nbo.catalogue)
    results = {
        "oracle (true uplift)": (total(oracle), int((oracle >= 0).sum())),
        "Kairos (uplift model)": (total(k_choice), int((k_choice >= 0).sum())),
        "Kairos within the campaign budget": (total(a_choice), int((a_choice >= 0).sum())),
    }
    for name, other in (others or {}).items():
        o_choice = _codes(decide(other.score(frame, now=now, history=history)), nbo.catalogue)
        results[name] = (total(o_choice), int((o_choice >= 0).sum()))
    results |= {
        "Kairos rules only (playbook)": (total(r_choice), int((r_choice >= 0).sum())),
        f"best single offer for everyone, in hindsight ({nbo.catalogue.offer_ids[single]})": (
            float(per_offer[single]),
            int(cand[:, single].sum()),
        ),
        f"best single offer for everyone, chosen from the logged sends ({nbo.catalogue.offer_ids[believed]})": (
            float(per_offer[believed]),
            int(cand[:, believed].sum()),
        ),
        "random eligible offer": (random_total, int((n_cand > 0).sum())),
        "no offer": (0.0, 0),
    }
    oracle_total = results["oracle (true uplift)"][0]
    table = pd.DataFrame(
        [
            {
                "policy": name,
                "true_profit": profit,
                "per_customer": profit / max(n, 1),
                "share_of_oracle": profit / oracle_total if oracle_total > 0 else float("nan"),
                "offers_sent": sent,
            }
            for name, (profit, sent) in results.items()
        ]
    )
    metrics = {
        "truth_customers": float(n),
        "truth_control_customers": float(scores.control.sum()),
        "truth_kairos_profit": results["Kairos (uplift model)"][0],
        "truth_oracle_profit": oracle_total,
        "truth_budget_profit": results["Kairos within the campaign budget"][0],
        "truth_rules_profit": results["Kairos rules only (playbook)"][0],
        "truth_best_single_profit": float(per_offer[single]),
        "truth_logged_single_profit": float(per_offer[believed]),
        "truth_random_profit": random_total,
        "truth_kairos_share_of_oracle": results["Kairos (uplift model)"][0] / oracle_total if oracle_total > 0 else 0.0,
        "budget_spent": summary.spent,
    }
    return table, metrics
