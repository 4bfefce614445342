"""Reasons: the driving feature comes first, contributions are exact, texts are human, bands are right."""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features.definitions import DESCRIPTIONS, NUMERIC_FEATURES
from models.churn import LightGBMClassifier
from models.reasons import Reason, ReasonContext, ReasonExplainer, band, contributions, times_words

FEATURES = ["recency_days", "orders_90d", "monetary_365d", "views_7d"]


@pytest.fixture(scope="module")
def churn_like() -> tuple[LightGBMClassifier, pd.DataFrame]:
    """Churn driven by recency alone (the other features are noise); leads have no recency."""
    rng = np.random.default_rng(0)
    n = 3_000
    X = pd.DataFrame(
        {
            "recency_days": rng.uniform(1, 300, n),
            "orders_90d": rng.poisson(2, n).astype(float),
            "monetary_365d": rng.gamma(2, 100, n),
            "views_7d": rng.poisson(5, n).astype(float),
        }
    )
    X.loc[:199, "recency_days"] = np.nan
    p = np.where(X["recency_days"].isna(), 0.9, 1 / (1 + np.exp(-(X["recency_days"] - 150) / 20)))
    y = rng.binomial(1, p)
    model = LightGBMClassifier(n_estimators=60, num_leaves=8, min_child_samples=20, n_jobs=1).fit(X, y)
    # gap_mean_days is not a model input, but templates read it from the same row
    X["gap_mean_days"] = 47.0
    return model, X


def test_the_driving_feature_is_reason_number_one(churn_like: tuple[LightGBMClassifier, pd.DataFrame]) -> None:
    model, X = churn_like
    long_gone = X[X["recency_days"] > 200]
    reasons = ReasonExplainer(DESCRIPTIONS).explain(model, long_gone, k=3)
    assert len(reasons) == len(long_gone)
    firsts = [r[0].feature for r in reasons]
    assert firsts.count("recency_days") == len(firsts)


def test_contributions_sum_to_the_raw_score(churn_like: tuple[LightGBMClassifier, pd.DataFrame]) -> None:
    model, X = churn_like
    contrib = contributions(model, X)
    assert list(contrib.columns) == [*FEATURES, "bias"]
    raw = model.booster_.predict(X[FEATURES].to_numpy(np.float32), raw_score=True)
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy(), raw, rtol=1e-6, atol=1e-6)


def test_only_positive_drivers_strongest_first(churn_like: tuple[LightGBMClassifier, pd.DataFrame]) -> None:
    model, X = churn_like
    reasons = ReasonExplainer(DESCRIPTIONS).explain(model, X.head(300), k=3)
    contrib = contributions(model, X.head(300)).drop(columns="bias").to_numpy()
    for row, rs in zip(contrib, reasons, strict=True):
        assert len(rs) == min(3, int((row > 0).sum()))
        got = [r.contribution for r in rs]
        assert got == sorted(got, reverse=True) and all(c > 0 for c in got)
        assert got == pytest.approx(sorted(row[row > 0], reverse=True)[: len(got)])


def test_fewer_than_k_when_few_features_push_up() -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"recency_days": rng.uniform(0, 100, 2_000), "orders_90d": 1.0, "views_7d": 0.0})
    y = (X["recency_days"] > 50).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 4, "num_threads": 1}, lgb.Dataset(X, y), 20
    )
    reasons = ReasonExplainer(DESCRIPTIONS).explain(booster.model_to_string(), X, k=3)
    assert max(len(r) for r in reasons) == 1  # constant features never split: no contribution
    low = X["recency_days"].to_numpy() < 40
    assert all(len(r) == 0 for r, is_low in zip(reasons, low, strict=True) if is_low)


def test_booster_text_and_estimator_agree(churn_like: tuple[LightGBMClassifier, pd.DataFrame]) -> None:
    model, X = churn_like
    explainer = ReasonExplainer(DESCRIPTIONS)
    sample = X.iloc[::100]
    a = explainer.explain(model, sample)
    b = explainer.explain(model.to_text(), sample)
    c = explainer.explain(lgb.Booster(model_str=model.to_text()), sample)
    assert (
        [[r.text for r in rs] for rs in a] == [[r.text for r in rs] for rs in b] == [[r.text for r in rs] for rs in c]
    )


def test_recency_reason_reads_the_usual_gap(churn_like: tuple[LightGBMClassifier, pd.DataFrame]) -> None:
    model, X = churn_like
    rows = X.iloc[[300, 301]].assign(recency_days=[280.0, 235.0], gap_mean_days=[47.0, 47.0])
    first = [rs[0].text for rs in ReasonExplainer(DESCRIPTIONS).explain(model, rows)]
    assert first == [
        "no order for 280 days, six times the usual gap",
        "no order for 235 days, five times the usual gap",
    ]


def test_lead_reason_is_never_ordered_once(churn_like: tuple[LightGBMClassifier, pd.DataFrame]) -> None:
    model, X = churn_like
    lead = X[X["recency_days"].isna()].head(20)
    for rs in ReasonExplainer(DESCRIPTIONS).explain(model, lead):
        assert rs[0].text == "never ordered" and math.isnan(rs[0].value)
        texts = [r.text for r in rs]
        assert len(texts) == len(set(texts))


@pytest.mark.parametrize(
    ("feature", "value", "other", "text"),
    [
        ("recency_days", 142.0, {"gap_mean_days": 47.0}, "no order for 142 days, three times the usual gap"),
        ("recency_days", 142.0, {}, "last order 142 days ago"),
        ("recency_days", 30.0, {"gap_mean_days": 31.0}, "last order 30 days ago, about the usual gap (31 days)"),
        ("recency_days", math.nan, {}, "never ordered"),
        ("orders_90d", 3.0, {}, "3 orders in the last 90 days"),
        ("orders_30d", 1.0, {}, "1 order in the last 30 days"),
        ("orders_lifetime", 0.0, {}, "no orders ever"),
        ("monetary_365d", 420.4, {}, "spent £420 in the last 365 days"),
        ("monetary_lifetime", 12345.0, {}, "spent £12,345 in total"),
        ("views_7d", 12.0, {}, "viewed 12 items in the last 7 days"),
        ("views_1d", 1.0, {}, "viewed 1 item in the last day"),
        ("add_to_carts_30d", 2.0, {}, "added 2 items to the cart in the last 30 days"),
        ("opens_email_90d", 1.0, {}, "opened 1 e-mail in the last 90 days"),
        ("open_rate_sms", 0.35, {}, "opens 35% of SMS messages"),
        ("days_since_open_push", math.nan, {}, "never opened a push notification"),
        ("overdue_ratio", 2.0, {}, "next order overdue: twice the usual gap since the last one"),
        (
            "order_value_trend",
            -0.15,
            {"recency_days": 3.0},
            "order value down 15% in the last 3 orders against the earlier ones",
        ),
        ("gap_mean_days", math.nan, {"recency_days": 10.0}, "only one purchase day so far"),
        ("how_010", 3.0, {}, "active 3 times on Mondays 10:00-10:59 local time in the last 365 days"),
        ("top_brand_share", 0.4, {}, "share of the units bought that come from the customer's favourite brand: 40%"),
        ("gender_code", 2.5, {}, "gender code: 2.5"),
    ],
)
def test_templates(feature: str, value: float, other: dict[str, float], text: str) -> None:
    explainer = ReasonExplainer(DESCRIPTIONS)
    assert explainer.describe(feature, value, lambda name: other.get(name, math.nan)) == text


def test_every_feature_gets_a_text_for_any_value() -> None:
    explainer = ReasonExplainer(DESCRIPTIONS)
    for name in NUMERIC_FEATURES:
        for value in (0.0, 1.0, 2.5, 1234.5, math.nan):
            text = explainer.describe(name, value)
            assert text and "nan" not in text.lower().split(), (name, value, text)


def test_user_templates_come_first_and_currency_is_configurable() -> None:
    def loyal(c: ReasonContext) -> str:
        return f"loyal for {round(c.value)} days"

    explainer = ReasonExplainer(DESCRIPTIONS, templates={r"tenure_days": loyal}, currency="EUR")
    assert explainer.describe("tenure_days", 400.0) == "loyal for 400 days"
    assert explainer.describe("monetary_30d", 42.0) == "spent €42 in the last 30 days"
    assert ReasonExplainer(DESCRIPTIONS, currency="SEK").describe("avg_order_value", 99.0) == "average order 99 SEK"
    assert times_words(3.2) == "three times" and times_words(1.6) == "one and a half times"


def test_no_personal_data_and_bad_input(churn_like: tuple[LightGBMClassifier, pd.DataFrame]) -> None:
    model, X = churn_like
    sample = X.head(50).assign(email="someone@example.com", first_name="Ada")
    reasons = ReasonExplainer(DESCRIPTIONS).explain(model, sample)
    assert not any("@" in r.text or "Ada" in r.text for rs in reasons for r in rs)
    assert isinstance(reasons[0][0], Reason) and reasons[0][0].as_dict()["feature"] in FEATURES
    with pytest.raises(ValueError, match="missing 1 model feature"):
        ReasonExplainer(DESCRIPTIONS).explain(model, X.drop(columns="views_7d"))
    with pytest.raises(ValueError, match="k: expected a positive integer"):
        ReasonExplainer(DESCRIPTIONS).explain(model, X, k=0)
    with pytest.raises(TypeError, match=r"lightgbm\.Booster"):
        ReasonExplainer(DESCRIPTIONS).explain(42, X)


def test_band() -> None:
    got = band([0.0, 0.29, 0.3, 0.59, 0.6, 1.0])
    assert got.tolist() == ["low", "low", "medium", "medium", "high", "high"]
    assert band([0.15, 0.5], cuts=(0.1, 0.4)).tolist() == ["medium", "high"]
    for cuts in [(0.6, 0.3), (0.0, 0.5), (0.3,), (0.2, 1.0)]:
        with pytest.raises(ValueError, match="cuts"):
            band([0.5], cuts=cuts)
    with pytest.raises(ValueError, match="p: 1 values"):
        band([0.5, np.nan])
