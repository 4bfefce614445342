"""Bundles behind the decisions: ``clv`` (P(alive), expected orders, CLV per customer), ``sendtime``
(send-time curves and channel preference) and ``offers`` (the next-best-offer catalogue and uplift model).

Each is a folder bundle (every file verified against the checksums recorded at registration, see
:class:`serving.bundle.FolderLoader`); the loaders here only build and warm the payload. The send-time
and offers folders are read with the training jobs' own read functions (no fitting code runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.contract import Col
from features.errors import KairosError, ModelIntegrityError
from models.clv import CLV_FIELDS
from models.decisioning.channel import ChannelPreference
from models.decisioning.nbo import NextBestOffer
from models.decisioning.sendtime import SendTimeModel
from serving.bundle import FolderLoader, Provenance, check_signature

CLV_FILE = "customers.parquet"


class ClvTable:
    """The ``clv`` bundle's per-customer table as of the data end, looked up by customer_key (vectorised)."""

    def __init__(self, frame: pd.DataFrame, params: dict[str, Any]) -> None:
        missing = [c for c in (Col.CUSTOMER_KEY, *CLV_FIELDS) if c not in frame.columns]
        if missing:
            raise ModelIntegrityError(f"{CLV_FILE} lacks column(s) {missing}")
        self.index = pd.Index(frame[Col.CUSTOMER_KEY].astype(str))
        if not self.index.is_unique:
            raise ModelIntegrityError(f"{CLV_FILE}: customer_key is not unique")
        self.values = {c: frame[c].to_numpy(np.float64) for c in CLV_FIELDS}
        self.params = params

    def __len__(self) -> int:
        return len(self.index)

    def lookup(self, keys: Sequence[str | None]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(found mask, field -> values) for ``keys`` in order; NaN where a key is not in the table."""
        pos = self.index.get_indexer([k if k is not None else "" for k in keys])
        found = pos >= 0
        out = {}
        for c, v in self.values.items():
            col = np.full(len(keys), np.nan)
            col[found] = v[pos[found]]
            out[c] = col
        return found, out


class ClvLoader(FolderLoader):
    kind = "clv"

    def build(self, folder: Path, provenance: Provenance, store_features: Sequence[str] | None) -> ClvTable:
        import json

        name, version = provenance.name, provenance.version
        try:
            frame = pd.read_parquet(folder / CLV_FILE)
            params_file = folder / "params.json"
            params = json.loads(params_file.read_text(encoding="utf-8")) if params_file.is_file() else {}
        except (OSError, ValueError) as exc:
            raise ModelIntegrityError(f"{name} v{version}: the bundle does not load: {exc}") from exc
        try:
            table = ClvTable(frame, params)
        except ModelIntegrityError as exc:
            raise ModelIntegrityError(f"{name} v{version}: {exc}") from exc
        if not len(table):
            raise ModelIntegrityError(f"{name} v{version}: no customers in {CLV_FILE}")
        p = table.values["p_alive"]
        if np.any(~np.isfinite(p) | (p < 0) | (p > 1)):
            raise ModelIntegrityError(f"{name} v{version}: p_alive outside [0, 1]")
        return table


@dataclass(frozen=True)
class SendTime:
    """The send-time bundle: curves per customer / segment / population, and the channel preference."""

    model: SendTimeModel
    channels: ChannelPreference
    manifest: dict[str, Any]


class SendTimeLoader(FolderLoader):
    kind = "sendtime"

    def build(self, folder: Path, provenance: Provenance, store_features: Sequence[str] | None) -> SendTime:
        from training.sendtime import read_bundle

        name, version = provenance.name, provenance.version
        try:
            model, channels, manifest = read_bundle(folder)
            # Warm: one vectorised answer for the population (an unknown key falls back to it).
            model.best_slots_batch(["warm-up"], "email", datetime.now(UTC), timedelta(hours=24))
        except (KairosError, OSError, KeyError, ValueError) as exc:
            raise ModelIntegrityError(f"{name} v{version}: the bundle does not load: {exc}") from exc
        return SendTime(model, channels, manifest)


class OffersLoader(FolderLoader):
    kind = "offers"

    def build(self, folder: Path, provenance: Provenance, store_features: Sequence[str] | None) -> NextBestOffer:
        from training.offers import read_bundle

        name, version = provenance.name, provenance.version
        try:
            nbo, _manifest = read_bundle(folder)
        except (KairosError, OSError, KeyError, ValueError) as exc:
            raise ModelIntegrityError(f"{name} v{version}: the bundle does not load: {exc}") from exc
        if nbo.uplift is not None:
            check_signature(name, version, list(getattr(nbo.uplift, "feature_names_", [])), store_features)
        if not len(nbo.catalogue.offers):
            raise ModelIntegrityError(f"{name} v{version}: the offer catalogue is empty")
        return nbo


LOADERS: dict[str, Any] = {"clv": ClvLoader, "sendtime": SendTimeLoader, "offers": OffersLoader}
