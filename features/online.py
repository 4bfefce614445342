"""Online store: the latest feature snapshot, served per customer, kept current by real-time events.

One interface (:class:`OnlineStore`), two backends:

- :class:`InMemoryOnlineStore` (the default): the snapshot as one contiguous float32 matrix with an
  id -> row index. A lookup of 1, 100 or 10,000 customers is one vectorised gather.
- :class:`RedisOnlineStore` (several API replicas share one store): a packed float32 vector per
  customer under a versioned key prefix. A new snapshot is written beside the old one and a pointer
  switches to it atomically; every call has a socket timeout, and any Redis failure is raised as
  :class:`OnlineStoreUnavailable` so the API can degrade instead of failing.

Both report a missing customer as missing (row -1, NaN values), never as zeros, and know each row's
age (days since the snapshot it comes from), so a reader can treat stale rows as missing
(``max_age_days``). Ids may be Kairos's ``customer_key`` or the retailer's ``customer_id``.

Reads happen at an instant ``now`` (one clock, docs/features.md): "days since" features are aged from the
snapshot's ``as_of`` to ``now``, every real-time window is recounted at ``now`` from the snapshot's own event
times (:class:`features.realtime.History`) and the events applied since the snapshot
(:func:`OnlineStore.apply_event`, rules in :mod:`features.realtime`), and events at or after ``now`` are
ignored. Without ``now`` a read is at the server's clock, never at the latest event seen. A read before the
snapshot's ``as_of`` raises :class:`features.realtime.ReadTimeError`.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from features.contract import Col
from features.defs.common import SECONDS_PER_DAY
from features.errors import DataNotFoundError, KairosError
from features.identity import KEY_PREFIX
from features.ingest import IDENTITY_MAP_FILE
from features.realtime import (
    CONSENT_KINDS,
    CONSENT_PREFIX,
    HISTORY_STREAMS,
    REALTIME_FILLS,
    ApplyResult,
    ConsentChange,
    CustomerState,
    Event,
    EventKind,
    History,
    Overlay,
    ReadTimeError,
    apply,
    carry_consents,
    recent_sessions,
    seeded_state,
    snapshot_history,
)
from features.store import Snapshot, ingested_dir, latest_snapshot, open_tables

__all__ = [
    "InMemoryOnlineStore",
    "Lookup",
    "OnlineStore",
    "OnlineStoreUnavailable",
    "ReadTimeError",
    "RecentEvents",
    "RedisOnlineStore",
    "SnapshotParts",
    "load_in_memory",
    "publish_to_redis",
    "snapshot_parts",
]


class OnlineStoreUnavailable(KairosError):
    """The online store cannot answer now (Redis down, slow or refusing): serve a degraded answer."""


@dataclass(frozen=True)
class Lookup:
    """The result of a batch lookup, in request order.

    Attributes:
        keys: customer_key per requested id, None when unknown.
        rows: the store row per id (Redis: the position in the request); -1 when unknown or stale.
        values: float32 (n, n_features); NaN rows for unknown or stale ids.
        age_days: days from the snapshot the row comes from to ``now``; NaN when unknown.
        stale: known, but older than the ``max_age_days`` asked for, hence reported as missing.
        now: the read time the values are for.
        strings: the string features asked for (``strings=True``), None where unknown.
    """

    keys: list[str | None]
    rows: np.ndarray
    values: np.ndarray
    age_days: np.ndarray
    stale: np.ndarray
    now: datetime | None = None
    strings: dict[str, list[str | None]] = field(default_factory=dict)

    @property
    def found(self) -> np.ndarray:
        """True where the id has a usable row (known and not stale)."""
        return self.rows >= 0


# The events that name an item (and the checkout, which closes a cart): what recommendations fold in.
ITEM_EVENT_KINDS = frozenset(
    {EventKind.VIEW, EventKind.ADD_TO_CART, EventKind.REMOVE_FROM_CART, EventKind.ORDER, EventKind.CHECKOUT}
)
_FEW_ROWS = 16  # up to this many rows a lookup recounts the windows row by row (no gather)
MAX_RECENT_EVENTS = 500  # per customer and read: the latest ones (a read stays bounded whatever a client posts)


@dataclass(frozen=True)
class RecentEvents:
    """One customer's item events applied since the snapshot, and the store's clock (what a recommender folds in).

    Attributes:
        events: views, add-to-carts, removals, orders and checkouts at or after the snapshot's as-of, in time
            order (ties in the order received), at most :data:`MAX_RECENT_EVENTS` (the latest).
        clock: the data's clock: the snapshot's as-of, or the latest event applied (any customer's) when later.
            Never the server's wall clock. None for a store without an as-of.
    """

    events: list[Event]
    clock: datetime | None


def _item_events(logged: Sequence[Event], as_of: float | None) -> list[Event]:
    """The logged events a recommender folds in (see :class:`RecentEvents`)."""
    start = -math.inf if as_of is None else as_of
    kept = [
        e
        for e in logged
        if e.type in ITEM_EVENT_KINDS and e.ts >= start and (e.item_id or e.type is EventKind.CHECKOUT)
    ]
    kept.sort(key=lambda e: (e.ts, e.received))
    return kept[-MAX_RECENT_EVENTS:]


class OnlineStore(Protocol):
    """What both backends offer."""

    @property
    def feature_names(self) -> list[str]: ...

    def __len__(self) -> int: ...

    def lookup(
        self,
        ids: Sequence[str],
        now: datetime | None = None,
        max_age_days: float | None = None,
        strings: bool = False,
    ) -> Lookup: ...

    def apply_event(self, event: Event) -> ApplyResult: ...

    def recent_events(self, key: str) -> RecentEvents: ...


def _epoch(t: datetime) -> float:
    if t.tzinfo is None:
        raise ValueError(f"a timezone-aware time is needed, got {t!r}")
    return t.timestamp()


def _finish(
    keys: list[str | None],
    rows: np.ndarray,
    values: np.ndarray,
    as_of: float | None,
    now: float | None,
    max_age_days: float | None,
) -> Lookup:
    """Blank the unknown rows, compute ages and apply the staleness rule (every row has the same as-of)."""
    missing = rows < 0
    any_missing = bool(missing.any())
    delta = math.nan if as_of is None or now is None else (now - as_of) / SECONDS_PER_DAY
    age = np.full(len(rows), delta)
    if any_missing:
        age[missing] = np.nan
    if max_age_days is not None and delta > max_age_days:
        stale = ~missing
        rows = np.full(len(rows), -1, dtype=np.int64)
        values[:] = np.nan
    else:
        stale = np.zeros(len(rows), dtype=bool)
        if any_missing:
            values[missing] = np.nan
    when = datetime.fromtimestamp(now, UTC) if now is not None else None
    return Lookup(keys, rows, values, age, stale, when)


def _default_fills(names: Sequence[str]) -> dict[str, float]:
    """Values for a customer first seen through an event: the definitions' fills (counts 0), else NaN."""
    from features.definitions import FEATURES

    fills = {**REALTIME_FILLS, **{f.name: f.fill for f in FEATURES if f.fill is not None}}
    return {n: float(fills.get(n, math.nan)) for n in names}


# --- in-process backend -------------------------------------------------------------------------------


class InMemoryOnlineStore:
    """In-process feature store built from one snapshot, with real-time events applied on top.

    The snapshot matrix is never modified; events live in per-customer states (copied on write, so a
    concurrent lookup sees a customer either before or after an event). Customers first seen through an
    event get a new row of fills.

    Args:
        features: the snapshot frame (``customer_key`` + feature columns).
        feature_names: the numeric feature columns, in the order the matrix keeps them.
        aliases: source customer id -> customer_key (identity map), so either id finds the row.
        as_of: the snapshot's as-of time (the age of every row); None disables ageing and events.
        ages: the "days since" features among ``feature_names`` (aged between snapshots).
        fills: values for rows started by an event (default: NaN, counts 0).
        string_names: string feature columns of ``features`` kept beside the matrix.
        sessions: customer_key -> {session_id: first event time} under way before ``as_of``.
        history: the snapshot's event times the real-time windows need, row-aligned with ``features``
            (:func:`features.realtime.snapshot_history`); None: the windows keep the snapshot's counts and add
            the new events (not aged: what a store built without the ingested tables can do).
    """

    def __init__(
        self,
        features: pd.DataFrame,
        feature_names: Sequence[str],
        aliases: Mapping[str, str] | None = None,
        as_of: datetime | None = None,
        *,
        ages: Sequence[str] = (),
        fills: Mapping[str, float] | None = None,
        string_names: Sequence[str] = (),
        sessions: Mapping[str, Mapping[str, float]] | None = None,
        history: History | None = None,
    ) -> None:
        self.feature_names = list(feature_names)
        self.string_names = list(string_names)
        self.as_of = as_of
        self._as_of = _epoch(as_of) if as_of is not None else None
        keys = features[Col.CUSTOMER_KEY].astype(str).tolist()
        matrix = np.ascontiguousarray(features[self.feature_names].to_numpy(np.float32))
        self._matrix = matrix
        self._n = len(keys)
        self._index: dict[str, int] = {k: i for i, k in enumerate(keys)}
        self._keys = keys
        self._aliases = dict(aliases or {})
        # One dict for both kinds of id: a lookup is one pass (a customer_key wins over a source id).
        self._ids: dict[str, int] = {cid: self._index[k] for cid, k in self._aliases.items() if k in self._index}
        self._ids.update(self._index)
        self._strings = {n: features[n].astype(object).where(features[n].notna(), None).tolist() for n in string_names}
        fill_map = dict(fills) if fills is not None else _default_fills(self.feature_names)
        self._fill_row = np.array([fill_map.get(n, math.nan) for n in self.feature_names], dtype=np.float32)
        self._overlay = Overlay(self.feature_names, ages, self._as_of) if self._as_of is not None else None
        self._history = history
        self._states: dict[int, CustomerState] = {}
        self._has_patch = np.zeros(len(keys), dtype=bool)  # rows with a state (events since the snapshot)
        self._log: dict[int, dict[str, Event]] = {}
        self._clock = self._as_of
        self._lock = threading.Lock()
        for key, known in (sessions or {}).items():
            row = self._index.get(key)
            if row is not None:
                self._states[row] = seeded_state(known)

    def __len__(self) -> int:
        return self._n

    @property
    def realtime_features(self) -> tuple[str, ...]:
        """The real-time features this store keeps current (those of its features that events change)."""
        return self._overlay.covered if self._overlay is not None else ()

    def _rows(self, ids: Sequence[str]) -> list[int]:
        get = self._ids.get
        rows = [get(i, -1) for i in ids]
        if -1 in rows:  # an alias of a customer first seen through an event
            index, aliases = self._index, self._aliases
            for j, r in enumerate(rows):
                if r < 0 and ids[j] in aliases:
                    rows[j] = index.get(aliases[ids[j]], -1)
        return rows

    @classmethod
    def from_parts(cls, parts: SnapshotParts) -> InMemoryOnlineStore:
        """The store for one snapshot, as read by :func:`snapshot_parts`."""
        return cls(
            parts.frame,
            parts.feature_names,
            parts.aliases,
            parts.as_of,
            ages=parts.ages,
            fills=parts.fills,
            string_names=parts.string_names,
            sessions=parts.sessions,
            history=parts.history,
        )

    def resolve(self, ids: Sequence[str]) -> list[str | None]:
        """customer_key per id (given as customer_key or source id), None when unknown."""
        keys = self._keys
        return [keys[r] if r >= 0 else None for r in self._rows(ids)]

    def lookup(
        self,
        ids: Sequence[str],
        now: datetime | None = None,
        max_age_days: float | None = None,
        strings: bool = False,
    ) -> Lookup:
        """Feature rows for ``ids`` in order, as of ``now``; unknown ids get row -1 and NaN values.

        Args:
            ids: customer_keys or source customer ids.
            now: the read time (default: the server's clock); events at or after it are ignored.
            max_age_days: rows whose snapshot is older than this at ``now`` are reported as missing.
            strings: also return the string features.
        """
        found = self._rows(ids)
        keys_all = self._keys
        keys: list[str | None] = [keys_all[r] if r >= 0 else None for r in found]
        rows = np.array(found, dtype=np.int64) if found else np.empty(0, dtype=np.int64)
        matrix, has_patch = self._matrix, self._has_patch  # taken after the ids: they cover every row found
        values = matrix[rows]  # -1 reads the last row; blanked below
        at: float | None = _epoch(now) if now is not None else (time.time() if self._as_of is not None else None)
        overlay = self._overlay
        if overlay is not None and at is not None:
            states = self._states
            positions = np.flatnonzero(has_patch[rows] & (rows >= 0)).tolist() if states else []
            changed = [(i, states[found[i]]) for i in positions]
            if self._history is not None and len(found) <= _FEW_ROWS:  # per row: cheaper than gathering
                overlay.at(values, self._history, changed, at, rows=found)
            else:
                overlay.at(values, self._history.take(rows) if self._history is not None else None, changed, at)
        out = _finish(keys, rows, values, self._as_of, at, max_age_days)
        if strings:
            for name in self.string_names:
                column = self._strings[name]
                out.strings[name] = [column[r] if 0 <= r < len(column) else None for r in out.rows.tolist()]
        return out

    def apply_event(self, event: Event) -> ApplyResult:
        """Fold one event into its customer's online profile (see :mod:`features.realtime`)."""
        if self._as_of is None or self._overlay is None:
            raise ValueError("this store has no as-of time: it cannot take events")
        if event.ts < self._as_of and not event.withdraws_consent:  # an opt-out counts whatever its time
            return ApplyResult.BEFORE_SNAPSHOT
        with self._lock:
            key = event.customer_key or self._aliases.get(event.customer_id or "")
            if key is None:
                return ApplyResult.UNKNOWN_CUSTOMER
            row = self._index.get(key)
            created = row is None
            if row is None:
                row = self._append(key)
            log = self._log.setdefault(row, {})
            if event.id in log:
                return ApplyResult.DUPLICATE
            state = self._states.get(row)
            state = state.copy() if state is not None else CustomerState()
            apply(state, event, self._as_of)
            log[event.id] = event
            self._states[row] = state
            self._has_patch[row] = True
            self._clock = max(self._clock or -math.inf, event.ts)
        return ApplyResult.CREATED if created else ApplyResult.APPLIED

    def recent_events(self, key: str) -> RecentEvents:
        """``key``'s item events since the snapshot and the store's clock (see :class:`RecentEvents`); no events
        for a customer_key the store does not hold (or no longer: an erasure drops the log)."""
        with self._lock:
            row = self._index.get(key)
            logged = list(self._log.get(row, {}).values()) if row is not None else []
            clock = self._clock
        when = datetime.fromtimestamp(clock, UTC) if clock is not None else None
        return RecentEvents(_item_events(logged, self._as_of), when)

    def consent_history(self, customer: str, channel: str) -> list[ConsentChange]:
        """The consent changes applied to ``customer``'s ``channel`` since the snapshot, oldest received first
        (empty when none: the snapshot's value holds). ``customer``: a customer_key or a source id."""
        row = self._rows([customer])[0]
        state = self._states.get(row) if row >= 0 else None
        return list(state.consents.get(channel, ())) if state is not None else []

    def _append(self, key: str) -> int:
        """A new row of fills for a customer first seen through an event (called under the lock)."""
        row = self._n
        if row >= len(self._matrix):
            grown = np.empty((max(16, 2 * len(self._matrix)), len(self.feature_names)), dtype=np.float32)
            grown[:row] = self._matrix[:row]
            flags = np.zeros(len(grown), dtype=bool)
            flags[:row] = self._has_patch[:row]
            self._matrix, self._has_patch = grown, flags
        self._matrix[row] = self._fill_row
        for column in self._strings.values():
            column.append(None)
        self._keys.append(key)
        self._n = row + 1
        self._index[key] = row
        self._ids[key] = row  # last: a lookup that finds the key finds its row in the matrix
        return row

    def erase(self, keys: Sequence[str], ids: Sequence[str] = ()) -> int:
        """Forget customers (an erasure): their rows' values, real-time state and events, and every source id
        that leads to them. Returns how many ids and rows were removed.

        A row is a position in the matrix, so it stays, blanked, and nothing leads to it any more.
        """
        gone = set(keys)
        removed = 0
        with self._lock:
            aliases = {cid for cid, k in self._aliases.items() if k in gone} | set(ids)
            for cid in aliases:
                removed += self._aliases.pop(cid, None) is not None
                self._ids.pop(cid, None)
            if gone and not self._matrix.flags.writeable:
                self._matrix = self._matrix.copy()
            for key in gone:
                row = self._index.pop(key, None)
                self._ids.pop(key, None)
                if row is None:
                    continue
                removed += 1
                self._matrix[row] = np.nan
                for column in self._strings.values():
                    column[row] = None
                self._keys[row] = ""
                self._states.pop(row, None)
                self._has_patch[row] = False
                self._log.pop(row, None)
        return removed

    def events_since(self, as_of: datetime) -> list[Event]:
        """Applied events at or after ``as_of``, in the order received (to carry them into a newer snapshot).

        Receipt order, not time order: re-applied, consent changes must keep the order that decides between
        them (:func:`features.realtime.consent_in_force`); every other rule reads the event times.
        """
        cut = _epoch(as_of)
        with self._lock:
            events = [e for log in self._log.values() for e in log.values() if e.ts >= cut]
        return sorted(events, key=lambda e: e.received)  # stable: one customer's log is in applied order

    def consent_histories(self) -> dict[str, tuple[dict[str, list[ConsentChange]], list[Event]]]:
        """customer_key -> (its non-empty consent histories by channel, its logged consent events), for the
        customers that have any (what :meth:`carry_over` carries)."""
        out: dict[str, tuple[dict[str, list[ConsentChange]], list[Event]]] = {}
        with self._lock:
            for row, state in self._states.items():
                histories = {ch: list(h) for ch, h in state.consents.items() if h}
                key = self._keys[row]
                if histories and key:
                    logged = [e for e in self._log.get(row, {}).values() if e.type in CONSENT_KINDS]
                    out[key] = (histories, logged)
        return out

    def carry_over(self, previous: InMemoryOnlineStore) -> int:
        """Take over what this (newer) snapshot does not contain from ``previous``; returns how many events and
        consent changes were carried.

        Every consent history whole (:func:`features.realtime.carry_consents`: the export may lack a change
        received through the API, whatever its date), and every other event at or after this as-of.
        """
        if self.as_of is None:
            return 0
        carried = 0
        for key, (histories, logged) in previous.consent_histories().items():
            carried += self._take_consents(key, histories, logged)
        for event in previous.events_since(self.as_of):
            if event.type not in CONSENT_KINDS:
                carried += self.apply_event(event) in (ApplyResult.APPLIED, ApplyResult.CREATED)
        return carried

    def _take_consents(self, key: str, histories: dict[str, list[ConsentChange]], logged: list[Event]) -> int:
        assert self._as_of is not None and self._overlay is not None
        with self._lock:
            row = self._index.get(key)
            values = self._matrix[row] if row is not None else self._fill_row
            col = {n: i for i, n in enumerate(self.feature_names)}
            snapshot = {
                ch: float(values[col[f"{CONSENT_PREFIX}{ch}"]]) if f"{CONSENT_PREFIX}{ch}" in col else None
                for ch in histories
            }
            state = self._states.get(row) if row is not None else None
            state = state.copy() if state is not None else CustomerState()
            carried = carry_consents(state, histories, snapshot, self._as_of)
            if not carried and row is None:
                return 0  # nothing to carry for a customer the snapshot does not hold
            if row is None:
                row = self._append(key)
            log = self._log.setdefault(row, {})
            for event in logged:  # a retry of a carried change stays a duplicate
                if event.channel is not None and event.channel.value in carried:
                    log.setdefault(event.id, event)
            self._states[row] = state
            self._has_patch[row] = True
            ahead = [c.at for h in carried.values() for c in h if c.at >= self._as_of]
            if ahead:
                self._clock = max(self._clock or -math.inf, *ahead)
            return sum(len(h) for h in carried.values())


# --- loading a snapshot -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotParts:
    """What an online store is built from: one snapshot with its manifest, the identity map, seeds."""

    frame: pd.DataFrame
    feature_names: list[str]
    ages: list[str]
    string_names: list[str]
    aliases: dict[str, str]
    as_of: datetime
    fills: dict[str, float]
    sessions: dict[str, dict[str, float]]
    history: History | None = None  # the snapshot's event times the windows need (row-aligned with ``frame``)


def snapshot_parts(data_home: Path, feature_names: Sequence[str] | None = None) -> tuple[SnapshotParts, Snapshot]:
    """Read the latest snapshot, its manifest, the identity map and the sessions under way at its as-of."""
    snap = latest_snapshot(data_home)
    frame = snap.read()
    manifest = snap.manifest["features"]
    names = list(feature_names or [f["name"] for f in manifest if f["dtype"] == "float32"])
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise KeyError(f"snapshot {snap.path.name} lacks feature(s) {missing}")
    ages = [f["name"] for f in manifest if f.get("ages") and f["name"] in names]
    string_names = [f["name"] for f in manifest if f["dtype"] == "string" and f["name"] in frame.columns]
    id_map = pd.read_parquet(ingested_dir(data_home) / IDENTITY_MAP_FILE)
    aliases = dict(zip(id_map[Col.CUSTOMER_ID].astype(str), id_map[Col.CUSTOMER_KEY].astype(str), strict=True))
    overlay = Overlay(names, ages, snap.as_of.timestamp())
    tables = open_tables(data_home) if overlay.windows else {}
    sessions = recent_sessions(tables, snap.as_of) if overlay.windows else {}
    keys = frame[Col.CUSTOMER_KEY].astype(str).tolist()
    history = snapshot_history(tables, snap.as_of, keys) if overlay.windows else None
    fills = _default_fills(names)
    parts = SnapshotParts(frame, names, ages, string_names, aliases, snap.as_of, fills, sessions, history)
    return parts, snap


def load_in_memory(data_home: Path, feature_names: list[str] | None = None) -> tuple[InMemoryOnlineStore, Snapshot]:
    """Build the in-process store from the latest snapshot and the identity map."""
    parts, snap = snapshot_parts(data_home, feature_names)
    store = InMemoryOnlineStore.from_parts(parts)
    return store, snap


# --- Redis backend --------------------------------------------------------------------------------------

_MAX_CLOCK = """
local c = tonumber(redis.call('GET', KEYS[1]) or '-1e300')
if tonumber(ARGV[1]) > c then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


@dataclass(frozen=True)
class _Version:
    """One published snapshot in Redis (immutable once published)."""

    number: int
    prefix: str  # "{prefix}:v{number}:"
    as_of: datetime
    feature_names: list[str]
    ages: list[str]
    string_names: list[str]
    fill_row: bytes
    overlay: Overlay
    history: bool  # published with the snapshot's event times (``h:`` keys): its windows are recounted

    @property
    def as_of_s(self) -> float:
        return self.as_of.timestamp()

    def key(self, kind: str, ident: str) -> str:
        return f"{self.prefix}{kind}:{ident}"


class RedisOnlineStore:
    """The online store in Redis, shared by several API replicas.

    Keys (``p`` = the prefix, ``v`` = a version)::

        p:current            the version readers use (switched atomically by one SET)
        p:loading            the version being published (events are written to it too)
        p:next               the version counter
        p:versions, p:retired  every version written / when each one was superseded
        p:v{v}:meta          JSON: as_of, feature names, ages, string names, rows
        p:v{v}:f:{key}       the customer's numeric features, packed float32, then (once events came)
                             the real-time state as JSON: one key, so one MGET reads a customer whole
        p:v{v}:s:{key}       the customer's string features, JSON
        p:v{v}:h:{key}       the snapshot's event times its real-time windows need (History.pack), when any
        p:v{v}:a:{id}        source customer id -> customer_key
        p:v{v}:log:{key}     the events applied to the customer (hash by event id: deduplication, carry-over)
        p:v{v}:clock, p:v{v}:rows  the latest event time, the row count

    A superseded version expires ``grace_seconds`` after the switch (readers cache the pointer for
    ``pointer_ttl`` seconds, far less), and :meth:`cleanup` removes what is left of older or abandoned
    versions. Use :meth:`connect` for a client with timeouts on every call and no retries. Any number
    of readers and event writers may share a prefix (an event is a WATCH/MULTI transaction on one
    customer's keys); run one publisher at a time.

    Args:
        client: a ``redis.Redis`` (bytes responses) whose socket timeouts bound every call.
        prefix: the key prefix (tests use a unique one).
        pointer_ttl: seconds a reader trusts its cached ``p:current``.
        grace_seconds: how long a superseded version stays readable.
        batch: keys per pipeline when publishing.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "kairos",
        *,
        pointer_ttl: float = 1.0,
        grace_seconds: int = 600,
        batch: int = 1000,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.pointer_ttl = pointer_ttl
        self.grace_seconds = grace_seconds
        self.batch = batch
        self._versions: dict[int, _Version] = {}
        self._current: tuple[float, _Version] | None = None
        self._max_clock = client.register_script(_MAX_CLOCK)

    @classmethod
    def connect(
        cls,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "kairos",
        *,
        timeout: float = 0.25,
        connect_timeout: float = 0.25,
        **kwargs: Any,
    ) -> RedisOnlineStore:
        """A store over a new client: ``timeout`` on every call, no retries (the caller degrades)."""
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )
        return cls(client, prefix, **kwargs)

    # -- keys and versions

    def _k(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise OnlineStoreUnavailable(f"online store (Redis) {what} failed: {type(exc).__name__}: {exc}") from exc

    def _version(self, number: int) -> _Version:
        known = self._versions.get(number)
        if known is not None:
            return known
        raw = self.client.get(self._k(f"v{number}:meta"))
        if raw is None:
            raise DataNotFoundError(f"online store version {number} under {self.prefix!r} has no metadata")
        meta = json.loads(raw)
        as_of = datetime.fromisoformat(meta["as_of"])
        names = meta["feature_names"]
        fill_row = np.array([meta["fills"].get(n, math.nan) for n in names], dtype=np.float32).tobytes()
        version = _Version(
            number,
            self._k(f"v{number}:"),
            as_of,
            names,
            meta["ages"],
            meta["string_names"],
            fill_row,
            Overlay(names, meta["ages"], as_of.timestamp()),
            meta.get("history") == list(HISTORY_STREAMS),
        )
        self._versions[number] = version
        return version

    def _current_version(self) -> _Version:
        cached = self._current
        if cached is not None and time.monotonic() - cached[0] < self.pointer_ttl:
            return cached[1]
        raw = self.client.get(self._k("current"))
        if raw is None:
            raise DataNotFoundError(f"no snapshot published to the online store under {self.prefix!r}")
        version = self._version(int(raw))
        self._current = (time.monotonic(), version)
        return version

    def current_version(self) -> int:
        """The version readers use now."""
        return self._call("read", self._current_version).number

    @property
    def feature_names(self) -> list[str]:
        return list(self._call("read", self._current_version).feature_names)

    @property
    def as_of(self) -> datetime:
        return self._call("read", self._current_version).as_of

    def __len__(self) -> int:
        version = self._call("read", self._current_version)
        return int(self._call("read", self.client.get, f"{version.prefix}rows") or 0)

    # -- publishing

    def publish(self, parts: SnapshotParts) -> int:
        """Write a snapshot as a new version beside the current one, then switch to it atomically.

        Consent histories are carried over whole, other events applied to the current version at or after the
        new as-of (:meth:`InMemoryOnlineStore.carry_over`); while the new version loads, new events are written
        to both. Returns the new version number.
        """
        return int(self._call("publish", self._publish, parts))

    def _publish(self, parts: SnapshotParts) -> int:
        r = self.client
        number = int(r.incr(self._k("next")))
        prefix = self._k(f"v{number}:")
        names = parts.feature_names
        meta = {
            "version": number,
            "as_of": parts.as_of.isoformat(),
            "feature_names": names,
            "ages": parts.ages,
            "string_names": parts.string_names,
            "fills": {n: v for n, v in parts.fills.items() if not math.isnan(v)},
            "rows": len(parts.frame),
            "published_at": datetime.now(UTC).isoformat(),
            "history": list(HISTORY_STREAMS) if parts.history is not None else None,
        }
        r.sadd(self._k("versions"), number)
        r.set(f"{prefix}meta", json.dumps(meta))
        r.set(self._k("loading"), number)
        keys = parts.frame[Col.CUSTOMER_KEY].astype(str).tolist()
        matrix = np.ascontiguousarray(parts.frame[names].to_numpy(np.float32))
        strings = parts.frame[parts.string_names].astype(object) if parts.string_names else None
        width = matrix.shape[1] * 4
        blob = matrix.tobytes()
        for lo in range(0, len(keys), self.batch):
            pipe = r.pipeline(transaction=False)
            for i in range(lo, min(lo + self.batch, len(keys))):
                pipe.set(f"{prefix}f:{keys[i]}", blob[i * width : (i + 1) * width])
            if strings is not None:
                chunk = strings.iloc[lo : lo + self.batch]
                for key, rec in zip(keys[lo : lo + self.batch], chunk.to_dict("records"), strict=True):
                    pipe.set(f"{prefix}s:{key}", json.dumps({k: (None if pd.isna(v) else v) for k, v in rec.items()}))
            pipe.execute()
        self._write_many(r, {f"{prefix}a:{cid}": key for cid, key in parts.aliases.items()})
        if parts.history is not None:
            history = parts.history
            used = np.zeros(len(keys), dtype=bool)
            for stream in history.streams.values():
                used |= np.diff(stream.offsets) > 0
            self._write_many(r, {f"{prefix}h:{keys[i]}": history.pack(i) for i in np.flatnonzero(used).tolist()})
        rows = {k: i for i, k in enumerate(keys)}
        seeds = {
            f"{prefix}f:{k}": blob[rows[k] * width : (rows[k] + 1) * width] + seeded_state(s).to_json().encode()
            for k, s in parts.sessions.items()
            if k in rows
        }
        self._write_many(r, seeds)
        r.set(f"{prefix}rows", len(keys))
        previous = r.get(self._k("current"))
        version = self._version(number)
        if previous is not None:
            self._carry_over(int(previous), version)
        pipe = r.pipeline(transaction=True)
        pipe.set(self._k("current"), number)
        pipe.delete(self._k("loading"))
        if previous is not None:
            pipe.hset(self._k("retired"), int(previous), time.time())
        pipe.execute()
        self._current = None
        if previous is not None:
            self._expire_version(int(previous), self.grace_seconds)
        self._cleanup()
        return number

    def _write_many(self, r: redis.Redis, items: Mapping[str, str | bytes]) -> None:
        pairs = list(items.items())
        for lo in range(0, len(pairs), self.batch):
            r.mset(dict(pairs[lo : lo + self.batch]))

    def _version_keys(self, number: int, kind: str = "") -> list[bytes]:
        found: list[bytes] = list(self.client.scan_iter(match=self._k(f"v{number}:{kind}*"), count=1000))
        return found

    def _carry_over(self, previous: int, version: _Version) -> int:
        """Carry what ``version`` (newer) does not contain from ``previous``: every consent history whole (see
        :meth:`InMemoryOnlineStore.carry_over`), every other logged event at or after ``version``'s as-of."""
        r = self.client
        events: list[Event] = []
        logs = self._version_keys(previous, "log:")
        width = 4 * len(self._version(previous).feature_names)
        old_prefix = self._k(f"v{previous}:")
        carried = 0
        for lo in range(0, len(logs), self.batch):
            chunk = [k.decode() for k in logs[lo : lo + self.batch]]
            pipe = r.pipeline(transaction=False)
            for key in chunk:
                pipe.hvals(key)
            for key in chunk:
                pipe.get(old_prefix + "f:" + key[len(old_prefix) + len("log:") :])
            replies = pipe.execute()
            for key, values, blob in zip(chunk, replies[: len(chunk)], replies[len(chunk) :], strict=True):
                logged = [Event.from_json(v) for v in values]
                events.extend(e for e in logged if e.type not in CONSENT_KINDS)
                if blob is None or len(blob) <= width:
                    continue
                histories = {ch: h for ch, h in CustomerState.from_json(blob[width:]).consents.items() if h}
                if histories:
                    customer = key[len(old_prefix) + len("log:") :]
                    consents = [e for e in logged if e.type in CONSENT_KINDS]
                    carried += self._take_consents(version, customer, histories, consents)
        # In receipt order (see InMemoryOnlineStore.events_since): consent changes keep the order that decides.
        events = sorted((e for e in events if e.ts >= version.as_of_s), key=lambda e: e.received)
        carried += sum(self._apply_to(version, e) in (ApplyResult.APPLIED, ApplyResult.CREATED) for e in events)
        return carried

    def _take_consents(
        self, version: _Version, key: str, histories: dict[str, list[ConsentChange]], logged: list[Event]
    ) -> int:
        """Carry one customer's consent histories into ``version`` (a WATCH transaction, like an event)."""
        f_key, log_key = version.key("f", key), version.key("log", key)
        names = version.feature_names
        width = 4 * len(names)
        with self.client.pipeline(transaction=True) as pipe:
            for _attempt in range(16):
                try:
                    pipe.watch(f_key, log_key)
                    current: Any = pipe.get(f_key)
                    exists = current is not None
                    vector = bytes(current[:width]) if current is not None else version.fill_row
                    values = np.frombuffer(vector, dtype=np.float32)
                    snapshot = {
                        ch: float(values[names.index(f"{CONSENT_PREFIX}{ch}")])
                        if f"{CONSENT_PREFIX}{ch}" in names
                        else None
                        for ch in histories
                    }
                    has_state = current is not None and len(current) > width
                    state = CustomerState.from_json(current[width:]) if has_state else CustomerState()
                    carried = carry_consents(state, histories, snapshot, version.as_of_s)
                    if not carried and not exists:
                        pipe.unwatch()
                        return 0  # nothing to carry for a customer the snapshot does not hold
                    pipe.multi()
                    pipe.set(f_key, vector + state.to_json().encode())
                    for event in logged:  # a retry of a carried change stays a duplicate
                        if event.channel is not None and event.channel.value in carried:
                            pipe.hsetnx(log_key, event.id, event.to_json())
                    if not exists:
                        pipe.incr(f"{version.prefix}rows")
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
            else:
                raise OnlineStoreUnavailable(f"online store (Redis): too much contention on customer {key}")
        ahead = [c.at for h in carried.values() for c in h if c.at >= version.as_of_s]
        if ahead:
            self._max_clock(keys=[f"{version.prefix}clock"], args=[repr(max(ahead))])
        return sum(len(h) for h in carried.values())

    def _expire_version(self, number: int, seconds: int) -> None:
        keys = self._version_keys(number)
        for lo in range(0, len(keys), self.batch):
            pipe = self.client.pipeline(transaction=False)
            for key in keys[lo : lo + self.batch]:
                pipe.expire(key, seconds)
            pipe.execute()

    def cleanup(self) -> list[int]:
        """Delete superseded versions past their grace period and abandoned loads; returns those removed."""
        return list(self._call("cleanup", self._cleanup))

    def _cleanup(self) -> list[int]:
        r = self.client
        current, loading = r.mget(self._k("current"), self._k("loading"))
        live = {int(v) for v in (current, loading) if v is not None}
        retired = {int(k): float(v) for k, v in r.hgetall(self._k("retired")).items()}
        removed = []
        for raw in r.smembers(self._k("versions")):
            number = int(raw)
            if number in live or (number in retired and time.time() - retired[number] < self.grace_seconds):
                continue  # serving, loading, or superseded but still within its grace period
            self._drop_version(number)
            removed.append(number)
        return removed

    def _drop_version(self, number: int) -> None:
        keys = self._version_keys(number)
        for lo in range(0, len(keys), self.batch):
            self.client.unlink(*keys[lo : lo + self.batch])
        self.client.srem(self._k("versions"), number)
        self.client.hdel(self._k("retired"), number)
        self._versions.pop(number, None)

    def drop_all(self) -> int:
        """Delete every key under this prefix (tests, decommissioning); returns how many."""

        def run() -> int:
            keys = list(self.client.scan_iter(match=f"{self.prefix}:*", count=1000))
            for lo in range(0, len(keys), self.batch):
                self.client.unlink(*keys[lo : lo + self.batch])
            self._versions.clear()
            self._current = None
            return len(keys)

        return int(self._call("cleanup", run))

    # -- erasure

    def erase(self, keys: Sequence[str], ids: Sequence[str] = ()) -> int:
        """Delete customers from every version (an erasure): features, strings, events and real-time state
        per key, the source-id aliases per id. Returns how many Redis keys were deleted.

        Raises:
            OnlineStoreUnavailable: Redis is down, slow or refused.
        """
        return int(self._call("erase", self._erase, list(keys), list(ids)))

    def _erase(self, keys: list[str], ids: list[str]) -> int:
        r = self.client
        numbers = {int(v) for v in r.smembers(self._k("versions"))}
        numbers |= {int(v) for v in r.mget(self._k("current"), self._k("loading")) if v is not None}
        removed = 0
        for number in sorted(numbers):
            prefix = self._k(f"v{number}:")
            pipe = r.pipeline(transaction=True)
            for key in keys:
                pipe.delete(f"{prefix}f:{key}")  # one reply per customer: the row count follows
                pipe.delete(f"{prefix}s:{key}", f"{prefix}log:{key}", f"{prefix}h:{key}")
            for cid in ids:
                pipe.delete(f"{prefix}a:{cid}")
            replies = [int(n) for n in pipe.execute()]
            rows = sum(replies[0 : 2 * len(keys) : 2])
            if rows and r.exists(f"{prefix}rows"):
                r.decrby(f"{prefix}rows", rows)
            removed += sum(replies)
        return removed

    # -- reading

    def lookup(
        self,
        ids: Sequence[str],
        now: datetime | None = None,
        max_age_days: float | None = None,
        strings: bool = False,
    ) -> Lookup:
        """Feature rows for ``ids`` in order (see :meth:`InMemoryOnlineStore.lookup`).

        One round trip when the ids are customer_keys (plus one when some are source ids).

        Raises:
            OnlineStoreUnavailable: Redis is down, slow (past the timeout) or refused.
            DataNotFoundError: nothing was published under this prefix.
        """
        return self._call("lookup", self._lookup, list(ids), now, max_age_days, strings)

    def _lookup(self, ids: list[str], now: datetime | None, max_age_days: float | None, strings: bool) -> Lookup:
        version = self._current_version()
        at = time.time() if now is None else _epoch(now)
        version.overlay.check(at)
        names, n, p = version.feature_names, len(ids), version.prefix
        width = 4 * len(names)
        keys: list[str | None] = [None] * n
        blobs: list[Any] = [None] * n
        hist: list[Any] = [None] * n
        with_history = version.history and bool(version.overlay.windows)
        if n:
            # Route each id by its form (customer_keys carry KEY_PREFIX); a miss is tried the other way.
            as_key = [i for i in range(n) if ids[i].startswith(KEY_PREFIX)]
            as_alias = [i for i in range(n) if not ids[i].startswith(KEY_PREFIX)]
            pipe = self.client.pipeline(transaction=False)
            if as_key:
                pipe.mget([f"{p}f:{ids[i]}" for i in as_key])
                if with_history:
                    pipe.mget([f"{p}h:{ids[i]}" for i in as_key])
            if as_alias:
                pipe.mget([f"{p}a:{ids[i]}" for i in as_alias])
            replies = pipe.execute()
            by_key = replies[0] if as_key else []
            by_key_hist = replies[1] if as_key and with_history else [None] * len(as_key)
            aliased = replies[-1] if as_alias else []
            retry_alias: list[int] = []
            retry_key: list[int] = []
            second: list[tuple[int, str]] = []
            for i, blob, h in zip(as_key, by_key, by_key_hist, strict=True):
                if blob is not None:
                    keys[i], blobs[i], hist[i] = ids[i], blob, h
                else:
                    retry_alias.append(i)
            for i, key in zip(as_alias, aliased, strict=True):
                if key is not None:
                    second.append((i, key.decode()))
                else:
                    retry_key.append(i)
            if retry_alias or retry_key:
                pipe = self.client.pipeline(transaction=False)
                if retry_alias:
                    pipe.mget([f"{p}a:{ids[i]}" for i in retry_alias])
                if retry_key:
                    pipe.mget([f"{p}f:{ids[i]}" for i in retry_key])
                again = pipe.execute()
                again_alias = again[0] if retry_alias else []
                again_key = again[-1] if retry_key else []
                second += [(i, k.decode()) for i, k in zip(retry_alias, again_alias, strict=True) if k is not None]
                for i, blob in zip(retry_key, again_key, strict=True):
                    if blob is not None:
                        keys[i], blobs[i] = ids[i], blob
                        second.append((i, ids[i]))  # its history still to fetch
            if second:
                pipe = self.client.pipeline(transaction=False)
                pipe.mget([f"{p}f:{k}" for _, k in second])
                if with_history:
                    pipe.mget([f"{p}h:{k}" for _, k in second])
                fetched = pipe.execute()
                got_hist = fetched[1] if with_history else [None] * len(second)
                for (i, key), blob, h in zip(second, fetched[0], got_hist, strict=True):
                    if blob is not None:
                        keys[i], blobs[i], hist[i] = key, blob, h
        found = [i for i in range(n) if blobs[i] is not None]
        rows = np.full(n, -1, dtype=np.int64)
        rows[found] = found
        values = np.full((n, len(names)), np.nan, dtype=np.float32)
        if found:
            packed = b"".join(blobs[i] if len(blobs[i]) == width else blobs[i][:width] for i in found)
            values[found] = np.frombuffer(packed, dtype=np.float32).reshape(-1, len(names))
        states = [(i, CustomerState.from_json(blobs[i][width:])) for i in found if len(blobs[i]) > width]
        history = History.unpack(hist) if with_history else None
        version.overlay.at(values, history, states, at)
        out = _finish(keys, rows, values, version.as_of_s, at, max_age_days)
        if strings and version.string_names:
            wanted = [(i, k) for i, k in enumerate(out.keys) if k is not None and out.rows[i] >= 0]
            raw_strings = self.client.mget([f"{p}s:{k}" for _, k in wanted]) if wanted else []
            cols: dict[str, list[str | None]] = {s: [None] * n for s in version.string_names}
            for (i, _), raw in zip(wanted, raw_strings, strict=True):
                if raw is not None:
                    for name, value in json.loads(raw).items():
                        if name in cols:
                            cols[name][i] = value
            out.strings.update(cols)
        return out

    # -- events

    def consent_history(self, customer: str, channel: str) -> list[ConsentChange]:
        """The consent changes applied to ``customer``'s ``channel`` in the current version, oldest received
        first (see :meth:`InMemoryOnlineStore.consent_history`)."""
        return list(self._call("consent_history", self._consent_history, customer, channel))

    def _consent_history(self, customer: str, channel: str) -> list[ConsentChange]:
        version = self._current_version()
        key = customer
        if not customer.startswith(KEY_PREFIX):
            raw = self.client.get(version.key("a", customer))
            key = raw.decode() if isinstance(raw, bytes) else customer
        blob = self.client.get(version.key("f", key))
        width = 4 * len(version.feature_names)
        if blob is None or len(blob) <= width:
            return []
        return list(CustomerState.from_json(blob[width:]).consents.get(channel, ()))

    def recent_events(self, key: str) -> RecentEvents:
        """``key``'s item events in the current version and its clock, in one round trip (see
        :meth:`InMemoryOnlineStore.recent_events`).

        Raises:
            OnlineStoreUnavailable: Redis is down, slow or refused.
            DataNotFoundError: nothing was published under this prefix.
        """
        recent: RecentEvents = self._call("read", self._recent_events, key)
        return recent

    def _recent_events(self, key: str) -> RecentEvents:
        version = self._current_version()
        pipe = self.client.pipeline(transaction=False)
        pipe.hvals(version.key("log", key))
        pipe.get(f"{version.prefix}clock")
        logged, clock = pipe.execute()
        at = version.as_of_s if clock is None else max(version.as_of_s, float(clock))
        events = _item_events([Event.from_json(v) for v in logged], version.as_of_s)
        return RecentEvents(events, datetime.fromtimestamp(at, UTC))

    def apply_event(self, event: Event) -> ApplyResult:
        """Fold one event into the customer's profile in the current version (and the one loading).

        Raises:
            OnlineStoreUnavailable: Redis is down, slow or refused.
            DataNotFoundError: nothing was published under this prefix.
        """
        return ApplyResult(self._call("apply_event", self._apply_event, event))

    def _apply_event(self, event: Event) -> ApplyResult:
        current, loading = self.client.mget(self._k("current"), self._k("loading"))
        if current is None:
            raise DataNotFoundError(f"no snapshot published to the online store under {self.prefix!r}")
        result = self._apply_to(self._version(int(current)), event)
        if loading is not None and int(loading) != int(current):
            # A load that was abandoned or is just starting has no metadata yet; its carry-over sees the event.
            with contextlib.suppress(DataNotFoundError):
                self._apply_to(self._version(int(loading)), event)
        return result

    def _apply_to(self, version: _Version, event: Event) -> ApplyResult:
        if event.ts < version.as_of_s and not event.withdraws_consent:  # an opt-out counts whatever its time
            return ApplyResult.BEFORE_SNAPSHOT
        key = event.customer_key
        if key is None:
            raw = self.client.get(version.key("a", event.customer_id or ""))
            if raw is None:
                return ApplyResult.UNKNOWN_CUSTOMER
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
        f_key, log_key = version.key("f", key), version.key("log", key)
        width = 4 * len(version.feature_names)
        event_id = event.id
        with self.client.pipeline(transaction=True) as pipe:
            for _attempt in range(16):
                try:
                    pipe.watch(f_key, log_key)
                    if pipe.hexists(log_key, event_id):
                        pipe.unwatch()
                        return ApplyResult.DUPLICATE
                    current: Any = pipe.get(f_key)
                    exists = current is not None
                    vector = bytes(current[:width]) if current is not None else version.fill_row
                    has_state = current is not None and len(current) > width
                    state = CustomerState.from_json(current[width:]) if has_state else CustomerState()
                    apply(state, event, version.as_of_s)
                    pipe.multi()
                    pipe.set(f_key, vector + state.to_json().encode())
                    pipe.hset(log_key, event_id, event.to_json())
                    if not exists:
                        pipe.incr(f"{version.prefix}rows")
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
            else:
                raise OnlineStoreUnavailable(f"online store (Redis): too much contention on customer {key}")
        self._max_clock(keys=[f"{version.prefix}clock"], args=[repr(event.ts)])
        return ApplyResult.APPLIED if exists else ApplyResult.CREATED


def publish_to_redis(data_home: Path, store: RedisOnlineStore, feature_names: list[str] | None = None) -> int:
    """Publish the latest snapshot of ``data_home`` to ``store``; returns the new version."""
    parts, _snap = snapshot_parts(data_home, feature_names)
    return store.publish(parts)
