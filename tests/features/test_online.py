"""In-process online store: order kept, missing reported as missing (never zeros), aliases resolve."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.online import InMemoryOnlineStore


def _store() -> InMemoryOnlineStore:
    frame = pd.DataFrame({"customer_key": ["k1", "k2", "k3"], "a": [1.0, 2.0, np.nan], "b": [10.0, 20.0, 30.0]})
    return InMemoryOnlineStore(frame, ["a", "b"], aliases={"R1": "k1", "R9": "k-gone"})


def test_lookup_keeps_order_and_reports_missing() -> None:
    found = _store().lookup(["k3", "nobody", "k1", "R1", "R9"])
    assert found.keys == ["k3", None, "k1", "k1", None]
    assert found.rows.tolist() == [2, -1, 0, 0, -1]
    assert found.values.dtype == np.float32 and found.values.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(found.values[2], [1.0, 10.0])
    assert np.isnan(found.values[1]).all() and np.isnan(found.values[4]).all()
    assert np.isnan(found.values[0, 0]) and found.values[0, 1] == 30.0  # a real NaN feature stays NaN


def test_lookup_does_not_expose_the_store_matrix() -> None:
    store = _store()
    found = store.lookup(["k1"])
    found.values[:] = -1
    assert store.lookup(["k1"]).values[0, 0] == 1.0
