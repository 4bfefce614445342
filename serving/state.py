"""What the app holds while it runs: the online store, the model slots, keys, limits and metrics."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from bundles import registry
from bundles.base import ModelBundle
from bundles.kinds import bundle_for
from features.errors import KairosError
from features.online import RedisOnlineStore
from models.compiled import COMPILED_DIR
from models.decisioning.policy import ContactPolicy
from serving.audience_universe import AudienceSource
from serving.contact import ContactBook, SharedSends
from serving.keys import DEMO_KEY, KeyRing, Scope, hash_key
from serving.lifecycle import LoadOutcome, ModelSlot
from serving.observability import Metrics
from serving.policy import PolicySlot
from serving.security import RateLimiter, SharedRateLimiter
from serving.settings import Environment, Settings
from serving.store import PersonalData, Segments, StoreGateway

log = logging.getLogger("kairos.serving")


def key_ring(settings: Settings) -> KeyRing:
    """The configured keys; in development with none configured, the documented demo key with every scope."""
    if settings.api_keys:
        return KeyRing((k.name, k.sha256, frozenset(k.scopes), k.rate_per_second) for k in settings.api_keys)
    if settings.environment is Environment.DEVELOPMENT:
        return KeyRing([("demo", hash_key(DEMO_KEY), frozenset(Scope), None)])
    return KeyRing([])  # unreachable: Settings refuses this outside development


class Services:
    """The service's live parts. Model bundles are replaced as a whole (see :mod:`serving.lifecycle`)."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.keys = key_ring(settings)
        self._own_limits = RateLimiter(settings.rate_per_second, settings.rate_burst)  # this replica's buckets
        self.limiter: RateLimiter | SharedRateLimiter = self._own_limits
        self.store = StoreGateway(settings)
        self.segments = Segments.empty()
        self.personal = PersonalData(settings.data_home)
        self.audiences = AudienceSource(settings.data_home)  # read on first use, again after a new snapshot
        # the marketer's policy file (the documented defaults without one), reloaded like a model
        self.policies = PolicySlot(settings.policy_file, settings.data_home)
        self.contacts = ContactBook.empty(ContactPolicy())  # the send log is read at start, under the policy
        self.store_error: str | None = None
        self.slots: dict[str, ModelSlot] = {
            kind: ModelSlot(
                kind,
                name,
                settings.model_alias,
                bundle_for(kind, settings.compiled_dir or settings.data_home / COMPILED_DIR),
                settings.tracking_uri,
                settings.model_cache_dir,
                self.metrics,
            )
            for kind, name in settings.model_names.items()
        }
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # -- state

    @property
    def policy(self) -> ContactPolicy:
        """The contact policy of the policy file in force (re-read when the file changed)."""
        return self.policies.contact

    def bundle(self, kind: str) -> ModelBundle | None:
        slot = self.slots.get(kind)
        return slot.current if slot is not None else None

    def required(self, kind: str) -> bool:
        return self.settings.required(kind)

    def fallback_of(self, kind: str) -> str | None:
        """How an optional model that is not loaded is answered (None: it is loaded, or required)."""
        slot = self.slots.get(kind)
        if slot is None or slot.current is not None or self.required(kind):
            return None
        prior = self.settings.model_priors.get(kind)
        if prior is not None:
            return f"population prior {prior:g} (model_priors)"
        return "not served: its fields are null, labelled fallback"

    @property
    def ready(self) -> bool:
        """True only when the store is open and every configured model is loaded and warmed, or is optional
        and has an explicit fallback (see :meth:`fallback_of`)."""
        return self.store.backend is not None and all(
            s.current is not None or not self.required(k) for k, s in self.slots.items()
        )

    @property
    def last_error(self) -> str | None:
        errors = [f"{s.name}: {s.last_error}" for s in self.slots.values() if s.last_error]
        if self.store_error:
            errors.insert(0, f"online store: {self.store_error}")
        return "; ".join(errors) or None

    def describe(self) -> dict[str, Any]:
        return {
            kind: {
                "name": s.name,
                "alias": s.alias,
                "required": self.required(kind),
                "loaded": s.current.describe() if s.current is not None else None,
                "fallback": self.fallback_of(kind),
                "last_error": s.last_error,
            }
            for kind, s in self.slots.items()
        }

    # -- loading

    def start(self) -> None:
        """Open the store, read segments, load every model (blocking: run it off the event loop)."""
        # MLflow's HTTP client retries for minutes by default; a registry outage must not hold start-up.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(1, self.settings.registry_timeout_s))))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        registry.quiet_mlflow()
        try:
            self.store.open()
            self.store_error = None
        except (KairosError, OSError, KeyError, ValueError) as exc:
            self.store_error = f"{type(exc).__name__}: {exc}"
            log.error("online store failed to open", extra={"error": self.store_error})
        self.segments = Segments.read(self.settings.data_home)
        self.policies.load()  # before the send log: its look-back is the policy's longest window
        self.contacts = ContactBook.read(self.settings.data_home, self.policy)
        backend = self.store.backend
        if isinstance(backend, RedisOnlineStore):  # several replicas: sends posted to one count in all
            self.contacts.shared = SharedSends(backend.client, backend.prefix, self.contacts.lookback)
            if self.settings.shared_rate_limits:  # and a key's rate is its rate across all of them
                self.limiter = SharedRateLimiter(
                    self.settings.redis_url,
                    backend.prefix,
                    self.settings.store_timeout_s,
                    self._own_limits,  # while Redis fails
                    self.metrics.errors.labels("rate_limit_store").inc,
                )
        self.reload(force=True)
        if self.settings.poll_interval_s > 0:
            self._poller = threading.Thread(target=self._poll, name="kairos-registry-poll", daemon=True)
            self._poller.start()

    def reload(self, force: bool = False, kinds: list[str] | None = None) -> list[LoadOutcome]:
        """Load every (or the named) model whose alias moved; failures keep the serving bundle."""
        self.policies.load()
        return [
            slot.load(self.store.feature_names, force=force)
            for kind, slot in self.slots.items()
            if kinds is None or kind in kinds
        ]

    def _poll(self) -> None:
        while not self._stop.wait(self.settings.poll_interval_s):
            try:
                self.reload()
            except Exception:  # the poller must outlive any one failure
                log.exception("registry poll failed")

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)

    async def stop_async(self) -> None:
        """Close what lives on the event loop: the shared rate limits' Redis client."""
        if isinstance(self.limiter, SharedRateLimiter):
            await self.limiter.close()
