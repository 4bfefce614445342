"""Real-time updates: one customer's online profile moves with each event between two snapshots.

A snapshot is exact at its ``as_of``; events that happen after it (a view, a cart change, an order, an
e-mail opened, a consent withdrawn) change a few features long before the next snapshot. This module
defines the event, the per-customer state those events build up, and how that state turns into
feature values at a read time ``now``. Both online backends (:mod:`features.online`) use it, so they
give the same answers.

What is exact, and when (``now`` is the read time, ``as_of`` the snapshot's). The real-time features are
the definitions' features with a ``live`` rule (:class:`features.defs.common.Live`, listed in the catalogue);
events at or after ``now`` are ignored (the batch takes events strictly before its cutoff), and a read before
``as_of`` is refused (:class:`ReadTimeError`):

- window counts and sums (orders and spend in 30..365 days, views, add-to-carts and sessions in 1..30 days):
  recounted at ``now`` from the snapshot's own event times inside the longest window (:class:`History`, read
  from the ingested tables at load) and the events applied since, with the batch's test
  (``(now - t) / 86400 <= window``). Exact at any ``now``: an event leaves the window when it should.
- "days since" features (``last`` / ``first`` rules) are the latest / earliest applied event before ``now``,
  else the snapshot's value aged by ``now - as_of``. Exact at any ``now``; a first order ever also starts
  ``tenure_days``.
- lifetime counts and sums (``orders_lifetime``, ``views_lifetime``, ``monetary_lifetime``) and
  ``views_since_last_order``: the snapshot's value plus what was applied before ``now`` (reset by an order).
  An order is one order id, however many events its lines came in (amounts add up).
- ``cart_size``: added minus removed since the last order or checkout, floored at 0. Exact once the
  customer has ordered or checked out since the snapshot; before that the snapshot's (already floored)
  cart is the starting point, which differs from the batch only when more items were removed than added
  before the snapshot.
- consents: each channel keeps an append-only history of changes (event time, time received, granted,
  source); :func:`consent_in_force` decides from it (the rule is in ``docs/consent.md``): an opt-in counts
  only when it is later than every opt-out both by event time and by receipt, so an opt-out or unsubscribe
  takes effect from the next read on, whatever its timestamp (one dated before the snapshot included). An
  unsubscribe is an opt-out. Consent is not clocked: the whole history decides, whatever ``now``.
- every other feature is not moved by events: a "days since" one is aged, the rest keep the snapshot's
  value until the next snapshot (the catalogue says which).

A session is dated by the customer's first event in it (as in :mod:`features.defs.web`); sessions seen
in the two days before the snapshot are seeded as known, so a visit running over the snapshot time is
not counted twice.

Events before the snapshot's ``as_of`` are already in it and are ignored (except opt-outs and
unsubscribes: the snapshot may not hold one posted late, and it must take effect). At a newer snapshot's load
the consent histories are carried whole (:func:`carry_consents`: its export may lack what the API received),
the other events only from its ``as_of`` on. Events may arrive out of order: every rule above is computed
from the event times, not from arrival order. A click does not count as an open (the batch counts
``opened_at`` only). A customer first seen through an event starts from the fills (counts and consents 0,
"days since" null).
"""

from __future__ import annotations

import hashlib
import json
import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np

from features.contract import Channel, Col, ConsentRule, ConsentStatus, EventType
from features.definitions import FEATURES
from features.defs.common import SECONDS_PER_DAY, Feature
from features.errors import KairosError

_FIRST_AT = "first_at_"  # intermediate column of :func:`recent_sessions`
_KEEP_SECONDS = 2 * SECONDS_PER_DAY  # sessions under way this long before a snapshot are seeded as known

# The streams of events the real-time features read (``Live.stream`` in the definitions).
ORDER, VIEW, ADD_TO_CART, SESSION, VISIT, CHECKOUT = "order", "view", "add_to_cart", "session", "visit", "checkout"
OPEN_STREAM = "open_"  # + channel
CONSENT_PREFIX = "consent_"  # + channel: the consent features and their streams

# The real-time features: every feature whose definition says how events keep it exact (``Feature.live``).
LIVE_FEATURES: tuple[Feature, ...] = tuple(f for f in FEATURES if f.live is not None)
REALTIME_FEATURES: tuple[str, ...] = tuple(f.name for f in LIVE_FEATURES)
# The streams whose windows need the snapshot's own event times, and how far back (days).
_LONGEST: dict[str, float] = {}
for _f in LIVE_FEATURES:
    if _f.window_days is not None and _f.live is not None:
        _LONGEST[_f.live.stream] = max(_LONGEST.get(_f.live.stream, 0.0), float(_f.window_days))
HISTORY_STREAMS: tuple[str, ...] = tuple(sorted(_LONGEST))
WEIGHTED_STREAMS = frozenset(
    f.live.stream for f in LIVE_FEATURES if f.live is not None and f.live.rule == "sum" and f.window_days
)

# What a customer first seen through an event starts from (the definitions' fills: counts and consents 0,
# "days since" null).
REALTIME_FILLS: dict[str, float] = {f.name: f.fill for f in LIVE_FEATURES if f.fill is not None}


class InvalidEventError(KairosError, ValueError):
    """An event is malformed (no customer, a naive timestamp, a consent without a status, ...)."""


class EventKind(StrEnum):
    """What happened. The web kinds are the contract's ``web_events.event_type`` values."""

    VIEW = EventType.VIEW.value
    ADD_TO_CART = EventType.ADD_TO_CART.value
    REMOVE_FROM_CART = EventType.REMOVE_FROM_CART.value
    SEARCH = EventType.SEARCH.value
    CHECKOUT = EventType.CHECKOUT.value
    SESSION_START = "session_start"
    ORDER = "order"
    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"
    CONSENT = "consent"


# every web event type of the contract is a web kind (one missing from EventKind fails here, at import)
WEB_KINDS = frozenset({*(EventKind(t.value) for t in EventType), EventKind.SESSION_START})
CHANNEL_KINDS = frozenset({EventKind.OPEN, EventKind.CLICK, EventKind.UNSUBSCRIBE, EventKind.CONSENT})
CONSENT_KINDS = frozenset({EventKind.UNSUBSCRIBE, EventKind.CONSENT})  # carried as histories, not re-applied


@dataclass(frozen=True)
class Event:
    """One thing a customer did, as the online store receives it.

    Attributes:
        type: what happened (:class:`EventKind`, or its string value).
        timestamp: when, timezone-aware (stored as UTC).
        customer_key: Kairos's person id; or give ``customer_id`` (the retailer's record id).
        customer_id: the retailer's record id, resolved through the identity map.
        channel: email, sms or push: required for open, click, unsubscribe and consent.
        status: opt_in or opt_out: required for consent.
        session_id: the web session; its first event for a customer starts a visit.
        item_id: the item viewed or carted (kept for the log; no real-time feature uses it yet).
        event_id: a unique id for deduplication; derived from the content when absent.
        source: consent only: where and how the change was captured (e.g. ``web_form:newsletter``),
            kept in the consent history.
        received_at: when the service received it (its own clock; kept in the consent history). None for
            events replayed from the ingested tables: their event time stands in.
        order_id: order only: the order the event belongs to. An order is one order id, however many events
            (one per line, say) it comes in; without one, the event is an order of its own.
        amount: order only: the event's part of the order's amount (the order's amount is the sum over its
            events; none: 0, as the batch sums known amounts).
    """

    type: EventKind
    timestamp: datetime
    customer_key: str | None = None
    customer_id: str | None = None
    channel: Channel | None = None
    status: ConsentStatus | None = None
    session_id: str | None = None
    item_id: str | None = None
    event_id: str | None = None
    source: str | None = None
    received_at: datetime | None = None
    order_id: str | None = None
    amount: float | None = None

    def __post_init__(self) -> None:
        try:
            kind = EventKind(self.type)
            channel = Channel(self.channel) if self.channel is not None else None
            status = ConsentStatus(self.status) if self.status is not None else None
        except ValueError as exc:
            raise InvalidEventError(f"invalid event: {exc}") from exc
        if not self.customer_key and not self.customer_id:
            raise InvalidEventError(f"a {kind.value} event needs a customer_key or a customer_id")
        if not isinstance(self.timestamp, datetime) or self.timestamp.tzinfo is None:
            raise InvalidEventError(f"a {kind.value} event needs a timezone-aware timestamp, got {self.timestamp!r}")
        if kind in CHANNEL_KINDS and channel is None:
            raise InvalidEventError(f"a {kind.value} event needs a channel (email, sms or push)")
        if kind is EventKind.CONSENT and status is None:
            raise InvalidEventError("a consent event needs a status (opt_in or opt_out)")
        if (self.order_id is not None or self.amount is not None) and kind is not EventKind.ORDER:
            raise InvalidEventError(f"a {kind.value} event has no order_id or amount (only an order has)")
        if self.amount is not None and not math.isfinite(self.amount):
            raise InvalidEventError(f"an order's amount must be a finite number, got {self.amount!r}")
        if self.received_at is not None:
            if not isinstance(self.received_at, datetime) or self.received_at.tzinfo is None:
                raise InvalidEventError(f"a {kind.value} event's received_at needs a timezone")
            object.__setattr__(self, "received_at", self.received_at.astimezone(UTC))
        object.__setattr__(self, "type", kind)
        object.__setattr__(self, "channel", channel)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "timestamp", self.timestamp.astimezone(UTC))

    @property
    def ts(self) -> float:
        """The timestamp as epoch seconds."""
        return self.timestamp.timestamp()

    @property
    def received(self) -> float:
        """When it was received, epoch seconds (the event time when not stamped)."""
        return self.ts if self.received_at is None else self.received_at.timestamp()

    @property
    def withdraws_consent(self) -> bool:
        """An unsubscribe or an opt-out: it takes effect whatever its timestamp."""
        return self.type is EventKind.UNSUBSCRIBE or (
            self.type is EventKind.CONSENT and self.status is ConsentStatus.OPT_OUT
        )

    @property
    def id(self) -> str:
        """``event_id``, or a digest of the content (the same event sent twice gets the same id; neither
        ``source`` nor ``received_at`` is part of it, so a retry is a duplicate)."""
        if self.event_id:
            return self.event_id
        parts = (self.type, self.timestamp.isoformat(), self.customer_key, self.customer_id, self.channel)
        text = "|".join(str(p) for p in (*parts, self.status, self.session_id, self.item_id))
        if self.order_id is not None or self.amount is not None:  # ids of events without them are unchanged
            text += f"|{self.order_id}|{self.amount!r}"
        return "h:" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        data["timestamp"] = self.timestamp.isoformat()
        if self.received_at is not None:
            data["received_at"] = self.received_at.isoformat()
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        data = json.loads(text)
        data["timestamp"] = datetime.fromisoformat(data["timestamp"])
        if data.get("received_at") is not None:
            data["received_at"] = datetime.fromisoformat(data["received_at"])
        return cls(**data)


class ApplyResult(StrEnum):
    """What :func:`apply_event` did with an event."""

    APPLIED = "applied"
    CREATED = "created"  # the customer was not in the snapshot: a new row was started
    BEFORE_SNAPSHOT = "before_snapshot"  # already counted in the snapshot
    DUPLICATE = "duplicate"  # the same event id was applied before
    UNKNOWN_CUSTOMER = "unknown_customer"  # a customer_id the identity map does not know


class ConsentChange(NamedTuple):
    """One consent change of one channel, as the online store applied it (times are epoch seconds)."""

    at: float  # the event time (the caller's clock)
    received: float  # when the service received it (its clock's reading, for the audit; the order is the list's)
    granted: bool  # an opt-in; False: an opt-out or an unsubscribe
    source: str | None = None  # where and how an opt-in was captured


def consent_in_force(history: Sequence[ConsentChange]) -> bool:
    """Whether a channel may be contacted, from its consent history (oldest received first).

    The rule (``docs/consent.md``): the channel is contactable only when some opt-in is later than every
    opt-out both by event time and by time received; otherwise the opt-out wins, ties included. So an
    opt-out or unsubscribe takes effect from the next decision on whatever its timestamp, and an opt-in
    dated in the future cannot outlast a later opt-out. Receipt order is the history's order, the order the
    changes were applied in (each records its ``received`` clock reading too, but a clock stepped back or two
    changes read at the same instant cannot reorder the list). A history without any opt-out is contactable
    when it has an opt-in.
    An empty history decides nothing: the caller keeps the snapshot's value.
    """
    last_out = -1
    latest_out_at = -math.inf
    for i, change in enumerate(history):
        if not change.granted:
            last_out = i
            latest_out_at = max(latest_out_at, change.at)
    return any(c.granted and c.at > latest_out_at for c in history[last_out + 1 :])


def allowed_by_rule(history: Sequence[ConsentChange], rule: str) -> bool:
    """Whether a channel may be contacted under its consent rule (:class:`features.contract.ConsentRule`).

    ``opt_in``: only when the history puts an opt-in in force (:func:`consent_in_force`; an empty history
    allows nothing). ``opt_out``: unless an opt-out is on record, i.e. an empty history or one without any
    opt-out allows contact; after an opt-out only an opt-in later than it (:func:`consent_in_force`) does.
    Either way an opt-out in force forbids contact: consent stays a hard filter.
    """
    if rule == ConsentRule.OPT_OUT and all(change.granted for change in history):
        return True
    return consent_in_force(history)


def carried_history(history: Sequence[ConsentChange], snapshot: float | None, as_of: float) -> list[ConsentChange]:
    """What a newer snapshot (as-of ``as_of``, ``snapshot`` its value for the channel, None when it has no
    column) takes over of a channel's consent history from the version before (``docs/consent.md``).

    All of it, in receipt order, whatever the event times: the retailer's export the snapshot was built from
    may lack a change received through the API (an unsubscribe it never imported back), and a change lost at a
    load would undo it. Nothing only when the export has caught up: the snapshot says opt-out (0), the history
    decides closed too, and every change in it is dated before ``as_of`` (so the export could hold them all).
    From then on the export is authoritative again: a re-opt-in captured by the retailer and exported later
    re-opens the channel.
    """
    if not history:
        return []
    caught_up = snapshot == 0.0 and not consent_in_force(history) and all(c.at < as_of for c in history)
    return [] if caught_up else list(history)


def carry_consents(
    state: CustomerState,
    previous: Mapping[str, Sequence[ConsentChange]],
    snapshot: Mapping[str, float | None],
    as_of: float,
) -> dict[str, list[ConsentChange]]:
    """Carry a customer's consent histories from the version before (``previous``) into ``state``, the
    customer's state in a newer snapshot (in place); returns the carried history per channel (the channels
    carried only). ``snapshot``: the newer snapshot's value per channel (see :func:`carried_history`).

    Changes ``state`` already holds (applied to the newer version while it loaded) and ``previous`` lacks stay,
    after the carried ones: they were received later.
    """
    carried: dict[str, list[ConsentChange]] = {}
    for channel, history in previous.items():
        if not history:
            continue
        kept = carried_history(history, snapshot.get(channel), as_of)
        if kept:
            carried[channel] = kept
        unmatched = list(history)
        extra: list[ConsentChange] = []
        for change in state.consents.get(channel, ()):
            if change in unmatched:
                unmatched.remove(change)
            else:
                extra.append(change)
        merged = [*kept, *extra]
        if merged:
            state.consents[channel] = merged
        else:
            state.consents.pop(channel, None)
        state.latest = max([state.latest, *(c.at for c in kept if c.at >= as_of)])
    return carried


@dataclass
class CustomerState:
    """What events since the snapshot told about one customer (times are epoch seconds).

    Every event time is kept (per stream, sorted), so a read at any instant counts exactly the events before
    it: between two snapshots (a day, typically) that is a customer's day of events. JSON-serialisable
    through :meth:`to_json` (the Redis backend stores it per customer).
    """

    times: dict[str, list[float]] = field(default_factory=dict)  # stream -> sorted times (view, add_to_cart, ...)
    orders: dict[str, list[float]] = field(default_factory=dict)  # order id -> [earliest time, amount (sum)]
    cart_moves: list[tuple[float, int]] = field(default_factory=list)  # (time, +1 add / -1 remove)
    sessions: dict[str, float] = field(default_factory=dict)  # session id -> the customer's first event in it
    consents: dict[str, list[ConsentChange]] = field(default_factory=dict)  # channel -> history, append-only
    latest: float = -math.inf  # the latest event time seen

    def to_json(self) -> str:
        data = asdict(self)
        data["latest"] = None if math.isinf(self.latest) else self.latest
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> CustomerState:
        data = json.loads(text)
        if "times" not in data:
            return _from_earlier_format(data)
        data["cart_moves"] = [tuple(m) for m in data["cart_moves"]]
        data["consents"] = {ch: _history(v) for ch, v in data["consents"].items()}
        data["latest"] = -math.inf if data["latest"] is None else data["latest"]
        return cls(**data)

    def copy(self) -> CustomerState:
        return CustomerState(
            {s: list(t) for s, t in self.times.items()},
            {o: list(v) for o, v in self.orders.items()},
            list(self.cart_moves),
            dict(self.sessions),
            {ch: list(history) for ch, history in self.consents.items()},
            self.latest,
        )

    def order_times(self) -> list[float]:
        """The orders' times, sorted (an order is one order id, however many events its lines came in)."""
        return sorted(v[0] for v in self.orders.values())


def _from_earlier_format(data: dict[str, Any]) -> CustomerState:
    """A state stored before every event time was kept (Redis, until the next publish): what it knew.

    It kept the latest visit, checkout and open, every view, the add-to-carts of two days, the first and last
    order and an order count: the orders in between are placed at the last order's time (their amounts unknown).
    """
    times: dict[str, list[float]] = {}
    for stream, value in (("visit", data.get("last_visit")), ("checkout", data.get("last_checkout"))):
        if value is not None:
            times[stream] = [float(value)]
    for ch, t in (data.get("opens") or {}).items():
        times[f"open_{ch}"] = [float(t)]
    if data.get("view_times"):
        times["view"] = sorted(float(t) for t in data["view_times"])
    if data.get("add_times"):
        times["add_to_cart"] = sorted(float(t) for t in data["add_times"])
    orders: dict[str, list[float]] = {}
    first, last, n = data.get("first_order"), data.get("last_order"), int(data.get("orders") or 0)
    if n and first is not None and last is not None:
        stamps = [float(first), *([float(last)] * (n - 1))] if n > 1 else [float(last)]
        orders = {f"earlier:{i}": [t, 0.0] for i, t in enumerate(stamps)}
    return CustomerState(
        times,
        orders,
        [(float(t), int(d)) for t, d in data.get("cart_moves") or []],
        dict(data.get("sessions") or {}),
        {ch: _history(v) for ch, v in (data.get("consents") or {}).items()},
        -math.inf if data.get("latest") is None else float(data["latest"]),
    )


def _history(stored: list[Any]) -> list[ConsentChange]:
    """A channel's history as stored; the format before histories, one ``[time, 1.0 / 0.0]`` pair, reads as
    one change received at its event time (the only time it kept)."""
    if len(stored) == 2 and all(isinstance(v, int | float) for v in stored):
        return [ConsentChange(float(stored[0]), float(stored[0]), bool(stored[1]))]
    return [ConsentChange(float(at), float(got), bool(granted), source) for at, got, granted, source in stored]


def _min(a: float | None, b: float) -> float:
    return b if a is None or b < a else a


def seeded_state(sessions: Mapping[str, float]) -> CustomerState:
    """A state that only knows the customer's sessions already under way before the snapshot."""
    return CustomerState(sessions=dict(sessions))


def _add_time(state: CustomerState, stream: str, t: float) -> None:
    insort(state.times.setdefault(stream, []), t)


def apply(state: CustomerState, event: Event, as_of: float) -> bool:
    """Fold ``event`` into ``state`` (in place). False when the event is before ``as_of`` (in the snapshot),
    except an opt-out or unsubscribe: the snapshot may not hold it, and withdrawing consent always counts."""
    t = event.ts
    if t < as_of:
        if not event.withdraws_consent:
            return False
        _record_consent(state, event)  # only the consent: every other feature is the snapshot's
        return True
    kind = event.type
    state.latest = max(state.latest, t)
    if kind in WEB_KINDS:
        _add_time(state, VISIT, t)
        session = event.session_id or (event.id if kind is EventKind.SESSION_START else None)
        if session is not None:
            state.sessions[session] = _min(state.sessions.get(session), t)
        if kind is EventKind.VIEW:
            _add_time(state, VIEW, t)
        elif kind is EventKind.ADD_TO_CART:
            _add_time(state, ADD_TO_CART, t)
            state.cart_moves.append((t, 1))
        elif kind is EventKind.REMOVE_FROM_CART:
            state.cart_moves.append((t, -1))
        elif kind is EventKind.CHECKOUT:
            _add_time(state, CHECKOUT, t)
    elif kind is EventKind.ORDER:
        # One order is one order id: its lines may come as several events (their amounts add up).
        order = state.orders.setdefault(event.order_id or event.id, [t, 0.0])
        order[0] = min(order[0], t)
        if event.amount is not None:
            order[1] += event.amount
    elif kind is EventKind.OPEN:
        assert event.channel is not None
        _add_time(state, f"{OPEN_STREAM}{event.channel.value}", t)
    elif kind in (EventKind.UNSUBSCRIBE, EventKind.CONSENT):
        _record_consent(state, event)
    return True


def _record_consent(state: CustomerState, event: Event) -> None:
    """Append the change to its channel's history; :func:`consent_in_force` decides from the whole of it."""
    assert event.channel is not None
    granted = event.type is EventKind.CONSENT and event.status is ConsentStatus.OPT_IN
    change = ConsentChange(event.ts, event.received, granted, event.source if granted else None)
    state.consents.setdefault(event.channel.value, []).append(change)


# --- the snapshot's own event times: what ages the windows ---------------------------------------------


@dataclass(frozen=True)
class Stream:
    """One stream's event times per row, in CSR form: row ``r``'s times are ``times[offsets[r]:offsets[r+1]]``
    (sorted), with their ``weights`` (order amounts; None: each event counts 1)."""

    offsets: np.ndarray  # int64, rows + 1
    times: np.ndarray  # float64
    weights: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.offsets) - 1

    def take(self, rows: np.ndarray) -> Stream:
        """The segments of ``rows`` (positions; -1 or past the end: empty), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        inside = (rows >= 0) & (rows < self.rows)
        safe = np.where(inside, rows, 0)
        starts = np.where(inside, self.offsets[safe], 0)
        lengths = np.where(inside, self.offsets[safe + 1] - starts, 0)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        if total == 0:
            empty = np.empty(0)
            return Stream(offsets, empty, empty if self.weights is not None else None)
        index = np.repeat(starts - offsets[:-1], lengths) + np.arange(total)
        return Stream(offsets, self.times[index], self.weights[index] if self.weights is not None else None)

    def window(self, now: float, days: float, weighted: bool = False) -> np.ndarray:
        """Per row: how many events (``weighted``: their weights' sum) lie in the ``days`` before ``now``, the
        batch's test (``(now - t) / 86400 <= days``, events before ``now``)."""
        return self.windows(now, np.array([days]), np.array([weighted]))[0]

    def windows_of(self, rows: Sequence[int], now: float, spans: np.ndarray, weighted: np.ndarray) -> np.ndarray:
        """:meth:`windows` of a few ``rows`` (positions; -1 or past the end: none), without gathering them first:
        per event in plain Python (the same float test), each sum by the same NumPy reduction over the row's
        events as :meth:`windows` makes, so both give the same bits."""
        out = np.zeros((len(spans), len(rows)))
        offsets, times, weights = self.offsets, self.times, self.weights
        span_list, sums = spans.tolist(), weighted.tolist()
        for j, r in enumerate(rows):
            if r < 0 or r >= len(offsets) - 1:
                continue
            lo, hi = int(offsets[r]), int(offsets[r + 1])
            if lo == hi:
                continue
            ts = times[lo:hi].tolist()
            ages = [((now - t) / SECONDS_PER_DAY, t < now) for t in ts]
            for k, span in enumerate(span_list):
                inside = [before and age <= span for age, before in ages]
                if sums[k] and weights is not None:
                    out[k, j] = np.add.reduce(np.where(inside, weights[lo:hi], 0.0))
                else:
                    out[k, j] = float(sum(inside))
        return out

    def windows(self, now: float, spans: np.ndarray, weighted: np.ndarray) -> np.ndarray:
        """:meth:`window` for several windows at once: (windows, rows), one pass over the events."""
        out = np.zeros((len(spans), self.rows))
        if not len(self.times):
            return out
        age = (now - self.times) / SECONDS_PER_DAY
        values = ((age[None, :] <= spans[:, None]) & (self.times < now)[None, :]).astype(np.float64)
        if self.weights is not None and weighted.any():
            values[weighted] *= self.weights[None, :]
        starts, ends = self.offsets[:-1], self.offsets[1:]
        used = ends > starts
        if used.any():
            out[:, used] = np.add.reduceat(values, starts[used], axis=1)
        return out


@dataclass(frozen=True)
class History:
    """The snapshot's events still inside a real-time window at its as-of, per stream (row-aligned with the
    store's matrix). What lets a window count drop the events that leave it as the read time moves on."""

    streams: dict[str, Stream]

    def take(self, rows: np.ndarray) -> History:
        return History({name: s.take(rows) for name, s in self.streams.items()})

    def pack(self, row: int) -> bytes:
        """One row as bytes (the Redis backend keeps it per customer): per stream in :data:`HISTORY_STREAMS`
        order its event count (int32), then the times (float64), then the weights of a weighted stream."""
        head, body = [], []
        for name in HISTORY_STREAMS:
            s = self.streams.get(name)
            if s is None:
                head.append(0)
                continue
            lo, hi = int(s.offsets[row]), int(s.offsets[row + 1])
            head.append(hi - lo)
            body.append(s.times[lo:hi].tobytes())
            if s.weights is not None:
                body.append(s.weights[lo:hi].tobytes())
        return np.asarray(head, dtype=np.int32).tobytes() + b"".join(body)

    @classmethod
    def unpack(cls, blobs: Sequence[bytes | None]) -> History:
        """The rows :meth:`pack` wrote (None: a row without history), in order."""
        n_streams = len(HISTORY_STREAMS)
        counts = np.zeros((len(blobs), n_streams), dtype=np.int64)
        parts: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {s: ([], []) for s in HISTORY_STREAMS}
        for r, blob in enumerate(blobs):
            if not blob:
                continue
            head = np.frombuffer(blob, dtype=np.int32, count=n_streams)
            counts[r] = head
            at = 4 * n_streams
            for j, name in enumerate(HISTORY_STREAMS):
                k = int(head[j])
                if not k:
                    continue
                parts[name][0].append(np.frombuffer(blob, dtype=np.float64, count=k, offset=at))
                at += 8 * k
                if name in WEIGHTED_STREAMS:
                    parts[name][1].append(np.frombuffer(blob, dtype=np.float64, count=k, offset=at))
                    at += 8 * k
        streams = {}
        for j, name in enumerate(HISTORY_STREAMS):
            offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
            np.cumsum(counts[:, j], out=offsets[1:])
            times, weights = parts[name]
            t = np.concatenate(times) if times else np.empty(0)
            w = (np.concatenate(weights) if weights else np.empty(0)) if name in WEIGHTED_STREAMS else None
            streams[name] = Stream(offsets, t, w)
        return cls(streams)


def empty_history(rows: int) -> History:
    """A history in which no row has any event (a store without one: its windows count new events only)."""
    offsets = np.zeros(rows + 1, dtype=np.int64)
    return History(
        {s: Stream(offsets, np.empty(0), np.empty(0) if s in WEIGHTED_STREAMS else None) for s in HISTORY_STREAMS}
    )


def snapshot_history(tables: Mapping[str, Any], as_of: datetime, keys: Sequence[str]) -> History:
    """Per customer of ``keys`` (in that order), the times of the events before ``as_of`` that a real-time
    window still holds at ``as_of`` (orders with their amounts; views, add-to-carts and sessions), read from
    the ingested tables with the batch's own definitions of each event."""
    import ibis

    from features.defs.orders import orders_before
    from features.defs.web import events_before, visits

    cutoff = ibis.timestamp(as_of)
    lo = ibis.timestamp(
        datetime.fromtimestamp(as_of.timestamp() - (max(_LONGEST.values(), default=0) + 1) * SECONDS_PER_DAY, UTC)
    )
    sources: dict[str, Any] = {}
    if "orders" in tables and ORDER in _LONGEST:
        o = orders_before(dict(tables), cutoff)
        amount = o[Col.AMOUNT].cast("float64").fill_null(0.0) if Col.AMOUNT in o.columns else ibis.literal(0.0)
        sources[ORDER] = o.select(Col.CUSTOMER_KEY, t_=o[Col.ORDERED_AT], w_=amount)
    if "web_events" in tables:
        ev = events_before(dict(tables), cutoff)
        for stream, kind in ((VIEW, EventType.VIEW), (ADD_TO_CART, EventType.ADD_TO_CART)):
            if stream in _LONGEST:
                part = ev.filter(ev[Col.EVENT_TYPE] == kind.value)
                sources[stream] = part.select(Col.CUSTOMER_KEY, t_=part[Col.OCCURRED_AT])
        if SESSION in _LONGEST:
            v = visits(dict(tables), cutoff)
            sources[SESSION] = v.select(Col.CUSTOMER_KEY, t_=v["first_at"])
    position = {k: i for i, k in enumerate(keys)}
    streams: dict[str, Stream] = {}
    for name in HISTORY_STREAMS:
        source = sources.get(name)
        weighted = name in WEIGHTED_STREAMS
        if source is None:
            streams[name] = empty_history(len(keys)).streams[name]
            continue
        frame = source.filter(source["t_"] >= lo).execute()
        rows = frame[Col.CUSTOMER_KEY].astype(str).map(position)
        frame = frame.assign(r_=rows).dropna(subset=["r_"])  # customers outside ``keys``: not in this store
        t = frame["t_"].map(lambda x: x.timestamp()).to_numpy(np.float64) if len(frame) else np.empty(0)
        r = frame["r_"].to_numpy(np.int64)
        order = np.lexsort((t, r))
        offsets = np.zeros(len(keys) + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=len(keys)), out=offsets[1:])
        weights = frame["w_"].to_numpy(np.float64)[order] if weighted else None
        streams[name] = Stream(offsets, t[order], weights)
    return History(streams)


# --- reading: the features at an instant -----------------------------------------------------------------


class Overlay:
    """Turns snapshot rows, the snapshot's history and customer states into feature values at a read time.

    Built once per store from its feature names and ``as_of``; only the real-time features present in
    the store are written.

    Args:
        feature_names: the store's numeric features, in matrix order.
        ages: the names of "days since" features (aged between snapshots).
        as_of: the snapshot's as-of time, epoch seconds.
    """

    def __init__(self, feature_names: Sequence[str], ages: Iterable[str], as_of: float) -> None:
        self.as_of = as_of
        col = {n: i for i, n in enumerate(feature_names)}
        self.ages_idx = np.array([col[n] for n in ages if n in col], dtype=np.intp)
        self.live = [(col[f.name], f) for f in LIVE_FEATURES if f.name in col]
        self.windows = [(i, f) for i, f in self.live if f.window_days is not None]
        # per stream: its window columns, their spans (days) and which sum amounts (one pass per stream)
        grouped: dict[str, list[tuple[int, float, bool]]] = {}
        for i, f in self.windows:
            assert f.live is not None and f.window_days is not None
            grouped.setdefault(f.live.stream, []).append((i, float(f.window_days), f.live.rule == "sum"))
        self._by_stream = {
            s: (
                np.array([c for c, _, _ in g], dtype=np.intp),
                np.array([w for _, w, _ in g]),
                np.array([x for *_, x in g]),
            )
            for s, g in grouped.items()
        }
        self.covered = tuple(f.name for _, f in self.live)

    def check(self, now: float) -> None:
        """A read before the snapshot's as-of cannot be answered: the snapshot already holds later events."""
        if now < self.as_of:
            raise ReadTimeError(
                f"the read time {datetime.fromtimestamp(now, UTC).isoformat()} is before the online store's "
                f"snapshot ({datetime.fromtimestamp(self.as_of, UTC).isoformat()}): it cannot answer for an "
                "earlier instant"
            )

    def at(
        self,
        values: np.ndarray,
        history: History | None,
        states: Sequence[tuple[int, CustomerState]],
        now: float,
        rows: Sequence[int] | None = None,
    ) -> None:
        """Bring ``values`` (snapshot rows, in place; ``history`` aligned with them, or its rows ``rows``) to
        ``now``: "days since" features aged, every window recounted from the snapshot's events and ``states``
        (row position, state) applied with their events before ``now`` only. Without a ``history`` the windows
        keep the snapshot's counts (not aged) and add the new events."""
        self.check(now)
        delta = (now - self.as_of) / SECONDS_PER_DAY
        if delta != 0.0 and len(self.ages_idx):
            values[:, self.ages_idx] = (values[:, self.ages_idx].astype(np.float64) + delta).astype(np.float32)
        counted: dict[int, np.ndarray] = {}  # float64: new events are added before the float32 rounding
        streams = history.streams if history is not None else {}
        for name, (cols, spans, weighted) in self._by_stream.items() if history is not None else ():
            stream = streams.get(name)
            if stream is None:
                continue
            if rows is None:
                recounted = stream.windows(now, spans, weighted)
                known = ~np.isnan(values[:, cols])  # a blank row (unknown id) stays blank
                values[:, cols] = np.where(known, recounted.T, values[:, cols])
            else:  # a few rows: element by element (NumPy's per-call cost would dominate)
                recounted = stream.windows_of(rows, now, spans, weighted)
                col_list = cols.tolist()
                for j, row in enumerate(values):
                    for k, c in enumerate(col_list):
                        if row[c] == row[c]:
                            row[c] = recounted[k, j]
            counted.update(zip(cols.tolist(), recounted, strict=True))
        for pos, state in states:
            self._one(values[pos], state, now, {i: float(c[pos]) for i, c in counted.items()})

    def _one(self, row: np.ndarray, state: CustomerState, now: float, recounted: Mapping[int, float]) -> None:
        before = {s: t[: bisect_left(t, now)] for s, t in state.times.items()}
        orders = [(t, a) for t, a in state.orders.values() if t < now]
        order_times = sorted(t for t, _ in orders)
        last_order = order_times[-1] if order_times else None
        last_checkout = before.get(CHECKOUT, [None])[-1] if before.get(CHECKOUT) else None
        sessions = sorted(t for t in state.sessions.values() if self.as_of <= t < now)
        for i, f in self.live:
            live = f.live
            assert live is not None
            rule, stream = live.rule, live.stream
            base = float(row[i])
            if i in recounted and base == base:
                base = recounted[i]
            if rule in ("count", "sum"):
                if stream == ORDER:
                    pairs = orders
                elif stream == SESSION:
                    pairs = [(t, 1.0) for t in sessions]
                else:
                    pairs = [(t, 1.0) for t in before.get(stream, ())]
                if f.window_days is not None:
                    lo = f.window_days
                    pairs = [(t, w) for t, w in pairs if (now - t) / SECONDS_PER_DAY <= lo]
                if not pairs:
                    continue
                added = float(len(pairs)) if rule == "count" else math.fsum(w for _, w in pairs)
                row[i] = added if base != base else base + added
            elif rule == "last":
                times = order_times if stream == ORDER else before.get(stream)
                if times:
                    row[i] = (now - times[-1]) / SECONDS_PER_DAY
            elif rule == "first":
                times = order_times if stream == ORDER else before.get(stream)
                if times and base != base:  # only a first event ever: a row with one only ages
                    row[i] = (now - times[0]) / SECONDS_PER_DAY
            elif rule == "since_last_order":
                views = before.get(VIEW, [])
                if last_order is not None:
                    row[i] = float(len(views) - bisect_right(views, last_order))
                elif views:
                    row[i] = len(views) if base != base else base + len(views)
            elif rule == "cart":
                reset = max((t for t in (last_order, last_checkout) if t is not None), default=None)
                moves = [d for t, d in state.cart_moves if t < now and (reset is None or t > reset)]
                if moves or reset is not None:
                    start = 0.0 if reset is not None or base != base else base
                    row[i] = max(0.0, start + sum(moves))
            elif rule == "consent":
                history = state.consents.get(stream[len(CONSENT_PREFIX) :])
                if history:  # not clocked: the rule of docs/consent.md over the whole history (an empty one
                    row[i] = 1.0 if consent_in_force(history) else 0.0  # keeps the snapshot's value)


class ReadTimeError(KairosError, ValueError):
    """A read at an instant the online store cannot answer for (before its snapshot's as-of)."""


# --- replay: events from the ingested tables --------------------------------------------------------


def _frame_events(frame: Any, kind: EventKind, at: str, **columns: str) -> Iterator[Event]:
    import pandas as pd

    for rec in frame.to_dict("records"):
        got = {name: str(rec[c]) for name, c in columns.items() if not pd.isna(rec[c])}
        amount = rec.get(Col.AMOUNT) if kind is EventKind.ORDER else None
        yield Event(
            kind,
            rec[at].to_pydatetime(),
            customer_key=str(rec[Col.CUSTOMER_KEY]),
            channel=Channel(got["channel"]) if "channel" in got else None,
            status=ConsentStatus(got["status"]) if "status" in got else None,
            session_id=got.get("session_id"),
            item_id=got.get("item_id"),
            event_id=f"{kind.value}:{got['event_id']}" if "event_id" in got else None,
            order_id=got.get("order_id"),
            amount=None if amount is None or pd.isna(amount) else float(amount),
        )


def events_from_tables(tables: dict[str, Any], start: datetime, end: datetime) -> list[Event]:
    """Every event of known customers in ``[start, end)`` from the ingested tables, in time order.

    Used to replay a period through :func:`apply` (backfill after an outage, the parity test). Orders
    come from :func:`features.defs.orders.orders_before`, so they are the ones the batch counts.
    """
    import ibis

    from features.defs.orders import orders_before

    lo, hi = ibis.timestamp(start), ibis.timestamp(end)
    events: list[Event] = []

    def between(t: Any, ts: str) -> Any:
        return t.filter(t[Col.CUSTOMER_KEY].notnull(), t[ts] >= lo, t[ts] < hi)

    if "orders" in tables:
        o = orders_before(tables, hi)
        amount = o[Col.AMOUNT].cast("float64") if Col.AMOUNT in o.columns else ibis.null("float64")
        o = o.filter(o[Col.ORDERED_AT] >= lo).select(Col.CUSTOMER_KEY, Col.ORDERED_AT, Col.ORDER_ID, amount=amount)
        events += _frame_events(
            o.execute(), EventKind.ORDER, Col.ORDERED_AT, event_id=Col.ORDER_ID, order_id=Col.ORDER_ID
        )
    if "web_events" in tables:
        w = between(tables["web_events"], Col.OCCURRED_AT).execute()
        for kind in (EventKind.VIEW, EventKind.ADD_TO_CART, EventKind.REMOVE_FROM_CART):
            part = w[w[Col.EVENT_TYPE] == kind.value]
            events += _frame_events(
                part, kind, Col.OCCURRED_AT, session_id=Col.SESSION_ID, item_id=Col.ITEM_ID, event_id=Col.EVENT_ID
            )
        for kind in (EventKind.SEARCH, EventKind.CHECKOUT):
            part = w[w[Col.EVENT_TYPE] == kind.value]
            events += _frame_events(part, kind, Col.OCCURRED_AT, session_id=Col.SESSION_ID, event_id=Col.EVENT_ID)
    if "messages" in tables:
        m = tables["messages"]
        for kind, ts in (
            (EventKind.OPEN, Col.OPENED_AT),
            (EventKind.CLICK, Col.CLICKED_AT),
            (EventKind.UNSUBSCRIBE, Col.UNSUBSCRIBED_AT),
        ):
            part = between(m, ts).select(Col.CUSTOMER_KEY, Col.CHANNEL, Col.MESSAGE_ID, ts).execute()
            events += _frame_events(part, kind, ts, channel=Col.CHANNEL, event_id=Col.MESSAGE_ID)
    if "consents" in tables:
        c = between(tables["consents"], Col.CONSENTED_AT)
        c = c.select(Col.CUSTOMER_KEY, Col.CHANNEL, Col.STATUS, Col.CONSENTED_AT).execute()
        events += _frame_events(c, EventKind.CONSENT, Col.CONSENTED_AT, channel=Col.CHANNEL, status=Col.STATUS)
    events.sort(key=lambda e: e.timestamp)
    return events


def recent_sessions(tables: Mapping[str, Any], as_of: datetime) -> dict[str, dict[str, float]]:
    """Sessions under way in the day before ``as_of``: customer_key -> {session_id: first event time}.

    Seeded into the online state so a visit running over the snapshot time is not counted as new.
    """
    import ibis

    if "web_events" not in tables:
        return {}
    ev = tables["web_events"]
    cutoff = ibis.timestamp(as_of)
    ev = ev.filter(
        ev[Col.CUSTOMER_KEY].notnull(),
        ev[Col.SESSION_ID].notnull(),
        ev[Col.OCCURRED_AT] < cutoff,
        ev[Col.OCCURRED_AT] >= ibis.timestamp(datetime.fromtimestamp(as_of.timestamp() - _KEEP_SECONDS, UTC)),
    )
    first = ev.group_by([Col.CUSTOMER_KEY, Col.SESSION_ID]).aggregate(**{_FIRST_AT: ev[Col.OCCURRED_AT].min()})
    frame = first.execute()
    out: dict[str, dict[str, float]] = {}
    for key, session, at in zip(frame[Col.CUSTOMER_KEY], frame[Col.SESSION_ID], frame[_FIRST_AT], strict=True):
        out.setdefault(str(key), {})[str(session)] = at.timestamp()
    return out
