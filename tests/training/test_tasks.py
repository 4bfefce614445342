"""The propensity tasks: their populations and their registry names."""

from __future__ import annotations

import pandas as pd

from features.datasets import ChurnTarget
from features.store import compute_features
from tests.features.test_definitions import T, _tables
from training.propensity import churn_task, purchase_task


def test_churn_population_rule_picks_exactly_the_labelled_customers() -> None:
    """Scoring leaves out whom churn never learnt about: the rule on the features is the label's population."""
    orders = [
        ("in", "2024-05-31 23:00", 1.0),
        ("edge_in", "2023-06-02", 1.0),  # 365 days before T, to the day: labelled
        ("edge_out", "2023-05-31", 1.0),  # 367 days: not labelled
        ("lapsed", "2022-01-01", 1.0),
        ("later", "2024-06-03", 1.0),  # only after the cutoff
    ]
    target = ChurnTarget(horizon_days=90, active_days=365)
    population = churn_task(horizon_days=90, active_days=365).population
    assert population is not None
    labelled = set(target.labels(_tables(orders), T).execute()["customer_key"])
    features = compute_features(_tables(orders), T)
    inside = population.contains(features["recency_days"].to_numpy())
    assert set(features.loc[inside, "customer_key"]) == labelled == {"in", "edge_in"}
    assert not population.contains(pd.array([float("nan")], dtype="float64").to_numpy()).any()


def test_purchase_asks_about_everyone() -> None:
    assert purchase_task().population is None


def test_the_registry_names_of_the_default_tasks_are_the_ones_the_export_scores() -> None:
    from bundles.propensity import MODEL_NAMES
    from training.propensity import all_tasks

    assert [t.name for t in all_tasks()] == list(MODEL_NAMES)
