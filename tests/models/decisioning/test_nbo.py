"""Next-best-offer scoring, decisions and budgeted allocation on literal customers."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from models.decisioning.control import ControlGroup
from models.decisioning.nbo import NextBestOffer, Status, allocate, decide, score_offers
from models.decisioning.offers import Catalogue, CatalogueError, parse_catalogue

NOW = datetime(2026, 2, 1, tzinfo=UTC)


class FixedUplift:
    """A fitted-model double with known outputs: base probability and uplift per offer for every row."""

    def __init__(self, arms: list[str], base: float, uplift: list[float], sd: list[float] | None = None) -> None:
        self.arms_ = arms
        self.base = base
        self.uplift = np.asarray(uplift)
        self.sd = None if sd is None else np.asarray(sd)

    def predict_base(self, X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X), self.base)

    def predict_uplift(self, X: pd.DataFrame) -> np.ndarray:
        return np.tile(self.uplift, (len(X), 1))

    def predict_uplift_sd(self, X: pd.DataFrame) -> np.ndarray | None:
        return None if self.sd is None else np.tile(self.sd, (len(X), 1))


def catalogue(budget: float | None = None, offer_budget: float | None = None) -> Catalogue:
    window = {"valid_from": "2026-01-01", "valid_to": "2026-03-31"}
    return parse_catalogue(
        {
            "margin_rate": 0.5,
            "budget": budget,
            "offers": [
                {
                    "id": "PCT",
                    "name": "20% off",
                    "type": "percent_discount",
                    "value": 20,
                    "channels": ["email", "sms"],
                    "eligibility": "orders_lifetime >= 1",
                    "cost": {"fixed_cost": 0.01, "discount_rate": 0.2},
                    "max_per_customer": 1,
                    "budget": offer_budget,
                    "plays": ["win_back"],
                    "assumed_uplift": 0.2,
                    **window,
                },
                {
                    "id": "TXT",
                    "name": "lookbook",
                    "type": "content",
                    "value": 0,
                    "channels": ["push"],
                    "cost": {"fixed_cost": 0.01},
                    "plays": ["cart_reminder"],
                    "assumed_uplift": 0.001,
                    **window,
                },
            ],
        }
    )


def customers(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_key": [f"ck_{i:05d}" for i in range(n)],
            "avg_order_value": rng.uniform(20, 80, n),
            "orders_lifetime": rng.integers(0, 5, n).astype(float),
            "orders_365d": rng.integers(0, 4, n).astype(float),
            "consent_email": 1.0,
            "consent_sms": 0.0,
            "consent_push": 1.0,
            "flag_high_value_at_risk": rng.random(n) < 0.3,
            "flag_recent_abandoned_cart": rng.random(n) < 0.3,
        }
    )


NO_CONTROL = ControlGroup(share=0.0)


def test_no_offer_wins_when_every_profit_is_negative() -> None:
    frame = customers(50)
    model = FixedUplift(["PCT", "TXT"], base=0.3, uplift=[0.0, 0.0])
    scores = score_offers(frame, catalogue(), now=NOW, uplift=model, control=NO_CONTROL)  # type: ignore[arg-type]
    assert (scores.profit < 0).all()
    out = decide(scores)
    assert (out["status"] == Status.NO_OFFER).all()
    assert out["offer_id"].isna().all()
    assert out["reason"].str.contains("expected to earn more than it costs|none is eligible").all()
    assert (out["source"] == "uplift_model").all()


def test_best_offer_by_incremental_profit_with_channel_and_reason() -> None:
    frame = customers(40)
    model = FixedUplift(["PCT", "TXT"], base=0.1, uplift=[0.3, 0.0])  # 30 pts: pays for 20% off
    scores = score_offers(frame, catalogue(), now=NOW, uplift=model, control=NO_CONTROL)  # type: ignore[arg-type]
    out = decide(scores)
    buyers = frame["orders_lifetime"] >= 1
    assert (out.loc[buyers, "offer_id"] == "PCT").all()
    assert (out.loc[~buyers, "status"] == Status.NO_OFFER).all()  # eligibility rule keeps leads out
    assert (out.loc[buyers, "channel"] == "email").all()  # SMS not consented
    v = frame["avg_order_value"].to_numpy()
    expected = 0.3 * 0.5 * v - (0.01 + 0.4 * 0.2 * v)
    assert np.allclose(out.loc[buyers, "expected_profit"], expected[buyers])
    assert out.loc[buyers, "reason"].str.contains("uplift model").all()


def test_consent_is_a_hard_filter_and_policy_channels_are_respected() -> None:
    frame = customers(10).assign(consent_email=0.0, consent_push=0.0)
    model = FixedUplift(["PCT", "TXT"], base=0.1, uplift=[0.3, 0.3])
    out = decide(score_offers(frame, catalogue(), now=NOW, uplift=model, control=NO_CONTROL))  # type: ignore[arg-type]
    assert (out["status"] == Status.NOT_CONTACTABLE).all()
    frame = customers(10)
    allowed = {k: ["sms", "push"] for k in frame["customer_key"]}  # policy: no e-mail now; sms not consented
    out = decide(score_offers(frame, catalogue(), now=NOW, uplift=model, allowed_channels=allowed, control=NO_CONTROL))  # type: ignore[arg-type]
    assert set(out["offer_id"].dropna()) == {"TXT"}
    assert set(out["channel"].dropna()) == {"push"}


def test_dates_and_caps_make_offers_ineligible() -> None:
    frame = customers(20)
    model = FixedUplift(["PCT", "TXT"], base=0.1, uplift=[0.3, -0.5])
    late = decide(
        score_offers(frame, catalogue(), now=datetime(2027, 1, 1, tzinfo=UTC), uplift=model, control=NO_CONTROL)
    )  # type: ignore[arg-type]
    assert late["offer_id"].isna().all()
    assert late["reason"].str.contains("outside its dates").all()
    history = pd.DataFrame(
        {"customer_key": frame["customer_key"], "offer_id": "PCT", "sent_at": pd.Timestamp("2026-01-15", tz="UTC")}
    )
    capped = decide(score_offers(frame, catalogue(), now=NOW, uplift=model, history=history, control=NO_CONTROL))  # type: ignore[arg-type]
    assert capped["offer_id"].isna().all()
    old = history.assign(sent_at=pd.Timestamp("2025-06-01", tz="UTC"))  # before the window: does not count
    again = decide(score_offers(frame, catalogue(), now=NOW, uplift=model, history=old, control=NO_CONTROL))  # type: ignore[arg-type]
    assert (again["offer_id"] == "PCT").sum() == (frame["orders_lifetime"] >= 1).sum()


def test_control_group_never_gets_an_offer_and_is_counted() -> None:
    frame = customers(400)
    model = FixedUplift(["PCT", "TXT"], base=0.1, uplift=[0.3, 0.05])
    nbo = NextBestOffer(catalogue(), model, ControlGroup(share=0.2))  # type: ignore[arg-type]
    out = nbo.decide(frame, now=NOW)
    held = ControlGroup(share=0.2).contains(frame["customer_key"])
    assert 40 < held.sum() < 120
    assert (out.loc[held, "status"] == Status.CONTROL).all()
    assert out.loc[held, "offer_id"].isna().all()
    alloc, summary = nbo.allocate(frame, now=NOW)
    assert alloc.loc[held, "offer_id"].isna().all()
    assert summary.control == int(held.sum())


def test_rules_are_labelled_and_use_the_playbook() -> None:
    frame = customers(60)
    out = decide(score_offers(frame, catalogue(), now=NOW, control=NO_CONTROL))
    offered = out["offer_id"].notna()
    assert offered.any()
    assert (out.loc[offered, "source"] == "rules").all()
    assert out.loc[offered, "reason"].str.contains("not measured").all()
    pct = out["offer_id"] == "PCT"
    assert frame.loc[pct, "flag_high_value_at_risk"].all()  # win-back only where the rule fired


@pytest.mark.parametrize("budget", [5.0, 40.0, 150.0])
def test_allocation_never_exceeds_budgets_and_is_deterministic(budget: float) -> None:
    frame = customers(300, seed=2)
    rng = np.random.default_rng(4)
    model = FixedUplift(["PCT", "TXT"], base=0.1, uplift=[0.25, 0.01])
    scores = score_offers(frame, catalogue(budget, offer_budget=budget / 2), now=NOW, uplift=model, control=NO_CONTROL)  # type: ignore[arg-type]
    scores.profit = scores.profit * rng.uniform(0.2, 2.0, scores.profit.shape)  # varied values per customer
    scores.profit_low = scores.profit
    cat = catalogue(budget, offer_budget=budget / 2)
    out, summary = allocate(scores, cat)
    assert summary.spent <= budget + 1e-9
    assert summary.spent_by_offer["PCT"] <= budget / 2 + 1e-9
    assert out.loc[out["offer_id"].notna(), "expected_cost"].sum() == pytest.approx(summary.spent)
    assert (out["expected_profit"] >= 0).all()
    again, _ = allocate(scores, cat)
    pd.testing.assert_frame_equal(out, again)
    unconstrained = (decide(scores)["offer_id"] == "PCT").sum()
    if budget < 150.0:  # the budget binds: fewer 20% offers than each customer's best
        assert (out["offer_id"] == "PCT").sum() < unconstrained


def test_allocation_with_ample_budget_equals_per_customer_decisions() -> None:
    frame = customers(200, seed=3)
    model = FixedUplift(["PCT", "TXT"], base=0.1, uplift=[0.25, 0.05])
    scores = score_offers(frame, catalogue(), now=NOW, uplift=model, control=NO_CONTROL)  # type: ignore[arg-type]
    out, summary = allocate(scores, catalogue(budget=1e9))
    assert summary.shadow_price == 0.0
    pd.testing.assert_series_equal(out["offer_id"], decide(scores)["offer_id"])


def test_allocation_prefers_more_profit_per_unit_of_budget() -> None:
    # two customers, one offer budget-bound: the one with the better profit per cost wins
    frame = customers(2).assign(orders_lifetime=1.0, avg_order_value=[50.0, 50.0])
    model = FixedUplift(["PCT", "TXT"], base=0.1, uplift=[0.3, -0.5])
    scores = score_offers(frame, catalogue(), now=NOW, uplift=model, control=NO_CONTROL)  # type: ignore[arg-type]
    scores.profit[:, 0] = [1.0, 3.0]
    scores.profit_low[:, 0] = [1.0, 3.0]
    one = float(scores.cost[0, 0]) * 1.5  # room for one
    out, _summary = allocate(scores, catalogue(budget=one))
    assert out["offer_id"].tolist()[1] == "PCT" and pd.isna(out["offer_id"].tolist()[0])
    assert out["status"].tolist()[0] == Status.OVER_BUDGET


def test_caution_decides_on_the_lower_bound_of_profit() -> None:
    frame = customers(60).assign(orders_lifetime=1.0)
    # PCT: +30 pts but measured on few sends (sd 12 pts); TXT: +2 pts, well measured (sd 0.1 pt)
    model = FixedUplift(["PCT", "TXT"], base=0.1, uplift=[0.3, 0.02], sd=[0.12, 0.001])
    bold = decide(score_offers(frame, catalogue(), now=NOW, uplift=model, control=NO_CONTROL))  # type: ignore[arg-type]
    assert (bold["offer_id"] == "PCT").all()  # on the mean, the big uncertain uplift wins
    scores = score_offers(frame, catalogue(), now=NOW, uplift=model, control=NO_CONTROL, caution=2.0)  # type: ignore[arg-type]
    v = frame["avg_order_value"].to_numpy()
    # lower bound = profit - 2 x |d profit / d uplift| x sd, with d profit / d uplift = (0.5 - 0.2) x V for PCT
    assert np.allclose(scores.profit_low[:, 0], scores.profit[:, 0] - 2.0 * 0.3 * v * 0.12)
    careful = decide(scores)
    assert (careful["offer_id"] == "TXT").all()  # 30 - 24 pts does not pay for 20% off; TXT's bound does
    assert careful["reason"].str.contains("cautious lower bound").all()
    assert np.allclose(careful["expected_profit"], scores.profit[:, 1])  # reported profit stays the mean
    sure = FixedUplift(["PCT", "TXT"], base=0.1, uplift=[0.3, 0.02])  # no sd: caution changes nothing
    same = decide(score_offers(frame, catalogue(), now=NOW, uplift=sure, control=NO_CONTROL, caution=2.0))  # type: ignore[arg-type]
    assert (same["offer_id"] == "PCT").all()
    nothing = FixedUplift(["PCT", "TXT"], base=0.1, uplift=[0.3, 0.02], sd=[0.2, 0.05])
    none = NextBestOffer(catalogue(), nothing, NO_CONTROL, caution=3.0).decide(frame, now=NOW)  # type: ignore[arg-type]
    assert (none["status"] == Status.NO_OFFER).all()
    assert none["reason"].str.contains("clearly expected").all()
    with pytest.raises(ValueError, match="caution"):
        score_offers(frame, catalogue(), now=NOW, uplift=model, control=NO_CONTROL, caution=-1.0)  # type: ignore[arg-type]


def test_a_lead_alone_is_valued_at_the_bundles_population_order_value() -> None:
    lead = customers(1).assign(avg_order_value=np.nan, orders_lifetime=0.0)
    model = FixedUplift(["PCT", "TXT"], base=0.1, uplift=[0.0, 0.3])
    with pytest.raises(CatalogueError, match="no order value to fall back on"):
        score_offers(lead, catalogue(), now=NOW, uplift=model, control=NO_CONTROL)  # type: ignore[arg-type]
    nbo = NextBestOffer(catalogue(), model, NO_CONTROL, fallback_order_value=40.0)  # type: ignore[arg-type]
    scores = nbo.score(lead, now=NOW)
    assert scores.order_value.tolist() == [40.0]
    # the same customer in a batch gets the same value: it does not depend on who else is asked
    batch = pd.concat([lead, customers(30, seed=3)], ignore_index=True)
    assert nbo.score(batch, now=NOW).order_value[0] == 40.0
    with pytest.raises(ValueError, match="fallback order value"):
        NextBestOffer(catalogue(), model, NO_CONTROL, fallback_order_value=0.0).score(lead, now=NOW)  # type: ignore[arg-type]


def test_a_model_catalogue_on_email_only_needs_no_rules_inputs_nor_other_consents() -> None:
    """Issue 19: score_offers demanded orders_365d (rules) and SMS/push consent the catalogue never uses."""
    email_only = catalogue().model_copy(
        update={"offers": tuple(o.model_copy(update={"channels": ("email",)}) for o in catalogue().offers)}
    )
    frame = customers(30).drop(columns=["orders_365d", "consent_sms", "consent_push"])
    model = FixedUplift(["PCT", "TXT"], base=0.1, uplift=[0.3, 0.0])
    out = decide(score_offers(frame, email_only, now=NOW, uplift=model, control=NO_CONTROL))  # type: ignore[arg-type]
    buyers = frame["orders_lifetime"] >= 1
    assert (out.loc[buyers, "offer_id"] == "PCT").all()
    assert (out.loc[buyers, "channel"] == "email").all()
    # the consent of a channel the catalogue uses is still a hard requirement, named in the error
    with pytest.raises(CatalogueError, match="consent_email"):
        score_offers(frame.drop(columns=["consent_email"]), email_only, now=NOW, uplift=model, control=NO_CONTROL)  # type: ignore[arg-type]
    # an offer the model has no arm for falls back to the rules, which do need the purchase rhythm
    partial = FixedUplift(["PCT"], base=0.1, uplift=[0.3])
    with pytest.raises(CatalogueError, match="orders_365d"):
        score_offers(frame, email_only, now=NOW, uplift=partial, control=NO_CONTROL)  # type: ignore[arg-type]
