"""Ingestion: every defect kind yields exactly the expected verdict; nothing is ever lost."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.errors import InputDataError, MappingError, QuarantineThresholdError
from features.ingest import INGESTED_DIR, QUARANTINE_FILE, RECLASSIFIED_FILE, REPORT_FILE, ingest
from features.mapping import Mapping, load_mapping
from tests.conftest import ORII_SAMPLE

NOW = datetime(2024, 12, 1, tzinfo=UTC)

LINES = """order_id,customer_id,ordered_at,currency,item_id,quantity,unit_price
O1,c1,2024-05-01 10:00:00,GBP,A,1,2.5
O1,c1,2024-05-01 10:00:00,GBP,B,2,3.0
O1,c1,2024-05-01 10:00:00,GBP,B,2,3.0
O2,c2,2024-05-02 11:00:00,GBP,A,1,2.5
O2,c3,2024-05-02 11:00:00,GBP,B,1,3.0
C3,c1,2024-05-03 09:00:00,GBP,A,-1,2.5
O4,c1,2024-05-04 09:00:00,GBP,A,-2,2.5
O5,,2024-05-05 09:00:00,GBP,A,1,2.5
O6,c1,2099-01-01 09:00:00,GBP,A,1,2.5
O7,c1,not a date,GBP,A,1,2.5
O8,c1,2024-03-31 01:30:00,GBP,A,1,2.5
O9,c1,2024-05-06T09:00:00+02:00,GBP,A,1,2.5
O10,c1,2024-05-07 09:00:00,GBP,A,1,0
O11,c1,2024-05-08 09:00:00,XXX,A,1,2.5
O12,c1,2024-05-09 09:00:00,GBP,ZZZ,1,2.5
O13,c1,2024-05-10 09:00:00,GBP,POST,1,15
O14,c2,2024-10-27 01:30:00,GBP,B,1,3.0
O15,c1,2024-05-11 09:00:00,GBP,A,abc,2.5
"""

CUSTOMERS = """customer_id,email,phone,country,loyalty_id
c1,Ann@Example.com ,+44 20 7946 0958,GB,L1
c2,bad@@mail,,GB,
c3,c3@example.com,12,GB,
c4,ANN@example.com,,GB,
c5,,020 7946 0958,GB,L2
"""

ITEMS = """item_id,name,price
A,Apple,2.5
B,Bread,3.0
"""


def _mapping(**overrides: object) -> Mapping:
    raw = {
        "name": "fixture",
        "timezone": "Europe/London",
        "max_quarantine_share": 1.0,
        "max_table_quarantine_share": 1.0,  # the fixture's lines are mostly defects by design
        "tables": {
            "items": {"files": ["items.csv"]},
            "customers": {"files": ["customers.csv"]},
            "order_lines": {
                "files": ["lines.csv"],
                "timestamp_format": "ISO8601",
                "cancellation": {"column": "order_id", "prefix": "C"},
                "non_product": {"column": "item_id", "pattern": "POST|DOT"},
            },
        },
    }
    raw.update(overrides)
    return Mapping.model_validate(raw)


@pytest.fixture()
def export(tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "lines.csv").write_text(LINES)
    (folder / "customers.csv").write_text(CUSTOMERS)
    (folder / "items.csv").write_text(ITEMS)
    return folder


def test_each_defect_kind_has_exactly_the_expected_count(export: Path, tmp_path: Path) -> None:
    result = ingest(export, _mapping(), tmp_path / "home", now=NOW)
    lines = result.report["tables"]["order_lines"]
    assert lines["input_rows"] == 18
    assert (lines["accepted"], lines["reclassified"], lines["quarantined"]) == (4, 2, 12)
    assert lines["quarantine_reasons"] == {
        "duplicate_row": 1,
        "order_conflict": 2,
        "negative_quantity": 1,
        "future_timestamp": 1,
        "unparseable_timestamp": 1,
        "nonexistent_local_time": 1,
        "mixed_tz_awareness": 1,
        "non_positive_price": 1,
        "unknown_currency": 1,
        "orphan_item": 1,
        "invalid_number": 1,
    }
    assert lines["reclassified_reasons"] == {"cancellation": 1, "non_product": 1}
    customers = result.report["tables"]["customers"]
    assert (customers["accepted"], customers["reclassified"], customers["quarantined"]) == (3, 2, 0)
    assert customers["reclassified_reasons"] == {"invalid_email": 1, "invalid_phone": 1}


def test_published_tables_hold_what_the_report_says(export: Path, tmp_path: Path) -> None:
    result = ingest(export, _mapping(), tmp_path / "home", now=NOW)
    out = result.path
    lines = pd.read_parquet(out / "order_lines.parquet")
    assert sorted(lines["order_id"]) == ["O1", "O1", "O14", "O5"]
    anonymous = lines.loc[lines["order_id"] == "O5"]
    assert anonymous["customer_id"].isna().all() and anonymous["customer_key"].isna().all()
    returns = pd.read_parquet(out / "returns.parquet")
    assert returns[["return_id", "item_id", "quantity"]].values.tolist() == [["C3", "A", 1]]
    adjustments = pd.read_parquet(out / "adjustments.parquet")
    assert adjustments[["adjustment_id", "amount"]].values.tolist() == [["O13", 15.0]]
    orders = pd.read_parquet(out / "orders.parquet").set_index("order_id")
    assert orders.loc["O1", "n_lines"] == 2 and orders.loc["O1", "amount"] == pytest.approx(8.5)
    # The DST fold takes the first (summer-time) occurrence: 01:30 BST = 00:30 UTC.
    assert orders.loc["O14", "ordered_at"] == pd.Timestamp("2024-10-27 00:30", tz="UTC")
    quarantine = pd.read_parquet(out / QUARANTINE_FILE)
    assert len(quarantine) == 12 + 0
    dst = quarantine.loc[quarantine["reasons"].str.contains("nonexistent_local_time")]
    assert json.loads(dst["original"].iloc[0])["ordered_at"] == "2024-03-31 01:30:00"
    assert (quarantine["source_row"] > 0).all()
    assert len(pd.read_parquet(out / RECLASSIFIED_FILE)) == 2 + 2


def test_contacts_are_normalised_and_identities_resolved(export: Path, tmp_path: Path) -> None:
    result = ingest(export, _mapping(), tmp_path / "home", now=NOW)
    customers = pd.read_parquet(result.path / "customers.parquet").set_index("customer_id")
    assert customers.loc["c1", "email"] == "ann@example.com"
    assert customers.loc["c1", "phone"] == "+442079460958"
    assert pd.isna(customers.loc["c2", "email"]) and pd.isna(customers.loc["c3", "phone"])
    keys = customers["customer_key"]
    assert keys["c1"] == keys["c4"]  # same e-mail in another case
    assert keys["c5"] != keys["c1"]  # shares c1's phone but holds another loyalty card
    assert result.report["identity"]["refused_merges"] == 1
    lines = pd.read_parquet(result.path / "order_lines.parquet")
    assert set(lines.loc[lines["customer_id"] == "c1", "customer_key"]) == {keys["c1"]}


def test_threshold_publishes_nothing_and_keeps_the_previous_output(export: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    good = ingest(export, _mapping(), home, now=NOW)
    before = (good.path / REPORT_FILE).read_bytes()
    with pytest.raises(QuarantineThresholdError, match="nothing was published") as err:
        ingest(export, _mapping(), home, now=NOW, max_quarantine_share=0.1)
    assert err.value.report["ok"] is False
    assert (home / INGESTED_DIR / REPORT_FILE).read_bytes() == before
    assert (home / f"{INGESTED_DIR}.rejected" / QUARANTINE_FILE).is_file()
    assert not [p for p in home.iterdir() if "staging" in p.name]


def test_first_run_over_threshold_leaves_no_ingested_folder(export: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(QuarantineThresholdError):
        ingest(export, _mapping(), home, now=NOW, max_quarantine_share=0.0)
    assert not (home / INGESTED_DIR).exists()


def test_missing_mapped_column_is_a_clear_error(export: Path, tmp_path: Path) -> None:
    mapping = _mapping(tables={"order_lines": {"files": ["lines.csv"], "columns": {"quantity": "Qty"}}})
    with pytest.raises(InputDataError, match="'Qty'"):
        ingest(export, mapping, tmp_path / "home", now=NOW)


def test_bad_mapping_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("name: x\ntables:\n  order_lines:\n    files: [a.csv]\n    columns: {qty: Quantity}\n")
    with pytest.raises(MappingError, match=r"tables\.order_lines\.columns\.qty"):
        load_mapping(path)
    path.write_text("name: x\ntimezone: Mars/Base\ntables: {}\n")
    with pytest.raises(MappingError, match="Mars/Base"):
        load_mapping(path)


def test_builtin_mappings_load() -> None:
    assert load_mapping("online_retail_ii").tables["order_lines"].cancellation is not None


# --- the count invariant, for any mixture of good and bad rows --------------------------------

_row = st.fixed_dictionaries(
    {
        "order_id": st.sampled_from(["O1", "O2", "O3", "C4", "O5", ""]),
        "customer_id": st.sampled_from(["c1", "c2", ""]),
        "ordered_at": st.sampled_from(
            [
                "2024-05-01 10:00:00",
                "2024-05-01 10:30:00",
                "2024-05-01T10:00:00Z",
                "garbage",
                "2099-01-01 00:00:00",
                "2024-03-31 01:15:00",
                "",
            ]
        ),
        "currency": st.sampled_from(["GBP", "EUR", "ZZZ", ""]),
        "item_id": st.sampled_from(["A", "B", "POST", "Q", ""]),
        "quantity": st.sampled_from(["1", "3", "-1", "0", "x", "1.5", ""]),
        "unit_price": st.sampled_from(["2.5", "0", "-1", "inf", "nan", "y", ""]),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_row, min_size=1, max_size=40))
def test_every_row_lands_in_exactly_one_place(
    rows: list[dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("prop")
    pd.DataFrame(rows).to_csv(folder / "lines.csv", index=False)
    (folder / "items.csv").write_text(ITEMS)
    mapping = _mapping(
        tables={
            "items": {"files": ["items.csv"]},
            "order_lines": {
                "files": ["lines.csv"],
                "cancellation": {"column": "order_id", "prefix": "C"},
                "non_product": {"column": "item_id", "pattern": "POST"},
            },
        }
    )
    try:
        result = ingest(folder, mapping, folder / "home", now=NOW)
        report, out = result.report, result.path
    except QuarantineThresholdError as err:  # a table lost everything: the rejected run must add up as well
        report, out = err.report, folder / "home" / f"{INGESTED_DIR}.rejected"
        assert report["table_losses"]
    t = report["tables"]["order_lines"]
    assert t["input_rows"] == len(rows) == t["accepted"] + t["reclassified"] + t["quarantined"]
    published = len(pd.read_parquet(out / "order_lines.parquet"))
    moved = len(pd.read_parquet(out / "returns.parquet")) + len(pd.read_parquet(out / "adjustments.parquet"))
    assert published == t["accepted"]
    assert moved == t["reclassified"]
    quarantine = pd.read_parquet(out / QUARANTINE_FILE)
    assert len(quarantine) == t["quarantined"]
    # every input row is accounted for exactly once, by its source row number
    published_rows = set(range(1, len(rows) + 1)) - set(quarantine["source_row"])
    assert len(published_rows) == published + moved


# --- fixes found in review ---------------------------------------------------------------------


def test_an_unmapped_required_column_is_a_mapping_error_before_any_row_is_judged(tmp_path: Path) -> None:
    (tmp_path / "consents.csv").write_text("customer_id,status,consented_at\nc1,opt_in,2024-01-01T00:00:00Z\n")
    mapping = _mapping(tables={"consents": {"files": ["consents.csv"]}})
    with pytest.raises(InputDataError, match=r"tables\.consents: required column\(s\) channel"):
        ingest(tmp_path, mapping, tmp_path / "home", now=NOW)


def test_separate_order_headers_with_a_cleared_field_stay_published(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(
        "order_id,customer_id,ordered_at,currency,channel\n"
        "O1,,2024-05-01T10:00:00Z,GBP,web\n"  # 'web' is not online/offline: field cleared, order kept
        "C2,,2024-05-02T10:00:00Z,GBP,online\n"
    )
    (tmp_path / "lines.csv").write_text("order_id,item_id,quantity,unit_price\nO1,A,1,2.0\nC2,A,-1,2.0\n")
    mapping = _mapping(
        tables={
            "orders": {"files": ["orders.csv"], "cancellation": {"column": "order_id", "prefix": "C"}},
            "order_lines": {"files": ["lines.csv"], "cancellation": {"column": "order_id", "prefix": "C"}},
        }
    )
    result = ingest(tmp_path, mapping, tmp_path / "home", now=NOW)
    assert result.report["tables"]["orders"]["reclassified_reasons"] == {"cancellation": 1, "invalid_value": 1}
    orders = pd.read_parquet(result.path / "orders.parquet")
    assert orders["order_id"].tolist() == ["O1"] and pd.isna(orders["channel"].iloc[0])
    lines = pd.read_parquet(result.path / "order_lines.parquet")
    assert lines[["order_id", "line_no"]].values.tolist() == [["O1", 1]]
    assert len(pd.read_parquet(result.path / "returns.parquet")) == 1


def test_web_events_without_an_id_get_their_source_position(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text(
        "event_id,session_id,event_type,occurred_at\ne1,s1,view,2024-01-01T00:00:00Z\n,s1,view,2024-01-01T00:01:00Z\n"
    )
    mapping = _mapping(tables={"web_events": {"files": ["events.csv"]}})
    events = pd.read_parquet(ingest(tmp_path, mapping, tmp_path / "home", now=NOW).path / "web_events.parquet")
    assert events["event_id"].tolist() == ["e1", "events.csv:2"]


def test_a_rule_on_a_source_column_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"cancellation\.column: 'Invoice' is not a contract column"):
        _mapping(tables={"order_lines": {"files": ["x.csv"], "cancellation": {"column": "Invoice", "prefix": "C"}}})


def test_published_order_lines_have_the_same_columns_whatever_the_export() -> None:
    flat = ingest(ORII_SAMPLE, load_mapping("online_retail_ii"), Path(tempfile.mkdtemp()), now=NOW)
    columns = pd.read_parquet(flat.path / "order_lines.parquet").columns.tolist()
    assert columns[:7] == ["order_id", "line_no", "item_id", "item_name", "quantity", "unit_price", "discount"]
    assert "customer_key" in columns and "ordered_at" in columns


# --- issue 17: no personal data in messages; plausibility bounds; a table that loses its rows fails ---

CANARY_EMAIL, CANARY_PHONE, CANARY_NAME = "canary.7f3e@example.org", "+7 999 123 45 67", "Zzcanary Qqperson"


def _canary_free(text: str) -> bool:
    return not any(c in text for c in (CANARY_EMAIL, CANARY_PHONE, CANARY_NAME, "CANARY0042"))


def _chain(exc: BaseException) -> str:
    """The exception's text and every exception chained to it (a traceback would print them all)."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts.append(str(seen))
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return "\n".join(parts)


def test_a_malformed_row_is_named_by_file_and_line_never_shown(export: Path, tmp_path: Path) -> None:
    bad = f'CANARY0042,{CANARY_EMAIL},"{CANARY_PHONE}",GB,L9,{CANARY_NAME}\n'  # one field too many
    (export / "customers.csv").write_text(CUSTOMERS + bad)
    with pytest.raises(InputDataError) as err:
        ingest(export, _mapping(), tmp_path / "home", now=NOW)
    message = str(err.value)
    assert "customers.csv" in message and "line 7 (6 fields, expected 5)" in message
    assert _canary_free(_chain(err.value))


def test_every_malformed_row_is_counted_and_the_first_ones_named(export: Path, tmp_path: Path) -> None:
    rows = "".join(f"c{i},x{i}@example.com,,GB,,extra\n" for i in range(10, 18))  # 8 rows, 6 fields each
    (export / "customers.csv").write_text(CUSTOMERS + rows)
    with pytest.raises(InputDataError, match=r"8 malformed row\(s\): line 7 .* and 3 more") as err:
        ingest(export, _mapping(), tmp_path / "home", now=NOW)
    assert "x10@example.com" not in str(err.value)


def test_a_headerless_file_is_not_quoted_in_the_missing_column_message(tmp_path: Path) -> None:
    # no header: pyarrow takes the first customer's row as the column names
    (tmp_path / "customers.csv").write_text(f"CANARY0042,{CANARY_EMAIL},{CANARY_NAME}\n")
    mapping = _mapping(tables={"customers": {"files": ["customers.csv"], "columns": {"customer_id": "id"}}})
    with pytest.raises(InputDataError, match=r"'id' named in the mapping .* not in the file's header") as err:
        ingest(tmp_path, mapping, tmp_path / "home", now=NOW)
    assert _canary_free(_chain(err.value))


def test_an_unreadable_file_names_the_problem_not_the_content(tmp_path: Path) -> None:
    (tmp_path / "customers.csv").write_bytes(b"customer_id,email\nc1,canary.7f3e@example.org\xff\xfe\n")
    mapping = _mapping(tables={"customers": {"files": ["customers.csv"]}})
    with pytest.raises(InputDataError, match="invalid UTF8 data") as err:
        ingest(tmp_path, mapping, tmp_path / "home", now=NOW)
    assert _canary_free(_chain(err.value))


def test_implausible_numbers_are_quarantined_with_the_column_named(export: Path, tmp_path: Path) -> None:
    (export / "lines.csv").write_text(
        "order_id,customer_id,ordered_at,currency,item_id,quantity,unit_price\n"
        "O1,c1,2024-05-01 10:00:00,GBP,A,1,2.5\n"
        "O2,c1,2024-05-02 10:00:00,GBP,A,1,1e20\n"
        "O3,c1,2024-05-03 10:00:00,GBP,A,1000000000000,2.5\n"
        "O4,c1,2024-05-04 10:00:00,GBP,B,1000,999999\n"  # large but inside the default bounds
    )
    result = ingest(export, _mapping(), tmp_path / "home", now=NOW)
    lines = result.report["tables"]["order_lines"]
    assert lines["quarantine_reasons"] == {"implausible_value": 2}
    quarantine = pd.read_parquet(result.path / QUARANTINE_FILE).set_index("source_row")
    assert quarantine.loc[2, "reasons"] == "implausible_value:unit_price"
    assert quarantine.loc[3, "reasons"] == "implausible_value:quantity"
    assert result.report["plausible_max"]["unit_price"] == 1e6
    published = pd.read_parquet(result.path / "order_lines.parquet")
    assert sorted(published["order_id"]) == ["O1", "O4"]

    tight = _mapping(plausible_max={"unit_price": 1000.0})  # the mapping's bound replaces the contract's
    again = ingest(export, tight, tmp_path / "home2", now=NOW)
    assert again.report["tables"]["order_lines"]["quarantine_reasons"] == {"implausible_value": 3}


def test_an_implausible_optional_number_is_cleared_and_the_row_kept(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("item_id,name,price\nA,Apple,2.5\nB,Bread,1e20\n")
    mapping = _mapping(tables={"items": {"files": ["items.csv"]}})
    result = ingest(tmp_path, mapping, tmp_path / "home", now=NOW)
    assert result.report["tables"]["items"]["reclassified_reasons"] == {"implausible_value": 1}
    items = pd.read_parquet(result.path / "items.parquet").set_index("item_id")
    assert items.loc["A", "price"] == 2.5 and pd.isna(items.loc["B", "price"])


@pytest.mark.parametrize("bounds", [{"unit_price": 0}, {"unit_price": float("inf")}, {"email": 5.0}])
def test_a_bad_plausibility_bound_is_a_mapping_error(bounds: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="plausible_max"):
        _mapping(plausible_max=bounds)


def _orders_export(folder: Path, orders: str) -> Mapping:
    folder.mkdir(exist_ok=True)
    (folder / "orders.csv").write_text(orders)
    lines = "order_id,item_id,quantity,unit_price\n" + "".join(f"O{i},A,1,2.0\n" for i in range(20))
    (folder / "lines.csv").write_text(lines)
    (folder / "events.csv").write_text(
        "event_id,session_id,event_type,occurred_at\n"
        + "".join(f"e{i},s{i},view,2024-01-01T00:00:00Z\n" for i in range(400))
    )
    return _mapping(
        max_quarantine_share=0.10,
        max_table_quarantine_share=0.5,
        tables={
            "orders": {"files": ["orders.csv"]},
            "order_lines": {"files": ["lines.csv"]},
            "web_events": {"files": ["events.csv"]},
        },
    )


def test_an_orders_file_with_only_its_header_fails_the_run(tmp_path: Path) -> None:
    # 20 orphan lines among 420 rows is under the overall 10%: the table's own loss must fail the run
    mapping = _orders_export(tmp_path / "x", "order_id,customer_id,ordered_at,currency\n")
    with pytest.raises(QuarantineThresholdError, match=r"order_lines: all 20 rows quarantined") as err:
        ingest(tmp_path / "x", mapping, tmp_path / "home", now=NOW)
    assert "no order line was published" in str(err.value)
    assert err.value.report["ok"] is False and not (tmp_path / "home" / INGESTED_DIR).exists()


def test_a_table_losing_most_of_its_rows_fails_though_the_overall_share_is_low(tmp_path: Path) -> None:
    headers = "order_id,customer_id,ordered_at,currency\n" + "".join(
        f"O{i},,2024-05-01T10:00:00Z,GBP\n" for i in range(8)
    )
    mapping = _orders_export(tmp_path / "x", headers)  # 12 of 20 lines lose their header: 60% > 50%
    with pytest.raises(QuarantineThresholdError, match=r"order_lines: 12 of 20 rows quarantined \(60\.0% > 50\.0%"):
        ingest(tmp_path / "x", mapping, tmp_path / "home", now=NOW)
    more = headers + "".join(f"O{i},,2024-05-01T10:00:00Z,GBP\n" for i in range(8, 14))  # 6 of 20: 30%
    result = ingest(_orders_export_same(tmp_path / "x", more), mapping, tmp_path / "home", now=NOW)
    assert result.report["ok"] and result.report["table_losses"] == []


def _orders_export_same(folder: Path, orders: str) -> Path:
    (folder / "orders.csv").write_text(orders)
    return folder


def test_a_table_that_keeps_none_of_its_rows_fails_whatever_the_thresholds(export: Path, tmp_path: Path) -> None:
    (tmp_path / "consents.csv").write_text("customer_id,channel,status,consented_at\nc1,email,opt_in,not a date\n")
    (export / "consents.csv").write_text((tmp_path / "consents.csv").read_text())
    tables = {**_mapping().model_dump()["tables"], "consents": {"files": ["consents.csv"]}}
    mapping = _mapping(tables=tables)  # both thresholds are 1.0
    with pytest.raises(QuarantineThresholdError, match=r"consents: all 1 rows quarantined"):
        ingest(export, mapping, tmp_path / "home", now=NOW)
