"""RFM baselines: quintile scores with known edges, leads handled explicitly, logistic regression, JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from models.rfm import RFMLogistic, RFMScore


def _frame() -> pd.DataFrame:
    """Ten buyers with recency 1..10 days, 1..10 orders, spend 10..100, and two leads."""
    buyers = pd.DataFrame(
        {
            "recency_days": np.arange(1.0, 11.0),
            "orders_365d": np.arange(1.0, 11.0),
            "monetary_365d": np.arange(10.0, 101.0, 10.0),
        }
    )
    leads = pd.DataFrame({"recency_days": [np.nan, np.nan], "orders_365d": [0.0, 0.0], "monetary_365d": [0.0, 0.0]})
    return pd.concat([buyers, leads], ignore_index=True)


def test_quintile_edges_and_scores() -> None:
    X = _frame()
    model = RFMScore().fit(X)
    # quantiles of 1..10 at 20/40/60/80%: 2.8, 4.6, 6.4, 8.2 (leads are not in the edges)
    assert model.edges_["recency_days"] == pytest.approx([2.8, 4.6, 6.4, 8.2])
    assert model.edges_["monetary_365d"] == pytest.approx([28.0, 46.0, 64.0, 82.0])
    assert model.n_buyers_ == 10
    scores = model.transform(X)
    assert scores["r_score"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0]
    assert scores["f_score"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 0, 0]
    assert (scores["rfm_score"] == scores[["r_score", "f_score", "m_score"]].sum(axis=1)).all()
    assert len(scores) == len(X)  # nobody dropped


def test_leads_rank_last_for_activity_and_first_for_churn() -> None:
    X = _frame()
    active = RFMScore(direction="active").fit(X).decision_function(X)
    churn = RFMScore(direction="churn").fit(X).decision_function(X)
    assert active[10] == active[11] == 0 and active[:10].min() >= 3
    assert churn[10] == churn[11] == 15
    np.testing.assert_array_equal(churn, 15 - active)


def test_edges_come_from_training_rows_only() -> None:
    model = RFMScore().fit(_frame())
    new = pd.DataFrame({"recency_days": [0.0, 1000.0], "orders_365d": [500.0, 0.0], "monetary_365d": [1e6, 0.0]})
    scores = model.transform(new)
    assert scores["rfm_score"].tolist() == [15, 3]


def test_ties_share_a_score() -> None:
    X = pd.DataFrame(
        {"recency_days": np.arange(1.0, 11.0), "orders_365d": [1.0] * 8 + [2.0, 5.0], "monetary_365d": 1.0}
    )
    scores = RFMScore().fit(X).transform(X)
    assert scores["f_score"].iloc[:8].nunique() == 1
    assert scores["m_score"].nunique() == 1


def test_bad_input() -> None:
    X = _frame()
    X.loc[3, "orders_365d"] = np.nan
    with pytest.raises(ValueError, match="orders_365d: 1 null"):
        RFMScore().fit(X)
    with pytest.raises(ValueError, match="missing column"):
        RFMScore().fit(_frame().drop(columns="monetary_365d"))
    with pytest.raises(ValueError, match="no buyers"):
        RFMScore().fit(_frame().iloc[10:])
    with pytest.raises(ValueError, match="direction"):
        RFMScore(direction="up").fit(_frame())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="recency_days: values must be"):
        RFMScore().fit(_frame().assign(recency_days=-1.0))


def test_rfm_score_json_round_trip() -> None:
    X = _frame()
    model = RFMScore(direction="churn").fit(X)
    back = RFMScore.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(back.decision_function(X), model.decision_function(X))
    assert back.get_params() == model.get_params()


@pytest.fixture(scope="module")
def purchase_data() -> tuple[pd.DataFrame, np.ndarray]:
    """Buyers whose purchase odds fall with recency and rise with frequency; leads buy rarely."""
    rng = np.random.default_rng(11)
    n_buyers, n_leads = 4_000, 1_000
    recency = rng.exponential(60, n_buyers) + 1
    orders = rng.poisson(3, n_buyers).astype(float) + 1
    spend = orders * rng.gamma(2, 30, n_buyers)
    p_buyers = expit(1.5 - 0.8 * np.log1p(recency) + 0.6 * np.log1p(orders))
    X = pd.DataFrame(
        {
            "recency_days": np.r_[recency, np.full(n_leads, np.nan)],
            "orders_365d": np.r_[orders, np.zeros(n_leads)],
            "monetary_365d": np.r_[spend, np.zeros(n_leads)],
        }
    )
    y = rng.binomial(1, np.r_[p_buyers, np.full(n_leads, 0.02)])
    return X, y


def test_logistic_learns_the_signs_and_the_lead_rate(purchase_data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = purchase_data
    model = RFMLogistic().fit(X, y)
    coef = dict(zip(RFMLogistic.INPUTS, model.coef_, strict=True))
    assert coef["log_recency"] < 0 and coef["log_frequency"] > 0
    p = model.predict_proba(X)
    assert p.shape == (len(X),) and ((p > 0) & (p < 1)).all()
    assert roc_auc_score(y, p) > 0.7
    leads = X["recency_days"].isna().to_numpy()
    assert p[leads].mean() == pytest.approx(y[leads].mean(), abs=0.01)
    # leads' log-recency is filled with the buyers' mean, i.e. a standardised 0
    assert model.recency_fill_ == pytest.approx(np.log1p(X["recency_days"].dropna()).mean())


def test_logistic_json_round_trip(purchase_data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = purchase_data
    model = RFMLogistic(C=0.5).fit(X, y)
    back = RFMLogistic.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    assert back.C == 0.5


def test_logistic_bad_input(purchase_data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = purchase_data
    with pytest.raises(ValueError, match="y: 3 labels"):
        RFMLogistic().fit(X, y[:3])
    with pytest.raises(ValueError, match="y: only one class"):
        RFMLogistic().fit(X, np.zeros(len(X)))
    with pytest.raises(AttributeError, match="not fitted"):
        RFMLogistic().predict_proba(X)
    state = RFMLogistic().fit(X, y).to_dict()
    state["coef"] = state["coef"][:2]
    with pytest.raises(ValueError, match="coef"):
        RFMLogistic.from_dict(state)
