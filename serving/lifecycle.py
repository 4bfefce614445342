"""Model lifecycle: load beside, verify, warm, swap atomically; keep the last good bundle on disk.

One :class:`ModelSlot` per configured model. :meth:`ModelSlot.load`:

1. fetches ``name@alias`` from the registry into a fresh staging folder (files checked against the
   checksum recorded at registration);
2. builds the payload there: feature signature checked against the online store, warmed;
3. swaps the slot's bundle in one assignment (a request holds the bundle it started with);
4. moves the files to the slot's disk cache with their provenance (``bundle.json``).

Any failure leaves the serving bundle in place and is recorded (``last_error``, a metric). When the
registry cannot be reached (not "no such model": that is a configuration error), the cached copy is
re-verified against its recorded checksums and loaded instead, at start-up too.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bundles import registry
from bundles.base import BUNDLE_META, BundleKind, ModelBundle, Provenance
from bundles.errors import ModelIntegrityError, ModelNotFoundError
from features.errors import KairosError
from serving.observability import Metrics

log = logging.getLogger("kairos.serving.models")

PREVIOUS = "previous_version"  # the source of a bundle that held the alias before a version that was refused

_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})


class RegistryUnavailable(KairosError):
    """The model registry did not answer (down, slow, refusing)."""


@dataclass(frozen=True)
class LoadOutcome:
    """What one load attempt did."""

    model: str
    outcome: str  # loaded | unchanged | cached | fallback | failed
    version: str | None
    detail: str | None = None


def alias_version(tracking_uri: str, name: str, alias: str) -> str:
    """The version ``name@alias`` points at now (see :func:`alias_record`)."""
    return alias_record(tracking_uri, name, alias)[0]


def alias_record(tracking_uri: str, name: str, alias: str) -> tuple[str, str]:
    """The version ``name@alias`` points at now and its recorded checksum (it changes when an erasure
    re-signs the version's files).

    Raises:
        ModelNotFoundError: the registry answered: no such model or alias.
        RegistryUnavailable: the registry did not answer.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        mv = MlflowClient(tracking_uri=tracking_uri).get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in _NOT_FOUND_CODES:
            raise ModelNotFoundError(f"no model {name}@{alias} in the registry") from exc
        raise RegistryUnavailable(f"registry unavailable: {type(exc).__name__}: {str(exc)[:200]}") from exc
    except Exception as exc:  # connection errors surface as requests / urllib3 / sqlalchemy exceptions
        raise RegistryUnavailable(f"registry unavailable: {type(exc).__name__}: {str(exc)[:200]}") from exc
    return str(mv.version), str(mv.tags.get(registry.TAG_SHA256, ""))


class ModelSlot:
    """One configured model: the bundle serving now, how to load the next one, and its disk cache."""

    def __init__(
        self,
        kind: str,
        name: str,
        alias: str,
        loader: BundleKind,
        tracking_uri: str,
        cache_root: Path,
        metrics: Metrics,
    ) -> None:
        self.kind = kind
        self.name = name
        self.alias = alias
        self.loader = loader
        self.tracking_uri = tracking_uri
        self.cache = Path(cache_root) / name / alias
        self.metrics = metrics
        self.current: ModelBundle | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()  # one load at a time per slot; readers never take it

    @property
    def cached_folder(self) -> Path:
        return self.cache / "last-good"

    def load(self, store_features: Callable[[], Sequence[str] | None], force: bool = False) -> LoadOutcome:
        """Load ``name@alias`` if it moved (or ``force``); on failure keep the serving bundle."""
        with self._lock:
            try:
                version, sha256 = alias_record(self.tracking_uri, self.name, self.alias)
            except RegistryUnavailable as exc:
                return self._from_cache(store_features, str(exc))
            except ModelNotFoundError as exc:
                return self._failed(str(exc))
            current = self.current
            if (
                not force
                and current is not None
                and current.version == version
                and current.source == "registry"
                and current.provenance.sha256 == sha256  # else re-signed by an erasure: load its files
            ):
                return LoadOutcome(self.name, "unchanged", version)
            staging = self.cache.parent / f".staging-{uuid.uuid4().hex[:12]}"
            try:
                fetched = self.loader.fetch(self.tracking_uri, self.name, self.alias, staging)
                payload = self.loader.build(fetched.folder, fetched.provenance, store_features())
                bundle = ModelBundle(self.kind, fetched.provenance, payload, "registry")
            except ModelNotFoundError as exc:  # the alias vanished between the two calls
                shutil.rmtree(staging, ignore_errors=True)
                return self._failed(str(exc))
            except (KairosError, OSError, ValueError, KeyError) as exc:
                shutil.rmtree(staging, ignore_errors=True)
                if current is None:  # starting: never unverified, but not nothing when a verified one exists
                    return self._fallback(store_features, version, f"{type(exc).__name__}: {exc}")
                return self._failed(f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a registry call failing mid-fetch: treat as an outage
                shutil.rmtree(staging, ignore_errors=True)
                if current is None:
                    return self._from_cache(store_features, f"{type(exc).__name__}: {exc}")
                return self._failed(f"{type(exc).__name__}: {exc}")
            self._swap(bundle)
            self._keep(fetched.folder, fetched.provenance, staging)
            return LoadOutcome(self.name, "loaded", bundle.version)

    def purge_cache(self) -> bool:
        """Delete the slot's disk copies (an erasure: they may hold the customer); True when there were some.

        The next successful load writes a fresh copy of the version it verified.
        """
        with self._lock:
            existed = self.cache.exists()
            shutil.rmtree(self.cache, ignore_errors=True)
        return existed

    def _swap(self, bundle: ModelBundle, outcome: str = "loaded") -> None:
        previous = self.current
        before = (previous.version, previous.alias, previous.source) if previous is not None else None
        self.current = bundle  # the atomic swap: one reference assignment
        self.last_error = None
        self.metrics.set_model(self.name, bundle.version, bundle.alias, bundle.source, before)
        self.metrics.reloads.labels(self.name, outcome).inc()
        log.info(
            "model loaded",
            extra={"model": self.name, "version": bundle.version, "alias": bundle.alias, "source": bundle.source},
        )

    def _failed(self, reason: str) -> LoadOutcome:
        self.last_error = reason
        self.metrics.reloads.labels(self.name, "failed").inc()
        serving = self.current.version if self.current is not None else None
        log.error("model load failed; the serving bundle stays", extra={"model": self.name, "error": reason})
        return LoadOutcome(self.name, "failed", serving, reason)

    def _keep(self, folder: Path, provenance: Provenance, staging: Path) -> None:
        """Make ``folder`` the slot's last good copy (best effort: serving does not depend on it)."""
        try:
            tmp = self.cache / f".incoming-{uuid.uuid4().hex[:8]}"
            self.cache.mkdir(parents=True, exist_ok=True)
            shutil.move(str(folder), str(tmp))
            (tmp / BUNDLE_META).write_text(provenance.to_json(), encoding="utf-8")
            old = self.cache / f".old-{uuid.uuid4().hex[:8]}"
            if self.cached_folder.exists():
                self.cached_folder.rename(old)
            tmp.rename(self.cached_folder)
            shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            log.warning("could not cache the model files", extra={"model": self.name, "error": str(exc)})
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _fallback(self, store_features: Callable[[], Sequence[str] | None], refused: str, why: str) -> LoadOutcome:
        """Starting, and ``name@alias`` (version ``refused``) does not verify: serve the last verified copy on
        disk, else the version that held the alias before it (verified like any other), and say so in
        ``last_error`` (readiness, ``/v1/models``) and the source (readiness, metrics). Never an unverified one.
        """
        why = f"v{refused} refused: {why}"
        try:
            cached = self._cached_bundle(store_features)
        except (KairosError, OSError, ValueError, KeyError) as exc:
            why = f"{why}; cached copy refused: {exc}"
        else:
            if cached is not None:
                return self._serve_fallback(cached, why)
        previous = self._previous_of(refused)
        if previous is None:
            return self._failed(f"{why}; no earlier verified version to serve")
        staging = self.cache.parent / f".staging-{uuid.uuid4().hex[:12]}"
        try:
            fetched = self.loader.fetch(self.tracking_uri, self.name, self.alias, staging, version=previous)
            payload = self.loader.build(fetched.folder, fetched.provenance, store_features())
        except Exception as exc:  # whatever went wrong, nothing unverified is served
            shutil.rmtree(staging, ignore_errors=True)
            return self._failed(f"{why}; previous v{previous} refused too: {type(exc).__name__}: {exc}")
        shutil.rmtree(staging, ignore_errors=True)  # not kept as last good: the alias does not point at it
        return self._serve_fallback(ModelBundle(self.kind, fetched.provenance, payload, PREVIOUS), why)

    def _previous_of(self, version: str) -> str | None:
        """The version that held the alias before ``version`` took it (recorded at registration or promotion)."""
        from mlflow import MlflowClient

        try:
            mv = MlflowClient(tracking_uri=self.tracking_uri).get_model_version(self.name, version)
        except Exception:  # the registry's answer is needed only for this fallback
            return None
        return mv.tags.get(registry.TAG_PREVIOUS) or None

    def _serve_fallback(self, bundle: ModelBundle, why: str) -> LoadOutcome:
        self._swap(bundle, "fallback")
        self.last_error = f"{why}; serving v{bundle.version} ({bundle.source})"  # readiness says so
        log.error(
            "model refused; serving an earlier verified version",
            extra={"model": self.name, "version": bundle.version, "source": bundle.source, "error": why},
        )
        return LoadOutcome(self.name, "fallback", bundle.version, self.last_error)

    def _from_cache(self, store_features: Callable[[], Sequence[str] | None], why: str) -> LoadOutcome:
        """The registry is unreachable: keep serving, or load the last good copy from disk."""
        if self.current is not None:
            return self._failed(f"{why}; still serving v{self.current.version}")
        try:
            bundle = self._cached_bundle(store_features)
        except (KairosError, OSError, ValueError, KeyError) as exc:
            return self._failed(f"{why}; cached copy refused: {exc}")
        if bundle is None:
            return self._failed(f"{why}; and no cached copy in {self.cache}")
        self._swap(bundle, "cached")
        log.warning("registry unavailable; serving the cached copy", extra={"model": self.name, "error": why})
        return LoadOutcome(self.name, "cached", bundle.version, why)

    def _cached_bundle(self, store_features: Callable[[], Sequence[str] | None]) -> ModelBundle | None:
        """The last good copy on disk, re-verified against its recorded checksums and built; None when there
        is none. Raises what verifying or building raises."""
        meta = self.cached_folder / BUNDLE_META
        if not meta.is_file():
            return None
        provenance = Provenance.from_json(meta.read_text(encoding="utf-8"))
        self.loader.verify_cached(self.cached_folder, provenance)
        payload = self.loader.build(self.cached_folder, provenance, store_features())
        return ModelBundle(self.kind, provenance, payload, "disk_cache")


__all__ = ["LoadOutcome", "ModelIntegrityError", "ModelSlot", "RegistryUnavailable", "alias_record", "alias_version"]
