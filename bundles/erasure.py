"""Erasure beyond the data home: every registered model version whose files hold per-customer rows, and
the model caches on disk.

Three kinds of bundle hold rows per customer: ``sendtime`` (each customer's zone, segment, own curves and
channel counts), ``recs`` (purchase history, own items, due items, the personal model's rows) and ``clv``
(each customer's P(alive), expected orders, CLV). Every version of them (not only ``@champion``: a rollback
must not bring a customer back) is downloaded, rewritten without the customer by its kind's own
``erase_customers``, searched again (:func:`features.erasure.residue`), uploaded back through MLflow's
artifact repository and re-signed: the registry's checksum tag is set to the new file list, and the
``kairos.erasures`` tag names the erasure. A version whose files did not verify before is rewritten but not
re-signed, so it stays refused (fail closed). Why rewrite rather than keep per-customer rows out of the
bundles altogether: ``docs/erasure.md``.

:func:`erase_offline` is what the CLI and the admin API share: tombstones, the data home, the registry
and the caches, with the receipt's entries. The online stores and the send log are erased by the caller,
which holds them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import mlflow
from mlflow import MlflowClient

from bundles import registry
from bundles.recs import RecsBundle
from bundles.sendtime import SendTimeBundle
from bundles.value import CLV_FILE, PARAMS_FILE, ClvBundle
from features.contract import Col
from features.erasure import (
    Person,
    Tombstones,
    drop_rows,
    erase_from_data_home,
    find_person,
    new_erasure_id,
    now_utc,
    residue,
)
from features.io import sha256_file

TAG_ERASURES = "kairos.erasures"  # the erasure ids that rewrote and re-signed a version, comma-separated

Eraser = Callable[[Path, Collection[str]], dict[str, int]]


@dataclass(frozen=True)
class VersionErasure:
    """What one erasure did to one registered version (no personal data: names, versions, row counts)."""

    model: str
    version: str
    files: dict[str, int]  # path inside the bundle -> rows removed
    resigned: bool
    left: list[str] = field(default_factory=list)  # files that still hold the customer (none when complete)
    note: str | None = None


def eraser_for(folder: Path) -> Eraser:
    """The kind's own eraser for a bundle folder, told by its files; any other bundle loses the Parquet rows
    keyed by customer_key (and :func:`~features.erasure.residue` then says whether that was enough)."""
    if (folder / "sendtime" / "meta.json").is_file():
        return SendTimeBundle.erase_customers
    if (folder / "repeat_personal").is_dir() and (folder / "history").is_dir():
        return RecsBundle.erase_customers
    if (folder / CLV_FILE).is_file() and (folder / PARAMS_FILE).is_file():
        return ClvBundle.erase_customers
    return _erase_keyed_parquet


def _erase_keyed_parquet(folder: Path, keys: Collection[str]) -> dict[str, int]:
    removed = {
        str(p.relative_to(folder)): drop_rows(p, [Col.CUSTOMER_KEY], keys) for p in sorted(folder.rglob("*.parquet"))
    }
    return {k: v for k, v in removed.items() if v}


def _verifies(folder: Path, recorded: str | None) -> bool:
    """The folder's files are exactly those registered (the check :func:`registry.fetch_bundle` makes)."""
    listing_file = folder / registry.CHECKSUMS
    if not recorded or not listing_file.is_file() or sha256_file(listing_file) != recorded:
        return False
    listing: dict[str, str] = json.loads(listing_file.read_text(encoding="utf-8"))
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != registry.CHECKSUMS}
    return present == set(listing) and all(sha256_file(folder / rel) == digest for rel, digest in listing.items())


def _model_versions(client: MlflowClient) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for model in client.search_registered_models(max_results=1000):
        for mv in client.search_model_versions(f"name = '{model.name}'", max_results=10000):
            out.append((str(model.name), str(mv.version)))
    return sorted(out)


def erase_from_registry(tracking_uri: str, person: Person, erasure_id: str) -> list[VersionErasure]:
    """Rewrite every registered version that holds ``person`` without them, and re-sign it.

    Works with any artifact store MLflow can write to (local folder, S3, GCS, Azure, an MLflow artifact
    server): files are downloaded and uploaded back through MLflow's artifact repository API. Returns the
    versions changed, and any version that still holds the customer afterwards (``left``).
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    client = MlflowClient(tracking_uri=tracking_uri)
    out: list[VersionErasure] = []
    for name, version in _model_versions(client):
        mv = client.get_model_version(name, version)
        uri = client.get_model_version_download_uri(name, version)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
            folder = local / registry.BUNDLE_DIR
            if not (folder / registry.CHECKSUMS).is_file():  # a single-file model (propensity): no customer rows
                left = residue(local, person.needles)
                if left:
                    out.append(VersionErasure(name, version, {}, False, left, "not a bundle: cannot be rewritten"))
                continue
            verified = _verifies(folder, mv.tags.get(registry.TAG_SHA256))
            removed = eraser_for(folder)(folder, person.keys)
            left = residue(local, person.needles)
            if not removed:
                if left:
                    out.append(
                        VersionErasure(name, version, {}, False, left, "holds the customer where no eraser looks")
                    )
                continue
            listing = registry.write_listing(folder)
            repo = get_artifact_repository(uri)
            for rel in [*removed, registry.CHECKSUMS]:
                target = PurePosixPath(registry.BUNDLE_DIR) / rel
                repo.log_artifact(str(folder / rel), str(target.parent))
            if verified:
                client.set_model_version_tag(name, version, registry.TAG_SHA256, sha256_file(listing))
            earlier = mv.tags.get(TAG_ERASURES)
            client.set_model_version_tag(
                name, version, TAG_ERASURES, f"{earlier},{erasure_id}" if earlier else erasure_id
            )
            note = None if verified else "did not verify before the erasure: rewritten, not re-signed (stays refused)"
            out.append(VersionErasure(name, version, removed, verified, left, note))
    return out


def purge_model_cache(cache_root: Path, person: Person) -> list[str]:
    """Delete every cached model copy (``<cache>/<model>/<alias>``) that holds ``person``; returns the copies
    removed, relative to ``cache_root``. A serving replica fetches the re-signed version at its next load."""
    root = Path(cache_root)
    gone: list[str] = []
    for hit in residue(root, person.needles):
        parts = PurePosixPath(hit).parts
        copy = root.joinpath(*parts[:2]) if len(parts) > 2 else root / hit
        if copy.exists():
            shutil.rmtree(copy) if copy.is_dir() else copy.unlink()
            gone.append(str(copy.relative_to(root)))
    return sorted(set(gone))


@dataclass
class OfflineErasure:
    """The person erased and the receipt so far (the caller adds the online stores and the send log)."""

    person: Person
    receipt: dict[str, Any]

    @property
    def complete(self) -> bool:
        residue_left = self.receipt["residue"]
        return not any(residue_left.values())


def erase_offline(
    data_home: Path,
    customer_id: str,
    *,
    tracking_uri: str | None,
    cache_dirs: Sequence[Path] = (),
    erasure_id: str | None = None,
    secret: bytes | None = None,
) -> OfflineErasure:
    """Erase one customer from the data home, the registry and the model caches on disk.

    Order: tombstones first (every replica answers "unknown" from then on, and no later ingest brings the
    customer back), then the files, then a search of each for what is left.

    Args:
        data_home: the data home (``kairos ingest --out``).
        customer_id: the source customer id; every id identity resolution joined to it is erased too.
        tracking_uri: the MLflow registry (None: no registry to erase from).
        cache_dirs: model cache folders (``KAIROS_MODEL_CACHE_DIR`` of each replica that shares this disk).
        erasure_id: names the receipt (default: a fresh one).
        secret: the tombstone hash key (default: :func:`features.erasure.tombstone_secret`).
    """
    erasure_id = erasure_id or new_erasure_id()
    at = now_utc()
    home = Path(data_home)
    person = find_person(home, customer_id)
    added = Tombstones.of(home, secret).add(person, erasure_id, at)
    removals = erase_from_data_home(home, person)
    registry_errors: list[str] = []
    try:
        versions = erase_from_registry(tracking_uri, person, erasure_id) if tracking_uri else []
    except Exception as exc:  # the registry down or refusing: the rest is still erased, the receipt says so
        versions = []
        registry_errors.append(f"registry not reached ({type(exc).__name__}): run the erasure again")
    caches = {str(c): purge_model_cache(Path(c), person) for c in cache_dirs}
    receipt: dict[str, Any] = {
        "erasure_id": erasure_id,
        "erased_at": at.isoformat(),
        "source_ids": len(person.ids),
        "customer_keys": len(person.keys),
        "tombstones_added": added,
        "data_home": [asdict(r) for r in removals],
        "registry": [asdict(v) for v in versions],
        "model_cache": caches,
        "residue": {
            "data_home": residue(home, person.needles),
            "registry": registry_errors + sorted(f"{v.model} v{v.version}: {f}" for v in versions for f in v.left),
            "model_cache": sorted(f for c in cache_dirs for f in residue(Path(c), person.needles)),
        },
    }
    return OfflineErasure(person, receipt)
