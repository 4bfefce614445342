"""Customer attributes (attr_<name>) in offer eligibility and segment rules: category equality and
membership, ordered bands by position (attr_<name>, attr_<name>_rank) or by band name, numbers; clear errors
naming the offer or the rule when the data lacks an attribute or a value's kind clashes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.conditions import Condition, ConditionError
from features.segments import Feat, SegmentConfig, SegmentInputError, assign_segments
from models.decisioning.offers import CatalogueError, Eligibility, parse_catalogue
from tests.models.decisioning.test_offers import _offer

AGE = ["19-24", "25-34", "35-44", "45-54", "55-64", "65+"]


@pytest.fixture()
def frame() -> pd.DataFrame:
    # the features of four households: bands as their position (1 = first) and label, as the snapshot has them
    age = ["25-34", "45-54", None, "65+"]
    return pd.DataFrame(
        {
            "customer_key": ["a", "b", "c", "d"],
            Feat.RECENCY_DAYS: [5.0, 40.0, np.nan, 400.0],
            Feat.ORDERS_LIFETIME: [3.0, 1.0, 0.0, 6.0],
            Feat.TENURE_DAYS: [300.0, 40.0, np.nan, 900.0],
            Feat.MONETARY_365D: [90.0, 10.0, 0.0, 0.0],
            "attr_age_band": [AGE.index(a) + 1 if a else np.nan for a in age],
            "attr_age_band_band": pd.array(age, dtype="string"),
            "attr_home_ownership": pd.array(["Homeowner", "Renter", "Homeowner", None], dtype="string"),
            "attr_household_size": [2.0, 5.0, np.nan, 1.0],
        }
    )


def _eligible(text: str, frame: pd.DataFrame, **kw: object) -> list[bool]:
    return Eligibility(text).evaluate(frame, **kw).tolist()  # type: ignore[arg-type]


def test_categories_compare_by_equality_and_membership(frame: pd.DataFrame) -> None:
    assert _eligible("attr_home_ownership == 'Homeowner'", frame) == [True, False, True, False]
    assert _eligible("attr_home_ownership != 'Homeowner'", frame) == [False, True, False, False]  # unknown: False
    assert _eligible("attr_home_ownership in ['Renter', 'Other']", frame) == [False, True, False, False]
    assert _eligible("attr_home_ownership == 'Homeowner' and orders_lifetime >= 1", frame) == [
        True,
        False,
        False,
        False,
    ]


def test_bands_compare_by_position_rank_alias_or_band_name(frame: pd.DataFrame) -> None:
    by_position = _eligible("attr_age_band >= 3", frame)
    assert by_position == [False, True, False, True]
    assert _eligible("attr_age_band_rank >= 3", frame) == by_position
    assert _eligible("attr_age_band >= '45-54'", frame) == by_position  # nobody has 35-44: the same people
    assert _eligible("attr_age_band < '45-54'", frame) == [True, False, False, False]
    assert _eligible("'45-54' <= attr_age_band", frame) == [False, True, False, True]
    assert _eligible("attr_age_band == '45-54'", frame) == [False, True, False, False]
    assert _eligible("attr_age_band in ['25-34', '65+']", frame) == [True, False, False, True]


def test_a_band_name_takes_the_declared_order_when_given(frame: pd.DataFrame) -> None:
    # seen in the frame: 25-34 (2), 45-54 (4), 65+ (6); 55-64 only the declared order knows
    with pytest.raises(CatalogueError, match=r"'55-64' is not a band of attr_age_band \(its bands: <band 1>, 25-34"):
        _eligible("attr_age_band >= '55-64'", frame)
    assert _eligible("attr_age_band >= '55-64'", frame, bands={"attr_age_band": AGE}) == [False, False, False, True]


def test_numbers_compare_with_numbers(frame: pd.DataFrame) -> None:
    assert _eligible("attr_household_size >= 2", frame) == [True, True, False, False]
    with pytest.raises(CatalogueError, match="attr_household_size holds numbers, not bands"):
        _eligible("attr_household_size == 'big'", frame)


def test_kind_clashes_are_named(frame: pd.DataFrame) -> None:
    with pytest.raises(CatalogueError, match="attr_home_ownership is a category, not ordered bands"):
        _eligible("attr_home_ownership >= 'Homeowner'", frame)
    with pytest.raises(CatalogueError, match="attr_home_ownership holds text"):
        _eligible("attr_home_ownership == 1", frame)


def test_an_attribute_the_data_lacks_names_the_offer_and_the_attributes_it_has(frame: pd.DataFrame) -> None:
    catalogue = parse_catalogue(
        {
            "name": "spring",
            "margin_rate": 0.4,
            "offers": [
                _offer(id="OK", eligibility="attr_home_ownership == 'Homeowner'"),
                _offer(id="KIDS", eligibility="attr_kids >= 1"),
            ],
        }
    )
    with pytest.raises(CatalogueError) as err:
        catalogue.eligible(frame)
    message = str(err.value)
    assert "spring: offer 'KIDS': eligibility 'attr_kids >= 1': attr_kids is not a customer attribute" in message
    assert "its attributes: attr_age_band, attr_age_band_band, attr_home_ownership, attr_household_size" in message
    ok = parse_catalogue({"margin_rate": 0.4, "offers": [_offer(id="OK", eligibility="attr_age_band >= '45-54'")]})
    assert ok.eligible(frame)[:, 0].tolist() == [False, True, False, True]


def test_an_attribute_on_its_own_must_be_compared() -> None:
    with pytest.raises(ConditionError, match="attr_kids is a customer attribute; compare it"):
        Condition("attr_kids", {})


def test_segment_rules_reference_attributes_and_segment_columns(frame: pd.DataFrame) -> None:
    config = SegmentConfig(
        rules={
            "older_owners": "attr_age_band >= '45-54' or attr_home_ownership == 'Homeowner'",
            "young_buyers": "attr_age_band <= 2 and lifecycle != 'lead'",
        }
    )
    out = assign_segments(frame, config).set_index("customer_key")
    assert out["rule_older_owners"].tolist() == [True, True, True, True]
    assert out["rule_young_buyers"].tolist() == [True, False, False, False]
    assert out.loc["c", "lifecycle"] == "lead"


def test_a_segment_rule_is_checked_when_configured_and_named_when_the_data_lacks_it(frame: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match=r"rules\.bad: 'attr_age_band >> 2'"):
        SegmentConfig(rules={"bad": "attr_age_band >> 2"})
    with pytest.raises(ValidationError, match=r"rules\.Bad Name: a rule name is lower case"):
        SegmentConfig(rules={"Bad Name": "orders_lifetime > 1"})
    with pytest.raises(SegmentInputError, match="segment rule 'kids': 'attr_kids == 1': attr_kids is not a customer"):
        assign_segments(frame, SegmentConfig(rules={"kids": "attr_kids == 1"}))


def test_an_ingested_export_gives_the_declared_band_order_and_its_features_meet_conditions(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    import ibis

    from features.definitions import feature_table
    from features.ingest import ingest
    from features.mapping import Mapping
    from features.store import attribute_bands
    from tests.features.test_customer_attributes import AGE as DECLARED
    from tests.features.test_customer_attributes import DEMOGRAPHICS, INCOME, NOW, TILL_3, _mapping
    from tests.features.test_mapping_expressions import _write

    folder = _write(tmp_path / "x", {"till.csv": TILL_3, "demographics.csv": DEMOGRAPHICS})
    ingest(folder, Mapping.model_validate(_mapping()), tmp_path / "home", now=NOW)
    bands = attribute_bands(tmp_path / "home")
    assert bands == {"attr_age_band": DECLARED, "attr_income_band": INCOME}
    con = ibis.duckdb.connect()
    published = (tmp_path / "home" / "ingested").glob("*.parquet")
    tables = {p.stem: con.read_parquet(p, table_name=p.stem) for p in published}
    frame = feature_table(tables, datetime(2018, 1, 1, tzinfo=UTC)).execute()
    ids = pd.read_parquet(tmp_path / "home" / "ingested" / "identity_map.parquet").set_index("customer_key")
    frame.index = frame["customer_key"].map(ids["customer_id"])
    frame = frame.sort_index()
    # h1 25-34 / Under 15K, h2 65+ / 50-74K, h3 (no age) / 15-24K, h4 nothing: 35-44 is nobody's band
    rule = Eligibility("attr_age_band >= '35-44' or attr_income_band in ['15-24K']")
    assert rule.evaluate(frame, bands).tolist() == [False, True, True, False]


def test_a_catalogue_registers_band_positions_so_one_customer_needs_no_order(frame: pd.DataFrame) -> None:
    catalogue = parse_catalogue(
        {
            "margin_rate": 0.4,
            "offers": [
                _offer(id="OLD", eligibility="attr_age_band >= '55-64' and orders_lifetime >= 1"),
                _offer(id="MID", eligibility="'25-34' < attr_age_band_rank <= '45-54' or attr_age_band == '65+'"),
                _offer(id="ANY", eligibility="orders_lifetime>=1  and attr_age_band == '65+'"),
            ],
        }
    )
    bound = catalogue.with_band_positions({"attr_age_band": AGE})
    assert [o.eligibility for o in bound.offers] == [
        "attr_age_band >= 5 and orders_lifetime >= 1",
        "2 < attr_age_band_rank <= 4 or attr_age_band == '65+'",
        "orders_lifetime>=1  and attr_age_band == '65+'",  # nothing to replace: its own wording
    ]
    assert bound.offers[2] is catalogue.offers[2]
    one = frame.iloc[[3]]  # d: 65+, alone (the frame shows no order)
    assert bound.eligible(one).tolist() == [[True, True, True]]
    with pytest.raises(CatalogueError, match="'55-64' is not a band"):  # unbound, one customer shows no order
        catalogue.eligible(one)
    assert bound.eligible(frame).tolist() == catalogue.eligible(frame, {"attr_age_band": AGE}).tolist()
    with pytest.raises(CatalogueError, match=r"offer 'X': eligibility .*'70-80' is not a band of attr_age_band"):
        parse_catalogue(
            {"margin_rate": 0.4, "offers": [_offer(id="X", eligibility="attr_age_band > '70-80'")]}
        ).with_band_positions({"attr_age_band": AGE})
