"""Real-time updates: one customer's online profile moves with each event between two snapshots.

A snapshot is exact at its ``as_of``; events that happen after it (a view, a cart change, an order, an
e-mail opened, a consent withdrawn) change a few features long before the next snapshot. This module
defines the event, the per-customer state those events build up, and how that state turns into
feature values at a read time ``now``. Both online backends (:mod:`features.online`) use it, so they
give the same answers.

What is exact, and when (``now`` is the read time, ``as_of`` the snapshot's):

- "days since" features (``ages``) are kept as absolute times: an applied event sets the time, and a
  value inherited from the snapshot is aged by ``now - as_of``. Exact at any ``now``.
- lifetime counts (``orders_lifetime``, ``views_lifetime``) and ``views_since_last_order``: the
  snapshot's value plus what was applied (reset by an order). Exact at any ``now``. A first order
  ever also starts ``tenure_days``.
- ``cart_size``: added minus removed since the last order or checkout, floored at 0. Exact once the
  customer has ordered or checked out since the snapshot; before that the snapshot's (already floored)
  cart is the starting point, which differs from the batch only when more items were removed than added
  before the snapshot.
- consents: each channel keeps an append-only history of changes (event time, time received, granted,
  source); :func:`consent_in_force` decides from it (the rule is in ``docs/consent.md``): an opt-in counts
  only when it is later than every opt-out both by event time and by receipt, so an opt-out or unsubscribe
  takes effect from the next read on, whatever its timestamp (one dated before the snapshot included). An
  unsubscribe is an opt-out. Without reorderings (events received in time order) this is the batch's
  definition: the latest change by event time, an opt-out at the same instant wins.
- 1-day windows (``views_1d``, ``add_to_carts_1d``, ``sessions_1d``): events applied since the snapshot
  are counted exactly (by their own times). The snapshot's counts cover ``[as_of - 1 day, as_of)``
  without the event times, so they are kept while ``now < as_of + 1 day`` and dropped after: exact at
  ``as_of`` and from ``as_of + 1 day`` on, an upper bound in between. A session is dated by the
  customer's first event in it (as in :mod:`features.defs.web`); sessions seen in the two days before
  the snapshot are seeded as known, so a visit running over the snapshot time is not counted twice.

Events before the snapshot's ``as_of`` are already in it and are ignored (except opt-outs and
unsubscribes: the snapshot may not hold one posted late, and it must take effect). At a newer snapshot's load
the consent histories are carried whole (:func:`carry_consents`: its export may lack what the API received),
the other events only from its ``as_of`` on. An event at exactly ``now``
counts (the batch takes events strictly before its cutoff: they differ only for an event at that very
instant). Events may arrive out of order: every rule above is computed from the event times, not from
arrival order. A click does not count as an open (the batch counts ``opened_at`` only). A customer
first seen through an event starts from the fills (counts and consents 0, "days since" null).
"""

from __future__ import annotations

import hashlib
import json
import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np

from features.contract import Channel, Col, ConsentRule, ConsentStatus, EventType
from features.defs.common import SECONDS_PER_DAY
from features.errors import KairosError

WINDOW_DAYS = 1.0  # the short windows kept exact online
_WINDOW_SECONDS = WINDOW_DAYS * SECONDS_PER_DAY
_KEEP_SECONDS = 2 * SECONDS_PER_DAY  # window entries older than this (before the latest event) are pruned
_FIRST_AT = "first_at_"  # intermediate column of :func:`recent_sessions`
_FEW_PATCHES = 8  # up to this many patches per read, writing element by element is faster

# The features an event changes (names from the feature catalogue).
LAST_VISIT = "days_since_last_visit"
VIEWS_1D = "views_1d"
ADD_TO_CARTS_1D = "add_to_carts_1d"
SESSIONS_1D = "sessions_1d"
CART_SIZE = "cart_size"
VIEWS_LIFETIME = "views_lifetime"
VIEWS_SINCE_LAST_ORDER = "views_since_last_order"
RECENCY = "recency_days"
ORDERS_LIFETIME = "orders_lifetime"
TENURE = "tenure_days"
OPEN_PREFIX = "days_since_open_"
CONSENT_PREFIX = "consent_"

WINDOW_FEATURES = (VIEWS_1D, ADD_TO_CARTS_1D, SESSIONS_1D)
REALTIME_FEATURES: tuple[str, ...] = (
    LAST_VISIT,
    *WINDOW_FEATURES,
    CART_SIZE,
    VIEWS_LIFETIME,
    VIEWS_SINCE_LAST_ORDER,
    RECENCY,
    ORDERS_LIFETIME,
    TENURE,
    *(f"{OPEN_PREFIX}{ch.value}" for ch in Channel),
    *(f"{CONSENT_PREFIX}{ch.value}" for ch in Channel),
)

# What a customer first seen through an event starts from (counts and consents 0, "days since" null).
REALTIME_FILLS: dict[str, float] = {
    n: 0.0 for n in REALTIME_FEATURES if n not in (LAST_VISIT, RECENCY, TENURE) and not n.startswith(OPEN_PREFIX)
}


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

    JSON-serialisable through :meth:`to_json` (the Redis backend stores it per customer).
    """

    last_visit: float | None = None
    first_order: float | None = None
    last_order: float | None = None
    last_checkout: float | None = None
    orders: int = 0
    view_times: list[float] = field(default_factory=list)  # every view since the snapshot
    add_times: list[float] = field(default_factory=list)  # add_to_carts, pruned to the window
    cart_moves: list[tuple[float, int]] = field(default_factory=list)  # (time, +1 add / -1 remove)
    sessions: dict[str, float] = field(default_factory=dict)  # session id -> the customer's first event in it
    opens: dict[str, float] = field(default_factory=dict)  # channel -> latest open
    consents: dict[str, list[ConsentChange]] = field(default_factory=dict)  # channel -> history, append-only
    latest: float = -math.inf  # the latest event time seen

    def to_json(self) -> str:
        data = asdict(self)
        data["latest"] = None if math.isinf(self.latest) else self.latest
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> CustomerState:
        data = json.loads(text)
        data["cart_moves"] = [tuple(m) for m in data["cart_moves"]]
        data["consents"] = {ch: _history(v) for ch, v in data["consents"].items()}
        data["latest"] = -math.inf if data["latest"] is None else data["latest"]
        return cls(**data)

    def copy(self) -> CustomerState:
        return CustomerState(
            self.last_visit,
            self.first_order,
            self.last_order,
            self.last_checkout,
            self.orders,
            list(self.view_times),
            list(self.add_times),
            list(self.cart_moves),
            dict(self.sessions),
            dict(self.opens),
            {ch: list(history) for ch, history in self.consents.items()},
            self.latest,
        )


def _history(stored: list[Any]) -> list[ConsentChange]:
    """A channel's history as stored; the format before histories, one ``[time, 1.0 / 0.0]`` pair, reads as
    one change received at its event time (the only time it kept)."""
    if len(stored) == 2 and all(isinstance(v, int | float) for v in stored):
        return [ConsentChange(float(stored[0]), float(stored[0]), bool(stored[1]))]
    return [ConsentChange(float(at), float(got), bool(granted), source) for at, got, granted, source in stored]


def _max(a: float | None, b: float) -> float:
    return b if a is None or b > a else a


def _min(a: float | None, b: float) -> float:
    return b if a is None or b < a else a


def seeded_state(sessions: Mapping[str, float]) -> CustomerState:
    """A state that only knows the customer's sessions already under way before the snapshot."""
    return CustomerState(sessions=dict(sessions))


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
        state.last_visit = _max(state.last_visit, t)
        session = event.session_id or (event.id if kind is EventKind.SESSION_START else None)
        if session is not None:
            state.sessions[session] = _min(state.sessions.get(session), t)
        if kind is EventKind.VIEW:
            state.view_times.append(t)
        elif kind is EventKind.ADD_TO_CART:
            state.add_times.append(t)
            state.cart_moves.append((t, 1))
        elif kind is EventKind.REMOVE_FROM_CART:
            state.cart_moves.append((t, -1))
        elif kind is EventKind.CHECKOUT:
            state.last_checkout = _max(state.last_checkout, t)
    elif kind is EventKind.ORDER:
        state.orders += 1
        state.first_order = _min(state.first_order, t)
        state.last_order = _max(state.last_order, t)
    elif kind is EventKind.OPEN:
        assert event.channel is not None
        state.opens[event.channel.value] = _max(state.opens.get(event.channel.value), t)
    elif kind in (EventKind.UNSUBSCRIBE, EventKind.CONSENT):
        _record_consent(state, event)
    _prune(state)
    return True


def _record_consent(state: CustomerState, event: Event) -> None:
    """Append the change to its channel's history; :func:`consent_in_force` decides from the whole of it."""
    assert event.channel is not None
    granted = event.type is EventKind.CONSENT and event.status is ConsentStatus.OPT_IN
    change = ConsentChange(event.ts, event.received, granted, event.source if granted else None)
    state.consents.setdefault(event.channel.value, []).append(change)


def _prune(state: CustomerState) -> None:
    """Drop window entries no read near the latest event can need (counts since the snapshot stay)."""
    horizon = state.latest - _KEEP_SECONDS
    if state.add_times and state.add_times[0] < horizon:
        state.add_times = [t for t in state.add_times if t >= horizon]
    reset = _cart_reset(state)
    if reset is not None and state.cart_moves and state.cart_moves[0][0] <= reset:
        state.cart_moves = [m for m in state.cart_moves if m[0] > reset]


def _cart_reset(state: CustomerState) -> float | None:
    if state.last_order is None:
        return state.last_checkout
    if state.last_checkout is None:
        return state.last_order
    return max(state.last_order, state.last_checkout)


class Overlay:
    """Turns snapshot rows and customer states into feature values at a read time.

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
        self.window_idx = np.array([col[n] for n in WINDOW_FEATURES if n in col], dtype=np.intp)
        self._col = col
        self.covered = tuple(n for n in REALTIME_FEATURES if n in col)

    def age(self, values: np.ndarray, now: float) -> None:
        """Age the snapshot values in ``values`` (rows of the matrix, in place) to ``now``."""
        delta = (now - self.as_of) / SECONDS_PER_DAY
        if delta != 0.0 and len(self.ages_idx):
            values[:, self.ages_idx] = (values[:, self.ages_idx].astype(np.float64) + delta).astype(np.float32)
        if now - self.as_of >= _WINDOW_SECONDS and len(self.window_idx):
            values[:, self.window_idx] = 0.0  # the snapshot's 1-day events have all left the window

    def compile(self, state: CustomerState) -> Patch:
        """What ``state`` does to a row, as column operations (computed once per state, read many times)."""
        col = self._col
        sets: list[tuple[int, float]] = []
        adds: list[tuple[int, float]] = []
        since: list[tuple[int, float]] = []
        windows: list[tuple[int, tuple[float, ...]]] = []

        def add(name: str, value: float, into: list[tuple[int, float]]) -> None:
            i = col.get(name)
            if i is not None:
                into.append((i, value))

        if state.last_visit is not None:
            add(LAST_VISIT, state.last_visit, since)
        views = state.view_times
        started = tuple(sorted(t for t in state.sessions.values() if t >= self.as_of))
        for name, times in ((VIEWS_1D, views), (ADD_TO_CARTS_1D, state.add_times), (SESSIONS_1D, started)):
            if times and name in col:
                windows.append((col[name], tuple(sorted(times))))
        if views:
            add(VIEWS_LIFETIME, float(len(views)), adds)
        tenure: tuple[int, float] | None = None
        if state.last_order is not None:
            last = state.last_order
            add(RECENCY, last, since)
            add(ORDERS_LIFETIME, float(state.orders), adds)
            add(VIEWS_SINCE_LAST_ORDER, float(sum(1 for t in views if t > last)), sets)
            if TENURE in col and state.first_order is not None:
                tenure = (col[TENURE], state.first_order)  # only for a first order ever (the row has none)
        elif views:
            add(VIEWS_SINCE_LAST_ORDER, float(len(views)), adds)
        cart: tuple[int, float, bool] | None = None
        reset = _cart_reset(state)
        if CART_SIZE in col and (state.cart_moves or reset is not None):
            net = float(sum(d for t, d in state.cart_moves if reset is None or t > reset))
            cart = (col[CART_SIZE], net, reset is not None)
        for ch, t in state.opens.items():
            add(f"{OPEN_PREFIX}{ch}", t, since)
        for ch, history in state.consents.items():
            if history:  # an empty one keeps the snapshot's value
                add(f"{CONSENT_PREFIX}{ch}", 1.0 if consent_in_force(history) else 0.0, sets)
        return Patch(
            tuple(c for c, _ in sets),
            tuple(v for _, v in sets),
            tuple(c for c, _ in adds),
            tuple(v for _, v in adds),
            tuple(c for c, _ in since),
            tuple(t for _, t in since),
            tuple(windows),
            tenure,
            cart,
        )


@dataclass(frozen=True)
class Patch:
    """One customer's real-time overrides, ready to apply to an aged row at any read time.

    ``set_*``: columns set to a value; ``add_*``: values added to the snapshot's count; ``since_*``:
    event times of "days since" columns; ``windows``: (column, sorted event times) counted over the
    day before the read; ``tenure``: (column, first order) used only when the row has never ordered;
    ``cart``: (column, net items, restarted since the snapshot), floored at 0.
    """

    set_cols: tuple[int, ...]
    set_vals: tuple[float, ...]
    add_cols: tuple[int, ...]
    add_vals: tuple[float, ...]
    since_cols: tuple[int, ...]
    since_times: tuple[float, ...]
    windows: tuple[tuple[int, tuple[float, ...]], ...]
    tenure: tuple[int, float] | None
    cart: tuple[int, float, bool] | None


def write_patches(values: np.ndarray, positions: Sequence[int], patches: Sequence[Patch], now: float) -> None:
    """Apply ``patches[k]`` to row ``positions[k]`` of ``values`` (aged snapshot rows) at read time ``now``.

    A few patches are written element by element; more are gathered into a few vectorised assignments.
    """
    if len(patches) <= _FEW_PATCHES:
        for pos, p in zip(positions, patches, strict=True):
            _write_one(values[pos], p, now)
        return
    set_r: list[int] = []
    set_c: list[int] = []
    set_v: list[float] = []
    add_r: list[int] = []
    add_c: list[int] = []
    add_v: list[float] = []
    since_r: list[int] = []
    since_c: list[int] = []
    since_t: list[float] = []
    lo = now - _WINDOW_SECONDS
    cart_r: list[int] = []
    cart_c: list[int] = []
    cart_net: list[float] = []
    cart_keep: list[float] = []
    for pos, p in zip(positions, patches, strict=True):
        if p.set_cols:
            set_r += [pos] * len(p.set_cols)
            set_c += p.set_cols
            set_v += p.set_vals
        if p.add_cols:
            add_r += [pos] * len(p.add_cols)
            add_c += p.add_cols
            add_v += p.add_vals
        if p.since_cols:
            since_r += [pos] * len(p.since_cols)
            since_c += p.since_cols
            since_t += p.since_times
        for col, times in p.windows:
            # inside the window: now - 1 day <= t <= now (the batch's "age <= 1 day")
            add_r.append(pos)
            add_c.append(col)
            add_v.append(float(bisect_right(times, now) - bisect_left(times, lo)))
        if p.tenure is not None and math.isnan(values[pos, p.tenure[0]]):
            values[pos, p.tenure[0]] = (now - p.tenure[1]) / SECONDS_PER_DAY
        if p.cart is not None:
            cart_r.append(pos)
            cart_c.append(p.cart[0])
            cart_net.append(p.cart[1])
            cart_keep.append(0.0 if p.cart[2] else 1.0)
    if set_r:
        values[set_r, set_c] = set_v
    if add_r:
        values[add_r, add_c] = _counts(values[add_r, add_c]) + add_v
    if since_r:
        values[since_r, since_c] = (now - np.asarray(since_t)) / SECONDS_PER_DAY
    if cart_r:
        base = _counts(values[cart_r, cart_c]) * cart_keep
        values[cart_r, cart_c] = np.maximum(0.0, base + cart_net)


def _write_one(row: np.ndarray, p: Patch, now: float) -> None:
    for i, value in zip(p.set_cols, p.set_vals, strict=True):
        row[i] = value
    for i, value in zip(p.add_cols, p.add_vals, strict=True):
        base = float(row[i])
        row[i] = value if base != base else base + value
    for i, t in zip(p.since_cols, p.since_times, strict=True):
        row[i] = (now - t) / SECONDS_PER_DAY
    for i, times in p.windows:
        base = float(row[i])
        count = bisect_right(times, now) - bisect_left(times, now - _WINDOW_SECONDS)
        row[i] = count if base != base else base + count
    if p.tenure is not None and math.isnan(row[p.tenure[0]]):
        row[p.tenure[0]] = (now - p.tenure[1]) / SECONDS_PER_DAY
    if p.cart is not None:
        i, net, restarted = p.cart
        base = 0.0 if restarted or math.isnan(row[i]) else float(row[i])
        row[i] = max(0.0, base + net)


def _counts(values: np.ndarray) -> np.ndarray:
    """Snapshot counts as float64, 0 where the row has none (cheaper than ``np.nan_to_num``)."""
    out = values.astype(np.float64)
    out[np.isnan(out)] = 0.0
    return out


# --- replay: events from the ingested tables --------------------------------------------------------


def _frame_events(frame: Any, kind: EventKind, at: str, **columns: str) -> Iterator[Event]:
    import pandas as pd

    for rec in frame.to_dict("records"):
        got = {name: str(rec[c]) for name, c in columns.items() if not pd.isna(rec[c])}
        yield Event(
            kind,
            rec[at].to_pydatetime(),
            customer_key=str(rec[Col.CUSTOMER_KEY]),
            channel=Channel(got["channel"]) if "channel" in got else None,
            status=ConsentStatus(got["status"]) if "status" in got else None,
            session_id=got.get("session_id"),
            item_id=got.get("item_id"),
            event_id=f"{kind.value}:{got['event_id']}" if "event_id" in got else None,
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
        o = o.filter(o[Col.ORDERED_AT] >= lo).select(Col.CUSTOMER_KEY, Col.ORDERED_AT, Col.ORDER_ID)
        events += _frame_events(o.execute(), EventKind.ORDER, Col.ORDERED_AT, event_id=Col.ORDER_ID)
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
