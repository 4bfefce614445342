"""Contact state as the API sees it: consent from the online store, send history and time zones.

* **Consent** is read from the online store's ``consent_<channel>`` features at decision time, so an
  ``unsubscribe`` (or ``consent``) event applied through ``POST /v1/events`` changes the very next
  decision. 1 is an opt-in in force; 0 an opt-out; missing means no record (never contact).
* **Sends**: the ingested ``messages`` table's sends within the policy's longest window before the
  data end, read at start-up (every replica reads the same), plus every ``message_sent`` event posted
  since. With the in-process store those are kept in process; with Redis as the online store they go
  to Redis beside it (:class:`SharedSends`), so a send posted to one replica counts in every replica's
  next decision, and caps hold however requests are routed.
* **Offers sent**: every send of the ingested ``messages`` table that carried an ``offer_id``, plus
  every ``message_sent`` event with an ``offer_id``, so each offer's limit per customer (counted within
  its validity dates) holds for API decisions too. Kept whole in process, and for
  :data:`OFFER_MEMORY` in Redis, not trimmed to the policy's window: offers run for weeks or months.
* **Time zone**: the ingested customers' ``timezone`` (first valid one per customer_key).

A posted send is recorded once: a second ``message_sent`` with the same ``event_id`` (or, without one,
the same customer, channel, time and offer, as a client's retry sends it) is a duplicate and counts
for nothing, in process and in Redis alike (:func:`send_identity`).

A posted send that a later export also holds counts once. With Redis, posted sends outlive a restart,
and a replica started on the next nightly export reads the same sends from the ``messages`` table: a
posted send is taken as one of those when an ingested send of the customer on the same channel lies
within :data:`SAME_SEND` of it (and, for its offer, an ingested send of the same offer), each ingested
send standing for at most one posted send. In process, posted sends do not outlive the process.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import redis

from features.contract import Channel, Col, ConsentStatus
from features.errors import DataNotFoundError
from features.online import OnlineStoreUnavailable
from features.realtime import CONSENT_PREFIX
from features.store import ingested_dir
from models.decisioning.policy import ConsentEvent, ContactPolicy, ContactState, SendRecord
from models.decisioning.sendtime import valid_zone

log = logging.getLogger("kairos.serving.contact")

CHANNELS = tuple(c.value for c in Channel)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OFFER_MEMORY = timedelta(days=400)  # how long Redis keeps a posted send that carried an offer
SAME_SEND = timedelta(seconds=60)  # a posted and an exported send this close (same customer, channel) are one


def send_memory(lookback: timedelta) -> timedelta:
    """How long a posted send is remembered: the policy's window, or longer for offer limits."""
    return max(lookback, OFFER_MEMORY)


def send_identity(key: str, send: SendRecord, offer_id: str | None, event_id: str | None) -> str:
    """What makes a posted send the same as another: its ``event_id``, else a digest of its content."""
    if event_id:
        return "id:" + event_id
    text = "|".join((key, send.channel, send.at.astimezone(UTC).isoformat(), str(send.with_offer), offer_id or ""))
    return "h:" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


# Records a send unless its identity is known: the identity set and the send log change together or not at all.
_ADD_ONCE = """
if redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[3]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
for i = 1, 2 do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[4])
    redis.call('EXPIRE', KEYS[i], ARGV[5])
end
return 1
"""


class SharedSends:
    """The ``message_sent`` events posted to any replica, in Redis beside the online store.

    One sorted set per customer (``<prefix>:sends:{<customer_key>}``), scored by send time; a member is
    the send as JSON with its identity (:func:`send_identity`), which a second sorted set
    (``<prefix>:sendids:{<customer_key>}``) keeps so that a send posted again is recorded once; one
    Lua script writes both (the hash tag keeps them in one slot of a cluster). Writing trims sends
    older than the longer of the policy's window and :data:`OFFER_MEMORY` (offer limits need the long
    memory) and sets both keys to expire with it. Every call is bounded by the client's timeouts; a
    failure raises :class:`~features.online.OnlineStoreUnavailable`, which the routers answer as for
    the store (an event ``unavailable``: send again; a decision degraded, no contact allowed).
    """

    def __init__(self, client: redis.Redis, prefix: str, lookback: timedelta) -> None:
        self.client = client
        self.prefix = prefix
        self.keep = send_memory(lookback)
        self._add_once = client.register_script(_ADD_ONCE)

    def _key(self, customer_key: str) -> str:
        return f"{self.prefix}:sends:{{{customer_key}}}"

    def add(self, customer_key: str, send: SendRecord, offer_id: str | None, identity: str) -> bool:
        """Record the send; False when a send of the same identity is already recorded (nothing changes)."""
        at = send.at.timestamp()
        member = orjson.dumps([send.channel, at, send.with_offer, offer_id, identity])
        keys = [self._key(customer_key), f"{self.prefix}:sendids:{{{customer_key}}}"]
        oldest = at - self.keep.total_seconds()
        try:
            added = self._add_once(keys=keys, args=[member, at, identity, oldest, int(self.keep.total_seconds())])
        except redis.RedisError as exc:
            raise OnlineStoreUnavailable(f"send log (Redis) write failed: {type(exc).__name__}: {exc}") from exc
        return bool(added)

    def erase(self, customer_keys: Sequence[str]) -> int:
        """Delete the customers' posted sends and their identities (an erasure); returns the keys deleted."""
        names = [n for k in customer_keys for n in (self._key(k), f"{self.prefix}:sendids:{{{k}}}")]
        if not names:
            return 0
        try:
            return int(self.client.delete(*names))
        except redis.RedisError as exc:
            raise OnlineStoreUnavailable(f"send log (Redis) erase failed: {type(exc).__name__}: {exc}") from exc

    def read(self, customer_keys: Sequence[str]) -> dict[str, list[tuple[SendRecord, str | None]]]:
        """The posted sends (each with its offer id or None) per customer of ``customer_keys``: one pipeline,
        whatever the batch size."""
        unique = list(dict.fromkeys(customer_keys))
        try:
            pipe = self.client.pipeline(transaction=False)
            for k in unique:
                pipe.zrange(self._key(k), 0, -1)
            replies = pipe.execute()
        except redis.RedisError as exc:
            raise OnlineStoreUnavailable(f"send log (Redis) read failed: {type(exc).__name__}: {exc}") from exc
        posted: dict[str, list[tuple[SendRecord, str | None]]] = {}
        for k, members in zip(unique, replies, strict=True):
            for raw in members:
                channel, at, with_offer, offer_id, _ = orjson.loads(raw)
                send = SendRecord(str(channel), datetime.fromtimestamp(float(at), UTC), bool(with_offer))
                posted.setdefault(k, []).append((send, None if offer_id is None else str(offer_id)))
        return posted


class ContactBook:
    """Send history and time zones per customer_key; thread-safe appends (``message_sent`` events)."""

    def __init__(
        self,
        sends: dict[str, list[SendRecord]],
        zones: dict[str, str],
        lookback: timedelta,
        offers: dict[str, list[tuple[str, datetime]]] | None = None,
        shared: SharedSends | None = None,
    ) -> None:
        self._sends = sends
        self.zones = zones
        self.lookback = lookback
        self._offers = offers or {}
        self.shared = shared
        self._seen: dict[str, dict[str, datetime]] = {}  # per customer: posted sends' identities, when sent
        self._lock = threading.Lock()

    @classmethod
    def empty(cls, policy: ContactPolicy) -> ContactBook:
        return cls({}, {}, timedelta(hours=policy.config.longest_window_hours()))

    @classmethod
    def read(cls, data_home: Path, policy: ContactPolicy) -> ContactBook:
        """Recent sends (the policy's longest window before the last send on record) and time zones."""
        lookback = timedelta(hours=policy.config.longest_window_hours())
        try:
            folder = ingested_dir(data_home)
        except (DataNotFoundError, OSError):
            return cls({}, {}, lookback)
        sends: dict[str, list[SendRecord]] = {}
        offers: dict[str, list[tuple[str, datetime]]] = {}
        path = folder / "messages.parquet"
        if path.is_file():
            cols = [Col.CUSTOMER_KEY, Col.CHANNEL, Col.SENT_AT, Col.OFFER_ID]
            frame = pd.read_parquet(path, columns=cols)
            at = pd.to_datetime(frame[Col.SENT_AT], utc=True)
            if len(frame):
                recent = (at >= at.max() - lookback).to_numpy() & frame[Col.CUSTOMER_KEY].notna().to_numpy()
                offer = frame[Col.OFFER_ID].notna().to_numpy()
                keys = frame[Col.CUSTOMER_KEY].astype(str).to_numpy()
                chans = frame[Col.CHANNEL].astype(str).to_numpy()
                for i in np.flatnonzero(recent):
                    sends.setdefault(keys[i], []).append(
                        SendRecord(chans[i], at.iloc[i].to_pydatetime(), bool(offer[i]))
                    )
                ids = frame[Col.OFFER_ID].astype(str).to_numpy()
                for i in np.flatnonzero(offer & frame[Col.CUSTOMER_KEY].notna().to_numpy()):
                    offers.setdefault(keys[i], []).append((ids[i], at.iloc[i].to_pydatetime()))
        zones: dict[str, str] = {}
        path = folder / "customers.parquet"
        if path.is_file():
            frame = pd.read_parquet(path, columns=[Col.CUSTOMER_KEY, Col.TIMEZONE])
            for key, zone in zip(frame[Col.CUSTOMER_KEY].astype(str), frame[Col.TIMEZONE], strict=True):
                if key not in zones and isinstance(zone, str) and valid_zone(zone):
                    zones[key] = zone
        return cls(sends, zones, lookback, offers)

    def sends(self, key: str) -> tuple[SendRecord, ...]:
        return tuple(self._sends.get(key, ()))

    def record(
        self,
        key: str,
        channel: str,
        at: datetime,
        with_offer: bool,
        offer_id: str | None = None,
        event_id: str | None = None,
    ) -> bool:
        """A message sent (``message_sent`` event); sends older than the lookback are dropped. False, and
        nothing recorded, when the same send was recorded before (same ``event_id``, or same content).

        With ``offer_id`` the send also counts against that offer's limit per customer.
        """
        at = at.astimezone(UTC)
        send = SendRecord(channel, at, with_offer or offer_id is not None)
        identity = send_identity(key, send, offer_id, event_id)
        if self.shared is not None:  # every replica sees it; raises OnlineStoreUnavailable
            return self.shared.add(key, send, offer_id, identity)
        with self._lock:
            seen = self._seen.setdefault(key, {})
            if identity in seen:
                return False
            oldest = at - send_memory(self.lookback)  # as long as an offer's limit may count the send
            self._seen[key] = {i: t for i, t in seen.items() if t >= oldest} | {identity: at}
            kept = [s for s in self._sends.get(key, []) if s.at >= at - self.lookback]
            kept.append(send)
            self._sends[key] = kept
            if offer_id is not None:
                self._offers[key] = [*self._offers.get(key, []), (offer_id, at)]
        return True

    def erase(self, keys: Sequence[str]) -> dict[str, int]:
        """Forget customers (an erasure): their sends, offers sent, time zone and posted-send identities here,
        and their posted sends in Redis when shared (raises OnlineStoreUnavailable). Returns counts by kind."""
        out = {"sends": 0, "offers": 0, "zones": 0, "shared_keys": 0}
        with self._lock:
            for key in keys:
                out["sends"] += len(self._sends.pop(key, ()))
                out["offers"] += len(self._offers.pop(key, ()))
                out["zones"] += self.zones.pop(key, None) is not None
                self._seen.pop(key, None)
        if self.shared is not None:
            out["shared_keys"] = self.shared.erase(keys)
        return out

    def view(self, keys: Sequence[str]) -> ContactBook:
        """The book as one request sees it: with a shared log, the ingested sends of ``keys`` plus every
        replica's posted ones, read in one call (raises OnlineStoreUnavailable); else this book itself."""
        if self.shared is None:
            return self
        unique = list(dict.fromkeys(keys))
        posted = self.shared.read(unique)
        sends: dict[str, list[SendRecord]] = {}
        offers: dict[str, list[tuple[str, datetime]]] = {}
        for k in unique:
            exported, exported_offers = self._sends.get(k, []), self._offers.get(k, [])
            sends[k], offers[k] = list(exported), list(exported_offers)
            # what the export holds, as (channel or offer id, time): each stands for one posted send at most
            free_sends = [(s.channel, s.at) for s in exported]
            free_offers = list(exported_offers)
            for send, offer_id in posted.get(k, ()):
                if not _take(free_sends, send.channel, send.at):
                    sends[k].append(send)
                if offer_id is not None and not _take(free_offers, offer_id, send.at):
                    offers[k].append((offer_id, send.at))
        return ContactBook(sends, self.zones, self.lookback, offers)

    def offer_history(self, keys: Sequence[str]) -> pd.DataFrame:
        """The offers sent to ``keys``: ``customer_key, offer_id, sent_at`` (the shape ``nbo`` counts)."""
        rows = [(k, oid, at) for k in dict.fromkeys(keys) for oid, at in self._offers.get(k, ())]
        frame = pd.DataFrame(rows, columns=[Col.CUSTOMER_KEY, Col.OFFER_ID, Col.SENT_AT])
        frame[Col.SENT_AT] = pd.to_datetime(frame[Col.SENT_AT], utc=True)
        return frame


def _take(pool: list[tuple[str, datetime]], what: str, at: datetime) -> bool:
    """Remove the first ``(what, time)`` of ``pool`` within :data:`SAME_SEND` of ``at``; False when there is none."""
    for i, (name, when) in enumerate(pool):
        if name == what and abs(when - at) <= SAME_SEND:
            del pool[i]
            return True
    return False


def consent_columns(names: list[str]) -> dict[str, int]:
    """Channel -> column of its consent feature in the store's matrix (channels the store lacks are absent)."""
    index = {n: i for i, n in enumerate(names)}
    return {ch: index[f"{CONSENT_PREFIX}{ch}"] for ch in CHANNELS if f"{CONSENT_PREFIX}{ch}" in index}


def state_of(key: str, row: np.ndarray, columns: dict[str, int], book: ContactBook) -> ContactState:
    """The policy's view of one customer: consent from the store row, sends and zone from the book."""
    consents = []
    for ch, col in columns.items():
        v = float(row[col])
        if v == 1.0:
            consents.append(ConsentEvent(ch, ConsentStatus.OPT_IN.value, _EPOCH))
        elif v == 0.0:
            consents.append(ConsentEvent(ch, ConsentStatus.OPT_OUT.value, _EPOCH))
    return ContactState(key, tuple(consents), book.sends(key), book.zones.get(key))
