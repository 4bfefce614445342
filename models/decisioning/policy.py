"""Contact policy: "may I contact this customer on this channel now; if not, when next?".

Rules, all of which must hold at the instant ``t`` of a send:

* **Consent** (hard filter): the customer's latest consent record on the channel at or before the
  instant is ``opt_in``. No record, or an ``opt_out``, means never: ``next_allowed_at`` is None
  (unless the state already holds a later-stamped opt-in, which then counts from its own time). Two
  records at the same instant: the opt-out wins.
* **Frequency caps** per channel and across channels: a cap "at most ``n`` per ``W`` hours" holds at
  ``t`` when fewer than ``n`` recorded sends fall in ``(t - W, t]``. Defaults: e-mail 1 per 16 h,
  SMS 1 per 72 h, push 1 per 24 h (a push interrupts like an SMS but costs nothing, so a day rather than
  three), and 4 messages in total per 7 days (168 h).
* **Quiet hours** in the customer's local time (default 22:00-08:00): no send whose local hour lies in
  ``[start, end)``. A missing or unknown zone falls back to ``default_timezone`` and the answer says so.
* **Offer cooldown** (only for a message carrying an offer): no offer within ``offer_cooldown_hours``
  (default 72) after the previous offer, i.e. a cap of 1 per cooldown over offer-carrying sends.
  Messages without an offer are not held back by it.

``next_allowed_at`` is exact: starting from ``now``, each violated rule moves ``t`` to the earliest
instant at or after ``t`` where that rule alone holds (every instant skipped violates it), until all
hold at once; so the answer is allowed and no earlier instant is. Cap windows are half-open, so the
answer can be exactly a previous send plus the window.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.contract import Channel, Col, ConsentStatus
from features.errors import InputDataError, KairosError
from models.decisioning.sendtime import in_quiet, valid_zone

CHANNELS: tuple[str, ...] = tuple(c.value for c in Channel)
_MAX_STEPS = 10_000


class Cap(BaseModel):
    """At most ``max_messages`` sends in any ``per_hours`` window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_messages: int = Field(ge=1)
    per_hours: float = Field(gt=0)

    def label(self) -> str:
        return f"{self.max_messages} per {self.per_hours:g} h"


def _default_channel_caps() -> dict[str, list[Cap]]:
    return {
        Channel.EMAIL.value: [Cap(max_messages=1, per_hours=16)],
        Channel.SMS.value: [Cap(max_messages=1, per_hours=72)],
        Channel.PUSH.value: [Cap(max_messages=1, per_hours=24)],
    }


class PolicyConfig(BaseModel):
    """The contact policy's settings (see the module docstring for what each rule means).

    Attributes:
        channel_caps: Caps per channel (a channel absent here has no cap of its own).
        total_caps: Caps over all channels together.
        quiet_hours: Local ``(start, end)`` hours, wrapping midnight; None for no quiet hours.
        offer_cooldown_hours: Hours after an offer before the next offer; 0 for none.
        default_timezone: Zone for customers with a missing or unknown one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel_caps: dict[str, list[Cap]] = Field(default_factory=_default_channel_caps)
    total_caps: list[Cap] = Field(default_factory=lambda: [Cap(max_messages=4, per_hours=168)])
    quiet_hours: tuple[int, int] | None = (22, 8)
    offer_cooldown_hours: float = Field(default=72.0, ge=0)
    default_timezone: str = "UTC"

    @field_validator("channel_caps")
    @classmethod
    def _known_channels(cls, caps: dict[str, list[Cap]]) -> dict[str, list[Cap]]:
        unknown = sorted(set(caps) - set(CHANNELS))
        if unknown:
            raise ValueError(f"unknown channel(s) {unknown}; expected some of {list(CHANNELS)}")
        return caps

    @field_validator("quiet_hours")
    @classmethod
    def _hours(cls, quiet: tuple[int, int] | None) -> tuple[int, int] | None:
        if quiet is not None and not all(0 <= h <= 23 for h in quiet):
            raise ValueError(f"quiet hours must be in 0..23, got {quiet}")
        return quiet

    @model_validator(mode="after")
    def _zone(self) -> PolicyConfig:
        if not valid_zone(self.default_timezone):
            raise ValueError(f"default_timezone {self.default_timezone!r} is not an IANA time zone")
        return self

    def longest_window_hours(self) -> float:
        """The longest look-back any rule needs (how much send history a state must carry)."""
        windows = [c.per_hours for caps in self.channel_caps.values() for c in caps]
        windows += [c.per_hours for c in self.total_caps] + [self.offer_cooldown_hours]
        return max(windows, default=0.0)


@dataclass(frozen=True)
class ConsentEvent:
    """One consent record: ``status`` (opt_in / opt_out) on ``channel`` at ``at`` (UTC)."""

    channel: str
    status: str
    at: datetime


@dataclass(frozen=True)
class SendRecord:
    """One message sent (or scheduled) to the customer."""

    channel: str
    at: datetime
    with_offer: bool = False


@dataclass(frozen=True)
class ContactState:
    """What the policy needs to know about one customer.

    Attributes:
        customer_key: The customer (pseudonymous key).
        consents: Every consent record known (any order).
        sends: Recent sends (at least the policy's longest window back), any order.
        timezone: IANA zone; None or unknown -> the policy's default zone.
    """

    customer_key: str
    consents: tuple[ConsentEvent, ...] = ()
    sends: tuple[SendRecord, ...] = ()
    timezone: str | None = None

    def consent(self, channel: str, now: datetime) -> str | None:
        """The status in force on ``channel`` at ``now`` (None: no record); an opt-out wins a tie."""
        latest: tuple[datetime, int] | None = None
        status: str | None = None
        for event in self.consents:
            if event.channel != channel or event.at > now:
                continue
            rank = (event.at, 1 if event.status == ConsentStatus.OPT_OUT else 0)
            if latest is None or rank > latest:
                latest, status = rank, event.status
        return status

    def consented(self, now: datetime) -> frozenset[str]:
        """The channels with an opt-in in force at ``now``."""
        return frozenset(c for c in CHANNELS if self.consent(c, now) == ConsentStatus.OPT_IN)


@dataclass(frozen=True)
class Permission:
    """The policy's answer.

    Attributes:
        allowed: Whether a send now is allowed.
        reasons: Why not (empty when allowed), one entry per violated rule, in plain words.
        next_allowed_at: The earliest instant >= now where every rule holds (``now`` when allowed);
            None when consent is missing (never).
        timezone: The zone quiet hours were judged in.
        timezone_source: ``customer`` or ``default``.
    """

    allowed: bool
    reasons: list[str] = field(default_factory=list)
    next_allowed_at: datetime | None = None
    timezone: str = "UTC"
    timezone_source: str = "customer"


class _Window:
    """A cap over a sorted list of send instants: fewer than ``n`` in ``(t - W, t]``."""

    def __init__(self, times: list[datetime], cap: Cap, label: str) -> None:
        self.times = sorted(times)
        self.n = cap.max_messages
        self.width = timedelta(hours=cap.per_hours)
        self.label = label

    def count(self, t: datetime) -> int:
        return bisect.bisect_right(self.times, t) - bisect.bisect_right(self.times, t - self.width)

    def holds(self, t: datetime) -> bool:
        return self.count(t) < self.n

    def earliest(self, t: datetime) -> datetime:
        if self.holds(t):
            return t
        changes = sorted({s + self.width for s in self.times if s + self.width > t} | {s for s in self.times if s > t})
        for x in changes:
            if self.holds(x):
                return x
        raise AssertionError("a cap over finitely many sends always clears")  # pragma: no cover


class ContactPolicy:
    """Applies :class:`PolicyConfig` to a customer's :class:`ContactState`.

    Args:
        config: The settings (defaults as documented on :class:`PolicyConfig`).
    """

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()

    def _zone(self, state: ContactState) -> tuple[str, str]:
        if state.timezone is not None and valid_zone(state.timezone):
            return state.timezone, "customer"
        return self.config.default_timezone, "default"

    def may_contact(self, state: ContactState, channel: str, now: datetime, with_offer: bool = False) -> Permission:
        """Whether ``channel`` may carry a message to the customer at ``now``, and if not, when next.

        Raises:
            KairosError: unknown channel, or a naive ``now``.
        """
        if channel not in CHANNELS:
            raise KairosError(f"channel must be one of {list(CHANNELS)}, got {channel!r}")
        if now.tzinfo is None:
            raise KairosError("now must be timezone-aware")
        now = now.astimezone(UTC)
        zone, zone_source = self._zone(state)
        rules = self._windows(state, channel, with_offer)
        tz = ZoneInfo(zone)
        quiet = self.config.quiet_hours
        reasons = []
        status = state.consent(channel, now)
        if status != ConsentStatus.OPT_IN:
            reasons.append(f"consent: {'no consent record' if status is None else 'opted out'} on {channel}")
        reasons += [f"frequency cap: {w.label}" for w in rules if not w.holds(now)]
        if in_quiet(now.astimezone(tz).hour, quiet):
            assert quiet is not None
            reasons.append(f"quiet hours: {quiet[0]:02d}:00-{quiet[1]:02d}:00 local ({zone})")
        if not reasons:
            return Permission(True, [], now, zone, zone_source)
        return Permission(False, reasons, self._next(now, state, channel, rules, tz), zone, zone_source)

    def allowed_at(self, state: ContactState, channel: str, t: datetime, with_offer: bool = False) -> bool:
        """Whether every rule holds for a send at ``t`` (consent judged at ``t``)."""
        t = t.astimezone(UTC)
        if state.consent(channel, t) != ConsentStatus.OPT_IN:
            return False
        zone, _ = self._zone(state)
        if in_quiet(t.astimezone(ZoneInfo(zone)).hour, self.config.quiet_hours):
            return False
        return all(w.holds(t) for w in self._windows(state, channel, with_offer))

    def may_contact_batch(
        self,
        states: Sequence[ContactState],
        channels: str | Sequence[str],
        now: datetime,
        with_offer: bool | Sequence[bool] = False,
    ) -> pd.DataFrame:
        """:meth:`may_contact` for many customers; one row per input, in order.

        Returns:
            ``customer_key, channel, allowed, reasons, next_allowed_at, timezone, timezone_source``.
        """
        m = len(states)
        chans = [channels] * m if isinstance(channels, str) else list(channels)
        offers = [with_offer] * m if isinstance(with_offer, bool) else list(with_offer)
        if len(chans) != m or len(offers) != m:
            raise KairosError("channels and with_offer must be one value or one per state")
        rows = []
        for state, channel, offer in zip(states, chans, offers, strict=True):
            p = self.may_contact(state, channel, now, offer)
            rows.append(
                {
                    Col.CUSTOMER_KEY: state.customer_key,
                    Col.CHANNEL: channel,
                    "allowed": p.allowed,
                    "reasons": p.reasons,
                    "next_allowed_at": p.next_allowed_at,
                    "timezone": p.timezone,
                    "timezone_source": p.timezone_source,
                }
            )
        columns = [Col.CUSTOMER_KEY, Col.CHANNEL, "allowed", "reasons", "next_allowed_at", "timezone"]
        columns.append("timezone_source")
        frame = pd.DataFrame(rows, columns=columns)
        frame["next_allowed_at"] = pd.to_datetime(frame["next_allowed_at"], utc=True)
        return frame

    def _windows(self, state: ContactState, channel: str, with_offer: bool) -> list[_Window]:
        cfg = self.config
        same = [s.at.astimezone(UTC) for s in state.sends if s.channel == channel]
        every = [s.at.astimezone(UTC) for s in state.sends]
        rules = [_Window(same, cap, f"{channel} {cap.label()}") for cap in cfg.channel_caps.get(channel, [])]
        rules += [_Window(every, cap, f"all channels {cap.label()}") for cap in cfg.total_caps]
        if with_offer and cfg.offer_cooldown_hours > 0:
            offers = [s.at.astimezone(UTC) for s in state.sends if s.with_offer]
            cooldown = Cap(max_messages=1, per_hours=cfg.offer_cooldown_hours)
            rules.append(_Window(offers, cooldown, f"offer cooldown {cfg.offer_cooldown_hours:g} h"))
        return rules

    def _next(
        self, now: datetime, state: ContactState, channel: str, rules: list[_Window], tz: ZoneInfo
    ) -> datetime | None:
        t = now
        for _ in range(_MAX_STEPS):
            moved = False
            consent_from = _consent_from(state, channel, t)
            if consent_from is None:
                return None
            if consent_from > t:
                t, moved = consent_from, True
            for rule in rules:
                nxt = rule.earliest(t)
                if nxt > t:
                    t, moved = nxt, True
            nxt = _quiet_end(t, tz, self.config.quiet_hours)
            if nxt > t:
                t, moved = nxt, True
            if not moved:
                return t
        raise KairosError("next allowed time did not settle; the policy's rules may contradict each other")


def _consent_from(state: ContactState, channel: str, t: datetime) -> datetime | None:
    """The earliest instant >= ``t`` with an opt-in in force (records stamped after ``t`` included)."""
    if state.consent(channel, t) == ConsentStatus.OPT_IN:
        return t
    later = sorted({e.at.astimezone(UTC) for e in state.consents if e.channel == channel and e.at > t})
    for x in later:
        if state.consent(channel, x) == ConsentStatus.OPT_IN:
            return x
    return None


def _quiet_end(t: datetime, tz: ZoneInfo, quiet: tuple[int, int] | None) -> datetime:
    """The earliest instant >= ``t`` outside quiet hours."""
    local = t.astimezone(tz)
    if not in_quiet(local.hour, quiet):
        return t
    assert quiet is not None
    start, end = quiet
    day = local.date() + timedelta(days=1) if (start > end and local.hour >= start) else local.date()
    wall = datetime(day.year, day.month, day.day, end, tzinfo=tz)
    out = wall.astimezone(UTC)
    # the end hour may itself fall in a DST gap: the instant after the gap is then the first allowed one
    while in_quiet(out.astimezone(tz).hour, quiet):  # pragma: no cover - only in zones with odd gaps
        out += timedelta(minutes=1)
    return max(out, t)


# --- building states from the ingested tables (pure pandas) --------------------------------------


def _utc(frame: pd.DataFrame, name: str, column: str) -> pd.Series:
    values = pd.to_datetime(frame[column])
    if getattr(values.dt, "tz", None) is None:
        raise InputDataError(f"{name}.{column} must be timezone-aware (UTC instants)")
    if values.isna().any():
        raise InputDataError(f"{name}.{column} has {int(values.isna().sum())} missing value(s)")
    return values.dt.tz_convert("UTC")


def contact_states(
    consents: pd.DataFrame,
    messages: pd.DataFrame,
    timezones: Mapping[str, Any] | pd.Series | None,
    now: datetime,
    lookback_hours: float,
) -> dict[str, ContactState]:
    """One :class:`ContactState` per customer found in the consents, messages or time zones.

    Args:
        consents: ``customer_key, channel, status, consented_at`` (the ingested consents table).
        messages: ``customer_key, channel, sent_at, offer_id`` (the ingested messages table).
        timezones: Customer key -> IANA zone (or None).
        now: The time of asking; sends from ``now - lookback_hours`` on are kept (later ones too: scheduled).
        lookback_hours: How much send history to keep (``PolicyConfig.longest_window_hours()``).

    Raises:
        InputDataError: a required column is missing or holds invalid values.
    """
    for name, frame, cols in (
        ("consents", consents, (Col.CUSTOMER_KEY, Col.CHANNEL, Col.STATUS, Col.CONSENTED_AT)),
        ("messages", messages, (Col.CUSTOMER_KEY, Col.CHANNEL, Col.SENT_AT, Col.OFFER_ID)),
    ):
        missing = [c for c in cols if c not in frame]
        if missing:
            raise InputDataError(f"{name} lacks column(s) {missing}")
        if frame[Col.CUSTOMER_KEY].isna().any():
            raise InputDataError(f"{name}.{Col.CUSTOMER_KEY} has missing values")
        bad = ~frame[Col.CHANNEL].astype(object).isin(CHANNELS)
        if bad.any():
            raise InputDataError(f"{name}.{Col.CHANNEL} has value(s) outside {list(CHANNELS)}")
    statuses = {s.value for s in ConsentStatus}
    if (~consents[Col.STATUS].astype(object).isin(statuses)).any():
        raise InputDataError(f"consents.{Col.STATUS} has value(s) outside {sorted(statuses)}")
    if now.tzinfo is None:
        raise KairosError("now must be timezone-aware")
    cutoff = pd.Timestamp(now.astimezone(UTC)) - pd.Timedelta(hours=lookback_hours)

    consent_at = _utc(consents, "consents", Col.CONSENTED_AT)
    by_customer: dict[str, list[ConsentEvent]] = {}
    for key, channel, status, at in zip(
        consents[Col.CUSTOMER_KEY].astype(str),
        consents[Col.CHANNEL].astype(str),
        consents[Col.STATUS].astype(str),
        consent_at,
        strict=True,
    ):
        by_customer.setdefault(key, []).append(ConsentEvent(channel, status, at.to_pydatetime()))

    sent_at = _utc(messages, "messages", Col.SENT_AT)
    recent = (sent_at >= cutoff).to_numpy()
    sends: dict[str, list[SendRecord]] = {}
    offer = messages[Col.OFFER_ID].notna().to_numpy()
    keys = messages[Col.CUSTOMER_KEY].astype(str).to_numpy()
    chans = messages[Col.CHANNEL].astype(str).to_numpy()
    for i in np.flatnonzero(recent):
        sends.setdefault(keys[i], []).append(SendRecord(chans[i], sent_at.iloc[i].to_pydatetime(), bool(offer[i])))

    zones = {} if timezones is None else {str(k): v for k, v in dict(timezones).items()}
    everyone = set(by_customer) | set(np.unique(keys)) | set(zones)
    return {
        key: ContactState(
            customer_key=key,
            consents=tuple(by_customer.get(key, ())),
            sends=tuple(sends.get(key, ())),
            timezone=_zone_or_none(zones.get(key)),
        )
        for key in sorted(everyone)
    }


def _zone_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def consented_channels(states: Iterable[ContactState], now: datetime) -> dict[str, frozenset[str]]:
    """Customer key -> channels with an opt-in in force at ``now`` (for :class:`ChannelPreference`)."""
    now = now.astimezone(UTC)
    return {s.customer_key: s.consented(now) for s in states}
