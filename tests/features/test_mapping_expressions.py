"""Mapping expressions, lookups, optional prices, the export's clock and currency (issue 18).

Each bad mapping is checked for its one message naming where; each good one for the values it gives.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.errors import MappingError
from features.ingest import REPORT_FILE, ingest
from features.mapping import Mapping, load_mapping
from tests.conftest import ORII_SAMPLE

NOW = datetime(2026, 1, 1, tzinfo=UTC)

# A grocery till: sales_value is the line total, not a unit price; times are naive wall clock.
TILL = """basket,household,product,qty,sales_value,ts,campaign
B1,h1,P1,2,5.00,2017-03-12 02:30:00,
B1,h1,P2,1,1.25,2017-03-12 02:30:00,
B2,h2,P1,3,7.50,2017-03-13 18:05:00,
B3,h2,P3,4,2.00,2017-03-14 09:00:00,
"""

CAMPAIGNS = """campaign_id,household,campaign_type
K1,h1,A
K2,h2,B
K2,h1,B
"""

CAMPAIGN_DATES = """cid,start_date,end_date
K1,2017-02-01,2017-03-01
K2,2017-03-05,2017-04-01
"""


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def till_lines(**columns: str) -> dict[str, Any]:
    """The order-lines table of the test tills (``till.csv``), with ``columns`` mapped besides the ids."""
    return {
        "files": ["till.csv"],
        "columns": {
            "order_id": "basket",
            "customer_id": "household",
            "item_id": "product",
            "quantity": "qty",
            "ordered_at": "ts",
            **columns,
        },
    }


def _lines_mapping(**table: Any) -> dict[str, Any]:
    lines: dict[str, Any] = {
        **till_lines(),
        "expressions": {"unit_price": "CAST(sales_value AS DOUBLE) / NULLIF(CAST(qty AS DOUBLE), 0)"},
    }
    lines.update(table)
    return {"name": "till", "timezone": "floating", "currency": "USD", "tables": {"order_lines": lines}}


def _run(folder: Path, raw: dict[str, Any], home: Path) -> dict[str, Any]:
    result = ingest(folder, Mapping.model_validate(raw), home, now=NOW)
    return dict(result.report)


# --- derived columns ---------------------------------------------------------------------------------


def test_unit_price_expression_turns_line_totals_into_unit_prices(tmp_path: Path) -> None:
    folder = _write(tmp_path / "x", {"till.csv": TILL})
    report = _run(folder, _lines_mapping(), tmp_path / "home")
    lines = pd.read_parquet(tmp_path / "home" / "ingested" / "order_lines.parquet").sort_values(["order_id", "item_id"])
    assert lines["unit_price"].tolist() == [2.5, 1.25, 2.5, 0.5]
    orders = pd.read_parquet(tmp_path / "home" / "ingested" / "orders.parquet").set_index("order_id")
    # the order amount is the sum of the exported line totals, not quantity x line total
    assert orders["amount"].to_dict() == {"B1": 6.25, "B2": 7.5, "B3": 2.0}
    assert report["prices"] is True


def test_line_amount_gives_the_unit_price_and_a_zero_quantity_gives_none(tmp_path: Path) -> None:
    till = TILL + "B4,h1,P1,0,3.00,2017-03-15 10:00:00,\n"
    folder = _write(tmp_path / "x", {"till.csv": till})
    raw = _lines_mapping(expressions={}, columns={**_lines_mapping()["tables"]["order_lines"]["columns"]})
    raw["tables"]["order_lines"]["columns"]["line_amount"] = "sales_value"
    report = _run(folder, {**raw, "max_quarantine_share": 1.0, "max_table_quarantine_share": 1.0}, tmp_path / "h")
    lines = pd.read_parquet(tmp_path / "h" / "ingested" / "order_lines.parquet")
    assert sorted(lines["unit_price"].tolist()) == [0.5, 1.25, 2.5, 2.5]
    assert "line_amount" not in lines.columns
    assert report["tables"]["order_lines"]["quarantine_reasons"] == {"zero_quantity": 1}


def test_a_lookup_joins_campaign_dates_onto_its_members(tmp_path: Path) -> None:
    folder = _write(tmp_path / "x", {"till.csv": TILL, "campaigns.csv": CAMPAIGNS, "dates.csv": CAMPAIGN_DATES})
    raw = _lines_mapping()
    raw["tables"]["messages"] = {
        "files": ["campaigns.csv"],
        "columns": {"customer_id": "household", "campaign_id": "campaign_id"},
        "constants": {"channel": "email"},
        "lookups": {"campaign": {"files": ["dates.csv"], "key": "cid", "on": "campaign_id"}},
        "expressions": {
            "message_id": "campaign_id || ':' || household",
            "sent_at": "CAST(campaign.start_date AS TIMESTAMP)",
        },
    }
    _run(folder, raw, tmp_path / "h")
    messages = pd.read_parquet(tmp_path / "h" / "ingested" / "messages.parquet").sort_values("message_id")
    assert messages["message_id"].tolist() == ["K1:h1", "K2:h1", "K2:h2"]
    assert messages["sent_at"].dt.strftime("%Y-%m-%d").tolist() == ["2017-02-01", "2017-03-05", "2017-03-05"]


def test_expressions_run_on_a_connection_that_cannot_read_files(tmp_path: Path) -> None:
    """DuckDB evaluates the expressions with external access off and the setting locked."""
    import duckdb

    from features.expressions import _connection

    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n", encoding="utf-8")
    con, relation = _connection(pa.table({"x": ["1"]}), {})
    assert con.sql(f"SELECT x FROM {relation}").fetchall() == [("1",)]
    with pytest.raises(duckdb.PermissionException):
        con.sql(f"SELECT * FROM read_csv('{secret}')").fetchall()
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET enable_external_access = true")


# --- prices optional -----------------------------------------------------------------------------------


def test_basket_only_lines_ingest_without_prices_and_no_amount_is_invented(tmp_path: Path) -> None:
    folder = _write(tmp_path / "x", {"till.csv": TILL})
    report = _run(folder, {**_lines_mapping(expressions={}), "derive_items_from_lines": True}, tmp_path / "h")
    home = tmp_path / "h" / "ingested"
    assert report["prices"] is False
    assert pd.read_parquet(home / "order_lines.parquet")["unit_price"].isna().all()
    assert pd.read_parquet(home / "orders.parquet")["amount"].isna().all()
    assert pd.read_parquet(home / "items.parquet")["price"].isna().all()
    assert report["tables"]["order_lines"]["accepted"] == 4


# --- the export's clock and currency --------------------------------------------------------------------


def test_floating_clock_keeps_wall_clock_times_even_in_a_dst_gap(tmp_path: Path) -> None:
    """2017-03-12 02:30 does not exist in America/Chicago; as floating wall-clock time it is kept as is."""
    folder = _write(tmp_path / "x", {"till.csv": TILL})
    report = _run(folder, _lines_mapping(), tmp_path / "h")
    lines = pd.read_parquet(tmp_path / "h" / "ingested" / "order_lines.parquet")
    b1 = lines.loc[lines["order_id"] == "B1", "ordered_at"].iloc[0]
    assert (b1.hour, b1.minute, str(b1.tz)) == (2, 30, "UTC")
    assert report["tables"]["order_lines"]["quarantined"] == 0
    assert report["clock"] == {
        "timezone": "floating",
        "tables": {"order_lines": "floating"},
        "stored_as": "wall clock, labelled UTC",
        "floating_tables": ["order_lines"],
    }
    written = json.loads((tmp_path / "h" / "ingested" / REPORT_FILE).read_text(encoding="utf-8"))
    assert written["currency"] == "USD"


def test_the_same_stamp_in_a_dst_zone_is_quarantined(tmp_path: Path) -> None:
    """The contrast that makes the floating clock necessary."""
    folder = _write(tmp_path / "x", {"till.csv": TILL})
    raw = {**_lines_mapping(), "timezone": "America/Chicago", "max_quarantine_share": 1.0}
    raw["max_table_quarantine_share"] = 1.0
    report = _run(folder, raw, tmp_path / "h")
    assert report["tables"]["order_lines"]["quarantine_reasons"] == {"nonexistent_local_time": 2}


def test_floating_ignores_a_written_offset_and_keeps_the_digits(tmp_path: Path) -> None:
    till = TILL.replace("2017-03-13 18:05:00", "2017-03-13T18:05:00-05:00")
    folder = _write(tmp_path / "x", {"till.csv": till})
    _run(folder, _lines_mapping(), tmp_path / "h")
    lines = pd.read_parquet(tmp_path / "h" / "ingested" / "order_lines.parquet")
    b2 = lines.loc[lines["order_id"] == "B2", "ordered_at"].iloc[0]
    assert (b2.hour, b2.minute) == (18, 5)


def test_currency_of_the_export_fills_the_lines_and_is_reported(tmp_path: Path) -> None:
    folder = _write(tmp_path / "x", {"till.csv": TILL})
    report = _run(folder, _lines_mapping(), tmp_path / "h")
    lines = pd.read_parquet(tmp_path / "h" / "ingested" / "order_lines.parquet")
    assert set(lines["currency"]) == {"USD"}
    assert (report["currency"], report["currencies"]) == ("USD", {"USD": 3})


def test_without_a_declared_currency_the_report_names_the_most_frequent_one(tmp_path: Path) -> None:
    result = ingest(ORII_SAMPLE, load_mapping("online_retail_ii"), tmp_path / "h", now=NOW)
    assert result.report["currency"] == "GBP"
    assert result.report["clock"]["timezone"] == "Europe/London"


# --- bad mappings: one message naming where -----------------------------------------------------------


def test_unknown_column_in_an_expression_names_the_mapping_path_and_the_file(tmp_path: Path) -> None:
    folder = _write(tmp_path / "x", {"till.csv": TILL})
    raw = _lines_mapping(expressions={"unit_price": "sales_valu / NULLIF(qty, 0)"})
    with pytest.raises(MappingError) as err:
        _run(folder, raw, tmp_path / "h")
    assert str(err.value) == 'tables.order_lines.expressions.unit_price: unknown column "sales_valu" (not in till.csv)'


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("sales_value /", "not a valid expression: syntax error"),
        ("1; DROP TABLE x", "not one expression"),
        ("sales_value FROM other", "not one expression"),
        ("(SELECT max(qty) FROM x)", "a subquery is not allowed"),
        ("sum(qty) OVER ()", "a window function is not allowed"),
        ("campaign.start_date", 'unknown lookup "campaign"'),
    ],
)
def test_a_bad_expression_is_refused_at_load_time_naming_where(expression: str, problem: str) -> None:
    with pytest.raises(MappingError) as err:
        load_mapping_from(_lines_mapping(expressions={"unit_price": expression}))
    message = str(err.value)
    assert "tables.order_lines.expressions.unit_price: " + problem in message
    assert message.count("tables.") == 1  # one message, one place


def load_mapping_from(raw: dict[str, Any], tmp: Path | None = None) -> Mapping:
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        return load_mapping(path)


def test_an_expression_of_the_wrong_type_is_a_type_clash(tmp_path: Path) -> None:
    folder = _write(tmp_path / "x", {"till.csv": TILL})
    raw = _lines_mapping(expressions={"unit_price": "CAST(ts AS TIMESTAMP)"})
    with pytest.raises(MappingError) as err:
        _run(folder, raw, tmp_path / "h")
    assert str(err.value) == (
        "tables.order_lines.expressions.unit_price: type clash: the expression gives TIMESTAMP, "
        "unit_price needs a number"
    )


def test_an_expression_duckdb_cannot_bind_names_its_column(tmp_path: Path) -> None:
    folder = _write(tmp_path / "x", {"till.csv": TILL})
    raw = _lines_mapping(expressions={"unit_price": "no_such_function(sales_value)"})
    with pytest.raises(MappingError, match=r"^tables\.order_lines\.expressions\.unit_price: .*no_such_function"):
        _run(folder, raw, tmp_path / "h")


def test_a_typed_source_column_of_the_wrong_kind_is_a_type_clash(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    folder.mkdir()
    frame = pd.DataFrame(
        {"basket": ["B1"], "household": ["h1"], "product": ["P1"], "qty": [pd.Timestamp("2017-01-01")], "ts": ["x"]}
    )
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / "till.parquet")
    raw = _lines_mapping(files=["till.parquet"], expressions={})
    with pytest.raises(MappingError) as err:
        _run(folder, raw, tmp_path / "h")
    assert str(err.value) == (
        "tables.order_lines.columns.quantity: type clash: source column 'qty' holds timestamp values, "
        "quantity needs a whole number"
    )


def test_a_lookup_with_a_repeated_key_is_refused(tmp_path: Path) -> None:
    dates = CAMPAIGN_DATES + "K1,2017-05-01,2017-06-01\n"
    folder = _write(tmp_path / "x", {"till.csv": TILL, "dates.csv": dates})
    raw = _lines_mapping(
        lookups={"campaign": {"files": ["dates.csv"], "key": "cid", "on": "campaign"}},
        expressions={
            "unit_price": "CAST(sales_value AS DOUBLE)",
            "discount": "CASE WHEN campaign.cid IS NULL THEN 0 END",
        },
    )
    with pytest.raises(MappingError) as err:
        _run(folder, raw, tmp_path / "h")
    assert str(err.value) == (
        "tables.order_lines.lookups.campaign.key: 1 repeated value(s) of 'cid' in dates.csv; a lookup needs one row "
        "per key"
    )


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (
            {"name": "m", "tables": {"orders": {"files": ["o.csv"]}}},
            "tables.orders is given without tables.order_lines",
        ),
        (
            {"name": "m", "derive_customers_from_lines": True, "tables": {"items": {"files": ["i.csv"]}}},
            "derive_customers_from_lines: needs tables.order_lines",
        ),
        (
            {
                "name": "m",
                "tables": {"order_lines": {"files": ["l.csv"], "columns": {"unit_price": "p", "line_amount": "a"}}},
            },
            "tables.order_lines: map unit_price or line_amount, not both",
        ),
        (
            {"name": "m", "tables": {"order_lines": {"files": ["l.csv"], "expressions": {"colour": "1"}}}},
            "tables.order_lines.expressions.colour: not a column of order_lines",
        ),
        (
            {
                "name": "m",
                "tables": {
                    "order_lines": {
                        "files": ["l.csv"],
                        "columns": {"unit_price": "p"},
                        "expressions": {"unit_price": "1"},
                    }
                },
            },
            "tables.order_lines.expressions.unit_price: unit_price is also mapped under columns",
        ),
        (
            {
                "name": "m",
                "timezone": "floating",
                "tables": {"customers": {"files": ["c.csv"], "columns": {"timezone": "tz"}}},
            },
            "tables.customers: a per-customer timezone cannot be used with a floating clock",
        ),
        (
            {"name": "m", "currency": "DOLLARS", "tables": {"items": {"files": ["i.csv"]}}},
            "currency: 'DOLLARS' is not an ISO",
        ),
    ],
)
def test_each_bad_mapping_gets_one_message_naming_where(raw: dict[str, Any], where: str) -> None:
    with pytest.raises(MappingError) as err:
        load_mapping_from(raw)
    assert where in str(err.value)


# --- the existing exports ingest to identical tables ---------------------------------------------------

# Fingerprints of every published Parquet file, taken with the code of commit 18ae45b (before mapping
# expressions, optional prices, the floating clock and the export currency existed): the same inputs
# must still give byte-identical tables. Arrow IPC of each table, schema metadata dropped. Recompute
# only for a change meant to alter the published tables, and say so in its commit.
BEFORE = {
    "synthetic": {
        "adjustments.parquet": "b667b9e3b32b17452fafc93c4994e0911996d11b3ac24cff6388201c4fb3423b",
        "consents.parquet": "4fc7e63d948e4f547711664ae2e7fc19badaeee61c921e13f22a7e05397da5ae",
        "customers.parquet": "be93048b76e64df8397b2a900479808bbed1cd7e147e111c585b40c4d09ef8fa",
        "identity_map.parquet": "25e23f1c9582aa352e922f0ffffe8d981a10dc987dcbdfbf7019b0dcfbfec5d1",
        "identity_review.parquet": "b13a0b4e5b98a49b04286ed89e218d57bcfc08175d4f2a7cc8f4647cf06580ad",
        "items.parquet": "7e21fe4e1aceb09c3674029322df5529fff6deff901bd95a920acc8d4535d8ee",
        "messages.parquet": "8797e4de13884b5c100c7d04e29445da975c67f5ab49356ea146952e9b8d2aa0",
        "offers.parquet": "845cefaac0bbc6d0e4468b96a95d66da208307054a1043971ead34a6c7eaa287",
        "order_lines.parquet": "8969a5e27d74051ea36d07e9ec5624e5f74a1008521514a1915af09a8fa32748",
        "orders.parquet": "ab508932c130687096bb97ee997cb9acb8e44493b2a6caac8690f3ef0c89ccc7",
        "quarantine.parquet": "ff5dea90ff2ae9b8494812fbc9760847e742a976a0237784673dd5084df21f7c",
        "reclassified.parquet": "cc96536adb9a8ccc445c8881c725a89dc51148f5ea913a3eb1f6c36ec4dca3d2",
        "returns.parquet": "13646308ce8d07257519564819b0ed1e2ae620302646b050e70fd0f726c53a84",
        "web_events.parquet": "153151b9ace0414a616aeee502428b387040c6317eb8f17980c05f49bffe4fa9",
    },
    "online_retail_ii": {
        "adjustments.parquet": "0e4f5e7a875ff9c08f6aee31848c4f7c1e73906d26fa883b0c7b8c15436471bc",
        "customers.parquet": "e0e61c06d31ca935b182a711d5be121a49c837f0925242a3bece65729c51691e",
        "identity_map.parquet": "7e6278cea93d75025d578c6ebd3164aada0a5bdaf6af433beb5de8ca752b7662",
        "identity_review.parquet": "26743834b7ad41cd5ba27eb91ab95af76132bc30c9a40c03d4f6e17683516232",
        "items.parquet": "482839966fd22f8df98a910a64408503afc5d0cbd9985f17d005dba2bf9fd2c3",
        "order_lines.parquet": "73dcf119cbc69d6c529cee25d8c539b10b7284ba33fbba72af5d98a7b5222de6",
        "orders.parquet": "6a825df8e6753c4b418e8cf497309cb28a1d7d44749c307ecf3d2ef7b9fc2d4f",
        "quarantine.parquet": "45708abb1b22d6690aa13a3064ea56b8132fdf6e0a3fb9fad025ccbfbc533b14",
        "reclassified.parquet": "b4839fa11124bc9b43d07109aa98efba633fbdb7af44bc308c15f1720a3a45fb",
        "returns.parquet": "071837424618c2cde4e3dc86a2adc906fac3bd7e9338b9b6e5adee13c3a47340",
    },
}


def _fingerprints(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(path).replace_schema_metadata(None).combine_chunks()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        out[path.name] = hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()
    return out


def test_online_retail_ii_sample_ingests_to_the_same_tables_as_before(tmp_path: Path) -> None:
    result = ingest(ORII_SAMPLE, load_mapping("online_retail_ii"), tmp_path / "h", now=NOW)
    assert _fingerprints(result.path) == BEFORE["online_retail_ii"]


def test_synthetic_world_ingests_to_the_same_tables_as_before(tmp_path: Path) -> None:
    from synth import generate_world

    generate_world(300, 7, tmp_path / "raw")
    result = ingest(tmp_path / "raw", load_mapping("synthetic"), tmp_path / "h", now=NOW)
    assert _fingerprints(result.path) == BEFORE["synthetic"]


def test_a_price_less_export_builds_a_feature_snapshot(tmp_path: Path) -> None:
    from features.store import build_snapshot

    folder = _write(tmp_path / "x", {"till.csv": TILL})
    raw = {**_lines_mapping(expressions={}), "derive_items_from_lines": True, "derive_customers_from_lines": True}
    _run(folder, raw, tmp_path / "h")
    snap = build_snapshot(tmp_path / "h")
    frame = pd.read_parquet(snap.path / "features.parquet")
    assert len(frame) == 2  # h1 and h2
    assert sorted(frame["orders_lifetime"]) == [1.0, 2.0]


def test_rows_differing_only_in_an_expressions_input_are_not_duplicates(tmp_path: Path) -> None:
    till = "basket,household,product,qty,sales_value,ts,a,b\n"
    till += "B1,h1,P1,1,2.00,2017-03-12 10:00:00,1,2\nB1,h1,P1,1,2.00,2017-03-12 10:00:00,2,1\n"
    till += "B1,h1,P1,1,2.00,2017-03-12 10:00:00,2,1\n"  # an exact copy of the line above
    folder = _write(tmp_path / "x", {"till.csv": till})
    expressions = {"unit_price": "CAST(sales_value AS DOUBLE)", "discount": "CAST(a AS INT) + CAST(b AS INT)"}
    report = _run(folder, {**_lines_mapping(expressions=expressions), "max_quarantine_share": 1.0}, tmp_path / "h")
    assert report["tables"]["order_lines"]["accepted"] == 2
    assert report["tables"]["order_lines"]["quarantine_reasons"] == {"duplicate_row": 1}


def test_baskets_without_customers_or_prices_ingest(tmp_path: Path) -> None:
    """A basket-only export: order, item, quantity and time; no customer, no price."""
    baskets = (
        "basket,product,qty,ts\nB1,P1,2,2017-03-12 10:00:00\nB1,P2,1,2017-03-12 10:00:00\nB2,P1,1,2017-03-13 09:00:00\n"
    )
    folder = _write(tmp_path / "x", {"baskets.csv": baskets})
    raw = {
        "name": "baskets",
        "timezone": "floating",
        "currency": "EUR",
        "derive_items_from_lines": True,
        "tables": {
            "order_lines": {
                "files": ["baskets.csv"],
                "columns": {"order_id": "basket", "item_id": "product", "quantity": "qty", "ordered_at": "ts"},
            }
        },
    }
    report = _run(folder, raw, tmp_path / "h")
    assert (report["prices"], report["anonymous_order_lines"], report["published"]["orders"]) == (False, 3, 2)
    lines = pd.read_parquet(tmp_path / "h" / "ingested" / "order_lines.parquet")
    assert lines["customer_id"].isna().all() and lines["unit_price"].isna().all()
