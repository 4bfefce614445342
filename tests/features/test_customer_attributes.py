"""Customer attributes declared in the mapping: typed, kept in customers, merged with derived customers,
and turned into features (ordered bands as ordinals, categories as labels)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ibis
import pandas as pd
import pytest

from features.definitions import FEATURE_NAMES, feature_table, features_for
from features.errors import MappingError
from features.ingest import ingest
from features.mapping import Mapping
from tests.features.test_mapping_expressions import TILL, _write, load_mapping_from, till_lines

NOW = datetime(2026, 1, 1, tzinfo=UTC)

# Demographics for two of the three households on the till; h3 has a band outside the declared order.
DEMOGRAPHICS = """household,age,income,owner,size,born
h1,25-34,Under 15K,Homeowner,2,1990-04-01
h2,65+,50-74K,,5+,
h3,70-80,15-24K,Renter,1,not a date
"""
TILL_3 = TILL + "B9,h4,P1,1,2.00,2017-03-20 10:00:00,\n"
AGE = ["19-24", "25-34", "35-44", "45-54", "55-64", "65+"]
INCOME = ["Under 15K", "15-24K", "25-34K", "35-49K", "50-74K"]


def _mapping(**customers: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "files": ["demographics.csv"],
        "columns": {"customer_id": "household"},
        "attributes": {
            "age_band": {"type": "bands", "column": "age", "order": AGE},
            "income_band": {"type": "bands", "column": "income", "order": INCOME},
            "home_ownership": {"type": "category", "column": "owner"},
            "household_size": {"type": "number", "expression": "TRY_CAST(replace(size, '+', '') AS INTEGER)"},
            "born": {"type": "date"},
        },
    }
    table.update(customers)
    return {
        "name": "grocer",
        "timezone": "floating",
        "currency": "USD",
        "derive_customers_from_lines": True,
        "max_quarantine_share": 1.0,
        "tables": {
            "customers": table,
            "order_lines": till_lines(line_amount="sales_value"),
        },
    }


def _values(series: pd.Series) -> list[Any]:
    return [None if pd.isna(v) else v for v in series]


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    folder = _write(tmp_path / "x", {"till.csv": TILL_3, "demographics.csv": DEMOGRAPHICS})
    ingest(folder, Mapping.model_validate(_mapping()), tmp_path / "home", now=NOW)
    return tmp_path / "home"


def test_attributes_are_kept_typed_and_partial_customers_merge_with_derived_ones(home: Path) -> None:
    customers = pd.read_parquet(home / "ingested" / "customers.parquet").set_index("customer_id").sort_index()
    assert customers.index.tolist() == ["h1", "h2", "h3", "h4"]  # h4 is only on the till: derived
    assert _values(customers["attr_age_band"])[:3] == ["25-34", "65+", None]  # 70-80 is not a declared band
    assert _values(customers["attr_age_band_rank"]) == [2, 6, None, None]
    assert _values(customers["attr_income_band_rank"]) == [1, 5, 2, None]
    assert _values(customers["attr_household_size"])[:3] == [2.0, 5.0, 1.0]
    assert str(customers.loc["h1", "attr_born"]) == "1990-04-01"
    assert pd.isna(customers.loc["h3", "attr_born"])
    lines = pd.read_parquet(home / "ingested" / "order_lines.parquet")
    assert "h4" in set(lines["customer_id"])  # no orphan_customer for a household without demographics


def test_the_report_counts_reclassified_attribute_values_and_records_with_a_value(home: Path) -> None:
    import json

    report = json.loads((home / "ingested" / "ingest_report.json").read_text(encoding="utf-8"))
    assert report["tables"]["customers"]["reclassified_reasons"] == {"invalid_value": 1, "unparseable_date": 1}
    assert report["derived"]["customers"] == 1
    assert report["attributes"]["age_band"] == {
        "type": "bands",
        "column": "attr_age_band",
        "order": AGE,
        "records_with_value": 2,
    }


def test_attributes_become_features_bands_as_ordinals(home: Path) -> None:
    con = ibis.duckdb.connect()
    tables = {p.stem: con.read_parquet(p, table_name=p.stem) for p in (home / "ingested").glob("*.parquet")}
    names = [f.name for f in features_for(tables)[len(FEATURE_NAMES) :]]
    assert names == [
        "attr_age_band",
        "attr_age_band_band",
        "attr_income_band",
        "attr_income_band_band",
        "attr_home_ownership",
        "attr_household_size",
        "attr_born_days",
    ]
    frame = feature_table(tables, datetime(2018, 1, 1, tzinfo=UTC)).execute()
    ids = pd.read_parquet(home / "ingested" / "identity_map.parquet").set_index("customer_key")["customer_id"]
    frame = frame.assign(customer_id=frame["customer_key"].map(ids)).set_index("customer_id").sort_index()
    assert _values(frame["attr_age_band"])[:2] == [2.0, 6.0]
    assert _values(frame["attr_income_band_band"])[:3] == ["Under 15K", "50-74K", "15-24K"]
    assert _values(frame["attr_home_ownership"])[:3] == ["Homeowner", None, "Renter"]
    assert frame.loc["h1", "attr_born_days"] == (datetime(2018, 1, 1) - datetime(1990, 4, 1)).days
    assert frame.loc["h4"].filter(like="attr_").isna().all()


@pytest.mark.parametrize(
    ("attributes", "where"),
    [
        ({"age": {"type": "bands"}}, "tables.customers.attributes.age: ordered bands need order"),
        ({"age": {"type": "category", "order": ["a"]}}, "order is only for type bands"),
        ({"Age Band": {"type": "category"}}, "tables.customers.attributes.Age Band: an attribute name is lower case"),
        ({"email": {"type": "category"}}, "tables.customers.attributes.email: an attribute name"),
        ({"age": {"type": "colour"}}, "tables.customers.attributes.age.type"),
        ({"age": {"type": "number", "expression": "size +"}}, "expression: not a valid expression"),
    ],
)
def test_a_bad_attribute_is_refused_naming_where(attributes: dict[str, Any], where: str) -> None:
    with pytest.raises(MappingError) as err:
        load_mapping_from(_mapping(attributes=attributes))
    assert where in str(err.value)


def test_an_attribute_column_missing_from_the_file_is_named(tmp_path: Path) -> None:
    folder = _write(tmp_path / "x", {"till.csv": TILL_3, "demographics.csv": DEMOGRAPHICS})
    raw = _mapping(attributes={"kids": {"type": "number", "column": "kids_count"}})
    with pytest.raises(MappingError) as err:
        ingest(folder, Mapping.model_validate(raw), tmp_path / "h", now=NOW)
    assert (
        str(err.value)
        == 'tables.customers.attributes.kids.column: unknown column "kids_count" (not in demographics.csv)'
    )


def test_attributes_only_on_customers() -> None:
    raw = _mapping()
    raw["tables"]["order_lines"]["attributes"] = {"x": {"type": "category"}}
    with pytest.raises(MappingError, match=r"tables\.order_lines\.attributes: only the customers table"):
        load_mapping_from(raw)
