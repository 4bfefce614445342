"""Propensity bundles: a LightGBM classifier in its own text format, its calibrator, band cuts and population.

Training logs one through :func:`log_model` (MLflow's LightGBM flavour, the :class:`PropensityMeta` as the
model's ``kairos`` metadata, its checksum as a version tag); the API and the nightly export read it back
through :class:`PropensityBundle` into the one scorer, :class:`PropensityModel`. Never a pickle.
"""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from bundles import registry
from bundles.base import Fetched, FolderBundle, Provenance, check_signature
from bundles.errors import ModelIntegrityError
from features.contract import Channel
from features.io import sha256_file
from models.baselines import PropensityBaseline
from models.calibration import ProbabilityCalibrator
from models.churn import LightGBMClassifier
from models.compiled import CompiledBooster, CompileError, split_probe
from models.population import Population
from models.reasons import DEFAULT_CUTS, band
from models.stacking import BaselineInputs, StackingError

log = logging.getLogger("kairos.bundles")

KIND = "propensity"
ENGAGEMENT_ACTIONS = ("open", "click")
KAIROS = "kairos"  # model_kind of Kairos's own (LightGBM) models
BASELINE_PREFIX = "baseline:"
BASELINE_FILE = "baseline.json"  # a baseline version's one file: its metadata and the fitted baseline


def baseline_kind(name: str) -> str:
    """The ``model_kind`` recorded for baseline ``name`` (``baseline:bgnbd``)."""
    return f"{BASELINE_PREFIX}{name}"


def baseline_name(model_kind: str | None) -> str | None:
    """``bgnbd`` for ``baseline:bgnbd``; None for Kairos's own model kind."""
    if model_kind and model_kind.startswith(BASELINE_PREFIX):
        return model_kind.removeprefix(BASELINE_PREFIX)
    return None


class Scores(Protocol):
    """What the scorer needs of a model: its feature order and a score per row of a matrix in that order
    (a :class:`models.churn.LightGBMClassifier` or a :class:`models.baselines.PropensityBaseline`)."""

    @property
    def feature_names_(self) -> list[str]: ...
    def predict_proba(self, X: Any) -> np.ndarray: ...


def engagement_name(action: str, channel: str) -> str:
    """The registered name of the model of ``action`` on ``channel`` (e.g. ``engagement_open_email``)."""
    return f"engagement_{action}_{channel}"


# Every propensity model Kairos trains by default, by registered name (training/propensity.py's tasks).
MODEL_NAMES: tuple[str, ...] = (
    "churn",
    "purchase",
    *(engagement_name(a, str(ch)) for ch in Channel for a in ENGAGEMENT_ACTIONS),
)


@dataclass(frozen=True)
class PropensityMeta:
    """What a propensity model records beside its LightGBM text (the MLmodel's ``metadata.kairos``)."""

    features: tuple[str, ...]
    manifest: dict[str, Any]
    target: str
    description: str | None = None
    horizon_days: int | None = None
    calibrator: dict[str, Any] | None = None
    bands: tuple[float, float] = DEFAULT_CUTS
    base_rate: float | None = None
    population: Population | None = None
    holdout_cutoff: str | None = None
    model_kind: str = KAIROS  # "kairos" (the LightGBM model) or "baseline:<name>" (models/baselines.py)
    # the baselines' outputs the model reads besides ``features`` (models/stacking.py), appended after them
    stacking: dict[str, Any] | None = None

    @property
    def baseline(self) -> str | None:
        """The baseline's name (``bgnbd``, ...) when this version serves a baseline, else None."""
        return baseline_name(self.model_kind)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "features": list(self.features),
            "manifest": self.manifest,
            "target": self.target,
            "description": self.description,
            "horizon_days": self.horizon_days,
            "population": self.population.to_dict() if self.population is not None else None,
            "calibrator": self.calibrator,
            "bands": list(self.bands),
            "base_rate": self.base_rate,
        }
        if self.holdout_cutoff is not None:
            out["holdout_cutoff"] = self.holdout_cutoff
        if self.model_kind != KAIROS:  # absent on Kairos's own models: their recorded checksums stay valid
            out["model_kind"] = self.model_kind
        if self.stacking is not None:
            out["stacking"] = self.stacking
        return out

    @classmethod
    def from_dict(cls, meta: dict[str, Any], what: str = "model") -> PropensityMeta:
        """The metadata as recorded (older versions may lack keys: defaults, never guesses).

        Raises:
            ModelIntegrityError: a recorded value does not parse (bands, population, horizon).
        """
        try:
            cuts = [float(c) for c in (meta.get("bands") or DEFAULT_CUTS)]
            band(np.array([0.5]), cuts)  # validates the cuts
            horizon = meta.get("horizon_days")
            base_rate = meta.get("base_rate")
            population = Population.from_dict(meta["population"]) if meta.get("population") else None
            return cls(
                features=tuple(meta.get("features") or ()),
                manifest=dict(meta.get("manifest") or {}),
                target=str(meta.get("target") or ""),
                description=meta.get("description"),
                horizon_days=int(horizon) if horizon is not None else None,
                calibrator=meta.get("calibrator") or None,
                bands=(cuts[0], cuts[1]),
                base_rate=float(base_rate) if base_rate is not None else None,
                population=population,
                holdout_cutoff=meta.get("holdout_cutoff"),
                model_kind=str(meta.get("model_kind") or KAIROS),
                stacking=meta.get("stacking") or None,
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelIntegrityError(f"{what}: calibrator, bands or population do not load: {exc}") from exc

    def checksum_tags(self) -> dict[str, str]:
        """The version tag that lets a reader detect metadata altered after registration."""
        return {registry.TAG_META_SHA256: registry.meta_checksum({"kairos": self.to_dict()})}


class PropensityModel:
    """A LightGBM classifier, its calibrator, band cuts and population: the one propensity scorer.

    The model may instead be a baseline (:class:`models.baselines.PropensityBaseline`, ``model_kind``
    ``baseline:<name>``), served when Kairos's own model did not beat it: the same rows in, the same
    calibrated probability, band and reasons out, and :attr:`baseline` names it in every answer.

    Rows come either as a matrix of the model's features in its order (:meth:`raw_matrix`, the nightly
    export) or as the online store's matrix with the store's feature names (:meth:`predict`, the API).
    Both give the raw LightGBM probability on float32 features (from the compiled build when there is
    one), then the calibrator recorded at training. ``prior`` (the training base rate) is the fallback.

    ``features`` are what the model reads from a feature row. With ``stacking`` (the baselines' outputs
    as inputs, :class:`models.stacking.BaselineInputs`) the LightGBM model has more columns than that:
    the derived ones, computed here from the row and appended after ``features`` in every path.
    """

    def __init__(
        self,
        model: Scores,
        features: Sequence[str],
        prior: float | None,
        calibrator: ProbabilityCalibrator | None = None,
        cuts: tuple[float, float] = DEFAULT_CUTS,
        description: str | None = None,
        horizon_days: int | None = None,
        population: Population | None = None,
        compiled: CompiledBooster | None = None,
        name: str = "",
        version: str = "",
        model_kind: str = KAIROS,
        stacking: BaselineInputs | None = None,
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
        self.name = name
        self.version = version
        self.model_kind = model_kind
        self.stacking = stacking
        self._columns: tuple[tuple[str, ...], np.ndarray] | None = None

    @classmethod
    def from_parts(
        cls,
        model: Scores,
        meta: PropensityMeta,
        *,
        prior: float | None = None,
        name: str = "",
        version: str = "",
    ) -> PropensityModel:
        """The scorer of a fitted model and its metadata (``prior`` defaults to the recorded base rate)."""
        calibrator = ProbabilityCalibrator.from_dict(meta.calibrator) if meta.calibrator else None
        stacking = BaselineInputs.from_dict(meta.stacking) if meta.stacking else None
        derived = stacking.to_dict()["columns"] if stacking is not None else []
        own = [f for f in model.feature_names_ if f not in derived]
        return cls(
            model,
            meta.features or tuple(own),
            meta.base_rate if prior is None else prior,
            calibrator,
            meta.bands,
            meta.description,
            meta.horizon_days,
            meta.population,
            None,
            name,
            version,
            meta.model_kind,
            stacking,
        )

    @property
    def baseline(self) -> str | None:
        """The baseline's name when this version serves a baseline (``bgnbd``, ...), else None."""
        return baseline_name(self.model_kind)

    def with_compiled(self, compiled: CompiledBooster | None) -> PropensityModel:
        """The same model scored by ``compiled`` (checked by the caller)."""
        twin = copy.copy(self)
        twin.compiled = compiled
        return twin

    def compile(self, cache_dir: Path, probe: pd.DataFrame) -> PropensityModel:
        """This model with its compiled form (built into ``cache_dir`` unless there), checked on ``probe``.

        Raises:
            CompileError: lleaves is missing, failed, or disagrees with LightGBM on the probe rows, or the
                model is a baseline (nothing to compile: it is a few arithmetic operations per row).
        """
        if not isinstance(self.model, LightGBMClassifier):
            raise CompileError(f"the {self.baseline or 'served'} baseline is not a LightGBM model; nothing to compile")
        compiled = CompiledBooster.build(self.model.to_text(), cache_dir)
        matrix = self.full_matrix(probe[list(self.features)].to_numpy(np.float32))
        compiled.verify(matrix, self.model.predict_proba(matrix))
        return self.with_compiled(compiled)

    @property
    def engine(self) -> str:
        if self.baseline is not None:
            return "baseline"
        return "lleaves" if self.compiled is not None else "lightgbm"

    # --- rows as the model's own features, in its order -------------------------------------------------

    def full_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """The LightGBM model's matrix from one of :attr:`features`: the derived columns appended (if any)."""
        if self.stacking is None:
            return matrix
        return np.ascontiguousarray(np.hstack([matrix, self.stacking.derive(matrix, self.features)]))

    def with_derived(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` (feature rows) with the derived columns the LightGBM model reads (for TreeSHAP reasons)."""
        if self.stacking is None:
            return frame
        derived = self.stacking.transform(frame)
        return pd.concat([frame.drop(columns=[c for c in derived.columns if c in frame.columns]), derived], axis=1)

    def raw_matrix(self, matrix: np.ndarray, n_jobs: int | None = None) -> np.ndarray:
        """Uncalibrated probabilities for a matrix of float32 values (float32 or float64 dtype) whose columns
        are the model's :attr:`features`, in its order. The compiled model reads a C-ordered float64 matrix as
        it is."""
        matrix = self.full_matrix(matrix)
        if self.compiled is not None:
            return self.compiled.predict(matrix, n_jobs=n_jobs)
        return self.model.predict_proba(matrix)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from raw ones (the raw ones when the version has no calibrator)."""
        if self.calibrator is None or not len(raw):
            return raw
        return np.asarray(self.calibrator.transform(raw), dtype=np.float64)

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities for a frame holding the model's feature columns (derived ones are
        recomputed from them, never read from the frame)."""
        return self.calibrate(self.raw_matrix(frame[list(self.features)].to_numpy(np.float32)))

    # --- rows of the online store's matrix ---------------------------------------------------------------

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
        return self.raw_matrix(matrix, n_jobs=1)  # the same float32 values (compiled reads them as float64)

    def predict(self, values: np.ndarray, store_features: Sequence[str]) -> np.ndarray:
        """Calibrated probabilities per row of the store's matrix ``values`` (vectorised)."""
        return self.calibrate(self.raw(values, store_features))

    def bands(self, p: np.ndarray) -> np.ndarray:
        return band(p, self.cuts) if len(p) else np.empty(0, dtype=object)

    def outside(self, values: np.ndarray, store_features: Sequence[str]) -> np.ndarray:
        """True for rows of the store's matrix outside the model's population (churn: no order in the last
        year); their probability means nothing. All False when the model scores everyone."""
        if self.population is None:
            return np.zeros(len(values), dtype=bool)
        column = list(store_features).index(self.population.feature)
        return ~self.population.contains(values[:, column])


# --- writing (training) -------------------------------------------------------------------------------


def log_model(model: LightGBMClassifier, meta: PropensityMeta, sample: pd.DataFrame) -> Any:
    """Log ``model`` in the active MLflow run as LightGBM text with ``meta`` as its ``kairos`` metadata.

    ``sample`` (a few rows of the model's features) gives the signature. Register the returned model URI
    with :func:`bundles.registry.register` and ``meta.checksum_tags()``.
    """
    import lightgbm as lgb
    import mlflow
    from mlflow.models import infer_signature

    rows = sample[list(meta.features)].astype(np.float32)
    scorer = PropensityModel.from_parts(model, meta)
    return mlflow.lightgbm.log_model(
        lgb.Booster(model_str=model.to_text()),
        name="model",
        signature=infer_signature(rows, scorer.score(rows)),
        metadata={"kairos": meta.to_dict()},
        pip_requirements=registry.requirements("lightgbm", "numpy", "scikit-learn"),
    )


def write_baseline(folder: Path, baseline: PropensityBaseline, meta: PropensityMeta) -> Path:
    """Write a baseline version's one file (its metadata and the fitted baseline, JSON) into ``folder``;
    log it with :func:`bundles.registry.log_bundle`, which lists its checksum."""
    if meta.baseline is None:
        raise ValueError(f"model_kind: a baseline is recorded as 'baseline:<name>', got {meta.model_kind!r}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / BASELINE_FILE
    path.write_text(json.dumps({"kairos": meta.to_dict(), "baseline": baseline.to_dict()}, indent=1), encoding="utf-8")
    return path


def read_baseline(folder: Path, what: str) -> tuple[PropensityMeta, PropensityBaseline]:
    """The metadata and fitted baseline of a (verified) baseline folder.

    Raises:
        ModelIntegrityError: the file is missing or does not load.
    """
    path = folder / BASELINE_FILE
    if not path.is_file():
        raise ModelIntegrityError(f"{what}: {BASELINE_FILE} missing; not a baseline bundle")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        baseline = PropensityBaseline.from_dict(state["baseline"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelIntegrityError(f"{what}: the baseline does not load: {exc}") from exc
    return PropensityMeta.from_dict(state.get("kairos") or {}, what), baseline


# --- reading (the API, the nightly export) ------------------------------------------------------------


class PropensityBundle:
    """A propensity model: LightGBM's own text file checked against the recorded sha256 (and the metadata
    against its recorded checksum: :func:`bundles.registry.fetch`); never a pickle.

    ``compiled_dir``: where ``kairos compile`` put lleaves builds; a build found there is used only if it
    reproduces LightGBM on rows that walk every split (never compiled here).
    """

    kind = KIND

    def __init__(self, compiled_dir: Path | None = None) -> None:
        self.compiled_dir = compiled_dir

    def fetch(self, tracking_uri: str, name: str, alias: str, dst: Path, *, version: str | None = None) -> Fetched:
        version, model_kind = registry.resolve_kind(tracking_uri, name, alias, version)
        if baseline_name(model_kind) is not None:
            return self._fetch_baseline(tracking_uri, name, alias, dst, version)
        got = registry.fetch(tracking_uri, name, alias, dst, version=version)
        return _fetched(tracking_uri, name, alias, got, dict(got.metadata.get("kairos") or {}))

    def _fetch_baseline(self, tracking_uri: str, name: str, alias: str, dst: Path, version: str) -> Fetched:
        """A baseline version: a folder bundle (its JSON file and the checksum list), every file verified."""
        got = registry.fetch_bundle(tracking_uri, name, alias, dst, version=version)
        return _fetched(tracking_uri, name, alias, got, read_baseline(got.path, f"{name} v{got.version}")[0].to_dict())

    def verify_cached(self, folder: Path, provenance: Provenance) -> None:
        if baseline_name(provenance.metadata.get("model_kind")) is not None:
            FolderBundle().verify_cached(folder, provenance)
            return
        path = folder / registry.MODEL_FILE
        if not path.is_file():
            raise ModelIntegrityError(f"{provenance.name} v{provenance.version}: cached {registry.MODEL_FILE} missing")
        if sha256_file(path) != provenance.sha256:
            raise ModelIntegrityError(f"{provenance.name} v{provenance.version}: cached file checksum mismatch")

    def build(self, folder: Path, provenance: Provenance, store_features: Sequence[str] | None) -> PropensityModel:
        name, version = provenance.name, provenance.version
        what = f"{name} v{version}"
        if baseline_name(provenance.metadata.get("model_kind")) is not None:
            return self._build_baseline(folder, provenance, store_features)
        path = folder / registry.MODEL_FILE
        text = path.read_text(encoding="utf-8")
        check_lightgbm_text(text, what)
        probe_in_subprocess(path, what)
        try:
            model = LightGBMClassifier.from_text(text)
        except Exception as exc:  # LightGBM raises its own error type on a garbled file
            raise ModelIntegrityError(f"{what}: the model file does not load: {exc}") from exc
        recorded = {**provenance.metadata, "features": list(provenance.features), "manifest": provenance.manifest}
        meta = PropensityMeta.from_dict(recorded, what)
        try:
            derived = BaselineInputs.from_dict(meta.stacking).to_dict()["columns"] if meta.stacking else []
        except StackingError as exc:
            raise ModelIntegrityError(f"{what}: {exc}") from exc
        features = meta.features or tuple(f for f in model.feature_names_ if f not in derived)
        if [*features, *derived] != model.feature_names_:
            raise ModelIntegrityError(f"{what}: manifest features differ from the model's own")
        check_signature(name, version, features, store_features)
        population = meta.population
        if population is not None and store_features is not None and population.feature not in store_features:
            raise ModelIntegrityError(f"{what}: the online store lacks feature {population.feature!r}")
        try:
            scorer = PropensityModel.from_parts(
                model,
                meta,
                prior=meta.base_rate if meta.base_rate is not None else provenance.metrics.get("holdout_churn_rate"),
                name=name,
                version=version,
            )
        except (KeyError, TypeError, ValueError) as exc:  # StackingError is a ValueError
            raise ModelIntegrityError(f"{what}: calibrator or derived inputs do not load: {exc}") from exc
        scorer = scorer.with_compiled(self._compiled(text, model, what))
        warm = scorer.predict(np.zeros((8, len(features)), dtype=np.float32), features)
        if not np.all(np.isfinite(warm)) or np.any((warm < 0) | (warm > 1)):
            raise ModelIntegrityError(f"{what}: warm-up predictions are not probabilities")
        return scorer

    def _build_baseline(
        self, folder: Path, provenance: Provenance, store_features: Sequence[str] | None
    ) -> PropensityModel:
        name, version = provenance.name, provenance.version
        what = f"{name} v{version}"
        meta, baseline = read_baseline(folder, what)
        if meta.model_kind != provenance.metadata.get("model_kind"):
            raise ModelIntegrityError(f"{what}: the file holds {meta.model_kind!r}, the registry says otherwise")
        features = meta.features
        if list(features) != list(baseline.feature_names_):
            raise ModelIntegrityError(f"{what}: manifest features differ from the baseline's own")
        check_signature(name, version, features, store_features)
        population = meta.population
        if population is not None and store_features is not None and population.feature not in store_features:
            raise ModelIntegrityError(f"{what}: the online store lacks feature {population.feature!r}")
        try:
            scorer = PropensityModel.from_parts(baseline, meta, name=name, version=version)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelIntegrityError(f"{what}: calibrator does not load: {exc}") from exc
        warm = scorer.predict(np.zeros((8, len(features)), dtype=np.float32), features)
        if not np.all(np.isfinite(warm)) or np.any((warm < 0) | (warm > 1)):
            raise ModelIntegrityError(f"{what}: warm-up predictions are not probabilities")
        return scorer

    def load(self, tracking_uri: str, name: str, alias: str, dst: Path) -> PropensityModel:
        """Fetch, verify and build ``name@alias`` (the nightly export's path; the API's goes through its
        model slots, which keep a verified copy on disk)."""
        fetched = self.fetch(tracking_uri, name, alias, dst)
        return self.build(fetched.folder, fetched.provenance, None)

    def _compiled(self, text: str, model: LightGBMClassifier, what: str) -> CompiledBooster | None:
        """A compiled build of ``text`` already in ``compiled_dir``, used only if it reproduces LightGBM on
        rows that walk every split; else None and LightGBM."""
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


def _fetched(tracking_uri: str, name: str, alias: str, got: Any, meta: dict[str, Any]) -> Fetched:
    """The fetched folder of a version (a Kairos model or a baseline) and its provenance from ``meta``."""
    prov = Provenance.of_run(
        tracking_uri,
        name,
        got.version,
        alias,
        got.run_id,
        got.sha256,
        features=tuple(meta.get("features") or ()),
        manifest=meta.get("manifest") or {},
        metadata={k: v for k, v in meta.items() if k not in ("manifest", "features")},
    )
    return Fetched(got.path, prov)


QUANTILE_ROWS = 100_000  # customers a quantile band cut is resolved on


def snapshot_scores(model: PropensityModel, snapshot_file: Path, rows: int = QUANTILE_ROWS) -> np.ndarray:
    """Calibrated probabilities of the snapshot's first ``rows`` customers inside the model's population:
    what quantile band cuts (the policy file's ``bands``) are resolved on. The snapshot is in customer-key
    order, a keyed hash, so its first rows are a uniform sample of the base (all of it up to ``rows``)."""
    import pyarrow.parquet as pq

    wanted = list(dict.fromkeys([*model.features, *([model.population.feature] if model.population else [])]))
    batch = next(pq.ParquetFile(snapshot_file).iter_batches(batch_size=rows, columns=wanted), None)
    if batch is None:
        return np.empty(0)
    frame = batch.to_pandas()
    p = model.score(frame)
    if model.population is not None:
        p = p[model.population.contains(frame[model.population.feature].to_numpy(np.float64))]
    return p
