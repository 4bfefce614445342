"""The offer catalogue: validation naming the field, and a safe eligibility language."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.decisioning.offers import (
    EXAMPLE_CATALOGUE,
    CatalogueError,
    Eligibility,
    ExpressionError,
    load_catalogue,
    parse_catalogue,
)


def _offer(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "A1",
        "name": "10% off",
        "type": "percent_discount",
        "value": 10,
        "channels": ["email"],
        "eligibility": "orders_lifetime >= 1",
        "cost": {"fixed_cost": 0.01, "discount_rate": 0.10},
        "valid_from": "2026-01-01",
        "valid_to": "2026-03-31",
    }
    return base | over


def test_example_catalogue_matches_the_synthetic_offers() -> None:
    cat = load_catalogue(EXAMPLE_CATALOGUE)
    assert cat.offer_ids == ["OF01", "OF02", "OF03", "OF04", "OF05", "OF06"]
    assert 0 < cat.margin_rate < 1
    assert cat.offer("OF05").type == "content"


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"type": "mystery"}, "offers.0.type"),
        ({"channels": ["fax"]}, "offers.0.channels"),
        ({"cost": {"discount_rate": 0.2}}, "offers.0"),  # 20% cost for a 10% offer
        ({"valid_to": "2025-01-01"}, "offers.0"),
        ({"colour": "red"}, "offers.0.colour"),
        ({"eligibility": "__import__('os')"}, "offers.0.eligibility"),
        ({"max_per_customer": 0}, "offers.0.max_per_customer"),
    ],
)
def test_invalid_offer_names_the_field(over: dict[str, object], field: str) -> None:
    with pytest.raises(CatalogueError, match=field.replace(".", r"\.")):
        parse_catalogue({"margin_rate": 0.4, "offers": [_offer(**over)]})


def test_duplicate_ids_and_missing_margin_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="listed twice"):
        parse_catalogue({"margin_rate": 0.4, "offers": [_offer(), _offer()]})
    with pytest.raises(CatalogueError, match="margin_rate"):
        parse_catalogue({"offers": [_offer()]})
    bad = tmp_path / "c.yaml"
    bad.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="mapping"):
        load_catalogue(bad)
    with pytest.raises(CatalogueError, match="no offer catalogue"):
        load_catalogue(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "orders_lifetime.__class__",
        "open('/etc/passwd')",
        "[c for c in ()]",
        "orders_lifetime[0] > 1",
        "orders_lifetime + 1 > 2",
        "lambda: True",
        "(orders_lifetime := 3) > 1",
        "recency_days if True else 0",
        "f'{recency_days}' == 'x'",
        "orders_lifetime in orders_lifetime",
        "orders_lifetime in [recency_days]",
    ],
)
def test_unsafe_or_unsupported_forms_are_rejected(text: str) -> None:
    with pytest.raises(ExpressionError):
        Eligibility(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no_such_feature > 1", "unknown name 'no_such_feature'"),
        ("lifecycle > 2", "string"),
        ("recency_days == 'x'", "cannot compare"),
        ("recency_days", "compare it"),
        ("lifecycle in ['lapsed', 3]", "list items"),
    ],
)
def test_names_and_kinds_are_checked_at_load(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        Eligibility(text)


def test_evaluation_is_vectorised_and_missing_compares_false() -> None:
    frame = pd.DataFrame(
        {
            "recency_days": [5.0, 40.0, np.nan, 100.0],
            "lifecycle": ["active", "at_risk", "lead", None],
            "flag_one_and_done": [False, True, False, True],
            "orders_lifetime": [3.0, 1.0, 0.0, 2.0],
        }
    )
    assert Eligibility("recency_days > 30").evaluate(frame).tolist() == [False, True, False, True]
    assert Eligibility("recency_days != 5").evaluate(frame).tolist() == [False, True, False, True]
    assert Eligibility("lifecycle in ['at_risk', 'lapsed']").evaluate(frame).tolist() == [False, True, False, False]
    assert Eligibility("lifecycle not in ['at_risk']").evaluate(frame).tolist() == [True, False, True, False]
    assert Eligibility("flag_one_and_done and not recency_days < 50").evaluate(frame).tolist() == [
        False,
        False,
        False,
        True,
    ]
    assert Eligibility("1 <= orders_lifetime < 3 or lifecycle == 'lead'").evaluate(frame).tolist() == [
        False,
        True,
        True,
        True,
    ]
    assert Eligibility("").evaluate(frame).all()
    with pytest.raises(CatalogueError, match="tenure_days"):
        Eligibility("tenure_days > 1").evaluate(frame)
