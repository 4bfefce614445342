"""Protocol (b), leave the last basket out: the held-out baskets, the reality-check metrics by hand,
seeds, exports without dates, and the summary's paired interval."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from models.recs.base import IX
from models.recs.baselines import GlobalTopFreq, PersonalTopFreq
from tests.training.test_recs_eval import Fixed, frame
from training import recs_eval as ev

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def t(n: int) -> datetime:
    return T0 + timedelta(days=n)


# c1's last basket (b3, day 3) stands FIRST in the export: with dates it is the last; without, b2 is.
ROWS = [
    ("c1", "b3", "A", t(3)),
    ("c1", "b3", "D", t(3)),
    ("c1", "b1", "A", t(1)),
    ("c1", "b1", "B", t(1)),
    ("c1", "b2", "A", t(2)),
    ("c1", "b2", "C", t(2)),
    ("c2", "b4", "B", t(1)),
    ("c2", "b5", "C", t(2)),
    ("c2", "b5", "E", t(2)),
    ("c3", "b6", "A", t(1)),  # one basket: never a test user
    ("c4", "b7", "E", t(1)),
    ("c4", "b8", "F", t(2)),
]


def test_holds_out_each_test_users_last_basket_by_time() -> None:
    split = ev.last_basket_split(frame(ROWS), test_share=0.99, seed=0)  # round(0.99 x 3) = all 3 eligible
    assert split.eligible == 3 and split.customers == ["c1", "c2", "c4"]
    assert split.relevant == [frozenset("AD"), frozenset("CE"), frozenset("F")]
    assert split.history == [frozenset("ABC"), frozenset("B"), frozenset("E")]
    assert sorted(set(split.train[IX.BASKET])) == ["b1", "b2", "b4", "b6", "b7"]
    assert split.asked_at == [t(3), t(2), t(2)]


def test_later_views_are_dropped_and_same_instant_baskets_kept() -> None:
    views = frame([("c1", "s1", "D", t(4)), ("c2", "s2", "E", t(1))]).assign(**{IX.EVENT: "view"})
    split = ev.last_basket_split(pd.concat([frame(ROWS), views], ignore_index=True), test_share=0.99, seed=0)
    kept = split.train[split.train[IX.EVENT] == "view"]
    assert kept[IX.CUSTOMER].tolist() == ["c2"]  # c1 viewed D after its held-out basket: a leak, dropped
    # every order at one instant (how `train recs` reads an export without dates): order by export row
    instant = ev.last_basket_split(frame(ROWS).assign(**{IX.TS: pd.Timestamp(T0)}), test_share=0.99, seed=0)
    assert instant.relevant[0] == frozenset("AC") and instant.history[0] == frozenset("ABD")
    assert sorted(set(instant.train[IX.BASKET])) == ["b1", "b3", "b4", "b6", "b7"]


def test_without_dates_the_last_basket_is_the_last_in_the_export() -> None:
    rows = frame(ROWS).drop(columns=[IX.TS])
    split = ev.last_basket_split(rows, test_share=0.99, seed=0)
    assert split.relevant[0] == frozenset("AC")  # b2: its first row is after b3's and b1's
    assert split.history[0] == frozenset("ABD")
    assert split.asked_at == [None, None, None]


def test_reality_check_metrics_by_hand() -> None:
    # the list A, C for everyone, k = 2
    result = ev.evaluate_last_basket(
        {"fixed": Fixed(["A", "C", "B"])}, frame(ROWS), None, k=2, test_share=0.99, seeds=(0,)
    )
    # c1 {A,D}, history ABC: hit A (repeat); D explore missed -> recall 1/2, repeat 1, explore 0, PHR 1
    # c2 {C,E}, history B: hit C at rank 2 (explore) -> recall 1/2, repeat undefined, explore 1/2, PHR 1
    # c4 {F}, history E: no hit -> recall 0, explore 0, PHR 0
    row = result.table.iloc[0]
    assert row["users"] == 3
    assert row["recall@2"] == pytest.approx(1 / 3)
    assert row["phr@2"] == pytest.approx(2 / 3)
    assert row["repeat_recall@2"] == pytest.approx(1.0) and row["repeat_users"] == 1
    assert row["explore_recall@2"] == pytest.approx(1 / 6) and row["explore_users"] == 3
    ideal = 1 + 1 / math.log2(3)
    assert row["ndcg@2"] == pytest.approx((1 / ideal + (1 / math.log2(3)) / ideal + 0) / 3)
    per_user = result.per_user[("fixed", 0)]
    assert np.isnan(per_user["repeat_recall"][1]) and per_user["phr"].tolist() == [1.0, 1.0, 0.0]


def _shop(customers: int = 60, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(customers):
        for b in range(int(rng.integers(1, 6))):
            for item in rng.choice(list("ABCDEFGHIJ"), size=int(rng.integers(1, 4)), replace=False):
                rows.append((f"c{c:02d}", f"c{c:02d}-{b}", str(item), t(b * 7 + c % 5)))
    return frame(rows)


def test_same_seed_same_split_other_seed_other_users() -> None:
    shop = _shop()
    first, again, other = (ev.last_basket_split(shop, 0.2, seed) for seed in (1, 1, 2))
    assert first.customers == again.customers and first.relevant == again.relevant
    assert first.customers != other.customers
    assert len(first.customers) == round(0.2 * first.eligible)
    models = {"P-TopFreq": PersonalTopFreq(), "G-TopFreq": GlobalTopFreq()}
    one = ev.evaluate_last_basket(models, shop, None, seeds=(1, 2)).table
    two = ev.evaluate_last_basket(models, shop, None, seeds=(1, 2)).table
    cols = ["model", "seed", "users", "recall@10", "ndcg@10", "phr@10"]
    pd.testing.assert_frame_equal(one[cols], two[cols])
    assert set(one["seed"]) == {1, 2}


def test_a_basket_only_export_runs_with_customers_and_refuses_without() -> None:
    # as `train recs` reads an export without dates: one instant for every order (the ingest run)
    shop = _shop().assign(**{IX.TS: pd.Timestamp(T0)})
    split = ev.last_basket_split(shop, 0.2, 0)
    lines = shop[shop[IX.CUSTOMER] == split.customers[0]]
    assert split.relevant[0] == frozenset(lines.loc[lines[IX.BASKET] == lines[IX.BASKET].iloc[-1], IX.ITEM])
    table = ev.evaluate_last_basket({"P-TopFreq": PersonalTopFreq()}, shop, None, seeds=(0,)).table
    assert table["users"].item() > 0 and 0.0 <= table["recall@10"].item() <= 1.0
    anonymous = shop.assign(**{IX.CUSTOMER: pd.Series([None] * len(shop), dtype="string")})
    with pytest.raises(ValueError, match="needs customers"):
        ev.last_basket_split(anonymous)


def test_summary_compares_with_the_best_baseline() -> None:
    shop = _shop()
    models = {"G-TopFreq": GlobalTopFreq(), "P-TopFreq": PersonalTopFreq(), "fixed": Fixed(list("JIHGFEDCBA"))}
    result = ev.evaluate_last_basket(models, shop, None, seeds=(0, 1, 2))
    summary = result.summary(baselines=["G-TopFreq", "P-TopFreq"]).set_index("model")
    best = max(["G-TopFreq", "P-TopFreq"], key=lambda name: summary.loc[name, "recall@10"])
    assert (summary["best_baseline"] == best).all()
    diff = summary.loc["fixed", "recall@10_diff"]
    assert diff == pytest.approx(summary.loc["fixed", "recall@10"] - summary.loc[best, "recall@10"])
    assert summary.loc["fixed", "recall@10_diff_low"] <= diff <= summary.loc["fixed", "recall@10_diff_high"]
    assert np.isnan(summary.loc[best, "recall@10_diff"]) and summary.loc["fixed", "seeds"] == 3


def test_temporal_table_gets_the_interval_to_the_best_baseline() -> None:
    table = pd.DataFrame(
        {
            "model": ["G", "P", "mine", "G", "mine"],
            "task": [ev.NEXT_BASKET] * 3 + [ev.BASKET_COMPLETION] * 2,
            "evaluated": [True] * 5,
            "queries": [4, 4, 4, 3, 3],
            "recall@10": [0.25, 0.5, 0.75, 1 / 3, 1.0],
        }
    )
    per_query = {
        ("G", ev.NEXT_BASKET): np.array([1.0, 0, 0, 0]),
        ("P", ev.NEXT_BASKET): np.array([1.0, 1, 0, 0]),
        ("mine", ev.NEXT_BASKET): np.array([1.0, 1, 1, 0]),
        ("G", ev.BASKET_COMPLETION): np.array([1.0, 0, 0]),
        ("mine", ev.BASKET_COMPLETION): np.array([1.0, 1, 1]),
    }
    out = ev.with_intervals(table, per_query, ["G", "P"]).set_index(["model", "task"])
    nb = out.loc[("mine", ev.NEXT_BASKET)]
    assert nb["best_baseline"] == "P" and nb["recall@10_diff"] == pytest.approx(0.25)
    assert 0.0 <= nb["recall@10_diff_low"] <= 0.25 <= nb["recall@10_diff_high"] <= 1.0  # diffs are 0 or 1 per query
    bc = out.loc[("mine", ev.BASKET_COMPLETION)]
    assert bc["best_baseline"] == "G" and bc["recall@10_diff"] == pytest.approx(2 / 3)
    assert out.loc[("P", ev.NEXT_BASKET), ["recall@10_diff"]].isna().all()
