"""Every kind of bundle the registry holds, by name. Adding a kind is one class here and one job."""

from __future__ import annotations

from pathlib import Path

from bundles.base import BundleKind
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
