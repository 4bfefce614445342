"""The recommendations gate and what the bundle serves (issue 20, item 6): per slot, Kairos's model only
when its recall@10 difference to the best baseline has an interval above zero, else that baseline, labelled;
the served answer is the chosen model's own; erasure reaches the served models' customer rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bundles.base import Provenance
from bundles.recs import (
    CART_ANONYMOUS_SLOT,
    CART_KNOWN_SLOT,
    NEXT_BASKET_SLOT,
    Filters,
    RecsBundle,
    RecsModel,
    baseline_of,
)
from features.erasure import residue
from models.recs.base import IX, Query
from models.recs.baselines import GlobalPersonalTopFreq
from models.recs.cart_blend import CartBlend
from models.recs.cooccurrence_count import CooccurrenceCount
from models.recs.repeat_ranker import RepeatRanker
from models.recs.tifuknn import TIFUKNN
from tests.models.recs.data import ITEMS, interactions
from training.recs import (
    KAIROS_CART,
    KAIROS_NEXT,
    KAIROS_PERSONAL,
    KAIROS_TOGETHER,
    RecsData,
    fit,
    gate_slot,
    served_choice,
)
from training.recs_eval import BASKET_COMPLETION, BASKET_COMPLETION_ANONYMOUS, NEXT_BASKET


def _rows(task: str, kairos: dict[str, tuple[float, float, float]], best: str, best_recall: float) -> list[dict]:
    """Table rows of one task: the best baseline and each Kairos model's recall@10, (diff, low, high)."""
    out = [{"model": best, "task": task, "evaluated": True, "recall@10": best_recall, "best_baseline": None}]
    for name, (diff, low, high) in kairos.items():
        out.append(
            {
                "model": name,
                "task": task,
                "evaluated": True,
                "recall@10": best_recall + diff,
                "best_baseline": best,
                "recall@10_diff": diff,
                "recall@10_diff_low": low,
                "recall@10_diff_high": high,
            }
        )
    return out


def _table(next_interval: tuple[float, float, float], cart: tuple[float, float, float]) -> pd.DataFrame:
    rows = _rows(NEXT_BASKET, {KAIROS_NEXT: next_interval}, "TIFU-KNN", 0.20)
    rows += _rows(BASKET_COMPLETION, {KAIROS_CART: cart}, "co-occurrence count", 0.30)
    rows += _rows(
        BASKET_COMPLETION_ANONYMOUS,
        {KAIROS_TOGETHER: (0.01, 0.002, 0.02), KAIROS_CART: (0.02, 0.01, 0.03)},
        "G-TopFreq",
        0.25,
    )
    for row in rows:
        row.setdefault("recall@10_diff", np.nan)
        row.setdefault("recall@10_diff_low", np.nan)
        row.setdefault("recall@10_diff_high", np.nan)
    return pd.DataFrame(rows)


def test_kairos_serves_a_slot_only_with_the_interval_above_zero() -> None:
    won = served_choice(_table((0.03, 0.01, 0.05), (0.04, 0.02, 0.06)), None, {}, customers=8)
    assert won[NEXT_BASKET_SLOT]["chosen"] == KAIROS_NEXT
    assert won[CART_KNOWN_SLOT]["chosen"] == KAIROS_CART
    assert won[CART_ANONYMOUS_SLOT]["chosen"] == KAIROS_CART  # both beat G-TopFreq; the blend has more recall
    lost = served_choice(_table((0.03, -0.001, 0.05), (-0.02, -0.04, -0.01)), None, {}, customers=8)
    assert lost[NEXT_BASKET_SLOT]["chosen"] == "TIFU-KNN" and "not better" in lost[NEXT_BASKET_SLOT]["why"]
    assert lost[CART_KNOWN_SLOT]["chosen"] == "co-occurrence count"
    assert "[-0.0010, +0.0500] vs TIFU-KNN" in lost[NEXT_BASKET_SLOT]["why"]


def test_anonymous_carts_keep_bought_together_on_a_tie_and_protocol_c_outranks_the_temporal_split() -> None:
    frame = pd.DataFrame(
        _rows(
            BASKET_COMPLETION_ANONYMOUS,
            {KAIROS_TOGETHER: (0.02, 0.01, 0.03), KAIROS_CART: (0.02, 0.01, 0.03)},
            "G-TopFreq",
            0.2,
        )
    )
    assert gate_slot(frame, (KAIROS_TOGETHER, KAIROS_CART), "temporal split")["chosen"] == KAIROS_TOGETHER
    summary = pd.DataFrame(_rows(BASKET_COMPLETION, {KAIROS_CART: (-0.01, -0.02, 0.001)}, "P-TopFreq", 0.4)).drop(
        columns=["task", "evaluated"]
    )
    summary["best_baseline"] = "P-TopFreq"  # a protocol summary names the best baseline on every row
    chosen = served_choice(_table((0.03, 0.01, 0.05), (0.04, 0.02, 0.06)), None, {"customer known": summary}, 8)
    assert chosen[CART_KNOWN_SLOT] == {
        "chosen": "P-TopFreq",
        "evidence": "last basket held out, customer known",
        "why": chosen[CART_KNOWN_SLOT]["why"],
    }


def test_without_customers_no_next_basket_slot_and_carts_are_served_alike() -> None:
    table = _table((0.03, 0.01, 0.05), (0.04, 0.02, 0.06))
    chosen = served_choice(table[table["task"] != NEXT_BASKET], None, {}, customers=0)
    assert NEXT_BASKET_SLOT not in chosen
    assert chosen[CART_KNOWN_SLOT] == chosen[CART_ANONYMOUS_SLOT]
    unjudged = served_choice(table[table["task"] != NEXT_BASKET], None, {}, customers=8)
    assert unjudged[NEXT_BASKET_SLOT]["chosen"] == KAIROS_PERSONAL and unjudged[NEXT_BASKET_SLOT]["evidence"] == "none"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[RecsModel, Path]:
    """A bundle whose next basket lost its gate (GP-TopFreq serves), whose known-customer carts won (the cart
    blend) and whose anonymous carts lost to the co-occurrence count; written and read back as the API does."""
    ix = interactions()
    data = RecsData(ix, ITEMS, pd.Timestamp(ix[IX.TS].max()), None, customers=8)
    choice = {
        NEXT_BASKET_SLOT: {"chosen": "GP-TopFreq", "evidence": "temporal split", "why": "lost"},
        CART_KNOWN_SLOT: {"chosen": KAIROS_CART, "evidence": "temporal split", "why": "won"},
        CART_ANONYMOUS_SLOT: {"chosen": "co-occurrence count", "evidence": "temporal split", "why": "lost"},
    }
    model = fit(data, lambda step, frac: None, choice)
    folder = tmp_path_factory.mktemp("served-bundle")
    RecsBundle.write(folder, model)
    prov = Provenance("recs", "1", "champion", "run", "sha", None, (), {}, dict(model.manifest))
    return RecsBundle().build(folder, prov, None), folder


def test_the_served_answers_are_the_chosen_models_own(served: tuple[RecsModel, Path]) -> None:
    model, _ = served
    ix = interactions()
    assert model.served_label(NEXT_BASKET_SLOT) == "baseline:gp_topfreq"
    assert baseline_of(model.served_label(NEXT_BASKET_SLOT)) == "gp_topfreq"
    assert model.served_label(CART_KNOWN_SLOT) == "kairos:cart_blend"
    assert baseline_of(model.served_label(CART_KNOWN_SLOT)) is None
    none = Filters()
    gp = GlobalPersonalTopFreq().fit(ix, ITEMS)
    for key in ("c1", "c2", "c4"):
        answer = model.for_customer(key, 3, none)
        assert answer.served == "baseline:gp_topfreq"
        assert [r.item_id for r in answer.items] == [r.item_id for r in gp.recommend(Query(customer_key=key), 3)]
    blend = CartBlend().fit(ix, ITEMS)
    count = CooccurrenceCount().fit(ix, ITEMS)
    for key, cart in (("c1", ("b",)), ("c3", ("g",)), (None, ("a",)), ("nobody", ("e",))):
        answer = model.cart(list(cart), key, 3, none)
        known = key in {"c1", "c3"}
        expected = (blend if known else count).recommend(Query(customer_key=key, cart=cart), 3)
        assert answer.served == ("kairos:cart_blend" if known else "baseline:cooccurrence_count")
        assert [r.item_id for r in answer.items][: len(expected)] == [r.item_id for r in expected]


def test_erasure_reaches_the_served_models(served: tuple[RecsModel, Path], tmp_path: Path) -> None:
    _, original = served
    folder = tmp_path / "bundle"
    shutil.copytree(original, folder)
    assert residue(folder / "served", ["c1"])  # the served models hold the customer
    removed = RecsBundle.erase_customers(folder, ["c1"])
    assert any(path.startswith("served/") for path in removed)
    assert residue(folder / "served", ["c1"]) == []
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    after = RecsBundle().build(folder, Provenance("recs", "1", "champion", "run", "sha", None, (), {}, manifest), None)
    stranger = [r.item_id for r in after.for_customer("nobody", 3, Filters()).items]
    assert [r.item_id for r in after.for_customer("c1", 3, Filters()).items] == stranger  # nothing of theirs left
    assert after.cart(["b"], "c1", 3, Filters()).served == "baseline:cooccurrence_count"  # no longer known


def test_erasure_of_the_ranker_and_neighbour_models_keeps_everyone_else(tmp_path: Path) -> None:
    ix = interactions()
    ranker = RepeatRanker(min_child_samples=1, n_estimators=20, n_jobs=1).fit(ix, ITEMS)
    tifu = TIFUKNN(group_size=2, n_neighbours=3).fit(ix, ITEMS)
    ranker.save(tmp_path / "served" / "repeat_ranker")
    tifu.save(tmp_path / "served" / "tifuknn")
    before = {key: ranker.recommend(Query(customer_key=key), 5) for key in ("c2", "c3", "c5")}
    assert residue(tmp_path, ["c1"])
    removed = RecsBundle.erase_customers(tmp_path, ["c1"])
    assert {"served/repeat_ranker/candidates.npz", "served/tifuknn/matrices.npz"} <= set(removed)
    assert residue(tmp_path, ["c1"]) == []
    ranker_after = RepeatRanker.load(tmp_path / "served" / "repeat_ranker")
    tifu_after = TIFUKNN.load(tmp_path / "served" / "tifuknn")
    assert ranker_after.recommend(Query(customer_key="c1"), 5) == []
    assert tifu_after.recommend(Query(customer_key="c1"), 5) == []
    for key, answer in before.items():  # everyone else's candidate rows are untouched
        assert ranker_after.recommend(Query(customer_key=key), 5) == answer
    assert tifu_after.neighbours_.shape == (7, 7) and tifu_after.recommend(Query(customer_key="c2"), 5)
