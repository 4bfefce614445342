"""Offline store: snapshots carry a manifest, segments, and transitions that reconcile with both sides."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from features.definitions import FEATURE_NAMES, definition_hash
from features.store import MANIFEST_FILE, SEGMENTS_FILE, build_snapshot, latest_snapshot
from tests.conftest import BuiltHome


def test_snapshots_segments_and_transitions(orii_home: BuiltHome, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(orii_home.home / "ingested", home / "ingested")
    first = build_snapshot(home, datetime(2011, 6, 1, tzinfo=UTC))
    second = build_snapshot(home, datetime(2011, 9, 1, tzinfo=UTC))
    assert latest_snapshot(home).path == second.path
    m = second.manifest
    assert [f["name"] for f in m["features"]] == list(FEATURE_NAMES)
    assert m["definition_hash"] == definition_hash() and (second.path / MANIFEST_FILE).is_file()
    assert m["rows"] == len(second.read())
    assert first.manifest["segments"]["transitions"] == {}
    segments = pd.read_parquet(second.path / SEGMENTS_FILE)
    assert segments["customer_key"].tolist() == second.read()["customer_key"].tolist()
    before = len(pd.read_parquet(first.path / SEGMENTS_FILE))
    for column in ("rfm_segment", "lifecycle"):
        t = m["segments"]["transitions"][column]
        assert t["stayed"] + t["moved"] + t["left"] == before
        assert t["stayed"] + t["moved"] + t["entered"] == len(segments)
        assert sum(m["segments"]["sizes"][column].values()) == len(segments)
        matrix = pd.read_parquet(second.path / f"transitions_{column}.parquet").set_index("previous")
        assert int(matrix.to_numpy().sum()) == t["stayed"] + t["moved"] + t["entered"] + t["left"]
    assert t["entered"] > 0  # customers whose first order fell between the two as-of dates
