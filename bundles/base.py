"""What every model bundle shares: its provenance, the loaded bundle, and how a kind is fetched and built.

A bundle is one registered model version's files (verified against the checksums recorded at
registration) plus the code that reads them. Each kind of model has one class in this package that
writes its files (training), reads and verifies them, and builds the object that predicts (the API and
the nightly export): :mod:`bundles.propensity`, :mod:`bundles.value`, :mod:`bundles.recs`,
:mod:`bundles.sendtime`, :mod:`bundles.offers`. :mod:`bundles.kinds` maps a kind's name to its class.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bundles import registry
from bundles.errors import ModelIntegrityError
from features.io import sha256_file

BUNDLE_META = "bundle.json"  # provenance of a cached bundle, written beside its files
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Provenance:
    """What the registry says about one model version (kept with the cached copy)."""

    name: str
    version: str
    alias: str
    run_id: str
    sha256: str
    trained_at: str | None
    features: tuple[str, ...]
    metrics: dict[str, float]
    manifest: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)  # the model's own "kairos" metadata (calibrator, ...)

    def to_json(self) -> str:
        data = {**self.__dict__, "features": list(self.features)}
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def of_run(
        cls,
        tracking_uri: str,
        name: str,
        version: str,
        alias: str,
        run_id: str,
        sha256: str,
        *,
        features: tuple[str, ...] = (),
        manifest: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Provenance:
        """A fetched version's provenance, with its training run's metrics and end time."""
        metrics, trained_at = run_details(tracking_uri, run_id)
        return cls(name, version, alias, run_id, sha256, trained_at, features, metrics, manifest or {}, metadata or {})

    @classmethod
    def from_json(cls, text: str) -> Provenance:
        data = json.loads(text)
        data["features"] = tuple(data["features"])
        return cls(**data)


@dataclass(frozen=True)
class ModelBundle:
    """One loaded, verified, warmed model version. Replaced as a whole, never mutated."""

    kind: str
    provenance: Provenance
    payload: Any
    source: str  # "registry", "disk_cache" or "previous_version" (serving.lifecycle)
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def name(self) -> str:
        return self.provenance.name

    @property
    def version(self) -> str:
        return self.provenance.version

    @property
    def alias(self) -> str:
        return self.provenance.alias

    @property
    def baseline(self) -> str | None:
        """The baseline this version serves (``bgnbd``, ...) when Kairos's own model did not beat it, else None."""
        name = getattr(self.payload, "baseline", None)
        return name if isinstance(name, str) else None

    def ref(self) -> dict[str, str | None]:
        """How a response names the model that produced it, and whether it is a baseline."""
        baseline = self.baseline
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "kind": "baseline" if baseline else "kairos",
            "baseline": baseline,
        }

    def describe(self) -> dict[str, Any]:
        p = self.provenance
        return {
            "kind": self.kind,
            "name": p.name,
            "version": p.version,
            "alias": p.alias,
            "run_id": p.run_id,
            "sha256": p.sha256,
            "trained_at": p.trained_at,
            "loaded_at": self.loaded_at.isoformat(),
            "source": self.source,
            "features": list(p.features),
            "definition_hash": p.manifest.get("definition_hash"),
            "metrics": p.metrics,
            "engine": getattr(self.payload, "engine", None),  # propensity: lleaves, lightgbm or baseline
            "baseline": self.baseline,
        }


@dataclass(frozen=True)
class Fetched:
    """A version's files on local disk, verified, with its provenance."""

    folder: Path
    provenance: Provenance


class BundleKind(Protocol):
    """How one kind of model is fetched from the registry, re-verified from a cached copy and built."""

    kind: str

    def fetch(self, tracking_uri: str, name: str, alias: str, dst: Path, *, version: str | None = None) -> Fetched:
        """``name@alias`` (or ``version`` of ``name`` when given) on local disk, every file verified."""
        ...

    def verify_cached(self, folder: Path, provenance: Provenance) -> None: ...

    def build(self, folder: Path, provenance: Provenance, store_features: Sequence[str] | None) -> Any: ...


def run_details(tracking_uri: str, run_id: str) -> tuple[dict[str, float], str | None]:
    """A run's metrics and end (or start) time, ISO 8601."""
    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=tracking_uri).get_run(run_id)
    millis = run.info.end_time or run.info.start_time
    when = datetime.fromtimestamp(millis / 1000, UTC).isoformat() if millis else None
    return {k: float(v) for k, v in run.data.metrics.items()}, when


def check_signature(name: str, version: str, features: Sequence[str], store_features: Sequence[str] | None) -> None:
    """Every feature the model needs is one the online store serves."""
    if store_features is None:
        return
    have = set(store_features)
    missing = [f for f in features if f not in have]
    if missing:
        raise ModelIntegrityError(f"{name} v{version}: the online store lacks feature(s) {missing}")


class FolderBundle:
    """A bundle that is a folder of NumPy / Parquet / JSON files listed with their checksums in
    ``checksums.json``; fetched with every file verified (:func:`bundles.registry.fetch_bundle`).
    Subclasses write the files and build the payload."""

    kind = "bundle"

    def fetch(self, tracking_uri: str, name: str, alias: str, dst: Path, *, version: str | None = None) -> Fetched:
        got = registry.fetch_bundle(tracking_uri, name, alias, dst, version=version)
        manifest_file = got.path / MANIFEST_FILE
        manifest = json.loads(manifest_file.read_text(encoding="utf-8")) if manifest_file.is_file() else {}
        prov = Provenance.of_run(tracking_uri, name, got.version, alias, got.run_id, got.sha256, manifest=manifest)
        return Fetched(got.path, prov)

    def verify_cached(self, folder: Path, provenance: Provenance) -> None:
        listing_file = folder / registry.CHECKSUMS
        if not listing_file.is_file() or sha256_file(listing_file) != provenance.sha256:
            raise ModelIntegrityError(f"{provenance.name} v{provenance.version}: cached file list checksum mismatch")
        listing: dict[str, str] = json.loads(listing_file.read_text(encoding="utf-8"))
        for rel, digest in listing.items():
            path = folder / rel
            if not path.is_file() or sha256_file(path) != digest:
                raise ModelIntegrityError(f"{provenance.name} v{provenance.version}: cached {rel} altered or missing")

    def build(self, folder: Path, provenance: Provenance, store_features: Sequence[str] | None) -> Any:
        raise NotImplementedError
