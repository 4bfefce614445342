"""The recommendations job: evaluation table, a verified bundle in the registry, alias decisions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bundles import registry
from models.recs.base import Query
from models.recs.cooccurrence import BoughtTogether
from models.recs.rules import ItemCatalogue, apply_rules
from tests.conftest import BuiltHome
from training.recs import SELECTION_METRIC, train_recs


@pytest.mark.slow
def test_evaluates_registers_and_promotes_only_when_better(orii_home: BuiltHome, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = train_recs(orii_home.home, uri, test_days=60)
    assert set(first.table["task"]) == {"basket_completion", "basket_completion_anonymous", "next_basket"}
    assert {"G-TopFreq", "P-TopFreq", "GP-TopFreq", "Kairos bought together"} <= set(first.table["model"])
    assert first.registration is not None and first.registration.alias == "champion"
    assert 0.0 <= first.metrics[SELECTION_METRIC] <= 1.0

    bundle = registry.fetch_bundle(uri, "recs", "champion", tmp_path / "dl")
    together = BoughtTogether.load(bundle.path / "bought_together")
    catalogue = ItemCatalogue.load(bundle.path / "catalogue")
    cart = (str(together.item_ids_[int(np.argmax(np.diff(together.nbr_indptr_)))]),)  # best-connected item
    answer = apply_rules(together.recommend(Query(cart=cart), 10), Query(cart=cart), 10, catalogue)
    assert len(answer) == 10 and not set(cart) & {r.item_id for r in answer}

    second = train_recs(orii_home.home, uri, test_days=60)  # same data, same figure: not better
    assert second.registration is not None and second.registration.alias == "challenger"
