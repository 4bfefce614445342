"""`kairos campaign plan|report` and `kairos lookalike` on the small synthetic world: the files they write,
and a bad campaign or seed refused with the field named."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from cli.main import app
from models.decisioning.offers import EXAMPLE_CATALOGUE
from tests.conftest import SynthHome

runner = CliRunner()
WEEK = ["--starts-at", "2026-01-10T09:00Z", "--ends-at", "2026-01-17T09:00Z"]


def test_plan_writes_items_and_totals_a_campaign_engine_imports(synth_home: SynthHome, tmp_path: Path) -> None:
    ids = pd.read_parquet(synth_home.home / "ingested" / "identity_map.parquet")["customer_id"].astype(str)
    (tmp_path / "ids.txt").write_text("\n".join([*ids.head(200), "no-such-id"]), encoding="utf-8")
    args = ["campaign", "plan", "--catalogue", str(EXAMPLE_CATALOGUE), "--channels", "sms", *WEEK]
    args += ["--customers", str(tmp_path / "ids.txt"), "--out", str(tmp_path / "plan"), "--format", "parquet"]
    result = runner.invoke(app, [*args, "--data", str(synth_home.home)])
    assert result.exit_code == 0, result.output
    items = pd.read_parquet(tmp_path / "plan" / "plan.parquet")
    totals = json.loads((tmp_path / "plan" / "plan.json").read_text(encoding="utf-8"))
    assert set(items.loc[items["send"], "channel"]) <= {"sms"} and totals["planned_sends"] == int(items["send"].sum())
    assert totals["unknown_customer_ids"] == ["no-such-id"]


def test_a_bad_campaign_is_refused_naming_the_field(synth_home: SynthHome, tmp_path: Path) -> None:
    args = ["campaign", "plan", "--catalogue", str(EXAMPLE_CATALOGUE), "--channels", "fax", *WEEK]
    result = runner.invoke(app, [*args, "--out", str(tmp_path), "--data", str(synth_home.home)])
    assert result.exit_code == 2 and "channels" in result.output
    assert not (tmp_path / "plan.csv").exists()


def test_report_writes_a_page_and_lookalike_refuses_an_unknown_seed(synth_home: SynthHome, tmp_path: Path) -> None:
    messages = pd.read_parquet(synth_home.home / "ingested" / "messages.parquet", columns=["campaign_id"])
    first = sorted(messages["campaign_id"].dropna().unique())[0]
    args = ["campaign", "report", "--out", str(tmp_path / "r"), "--campaign", first]
    result = runner.invoke(app, [*args, "--data", str(synth_home.home)])
    assert result.exit_code == 0, result.output
    assert "<svg" in (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))["rows"]
    (tmp_path / "seed.txt").write_text("nobody\nnone\n", encoding="utf-8")
    args = ["lookalike", "--seed", str(tmp_path / "seed.txt"), "--out", str(tmp_path / "l.csv")]
    result = runner.invoke(app, [*args, "--data", str(synth_home.home)])
    assert result.exit_code == 2 and "at least 2" in result.output
