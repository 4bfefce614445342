"""Chunked ingestion of the large tables publishes exactly what reading each table whole publishes.

The whole-table read (``chunk_rows=None``) is the reference: on a small synthetic world with dirt planted
across chunk boundaries (exact copies, a key conflict, a minority of naive timestamps, an erased customer)
and on the committed Complete Journey sample (exposures and redemptions), every published table, both
audit files, the identity files and the report must be equal, with chunks far smaller than the tables.
"""

from __future__ import annotations

import csv
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.erasure import Person, Tombstones
from features.errors import InputDataError
from features.ingest import INGESTED_DIR, REPORT_FILE, STREAMED, ingest
from features.mapping import load_mapping
from synth import generate_world

DATA = Path(__file__).resolve().parents[1] / "data"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
_VARIES = ("run_at", "elapsed_s")  # the report's only fields that differ from run to run


def _ingested(home: Path) -> dict[str, pd.DataFrame]:
    folder = home / INGESTED_DIR
    return {p.name: pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}


def _report(home: Path) -> dict[str, object]:
    report = json.loads((home / INGESTED_DIR / REPORT_FILE).read_text(encoding="utf-8"))
    return {k: v for k, v in report.items() if k not in _VARIES}


def _assert_same(whole: Path, chunked: Path) -> None:
    a, b = _ingested(whole), _ingested(chunked)
    assert sorted(a) == sorted(b)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)
        schemas = [pq.read_schema(home / INGESTED_DIR / name).remove_metadata() for home in (whole, chunked)]
        assert schemas[0] == schemas[1], name  # Arrow types too (string vs large_string)
    assert _report(whole) == _report(chunked)


def _append_rows(path: Path, rows: list[list[str]]) -> None:
    with path.open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def dirty_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 400-customer world whose messages and web events carry dirt that only a whole-table view sees."""
    raw = tmp_path_factory.mktemp("chunked") / "raw"
    generate_world(400, 5, raw)
    header, messages = _read_rows(raw / "messages.csv")
    sent = header.index("sent_at")
    first, second = list(messages[0]), list(messages[1])
    conflict = list(second)
    conflict[sent] = "2024-03-01T10:00:00+00:00"  # the same message id with other content
    naive = list(messages[2])
    naive[header.index("message_id")] = "naive-1"
    naive[sent] = "2024-03-01 10:00:00"  # one naive time among offset-aware ones: the odd form
    _append_rows(raw / "messages.csv", [first, conflict, naive])  # a copy of row 1, far from it
    _, events = _read_rows(raw / "web_events.csv")
    _append_rows(raw / "web_events.csv", [events[0], events[1]])
    return raw


def test_the_planted_dirt_is_there_to_be_found(dirty_world: Path, tmp_path: Path) -> None:
    report = ingest(dirty_world, load_mapping("synthetic"), tmp_path, now=NOW, chunk_rows=None).report
    reasons = report["tables"]["messages"]["quarantine_reasons"]
    assert reasons["duplicate_row"] >= 1
    assert reasons["key_conflict"] >= 2
    assert reasons["mixed_tz_awareness"] >= 1
    assert report["tables"]["web_events"]["quarantine_reasons"]["duplicate_row"] >= 2


def test_chunked_ingestion_equals_the_whole_table_read(dirty_world: Path, tmp_path: Path) -> None:
    mapping = load_mapping("synthetic")
    ingest(dirty_world, mapping, tmp_path / "whole", now=NOW, chunk_rows=None)
    ingest(dirty_world, mapping, tmp_path / "chunked", now=NOW, chunk_rows=997)
    _assert_same(tmp_path / "whole", tmp_path / "chunked")
    rows = json.loads((tmp_path / "chunked" / INGESTED_DIR / REPORT_FILE).read_text())["tables"]
    assert rows["web_events"]["input_rows"] > 10 * 997, "the small chunks really split the large tables"
    for table in STREAMED:
        if table in rows:
            t = rows[table]
            assert t["input_rows"] == t["accepted"] + t["reclassified"] + t["quarantined"]
            for counts in t["files"].values():
                assert counts["input_rows"] == counts["accepted"] + counts["reclassified"] + counts["quarantined"]


def test_chunked_ingestion_drops_erased_customers_as_the_whole_read_does(dirty_world: Path, tmp_path: Path) -> None:
    mapping = load_mapping("synthetic")
    header, messages = _read_rows(dirty_world / "messages.csv")
    customer = messages[0][header.index("customer_id")]
    for name in ("whole", "chunked"):
        Tombstones.of(tmp_path / name).add(Person((str(customer),), ()), "er_test", NOW)
    ingest(dirty_world, mapping, tmp_path / "whole", now=NOW, chunk_rows=None)
    ingest(dirty_world, mapping, tmp_path / "chunked", now=NOW, chunk_rows=1_500)
    _assert_same(tmp_path / "whole", tmp_path / "chunked")
    assert _report(tmp_path / "chunked")["erased"]["by_table"].get("messages", 0) > 0  # type: ignore[union-attr]


def test_complete_journey_sample_chunked_equals_whole(tmp_path: Path) -> None:
    source = DATA / "complete_journey"
    raw = tmp_path / "raw"
    shutil.copytree(source, raw)
    mapping = load_mapping("complete_journey")
    ingest(raw, mapping, tmp_path / "whole", now=NOW, chunk_rows=None)
    ingest(raw, mapping, tmp_path / "chunked", now=NOW, chunk_rows=64)
    _assert_same(tmp_path / "whole", tmp_path / "chunked")
    assert {"exposures", "redemptions"} <= set(_report(tmp_path / "chunked")["tables"])  # type: ignore[arg-type]


def test_a_malformed_row_in_a_streamed_table_is_named_as_the_whole_read_names_it(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate_world(40, 1, raw)
    lines = (raw / "messages.csv").read_text(encoding="utf-8").splitlines()
    lines.insert(5, lines[5] + ",extra,fields")
    (raw / "messages.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    messages = []
    for chunk_rows in (None, 50):
        with pytest.raises(InputDataError) as caught:
            ingest(raw, load_mapping("synthetic"), tmp_path / f"home-{chunk_rows}", now=NOW, chunk_rows=chunk_rows)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert "line 6" in messages[1] and "extra" not in messages[1]
