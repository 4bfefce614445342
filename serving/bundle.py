"""Model bundles: a verified model plus its feature manifest, immutable once loaded.

A bundle is loaded from the registry by alias, its checksum verified, its feature signature checked
against the online store, and warmed with one prediction before it may serve.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from features.errors import ModelIntegrityError
from features.online import InMemoryOnlineStore
from models.churn import LightGBMClassifier
from training import registry


@dataclass(frozen=True)
class ModelBundle:
    """One loaded, verified, warmed model version."""

    name: str
    version: str
    alias: str
    run_id: str
    sha256: str
    features: tuple[str, ...]
    columns: np.ndarray  # the model's features as column indices of the store's matrix, in model order
    manifest: dict[str, Any]
    model: LightGBMClassifier
    loaded_at: datetime

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "sha256": self.sha256,
            "features": list(self.features),
            "loaded_at": self.loaded_at.isoformat(),
            "definition_hash": self.manifest.get("definition_hash"),
        }


def load_bundle(tracking_uri: str, name: str, alias: str, cache_dir: Any, store: InMemoryOnlineStore) -> ModelBundle:
    """Fetch ``name@alias``, verify checksum and feature signature, and warm it."""
    fetched = registry.fetch(tracking_uri, name, alias, cache_dir / name / alias)
    meta = fetched.metadata.get("kairos") or {}
    model = LightGBMClassifier.from_text(fetched.model_text)
    features = tuple(meta.get("features") or model.feature_names_)
    if list(features) != model.feature_names_:
        raise ModelIntegrityError(f"{name} v{fetched.version}: manifest features differ from the model's own")
    missing = [f for f in features if f not in store.feature_names]
    if missing:
        raise ModelIntegrityError(f"{name} v{fetched.version}: the online store lacks feature(s) {missing}")
    index = {name: i for i, name in enumerate(store.feature_names)}
    columns = np.array([index[f] for f in features], dtype=np.intp)
    model.predict_proba(np.zeros((1, len(features)), dtype=np.float32))  # warm-up
    return ModelBundle(
        name=name,
        version=fetched.version,
        alias=alias,
        run_id=fetched.run_id,
        sha256=fetched.sha256,
        features=features,
        columns=columns,
        manifest=dict(meta.get("manifest") or {}),
        model=model,
        loaded_at=datetime.now().astimezone(),
    )
