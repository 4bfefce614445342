"""Champion/challenger by hand: promote and roll back, every move recorded on the versions."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from bundles import registry
from bundles.errors import ModelNotFoundError
from cli.main import app


def _register(uri: str, folder: Path, value: float) -> registry.Registration:
    folder.mkdir()
    (folder / "params.json").write_text(json.dumps({"value": value}))
    client = registry.configure(uri)
    with mlflow.start_run(experiment_id=registry.ensure_experiment("kairos-test-promote", uri)):
        info = registry.log_bundle(folder, "m")
    return registry.register_bundle(client, info.model_uri, "m", metric_name="auc", metric_value=value)


def _champion(uri: str) -> str:
    return str(MlflowClient(tracking_uri=uri).get_model_version_by_alias("m", "champion").version)


def test_promote_and_rollback(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert _register(uri, tmp_path / "a", 0.70).alias == "champion"
    assert _register(uri, tmp_path / "b", 0.80).alias == "champion"  # better: takes over from v1
    assert _register(uri, tmp_path / "c", 0.75).alias == "challenger"
    assert _champion(uri) == "2"

    back = registry.rollback(uri, "m")
    assert (back.version, _champion(uri)) == ("1", "1")
    with pytest.raises(ModelNotFoundError, match="nothing to roll back"):
        registry.rollback(uri, "m")  # v1 replaced no earlier champion

    result = CliRunner().invoke(app, ["promote", "m", "3", "--tracking-uri", uri, "--kind", "bundle"])
    assert result.exit_code == 0, result.output
    assert _champion(uri) == "3"
    decision = MlflowClient(tracking_uri=uri).get_model_version("m", "3").tags[registry.TAG_DECISION]
    assert decision == "champion: promoted by hand (was v1)"
    result = CliRunner().invoke(app, ["rollback", "m", "--tracking-uri", uri, "--kind", "bundle"])
    assert result.exit_code == 0 and _champion(uri) == "1"

    missing = CliRunner().invoke(app, ["promote", "m", "99", "--tracking-uri", uri, "--kind", "bundle"])
    assert missing.exit_code == 2 and "no version 99" in missing.output


def test_promote_verifies_a_folder_bundle_file_by_file(tmp_path: Path) -> None:
    """Issue 17.6: a bundle with a file altered after registration is refused; the alias stays."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _register(uri, tmp_path / "a", 0.70)
    _register(uri, tmp_path / "b", 0.60)
    source = MlflowClient(tracking_uri=uri).get_model_version_download_uri("m", "2").removeprefix("file://")
    (Path(source) / registry.BUNDLE_DIR / "params.json").write_text(json.dumps({"value": 0.99}))
    result = CliRunner().invoke(app, ["promote", "m", "2", "--tracking-uri", uri, "--kind", "bundle"])
    assert result.exit_code == 2 and "altered since registration" in " ".join(result.output.split())
    assert _champion(uri) == "1"
    wrong = CliRunner().invoke(app, ["promote", "m", "1", "--tracking-uri", uri, "--kind", "nonsense"])
    assert wrong.exit_code == 2 and "--kind must be one of" in wrong.output
