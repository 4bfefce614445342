"""Purchases, engagement and churn of the synthetic persons.

A week-by-week simulation, vectorised over persons (about a hundred steps, never a loop over events).
Each buyer purchases as a Poisson process with a gamma-distributed personal rate and seasonality.
Engagement is a slow random walk around a personal level. Churn comes in two stages: a hazard that
rises with a long gap since the last purchase (relative to the person's own rhythm), with low
engagement and after a single purchase starts a drift away (lapse-prone persons drift at a planted
time), during which purchases and engagement decay; churn follows about ten weeks later. A churned
person buys nothing more on their own and rarely engages. So recency, frequency and engagement carry
real signal about churn and purchases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from synth.common import Clock, ZoneTable, season

# relative activity by local hour, for orders and sessions away from a person's preferred hour
DIURNAL = np.array(
    [
        0.2,
        0.1,
        0.05,
        0.05,
        0.05,
        0.1,
        0.3,
        0.6,
        0.9,
        1.0,
        1.1,
        1.2,
        1.3,
        1.2,
        1.1,
        1.1,
        1.1,
        1.2,
        1.4,
        1.6,
        1.7,
        1.5,
        1.0,
        0.5,
    ]
)
LAPSE_HAZARD = 0.003  # weekly hazard that an engaged buyer on rhythm starts drifting away
DRIFT_DAYS = 120.0  # mean time from the start of the drift to churn
LAPSE_DECAY_DAYS = 25.0  # while drifting, the purchase rate decays as exp(-days since the drift began / 25)


@dataclass(frozen=True)
class Behaviour:
    """Natural purchases, churn and weekly engagement.

    Attributes:
        purchase_person: Person number of each natural purchase.
        purchase_t: UTC float day of each purchase, sorted within person.
        purchase_online: Whether each purchase is made online.
        churn_t: Float day each person churned, NaN if alive at the end (or never a buyer).
        lapse_t: Float day each person began drifting away (purchases and engagement decay), NaN if not.
        engagement: ``(n_persons, n_weeks)`` float32 engagement level in [0, 1].
    """

    purchase_person: np.ndarray
    purchase_t: np.ndarray
    purchase_online: np.ndarray
    churn_t: np.ndarray
    lapse_t: np.ndarray
    engagement: np.ndarray

    def engagement_at(self, person: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Engagement of persons at float days ``t``."""
        week = np.clip((np.asarray(t) // 7).astype(np.int64), 0, self.engagement.shape[1] - 1)
        return self.engagement[person, week].astype(np.float64)


def local_hours(rng: np.random.Generator, preferred: np.ndarray, focus: float) -> np.ndarray:
    """Local hour (float) of an activity: near the preferred hour with probability ``focus``, else diurnal."""
    n = len(preferred)
    near = (preferred + rng.normal(0.0, 1.2, n) + 0.5) % 24
    anywhere = rng.choice(24, n, p=DIURNAL / DIURNAL.sum()) + rng.random(n)
    return np.where(rng.random(n) < focus, near, anywhere)


def simulate(rng: np.random.Generator, persons: pd.DataFrame, clock: Clock, zones: ZoneTable) -> Behaviour:
    """Run the weekly purchase / engagement / churn simulation.

    Args:
        rng: Random stream of behaviour.
        persons: Person traits from :func:`synth.people.build_people`.
        clock: The world's clock.
        zones: UTC offsets of the world's zones.

    Returns:
        Natural purchases (before any offer effect), churn times and weekly engagement.
    """
    n, T = len(persons), clock.days
    weeks = -(-T // 7)
    kind = persons["planted_type"].to_numpy()
    rate = persons["rate"].to_numpy()
    onset = persons["lapse_onset"].to_numpy()
    created = persons["created"].to_numpy()
    buyer = kind != "lead"
    ooad = kind == "one_and_done"
    existing = created < 0

    at_signup = rng.random(n) < 0.45  # many accounts are made at the first checkout
    first = np.where(at_signup, created + rng.uniform(0, 0.01, n), created + rng.exponential(25.0, n))
    first = np.where(buyer & ~existing, first, np.inf)
    last_buy = np.where(buyer & existing, np.maximum(created, -rng.exponential(1.0 / np.maximum(rate, 1e-3))), np.nan)
    n_buys = np.where(buyer & existing, 1 + rng.poisson(2.0, n), 0)
    # a lapse-prone buyer drifts away at a planted time, but not before a month of buying
    onset = np.where(np.isnan(onset), np.nan, np.maximum(onset, np.where(np.isfinite(first), first, 0.0) + 30.0))
    churn = onset + rng.gamma(3.0, DRIFT_DAYS / 3.0, n)  # NaN where no planted onset
    level = np.log(persons["engagement"].to_numpy() / (1 - persons["engagement"].to_numpy()))
    wander = rng.normal(0.0, 0.5, n)
    engagement = np.empty((n, weeks), dtype=np.float32)
    times: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    week_season = season(clock, np.arange(weeks) * 7.0 + 3.5)

    for w in range(weeks):  # ~105 vectorised steps
        a, b = 7.0 * w, min(7.0 * w + 7.0, float(T))
        alive = ~(churn <= a)
        lapsed = np.where(onset <= a, (a - onset) / 7.0, 0.0)  # weeks since the drift began
        wander = 0.9 * wander + rng.normal(0.0, 0.22, n)
        eng = 1.0 / (1.0 + np.exp(-(level + wander - 0.25 * lapsed)))
        eng = np.where(alive, eng, 0.3 * eng)
        engagement[:, w] = eng

        starts = alive & (first >= a) & (first < b)
        owners.append(np.flatnonzero(starts))
        times.append(first[starts])
        last_buy[starts] = first[starts]
        n_buys[starts] += 1
        gone = starts & ooad
        onset[gone] = first[gone]
        churn[gone] = first[gone] + rng.uniform(2.0, 40.0, int(gone.sum()))

        lo = np.maximum(a, np.where(np.isfinite(first), first, -np.inf))
        active = alive & buyer & ~ooad & (lo < b)
        mean = rate * np.exp(-lapsed * 7.0 / LAPSE_DECAY_DAYS) * week_season[w] * np.maximum(b - lo, 0.0)
        k = np.where(active, rng.poisson(np.where(active, mean, 0.0)), 0)
        who = np.repeat(np.arange(n), k)
        when = lo[who] + rng.random(len(who)) * (b - lo[who])
        owners.append(who)
        times.append(when)
        if len(who):
            np.maximum.at(last_buy, who, when)
            n_buys += k

        # the drift away starts by a hazard: overdue for one's own rhythm, disengaged, or a single purchase
        steady = alive & buyer & ~ooad & (n_buys > 0) & np.isnan(onset)
        gap = b - np.nan_to_num(last_buy, nan=b)
        overdue = np.clip(gap * rate - 1.0, 0.0, 3.0)
        hazard = LAPSE_HAZARD * np.exp(1.2 * overdue + 3.5 * (0.4 - eng)) * np.where(n_buys == 1, 2.5, 1.0)
        drift = steady & (rng.random(n) < 1.0 - np.exp(-hazard))
        onset[drift] = a + rng.random(int(drift.sum())) * (b - a)
        churn[drift] = onset[drift] + rng.gamma(3.0, DRIFT_DAYS / 3.0, int(drift.sum()))

    person = np.concatenate(owners)
    t = np.concatenate(times)
    keep = (t < T) & ~(t > np.nan_to_num(churn, nan=np.inf)[person])
    person, t = person[keep], t[keep]
    online = rng.random(len(person)) < persons["online_share"].to_numpy()[person]
    t = _time_of_day(rng, persons, person, t, online, zones)
    t = np.clip(np.maximum(t, created[person] + 0.0007), 0.0, T - 1e-6)
    order = np.lexsort((t, person))
    person, t, online = person[order], t[order], online[order]
    last = np.full(n, -np.inf)
    np.maximum.at(last, person, t)
    churn = np.where(np.isnan(churn) | (churn >= T), np.nan, np.maximum(churn, last + 0.01))
    onset = np.where(onset < T, onset, np.nan)
    return Behaviour(person, t, online, churn, onset, engagement)


def _time_of_day(
    rng: np.random.Generator,
    persons: pd.DataFrame,
    person: np.ndarray,
    t: np.ndarray,
    online: np.ndarray,
    zones: ZoneTable,
) -> np.ndarray:
    """Move each purchase to a plausible local hour of its day: stores 9-19, online near the web hour."""
    zone = persons["zone"].to_numpy()[person]
    day = np.floor(zones.to_local(zone, t))
    web = local_hours(rng, persons["pref_hour_web"].to_numpy()[person], focus=0.6)
    store = rng.uniform(9.0, 19.0, len(t))
    return zones.to_utc(zone, day + np.where(online, web, store) / 24.0)
