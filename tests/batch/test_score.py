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
