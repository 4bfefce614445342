"""`make demo`'s own commands, on a small synthetic world, then the API through TestClient."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cli.main import app
from serving.app import create_app
from serving.settings import Settings

runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_demo_commands_build_a_served_model(tmp_path: Path) -> None:
    raw, home, uri = tmp_path / "raw", tmp_path / "data", f"sqlite:///{tmp_path / 'mlflow.db'}"
    _run("synth", "--customers", "1500", "--seed", "7", "--out", str(raw))
    _run("ingest", "--dev", "--input", str(raw), "--mapping", "synthetic", "--out", str(home))
    _run("features", "build", "--data", str(home))
    out = _run("train", "churn", "--data", str(home), "--tracking-uri", uri)
    assert "@champion" in out

    # the true identities: a primary record and its e-mail-variant duplicate resolve to one customer
    truth = pd.read_parquet(raw / "truth" / "identities.parquet")
    variant = truth.loc[truth["link_type"] == "email_variant"].iloc[0]
    primary = truth.loc[(truth["person_id"] == variant["person_id"]) & truth["is_primary"], "customer_id"].iloc[0]
    pair = [primary, variant["customer_id"]]

    settings = Settings(  # development, as `make demo` serves: the demo key
        environment="development", data_home=home, tracking_uri=uri, model_cache_dir=tmp_path / "cache", recs_model=None
    )
    with TestClient(create_app(settings), headers={"X-API-Key": "kairos-demo-key"}) as client:
        assert client.get("/health/ready").status_code == 200
        items = client.post("/v1/scores", json={"customer_ids": [*pair[:2], "nobody"]}).json()["items"]
    assert [i["status"] for i in items] == ["ok", "ok", "unknown_customer"]
    assert items[0]["customer_key"] == items[1]["customer_key"]
    assert items[0]["probabilities"]["churn"] == items[1]["probabilities"]["churn"]
