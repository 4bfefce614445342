"""The API's reasons print amounts in the data's currency: the one the loaded models' manifest records."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from models.reasons import DEFAULT_CURRENCY
from serving.scoring import Scorer, _currency


def _scorer(kind: str, manifest: dict[str, Any] | None) -> Scorer:
    bundle = None if manifest is None else SimpleNamespace(provenance=SimpleNamespace(manifest=manifest))
    return Scorer(kind, bundle, 0.1)  # type: ignore[arg-type]


def test_the_first_loaded_models_manifest_names_the_currency() -> None:
    assert _currency([_scorer("churn", None), _scorer("purchase", {"currency": "USD"})]) == "USD"


def test_models_without_a_recorded_currency_or_none_loaded_give_the_default() -> None:
    assert _currency([_scorer("churn", {"as_of": "2011-12-10"})]) == DEFAULT_CURRENCY
    assert _currency([_scorer("churn", None)]) == DEFAULT_CURRENCY
