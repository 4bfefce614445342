"""The baselines' outputs as model inputs: leakage-free per cutoff, the same on every scoring path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import ibis
import numpy as np
import pandas as pd
import pytest

from features.datasets import ChurnTarget, build_training_set
from features.store import compute_features
from models.clv import BGNBD
from models.stacking import COLUMNS, EXPECTED_ORDERS, P_ALIVE, P_ORDER, RFM_SCORE, BaselineInputs, StackingError
from training.inputs import add_derived, fit_per_cutoff

C1 = datetime(2024, 6, 1, tzinfo=UTC)
C2 = datetime(2024, 7, 1, tzinfo=UTC)


def _orders(n_customers: int = 80, seed: int = 3) -> list[tuple[str, datetime, float]]:
    rng = np.random.default_rng(seed)
    out = []
    start = datetime(2023, 1, 1, tzinfo=UTC)
    for i in range(n_customers):
        first = start + timedelta(days=int(rng.integers(0, 400)))
        rate = float(rng.uniform(0.005, 0.08))  # orders per day
        day = first
        while day < datetime(2024, 12, 31, tzinfo=UTC):
            out.append((f"c{i:03d}", day, float(rng.uniform(5, 100))))
            day += timedelta(days=max(1, int(rng.exponential(1 / rate))))
            if rng.random() < 0.05:  # drops out
                break
    return out


def _tables(orders: list[tuple[str, datetime, float]]) -> dict[str, ibis.Table]:
    frame = pd.DataFrame(orders, columns=["customer_key", "ordered_at", "amount"])
    frame["ordered_at"] = pd.to_datetime(frame["ordered_at"], utc=True)
    frame["order_id"] = [f"o{i}" for i in range(len(frame))]
    return {"orders": ibis.duckdb.connect().create_table("orders", frame)}


@pytest.fixture(scope="module")
def orders() -> list[tuple[str, datetime, float]]:
    return _orders()


def test_derived_inputs_at_a_cutoff_read_nothing_at_or_after_it(orders: list[tuple[str, datetime, float]]) -> None:
    """The rows of cutoff C1 get the same derived columns whether or not the data holds what came after C1:
    the inputs are fitted on C1's own feature rows, and a row's columns come from its cutoff's fit."""
    target = ChurnTarget(horizon_days=30, active_days=365)
    full = _tables(orders)
    before = _tables([o for o in orders if o[1] < C1])
    # labels need the future: take them from the full data, features from each table set
    labels = target.labels
    with_future = build_training_set(full, [C1, C2], labels)
    fitted_full = fit_per_cutoff(lambda c: compute_features(full, c), [C1, C2], 30)
    derived_full = add_derived(with_future, fitted_full)
    fitted_past = fit_per_cutoff(lambda c: compute_features(before, c), [C1], 30)
    at_c1 = with_future[with_future["cutoff"] == pd.Timestamp(C1)]
    derived_past = add_derived(at_c1, fitted_past)
    got = derived_full.loc[at_c1.index, list(COLUMNS)]
    pd.testing.assert_frame_equal(got, derived_past[list(COLUMNS)])
    # and the later cutoff's rows use the later fit, not C1's
    assert fitted_full[pd.Timestamp(C2)].bgnbd_.params_ != fitted_full[pd.Timestamp(C1)].bgnbd_.params_
    assert got[P_ALIVE].notna().all() and got[RFM_SCORE].between(3, 15).all()


def test_derived_columns_are_the_baselines_own_numbers(orders: list[tuple[str, datetime, float]]) -> None:
    """P(alive) and P(order) are BG/NBD's on (frequency, recency, T) of the feature row; leads get NaN."""
    feats = compute_features(_tables(orders), C1)
    feats = pd.concat([feats, feats.head(1).assign(customer_key="lead", orders_lifetime=0.0, recency_days=np.nan)])
    inputs = BaselineInputs(30).fit(feats)
    derived = inputs.transform(feats)
    row = feats.iloc[0]
    x, t = float(row["orders_lifetime"]) - 1, float(row["tenure_days"]) / 7
    t_x = (float(row["tenure_days"]) - float(row["recency_days"])) / 7
    bg: BGNBD = inputs.bgnbd_
    assert derived[P_ALIVE].iloc[0] == pytest.approx(float(bg.p_alive(x, t_x, t)), rel=1e-6)
    assert derived[P_ORDER].iloc[0] == pytest.approx(float(bg.probability_of_purchase(30 / 7, x, t_x, t)), rel=1e-6)
    assert derived.iloc[-1][[P_ALIVE, P_ORDER, EXPECTED_ORDERS]].isna().all()
    assert derived.iloc[-1][RFM_SCORE] == 0


def test_the_served_derivation_is_the_trained_one(orders: list[tuple[str, datetime, float]]) -> None:
    """Through JSON (the model's metadata) and from a float32 matrix in another column order, the same values."""
    feats = compute_features(_tables(orders), C1)
    inputs = BaselineInputs(30).fit(feats)
    back = BaselineInputs.from_dict(json.loads(json.dumps(inputs.to_dict())))
    names = list(feats.columns[::-1].drop("customer_key"))
    matrix = feats[names].to_numpy(np.float32)
    expected = inputs.transform(feats).to_numpy(np.float32)
    np.testing.assert_array_equal(back.derive(matrix, names), expected)
    np.testing.assert_array_equal(back.derive(matrix.astype(np.float64), names), expected.astype(np.float64))


def test_derived_inputs_refuse_what_they_cannot_use(orders: list[tuple[str, datetime, float]]) -> None:
    feats = compute_features(_tables(orders), C1)
    with pytest.raises(StackingError, match="tenure_days"):
        BaselineInputs(30).fit(feats.drop(columns="tenure_days"))
    with pytest.raises(StackingError, match="no customer with an order"):
        BaselineInputs(30).fit(feats.assign(orders_lifetime=0.0))
    with pytest.raises(StackingError, match="format"):
        BaselineInputs.from_dict({**BaselineInputs(30).fit(feats).to_dict(), "format_version": 99})


def test_the_exports_numeric_features_reach_the_model_and_its_labels_are_named() -> None:
    """Campaign features and numeric or banded customer attributes are model inputs when the data has them;
    text labels are not inputs, and are returned so the job can say so."""
    from features.definitions import NUMERIC_FEATURES
    from training.inputs import model_features

    con = ibis.duckdb.connect()
    customers = pd.DataFrame(
        {
            "customer_key": ["a"],
            "attr_income": [1.0],
            "attr_segment": ["x"],
            "attr_age": ["35-44"],
            "attr_age_rank": [3],
        }
    )
    exposures = pd.DataFrame({"customer_key": ["a"], "campaign_id": ["c1"], "exposed_at": [pd.Timestamp(C1)]})
    tables = {
        "orders": _tables([("a", C1, 1.0)])["orders"],
        "customers": con.create_table("customers", customers),
        "exposures": con.create_table("exposures", exposures),
    }
    numeric, text = model_features(tables)
    assert numeric[: len(NUMERIC_FEATURES)] == NUMERIC_FEATURES
    extra = numeric[len(NUMERIC_FEATURES) :]
    assert {"attr_income", "attr_age", "campaigns_received_365d", "days_since_last_campaign"} <= set(extra)
    assert set(text) == {"attr_segment", "attr_age_band"}
    bare, none = model_features(_tables([("a", C1, 1.0)]))
    assert bare == NUMERIC_FEATURES and none == ()
