"""The value bundles: ``value`` (LightGBM spend and order-count regressors over a horizon) and ``clv``
(BG/NBD-family P(alive), expected orders and CLV per customer as of the data end).

Training (``training/value.py``) writes both; the API and the nightly export read ``clv`` through
:class:`ClvBundle`. ``value`` is registered for the record and read back by :meth:`ValueBundle.read`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bundles.base import FolderBundle, Provenance
from bundles.errors import ModelIntegrityError
from features.contract import Col
from features.erasure import drop_rows
from models.clv import CLV_FIELDS
from models.value import LightGBMRegressor

VALUE_MODEL = "value"
CLV_MODEL = "clv"
SPEND_FILE = "spend.json"
ORDERS_FILE = "orders.json"
META_FILE = "meta.json"


@dataclass(frozen=True)
class ValueModels:
    """The loaded ``value`` bundle: spend and order-count regressors and what they were trained on."""

    spend: LightGBMRegressor
    orders: LightGBMRegressor
    meta: dict[str, Any]


class ValueBundle(FolderBundle):
    """Both boosters as LightGBM text (JSON-wrapped) and their metadata, checksummed file by file."""

    kind = "value"

    @staticmethod
    def write(folder: Path, spend: LightGBMRegressor, orders: LightGBMRegressor, meta: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SPEND_FILE).write_text(json.dumps({"lightgbm": spend.to_text()}), encoding="utf-8")
        (folder / ORDERS_FILE).write_text(json.dumps({"lightgbm": orders.to_text()}), encoding="utf-8")
        (folder / META_FILE).write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")

    @staticmethod
    def read(folder: Path) -> ValueModels:
        folder = Path(folder)

        def booster(file: str) -> LightGBMRegressor:
            return LightGBMRegressor.from_text(json.loads((folder / file).read_text(encoding="utf-8"))["lightgbm"])

        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        return ValueModels(booster(SPEND_FILE), booster(ORDERS_FILE), meta)

    def build(self, folder: Path, provenance: Provenance, store_features: Sequence[str] | None) -> ValueModels:
        try:
            return self.read(folder)
        except (OSError, KeyError, ValueError) as exc:
            raise ModelIntegrityError(
                f"{provenance.name} v{provenance.version}: the bundle does not load: {exc}"
            ) from exc


CLV_FILE = "customers.parquet"
PARAMS_FILE = "params.json"


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


class ClvBundle(FolderBundle):
    """Every customer's P(alive), expected orders and CLV as of the data end, and the fitted parameters."""

    kind = "clv"

    @staticmethod
    def write(folder: Path, params: dict[str, Any], customers: pd.DataFrame) -> None:
        """The bundle's files: ``params.json`` and ``customers.parquet`` (customer_key + the CLV fields)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PARAMS_FILE).write_text(json.dumps(params, sort_keys=True), encoding="utf-8")
        customers.to_parquet(folder / CLV_FILE, index=False)

    @staticmethod
    def erase_customers(folder: Path, keys: Collection[str]) -> dict[str, int]:
        """Remove customers' rows from ``customers.parquet`` (an erasure); returns rows removed per file."""
        removed = drop_rows(Path(folder) / CLV_FILE, [Col.CUSTOMER_KEY], keys)
        return {CLV_FILE: removed} if removed else {}

    @staticmethod
    def read_customers(folder: Path) -> pd.DataFrame:
        """The per-customer table, indexed by customer_key (the nightly export joins it)."""
        return pd.read_parquet(Path(folder) / CLV_FILE).set_index(Col.CUSTOMER_KEY)

    def build(self, folder: Path, provenance: Provenance, store_features: Sequence[str] | None) -> ClvTable:
        name, version = provenance.name, provenance.version
        try:
            frame = pd.read_parquet(folder / CLV_FILE)
            params_file = folder / PARAMS_FILE
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
