"""The servable propensity baselines: what each reads, how it scores leads, its reasons, its JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.baselines import PropensityBaseline
from models.clv import summary_from_features
from models.reasons import ReasonExplainer
from tests.models.estimators import BASELINE_X, RFM_X, RFM_Y


def test_bgnbd_reads_the_feature_row_and_scores_leads_explicitly() -> None:
    buy = PropensityBaseline("bgnbd", direction="active", horizon_days=90).fit(BASELINE_X)
    leave = PropensityBaseline("bgnbd", direction="churn", horizon_days=90).fit(BASELINE_X)
    assert buy.feature_names_ == ["orders_lifetime", "recency_days", "tenure_days"]
    p, q = buy.predict_proba(BASELINE_X), leave.predict_proba(BASELINE_X)
    np.testing.assert_allclose(p + q, 1.0)
    lead = BASELINE_X["orders_lifetime"].to_numpy() == 0
    assert lead.any() and np.all(p[lead] == 0.0) and np.all(p[~lead] > 0.0)
    # the same answer as BG/NBD itself on the summary read off the rows
    s = summary_from_features(BASELINE_X)[~lead]
    expected = buy.model_.probability_of_purchase(90 / 7.0, s["frequency"], s["recency"], s["T"])
    np.testing.assert_allclose(p[~lead], expected)
    # a longer window can only make an order more likely
    longer = PropensityBaseline("bgnbd", horizon_days=180).fit(BASELINE_X).predict_proba(BASELINE_X)
    assert np.all(longer[~lead] >= p[~lead])


def test_a_matrix_in_feature_order_scores_like_the_frame() -> None:
    model = PropensityBaseline("rfm_logistic").fit(RFM_X, RFM_Y)
    matrix = RFM_X[model.feature_names_].to_numpy(np.float32)
    np.testing.assert_allclose(model.predict_proba(matrix), model.predict_proba(RFM_X.astype(np.float32)))
    with pytest.raises(ValueError, match="expected a matrix of 3 columns"):
        model.predict_proba(matrix[:, :2])
    with pytest.raises(ValueError, match="needs the 0/1 outcomes"):
        PropensityBaseline("rfm_logistic").fit(RFM_X)


def test_past_rate_is_the_smoothed_own_rate() -> None:
    frame = pd.DataFrame({"sends_sms_90d": [0.0, 4.0, 10.0], "clicks_sms_90d": [0.0, 4.0, 1.0]})
    model = PropensityBaseline("past_rate", channel="sms", action="click").fit(frame)
    np.testing.assert_allclose(model.predict_proba(frame), [0.5, 5 / 6, 2 / 12])


def test_reasons_name_the_inputs_that_push_the_score_up() -> None:
    model = PropensityBaseline("rfm_score", direction="churn").fit(RFM_X)
    contrib = model.contributions(RFM_X)
    assert list(contrib.columns) == [*model.feature_names_, "bias"]
    logit = np.log(np.clip(model.predict_proba(RFM_X), 1e-6, 1 - 1e-6))
    logit -= np.log1p(-np.clip(model.predict_proba(RFM_X), 1e-6, 1 - 1e-6))
    np.testing.assert_allclose(contrib.sum(axis=1), logit)  # each row closes to the score's log-odds
    # a long-lapsed customer's churn score is pushed up by their recency, and the reason says so
    lapsed = RFM_X.iloc[[int(RFM_X["recency_days"].idxmax())]]
    reasons = ReasonExplainer({}).explain(model, lapsed, k=3)[0]
    assert reasons and reasons[0].feature == "recency_days" and "days" in reasons[0].text


def test_json_round_trip_and_refusals() -> None:
    model = PropensityBaseline("bgnbd", direction="churn", horizon_days=30).fit(BASELINE_X)
    state = json.loads(json.dumps(model.to_dict()))
    back = PropensityBaseline.from_dict(state)
    np.testing.assert_array_equal(back.predict_proba(BASELINE_X), model.predict_proba(BASELINE_X))
    with pytest.raises(ValueError, match="reads"):
        PropensityBaseline.from_dict({**state, "features": ["recency_days"]})
    with pytest.raises(ValueError, match="kind"):
        PropensityBaseline.from_dict({**state, "params": {**state["params"], "kind": "magic"}})


# --- value baselines -----------------------------------------------------------------------------------------


def test_value_last_period_reads_the_nearest_window_and_scales_to_the_horizon() -> None:
    from models.baselines import ValueBaseline
    from tests.models.estimators import VALUE_X

    same = ValueBaseline("last_period", horizon_days=90).fit(VALUE_X)
    assert same.feature_names_ == ["monetary_90d", "orders_90d"]
    spend, orders = same.predict_both(VALUE_X)
    np.testing.assert_allclose(orders, VALUE_X["orders_90d"].fillna(0.0))
    np.testing.assert_allclose(spend, VALUE_X["monetary_90d"].fillna(0.0))
    longer = ValueBaseline("last_period", horizon_days=120).fit(VALUE_X)  # 90 days is the nearest window
    np.testing.assert_allclose(longer.predict(VALUE_X), spend * 120 / 90)


def test_value_bgnbd_gamma_gamma_expects_nothing_of_leads_and_more_of_frequent_buyers() -> None:
    from models.baselines import ValueBaseline
    from tests.models.estimators import VALUE_X

    model = ValueBaseline("bgnbd_gamma_gamma", horizon_days=90).fit(VALUE_X)
    assert model.gamma_ is not None
    spend, orders = model.predict_both(VALUE_X)
    lead = VALUE_X["orders_lifetime"].to_numpy() == 0
    assert np.all(spend[lead] == 0) and np.all(orders[lead] == 0) and np.all(spend[~lead] > 0)
    # more orders, the last one recent: more expected (BG/NBD reads many orders and a long silence as a
    # customer probably gone, so the rule holds only where the last order is recent)
    recent = VALUE_X[~lead & (VALUE_X["recency_days"] <= 14)].copy()
    assert len(recent) >= 20
    busier = recent.assign(orders_lifetime=recent["orders_lifetime"] + 5)
    assert np.all(model.predict_orders(busier) > model.predict_orders(recent))
    # the JSON state reads back into the same predictions; a state of another kind is refused
    twin = ValueBaseline.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(twin.predict(VALUE_X), spend)
    state = model.to_dict() | {"features": ["monetary_90d", "orders_90d"]}
    with pytest.raises(ValueError, match="reads"):
        ValueBaseline.from_dict(state)
    with pytest.raises(ValueError, match="kind"):
        ValueBaseline("median").fit(VALUE_X)  # type: ignore[arg-type]
