"""Incrementality on literal data with a known answer: the lift, its interval, the window, the verdict."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.decisioning.incrementality import NO_EFFECT, measure, plan_assignment
from models.decisioning.offers import CostModel

START = pd.Timestamp("2026-01-10T09:00:00Z")


def _world(treated_rate: float, control_rate: float, n: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, orders = [], []
    for group, rate in (("treated", treated_rate), ("control", control_rate)):
        for i in range(n):
            key = f"{group[0]}{i}"
            rows.append(
                {
                    "customer_key": key,
                    "campaign_id": "C1",
                    "offer_id": "O1" if group == "treated" else None,
                    "group": group,
                    "start": START,
                }
            )
            if i < rate * n:
                orders.append(
                    {
                        "customer_key": key,
                        "ordered_at": START + pd.Timedelta(days=1),
                        "amount": 10.0,
                        "status": "completed",
                    }
                )
            # outside the window, or cancelled: never counted
            orders.append(
                {
                    "customer_key": key,
                    "ordered_at": START + pd.Timedelta(days=40),
                    "amount": 99.0,
                    "status": "completed",
                }
            )
            orders.append(
                {"customer_key": key, "ordered_at": START + pd.Timedelta(days=2), "amount": 99.0, "status": "cancelled"}
            )
    return pd.DataFrame(rows), pd.DataFrame(orders)


def test_the_lift_and_its_interval_are_the_textbook_ones() -> None:
    assignment, orders = _world(0.4, 0.2)
    costs = {"O1": CostModel(fixed_cost=0.1, discount_rate=0.1)}
    report = measure(assignment, orders, horizon_days=30, offer_costs=costs, margin_rate=0.5)
    row = report.table[(report.table["campaign_id"] == "all") & (report.table["offer_id"] == "O1")].iloc[0]
    assert row["conversion_treated"] == pytest.approx(0.4) and row["conversion_control"] == pytest.approx(0.2)
    assert row["lift"] == pytest.approx(0.2) and row["relative_lift"] == pytest.approx(1.0)
    se = math.sqrt((0.4 * 0.6 + 0.2 * 0.8) / 200 * (200 / 199))  # one row per customer: CR1 is the plain SE x g/(g-1)
    assert row["lift_high"] - row["lift"] == pytest.approx(1.959964 * se, rel=1e-4)
    assert row["revenue_lift"] == pytest.approx(2.0)
    spent = 200 * (0.1 + 0.4 * 0.1 * 10.0)  # fixed cost per send + discount on each converter's revenue
    assert row["offer_cost"] == pytest.approx(spent) and row["incremental_profit"] == pytest.approx(0.5 * 400 - spent)
    assert row["verdict"].startswith("positive effect: +20.0 pts")


def test_no_difference_says_no_measurable_effect() -> None:
    assignment, orders = _world(0.3, 0.3)
    row = measure(assignment, orders).table.iloc[0]
    assert row["lift_low"] < 0 < row["lift_high"] and row["verdict"] == NO_EFFECT


def test_a_plan_treats_its_sends_and_compares_with_its_control_from_the_first_send() -> None:
    plan = pd.DataFrame(
        {
            "customer_key": ["a", "b", "c", "d"],
            "send": [True, True, False, False],
            "send_at": ["2026-01-11T09:00:00+00:00", "2026-01-10T10:00:00+00:00", None, None],
            "control_group": [False, False, True, False],
            "offer_id": ["O1", None, None, None],
        }
    )
    a = plan_assignment(plan)
    assert list(a["customer_key"]) == ["a", "b", "c"]  # d: neither sent nor control
    assert list(a["group"]) == ["treated", "treated", "control"]
    assert a.loc[a["customer_key"] == "c", "start"].iloc[0] == pd.Timestamp("2026-01-10T10:00:00Z")
    assert np.isnan(measure(a, pd.DataFrame({"customer_key": [], "ordered_at": []})).table["lift"]).sum() == 0
