"""Purchases, engagement and churn of the synthetic persons.

A week-by-week simulation, vectorised over persons (about a hundred steps, never a loop over events).
Each buyer purchases as a Poisson process with a gamma-distributed personal rate, seasonality and, for
lapsing buyers, a decaying multiplier. Engagement is a slow random walk around a personal level. Churn
is a hazard that rises with a long gap since the last purchase (relative to the person's own rhythm),
with low engagement and after only one purchase; once churned a person buys nothing more on their own
and rarely engages. So recency, frequency and engagement carry real signal about churn and purchases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.synth_common import Clock, ZoneTable, season

# relative activity by local hour, for orders and sessions away from a person's preferred hour
DIURNAL = np.array([0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.6, 0.9, 1.0, 1.1, 1.2,
                    1.3, 1.2, 1.1, 1.1, 1.1, 1.2, 1.4, 1.6, 1.7, 1.5, 1.0, 0.5])
CHURN_BASE = 0.004  # weekly hazard of an engaged buyer on rhythm


@dataclass(frozen=True)
class Behaviour:
    """Natural purchases, churn and weekly engagement.

    Attributes:
        purchase_person: Person number of each natural purchase.
        purchase_t: UTC float day of each purchase, sorted within person.
        purchase_online: Whether each purchase is made online.
        churn_t: Float day each person churned, NaN if alive at the end (or never a buyer).
        engagement: ``(n_persons, n_weeks)`` float32 engagement level in [0, 1].
    """

    purchase_person: np.ndarray
    purchase_t: np.ndarray
    purchase_online: np.ndarray
    churn_t: np.ndarray
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
        persons: Person traits from :func:`features.synth_people.build_people`.
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
    last_buy = np.where(buyer & existing, np.maximum(created, -rng.exponential(1.0 / np.maximum(rate, 1e-3))),
                        np.nan)
    n_buys = np.where(buyer & existing, 1 + rng.poisson(2.0, n), 0)
    churn = np.full(n, np.nan)
    alive = np.ones(n, dtype=bool)
    level = np.log(persons["engagement"].to_numpy() / (1 - persons["engagement"].to_numpy()))
    wander = rng.normal(0.0, 0.5, n)
    engagement = np.empty((n, weeks), dtype=np.float32)
    times: list[np.ndarray] = []
    owners: list[np.ndarray] = []

    for w in range(weeks):  # ~105 vectorised steps
        a, b = 7.0 * w, min(7.0 * w + 7.0, float(T))
        lapsed = np.where(np.isnan(onset) | (onset > a), 0.0, (a - np.nan_to_num(onset)) / 7.0)
        wander = 0.9 * wander + rng.normal(0.0, 0.22, n)
        eng = 1.0 / (1.0 + np.exp(-(level + wander - 0.12 * lapsed)))
        eng = np.where(alive, eng, 0.3 * eng)
        engagement[:, w] = eng

        starts = alive & (first >= a) & (first < b)
        owners.append(np.flatnonzero(starts))
        times.append(first[starts])
        last_buy[starts] = first[starts]
        n_buys[starts] += 1
        churn[starts & ooad] = first[starts & ooad] + rng.uniform(2.0, 40.0, int((starts & ooad).sum()))
        alive[starts & ooad] = False

        lo = np.maximum(a, np.where(np.isfinite(first), first, -np.inf))
        active = alive & buyer & ~ooad & (lo < b)
        multiplier = np.exp(-lapsed * 7.0 / 70.0)
        mean = rate * multiplier * season(clock, np.array([a + 3.5]))[0] * np.maximum(b - lo, 0.0)
        k = np.where(active, rng.poisson(np.where(active, mean, 0.0)), 0)
        who = np.repeat(np.arange(n), k)
        when = lo[who] + rng.random(len(who)) * (b - lo[who])
        owners.append(who)
        times.append(when)
        if len(who):
            np.maximum.at(last_buy, who, when)
            n_buys += k

        started = alive & buyer & ~ooad & (n_buys > 0)
        gap = b - np.nan_to_num(last_buy, nan=b)
        overdue = np.clip(gap * rate - 1.0, 0.0, 3.0)
        hazard = CHURN_BASE * np.exp(0.9 * overdue + 2.5 * (0.4 - eng)) * np.where(n_buys == 1, 2.5, 1.0)
        leaves = started & (rng.random(n) < 1.0 - np.exp(-hazard))
        churn[leaves] = a + rng.random(int(leaves.sum())) * (b - a)
        alive[leaves] = False

    person = np.concatenate(owners)
    t = np.concatenate(times)
    keep = (t < T) & ~(t > np.nan_to_num(churn, nan=np.inf))
    person, t = person[keep], t[keep]
    online = rng.random(len(person)) < persons["online_share"].to_numpy()[person]
    t = _time_of_day(rng, persons, person, t, online, zones)
    t = np.clip(np.maximum(t, created[person] + 0.0007), 0.0, T - 1e-6)
    order = np.lexsort((t, person))
    person, t, online = person[order], t[order], online[order]
    last = np.full(n, -np.inf)
    np.maximum.at(last, person, t)
    churn = np.where(np.isnan(churn) | (churn >= T), np.nan, np.maximum(churn, last + 0.01))
    return Behaviour(person, t, online, churn, engagement)


def _time_of_day(rng: np.random.Generator, persons: pd.DataFrame, person: np.ndarray, t: np.ndarray,
                 online: np.ndarray, zones: ZoneTable) -> np.ndarray:
    """Move each purchase to a plausible local hour of its day: stores 9-19, online near the web hour."""
    zone = persons["zone"].to_numpy()[person]
    day = np.floor(zones.to_local(zone, t))
    web = local_hours(rng, persons["pref_hour_web"].to_numpy()[person], focus=0.6)
    store = rng.uniform(9.0, 19.0, len(t))
    return zones.to_utc(zone, day + np.where(online, web, store) / 24.0)
