"""MLflow helpers: tracking set-up, provenance, registration with checksums and aliases.

The embedded default is a SQLite file plus a local artifact folder beside it; any tracking server
works by URI. Models are logged in LightGBM's own text format and loaded back from that file only
(never through a pickle loader), after checking the sha256 recorded on the registered version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from bundles.errors import ModelIntegrityError, ModelNotFoundError
from features.io import sha256_file

MODEL_FILE = "model.lgb"
TAG_SHA256 = "kairos.sha256"
TAG_METRIC = "kairos.selection_metric"
TAG_DECISION = "kairos.decision"
TAG_META_SHA256 = "kairos.meta_sha256"  # checksum of the model's metadata (calibrator, bands, manifest)
TAG_KIND = "kairos.model_kind"  # "baseline:<name>" on a version that serves a baseline (absent: Kairos's model)
TAG_PREVIOUS = "kairos.previous_champion"  # the version that was champion before this one took over
CHAMPION = "champion"
CHALLENGER = "challenger"

_LIBRARIES = ("lightgbm", "scikit-learn", "pandas", "numpy", "ibis-framework", "duckdb", "mlflow", "pyarrow")


def configure(tracking_uri: str) -> MlflowClient:
    """Point MLflow at ``tracking_uri``; a ``sqlite:///path.db`` URI keeps artifacts in a folder beside it."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created with a local artifact folder for SQLite stores."""
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
        location = (db.parent / "mlartifacts").as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def provenance() -> dict[str, str]:
    """Git commit and library versions, recorded as run tags."""
    tags = {f"lib.{name}": _version(name) for name in _LIBRARIES}
    tags["git.commit"] = _git_commit()
    return tags


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def meta_checksum(meta: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a model's metadata (what MLmodel stores beside the model file)."""
    canonical = json.dumps(meta, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Registration:
    """The outcome of registering a version: its number, checksum and which alias it got."""

    name: str
    version: str
    sha256: str
    alias: str
    reason: str


Challenge = Callable[[str], Any]
"""Scores the champion (its version number given) on the candidate's own holdout and returns the paired
interval of (candidate - champion) on the selection metric: a :class:`models.intervals.Interval`, or any
object with ``gain`` (point, low, high of the improvement) and ``replicates``. Raises when the champion
cannot be scored there (other features, load failure): the decision then falls back to the stored metrics."""


def register(
    client: MlflowClient,
    model_uri: str,
    name: str,
    *,
    metric_name: str,
    metric_value: float,
    margin: float = 0.0,
    extra_tags: dict[str, str] | None = None,
    checksum_file: str = MODEL_FILE,
    challenge: Challenge | None = None,
    note: str = "",
) -> Registration:
    """Register ``model_uri`` under ``name``, record its checksum, and move an alias.

    The metric is stored at full precision (``repr`` of the float). The new version becomes ``@champion``
    when there is none or when it beats the champion: with ``challenge``, when the lower end of the
    paired bootstrap interval of (candidate - champion) on the candidate's holdout is above ``margin``
    (an identical retrain never is); without it, or when the champion cannot be scored on that holdout
    (the reason says so), when ``metric_value`` exceeds the champion's stored metric by more than
    ``margin``. Otherwise it becomes ``@challenger``. ``note`` is appended to the recorded reason.
    """
    champion = _alias_version(client, name, CHAMPION)
    if champion is None:
        alias, reason = CHAMPION, "no champion yet"
    else:
        alias, reason = _decide(champion, metric_name, float(metric_value), margin, challenge)
    if note:
        reason = f"{reason}; {note}"
    return register_decided(
        client,
        model_uri,
        name,
        alias=alias,
        reason=reason,
        metric_name=metric_name,
        metric_value=metric_value,
        extra_tags=extra_tags,
        checksum_file=checksum_file,
    )


def register_decided(
    client: MlflowClient,
    model_uri: str,
    name: str,
    *,
    alias: str,
    reason: str,
    metric_name: str,
    metric_value: float,
    extra_tags: dict[str, str] | None = None,
    checksum_file: str = MODEL_FILE,
) -> Registration:
    """Register ``model_uri`` under ``name`` with its checksum and give it ``alias``, a decision taken by the
    caller (the propensity gate: training/gate.py) and recorded with its ``reason``. A version that takes
    ``@champion`` from another records that one as its previous champion (what a rollback returns to)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp))
        checksum = sha256_file(local / checksum_file)
    version = mlflow.register_model(model_uri, name)
    v = str(version.version)
    client.set_model_version_tag(name, v, TAG_SHA256, checksum)
    client.set_model_version_tag(name, v, TAG_METRIC, f"{metric_name}={float(metric_value)!r}")
    for key, value in (extra_tags or {}).items():
        client.set_model_version_tag(name, v, key, value)
    champion = _alias_version(client, name, CHAMPION)
    if alias == CHAMPION and champion is not None:
        client.set_model_version_tag(name, v, TAG_PREVIOUS, str(champion.version))
    client.set_registered_model_alias(name, alias, v)
    client.set_model_version_tag(name, v, TAG_DECISION, f"{alias}: {reason}")
    return Registration(name, v, checksum, alias, reason)


def _decide(
    champion: Any, metric_name: str, metric_value: float, margin: float, challenge: Challenge | None
) -> tuple[str, str]:
    """(alias, reason) of a candidate against the current ``champion`` version."""
    fallback = ""
    if challenge is not None:
        try:
            interval = challenge(str(champion.version))
        except Exception as exc:  # any failure to score the champion: fall back, and say why
            fallback = f" (champion v{champion.version} could not be scored on this holdout: {str(exc)[:200]}; " + (
                "compared stored metrics)"
            )
        else:
            point, low, high = interval.gain
            wins = low > margin
            verdict = "beats" if wins else "does not beat"
            return (CHAMPION if wins else CHALLENGER), (
                f"{metric_name} {verdict} champion v{champion.version} on the same holdout: "
                f"{point:+.4f} [{low:+.4f}, {high:+.4f}] (paired bootstrap 95 %, {interval.replicates} "
                f"resamples); promotion needs the lower end above {margin}"
            )
    best = _metric_of(champion.tags.get(TAG_METRIC, ""), metric_name)
    if best is None or metric_value > best + margin:
        alias, verdict = CHAMPION, "beats"
    else:
        alias, verdict = CHALLENGER, "does not beat"
    stored = "no comparable stored metric" if best is None else repr(best)
    return alias, (
        f"{metric_name} {metric_value!r} {verdict} champion v{champion.version} ({stored}) by > {margin}{fallback}"
    )


def promote(
    tracking_uri: str,
    name: str,
    version: str,
    alias: str = CHAMPION,
    verify: Callable[[str], None] | None = None,
) -> Registration:
    """Move ``alias`` to ``version`` by hand; the decision (and the champion it replaces) is recorded.
    ``verify(version)``, when given, runs first and stops the move by raising.

    Raises:
        ModelNotFoundError: no such model version.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    mv = model_version(client, tracking_uri, name, alias, version)
    if verify is not None:
        verify(str(mv.version))
    current = _alias_version(client, name, alias)
    reason = f"promoted by hand (was v{current.version})" if current is not None else "promoted by hand"
    if alias == CHAMPION and current is not None and str(current.version) != str(mv.version):
        client.set_model_version_tag(name, str(mv.version), TAG_PREVIOUS, str(current.version))
    client.set_registered_model_alias(name, alias, str(mv.version))
    client.set_model_version_tag(name, str(mv.version), TAG_DECISION, f"{alias}: {reason}")
    return Registration(name, str(mv.version), mv.tags.get(TAG_SHA256, ""), alias, reason)


def rollback(tracking_uri: str, name: str, verify: Callable[[str], None] | None = None) -> Registration:
    """Give ``@champion`` back to the version that held it before the current one. ``verify(version)``,
    when given, runs on that version first and stops the move by raising.

    Raises:
        ModelNotFoundError: no champion, or no earlier champion recorded for it.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    current = _alias_version(client, name, CHAMPION)
    if current is None:
        raise ModelNotFoundError(f"model {name!r} has no @{CHAMPION} to roll back")
    previous = current.tags.get(TAG_PREVIOUS)
    if not previous:
        raise ModelNotFoundError(f"{name} v{current.version} replaced no earlier champion; nothing to roll back to")
    if verify is not None:
        verify(previous)
    client.set_registered_model_alias(name, CHAMPION, previous)
    reason = f"rolled back from v{current.version}"
    client.set_model_version_tag(name, previous, TAG_DECISION, f"{CHAMPION}: {reason}")
    client.set_model_version_tag(name, str(current.version), TAG_DECISION, f"demoted: rolled back to v{previous}")
    back = client.get_model_version(name, previous)
    return Registration(name, previous, back.tags.get(TAG_SHA256, ""), CHAMPION, reason)


def _alias_version(client: MlflowClient, name: str, alias: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _metric_of(tag: str, metric_name: str) -> float | None:
    key, _, value = tag.partition("=")
    if key != metric_name:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def resolve_kind(tracking_uri: str, name: str, alias: str, version: str | None) -> tuple[str, str]:
    """The version ``name@alias`` points at (or ``version``) and its recorded model kind ("" when none).

    Raises:
        ModelNotFoundError: no such model, alias or version.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    mv = model_version(client, tracking_uri, name, alias, version)
    return str(mv.version), str(mv.tags.get(TAG_KIND) or "")


def model_version(client: MlflowClient, tracking_uri: str, name: str, alias: str, version: str | None) -> Any:
    """The registry's record of ``version`` of ``name``, or of the version ``name@alias`` points at.

    Raises:
        ModelNotFoundError: no such model, alias or version.
    """
    try:
        if version is not None:
            return client.get_model_version(name, version)
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if version is not None:
            raise ModelNotFoundError(
                f"no version {version} of model {name!r} in the registry at {tracking_uri}"
            ) from exc
        raise ModelNotFoundError(f"no model {name}@{alias} in the registry at {tracking_uri}") from exc


@dataclass(frozen=True)
class FetchedModel:
    """A registered model version's files, verified and on local disk."""

    name: str
    version: str
    alias: str
    run_id: str
    path: Path
    sha256: str
    metadata: dict[str, Any]


def fetch(tracking_uri: str, name: str, alias: str, dst: Path, *, version: str | None = None) -> FetchedModel:
    """Download ``name@alias`` (or ``version`` when given) into ``dst`` and verify its recorded checksums.

    Fails closed: a version without its recorded file checksum or its metadata checksum is refused.

    Raises:
        ModelNotFoundError: no such model, alias or version in the registry.
        ModelIntegrityError: the file is missing, its sha256 differs from the one recorded at
            registration, or the metadata was altered (or never checksummed).
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    mv = model_version(client, tracking_uri, name, alias, version)
    dst.mkdir(parents=True, exist_ok=True)
    source = client.get_model_version_download_uri(name, str(mv.version))
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dst)))
    path = local / MODEL_FILE
    if not path.is_file():
        raise ModelIntegrityError(f"{name} v{mv.version}: {MODEL_FILE} missing from the artifact")
    recorded = mv.tags.get(TAG_SHA256)
    actual = sha256_file(path)
    if not recorded or recorded != actual:
        raise ModelIntegrityError(
            f"{name} v{mv.version}: checksum mismatch (recorded {recorded!r}, file {actual[:12]}...); refusing to load"
        )
    import yaml

    meta = yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8")) or {}
    recorded_meta = mv.tags.get(TAG_META_SHA256)
    if not recorded_meta:
        raise ModelIntegrityError(f"{name} v{mv.version}: no metadata checksum recorded; refusing to load")
    if recorded_meta != meta_checksum(dict(meta.get("metadata") or {})):
        raise ModelIntegrityError(f"{name} v{mv.version}: metadata altered since registration; refusing to load")
    return FetchedModel(
        name=name,
        version=str(mv.version),
        alias=alias,
        run_id=str(mv.run_id),
        path=local,
        sha256=actual,
        metadata=dict(meta.get("metadata") or {}),
    )


def requirements(*dists: str) -> list[str]:
    """Exact pins of the installed ``dists``: given to MLflow so it does not start a subprocess to infer them."""
    return [f"{d}=={_version(d)}" for d in dists]


def quiet_mlflow() -> None:
    """Keep MLflow's own progress output out of the CLI's screen."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


# --- bundles: folders of NumPy / Parquet / JSON files -------------------------------------------------

BUNDLE_DIR = "artifacts/bundle"
CHECKSUMS = "checksums.json"
_BUNDLE_SUFFIXES = (".npy", ".npz", ".parquet", ".json")


def log_bundle(folder: Path, name: str, metadata: dict[str, Any] | None = None) -> Any:
    """Log a folder of model files in the active run as a registrable MLflow model (no pickle).

    A ``checksums.json`` listing every file's sha256 is written into the folder first; the registry
    records the checksum of that list, so :func:`fetch_bundle` can verify every file.

    Raises:
        ModelIntegrityError: the folder holds a file type Kairos does not load (e.g. a pickle).
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS)
    odd = [p.name for p in files if p.suffix not in _BUNDLE_SUFFIXES]
    if odd:
        raise ModelIntegrityError(f"bundle {folder} holds files Kairos does not load: {odd}")
    write_listing(folder, files)
    code = Path(__file__).resolve().parent / "pyfunc.py"
    with tempfile.TemporaryDirectory() as tmp:  # MLflow stores the folder under its own name
        staged = Path(tmp) / Path(BUNDLE_DIR).name
        shutil.copytree(folder, staged)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(code),
            artifacts={"bundle": str(staged)},
            metadata=metadata or {},
            pip_requirements=requirements("mlflow", "numpy", "pandas", "pyarrow"),
        )


def write_listing(folder: Path, files: list[Path] | None = None) -> Path:
    """Write ``checksums.json`` (every file's sha256, by path relative to ``folder``) and return its path."""
    folder = Path(folder)
    files = files if files is not None else sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS)
    listing = {str(p.relative_to(folder)): sha256_file(p) for p in files}
    path = folder / CHECKSUMS
    path.write_text(json.dumps(listing, indent=2, sort_keys=True), encoding="utf-8")
    return path


def register_bundle(client: MlflowClient, model_uri: str, name: str, **kwargs: Any) -> Registration:
    """:func:`register` for a bundle logged with :func:`log_bundle` (checksum of its file list)."""
    return register(client, model_uri, name, checksum_file=f"{BUNDLE_DIR}/{CHECKSUMS}", **kwargs)


@dataclass(frozen=True)
class JobRun:
    """One training job's MLflow run: the client, the run id and a scratch folder removed afterwards."""

    client: MlflowClient
    run_id: str
    folder: Path


@contextmanager
def job_run(tracking_uri: str, experiment: str, model: str, tags: dict[str, str] | None = None) -> Iterator[JobRun]:
    """Start a run in ``experiment`` with the provenance tags (git commit, library versions) and
    ``kairos.model``; the run ends (and the scratch folder goes) when the block does."""
    quiet_mlflow()
    client = configure(tracking_uri)
    experiment_id = ensure_experiment(experiment, tracking_uri)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.set_tags({**provenance(), "kairos.model": model, **(tags or {})})
        yield JobRun(client, run.info.run_id, Path(tmp))


def register_in_run(
    job: JobRun,
    model_uri: str,
    name: str,
    *,
    metric_name: str,
    metric_value: float,
    margin: float = 0.0,
    extra_tags: dict[str, str] | None = None,
    checksum_file: str = MODEL_FILE,
    challenge: Challenge | None = None,
    note: str = "",
) -> Registration:
    """:func:`register` from inside the job's run; the version records the run, the run the decision."""
    registration = register(
        job.client,
        model_uri,
        name,
        metric_name=metric_name,
        metric_value=metric_value,
        margin=margin,
        extra_tags={"kairos.run_id": job.run_id, **(extra_tags or {})},
        checksum_file=checksum_file,
        challenge=challenge,
        note=note,
    )
    mlflow.set_tag("kairos.registration", f"v{registration.version} -> @{registration.alias}: {registration.reason}")
    return registration


def log_and_register(
    job: JobRun,
    folder: Path,
    name: str,
    *,
    metadata: dict[str, Any],
    register: bool,
    metric_name: str,
    metric_value: float,
    margin: float = 0.0,
    extra_tags: dict[str, str] | None = None,
    challenge: Challenge | None = None,
    note: str = "",
) -> Registration | None:
    """Log a bundle folder in the job's run (:func:`log_bundle`) and, if ``register``, register it as
    ``name``: ``@champion`` when it beats the champion's ``metric_name`` by more than ``margin``, else
    ``@challenger``. Returns the registration, or None when not registering."""
    info = log_bundle(folder, name, metadata)
    if not register:
        return None
    return register_in_run(
        job,
        info.model_uri,
        name,
        metric_name=metric_name,
        metric_value=metric_value,
        margin=margin,
        extra_tags=extra_tags,
        checksum_file=f"{BUNDLE_DIR}/{CHECKSUMS}",
        challenge=challenge,
        note=note,
    )


@dataclass(frozen=True)
class FetchedBundle:
    """A registered bundle's folder, every file verified, on local disk."""

    name: str
    version: str
    alias: str
    run_id: str
    path: Path
    sha256: str  # the recorded checksum of the file list


def fetch_bundle(tracking_uri: str, name: str, alias: str, dst: Path, *, version: str | None = None) -> FetchedBundle:
    """Download ``name@alias`` (or ``version`` when given) and verify its file list and every file.

    Raises:
        ModelNotFoundError: no such model, alias or version.
        ModelIntegrityError: a file is missing, added or altered since registration.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    mv = model_version(client, tracking_uri, name, alias, version)
    dst.mkdir(parents=True, exist_ok=True)
    source = client.get_model_version_download_uri(name, str(mv.version))
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dst))) / BUNDLE_DIR
    listing_file = folder / CHECKSUMS
    if not listing_file.is_file():
        raise ModelIntegrityError(f"{name} v{mv.version}: {CHECKSUMS} missing; not a Kairos bundle")
    recorded = mv.tags.get(TAG_SHA256)
    if not recorded or recorded != sha256_file(listing_file):
        raise ModelIntegrityError(f"{name} v{mv.version}: file list checksum mismatch; refusing to load")
    listing: dict[str, str] = json.loads(listing_file.read_text(encoding="utf-8"))
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS}
    if present != set(listing):
        raise ModelIntegrityError(f"{name} v{mv.version}: files differ from those registered")
    for rel, digest in listing.items():
        if sha256_file(folder / rel) != digest:
            raise ModelIntegrityError(f"{name} v{mv.version}: {rel} altered since registration; refusing to load")
    return FetchedBundle(name, str(mv.version), alias, str(mv.run_id), folder, recorded)
