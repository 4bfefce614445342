"""Campaign messages of the synthetic world, their engagement, unsubscribes and the effect of offers.

Campaigns go out at varied UTC hours on e-mail, SMS and push, each to a random share of the records
opted in on that channel at send time. A person opens more often, and sooner, when a message arrives
near their own preferred local hour, and mostly opens at that hour. About a third of messages carry
an offer drawn at random (a randomised experiment); offers change 30-day purchase probability by each
person's planted uplift: extra orders for positive uplift, suppressed natural orders for negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from synth.behaviour import Behaviour
from synth.catalog import OFFERS
from synth.common import Clock, ZoneTable, whole_seconds
from synth.people import CHANNELS, People

OFFER_SHARE = 0.35  # share of messages that carry an offer; the offer is then uniform over OFFERS
WINDOW_DAYS = 30.0  # uplift horizon and offer redemption window
CLICK_WINDOW_DAYS = 7.0  # attribution window after a click for messages without an offer
# per channel (email, sms, push)
_PREFIX = ("EM", "SM", "PU")
_OPEN_BASE = np.array([0.38, 0.60, 0.22])
_OPEN_AT_PREFERRED = np.array([0.75, 0.55, 0.70])  # else soon after the send
_SOON_MEAN_DAYS = np.array([3.0, 0.15, 0.3]) / 24.0
_CLICK_BASE = np.array([0.10, 0.06, 0.12])
_BOUNCE = np.array([0.02, 0.03, 0.05])
_UNSUB = np.array([0.012, 0.004, 0.006])  # per open (e-mail, push) or per delivery (SMS "STOP")
_SECOND = 1.0 / 86_400.0


@dataclass
class Messages:
    """One row per message, as arrays (float days, NaN = never).

    Attributes:
        record, person, channel, campaign, offer: Recipient, channel index, campaign and offer index (-1).
        sent, delivered, opened, clicked, unsubscribed, converted: Event times.
        campaigns: The campaign table (``campaign_id``, ``channel``, ``t``).
    """

    record: np.ndarray
    person: np.ndarray
    channel: np.ndarray
    campaign: np.ndarray
    offer: np.ndarray
    sent: np.ndarray
    delivered: np.ndarray
    opened: np.ndarray
    clicked: np.ndarray
    unsubscribed: np.ndarray
    converted: np.ndarray
    campaigns: pd.DataFrame

    def take(self, keep: np.ndarray) -> Messages:
        """The messages selected by a boolean mask or index array."""
        arrays = {k: getattr(self, k)[keep] for k in self.__dataclass_fields__ if k != "campaigns"}
        return Messages(**arrays, campaigns=self.campaigns)

    def __len__(self) -> int:
        return len(self.sent)


def build_campaigns(rng: np.random.Generator, clock: Clock) -> pd.DataFrame:
    """The campaign calendar: weekly newsletters and promos, fortnightly SMS, frequent pushes."""
    weeks = clock.days // 7
    rows = []
    for ch, per_week, lo, hi in ((0, 1.5, 0.3, 0.8), (1, 0.4, 0.2, 0.6), (2, 0.7, 0.3, 0.8)):
        count = rng.poisson(per_week, weeks)
        week = np.repeat(np.arange(weeks), count)
        day = week * 7 + rng.integers(0, 7, len(week))
        hour = rng.integers(6, 22, len(week)) + rng.choice([0.0, 0.5], len(week))
        rows.append(pd.DataFrame({"channel": ch, "t": day + hour / 24.0, "share": rng.uniform(lo, hi, len(week))}))
    campaigns = pd.concat(rows, ignore_index=True).sort_values(["t", "channel"], kind="stable")
    campaigns = campaigns[campaigns["t"] < clock.days].reset_index(drop=True)
    number = campaigns.groupby("channel").cumcount() + 1
    campaigns["campaign_id"] = [f"{_PREFIX[c]}{k:04d}" for c, k in zip(campaigns["channel"], number, strict=True)]
    return campaigns


def send(rng: np.random.Generator, people: People, behaviour: Behaviour, clock: Clock, zones: ZoneTable) -> Messages:
    """Send every campaign to its audience and simulate delivery, opens, clicks and unsubscribes.

    Args:
        rng: Random stream of messaging.
        people: Persons, records and consents.
        behaviour: Engagement and churn (engaged persons open more).
        clock: The world's clock.
        zones: UTC offsets of the world's zones.

    Returns:
        The messages, without conversions yet; none after the recipient unsubscribed on that channel.
    """
    campaigns = build_campaigns(rng, clock)
    rec = people.records
    created = rec["created"].to_numpy()
    contact = np.column_stack([rec["email"].notna(), rec["phone"].notna(), rec["push"]])
    parts: list[tuple[np.ndarray, np.ndarray, int]] = []
    for k, (ch, t, share) in enumerate(campaigns[["channel", "t", "share"]].itertuples(index=False)):
        audience = np.flatnonzero(contact[:, ch] & (created < t + 1.0 / 24))  # one pass per campaign (~300)
        audience = audience[rng.random(len(audience)) < share]
        at = whole_seconds(t + rng.uniform(1.0, 40.0, len(audience)) / 1440.0)  # a send takes a while
        ok = (created[audience] < at) & people.opted_in(audience, ch, at)
        parts.append((audience[ok], at[ok], k))
    record = np.concatenate([p for p, _, _ in parts])
    sent = np.concatenate([s for _, s, _ in parts])
    campaign = np.concatenate([np.full(len(p), k) for p, _, k in parts])
    channel = campaigns["channel"].to_numpy()[campaign]
    m = len(record)
    person = rec["person"].to_numpy()[record]
    offer = np.where(rng.random(m) < OFFER_SHARE, rng.integers(0, len(OFFERS), m), -1)

    reachable = np.where(
        channel == 0,
        rec["email_ok"].to_numpy()[record],
        np.where(channel == 1, rec["phone_ok"].to_numpy()[record], True),
    )
    delivered_ok = reachable & (rng.random(m) >= _BOUNCE[channel])
    delivered = np.where(delivered_ok, sent + (2 + rng.exponential(30.0, m)) / 86_400.0, np.nan)
    eng = behaviour.engagement_at(person, sent)
    persons = people.persons
    zone = persons["zone"].to_numpy()[person]
    preferred = preferred_hour(persons, person, channel)
    local = zones.to_local(zone, sent)
    hours_until = (preferred - np.floor((local % 1.0) * 24.0)) % 24
    p_open = _OPEN_BASE[channel] * (eng / 0.4) ** 0.8 * (0.45 + 0.9 * np.exp(-hours_until / 3.0))
    opened_ok = delivered_ok & (rng.random(m) < np.minimum(p_open, 0.95))
    at_pref = rng.random(m) < _OPEN_AT_PREFERRED[channel]
    late_days = rng.geometric(np.where(channel == 0, 0.7, 0.9)) - 1.0
    habit = (preferred + rng.choice([-1.0, 0.0, 1.0], m, p=[0.15, 0.7, 0.15])) % 24  # a habit, not a clock
    open_pref = next_preferred(rng, zones, zone, sent, habit, late_days)
    open_soon = delivered + rng.exponential(_SOON_MEAN_DAYS[channel])
    opened = np.where(opened_ok, np.maximum(np.where(at_pref, open_pref, open_soon), delivered + _SECOND), np.nan)
    clicked_ok = opened_ok & (rng.random(m) < _CLICK_BASE[channel] * (0.5 + 1.5 * eng))
    clicked = np.where(clicked_ok, opened + (5 + rng.exponential(120.0, m)) / 86_400.0, np.nan)
    unsub_ok = np.where(channel == 1, delivered_ok, opened_ok) & (rng.random(m) < _UNSUB[channel] * (2.5 - 2 * eng))
    unsub_from = np.where(channel == 1, delivered, opened)
    unsubscribed = np.where(unsub_ok, unsub_from + (10 + rng.exponential(300.0, m)) / 86_400.0, np.nan)
    unsubscribed = whole_seconds(np.where(unsubscribed < clock.days, unsubscribed, np.nan))

    msgs = Messages(
        record,
        person,
        channel,
        campaign,
        offer,
        sent,
        delivered,
        opened,
        clicked,
        unsubscribed,
        np.full(m, np.nan),
        campaigns,
    )
    # nothing more on a channel after an unsubscribe from it
    key = record * 3 + channel
    first_unsub = np.full(len(rec) * 3, np.inf)
    hit = ~np.isnan(unsubscribed)
    np.minimum.at(first_unsub, key[hit], unsubscribed[hit])
    msgs.unsubscribed[unsubscribed > first_unsub[key]] = np.nan  # already out through an earlier message
    msgs = msgs.take(sent < first_unsub[key])
    return msgs.take(np.lexsort((msgs.record, msgs.sent)))


def censor(msgs: Messages, end: float) -> None:
    """Blank engagement that would happen after the export (in place); a click needs its open."""
    for name in ("delivered", "opened", "clicked", "converted"):
        values = getattr(msgs, name)
        values[values >= end] = np.nan
    msgs.clicked[np.isnan(msgs.opened)] = np.nan


def preferred_hour(persons: pd.DataFrame, person: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """Each person's preferred local hour on each message's channel."""
    table = np.column_stack([persons[f"pref_hour_{c}"].to_numpy() for c in CHANNELS])
    return table[person, channel].astype(np.float64)


def next_preferred(
    rng: np.random.Generator,
    zones: ZoneTable,
    zone: np.ndarray,
    t: np.ndarray,
    preferred: np.ndarray,
    late_days: np.ndarray,
) -> np.ndarray:
    """A UTC instant within the first preferred local hour at or after ``t`` (plus ``late_days``)."""
    local = zones.to_local(zone, t)
    day = np.floor(local)
    hour = (local - day) * 24.0
    same_hour = np.floor(hour) == preferred
    later_today = preferred > hour
    start = np.where(same_hour, hour, preferred)
    hours = start + rng.random(len(t)) * np.where(same_hour, preferred + 1.0 - hour, 1.0)
    day = day + np.where(same_hour | later_today, 0.0, 1.0) + late_days
    return np.maximum(zones.to_utc(zone, day + hours / 24.0), t + 1.0 / 86_400.0)


@dataclass(frozen=True)
class Purchases:
    """Final person-level purchases after offer effects, sorted by person then time.

    Attributes:
        person, t, online: Purchaser, UTC float day, online or in store.
        induced_by: Message index that caused the purchase (a positive uplift), -1 for natural ones.
    """

    person: np.ndarray
    t: np.ndarray
    online: np.ndarray
    induced_by: np.ndarray


def apply_offers(
    rng: np.random.Generator,
    msgs: Messages,
    behaviour: Behaviour,
    people: People,
    baseline: np.ndarray,
    uplift: np.ndarray,
    clock: Clock,
    zones: ZoneTable,
) -> Purchases:
    """Realise each delivered offer's planted uplift on 30-day purchases.

    With baseline ``p0`` and uplift ``u`` of the person and offer, the chance of at least one purchase in
    the 30 days after the send becomes ``p0 + u`` for a buyer who stays on rhythm: a positive ``u`` adds an
    order (with probability ``u / (1 - p0)`` when none was coming), a negative ``u`` cancels the coming
    ones (with probability ``-u / p0``). A converted offer is opened and clicked before the order.

    Args:
        rng: Random stream of offer effects.
        msgs: Messages; opens and clicks of converting messages are filled in place.
        behaviour: Natural purchases.
        people: Persons (zones, preferred hours).
        baseline: ``(n_persons,)`` baseline 30-day purchase probability.
        uplift: ``(n_persons, n_offers)`` planted uplift.
        clock: The world's clock.
        zones: UTC offsets.

    Returns:
        The final purchases.
    """
    p, t = behaviour.purchase_person, behaviour.purchase_t
    scale = 2.0 * clock.days + 100.0
    keys = p * scale + t
    cand = np.flatnonzero((msgs.offer >= 0) & ~np.isnan(msgs.delivered))
    who = msgs.person[cand]
    lo = np.searchsorted(keys, who * scale + msgs.sent[cand], side="right")
    hi = np.searchsorted(keys, who * scale + msgs.sent[cand] + WINDOW_DAYS, side="right")
    u = uplift[who, msgs.offer[cand]]
    p0 = baseline[who]
    draw = rng.random(len(cand))
    induce = (u > 0) & (hi == lo) & (draw < u / np.maximum(1.0 - p0, 1e-9))
    suppress = (u < 0) & (hi > lo) & (draw < -u / np.maximum(p0, 1e-9))
    dropped = np.zeros(len(t), dtype=bool)
    counts = (hi - lo)[suppress]
    if counts.sum():
        starts = np.repeat(lo[suppress], counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        dropped[starts + offsets] = True

    m = cand[induce]
    persons = people.persons
    zone = persons["zone"].to_numpy()[msgs.person[m]]
    late = np.minimum(rng.geometric(0.5, len(m)) - 1.0, 20.0)
    moment = next_preferred(
        rng, zones, zone, msgs.sent[m], preferred_hour(persons, msgs.person[m], msgs.channel[m]), late
    )
    opened = np.where(np.isnan(msgs.opened[m]), np.maximum(moment, msgs.delivered[m] + _SECOND), msgs.opened[m])
    clicked = np.where(
        np.isnan(msgs.clicked[m]), opened + (5 + rng.exponential(120.0, len(m))) / 86_400.0, msgs.clicked[m]
    )
    order_t = np.minimum(
        clicked + rng.exponential(2.0 / 24.0, len(m)) + 60.0 / 86_400.0, msgs.sent[m] + WINDOW_DAYS - 1e-4
    )
    ok = (order_t < clock.days) & (order_t > clicked)
    m, opened, clicked, order_t = m[ok], opened[ok], clicked[ok], order_t[ok]
    msgs.opened[m], msgs.clicked[m] = opened, clicked

    online_share = persons["online_share"].to_numpy()
    person = np.concatenate([p[~dropped], msgs.person[m]])
    when = np.concatenate([t[~dropped], order_t])
    online = np.concatenate([behaviour.purchase_online[~dropped], online_share[msgs.person[m]] > 0])
    induced_by = np.concatenate([np.full(int((~dropped).sum()), -1), m])
    order = np.lexsort((when, person))
    return Purchases(person[order], when[order], online[order], induced_by[order])


def attribute(msgs: Messages, order_person: np.ndarray, order_t: np.ndarray, order_known: np.ndarray) -> np.ndarray:
    """Fill ``converted`` and return, per order, the offer message it redeemed (-1 if none).

    An offer message converts when its recipient orders within 30 days of the send and after opening
    it (redemption, whether or not the order would have happened anyway); a message without an offer
    converts when an order follows its click within 7 days. Guest orders cannot be attributed.

    Args:
        msgs: Messages; ``converted`` is filled in place.
        order_person: Person of each order.
        order_t: Time of each order.
        order_known: Whether the order carries a customer record (not a guest checkout).

    Returns:
        Index of the offer message each order redeemed, -1 if none.
    """
    redeemed = np.full(len(order_person), -1, dtype=np.int64)
    known = np.flatnonzero(order_known)
    if not len(known):
        return redeemed
    p, t = order_person[known], order_t[known]
    order = np.lexsort((t, p))
    known, p, t = known[order], p[order], t[order]
    scale = 1e5
    keys = p * scale + t
    has_offer = msgs.offer >= 0
    start = np.where(has_offer, msgs.opened, msgs.clicked)
    end = np.where(has_offer, msgs.sent + WINDOW_DAYS, msgs.clicked + CLICK_WINDOW_DAYS)
    valid = ~np.isnan(start)
    pos = np.searchsorted(keys, msgs.person * scale + np.nan_to_num(start), side="right")
    pos_ok = valid & (pos < len(keys))
    pos_c = np.minimum(pos, len(keys) - 1)
    hit = pos_ok & (p[pos_c] == msgs.person) & (t[pos_c] <= end)
    msgs.converted[:] = np.where(hit, t[pos_c], np.nan)
    offer_hits = np.flatnonzero(hit & has_offer)
    # the earliest-sent offer message wins the order
    for_orders = known[pos_c[offer_hits]]
    first = np.lexsort((msgs.sent[offer_hits], for_orders))
    _, idx = np.unique(for_orders[first], return_index=True)
    redeemed[for_orders[first][idx]] = offer_hits[first][idx]
    return redeemed


def consent_rows(people: People, msgs: Messages) -> pd.DataFrame:
    """Every consent event: initial choice, later change, and opt-outs through unsubscribe links.

    Args:
        people: Records and their consent timelines.
        msgs: Messages (their unsubscribes).

    Returns:
        Rows ``record, channel, opt_in, t, source``; nothing on a channel after an unsubscribe.
    """
    rec = people.records
    n = len(rec)
    record, channel = np.nonzero(people.consent_init >= 0)
    first = pd.DataFrame(
        {
            "record": record,
            "channel": channel,
            "opt_in": people.consent_init[record, channel] == 1,
            "t": rec["created"].to_numpy()[record],
            "source": np.where(
                channel == 2, "app", np.where(rec["source"].to_numpy()[record] == "store", "store", "signup")
            ),
        }
    )
    rc, cc = np.nonzero(~np.isnan(people.consent_change))
    flipped_in = people.consent_init[rc, cc] == 0
    change = pd.DataFrame(
        {
            "record": rc,
            "channel": cc,
            "opt_in": flipped_in,
            "t": people.consent_change[rc, cc],
            "source": np.where(flipped_in, "checkout", "preference_centre"),
        }
    )
    hit = ~np.isnan(msgs.unsubscribed)
    unsub = pd.DataFrame(
        {
            "record": msgs.record[hit],
            "channel": msgs.channel[hit],
            "opt_in": False,
            "t": msgs.unsubscribed[hit],
            "source": np.array(["unsubscribe_link", "sms_stop", "app_settings"])[msgs.channel[hit]],
        }
    )
    rows = pd.concat([first, change, unsub], ignore_index=True)
    cut = np.full(n * 3, np.inf)
    np.minimum.at(cut, unsub["record"].to_numpy() * 3 + unsub["channel"].to_numpy(), unsub["t"].to_numpy())
    rows = rows[rows["t"].to_numpy() <= cut[rows["record"].to_numpy() * 3 + rows["channel"].to_numpy()]]
    return rows.sort_values(["t", "record", "channel"], kind="stable").reset_index(drop=True)
