"""The console's world: the served world with every decision model (``decided``), its churn champion's run
carrying the gains and calibration charts the training job draws (``training.plots``), and sign-in helpers."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from features.store import latest_snapshot
from serving.app import create_app
from tests.serving.conftest import ALL, KEYS, World

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="session")
def console_world(decided: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    """``decided`` plus plots on churn@champion's run (the test models are logged without them)."""
    from training import plots

    client = MlflowClient(tracking_uri=decided.uri)
    mv = client.get_model_version_by_alias("churn", "champion")
    names = {a.path for a in client.list_artifacts(mv.run_id, "plots")}
    if "plots/calibration.png" not in names:
        folder = tmp_path_factory.mktemp("console-plots")
        frame = latest_snapshot(decided.home).read()
        y = (frame["recency_days"].fillna(9999) > frame["recency_days"].median()).to_numpy(int)
        p = np.clip(frame["recency_days"].fillna(400).to_numpy(float) / 400.0, 0, 1)
        for path in (
            plots.calibration_curve(y, {"kairos": p}, folder / "calibration.png"),
            plots.gains_chart(y, {"kairos": p}, folder / "gains.png"),
        ):
            client.log_artifact(mv.run_id, str(path), "plots")
    return decided


def console_settings() -> dict[str, object]:
    return dict(ALL)


def sign_in(client: TestClient, who: str) -> None:
    """Sign ``client`` in with the world's key ``who`` (campaign, admin, pii, ...)."""
    page = client.get("/console/sign-in")
    token = CSRF.search(page.text)
    assert token is not None
    r = client.post(
        "/console/sign-in",
        data={"csrf_token": token.group(1), "api_key": KEYS[who], "next": "/console"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def csrf_of(client: TestClient) -> str:
    token = CSRF.search(client.get("/console/customers").text)
    assert token is not None
    return token.group(1)


@pytest.fixture(scope="module")
def console_app(console_world: World) -> Iterator[FastAPI]:
    """One started app (models loaded once); each test makes its own clients, so its own cookie jars."""
    app = create_app(console_world.settings(**console_settings()))
    with TestClient(app):
        yield app


def personal_values(world: World) -> pd.DataFrame:
    """The demo customers' e-mails, phones and names as ingested (what no page may show without pii)."""
    frame = pd.read_parquet(world.home / "ingested" / "customers.parquet")
    return frame[["customer_id", "email", "phone", "first_name", "last_name"]]
