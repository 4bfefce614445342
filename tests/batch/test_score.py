"""The export's Arrow plumbing (batch/score.py): the matrix the models read, bands, the once-per-snapshot joins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from batch.score import _band_strings, _Joined, _matrix
from models.reasons import band


def test_matrix_is_what_pandas_gives_lightgbm() -> None:
    batch = pa.RecordBatch.from_pydict(
        {
            "ints": pa.array([1, None, 16_777_217, -3], pa.int64()),
            "floats": pa.array([0.1, np.nan, None, 1e30], pa.float64()),
            "flags": pa.array([True, None, False, True], pa.bool_()),
            "small": pa.array([1, 2, 3, None], pa.int32()),
        }
    )
    names = ["floats", "ints", "flags", "small"]  # not the file's order: the models' order
    got = _matrix(batch, names)
    want = batch.to_pandas()[names].astype("float64").to_numpy(np.float32).astype(np.float64)
    assert got.dtype == np.float64 and got.flags.c_contiguous and got.shape == (4, 4)
    np.testing.assert_array_equal(got, want)  # NaN where null, float32 rounding (16,777,217 -> 16,777,216)
    assert np.isnan(got[1]).sum() == 3 and got[2, 1] == 16_777_216.0


def test_band_strings_equal_band_and_null_outside() -> None:
    p = np.array([0.05, 0.35, 0.95, 0.6, 0.2])
    codes = band(p).tolist()
    outside = np.array([False, False, True, False, False])
    got = _band_strings(np.array([["low", "medium", "high"].index(c) for c in codes], np.int8), outside)
    assert got.type == pa.string()
    assert got.to_pylist() == [None if o else c for c, o in zip(codes, outside.tolist(), strict=True)]


def test_joined_lines_up_every_customer_and_keeps_the_missing_as_null() -> None:
    table = pd.DataFrame(
        {"p_alive": [0.9, np.nan, 0.2], "lifecycle": pd.array(["active", None, "lapsed"], dtype="string")},
        index=pd.Index(["c", "a", "z"], name="customer_key"),
    )
    keys = pa.chunked_array([["a", "b"], ["c", "z", "y"]])  # b and y have no row; chunks as a file gives them
    nums = _Joined.of(table, ["p_alive"], pa.float32(), keys)
    words = _Joined.of(table, ["lifecycle"], pa.string(), keys)
    assert nums.take(0, 5)["p_alive"].to_pylist() == [None, None, np.float32(0.9), np.float32(0.2), None]
    assert words.take(0, 5)["lifecycle"].to_pylist() == [None, None, "active", "lapsed", None]
    assert words.take(2, 2)["lifecycle"].to_pylist() == ["active", "lapsed"]  # a later batch's slice


def test_customer_ids_names_each_key_by_the_id_the_resolver_named_it_after(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The export's ``customer_id`` is the cluster's primary id: the one its key is the keyed hash of."""
    from batch.score import CUSTOMER_IDS, customer_ids
    from features.identity import Pseudonymizer, resolve_identities
    from features.ingest import IDENTITY_MAP_FILE, REPORT_FILE

    records = pd.DataFrame(
        {
            "customer_id": ["b10", "a2", "B1", "z", "lone"],
            "email": ["x@example.com", "x@example.com", "X@example.com ", "y@example.com", None],
        }
    )
    pseudonymizer = Pseudonymizer.for_development()
    mapping = resolve_identities(records, pseudonymizer=pseudonymizer).mapping
    folder = tmp_path / "ingested"
    folder.mkdir()
    (folder / REPORT_FILE).write_text("{}")
    mapping.sample(frac=1.0, random_state=3).to_parquet(folder / IDENTITY_MAP_FILE)  # row order must not matter
    got = customer_ids(tmp_path)
    merged = pseudonymizer.customer_key("B1")  # code-point order: upper case before lower case
    assert got.loc[merged, "customer_id"] == "B1"
    assert got.loc[merged, CUSTOMER_IDS] == ["B1", "a2", "b10"]
    assert got.loc[pseudonymizer.customer_key("z"), CUSTOMER_IDS] == ["z"]
    assert len(got) == 3 and got.index.is_unique
    for key, row in got.iterrows():
        assert key == pseudonymizer.customer_key(row["customer_id"])
