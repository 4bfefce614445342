"""What the console's pages show, read the way the API reads it.

Customer answers (profile, scores and reasons, permissions, send time, next-best offer, recommendations)
come from calling the API's own route functions with the signed-in key's principal, and decoding the
JSON they answer: the same code, the same data and the same scopes as ``/v1``, never a second copy.
What the API has no route for is read from where the jobs wrote it: segment sizes and moves from the
snapshots' manifests and transition matrices, the timeline from the ingested tables, the monitor's and
the nightly run's summaries from the data home, model versions, cards and plots from the registry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq
from fastapi import Response

from features.contract import Channel, Col
from features.errors import DataNotFoundError
from features.online import OnlineStoreUnavailable
from features.store import MANIFEST_FILE, SEGMENT_COLUMNS, SEGMENTS_FILE, SNAPSHOT_FILE, ingested_dir, latest_snapshot
from serving.keys import Principal, Scope
from serving.monitoring import latest_summary_path
from serving.observability import request_id_var
from serving.security import ApiError
from serving.state import Services

log = logging.getLogger("kairos.serving.console")

SNAPSHOTS_DIR = "snapshots"
TIMELINE_ROWS = 40
PROFILE_FEATURES = ("monetary_365d", "frequency_365d", "orders_lifetime", "recency_days")


@dataclass(frozen=True)
class Unavailable:
    """A part of a page that cannot be shown, and why (a scope the key lacks, a model not loaded, ...)."""

    status: int
    code: str
    message: str


def api(call: Callable[[], Response]) -> dict[str, Any] | Unavailable:
    """The body a route function answers, decoded; its error (403, 404, 503, ...) as :class:`Unavailable`."""
    try:
        response = call()
    except ApiError as exc:
        return Unavailable(exc.status, exc.code, exc.message)
    body: dict[str, Any] = orjson.loads(bytes(response.body))
    return body


def needs(principal: Principal, scope: Scope) -> Unavailable | None:
    """None when the key holds ``scope``; else the 403 the API would answer."""
    if principal.allows(scope):
        return None
    return Unavailable(403, "forbidden", f"this key lacks the {scope.value} scope")


# -- snapshots: sizes, moves, trends


def snapshot_folders(data_home: Path) -> list[Path]:
    root = Path(data_home) / SNAPSHOTS_DIR
    return sorted(p for p in root.glob("*") if (p / MANIFEST_FILE).is_file()) if root.is_dir() else []


@lru_cache(maxsize=64)
def _manifest(path: str, mtime: float) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((Path(path) / MANIFEST_FILE).read_text(encoding="utf-8"))
    return loaded


def manifest(folder: Path) -> dict[str, Any]:
    return _manifest(str(folder), (folder / MANIFEST_FILE).stat().st_mtime)


def overview(services: Services) -> dict[str, Any]:
    """Base size, segment sizes, moves since the previous snapshot, consent shares, nightly and monitor."""
    home = services.settings.data_home
    out: dict[str, Any] = {"base": services.store.size(), "as_of": None, "sizes": {}, "moves": {}, "matrix": {}}
    try:
        snap = latest_snapshot(home)
    except (DataNotFoundError, OSError):
        snap = None
    if snap is not None:
        seg = snap.manifest.get("segments") or {}
        out["as_of"] = snap.manifest.get("as_of")
        out["previous"] = seg.get("previous_snapshot")
        out["sizes"] = {c: seg.get("sizes", {}).get(c, {}) for c in SEGMENT_COLUMNS}
        out["moves"] = seg.get("transitions") or {}
        for column in SEGMENT_COLUMNS:
            path = snap.path / f"transitions_{column}.parquet"
            if path.is_file():
                m = pd.read_parquet(path).set_index("previous")
                out["matrix"][column] = [
                    {"previous": str(a), "current": str(b), "customers": int(v)}
                    for a, row in m.iterrows()
                    for b, v in row.items()
                    if int(v) > 0
                ]
        out["contactable"] = contactable(snap.path)
    out["nightly"] = last_nightly(home)
    out["monitor"] = monitor_summary(home)
    return out


@lru_cache(maxsize=8)
def _consent_shares(path: str) -> dict[str, float]:
    names = [f"consent_{ch.value}" for ch in Channel]
    frame = pd.read_parquet(Path(path) / SNAPSHOT_FILE, columns=None)
    present = [n for n in names if n in frame.columns]
    return {n.removeprefix("consent_"): float((frame[n] == 1.0).mean()) for n in present}


def contactable(snapshot: Path) -> dict[str, float]:
    """Per channel, the share of the base whose consent feature is an opt-in in the snapshot."""
    return _consent_shares(str(snapshot))


def last_nightly(data_home: Path) -> dict[str, Any] | None:
    """The newest ``kairos nightly`` run record (``HOME/nightly/*.json``), or None."""
    folder = Path(data_home) / "nightly"
    records = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    for path in reversed(records):
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(loaded, dict):
            return loaded
    return None


def monitor_summary(data_home: Path) -> dict[str, Any] | None:
    """``HOME/monitoring/latest.json`` as ``kairos monitor`` wrote it, or None."""
    path = latest_summary_path(data_home)
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def segments(services: Services) -> dict[str, Any]:
    """Per segmentation: sizes now, the trend over every snapshot, and each segment's profile."""
    home = services.settings.data_home
    folders = snapshot_folders(home)
    trend: dict[str, list[dict[str, Any]]] = {c: [] for c in SEGMENT_COLUMNS}
    for folder in folders:
        m = manifest(folder)
        for column in SEGMENT_COLUMNS:
            for name, size in ((m.get("segments") or {}).get("sizes", {}).get(column) or {}).items():
                trend[column].append({"as_of": m.get("as_of"), "segment": name, "customers": int(size)})
    profiles = _profiles(str(folders[-1])) if folders else {}
    return {"snapshots": len(folders), "trend": trend, "profiles": profiles}


@lru_cache(maxsize=4)
def _profiles(folder: str) -> dict[str, list[dict[str, Any]]]:
    """Each segment's size, medians of a few features and most viewed categories, in the snapshot."""
    path = Path(folder)
    seg = pd.read_parquet(path / SEGMENTS_FILE)
    feats = pd.read_parquet(path / SNAPSHOT_FILE)
    cols = [c for c in (*PROFILE_FEATURES, "most_viewed_category_30d") if c in feats.columns]
    frame = seg.merge(feats[[Col.CUSTOMER_KEY, *cols]], on=Col.CUSTOMER_KEY, how="left")
    out: dict[str, list[dict[str, Any]]] = {}
    for column in SEGMENT_COLUMNS:
        if column not in frame.columns:
            continue
        rows = []
        for name, group in frame.groupby(column, dropna=False, sort=True):
            entry: dict[str, Any] = {"segment": str(name), "customers": len(group)}
            for f in PROFILE_FEATURES:
                if f in group.columns:
                    v = group[f].median()
                    entry[f] = None if pd.isna(v) else float(v)
            if "most_viewed_category_30d" in group.columns:
                top = group["most_viewed_category_30d"].dropna().astype(str).value_counts().head(3)
                entry["top_categories"] = list(top.index)
            rows.append(entry)
        out[column] = sorted(rows, key=lambda r: -r["customers"])
    return out


# -- one customer


def segment_history(data_home: Path, key: str) -> list[dict[str, Any]]:
    """The customer's segments in every snapshot, oldest first."""
    out = []
    for folder in snapshot_folders(data_home):
        frame = pd.read_parquet(folder / SEGMENTS_FILE, filters=[(Col.CUSTOMER_KEY, "==", key)])
        if len(frame):
            row = frame.iloc[0]
            out.append(
                {"as_of": manifest(folder).get("as_of")} | {c: _plain(row[c]) for c in SEGMENT_COLUMNS if c in row}
            )
    return out


def _plain(v: Any) -> Any:
    """A table's value as plain Python: None for every kind of missing (None, NaN, NaT, pd.NA)."""
    if v is None:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):  # a list or an array: not a missing scalar
        pass
    return v.item() if hasattr(v, "item") else v


def _rows(path: Path, key: str, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    names = set(pq.read_schema(path).names)
    if Col.CUSTOMER_KEY not in names:
        return pd.DataFrame(columns=columns)
    frame = pd.read_parquet(path, columns=[c for c in columns if c in names], filters=[(Col.CUSTOMER_KEY, "==", key)])
    for c in columns:  # a column the export lacks reads as empty, not as an error
        if c not in frame.columns:
            frame[c] = None
    return frame


def timeline(data_home: Path, key: str) -> list[dict[str, Any]]:
    """The customer's orders, site visits and messages, newest first (at most :data:`TIMELINE_ROWS`)."""
    folder = ingested_dir(data_home)
    events: list[dict[str, Any]] = []
    orders = _rows(folder / "orders.parquet", key, ["ordered_at", "amount", "n_lines", "channel", "currency"])
    for r in orders.itertuples(index=False):
        events.append(
            {
                "at": r.ordered_at,
                "kind": "order",
                "channel": _plain(r.channel),
                "amount": _plain(r.amount),
                "lines": _plain(r.n_lines),
            }
        )
    visits = _rows(folder / "web_events.parquet", key, ["occurred_at", "event_type", "category", "session_id"])
    for r in visits.itertuples(index=False):
        events.append(
            {"at": r.occurred_at, "kind": "web", "event": _plain(r.event_type), "category": _plain(r.category)}
        )
    messages = _rows(folder / "messages.parquet", key, ["sent_at", "channel", "opened_at", "clicked_at", "offer_id"])
    for r in messages.itertuples(index=False):
        events.append(
            {
                "at": r.sent_at,
                "kind": "message",
                "channel": _plain(r.channel),
                "opened": _plain(r.opened_at) is not None,
                "clicked": _plain(r.clicked_at) is not None,
                "offer": _plain(r.offer_id),
            }
        )
    stamped = [e for e in events if _plain(e["at"]) is not None]
    stamped.sort(key=lambda e: pd.Timestamp(e["at"]), reverse=True)
    for e in stamped:
        e["at"] = pd.Timestamp(e["at"]).isoformat()
    return stamped[:TIMELINE_ROWS]


def consent_history(data_home: Path, key: str) -> list[dict[str, Any]]:
    """The customer's recorded consent changes (the export's), newest first."""
    frame = _rows(ingested_dir(data_home) / "consents.parquet", key, ["channel", "status", "consented_at", "source"])
    rows = [
        {
            "channel": _plain(r.channel),
            "status": _plain(r.status),
            "at": pd.Timestamp(r.consented_at).isoformat(),
            "source": _plain(r.source),
        }
        for r in frame.itertuples(index=False)
        if _plain(r.consented_at) is not None
    ]
    return sorted(rows, key=lambda r: r["at"], reverse=True)


def send_time_curve(services: Services, key: str, channel: str, lifecycle: str | None) -> dict[str, Any] | None:
    """The customer's 168-hour curve on ``channel`` from the served send-time bundle (what the API's send
    time reads), with the level it comes from; None without the bundle."""
    bundle = services.bundle("sendtime")
    if bundle is None:
        return None
    model = bundle.payload.model
    try:
        values = model.curve(key, channel, segment=lifecycle)
        source = model.source(key, channel, segment=lifecycle)
    except (KeyError, ValueError):
        return None
    return {"values": [float(v) for v in np.asarray(values).tolist()], "source": source}


def now_utc() -> datetime:
    return datetime.now(UTC)


def request_id() -> str:
    return request_id_var.get()


__all__ = [
    "OnlineStoreUnavailable",
    "Unavailable",
    "api",
    "consent_history",
    "needs",
    "overview",
    "segment_history",
    "segments",
    "send_time_curve",
    "timeline",
]
