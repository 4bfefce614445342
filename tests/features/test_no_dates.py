"""An export without order times (issue 18): accepted only when the mapping declares ``dates: false``,
never given invented times, and every job built on time refuses it in one line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from cli.main import app
from features.errors import InputDataError, NoDatesError
from features.ingest import REPORT_FILE, export_has_dates, ingest, require_dates
from features.mapping import Mapping

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BASKETS = "basket,household,product,qty\nB1,h1,P1,2\nB1,h1,P2,1\nB2,h2,P1,1\nB3,,P3,4\n"


def _mapping(**top: Any) -> dict[str, Any]:
    return {
        "name": "undated",
        "currency": "EUR",
        "derive_items_from_lines": True,
        "derive_customers_from_lines": True,
        "tables": {
            "order_lines": {
                "files": ["baskets.csv"],
                "columns": {"order_id": "basket", "customer_id": "household", "item_id": "product", "quantity": "qty"},
            }
        },
        **top,
    }


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "baskets.csv").write_text(BASKETS, encoding="utf-8")
    return folder


def test_lines_without_times_ingest_only_when_the_mapping_says_dates_false(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    with pytest.raises(InputDataError, match=r"^tables\.order_lines: required column\(s\) ordered_at are neither"):
        ingest(folder, Mapping.model_validate(_mapping()), tmp_path / "a", now=NOW)
    result = ingest(folder, Mapping.model_validate(_mapping(dates=False)), tmp_path / "h", now=NOW)
    assert result.report["dates"] is False
    assert result.report["published"]["order_lines"] == 4 and result.report["published"]["orders"] == 3
    for table in ("orders", "order_lines"):
        assert pd.read_parquet(tmp_path / "h" / "ingested" / f"{table}.parquet")["ordered_at"].isna().all()
    assert not export_has_dates(tmp_path / "h")
    with pytest.raises(NoDatesError, match=r"^kairos doctor needs order times and this export has none"):
        require_dates(tmp_path / "h", "kairos doctor")


def test_a_dated_export_reports_dates_true(tmp_path: Path) -> None:
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "baskets.csv").write_text("basket,product,qty,ts\nB1,P1,1,2017-03-12 10:00:00\n", encoding="utf-8")
    raw = _mapping()
    raw["tables"]["order_lines"]["columns"] = {"order_id": "basket", "item_id": "product", "quantity": "qty"}
    raw["tables"]["order_lines"]["columns"]["ordered_at"] = "ts"
    raw["derive_customers_from_lines"] = False
    result = ingest(folder, Mapping.model_validate(raw), tmp_path / "h", now=NOW)
    assert result.report["dates"] is True and export_has_dates(tmp_path / "h")
    require_dates(tmp_path / "h", "kairos doctor")  # passes


def test_dates_false_with_a_mapped_order_time_is_refused_naming_where() -> None:
    raw = _mapping(dates=False)
    raw["tables"]["order_lines"]["columns"]["ordered_at"] = "ts"
    with pytest.raises(
        ValidationError, match=r"tables\.order_lines: maps ordered_at while the mapping says dates: false"
    ):
        Mapping.model_validate(raw)


def test_every_job_built_on_time_refuses_an_undated_export_in_one_line(tmp_path: Path) -> None:
    ingest(_folder(tmp_path), Mapping.model_validate(_mapping(dates=False)), tmp_path / "h", now=NOW)
    assert json.loads((tmp_path / "h" / "ingested" / REPORT_FILE).read_text())["dates"] is False
    data = ["--data", str(tmp_path / "h"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    commands = {
        "kairos features build": ["features", "build", "--data", str(tmp_path / "h")],
        "kairos train churn": ["train", "churn", *data],
        "kairos train purchase": ["train", "purchase", *data],
        "kairos train value": ["train", "value", *data],
        "kairos train sendtime": ["train", "sendtime", *data],
        "kairos train offers": ["train", "offers", *data],
        "kairos train all": ["train", "all", *data],
        "kairos doctor": ["doctor", "--data", str(tmp_path / "h")],
        "kairos backtest": ["backtest", "churn", "--as-of", "2017-06-01", *data],
        "kairos score": ["score", "--all", *data],
    }
    runner = CliRunner()
    for job, args in commands.items():
        result = runner.invoke(app, args)
        said = " ".join(result.output.split())
        assert result.exit_code == 2, (job, result.output)
        assert said.startswith(f"error: {job} needs order times and this export has none"), (job, said)
        assert said.endswith("(evaluated on a random split of baskets)"), (job, said)


def test_mapping_draft_proposes_dates_false_and_check_passes_without_a_time(tmp_path: Path) -> None:
    from features.mapcheck import check_mapping, draft_mapping

    named = tmp_path / "named"
    named.mkdir()
    (named / "lines.csv").write_text(
        "order_id,customer_id,item_id,quantity\nB1,h1,P1,2\nB2,h2,P1,1\n", encoding="utf-8"
    )
    draft = draft_mapping(named)
    assert draft.mapping["dates"] is False and Mapping.model_validate(draft.mapping).dates is False
    assert any(w.startswith("dates: false (no order time found)") for w in draft.warnings)
    folder = _folder(tmp_path)
    checked = check_mapping(folder, Mapping.model_validate(_mapping(dates=False)))
    assert checked.ok and checked.tables[0].missing_required == [], checked
    dated = check_mapping(folder, Mapping.model_validate(_mapping()))
    assert dated.tables[0].missing_required == ["ordered_at"]
