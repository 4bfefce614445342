"""The send-time bundle: send-time curves per customer / segment / population and the channel preference.

Training (``training/sendtime.py``) writes it with :meth:`SendTimeBundle.write`; the API reads it with
:meth:`SendTimeBundle.build` (:meth:`SendTimeBundle.read` rebuilds the fitted models; no fitting runs).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from bundles.base import MANIFEST_FILE, FolderBundle, Provenance
from bundles.errors import ModelIntegrityError
from features.contract import Col
from features.erasure import drop_rows
from features.errors import DataNotFoundError, KairosError
from models.decisioning.channel import ChannelPreference
from models.decisioning.sendtime import SendTimeModel

MODEL_NAME = "sendtime"


@dataclass(frozen=True)
class SendTime:
    """The loaded bundle: curves per customer / segment / population, and the channel preference."""

    model: SendTimeModel
    channels: ChannelPreference
    manifest: dict[str, Any]


class SendTimeBundle(FolderBundle):
    kind = "sendtime"

    @staticmethod
    def write(folder: Path, model: SendTimeModel, channel: ChannelPreference, manifest: dict[str, Any]) -> None:
        """The bundle's files: ``sendtime/*.parquet`` + ``meta.json``, ``channel/*.parquet`` + ``meta.json``."""
        for name, fitted in (("sendtime", model), ("channel", channel)):
            frames, meta = fitted.to_frames()
            target = Path(folder) / name
            target.mkdir(parents=True, exist_ok=True)
            for key, frame in frames.items():
                frame.to_parquet(target / f"{key}.parquet", index=False)
            (target / "meta.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        (Path(folder) / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")

    @staticmethod
    def read(folder: Path) -> SendTime:
        """The fitted models rebuilt from a bundle folder (verified by the fetch).

        Raises:
            DataNotFoundError: a part of the bundle is missing.
        """
        folder = Path(folder)
        out: list[Any] = []
        for name, cls in (("sendtime", SendTimeModel), ("channel", ChannelPreference)):
            target = folder / name
            if not (target / "meta.json").is_file():
                raise DataNotFoundError(f"{target} is not a send-time bundle part (meta.json missing)")
            frames = {p.stem: pd.read_parquet(p) for p in sorted(target.glob("*.parquet"))}
            meta = json.loads((target / "meta.json").read_text(encoding="utf-8"))
            out.append(cls.from_frames(frames, meta))
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        return SendTime(out[0], out[1], manifest)

    @staticmethod
    def erase_customers(folder: Path, keys: Collection[str]) -> dict[str, int]:
        """Remove customers from a bundle folder (an erasure): their zone and segment, their own curves and
        their channel counts; they are answered from their segment's or the population's curve afterwards.

        Returns:
            Rows removed per file (path relative to ``folder``); files without the customers are untouched.
        """
        folder = Path(folder)
        removed = {
            str(p.relative_to(folder)): drop_rows(p, [Col.CUSTOMER_KEY], keys)
            for p in sorted(folder.rglob("*.parquet"))
        }
        return {k: v for k, v in removed.items() if v}

    def build(self, folder: Path, provenance: Provenance, store_features: Sequence[str] | None) -> SendTime:
        name, version = provenance.name, provenance.version
        try:
            loaded = self.read(folder)
            # Warm: one vectorised answer for the population (an unknown key falls back to it).
            loaded.model.best_slots_batch(["warm-up"], "email", datetime.now(UTC), timedelta(hours=24))
        except (KairosError, OSError, KeyError, ValueError) as exc:
            raise ModelIntegrityError(f"{name} v{version}: the bundle does not load: {exc}") from exc
        return loaded
