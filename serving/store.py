"""The online store as the API sees it: one backend (in-process or Redis), segments and personal data.

Every read is bounded: Redis calls carry socket timeouts (``store_timeout_s``) and no retries, and
any failure surfaces as :class:`OnlineStoreUnavailable`, which the routers turn into a degraded 200.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from features.contract import PERSONAL_COLUMNS, Col
from features.erasure import Tombstones
from features.errors import DataNotFoundError, KairosError
from features.online import (
    InMemoryOnlineStore,
    Lookup,
    OnlineStoreUnavailable,
    RecentEvents,
    RedisOnlineStore,
    load_in_memory,
)
from features.realtime import ApplyResult, Event, ReadTimeError
from features.store import SEGMENT_COLUMNS, SEGMENTS_FILE, ingested_dir, latest_snapshot
from serving.security import ApiError
from serving.settings import Environment, Settings, StoreBackend

log = logging.getLogger("kairos.serving.store")

SEGMENT_FIELDS = SEGMENT_COLUMNS  # the segment columns every answer carries
_ERASED = "\x00erased"  # what an erased customer's id is looked up as: no store holds it


@dataclass(frozen=True)
class Segments:
    """customer_key -> segment labels, from the latest snapshot's ``segments.parquet``."""

    columns: tuple[str, ...]
    by_key: dict[str, tuple[Any, ...]]

    @classmethod
    def empty(cls) -> Segments:
        return cls((), {})

    @classmethod
    def read(cls, data_home: Path) -> Segments:
        try:
            snap = latest_snapshot(data_home)
        except (DataNotFoundError, OSError):
            return cls.empty()
        path = snap.path / SEGMENTS_FILE
        if not path.is_file():
            return cls.empty()
        frame = pd.read_parquet(path)
        columns = tuple(c for c in frame.columns if c != Col.CUSTOMER_KEY)
        values = frame[list(columns)].astype(object).where(frame[list(columns)].notna(), None)
        rows = [tuple(_plain(v) for v in row) for row in values.itertuples(index=False, name=None)]
        return cls(columns, dict(zip(frame[Col.CUSTOMER_KEY].astype(str), rows, strict=True)))

    def of(self, key: str | None) -> dict[str, Any] | None:
        row = self.by_key.get(key) if key is not None else None
        return None if row is None else dict(zip(self.columns, row, strict=True))

    def forget(self, keys: Sequence[str]) -> int:
        """Drop erased customers' labels; returns how many were held."""
        return sum(self.by_key.pop(k, None) is not None for k in keys)

    def headline(self, key: str | None) -> dict[str, Any] | None:
        """Only the segment columns a score item carries (RFM segment, lifecycle); None for a column absent."""
        row = self.by_key.get(key) if key is not None else None
        if row is None:
            return None
        return {c: (row[i] if i is not None else None) for c, i in self._headline_at}

    @cached_property
    def _headline_at(self) -> tuple[tuple[str, int | None], ...]:
        at = {c: i for i, c in enumerate(self.columns)}
        return tuple((c, at.get(c)) for c in SEGMENT_FIELDS)


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    return v


class PersonalData:
    """The customers' personal columns (read lazily from the ingested customers table), by customer_key.

    Only the profile endpoint reads it, and only for keys with the ``pii`` scope; nothing here is logged.
    """

    def __init__(self, data_home: Path) -> None:
        self.data_home = data_home
        self._by_key: dict[str, dict[str, Any]] | None = None

    def of(self, key: str) -> dict[str, Any] | None:
        if self._by_key is None:
            self._by_key = self._read()
        return self._by_key.get(key)

    def forget(self, keys: Sequence[str]) -> int:
        """Drop erased customers' personal data from memory; returns how many were held."""
        held = self._by_key
        return 0 if held is None else sum(held.pop(k, None) is not None for k in keys)

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            path = ingested_dir(self.data_home) / "customers.parquet"
            frame = pd.read_parquet(path)
        except (DataNotFoundError, OSError):
            return {}
        cols = [c for c in frame.columns if c in PERSONAL_COLUMNS]
        # One customer_key may have several source records (identity resolution): keep every one's values.
        out: dict[str, dict[str, Any]] = {}
        clean = frame[[Col.CUSTOMER_KEY, *cols]].astype(object).where(frame[[Col.CUSTOMER_KEY, *cols]].notna(), None)
        for rec in clean.to_dict("records"):
            key = str(rec.pop(Col.CUSTOMER_KEY))
            entry = out.setdefault(key, {c: [] for c in cols})
            for c in cols:
                v = rec[c]
                if v is not None and str(v) not in entry[c]:
                    entry[c].append(str(v))
        return out


class StoreGateway:
    """The configured backend behind one interface with the failures the API degrades on."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.backend: InMemoryOnlineStore | RedisOnlineStore | None = None
        self.as_of: datetime | None = None
        # Erased customers are unknown here even before this replica's store and models are rebuilt. Tombstones
        # are keyed with the pseudonym secret: every process (ingest, erase, each replica) must hold the same one.
        secret = settings.pseudonym_secret
        self.tombstones = Tombstones.of(settings.data_home, secret.get_secret_value().encode() if secret else None)
        if secret is None and settings.environment is Environment.PRODUCTION:
            log.warning(
                "KAIROS_PSEUDONYM_SECRET is not set: erasure tombstones use the development key, and erasures "
                "recorded by jobs that hold the secret are not recognised here (docs/erasure.md)"
            )

    def open(self) -> None:
        """Build (memory) or connect to (Redis) the store. Redis being down is not an error here."""
        s = self.settings
        if s.online_store is StoreBackend.REDIS:
            self.backend = RedisOnlineStore.connect(
                s.redis_url, s.redis_prefix, timeout=s.store_timeout_s, connect_timeout=s.store_timeout_s
            )
        else:
            store, snap = load_in_memory(s.data_home)
            self.backend, self.as_of = store, snap.as_of

    @property
    def kind(self) -> str:
        return self.settings.online_store.value

    @property
    def in_process(self) -> bool:
        """The store is this process's memory: a lookup never waits on the network."""
        return isinstance(self.backend, InMemoryOnlineStore)

    def feature_names(self) -> list[str] | None:
        """The store's features, or None when it cannot say now (Redis down)."""
        if self.backend is None:
            return None
        try:
            return list(self.backend.feature_names)
        except (OnlineStoreUnavailable, DataNotFoundError):
            return None

    def size(self) -> int | None:
        if self.backend is None:
            return None
        try:
            return len(self.backend)
        except (OnlineStoreUnavailable, DataNotFoundError):
            return None

    def lookup(
        self, ids: Sequence[str], strings: bool = False, now: datetime | None = None, field: str = "body.now"
    ) -> tuple[Lookup, list[str]]:
        """Rows for ``ids`` in order and the feature names of their columns, as of ``now`` (one clock: the
        request's instant, else the configured ``clock``, else the server's clock; never the latest event seen).

        Raises:
            OnlineStoreUnavailable: the store cannot answer now (including "nothing published yet").
            ApiError: 422 naming ``field`` when ``now`` is before the store's snapshot.
        """
        backend = self.backend
        if backend is None:
            raise OnlineStoreUnavailable("the online store is not open")
        ids = self._hide_erased(ids)
        try:
            names = list(backend.feature_names)
            at = now if now is not None else (self.settings.clock or datetime.now(UTC))
            found = backend.lookup(ids, now=at, max_age_days=self.settings.max_feature_age_days, strings=strings)
        except DataNotFoundError as exc:
            raise OnlineStoreUnavailable(str(exc)) from exc
        except ReadTimeError as exc:
            raise ApiError(422, "invalid_request", f"{field}: {exc}") from exc
        if found.values.shape[1] != len(names):  # a Redis version switched between the two calls
            raise OnlineStoreUnavailable("the online store switched versions during the read; retry")
        return found, names

    def resolve(self, ids: Sequence[str]) -> list[str | None]:
        """customer_key per id (None: unknown). Raises OnlineStoreUnavailable like :meth:`lookup`."""
        backend = self.backend
        if isinstance(backend, InMemoryOnlineStore):
            return backend.resolve(self._hide_erased(ids))
        return self.lookup(ids)[0].keys

    def recent_events(self, key: str) -> RecentEvents:
        """The customer's item events since the snapshot and the data's clock (what recommendations fold in);
        none for an erased customer.

        Raises:
            OnlineStoreUnavailable: the store cannot answer now.
        """
        backend = self.backend
        if backend is None:
            raise OnlineStoreUnavailable("the online store is not open")
        if self._hide_erased([key]) != [key]:
            return RecentEvents([], None)
        try:
            return backend.recent_events(key)
        except DataNotFoundError as exc:
            raise OnlineStoreUnavailable(str(exc)) from exc

    def _hide_erased(self, ids: Sequence[str]) -> Sequence[str]:
        """``ids`` with every erased one (tombstoned) replaced by an id no store holds."""
        tombstones = self.tombstones
        tombstones.refresh()
        if not len(tombstones):
            return ids
        flags = tombstones.erased(ids)
        return [_ERASED if gone else i for i, gone in zip(ids, flags, strict=True)] if any(flags) else ids

    def erase(self, keys: Sequence[str], ids: Sequence[str]) -> int:
        """Forget customers in the backend (in process or Redis); returns the entries removed.

        Raises:
            OnlineStoreUnavailable: Redis cannot answer now.
        """
        self.tombstones.refresh(0.0)
        backend = self.backend
        return 0 if backend is None else backend.erase(keys, ids)

    def apply_event(self, event: Event) -> ApplyResult:
        backend = self.backend
        if backend is None:
            raise OnlineStoreUnavailable("the online store is not open")
        named = [i for i in (event.customer_key, event.customer_id) if i]
        if named and self._hide_erased(named) != named:  # an erased customer is not brought back by an event
            return ApplyResult.UNKNOWN_CUSTOMER
        try:
            return backend.apply_event(event)
        except DataNotFoundError as exc:
            raise OnlineStoreUnavailable(str(exc)) from exc


__all__ = ["KairosError", "OnlineStoreUnavailable", "PersonalData", "Segments", "StoreGateway"]
