"""Value without prices: a price-less export's monetary features are null (not 0) and listed as not
available in the snapshot manifest; value models refuse with one line; doctor says the same; reasons print
no amount. Exports with prices give the same snapshot as before."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.definitions import DESCRIPTIONS, MONETARY_FEATURES
from features.ingest import ingest
from features.mapping import Mapping, load_mapping
from features.store import NO_PRICES, build_snapshot, compute_features, data_has_prices, default_as_of, open_tables
from models.reasons import ReasonExplainer
from tests.features.test_mapping_expressions import TILL, _lines_mapping, _write
from training.propensity import InsufficientDataError

NOW = datetime(2026, 1, 1, tzinfo=UTC)

# The features of the synthetic world (300 customers, seed 7) as of the data's day after, computed by the code
# before prices became optional (commit 40b9166): numbers rounded to 6 decimals, in customer_key order.
SYNTHETIC_FEATURES_BEFORE = "6ccf4da25486c50c8fd7d0392fce20b72de8b5986eda9157a74c9fe3fccfe2b7"


def _digest(frame: pd.DataFrame) -> str:
    frame = frame.sort_values("customer_key").reset_index(drop=True)
    numbers = frame.select_dtypes("number").astype("float64").round(6)
    text = frame.drop(columns=numbers.columns).astype("string")
    hashed = pd.util.hash_pandas_object(pd.concat([text, numbers], axis=1), index=True)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def test_the_synthetic_world_gives_the_same_features_as_before(tmp_path: Path) -> None:
    from synth import generate_world

    generate_world(300, 7, tmp_path / "raw")
    ingest(tmp_path / "raw", load_mapping("synthetic"), tmp_path / "h", now=NOW)
    tables = open_tables(tmp_path / "h")
    frame = compute_features(tables, default_as_of(tables))
    assert data_has_prices(tmp_path / "h")
    assert frame["monetary_lifetime"].notna().all()  # buyers and leads alike (leads: 0)
    assert _digest(frame) == SYNTHETIC_FEATURES_BEFORE


@pytest.fixture()
def priceless(tmp_path: Path) -> Path:
    """The till without prices, plus h3: a customer record with no order."""
    folder = _write(tmp_path / "x", {"till.csv": TILL, "people.csv": "household\nh1\nh2\nh3\n"})
    raw = {
        **_lines_mapping(expressions={}),
        "derive_items_from_lines": True,
        "derive_customers_from_lines": True,
        "max_quarantine_share": 1.0,
    }
    raw["tables"]["customers"] = {"files": ["people.csv"], "columns": {"customer_id": "household"}}
    ingest(folder, Mapping.model_validate(raw), tmp_path / "home", now=NOW)
    return tmp_path / "home"


def test_monetary_features_of_price_less_data_are_null_not_zero(priceless: Path) -> None:
    assert not data_has_prices(priceless)
    snap = build_snapshot(priceless)
    frame = pd.read_parquet(snap.path / "features.parquet")
    assert len(frame) == 3
    assert sorted(frame["orders_lifetime"]) == [0.0, 1.0, 2.0]  # the order features stand without prices
    for name in MONETARY_FEATURES:
        assert frame[name].isna().all(), name
    assert snap.manifest["prices"] is False
    assert sorted(snap.manifest["not_available"]) == sorted(MONETARY_FEATURES)
    assert set(snap.manifest["not_available"].values()) == {"the data has no prices"}


def test_a_snapshot_with_prices_says_nothing_of_them(tmp_path: Path) -> None:
    folder = _write(tmp_path / "x", {"till.csv": TILL})
    raw = {**_lines_mapping(), "derive_items_from_lines": True, "derive_customers_from_lines": True}
    ingest(folder, Mapping.model_validate(raw), tmp_path / "home", now=NOW)
    snap = build_snapshot(tmp_path / "home")
    assert "prices" not in snap.manifest and "not_available" not in snap.manifest
    frame = pd.read_parquet(snap.path / "features.parquet")
    assert sorted(frame["monetary_lifetime"]) == [6.25, 9.5]  # 5.00 + 1.25; 7.50 + 2.00


def test_value_training_refuses_price_less_data_with_one_line(priceless: Path, tmp_path: Path) -> None:
    from training.value import train_value

    with pytest.raises(InsufficientDataError, match=f"^{NO_PRICES}$"):
        train_value(priceless, f"file://{tmp_path}/mlruns")
    from cli.main import app

    result = CliRunner().invoke(app, ["train", "value", "--data", str(priceless), "--tracking-uri", "x"])
    assert result.exit_code == 2
    assert " ".join(result.output.split()).endswith(f"error: {NO_PRICES}")  # after the progress bar


def test_doctor_says_value_models_are_not_available_without_prices(priceless: Path) -> None:
    from training.doctor import diagnose

    verdicts = {v.model: v for v in diagnose(priceless)}
    for name in ("value (365 d)", "value (180 d)"):
        assert not verdicts[name].ok
        assert verdicts[name].problems == (NO_PRICES,)
        assert verdicts[name].suggestions == ()


def test_reasons_print_no_amount_for_a_buyer_without_prices() -> None:
    explainer = ReasonExplainer(DESCRIPTIONS, currency="USD")

    def buyer(name: str) -> float:
        return 12.0 if name == "recency_days" else math.nan

    assert explainer.describe("avg_order_value", math.nan, buyer) == "average order value: unknown"
    assert explainer.describe("avg_order_value", math.nan) == "never ordered"
    assert explainer.describe("avg_order_value", 56.0, buyer) == "average order $56"
    assert "$" not in explainer.describe("monetary_365d", math.nan, buyer)


def test_train_all_and_doctor_print_the_line_for_price_less_data(priceless: Path, tmp_path: Path) -> None:
    from cli.main import app

    trained = CliRunner().invoke(
        app, ["train", "all", "--data", str(priceless), "--tracking-uri", f"file://{tmp_path}/mlruns"]
    )
    assert f"value: not trained: {NO_PRICES}" in " ".join(trained.output.split())
    doctor = CliRunner().invoke(app, ["doctor", "--data", str(priceless)])
    assert NO_PRICES in doctor.output.splitlines()  # a plain line of its own
    assert "value (365 d), what would fit" not in doctor.output  # no flag brings amounts back
