"""What the app holds while it runs: the online store and the loaded bundles, swapped atomically."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from features.errors import KairosError
from features.online import InMemoryOnlineStore, load_in_memory
from serving.bundle import ModelBundle, load_bundle
from serving.settings import Settings

log = logging.getLogger("kairos.serving")


@dataclass
class Services:
    """The service's live parts. ``churn`` is replaced as a whole, never mutated."""

    settings: Settings
    store: InMemoryOnlineStore | None = None
    churn: ModelBundle | None = None
    last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ready(self) -> bool:
        return self.store is not None and self.churn is not None

    def load(self) -> None:
        """Load the store and the churn model; on failure keep what serves now and record why."""
        with self._lock:
            try:
                store, _snap = load_in_memory(self.settings.data_home)
                bundle = load_bundle(
                    self.settings.tracking_uri,
                    self.settings.churn_model,
                    self.settings.model_alias,
                    self.settings.model_cache_dir,
                    store,
                )
            except (KairosError, OSError, KeyError, ValueError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("model load failed; keeping the current bundle", extra={"error": self.last_error})
                return
            self.store, self.churn, self.last_error = store, bundle, None
            log.info("loaded", extra={"model": bundle.name, "version": bundle.version, "customers": len(store)})
