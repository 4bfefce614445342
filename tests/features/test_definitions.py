"""Point-in-time features: only events strictly before the cutoff count."""

from __future__ import annotations

from datetime import UTC, datetime

import ibis
import pandas as pd
import pytest

from features.datasets import LABEL, ChurnTarget, build_training_set
from features.definitions import FEATURE_NAMES
from features.store import compute_features

T = datetime(2024, 6, 1, tzinfo=UTC)


def _tables(orders: list[tuple[str, str, float]]) -> dict[str, ibis.Table]:
    frame = pd.DataFrame(orders, columns=["customer_key", "ordered_at", "amount"])
    frame["ordered_at"] = pd.to_datetime(frame["ordered_at"], utc=True, format="ISO8601")
    frame["order_id"] = [f"o{i}" for i in range(len(frame))]
    con = ibis.duckdb.connect()
    return {"orders": con.create_table("orders", frame)}


BEFORE = [("a", "2024-01-01", 10.0), ("a", "2024-05-22", 30.0), ("b", "2023-07-01", 5.0)]


def test_rfm_values_are_right() -> None:
    f = compute_features(_tables(BEFORE), T).set_index("customer_key")
    assert f.loc["a", "recency_days"] == pytest.approx(10.0)
    assert f.loc["a", "orders_lifetime"] == 2 and f.loc["a", "orders_90d"] == 1
    assert f.loc["a", "monetary_lifetime"] == pytest.approx(40.0)
    assert f.loc["a", "avg_order_value"] == pytest.approx(20.0)
    assert f.loc["a", "tenure_days"] == pytest.approx(152.0)
    assert f.loc["b", "orders_365d"] == 1 and f.loc["b", "orders_90d"] == 0


def test_events_at_or_after_the_cutoff_change_nothing() -> None:
    later = [
        ("a", "2024-06-01 00:00", 999.0),
        ("a", "2024-07-01", 50.0),
        ("b", "2024-06-02", 1.0),
        ("c", "2024-06-05", 7.0),
    ]
    base = compute_features(_tables(BEFORE), T)
    planted = compute_features(_tables(BEFORE + later), T)
    pd.testing.assert_frame_equal(base, planted)  # c, known only after T, is not in the population


def test_churn_labels_look_only_after_the_cutoff() -> None:
    orders = [*BEFORE, ("a", "2024-07-01", 50.0)]
    labels = ChurnTarget(horizon_days=90).labels(_tables(orders), T).execute().set_index("customer_key")[LABEL]
    assert labels.to_dict() == {"a": 0, "b": 1}
    train = build_training_set(_tables(orders), [T], ChurnTarget(horizon_days=90).labels)
    assert list(train.columns[:2]) == ["customer_key", "cutoff"] and set(FEATURE_NAMES) <= set(train.columns)


def test_the_catalogue_doc_is_the_code() -> None:
    from pathlib import Path

    from features.definitions import FEATURES, catalogue_markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "features.md"
    assert doc.read_text(encoding="utf-8") == catalogue_markdown(), "run: kairos features catalogue > docs/features.md"
    assert len({f.name for f in FEATURES}) == len(FEATURES)  # names are unique
    assert all(len(f.description) > 10 for f in FEATURES)  # every feature explains itself
