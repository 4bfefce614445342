"""Send time: a 168-slot hour-of-week engagement curve per customer and channel, in local time.

The question a curve answers is "if a message goes out in this local hour of the week, how likely is
the customer to engage with it (open or click within ``engage_hours``)?". Two kinds of evidence feed it.

*Send evidence* (direct): every send is a trial in the local slot it went out in, a success when the
customer engaged within ``engage_hours``. It measures the send slot itself, but it is thin (a customer
gets a few dozen messages, at the hours the campaigns chose) and confounded by those hours.

*Habit evidence* (indirect): *when* the customer opens says when they read. An open seconds after the
send says little about habit (the message just arrived), an open hours later at 21:00 says a lot, so
each open counts in the slot it happened with weight ``1 - exp(-delay / open_delay_hours)``. Other
activity (web sessions, orders) counts in its local slot with the smaller ``activity_weight``. A
reading habit ``h`` becomes a send propensity through the inbox decay kernel: a message sent in slot
``s`` is read at ``s + k`` with weight ``exp(-k / read_decay_hours)``, so
``g(s) = sum_k h(s + k) exp(-k / read_decay_hours)`` (``k`` = 0..23): the best send slot is at, or
just before, the hours the customer reads.

Counts are smoothed before use: each hour-of-week count is mixed with the same hour's mean over the
seven days (``day_specificity`` keeps that share specific to the weekday; a daily habit is learnt
seven times faster), then spread to the neighbouring hours (``hour_spread`` each side, circular).

Shrinkage is hierarchical, population -> segment -> customer, with pseudo-counts at every level:

* habit: Dirichlet, ``h = (counts + habit_strength * h_parent) / (n + habit_strength)`` (the
  population shrinks toward flat with the same strength);
* level (the engagement rate): Beta, ``l = (k + level_strength * l_parent) / (n + level_strength)``;
* curve: Beta per slot around a prior that is the parent's curve moved, on the odds scale, by this
  level's own rate and habit, ``odds q(s) = odds p_parent(s) * (odds l / odds l_parent) *
  (g(s) / g_parent(s))`` (``g`` normalised to mean 1; the population's prior is ``odds l * g(s)``),
  then ``p(s) = (K(s) + send_strength * q(s)) / (N(s) + send_strength)`` with the smoothed send
  trials ``N`` and successes ``K``. Odds keep the shape of a habit even for a customer who opens
  nearly everything (a product of probabilities would saturate at 1).

A customer with fewer than ``min_events`` pieces of evidence on a channel (sends + opens + activity)
gets their segment's curve (or the population's), and every answer says which it used. A channel no
one was ever sent to has no engagement rate: its curves are relative propensities (mean 1), flagged
by ``scale = "relative"`` (e.g. Online Retail II, which only has orders).

Time zones: a customer's IANA zone converts every timestamp (DST-aware, through ``zoneinfo``). A
missing or unknown zone falls back to ``default_timezone`` (default: the most common valid zone among
the customers, else UTC) and answers say ``timezone_source = "default"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from features.contract import Channel, Col
from features.errors import InputDataError, KairosError
from models.base import Estimator, check_fitted

SLOTS = 168
HOURS = 24
DAYS = 7
CHANNELS: tuple[str, ...] = tuple(c.value for c in Channel)
SLOT_COLUMNS = [f"s{k:03d}" for k in range(SLOTS)]
ACTIVITY_WEIGHT = "weight"  # optional column of the activity frame


class CurveSource(StrEnum):
    """Which level of the hierarchy a curve comes from."""

    CUSTOMER = "customer"
    SEGMENT = "segment"
    POPULATION = "population"


class Scale(StrEnum):
    PROBABILITY = "probability"
    RELATIVE = "relative"  # no sends on the channel anywhere: propensity with mean 1


@dataclass(frozen=True)
class SlotChoice:
    """The recommended send slot for one customer and channel.

    Attributes:
        customer_key: The customer.
        channel: The channel.
        best_at: UTC instant to send (``now`` itself when the current hour is best), None when the
            window holds no slot outside quiet hours.
        best_local: ``best_at`` in the customer's zone.
        score: The curve's value in that slot (engagement probability, or relative when ``scale`` says so).
        second_at: Best slot on a later local day (for re-sending to non-openers), UTC.
        second_local: ``second_at`` in the customer's zone.
        second_score: The curve's value there.
        source: customer, segment or population.
        timezone: The zone used.
        timezone_source: ``customer`` or ``default`` (missing or unknown zone).
        scale: ``probability`` or ``relative``.
    """

    customer_key: str
    channel: str
    best_at: datetime | None
    best_local: datetime | None
    score: float
    second_at: datetime | None
    second_local: datetime | None
    second_score: float
    source: str
    timezone: str
    timezone_source: str
    scale: str


# --- time helpers ---------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def valid_zone(name: str) -> bool:
    """Whether ``name`` is an IANA zone ``zoneinfo`` knows."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return False
    return True


def local_slots(ts: pd.Series | pd.DatetimeIndex, zones: np.ndarray) -> np.ndarray:
    """Local hour-of-week (Monday 00:00 = 0) of UTC instants, each in its own zone (DST-aware)."""
    index = pd.DatetimeIndex(ts)
    if index.tz is None:
        raise InputDataError("timestamps must be timezone-aware (UTC)")
    out = np.empty(len(index), dtype=np.int64)
    zones = np.asarray(zones, dtype=object)
    for zone in pd.unique(zones):
        mask = zones == zone
        local = index[mask].tz_convert(str(zone))
        out[mask] = local.dayofweek.to_numpy() * HOURS + local.hour.to_numpy()
    return out


def slot_of(moment: datetime) -> int:
    """Hour-of-week of an aware local datetime."""
    return moment.weekday() * HOURS + moment.hour


def in_quiet(hour: int, quiet: tuple[int, int] | None) -> bool:
    """Whether local ``hour`` lies in quiet hours ``[start, end)`` (wrapping midnight; start == end: none)."""
    if quiet is None:
        return False
    start, end = quiet
    if start == end:
        return False
    if start < end:
        return start <= hour < end
    return hour >= start or hour < end


def _check_quiet(quiet: tuple[int, int] | None) -> None:
    if quiet is None:
        return
    if len(quiet) != 2 or not all(isinstance(h, int | np.integer) and 0 <= h < HOURS for h in quiet):
        raise KairosError(f"quiet must be (start_hour, end_hour) with hours in 0..23, got {quiet!r}")


def hour_starts(now: datetime, zone: str, end: datetime) -> list[tuple[datetime, datetime]]:
    """``now`` and every local hour start after it, before ``end``: (UTC instant, local time) pairs.

    Wall-clock hours skipped by a DST change are left out; an hour repeated by one appears once.
    """
    tz = ZoneInfo(zone)
    local_now = now.astimezone(tz)
    out = [(now, local_now)]
    wall = local_now.replace(minute=0, second=0, microsecond=0, tzinfo=None)
    while True:
        wall += timedelta(hours=1)
        aware = wall.replace(tzinfo=tz)
        utc = aware.astimezone(UTC)
        if utc >= end:
            return out
        back = utc.astimezone(tz)
        if back.replace(tzinfo=None) != wall or utc <= out[-1][0]:
            continue  # inside a DST gap, or the repeated hour
        out.append((utc, back))


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise KairosError("now must be timezone-aware")
    return moment.astimezone(UTC)


# --- smoothing and kernels ------------------------------------------------------------------------


def smooth(counts: np.ndarray, day_specificity: float, hour_spread: float) -> np.ndarray:
    """Mix each hour-of-week with its hour's weekly mean, then spread to neighbouring hours (mass kept)."""
    shaped = counts.reshape(*counts.shape[:-1], DAYS, HOURS)
    pooled = shaped.mean(axis=-2, keepdims=True)
    mixed = (day_specificity * shaped + (1.0 - day_specificity) * pooled).reshape(counts.shape)
    return (1.0 - 2.0 * hour_spread) * mixed + hour_spread * (np.roll(mixed, 1, axis=-1) + np.roll(mixed, -1, axis=-1))


def propensity(habit: np.ndarray, read_decay_hours: float) -> np.ndarray:
    """Send propensity from a reading habit: ``g(s) = sum_k h(s+k) exp(-k / tau)``, normalised to mean 1."""
    decay = np.exp(-np.arange(HOURS) / read_decay_hours)
    g = np.zeros_like(habit)
    for k, w in enumerate(decay):
        g += w * np.roll(habit, -k, axis=-1)
    mean = g.mean(axis=-1, keepdims=True)
    return np.divide(g, mean, out=np.ones_like(g), where=mean > 0)


# --- the model ------------------------------------------------------------------------------------


class SendTimeModel(Estimator):
    """Hour-of-week engagement curves per customer and channel with hierarchical shrinkage.

    Args:
        engage_hours: An open or click within this many hours of the send counts as engaging with it.
        open_delay_hours: Scale of the habit weight of an open, ``1 - exp(-delay / open_delay_hours)``.
        activity_weight: Habit weight of one activity event (web session, order) relative to a late open.
        read_decay_hours: Inbox decay turning a reading habit into a send propensity.
        day_specificity: Share of an hour-of-week count kept specific to its weekday (rest: daily pattern).
        hour_spread: Share of a count moved to each neighbouring hour.
        habit_strength: Dirichlet pseudo-count of the parent habit at every level.
        level_strength: Beta pseudo-sends of the parent engagement rate.
        send_strength: Beta pseudo-sends per slot of the prior curve.
        min_events: Fewest pieces of evidence (sends + opens + activity) for a customer's own curve.
        default_timezone: Zone for customers with a missing or unknown one; None: the most common valid
            zone among the customers, else UTC.
    """

    def __init__(
        self,
        engage_hours: float = 24.0,
        open_delay_hours: float = 1.0,
        activity_weight: float = 0.3,
        read_decay_hours: float = 3.0,
        day_specificity: float = 0.2,
        hour_spread: float = 0.15,
        habit_strength: float = 8.0,
        level_strength: float = 10.0,
        send_strength: float = 10.0,
        min_events: int = 3,
        default_timezone: str | None = None,
    ) -> None:
        self.engage_hours = engage_hours
        self.open_delay_hours = open_delay_hours
        self.activity_weight = activity_weight
        self.read_decay_hours = read_decay_hours
        self.day_specificity = day_specificity
        self.hour_spread = hour_spread
        self.habit_strength = habit_strength
        self.level_strength = level_strength
        self.send_strength = send_strength
        self.min_events = min_events
        self.default_timezone = default_timezone

    def _validate_params(self) -> None:
        positive = ("engage_hours", "open_delay_hours", "read_decay_hours", "habit_strength", "level_strength")
        for name in (*positive, "send_strength"):
            if not float(getattr(self, name)) > 0:
                raise KairosError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.activity_weight < 0:
            raise KairosError(f"activity_weight must be >= 0, got {self.activity_weight!r}")
        if not 0.0 <= self.day_specificity <= 1.0:
            raise KairosError(f"day_specificity must be in [0, 1], got {self.day_specificity!r}")
        if not 0.0 <= self.hour_spread < 0.5:
            raise KairosError(f"hour_spread must be in [0, 0.5), got {self.hour_spread!r}")
        if self.min_events < 0:
            raise KairosError(f"min_events must be >= 0, got {self.min_events!r}")
        if self.default_timezone is not None and not valid_zone(self.default_timezone):
            raise KairosError(f"default_timezone {self.default_timezone!r} is not an IANA time zone")

    # -- fitting ----------------------------------------------------------------------------------

    def fit(
        self,
        messages: pd.DataFrame,
        activity: pd.DataFrame | None = None,
        timezones: Mapping[str, Any] | pd.Series | None = None,
        segments: Mapping[str, Any] | pd.Series | None = None,
        *,
        as_of: datetime | None = None,
    ) -> Self:
        """Learn the curves.

        Args:
            messages: One row per send: ``customer_key``, ``channel``, ``sent_at`` (UTC), ``opened_at``,
                ``clicked_at`` (UTC or missing).
            activity: Other activity: ``customer_key``, ``occurred_at`` (UTC), optional ``weight``
                (default 1 per row, times ``activity_weight``): one row per web session or order.
            timezones: Customer key -> IANA zone (missing or unknown: the default zone).
            segments: Customer key -> segment label (missing: the customer shrinks to the population).
            as_of: The data's end; sends within ``engage_hours`` before it are not yet judged. Default:
                the latest timestamp in the inputs. Nothing may be later.

        Raises:
            InputDataError: a required column is missing, or a key / timestamp / channel is invalid.
        """
        self._validate_params()
        msgs = _check_messages(messages)
        act = _check_activity(activity)
        tz_map = _as_series(timezones, "timezones")
        seg_map = _as_series(segments, "segments")
        end = _latest(msgs, act) if as_of is None else _as_utc(as_of)
        _check_not_after(msgs, act, end)

        keys = pd.Index(
            pd.unique(
                np.concatenate(
                    [
                        msgs[Col.CUSTOMER_KEY].to_numpy(dtype=object),
                        act[Col.CUSTOMER_KEY].to_numpy(dtype=object),
                        np.asarray(tz_map.index, dtype=object),
                        np.asarray(seg_map.index, dtype=object),
                    ]
                )
            )
        )
        n = len(keys)
        zone_raw = tz_map.reindex(keys)
        ok = np.array([isinstance(z, str) and valid_zone(z) for z in zone_raw], dtype=bool)
        default = self.default_timezone
        if default is None:
            counts = zone_raw[ok].value_counts()
            default = str(counts.index[0]) if len(counts) else "UTC"
        zones = np.where(ok, zone_raw.to_numpy(dtype=object), default).astype(object)

        seg_raw = seg_map.reindex(keys)
        seg_known = seg_raw.notna().to_numpy()
        seg_labels = sorted({str(s) for s in seg_raw[seg_known]})
        seg_index = {s: i for i, s in enumerate(seg_labels)}
        seg_of = np.array([seg_index[str(s)] if k else -1 for s, k in zip(seg_raw, seg_known, strict=True)])

        n_ch = len(CHANNELS)
        sends = np.zeros((n, n_ch, SLOTS))
        engaged = np.zeros((n, n_ch, SLOTS))
        opens = np.zeros((n, n_ch, SLOTS))
        activity_counts = np.zeros((n, SLOTS))
        events = np.zeros((n, n_ch))

        if len(msgs):
            cust = keys.get_indexer(msgs[Col.CUSTOMER_KEY])
            ch = pd.Index(CHANNELS).get_indexer(msgs[Col.CHANNEL])
            sent = msgs[Col.SENT_AT]
            first = msgs[[Col.OPENED_AT, Col.CLICKED_AT]].min(axis=1)
            has = first.notna().to_numpy()
            delay_h = ((first - sent).dt.total_seconds() / 3600.0).to_numpy(dtype=float)
            judged = (sent <= end - pd.Timedelta(hours=self.engage_hours)).to_numpy()
            hit = has & (delay_h <= self.engage_hours)
            send_slot = local_slots(sent, zones[cust])
            np.add.at(sends, (cust[judged], ch[judged], send_slot[judged]), 1.0)
            np.add.at(engaged, (cust[judged & hit], ch[judged & hit], send_slot[judged & hit]), 1.0)
            if has.any():
                open_slot = local_slots(first[has], zones[cust[has]])
                weight = 1.0 - np.exp(-np.maximum(delay_h[has], 0.0) / self.open_delay_hours)
                np.add.at(opens, (cust[has], ch[has], open_slot), weight)
            np.add.at(events, (cust, ch), 1.0)
            np.add.at(events, (cust[has], ch[has]), 1.0)
        if len(act):
            cust = keys.get_indexer(act[Col.CUSTOMER_KEY])
            slot = local_slots(act[Col.OCCURRED_AT], zones[cust])
            weight = act[ACTIVITY_WEIGHT].to_numpy(dtype=float) if ACTIVITY_WEIGHT in act else np.ones(len(act))
            np.add.at(activity_counts, (cust, slot), weight)
            per_customer = np.bincount(cust, minlength=n).astype(float)
            events += per_customer[:, None]

        habit_counts = opens + self.activity_weight * activity_counts[:, None, :]
        self._learn(habit_counts, sends, engaged, seg_of, len(seg_labels))

        own = events >= max(self.min_events, 1)
        self.keys_ = np.asarray(keys, dtype=object)
        self.zones_ = zones
        self.zone_default_ = ~ok
        self.default_timezone_ = default
        self.segments_ = np.asarray(seg_labels, dtype=object)
        self.segment_of_ = seg_of
        self.own_ = own
        self.as_of_ = end
        self._index()
        return self

    def _learn(
        self, habit_counts: np.ndarray, sends: np.ndarray, engaged: np.ndarray, seg_of: np.ndarray, n_seg: int
    ) -> None:
        """Population -> segment -> customer shrinkage of habits, levels and curves."""
        spread = (self.day_specificity, self.hour_spread)
        n_ch = len(CHANNELS)
        tau = self.read_decay_hours
        flat = np.full((n_ch, SLOTS), 1.0 / SLOTS)

        def habit(counts: np.ndarray, parent: np.ndarray) -> np.ndarray:
            total = counts.sum(axis=-1, keepdims=True)
            return (smooth(counts, *spread) + self.habit_strength * parent) / (total + self.habit_strength)

        def curve(
            k: np.ndarray, n: np.ndarray, level: np.ndarray, g: np.ndarray, parent: tuple[np.ndarray, ...]
        ) -> np.ndarray:
            p_parent, level_parent, g_parent = parent
            ratio = _odds(level) / _odds(level_parent)
            prior = _prob(_odds(p_parent) * ratio[..., None] * g / g_parent)
            return (smooth(k, *spread) + self.send_strength * prior) / (smooth(n, *spread) + self.send_strength)

        # population
        pop_n, pop_k = sends.sum(axis=0), engaged.sum(axis=0)
        pop_habit = habit(habit_counts.sum(axis=0), flat)
        pop_g = propensity(pop_habit, tau)
        n_tot, k_tot = pop_n.sum(axis=-1), pop_k.sum(axis=-1)
        probability = n_tot > 0
        pop_level = np.where(probability, k_tot / np.maximum(n_tot, 1.0), 1.0)
        pop_prior = _prob(_odds(pop_level)[:, None] * pop_g)
        pop_curve = (smooth(pop_k, *spread) + self.send_strength * pop_prior) / (
            smooth(pop_n, *spread) + self.send_strength
        )
        pop_curve = np.where(probability[:, None], pop_curve, pop_g)

        # segments
        seg_n = np.zeros((n_seg, n_ch, SLOTS))
        seg_k = np.zeros_like(seg_n)
        seg_h = np.zeros_like(seg_n)
        member = seg_of >= 0
        np.add.at(seg_n, seg_of[member], sends[member])
        np.add.at(seg_k, seg_of[member], engaged[member])
        np.add.at(seg_h, seg_of[member], habit_counts[member])
        seg_habit = habit(seg_h, pop_habit[None])
        seg_g = propensity(seg_habit, tau)
        seg_level = (seg_k.sum(-1) + self.level_strength * pop_level) / (seg_n.sum(-1) + self.level_strength)
        seg_curve = curve(seg_k, seg_n, seg_level, seg_g, (pop_curve[None], pop_level[None], pop_g[None]))
        seg_curve = np.where(probability[None, :, None], seg_curve, seg_g)

        # customers: parent is the segment, else the population
        if n_seg:
            at = np.maximum(seg_of, 0)
            parent_curve = np.where(member[:, None, None], seg_curve[at], pop_curve[None])
            parent_level = np.where(member[:, None], seg_level[at], pop_level[None])
            parent_habit = np.where(member[:, None, None], seg_habit[at], pop_habit[None])
            parent_g = np.where(member[:, None, None], seg_g[at], pop_g[None])
        else:
            n = len(seg_of)
            parent_curve = np.broadcast_to(pop_curve, (n, n_ch, SLOTS))
            parent_level = np.broadcast_to(pop_level, (n, n_ch))
            parent_habit = np.broadcast_to(pop_habit, (n, n_ch, SLOTS))
            parent_g = np.broadcast_to(pop_g, (n, n_ch, SLOTS))
        cust_habit = habit(habit_counts, parent_habit)
        cust_g = propensity(cust_habit, tau)
        cust_level = (engaged.sum(-1) + self.level_strength * parent_level) / (sends.sum(-1) + self.level_strength)
        cust_curve = curve(engaged, sends, cust_level, cust_g, (parent_curve, parent_level, parent_g))
        cust_curve = np.where(probability[None, :, None], cust_curve, cust_g)

        self.scale_ = np.where(probability, Scale.PROBABILITY.value, Scale.RELATIVE.value).astype(object)
        self.population_curve_ = pop_curve.astype(np.float32)
        self.population_habit_ = pop_habit.astype(np.float32)
        self.population_level_ = pop_level.astype(np.float64)
        self.segment_curve_ = seg_curve.astype(np.float32)
        self.segment_habit_ = seg_habit.astype(np.float32)
        self.segment_level_ = seg_level.astype(np.float64)
        self.segment_evidence_ = (seg_n.sum(-1) + seg_h.sum(-1)).astype(np.float64)
        self.curves_ = cust_curve.astype(np.float32)
        self.habits_ = cust_habit.astype(np.float32)

    def _index(self) -> None:
        self._pos = {str(k): i for i, k in enumerate(self.keys_)}
        self._seg_pos = {str(s): i for i, s in enumerate(self.segments_)}

    # -- lookups ----------------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        check_fitted(self, "curves_")

    def _channel(self, channel: str) -> int:
        if channel not in CHANNELS:
            raise KairosError(f"channel must be one of {list(CHANNELS)}, got {channel!r}")
        return CHANNELS.index(channel)

    def _resolve(self, customer_key: str, ch: int, segment: str | None) -> tuple[np.ndarray, str]:
        """A customer's curve and its source (segment, then population, for thin or unknown customers)."""
        pos = self._pos.get(str(customer_key))
        if pos is not None and self.own_[pos, ch]:
            return self.curves_[pos, ch], CurveSource.CUSTOMER.value
        if pos is not None:
            seg = int(self.segment_of_[pos])
        else:
            seg = self._seg_pos.get(str(segment), -1) if segment is not None else -1
        if seg >= 0 and self.segment_evidence_[seg, ch] > 0:
            return self.segment_curve_[seg, ch], CurveSource.SEGMENT.value
        return self.population_curve_[ch], CurveSource.POPULATION.value

    def _zone(self, customer_key: str, timezone: str | None) -> tuple[str, str]:
        pos = self._pos.get(str(customer_key))
        if pos is not None and not self.zone_default_[pos]:
            return str(self.zones_[pos]), "customer"
        if timezone is not None and valid_zone(timezone):
            return timezone, "customer"
        return str(self.default_timezone_), "default"

    def timezone(self, customer_key: str) -> tuple[str, str]:
        """The zone the model uses for a customer, and whether it is the customer's own or the default."""
        self._check_fitted()
        return self._zone(customer_key, None)

    def has_history(self, customer_key: str) -> bool:
        """Whether the customer has an own curve on at least one channel."""
        self._check_fitted()
        pos = self._pos.get(str(customer_key))
        return pos is not None and bool(self.own_[pos].any())

    def curve(self, customer_key: str, channel: str, *, segment: str | None = None) -> np.ndarray:
        """The 168-slot curve (Monday 00:00 local first) of a customer on a channel; a copy."""
        self._check_fitted()
        values, _ = self._resolve(customer_key, self._channel(channel), segment)
        return np.asarray(values, dtype=np.float64).copy()

    def source(self, customer_key: str, channel: str, *, segment: str | None = None) -> str:
        """Which level the customer's curve comes from: customer, segment or population."""
        self._check_fitted()
        return self._resolve(customer_key, self._channel(channel), segment)[1]

    def habit(self, customer_key: str, channel: str) -> np.ndarray:
        """The shrunk reading/activity habit (a distribution over the 168 local slots); fitted models only."""
        self._check_fitted()
        if not hasattr(self, "habits_"):
            raise KairosError("habits are kept in memory after fit() only, not in the artifact")
        ch = self._channel(channel)
        pos = self._pos.get(str(customer_key))
        if pos is not None:
            return np.asarray(self.habits_[pos, ch], dtype=np.float64).copy()
        return np.asarray(self.population_habit_[ch], dtype=np.float64).copy()

    # -- slot choice ------------------------------------------------------------------------------

    def best_slots(
        self,
        customer_key: str,
        channel: str,
        now: datetime,
        window: timedelta = timedelta(hours=24),
        quiet: tuple[int, int] | None = (22, 8),
        *,
        resend_days: int = 3,
        timezone: str | None = None,
        segment: str | None = None,
    ) -> SlotChoice:
        """The best slot in ``[now, now + window)`` outside quiet hours, and a second best on a later day.

        Candidates are ``now`` (the current hour) and every later local hour start in the window. The
        second best is the best hour start outside quiet hours on one of the ``resend_days`` local days
        after the best slot's day. Ties go to the earliest slot.

        Args:
            customer_key: The customer (unknown: segment / population curve, labelled).
            channel: email, sms or push.
            now: The time of asking (aware).
            window: How far ahead to look.
            quiet: Local quiet hours ``(start, end)``; None for none.
            resend_days: How many local days after the best slot's day the second best may fall on.
            timezone: Zone for a customer the model does not know (else the model's own or default).
            segment: Segment for a customer the model does not know.
        """
        frame = self.best_slots_batch(
            [customer_key],
            channel,
            now,
            window,
            quiet,
            resend_days=resend_days,
            timezones=None if timezone is None else [timezone],
            segments=None if segment is None else [segment],
        )
        row = frame.iloc[0]
        return SlotChoice(
            customer_key=str(customer_key),
            channel=channel,
            best_at=_opt(row["best_at"]),
            best_local=_opt(row["best_local"]),
            score=float(row["score"]),
            second_at=_opt(row["second_at"]),
            second_local=_opt(row["second_local"]),
            second_score=float(row["second_score"]),
            source=str(row["source"]),
            timezone=str(row["timezone"]),
            timezone_source=str(row["timezone_source"]),
            scale=str(row["scale"]),
        )

    def best_slots_batch(
        self,
        customer_keys: Sequence[str],
        channels: str | Sequence[str],
        now: datetime,
        window: timedelta = timedelta(hours=24),
        quiet: tuple[int, int] | None = (22, 8),
        *,
        resend_days: int = 3,
        timezones: Sequence[str | None] | None = None,
        segments: Sequence[str | None] | None = None,
    ) -> pd.DataFrame:
        """:meth:`best_slots` for many customers at one ``now``, vectorised per time zone.

        Returns:
            One row per input, in order: ``customer_key, channel, best_at, best_local, score, second_at,
            second_local, second_score, source, timezone, timezone_source, scale`` (local times as
            aware ``datetime`` objects; ``best_at`` None when the window has no slot outside quiet hours).
        """
        self._check_fitted()
        _check_quiet(quiet)
        if window <= timedelta(0):
            raise KairosError(f"window must be positive, got {window}")
        if resend_days < 1:
            raise KairosError(f"resend_days must be >= 1, got {resend_days}")
        now = _as_utc(now)
        keys = [str(k) for k in customer_keys]
        m = len(keys)
        chans = [channels] * m if isinstance(channels, str) else list(channels)
        if len(chans) != m:
            raise KairosError(f"channels has {len(chans)} entries for {m} customers")
        tz_in = list(timezones) if timezones is not None else [None] * m
        seg_in = list(segments) if segments is not None else [None] * m
        if len(tz_in) != m or len(seg_in) != m:
            raise KairosError("timezones and segments must have one entry per customer")
        ch_idx = np.array([self._channel(c) for c in chans], dtype=np.int64)
        curves = np.empty((m, SLOTS), dtype=np.float64)
        sources: list[str] = []
        zones: list[str] = []
        zone_src: list[str] = []
        for i, (key, ch, tz, seg) in enumerate(zip(keys, ch_idx, tz_in, seg_in, strict=True)):
            values, src = self._resolve(key, int(ch), seg)
            curves[i] = values
            sources.append(src)
            zone, zs = self._zone(key, tz)
            zones.append(zone)
            zone_src.append(zs)

        best_at: list[datetime | None] = [None] * m
        best_local: list[datetime | None] = [None] * m
        score = np.full(m, np.nan)
        second_at: list[datetime | None] = [None] * m
        second_local: list[datetime | None] = [None] * m
        second_score = np.full(m, np.nan)
        zone_arr = np.asarray(zones, dtype=object)
        for zone in pd.unique(zone_arr):
            rows = np.flatnonzero(zone_arr == zone)
            cands = [c for c in hour_starts(now, str(zone), now + window) if not in_quiet(c[1].hour, quiet)]
            if not cands:
                continue
            slots = np.array([slot_of(c[1]) for c in cands])
            pick = np.argmax(curves[rows][:, slots], axis=1)  # first maximum: the earliest slot
            for r, p in zip(rows, pick, strict=True):
                best_at[r], best_local[r] = cands[p]
                score[r] = curves[r, slots[p]]
            days = np.array([cands[p][1].date() for p in pick], dtype=object)
            for day in pd.unique(days):
                sub = rows[days == day]
                later = _day_hours(str(zone), day, resend_days, quiet)
                if not later:
                    continue
                lslots = np.array([slot_of(c[1]) for c in later])
                pick2 = np.argmax(curves[sub][:, lslots], axis=1)
                for r, p in zip(sub, pick2, strict=True):
                    second_at[r], second_local[r] = later[p]
                    second_score[r] = curves[r, lslots[p]]
        return pd.DataFrame(
            {
                Col.CUSTOMER_KEY: keys,
                Col.CHANNEL: chans,
                "best_at": pd.Series(pd.to_datetime(best_at, utc=True), dtype="datetime64[ns, UTC]"),
                "best_local": pd.Series(best_local, dtype=object),
                "score": score,
                "second_at": pd.Series(pd.to_datetime(second_at, utc=True), dtype="datetime64[ns, UTC]"),
                "second_local": pd.Series(second_local, dtype=object),
                "second_score": second_score,
                "source": sources,
                "timezone": zones,
                "timezone_source": zone_src,
                "scale": [str(self.scale_[c]) for c in ch_idx],
            }
        )

    # -- artifacts --------------------------------------------------------------------------------

    def to_frames(self) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
        """The fitted model as Parquet-ready frames and a JSON-ready dict (no pickle).

        Frames: ``customers`` (key, zone, zone source, segment), ``customer_curves`` (customers' own
        curves, one row per customer and channel), ``segment_curves``, ``population_curves`` (with
        levels, scales and habits as priors).
        """
        self._check_fitted()
        seg = np.full(len(self.keys_), None, dtype=object)
        member = self.segment_of_ >= 0
        seg[member] = self.segments_[self.segment_of_[member]]
        customers = pd.DataFrame(
            {
                Col.CUSTOMER_KEY: pd.array(self.keys_.astype(str), dtype="string"),
                Col.TIMEZONE: pd.array(self.zones_.astype(str), dtype="string"),
                "timezone_source": np.where(self.zone_default_, "default", "customer"),
                "segment": pd.array(seg, dtype="string"),
            }
        )
        cust, ch = np.nonzero(self.own_)
        customer_curves = _curve_frame(
            {Col.CUSTOMER_KEY: pd.array(self.keys_[cust].astype(str), dtype="string"), Col.CHANNEL: _ch(ch)},
            self.curves_[cust, ch],
        )
        n_seg = len(self.segments_)
        s_idx = np.repeat(np.arange(n_seg), len(CHANNELS))
        c_idx = np.tile(np.arange(len(CHANNELS)), n_seg)
        segment_curves = _curve_frame(
            {
                "segment": pd.array(self.segments_[s_idx].astype(str), dtype="string"),
                Col.CHANNEL: _ch(c_idx),
                "level": self.segment_level_[s_idx, c_idx],
                "evidence": self.segment_evidence_[s_idx, c_idx],
            },
            self.segment_curve_[s_idx, c_idx],
        )
        segment_habits = _curve_frame(
            {"segment": pd.array(self.segments_[s_idx].astype(str), dtype="string"), Col.CHANNEL: _ch(c_idx)},
            self.segment_habit_[s_idx, c_idx],
        )
        all_ch = np.arange(len(CHANNELS))
        population_curves = _curve_frame(
            {Col.CHANNEL: _ch(all_ch), "level": self.population_level_, "scale": self.scale_.astype(str)},
            self.population_curve_,
        )
        population_habits = _curve_frame({Col.CHANNEL: _ch(all_ch)}, self.population_habit_)
        meta = {
            "params": self.get_params(),
            "default_timezone": self.default_timezone_,
            "as_of": self.as_of_.isoformat(),
            "channels": list(CHANNELS),
            "slots": "hour of week in local time, Monday 00:00 = s000",
        }
        frames = {
            "customers": customers,
            "customer_curves": customer_curves,
            "segment_curves": segment_curves,
            "segment_habits": segment_habits,
            "population_curves": population_curves,
            "population_habits": population_habits,
        }
        return frames, meta

    @classmethod
    def from_frames(cls, frames: Mapping[str, pd.DataFrame], meta: Mapping[str, Any]) -> Self:
        """Rebuild a fitted model from :meth:`to_frames` output (customer habits are not kept)."""
        model = cls(**meta["params"])
        customers = frames["customers"]
        model.keys_ = customers[Col.CUSTOMER_KEY].astype(str).to_numpy(dtype=object)
        model.zones_ = customers[Col.TIMEZONE].astype(str).to_numpy(dtype=object)
        model.zone_default_ = (customers["timezone_source"] == "default").to_numpy()
        model.default_timezone_ = str(meta["default_timezone"])
        model.as_of_ = datetime.fromisoformat(str(meta["as_of"]))
        seg_curves = frames["segment_curves"]
        model.segments_ = np.asarray(pd.unique(seg_curves["segment"].astype(str)), dtype=object)
        seg_pos = {s: i for i, s in enumerate(model.segments_)}
        model.segment_of_ = np.array(
            [-1 if pd.isna(s) else seg_pos.get(str(s), -1) for s in customers["segment"]], dtype=np.int64
        )
        n, n_seg, n_ch = len(model.keys_), len(model.segments_), len(CHANNELS)
        pop = frames["population_curves"].set_index(Col.CHANNEL).reindex(list(CHANNELS))
        model.population_curve_ = pop[SLOT_COLUMNS].to_numpy(dtype=np.float32)
        model.population_level_ = pop["level"].to_numpy(dtype=np.float64)
        model.scale_ = pop["scale"].astype(str).to_numpy(dtype=object)
        pop_h = frames["population_habits"].set_index(Col.CHANNEL).reindex(list(CHANNELS))
        model.population_habit_ = pop_h[SLOT_COLUMNS].to_numpy(dtype=np.float32)
        model.segment_curve_ = np.zeros((n_seg, n_ch, SLOTS), dtype=np.float32)
        model.segment_habit_ = np.zeros((n_seg, n_ch, SLOTS), dtype=np.float32)
        model.segment_level_ = np.zeros((n_seg, n_ch))
        model.segment_evidence_ = np.zeros((n_seg, n_ch))
        s = seg_curves["segment"].astype(str).map(seg_pos).to_numpy()
        c = pd.Index(CHANNELS).get_indexer(seg_curves[Col.CHANNEL])
        model.segment_curve_[s, c] = seg_curves[SLOT_COLUMNS].to_numpy(dtype=np.float32)
        model.segment_level_[s, c] = seg_curves["level"].to_numpy(dtype=np.float64)
        model.segment_evidence_[s, c] = seg_curves["evidence"].to_numpy(dtype=np.float64)
        seg_h = frames["segment_habits"]
        sh = seg_h["segment"].astype(str).map(seg_pos).to_numpy()
        model.segment_habit_[sh, pd.Index(CHANNELS).get_indexer(seg_h[Col.CHANNEL])] = seg_h[SLOT_COLUMNS].to_numpy(
            dtype=np.float32
        )
        model.curves_ = np.zeros((n, n_ch, SLOTS), dtype=np.float32)
        model.own_ = np.zeros((n, n_ch), dtype=bool)
        cc = frames["customer_curves"]
        pos = pd.Index(model.keys_).get_indexer(cc[Col.CUSTOMER_KEY].astype(str))
        if (pos < 0).any():
            raise KairosError("customer_curves name customers missing from the customers frame")
        ch = pd.Index(CHANNELS).get_indexer(cc[Col.CHANNEL])
        model.curves_[pos, ch] = cc[SLOT_COLUMNS].to_numpy(dtype=np.float32)
        model.own_[pos, ch] = True
        model._index()
        return model


# --- input checks ---------------------------------------------------------------------------------


def _require(frame: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputDataError(f"{name} lacks column(s) {missing}")


def _utc_column(frame: pd.DataFrame, name: str, column: str, required: bool) -> pd.Series:
    values = pd.to_datetime(frame[column], utc=False)
    if getattr(values.dt, "tz", None) is None:
        raise InputDataError(f"{name}.{column} must be timezone-aware (UTC instants)")
    values = values.dt.tz_convert("UTC")
    if required and values.isna().any():
        raise InputDataError(f"{name}.{column} has {int(values.isna().sum())} missing value(s)")
    return values


def _check_keys(frame: pd.DataFrame, name: str) -> None:
    if frame[Col.CUSTOMER_KEY].isna().any():
        raise InputDataError(f"{name}.{Col.CUSTOMER_KEY} has {int(frame[Col.CUSTOMER_KEY].isna().sum())} missing")


def _check_messages(messages: pd.DataFrame) -> pd.DataFrame:
    _require(messages, "messages", [Col.CUSTOMER_KEY, Col.CHANNEL, Col.SENT_AT, Col.OPENED_AT, Col.CLICKED_AT])
    out = pd.DataFrame({Col.CUSTOMER_KEY: messages[Col.CUSTOMER_KEY].astype(object)})
    _check_keys(out, "messages")
    out[Col.CUSTOMER_KEY] = out[Col.CUSTOMER_KEY].astype(str)
    channel = messages[Col.CHANNEL].astype(object)
    bad = ~channel.isin(CHANNELS)
    if bad.any():
        raise InputDataError(
            f"messages.{Col.CHANNEL} has {int(bad.sum())} value(s) outside {list(CHANNELS)}, e.g. "
            f"{channel[bad].iloc[0]!r}"
        )
    out[Col.CHANNEL] = channel.astype(str)
    out[Col.SENT_AT] = _utc_column(messages, "messages", Col.SENT_AT, True)
    for col in (Col.OPENED_AT, Col.CLICKED_AT):
        out[col] = _utc_column(messages, "messages", col, False)
        early = out[col] < out[Col.SENT_AT]
        if early.any():
            raise InputDataError(f"messages.{col} is before sent_at on {int(early.sum())} row(s)")
    return out.reset_index(drop=True)


def _check_activity(activity: pd.DataFrame | None) -> pd.DataFrame:
    if activity is None:
        return pd.DataFrame(
            {Col.CUSTOMER_KEY: pd.Series([], dtype=object), Col.OCCURRED_AT: pd.Series([], dtype="datetime64[ns, UTC]")}
        )
    _require(activity, "activity", [Col.CUSTOMER_KEY, Col.OCCURRED_AT])
    out = pd.DataFrame({Col.CUSTOMER_KEY: activity[Col.CUSTOMER_KEY].astype(object)})
    _check_keys(out, "activity")
    out[Col.CUSTOMER_KEY] = out[Col.CUSTOMER_KEY].astype(str)
    out[Col.OCCURRED_AT] = _utc_column(activity, "activity", Col.OCCURRED_AT, True)
    if ACTIVITY_WEIGHT in activity:
        weight = pd.to_numeric(activity[ACTIVITY_WEIGHT], errors="coerce")
        if weight.isna().any() or (weight < 0).any():
            raise InputDataError(f"activity.{ACTIVITY_WEIGHT} must be non-negative numbers")
        out[ACTIVITY_WEIGHT] = weight.to_numpy(dtype=float)
    return out.reset_index(drop=True)


def _as_series(values: Mapping[str, Any] | pd.Series | None, name: str) -> pd.Series:
    if values is None:
        return pd.Series([], dtype=object)
    series = values if isinstance(values, pd.Series) else pd.Series(dict(values), dtype=object)
    if series.index.hasnans:
        raise InputDataError(f"{name} has a missing customer key")
    if series.index.has_duplicates:
        raise InputDataError(f"{name} has duplicate customer keys, e.g. {series.index[series.index.duplicated()][0]!r}")
    series = series.astype(object)
    series.index = series.index.astype(str)
    return series


def _latest(msgs: pd.DataFrame, act: pd.DataFrame) -> datetime:
    candidates = [msgs[c].max() for c in (Col.SENT_AT, Col.OPENED_AT, Col.CLICKED_AT)] + [act[Col.OCCURRED_AT].max()]
    found = [pd.Timestamp(c) for c in candidates if not pd.isna(c)]
    if not found:
        raise InputDataError("no messages and no activity to learn send times from")
    return max(found).to_pydatetime()


def _check_not_after(msgs: pd.DataFrame, act: pd.DataFrame, end: datetime) -> None:
    limit = pd.Timestamp(end)
    for frame, name, cols in (
        (msgs, "messages", (Col.SENT_AT, Col.OPENED_AT, Col.CLICKED_AT)),
        (act, "activity", (Col.OCCURRED_AT,)),
    ):
        for col in cols:
            late = frame[col] > limit
            if late.any():
                raise InputDataError(f"{name}.{col} has {int(late.sum())} value(s) after as_of {end.isoformat()}")


# --- small helpers --------------------------------------------------------------------------------


def _day_hours(
    zone: str, day: date, resend_days: int, quiet: tuple[int, int] | None
) -> list[tuple[datetime, datetime]]:
    """Hour starts outside quiet hours on the ``resend_days`` local days after ``day``."""
    tz = ZoneInfo(zone)
    start = datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(days=1)
    first = start.astimezone(UTC)
    end_day = day + timedelta(days=resend_days + 1)
    end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz).astimezone(UTC)
    hours = hour_starts(first, zone, end)
    return [h for h in hours if h[1].date() > day and not in_quiet(h[1].hour, quiet)]


def _odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1.0 - 1e-6)
    return p / (1.0 - p)


def _prob(odds: np.ndarray) -> np.ndarray:
    return odds / (1.0 + odds)


def _curve_frame(columns: dict[str, Any], values: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(columns)
    slots = pd.DataFrame(np.asarray(values, dtype=np.float32).reshape(-1, SLOTS), columns=SLOT_COLUMNS)
    return pd.concat([frame.reset_index(drop=True), slots], axis=1)


def _ch(idx: np.ndarray) -> pd.arrays.StringArray:
    return pd.array(np.asarray(CHANNELS, dtype=object)[idx].astype(str), dtype="string")


def _opt(value: Any) -> datetime | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value


def hour_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hours between hours of the day, around the clock (23 and 1 are 2 apart)."""
    d = np.abs(np.asarray(a, dtype=np.int64) - np.asarray(b, dtype=np.int64)) % HOURS
    return np.minimum(d, HOURS - d)
