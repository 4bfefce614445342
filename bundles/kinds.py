"""Every kind of bundle the registry holds, by name, and moving aliases only to versions that verify.

Adding a kind is one class here and one job.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from bundles import registry
from bundles.base import BundleKind, FolderBundle
from bundles.errors import ModelIntegrityError
from bundles.offers import OffersBundle
from bundles.propensity import PropensityBundle
from bundles.recs import RecsBundle
from bundles.sendtime import SendTimeBundle
from bundles.value import ClvBundle, ValueBundle

# Kind -> bundle class. Any other kind is a propensity model (its registered LightGBM text).
FOLDER_KINDS: dict[str, type[BundleKind]] = {
    "recs": RecsBundle,
    "clv": ClvBundle,
    "value": ValueBundle,
    "sendtime": SendTimeBundle,
    "offers": OffersBundle,
}


def is_propensity(kind: str) -> bool:
    return kind not in FOLDER_KINDS


def bundle_for(kind: str, compiled_dir: Path | None = None) -> BundleKind:
    """The bundle class of ``kind``, ready to fetch and build; propensity models use the lleaves builds
    found in ``compiled_dir``."""
    if kind in FOLDER_KINDS:
        return FOLDER_KINDS[kind]()
    return PropensityBundle(compiled_dir)


ANY_FOLDER = "bundle"  # a folder bundle of a kind not listed here (e.g. a test's): files verified only
KINDS = ("propensity", *FOLDER_KINDS, ANY_FOLDER)


def kind_of(name: str) -> str:
    """The kind of the model registered as ``name`` (training registers each kind under its own name;
    every other name is a propensity model)."""
    return name if name in FOLDER_KINDS else "propensity"


def verify_version(tracking_uri: str, name: str, version: str, kind: str | None = None) -> None:
    """Fetch ``version`` of ``name`` with every checksum checked and build it as the API would (parsed,
    its metadata read, warmed); nothing is kept. ``kind`` defaults to :func:`kind_of` the name;
    :data:`ANY_FOLDER` verifies a folder bundle's files without building it.

    Raises:
        ModelNotFoundError: no such version.
        ModelIntegrityError: a file or the metadata does not verify, or the model does not load.
    """
    kind = kind or kind_of(name)
    bundle: BundleKind = FolderBundle() if kind == ANY_FOLDER else bundle_for(kind)
    with tempfile.TemporaryDirectory() as tmp:
        fetched = bundle.fetch(tracking_uri, name, registry.CHAMPION, Path(tmp), version=version)
        if kind != ANY_FOLDER:  # a folder of another kind: its files are verified, nothing here can build it
            bundle.build(fetched.folder, fetched.provenance, None)


def promote(
    tracking_uri: str, name: str, version: str, alias: str = registry.CHAMPION, kind: str | None = None
) -> registry.Registration:
    """:func:`bundles.registry.promote`, only after the version verifies: a replica that starts after a
    promotion must be able to load what the alias points at.

    Raises:
        ModelNotFoundError: no such version.
        ModelIntegrityError: the version does not verify; the alias has not moved.
    """
    verify = _verifier(tracking_uri, name, kind, "not promoting {name} v{version}")
    return registry.promote(tracking_uri, name, version, alias, verify=verify)


def rollback(tracking_uri: str, name: str, kind: str | None = None) -> registry.Registration:
    """:func:`bundles.registry.rollback`, only after the version it returns to verifies.

    Raises:
        ModelNotFoundError: no champion, or no earlier champion recorded for it.
        ModelIntegrityError: the earlier champion does not verify; the alias has not moved.
    """
    verify = _verifier(tracking_uri, name, kind, "not rolling {name} back to v{version}")
    return registry.rollback(tracking_uri, name, verify=verify)


def _verifier(tracking_uri: str, name: str, kind: str | None, refusal: str) -> Callable[[str], None]:
    """:func:`verify_version` of a version of ``name``; a refusal says ``refusal`` (formatted) first."""

    def verify(version: str) -> None:
        try:
            verify_version(tracking_uri, name, version, kind)
        except ModelIntegrityError as exc:
            raise ModelIntegrityError(f"{refusal.format(name=name, version=version)}: {exc}") from exc

    return verify
