"""Segment settings and your own segments from a YAML file: `kairos features build --segments FILE`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from features.ingest import ingest
from features.mapping import Mapping
from features.segments import SegmentConfig, SegmentInputError, load_segment_config, with_band_positions
from tests.features.test_customer_attributes import AGE, DEMOGRAPHICS, NOW, TILL_3, _mapping
from tests.features.test_mapping_expressions import _write

runner = CliRunner()


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "segments.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_file_sets_thresholds_and_rules(tmp_path: Path) -> None:
    config = load_segment_config(
        _file(tmp_path, "high_value_share: 0.1\nrules:\n  older: \"attr_age_band >= '35-44'\"\n")
    )
    assert config.high_value_share == 0.1 and config.rules == {"older": "attr_age_band >= '35-44'"}
    assert with_band_positions(config, {"attr_age_band": AGE}).rules == {"older": "attr_age_band >= 3"}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("high_value_shar: 0.1\n", "high_value_shar"),
        ("high_value_share: 2\n", "high_value_share"),
        ("rules:\n  Older: 'orders_lifetime > 1'\n", "rules.Older"),
        ("rules:\n  older: 'orders_lifetime >'\n", "rules.older"),
        ("- 1\n- 2\n", "top level"),
        ("rules: [\n", "not valid YAML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_setting(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(SegmentInputError, match=named.replace(".", r"\.")):
        load_segment_config(_file(tmp_path, text))


def test_a_band_the_attribute_lacks_is_named_with_the_rule() -> None:
    config = SegmentConfig(rules={"older": "attr_age_band >= '35-45'"})
    with pytest.raises(SegmentInputError, match="older"):
        with_band_positions(config, {"attr_age_band": AGE})


def test_features_build_applies_the_files_rules_in_the_datas_band_order(tmp_path: Path) -> None:
    folder = _write(tmp_path / "x", {"till.csv": TILL_3, "demographics.csv": DEMOGRAPHICS})
    home = tmp_path / "home"
    ingest(folder, Mapping.model_validate(_mapping()), home, now=NOW)
    rules = _file(tmp_path, "rules:\n  older: \"attr_age_band >= '35-44'\"\n  young: \"attr_age_band == '25-34'\"\n")
    result = runner.invoke(app, ["features", "build", "--data", str(home), "--segments", str(rules)])
    assert result.exit_code == 0, result.output
    snapshot = next((home / "snapshots").iterdir())
    segments = pd.read_parquet(snapshot / "segments.parquet")
    ids = pd.read_parquet(home / "ingested" / "identity_map.parquet").set_index("customer_key")["customer_id"]
    by_id = segments.set_index(segments["customer_key"].map(ids)).sort_index()
    # h1 25-34, h2 65+, h3 and h4 no age band: only h2 is 35-44 or older, only h1 is 25-34
    assert by_id["rule_older"].to_dict() == {"h1": False, "h2": True, "h3": False, "h4": False}
    assert by_id["rule_young"].to_dict() == {"h1": True, "h2": False, "h3": False, "h4": False}
    manifest = json.loads((snapshot / "manifest.json").read_text(encoding="utf-8"))
    recorded = manifest["segments"]["config"]["rules"]
    assert recorded == {"older": "attr_age_band >= 3", "young": "attr_age_band == '25-34'"}


def test_features_build_stops_on_a_bad_file_and_names_it(tmp_path: Path) -> None:
    folder = _write(tmp_path / "x", {"till.csv": TILL_3, "demographics.csv": DEMOGRAPHICS})
    home = tmp_path / "home"
    ingest(folder, Mapping.model_validate(_mapping()), home, now=NOW)
    bad = _file(tmp_path, 'rules:\n  older: "attr_shoe_size >= 3"\n')
    result = runner.invoke(app, ["features", "build", "--data", str(home), "--segments", str(bad)])
    assert result.exit_code != 0
    assert "older" in result.output and "attr_shoe_size" in result.output
    assert not (home / "snapshots").exists() or not any((home / "snapshots").iterdir())
