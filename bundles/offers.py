"""The offers bundle: the uplift model (LightGBM text inside JSON), the offer catalogue and the manifest.

Training (``training/offers.py``) writes it with :meth:`OffersBundle.write`; the API reads it with
:meth:`OffersBundle.build` into a :class:`NextBestOffer`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bundles.base import MANIFEST_FILE, FolderBundle, Provenance, check_signature
from bundles.errors import ModelIntegrityError
from features.errors import KairosError
from features.store import SEGMENT_COLUMNS
from models.decisioning.control import ControlGroup
from models.decisioning.nbo import NextBestOffer
from models.decisioning.offers import Catalogue, parse_catalogue
from models.decisioning.uplift import UpliftModel

MODEL_NAME = "offers"
UPLIFT_FILE = "uplift.json"
CATALOGUE_FILE = "catalogue.json"


class OffersBundle(FolderBundle):
    kind = "offers"

    @staticmethod
    def write(folder: Path, model: UpliftModel, catalogue: Catalogue, manifest: dict[str, Any]) -> None:
        """The bundle's files: ``uplift.json``, ``catalogue.json`` and ``manifest.json``."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / UPLIFT_FILE).write_text(json.dumps(model.to_dict()), encoding="utf-8")
        (folder / CATALOGUE_FILE).write_text(catalogue.model_dump_json(indent=2), encoding="utf-8")
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")

    @staticmethod
    def read(folder: Path, control: ControlGroup | None = None) -> tuple[NextBestOffer, dict[str, Any]]:
        """A :class:`NextBestOffer` and its manifest from a bundle folder (verified by the fetch)."""
        folder = Path(folder)
        model = UpliftModel.from_dict(json.loads((folder / UPLIFT_FILE).read_text(encoding="utf-8")))
        catalogue = parse_catalogue(json.loads((folder / CATALOGUE_FILE).read_text(encoding="utf-8")), str(folder))
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        caution = float(manifest.get("caution", 0.0))
        fallback = manifest.get("fallback_order_value")
        nbo = NextBestOffer(
            catalogue,
            model,
            control or ControlGroup(),
            caution=caution,
            fallback_order_value=None if fallback is None else float(fallback),
        )
        return nbo, manifest

    def build(self, folder: Path, provenance: Provenance, store_features: Sequence[str] | None) -> NextBestOffer:
        name, version = provenance.name, provenance.version
        try:
            nbo, _manifest = self.read(folder)
        except (KairosError, OSError, KeyError, ValueError) as exc:
            raise ModelIntegrityError(f"{name} v{version}: the bundle does not load: {exc}") from exc
        if nbo.uplift is not None:
            # the columns the model reads (a categorical column is one input, encoded inside); the segment
            # labels (lifecycle, RFM segment) come from the snapshot's segments beside the store's features
            inputs = getattr(nbo.uplift, "columns_", None) or getattr(nbo.uplift, "feature_names_", [])
            from_store = [c for c in inputs if c not in SEGMENT_COLUMNS]
            check_signature(name, version, from_store, store_features)
        if not len(nbo.catalogue.offers):
            raise ModelIntegrityError(f"{name} v{version}: the offer catalogue is empty")
        return nbo
