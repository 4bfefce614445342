"""Protocol (c): basket completion on the last-basket split, with the customer known and anonymous."""

from __future__ import annotations

from models.recs.base import Query, Recommendation, RecSource
from tests.training.test_recs_eval import Fixed, frame
from tests.training.test_recs_last_basket import ROWS, t
from training import recs_eval as ev


def test_one_item_hidden_per_held_out_basket_by_hand() -> None:
    # held out: c1 {A, D} (history A B C), c2 {C, E} (history B), c4 {F} (single: skipped); D never in training
    split = ev.last_basket_split(frame(ROWS), test_share=0.99, seed=0)
    queries, relevant, history, note = ev.completion_queries(split)
    # seed 0 draws index 1 twice: c1 hides D (unseen in training: skipped), c2 hides E
    assert queries == [Query(customer_key="c2", cart=("C",), now=t(2))]
    assert relevant == [frozenset("E")] and history == [frozenset("B")]
    assert "1 single-item baskets and 1 with the hidden item unseen in training skipped" in note
    split1 = ev.last_basket_split(frame(ROWS), test_share=0.99, seed=1)
    queries, relevant, _, note = ev.completion_queries(split1, anonymous=True)
    # seed 1 draws 0 then 1: c1 hides A (a repeat), c2 hides E (new to c2)
    assert [(q.customer_key, q.cart) for q in queries] == [(None, ("D",)), (None, ("C",))]
    assert relevant == [frozenset("A"), frozenset("E")]
    assert "anonymous" in note and "50.0% of the hidden items are repeats" in note


class KnowsTheCustomer(Fixed):
    """Names the hidden item only when told who the customer is (A for c1, E for c2)."""

    def recommend(self, query: Query, k: int = 10) -> list[Recommendation]:
        item = {"c1": "A", "c2": "E"}.get(query.customer_key or "", "X")
        return [Recommendation(item, 1.0, RecSource.POPULAR, "stub")][:k]


def test_evaluate_scores_completion_queries_with_the_customer_or_without() -> None:
    models = {"E first": Fixed(["E", "A"]), "A first": Fixed(["A", "E"])}
    known = ev.evaluate_last_basket(
        models, frame(ROWS), None, 1, test_share=0.99, seeds=(1,), task=ev.BASKET_COMPLETION
    )
    table = known.table.set_index("model")
    assert (table["users"] == 2).all()
    assert table.loc["E first", "recall@1"] == 0.5 and table.loc["A first", "recall@1"] == 0.5
    assert table.loc["A first", "repeat_recall@1"] == 1.0 and table.loc["A first", "explore_recall@1"] == 0.0
    who = {"knows": KnowsTheCustomer([])}
    for anonymous, expected in ((False, 1.0), (True, 0.0)):
        result = ev.evaluate_last_basket(
            who, frame(ROWS), None, 1, test_share=0.99, seeds=(1,), task=ev.BASKET_COMPLETION, anonymous=anonymous
        )
        assert result.table["recall@1"].iloc[0] == expected
