"""`kairos mapping check` and `kairos mapping draft`: before any ingest, per table, named problems."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from features.ingest import ingest
from features.mapcheck import check_mapping, draft_mapping
from features.mapping import Mapping, load_mapping
from tests.conftest import ORII_SAMPLE

DATA = Path(__file__).resolve().parents[1] / "data"
CJ = DATA / "complete_journey"
CDNOW = DATA / "cdnow_master"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
runner = CliRunner()


@pytest.mark.parametrize(
    ("name", "folder"), [("complete_journey", CJ), ("cdnow", CDNOW), ("online_retail_ii", ORII_SAMPLE)]
)
def test_every_shipped_mapping_fits_its_sample(name: str, folder: Path) -> None:
    result = check_mapping(folder, load_mapping(name))
    assert result.ok, [p for t in result.tables for p in t.problems] + result.problems


def test_check_says_what_maps_where() -> None:
    result = check_mapping(CJ, load_mapping("complete_journey"))
    lines = next(t for t in result.tables if t.table == "order_lines")
    sources = {c.column: c.source for c in lines.columns}
    assert sources["order_id"] == "column 'basket_id'"
    assert sources["unit_price"] == "derived: line_amount / quantity"
    assert sources["currency"] == "constant 'USD'"
    assert sources["discount"].startswith("expression ")
    assert "week" in lines.unused


def _broken(**order_lines: Any) -> Mapping:
    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "features/mappings/complete_journey.yaml").read_text())
    raw["tables"]["order_lines"].update(order_lines)
    return Mapping.model_validate(raw)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"expressions": {"discount": "retail_disc + coupon_dis"}},
            'tables.order_lines.expressions.discount: unknown column "coupon_dis" (not in transactions.parquet)',
        ),
        (
            {"expressions": {"discount": "transaction_timestamp"}},
            "tables.order_lines.expressions.discount: type clash: the expression gives TIMESTAMP",
        ),
        (
            {"columns": {"order_id": "basket_id", "ordered_at": "transaction_timestamp", "line_amount": "sales_value"}},
            "tables.order_lines: required column item_id is not mapped",
        ),
        ({"files": ["nope.parquet"]}, "tables.order_lines: no file matches 'nope.parquet'"),
    ],
)
def test_check_names_each_problem_under_its_table(change: dict[str, Any], problem: str) -> None:
    result = check_mapping(CJ, _broken(**change))
    lines = next(t for t in result.tables if t.table == "order_lines")
    assert not result.ok
    assert any(p.startswith(problem) for p in lines.problems), lines.problems
    assert all(not t.problems for t in result.tables if t.table != "order_lines")


def test_draft_of_complete_journey_edited_for_its_currency_ingests(tmp_path: Path) -> None:
    draft = draft_mapping(CJ)
    tables = draft.mapping["tables"]
    assert set(tables) == {"order_lines", "items", "customers", "campaigns", "exposures", "coupons", "redemptions"}
    assert tables["order_lines"]["columns"]["line_amount"] == "sales_value"
    assert draft.mapping["timezone"] == "floating"
    assert tables["customers"]["attributes"]["age"]["type"] == "bands"
    assert any(w.startswith("currency:") for w in draft.warnings)
    edited = {**draft.mapping, "currency": "USD"}  # the one edit the draft asks for
    mapping = Mapping.model_validate(edited)
    assert check_mapping(CJ, mapping).ok
    result = ingest(CJ, mapping, tmp_path / "h", now=NOW)
    assert result.report["published"]["exposures"] > 0
    assert result.report["prices"] is True


def test_draft_reads_the_cdnow_layout_and_proposes_an_order_per_customer_and_day(tmp_path: Path) -> None:
    draft = draft_mapping(CDNOW)
    lines = draft.mapping["tables"]["order_lines"]
    assert lines["text_format"] == {"delimiter": "whitespace"}
    assert lines["timestamp_format"] == "%Y%m%d"
    assert "order_id" in lines["expressions"]
    mapping = Mapping.model_validate({**draft.mapping, "currency": "USD"})
    assert ingest(CDNOW, mapping, tmp_path / "h", now=NOW).report["published"]["order_lines"] > 0


def test_cli_mapping_check_prints_per_table_and_fails_on_a_problem(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["mapping", "check", "--mapping", "complete_journey", "--input", str(CJ)])
    assert ok.exit_code == 0, ok.output
    assert "derived: line_amount / quantity" in ok.output
    bad = tmp_path / "bad.yaml"
    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "features/mappings/complete_journey.yaml").read_text())
    raw["tables"]["order_lines"]["expressions"]["discount"] = "retail_dsc"
    bad.write_text(yaml.safe_dump(raw), encoding="utf-8")
    failed = runner.invoke(app, ["mapping", "check", "--mapping", str(bad), "--input", str(CJ)])
    assert failed.exit_code == 2
    assert 'unknown column "retail_dsc"' in " ".join(failed.output.split())


def test_cli_mapping_draft_writes_yaml_that_loads_after_the_edit(tmp_path: Path) -> None:
    out = tmp_path / "draft.yaml"
    result = runner.invoke(app, ["mapping", "draft", "--input", str(CDNOW), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# warning: ")
    out.write_text(text + "currency: USD\n", encoding="utf-8")
    assert load_mapping(out).currency == "USD"
