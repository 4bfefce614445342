"""The value bundles: ``value`` (LightGBM spend and order-count regressors over a horizon) and ``clv``
(BG/NBD-family P(alive), expected orders and CLV per customer as of the data end).

Training (``training/value.py``) writes both; the API and the nightly export read ``clv`` through
:class:`ClvBundle` and ``value`` through :class:`ValueBundle`. A ``value`` version is Kairos's LightGBM
regressors or, when they did not beat the best baseline (the gate, docs/model-quality.md), that baseline
(:class:`models.baselines.ValueBaseline`, JSON), marked ``model_kind`` ``baseline:<name>`` in its metadata.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bundles.base import FolderBundle, Provenance, check_signature
from bundles.errors import ModelIntegrityError
from features.contract import Col
from features.erasure import drop_rows
from models.baselines import ValueBaseline
from models.clv import CLV_FIELDS
from models.value import LightGBMRegressor

VALUE_MODEL = "value"
CLV_MODEL = "clv"
SPEND_FILE = "spend.json"
ORDERS_FILE = "orders.json"
META_FILE = "meta.json"


KAIROS = "kairos"  # model_kind of Kairos's own (LightGBM) value models
BASELINE_PREFIX = "baseline:"
BASELINE_FILE = "baseline.json"  # a baseline version's fitted model (models/baselines.py ValueBaseline)


def baseline_kind(name: str) -> str:
    """The ``model_kind`` recorded for value baseline ``name`` (``baseline:last_period``)."""
    return f"{BASELINE_PREFIX}{name}"


@dataclass(frozen=True)
class ValueModels:
    """The loaded ``value`` bundle: Kairos's spend and order-count regressors, or the baseline served in their
    place (``meta["model_kind"]`` ``baseline:<name>``: Kairos's model did not beat it, docs/model-quality.md),
    and what they were trained on. Either way :meth:`predict` reads the feature row."""

    spend: LightGBMRegressor | None
    orders: LightGBMRegressor | None
    meta: dict[str, Any]
    baseline_model: ValueBaseline | None = None

    @property
    def model_kind(self) -> str:
        return str(self.meta.get("model_kind") or KAIROS)

    @property
    def baseline(self) -> str | None:
        """The baseline's name (``last_period``, ...) when this version serves a baseline, else None."""
        kind = self.model_kind
        return kind.removeprefix(BASELINE_PREFIX) if kind.startswith(BASELINE_PREFIX) else None

    @property
    def horizon_days(self) -> int:
        return int(self.meta["horizon_days"])

    @property
    def features(self) -> list[str]:
        """The feature-store columns read, in the order :meth:`predict` takes them as a matrix."""
        if self.baseline_model is not None:
            return list(self.baseline_model.feature_names_)
        assert self.spend is not None
        return list(self.spend.feature_names_)

    def predict(self, X: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(expected spend, expected orders) in the horizon per row of ``X`` (a frame holding
        :attr:`features`, or a matrix of them in that order), as float32 inputs: the API's, the export's and
        the job's evaluation alike. Never negative."""
        if isinstance(X, pd.DataFrame):
            X = X[self.features]
        matrix = np.asarray(X, dtype=np.float32)
        if self.baseline_model is not None:
            spend, orders = self.baseline_model.predict_both(matrix)
        else:
            assert self.spend is not None and self.orders is not None
            spend, orders = self.spend.predict(matrix), self.orders.predict(matrix)
        return np.clip(spend, 0.0, None), np.clip(orders, 0.0, None)


class ValueBundle(FolderBundle):
    """Both boosters as LightGBM text (JSON-wrapped), or a baseline as JSON, and their metadata, checksummed
    file by file."""

    kind = "value"

    @staticmethod
    def write(folder: Path, spend: LightGBMRegressor, orders: LightGBMRegressor, meta: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SPEND_FILE).write_text(json.dumps({"lightgbm": spend.to_text()}), encoding="utf-8")
        (folder / ORDERS_FILE).write_text(json.dumps({"lightgbm": orders.to_text()}), encoding="utf-8")
        (folder / META_FILE).write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")

    @staticmethod
    def write_baseline(folder: Path, baseline: ValueBaseline, meta: dict[str, Any]) -> None:
        """A baseline version's files: the fitted baseline and the metadata (``model_kind`` ``baseline:<kind>``)."""
        folder.mkdir(parents=True, exist_ok=True)
        meta = {**meta, "model_kind": baseline_kind(baseline.kind), "features": list(baseline.feature_names_)}
        (folder / BASELINE_FILE).write_text(json.dumps(baseline.to_dict(), sort_keys=True), encoding="utf-8")
        (folder / META_FILE).write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")

    @staticmethod
    def read(folder: Path) -> ValueModels:
        folder = Path(folder)

        def booster(file: str) -> LightGBMRegressor:
            return LightGBMRegressor.from_text(json.loads((folder / file).read_text(encoding="utf-8"))["lightgbm"])

        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        kind = str(meta.get("model_kind") or KAIROS)
        if kind.startswith(BASELINE_PREFIX):
            baseline = ValueBaseline.from_dict(json.loads((folder / BASELINE_FILE).read_text(encoding="utf-8")))
            if baseline_kind(baseline.kind) != kind:
                raise ValueError(f"{BASELINE_FILE} holds the {baseline.kind} baseline, {META_FILE} says {kind!r}")
            return ValueModels(None, None, meta, baseline)
        if kind != KAIROS:
            raise ValueError(f"model_kind: expected {KAIROS!r} or 'baseline:<name>', got {kind!r}")
        return ValueModels(booster(SPEND_FILE), booster(ORDERS_FILE), meta)

    def build(self, folder: Path, provenance: Provenance, store_features: Sequence[str] | None) -> ValueModels:
        what = f"{provenance.name} v{provenance.version}"
        try:
            models = self.read(folder)
            features = models.features
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ModelIntegrityError(f"{what}: the bundle does not load: {exc}") from exc
        check_signature(provenance.name, provenance.version, features, store_features)
        spend, orders = models.predict(np.zeros((4, len(features)), dtype=np.float32))
        if not (np.all(np.isfinite(spend)) and np.all(np.isfinite(orders))):
            raise ModelIntegrityError(f"{what}: warm-up predictions are not finite")
        return models


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
