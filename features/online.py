"""Online store, in-process backend: the latest snapshot as a contiguous float32 matrix.

Lookups are vectorised: ids -> row numbers (-1 when missing) -> one fancy-indexing gather. A
missing customer is reported as missing, never as zeros. Callers may pass the retailer's own
customer ids (source record ids) or Kairos's ``customer_key``; both resolve to the same row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import Col
from features.ingest import IDENTITY_MAP_FILE
from features.store import Snapshot, ingested_dir, latest_snapshot


@dataclass(frozen=True)
class Lookup:
    """The result of a batch lookup, in request order."""

    keys: list[str | None]  # customer_key per requested id, None when unknown
    rows: np.ndarray  # row index per id, -1 when unknown
    values: np.ndarray  # float32 (n, n_features); NaN rows for unknown ids

    @property
    def found(self) -> np.ndarray:
        return self.rows >= 0


class InMemoryOnlineStore:
    """Immutable in-process feature store built from one snapshot.

    Args:
        features: the snapshot frame (``customer_key`` + feature columns).
        feature_names: the feature columns, in the order the matrix keeps them.
        aliases: source customer id -> customer_key (identity map), so either id finds the row.
        as_of: the snapshot's as-of time (the age of every row).
    """

    def __init__(
        self,
        features: pd.DataFrame,
        feature_names: list[str],
        aliases: dict[str, str] | None = None,
        as_of: datetime | None = None,
    ) -> None:
        self.feature_names = list(feature_names)
        self.as_of = as_of
        keys = features[Col.CUSTOMER_KEY].astype(str).tolist()
        self._matrix = np.ascontiguousarray(features[self.feature_names].to_numpy(np.float32))
        self._index: dict[str, int] = {k: i for i, k in enumerate(keys)}
        self._keys = keys
        self._aliases = aliases or {}

    def __len__(self) -> int:
        return len(self._keys)

    def resolve(self, ids: list[str]) -> list[str | None]:
        """customer_key per id (given as customer_key or source id), None when unknown."""
        out: list[str | None] = []
        index, aliases = self._index, self._aliases
        for cid in ids:
            if cid in index:
                out.append(cid)
            else:
                key = aliases.get(cid)
                out.append(key if key is not None and key in index else None)
        return out

    def lookup(self, ids: list[str]) -> Lookup:
        """Feature rows for ``ids`` in order; unknown ids get row -1 and NaN values."""
        keys = self.resolve(ids)
        rows = np.fromiter((self._index[k] if k is not None else -1 for k in keys), dtype=np.int64, count=len(keys))
        values = self._matrix[np.where(rows >= 0, rows, 0)]
        values[rows < 0] = np.nan
        return Lookup(keys, rows, values)


def load_in_memory(data_home: Path, feature_names: list[str] | None = None) -> tuple[InMemoryOnlineStore, Snapshot]:
    """Build the in-process store from the latest snapshot and the identity map."""
    snap = latest_snapshot(data_home)
    frame = snap.read()
    names = feature_names or [f["name"] for f in snap.manifest["features"] if f["dtype"] == "float32"]
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise KeyError(f"snapshot {snap.path.name} lacks feature(s) {missing}")
    id_map = pd.read_parquet(ingested_dir(data_home) / IDENTITY_MAP_FILE)
    aliases = dict(zip(id_map[Col.CUSTOMER_ID].astype(str), id_map[Col.CUSTOMER_KEY].astype(str), strict=True))
    return InMemoryOnlineStore(frame, names, aliases, snap.as_of), snap
