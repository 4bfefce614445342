"""The recommendation evaluation harness: split, hidden-item cases, task metrics and the full table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

import pandas as pd
import pytest

from models.recs.base import IX, Query, Recommendation, Recommender, RecSource
from models.recs.baselines import GlobalTopFreq, PersonalTopFreq
from training import recs_eval as ev

SPLIT = datetime(2025, 3, 1, tzinfo=UTC)


Row = tuple[str | None, str, str, datetime]


def frame(rows: Sequence[Row]) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            IX.CUSTOMER: [r[0] for r in rows],
            IX.BASKET: [r[1] for r in rows],
            IX.ITEM: [r[2] for r in rows],
            IX.TS: pd.to_datetime([r[3] for r in rows], utc=True),
            IX.QUANTITY: 1.0,
            IX.EVENT: "purchase",
        }
    )
    return out.astype({IX.CUSTOMER: "string", IX.BASKET: "string", IX.ITEM: "string", IX.EVENT: "string"})


def day(n: int) -> datetime:
    return SPLIT + timedelta(days=n)


TRAIN_ROWS: list[Row] = [
    ("c1", "t1", "A", day(-10)),
    ("c1", "t1", "B", day(-10)),
    ("c1", "t2", "A", day(-5)),
    ("c2", "t3", "C", day(-3)),
    ("c2", "t3", "B", day(-3)),
]
TEST_ROWS: list[Row] = [
    ("c1", "u1", "B", day(1)),
    ("c1", "u1", "D", day(1)),  # D is new in the test window
    ("c3", "u2", "A", day(2)),  # c3 has no training history: skipped in next basket
    ("c3", "u2", "B", day(2)),
    (None, "u3", "A", day(3)),  # a guest basket
    (None, "u3", "C", day(3)),
    ("c2", "u4", "X", day(4)),  # both items unseen in training: skipped in basket completion
    ("c2", "u4", "Y", day(4)),
    ("c2", "u5", "C", day(5)),  # single item: not eligible for basket completion
]
LATE_ROWS: list[Row] = [("c1", "v1", "A", day(40))]  # after a 30-day test window


class Fixed:
    """A stub recommender returning a fixed ranking minus the cart; it records what it was asked."""

    source = RecSource.POPULAR

    def __init__(self, ranking: Sequence[str], cheat: bool = False) -> None:
        self.ranking = list(ranking)
        self.cheat = cheat
        self.asked: list[Query] = []

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        self.fitted_on_ = interactions
        return self

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        self.asked.append(query)
        pool = self.ranking if self.cheat else [i for i in self.ranking if i not in query.cart]
        return [Recommendation(i, 1.0, RecSource.POPULAR, "stub") for i in pool[:k]]

    def recommend_batch(self, queries: Sequence[Query], k: int = 10) -> list[list[Recommendation]]:
        return [self.recommend(q, k) for q in queries]

    def save(self, folder: Path) -> None:  # pragma: no cover - not used
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path) -> Self:  # pragma: no cover - not used
        raise NotImplementedError


def all_rows() -> pd.DataFrame:
    return frame(TRAIN_ROWS + TEST_ROWS + LATE_ROWS)


def test_temporal_split_never_leaks_test_into_training() -> None:
    train, test = ev.temporal_split(all_rows(), SPLIT, 30)
    assert train[IX.TS].max() < pd.Timestamp(SPLIT)
    assert test[IX.TS].min() >= pd.Timestamp(SPLIT)
    assert test[IX.TS].max() < pd.Timestamp(SPLIT + timedelta(days=30))
    assert len(train) == len(TRAIN_ROWS) and len(test) == len(TEST_ROWS)  # the late row is in neither
    naive, _ = ev.temporal_split(all_rows(), "2025-03-01", 30)  # a naive time is UTC
    assert len(naive) == len(TRAIN_ROWS)
    with pytest.raises(ValueError, match="leaves 0 training"):
        ev.temporal_split(all_rows(), day(-100), 30)
    with pytest.raises(ValueError, match="test_days"):
        ev.temporal_split(all_rows(), SPLIT, 0)


def test_completion_cases_hide_one_known_item_and_report_skips() -> None:
    train, test = ev.temporal_split(all_rows(), SPLIT, 30)
    cases = ev.completion_cases(test, set(train[IX.ITEM]), seed=0)
    # u1 (B, D), u2 (A, B), u3 (A, C), u4 (X, Y) have 2 items; u5 is single; u4 always hides an unseen item
    assert cases.eligible == 4
    assert cases.ineligible == 1
    assert cases.skipped >= 1  # u4 for sure; u1 too if D was drawn
    assert len(cases.queries) + cases.skipped == cases.eligible
    for q, hidden in zip(cases.queries, cases.hidden, strict=True):
        assert hidden in {"A", "B", "C"}
        assert hidden not in q.cart and len(q.cart) == 1
    again = ev.completion_cases(test, set(train[IX.ITEM]), seed=0)
    assert again.hidden == cases.hidden and again.queries == cases.queries
    assert all(q.now is not None and q.now >= SPLIT for q in cases.queries)  # asked at the basket's time
    by_cart = {q.cart: q.customer_key for q in cases.queries}
    assert by_cart.get(("A",), by_cart.get(("C",))) in {None, "c3"}  # u3 is a guest's, u2 is c3's
    anonymous = ev.completion_cases(test, set(train[IX.ITEM]), seed=0, anonymous_carts=True)
    assert all(q.customer_key is None for q in anonymous.queries)


def test_completion_skip_count_is_exact_when_every_draw_is_forced() -> None:
    rows: list[Row] = TRAIN_ROWS + [("c9", f"w{n}", "Q", day(1)) for n in range(3)] + [("c9", "w0", "Z", day(1))]
    train, test = ev.temporal_split(frame(rows), SPLIT, 30)
    result = ev.basket_completion(Fixed(["Q", "Z"]), test, set(train[IX.ITEM]), k=10)
    # w0 = {Q, Z}, both unseen in training; w1 and w2 hold one item each
    assert (result.queries, result.skipped, result.ineligible) == (0, 1, 2)
    assert "1 of 1 baskets with 2+ items skipped: hidden item unseen in training" in result.note


def test_basket_completion_scores_the_hidden_item() -> None:
    train, test = ev.temporal_split(all_rows(), SPLIT, 30)
    known = set(train[IX.ITEM])
    perfect = ev.basket_completion(Fixed(["A", "B", "C"]), test, known, k=10)
    assert perfect.queries > 0
    assert perfect.per_query["recall"].tolist() == [1.0] * perfect.queries
    assert set(perfect.per_query["ndcg"].round(6).tolist()) <= {1.0, round(1 / math.log2(3), 6)}
    # the hidden item is whichever of the two remains once the cart is removed: rank 1 or 2
    assert set(perfect.per_query["mrr"].tolist()) <= {1.0, 0.5}
    nothing = ev.basket_completion(Fixed([]), test, known, k=10)
    assert nothing.per_query["recall"].sum() == 0.0 and nothing.per_query["mrr"].sum() == 0.0


def test_contract_violations_are_counted() -> None:
    train, test = ev.temporal_split(all_rows(), SPLIT, 30)
    cheat = ev.basket_completion(Fixed(["A", "B", "C"], cheat=True), test, set(train[IX.ITEM]), k=10)
    assert cheat.violations == cheat.queries  # every list repeats the cart item


def test_next_basket_asks_returning_customers_at_the_split_time() -> None:
    train, test = ev.temporal_split(all_rows(), SPLIT, 30)
    model = PersonalTopFreq().fit(train)
    result = ev.next_basket(model, train, test, k=10, now=SPLIT)
    # c1: own items [A, B], relevant {B, D}; c2: own [B, C] (one order each, same time: by id), relevant {C, X, Y}
    assert result.queries == 2
    assert result.skipped == 1  # c3: no training history
    assert result.ineligible == 1  # the guest order u3
    assert result.per_query["recall"].tolist() == pytest.approx([1 / 2, 1 / 3])
    assert result.per_query["mrr"].tolist() == pytest.approx([1 / 2, 1 / 2])
    assert result.per_query["precision"].tolist() == pytest.approx([1 / 10, 1 / 10])
    assert "1 of 3 test customers skipped" in result.note
    stub = Fixed(["B"])
    ev.next_basket(stub, train, test, k=10, now=SPLIT)
    assert [q.customer_key for q in stub.asked] == ["c1", "c2"]
    assert all(q.now == SPLIT and q.cart == () for q in stub.asked)


def test_evaluate_gives_a_row_per_model_and_task_and_reports_skips() -> None:
    stub = Fixed(["A"])
    models: dict[str, Recommender] = {"G": GlobalTopFreq(), "P": PersonalTopFreq(), "stub": stub}
    table = ev.evaluate(models, all_rows(), None, SPLIT, 30, k=5, tasks={"stub": [ev.NEXT_BASKET]})
    assert list(zip(table["model"], table["task"], strict=True)) == [
        ("G", ev.BASKET_COMPLETION),
        ("G", ev.NEXT_BASKET),
        ("P", ev.BASKET_COMPLETION),
        ("P", ev.NEXT_BASKET),
        ("stub", ev.NEXT_BASKET),
    ]
    for column in ["recall@5", "ndcg@5", "mrr", "coverage", "pop_bias", "arp", "skipped", "note"]:
        assert column in table.columns
    assert (table.loc[table["task"] == ev.NEXT_BASKET, "skipped"] == 1).all()
    assert (table.loc[table["task"] == ev.BASKET_COMPLETION, "skipped"] >= 1).all()
    assert stub.fitted_on_[IX.TS].max() < pd.Timestamp(SPLIT)  # fitted on training only
    # the stub shows only A: one catalogue item of the six seen (A, B, C, D, X, Y)
    assert table.loc[table["model"] == "stub", "coverage"].item() == pytest.approx(1 / 6)
    # training orders: A 2, B 2, C 1, D X Y 0 -> A shares ranks 5 and 6 of 6
    assert table.loc[table["model"] == "stub", "pop_bias"].item() == pytest.approx(5.5 / 6)
    assert table.loc[table["model"] == "stub", "arp"].item() == pytest.approx(2.0)
    assert (table["violations"] == 0).all()


@pytest.fixture(scope="module")
def synth_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from features.ingest import ingest
    from features.mapping import load_mapping
    from synth import generate_world

    root = tmp_path_factory.mktemp("recs_eval")
    generate_world(300, 3, root / "raw")
    ingest(root / "raw", load_mapping("synthetic"), root / "home", now=datetime(2026, 1, 1, tzinfo=UTC))
    return root / "home"


def test_end_to_end_on_a_small_synthetic_world(synth_home: Path) -> None:
    interactions, items = ev.load_home(synth_home)
    split = datetime(2025, 10, 1, tzinfo=UTC)
    table = ev.evaluate(ev.baseline_models(), interactions, items, split, 90, tasks=ev.baseline_tasks())
    assert len(table) == 9
    assert set(zip(table["model"], table["task"], strict=True)) == {
        (name, task) for name in ["G-TopFreq", "P-TopFreq", "GP-TopFreq"] for task in ev.TASKS
    } | {("TIFU-KNN", ev.NEXT_BASKET), ("UP-CF@r", ev.NEXT_BASKET), ("co-occurrence count", ev.BASKET_COMPLETION)}
    assert (table["queries"] > 0).all()
    assert (table["violations"] == 0).all()
    metrics = table[["recall@10", "ndcg@10", "mrr", "hit@10", "precision@10", "coverage", "pop_bias"]]
    assert ((metrics >= 0) & (metrics <= 1)).all().all()
    nb = table[table["task"] == ev.NEXT_BASKET].set_index("model")
    # GP adds global items only where P has fewer than k, so it never does worse on hits
    assert nb.loc["GP-TopFreq", "hit@10"] >= nb.loc["P-TopFreq", "hit@10"]
    assert nb.loc["G-TopFreq", "coverage"] < nb.loc["P-TopFreq", "coverage"]


def test_main_prints_the_table(
    synth_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ev, "kairos_models", lambda: ({}, {}))  # baselines only: other models have their own tests
    assert ev.main(["--data", str(synth_home), "--split-at", "2025-10-01", "--test-days", "90"]) == 0
    out = capsys.readouterr().out
    assert "G-TopFreq" in out and "GP-TopFreq" in out and "basket_completion:" in out and "next_basket:" in out


def test_kairos_models_are_optional() -> None:
    found, tasks = ev.kairos_models()
    assert set(found) == set(tasks)
    assert all(set(t) <= set(ev.TASKS) for t in tasks.values())
