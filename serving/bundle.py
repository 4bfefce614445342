"""Model bundles: a verified model plus its feature manifest and provenance, immutable once loaded.

A kind of model is served through one :class:`BundleLoader`: it fetches ``name@alias`` from the
registry (files verified against the checksum recorded at registration), re-verifies a cached copy
(the same checksums, kept in the cache's ``bundle.json``), and builds the payload the routers use:
feature signature checked against the online store, then warmed. Adding a model kind is one loader
(registered in :data:`LOADERS`) and one router.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from features.datasets import Population
from features.errors import ModelIntegrityError
from models.calibration import ProbabilityCalibrator
from models.churn import LightGBMClassifier
from models.compiled import CompiledBooster, CompileError, split_probe
from models.reasons import DEFAULT_CUTS, band
from training import registry

BUNDLE_META = "bundle.json"  # provenance of a cached bundle, written beside its files

log = logging.getLogger("kairos.serving.models")


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
    source: str  # "registry" or "disk_cache"
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

    def ref(self) -> dict[str, str]:
        """How a response names the model that produced it."""
        return {"name": self.name, "version": self.version, "alias": self.alias}

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
            "engine": getattr(self.payload, "engine", None),  # propensity: lleaves (compiled) or lightgbm
        }


@dataclass(frozen=True)
class Fetched:
    """A version's files on local disk, verified, with its provenance."""

    folder: Path
    provenance: Provenance


class BundleLoader(Protocol):
    """How one kind of model is fetched, re-verified from the cache and made ready to serve."""

    kind: str

    def fetch(self, tracking_uri: str, name: str, alias: str, dst: Path) -> Fetched: ...

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


# --- propensity models: LightGBM text + calibrator + bands ------------------------------------------


class PropensityModel:
    """A LightGBM classifier, its calibrator and band cuts; features selected by name from the store's matrix.

    ``predict`` is what ``training/score.py`` computes: the raw LightGBM probability on float32 features,
    then the calibrator recorded at training. ``prior`` (the training base rate) is the fallback score.
    """

    def __init__(
        self,
        model: LightGBMClassifier,
        features: Sequence[str],
        prior: float | None,
        calibrator: ProbabilityCalibrator | None = None,
        cuts: tuple[float, float] = DEFAULT_CUTS,
        description: str | None = None,
        horizon_days: int | None = None,
        population: Population | None = None,
        compiled: CompiledBooster | None = None,
    ) -> None:
        self.model = model
        self.features = tuple(features)
        self.prior = prior
        self.calibrator = calibrator
        self.cuts = cuts
        self.description = description
        self.horizon_days = horizon_days
        self.population = population
        self.compiled = compiled
        self._columns: tuple[tuple[str, ...], np.ndarray] | None = None

    def columns(self, store_features: Sequence[str]) -> np.ndarray:
        """The model's features as column indices of the store's matrix, in model order (cached)."""
        key = tuple(store_features)
        cached = self._columns
        if cached is not None and cached[0] == key:
            return cached[1]
        index = {n: i for i, n in enumerate(key)}
        missing = [f for f in self.features if f not in index]
        if missing:
            raise ModelIntegrityError(f"the online store lacks feature(s) {missing}")
        cols = np.array([index[f] for f in self.features], dtype=np.intp)
        self._columns = (key, cols)
        return cols

    def raw(self, values: np.ndarray, store_features: Sequence[str]) -> np.ndarray:
        """Uncalibrated LightGBM probabilities per row of the store's float32 matrix (one LightGBM call)."""
        if not len(values):
            return np.empty(0)
        matrix = np.ascontiguousarray(values[:, self.columns(store_features)], dtype=np.float32)
        if self.compiled is not None:  # the same float32 values (it reads them as float64)
            return self.compiled.predict(matrix, n_jobs=1)
        return self.model.predict_proba(matrix)

    @property
    def engine(self) -> str:
        return "lleaves" if self.compiled is not None else "lightgbm"

    def predict(self, values: np.ndarray, store_features: Sequence[str]) -> np.ndarray:
        """Calibrated probabilities per row of the store's matrix ``values`` (vectorised)."""
        raw = self.raw(values, store_features)
        if self.calibrator is None or not len(raw):
            return raw
        return np.asarray(self.calibrator.transform(raw), dtype=np.float64)

    def bands(self, p: np.ndarray) -> np.ndarray:
        return band(p, self.cuts) if len(p) else np.empty(0, dtype=object)

    def outside(self, values: np.ndarray, store_features: Sequence[str]) -> np.ndarray:
        """True for rows of the store's matrix outside the model's population (churn: no order in the last
        year); their probability means nothing. All False when the model scores everyone."""
        if self.population is None:
            return np.zeros(len(values), dtype=bool)
        column = list(store_features).index(self.population.feature)
        return ~self.population.contains(values[:, column])


class PropensityLoader:
    """A propensity model: LightGBM's own text file checked against the recorded sha256 (and the metadata
    against its recorded checksum: ``registry.fetch``); never a pickle."""

    kind = "propensity"

    def __init__(self, compiled_dir: Path | None = None) -> None:
        self.compiled_dir = compiled_dir

    def fetch(self, tracking_uri: str, name: str, alias: str, dst: Path) -> Fetched:
        got = registry.fetch(tracking_uri, name, alias, dst)
        meta = dict(got.metadata.get("kairos") or {})
        features = tuple(meta.get("features") or ())
        metrics, trained_at = run_details(tracking_uri, got.run_id)
        prov = Provenance(
            name,
            got.version,
            alias,
            got.run_id,
            got.sha256,
            trained_at,
            features,
            metrics,
            meta.get("manifest") or {},
            {k: v for k, v in meta.items() if k not in ("manifest", "features")},
        )
        return Fetched(got.path, prov)

    def verify_cached(self, folder: Path, provenance: Provenance) -> None:
        path = folder / registry.MODEL_FILE
        if not path.is_file():
            raise ModelIntegrityError(f"{provenance.name} v{provenance.version}: cached {registry.MODEL_FILE} missing")
        if registry.sha256_text(path) != provenance.sha256:
            raise ModelIntegrityError(f"{provenance.name} v{provenance.version}: cached file checksum mismatch")

    def build(self, folder: Path, provenance: Provenance, store_features: Sequence[str] | None) -> PropensityModel:
        name, version = provenance.name, provenance.version
        path = folder / registry.MODEL_FILE
        text = path.read_text(encoding="utf-8")
        check_lightgbm_text(text, f"{name} v{version}")
        probe_in_subprocess(path, f"{name} v{version}")
        try:
            model = LightGBMClassifier.from_text(text)
        except Exception as exc:  # LightGBM raises its own error type on a garbled file
            raise ModelIntegrityError(f"{name} v{version}: the model file does not load: {exc}") from exc
        features = provenance.features or tuple(model.feature_names_)
        if list(features) != model.feature_names_:
            raise ModelIntegrityError(f"{name} v{version}: manifest features differ from the model's own")
        check_signature(name, version, features, store_features)
        meta = provenance.metadata
        try:
            calibrator = ProbabilityCalibrator.from_dict(meta["calibrator"]) if meta.get("calibrator") else None
            cuts_in = [float(c) for c in (meta.get("bands") or DEFAULT_CUTS)]
            band(np.array([0.5]), cuts_in)  # validates the cuts
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelIntegrityError(f"{name} v{version}: calibrator or bands do not load: {exc}") from exc
        prior = meta.get("base_rate", provenance.metrics.get("holdout_churn_rate"))
        horizon = meta.get("horizon_days")
        try:
            population = Population.of_model(meta)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelIntegrityError(f"{name} v{version}: population does not load: {exc}") from exc
        if population is not None and store_features is not None and population.feature not in store_features:
            raise ModelIntegrityError(f"{name} v{version}: the online store lacks feature {population.feature!r}")
        scored = PropensityModel(
            model,
            features,
            float(prior) if prior is not None else None,
            calibrator,
            (cuts_in[0], cuts_in[1]),
            meta.get("description"),
            int(horizon) if horizon is not None else None,
            population,
            self._compiled(text, model, f"{name} v{version}"),
        )
        warm = scored.predict(np.zeros((8, len(features)), dtype=np.float32), features)
        if not np.all(np.isfinite(warm)) or np.any((warm < 0) | (warm > 1)):
            raise ModelIntegrityError(f"{name} v{version}: warm-up predictions are not probabilities")
        return scored

    def _compiled(self, text: str, model: LightGBMClassifier, what: str) -> CompiledBooster | None:
        """A compiled build of ``text`` already in ``compiled_dir`` (``kairos compile``; never compiled here),
        used only if it reproduces LightGBM on rows that walk every split; else None and LightGBM."""
        if self.compiled_dir is None:
            return None
        try:
            compiled = CompiledBooster.cached(text, self.compiled_dir)
            if compiled is None:
                return None
            probe = split_probe(model.booster_)
            compiled.verify(probe.astype(np.float64), model.predict_proba(probe))
        except (CompileError, OSError, ValueError) as exc:
            log.warning("compiled model refused; serving with LightGBM", extra={"model": what, "error": str(exc)[:300]})
            return None
        return compiled


# --- bundles: folders of files listed in checksums.json ----------------------------------------------


class FolderLoader:
    """Fetches a bundle with every file verified (``registry.fetch_bundle``); subclasses build the payload."""

    kind = "bundle"

    def fetch(self, tracking_uri: str, name: str, alias: str, dst: Path) -> Fetched:
        from mlflow import MlflowClient

        got = registry.fetch_bundle(tracking_uri, name, alias, dst)
        mv = MlflowClient(tracking_uri=tracking_uri).get_model_version(name, got.version)
        metrics, trained_at = run_details(tracking_uri, got.run_id)
        manifest_file = got.path / "manifest.json"
        manifest = json.loads(manifest_file.read_text(encoding="utf-8")) if manifest_file.is_file() else {}
        prov = Provenance(
            name,
            got.version,
            alias,
            got.run_id,
            mv.tags.get(registry.TAG_SHA256, ""),
            trained_at,
            (),
            metrics,
            manifest,
        )
        return Fetched(got.path, prov)

    def verify_cached(self, folder: Path, provenance: Provenance) -> None:
        listing_file = folder / registry.CHECKSUMS
        if not listing_file.is_file() or registry.sha256_text(listing_file) != provenance.sha256:
            raise ModelIntegrityError(f"{provenance.name} v{provenance.version}: cached file list checksum mismatch")
        listing: dict[str, str] = json.loads(listing_file.read_text(encoding="utf-8"))
        for rel, digest in listing.items():
            path = folder / rel
            if not path.is_file() or registry.sha256_text(path) != digest:
                raise ModelIntegrityError(f"{provenance.name} v{provenance.version}: cached {rel} altered or missing")

    def build(self, folder: Path, provenance: Provenance, store_features: Sequence[str] | None) -> Any:
        raise NotImplementedError


def check_lightgbm_text(text: str, what: str) -> None:
    """A complete LightGBM text model: as many trees as its header announces, and the closing markers.

    LightGBM aborts the whole process on some malformed files instead of raising, so a file is checked
    before it reaches the parser (see also :func:`probe_in_subprocess`).
    """
    head, _, _ = text.partition("\nTree=")
    sizes = next(
        (line.removeprefix("tree_sizes=") for line in head.splitlines() if line.startswith("tree_sizes=")), None
    )
    trees = text.count("\nTree=")
    if sizes is None or "end of trees" not in text or "end of parameters" not in text:
        raise ModelIntegrityError(f"{what}: the model file does not load: incomplete LightGBM text (truncated?)")
    if len(sizes.split()) != trees:
        raise ModelIntegrityError(
            f"{what}: the model file does not load: header announces {len(sizes.split())} trees, file has {trees}"
        )


_PROBE = """
import ctypes, sys
lib = ctypes.cdll.LoadLibrary(sys.argv[2])
iterations, handle = ctypes.c_int(0), ctypes.c_void_p()
rc = lib.LGBM_BoosterCreateFromModelfile(sys.argv[1].encode(), ctypes.byref(iterations), ctypes.byref(handle))
sys.exit(0 if rc == 0 else 3)
"""


def probe_in_subprocess(path: Path, what: str, timeout: float = 120.0) -> None:
    """Parse the model once in a child process: a file that crashes LightGBM crashes the child, not the API.

    The child loads only LightGBM's shared library through ctypes (no pandas, no scikit-learn), so the
    probe costs a fraction of a second beside the load it protects.
    """
    from lightgbm.basic import _LIB

    try:
        done = subprocess.run(
            [sys.executable, "-S", "-c", _PROBE, str(path), str(_LIB._name)], capture_output=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelIntegrityError(f"{what}: the model file does not load: parsing took over {timeout} s") from exc
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise ModelIntegrityError(f"{what}: the model file does not load (exit {done.returncode}): {tail[0][:200]}")


def _recs_loader() -> BundleLoader:
    from serving.recs_bundle import RecsLoader

    return RecsLoader()


def _decision_loader(kind: str) -> BundleLoader:
    from serving import decision_bundles

    loader: BundleLoader = decision_bundles.LOADERS[kind]()
    return loader


# Model kind -> loader. Any other kind is a propensity model (its registered LightGBM text).
LOADERS: dict[str, Any] = {
    "recs": _recs_loader,
    "clv": lambda: _decision_loader("clv"),
    "sendtime": lambda: _decision_loader("sendtime"),
    "offers": lambda: _decision_loader("offers"),
}
BUNDLE_KINDS = frozenset(LOADERS)


def is_propensity(kind: str) -> bool:
    return kind not in BUNDLE_KINDS


def loader_for(kind: str, compiled_dir: Path | None = None) -> BundleLoader:
    """The loader of ``kind``; propensity models use lleaves builds found in ``compiled_dir``."""
    if kind in LOADERS:
        loader: BundleLoader = LOADERS[kind]()
        return loader
    return PropensityLoader(compiled_dir)
