"""The marketer's policy file in the API, reloaded like a model: read and validated beside the policy in
force, swapped only when valid, and a failed read leaves the old one serving (its error in readiness'
detail and ``GET /v1/models``). A reload happens at start, on ``POST /v1/models/reload``, with the registry
poll (``KAIROS_POLL_INTERVAL_S``), and when a decision sees the file changed (its modification time, checked
at most once a second)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from bundles.propensity import PropensityModel, snapshot_scores
from features.errors import DataNotFoundError
from features.store import SNAPSHOT_FILE, latest_snapshot
from models.decisioning.marketing_policy import MarketingPolicy, PolicyFileError, load_policy, resolve_cuts
from models.decisioning.policy import ContactPolicy
from models.reasons import DEFAULT_CUTS

log = logging.getLogger("kairos.serving.policy")
_CHECK_EVERY_S = 1.0


class PolicySlot:
    """The policy in force and the contact policy built from it, replaced as a whole."""

    def __init__(self, path: Path | None, data_home: Path | None = None) -> None:
        self.path = path
        self.data_home = data_home
        self._cuts: dict[tuple[str, str, str, str], tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._held: tuple[MarketingPolicy, ContactPolicy] = (MarketingPolicy(), ContactPolicy())
        self._stamp: float | None = None
        self._checked = 0.0
        self.last_error: str | None = None

    @property
    def policy(self) -> MarketingPolicy:
        """The policy in force (re-read first when the file changed)."""
        self._maybe_reload()
        return self._held[0]

    @property
    def contact(self) -> ContactPolicy:
        """The contact policy built from the policy in force."""
        self._maybe_reload()
        return self._held[1]

    def load(self) -> bool:
        """Read the file now; True when a (new) policy is in force, False when it failed (the old one stays)."""
        if self.path is None:
            return True
        try:
            stamp = self.path.stat().st_mtime
            policy = load_policy(self.path)
        except (PolicyFileError, OSError) as exc:
            self.last_error = str(exc)
            log.error("policy file not loaded; the previous policy stays", extra={"error": self.last_error[:300]})
            return False
        with self._lock:
            self._held = (policy, ContactPolicy(policy.contact))
            self._stamp = stamp
            self.last_error = None
        log.info("policy in force", extra={"policy": policy.name, "version": policy.version()})
        return True

    def _maybe_reload(self) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if now - self._checked < _CHECK_EVERY_S:
            return
        self._checked = now
        try:
            stamp = self.path.stat().st_mtime
        except OSError:
            return
        if stamp != self._stamp:
            self.load()

    def cuts(self, kind: str, model: PropensityModel | None) -> tuple[float, float]:
        """The band cuts of ``kind`` under the policy in force: its thresholds, or its quantiles resolved once
        per model version, policy and snapshot on the snapshot's scores (a fallback prior, with no model,
        gets the default cuts for quantiles)."""
        policy = self.policy
        spec = policy.cuts(kind)
        if spec is None:
            return model.cuts if model is not None else DEFAULT_CUTS
        if spec.thresholds is not None:
            return spec.thresholds
        if model is None or self.data_home is None:
            return DEFAULT_CUTS
        try:
            snapshot = latest_snapshot(self.data_home)
        except (DataNotFoundError, OSError):
            return DEFAULT_CUTS
        key = (kind, model.version, policy.version(), str(snapshot.path))
        found = self._cuts.get(key)
        if found is None:
            found = resolve_cuts(spec, snapshot_scores(model, snapshot.path / SNAPSHOT_FILE))
            with self._lock:
                self._cuts = {k: v for k, v in self._cuts.items() if k[0] != kind} | {key: found}
        return found

    def describe(self) -> dict[str, Any]:
        policy = self._held[0]
        return {"file": str(self.path) if self.path else None, "last_error": self.last_error} | policy.describe()
