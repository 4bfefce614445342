"""A served world: the synthetic home (session fixture ``synth_home``) with churn and recs registered.

The churn models here are small LightGBM fits logged through the propensity bundle's own writer, as
``training/propensity.py`` logs its models (LightGBM flavour, typed ``kairos`` metadata, checksum tag,
aliases), so the lifecycle tests can register good and bad versions in seconds. The recs bundle is the real job's.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bundles import registry
from bundles.propensity import PropensityMeta, log_model
from bundles.value import ClvBundle
from features.store import latest_snapshot
from models.calibration import ProbabilityCalibrator
from models.churn import LightGBMClassifier
from models.population import Population
from serving.app import create_app
from serving.keys import hash_key
from serving.settings import ApiKeySpec, OpenEndpoint, Settings
from tests.conftest import SynthHome

KEYS = {
    "campaign": "k-campaign",
    "storefront": "k-storefront",
    "admin": "k-admin",
    "pii": "k-campaign-pii",
    "consent": "k-consent",
}
SCOPES = {
    "campaign": ["campaign"],
    "storefront": ["storefront"],
    "admin": ["admin"],
    "pii": ["campaign", "pii"],
    "consent": ["consent"],
}
FEATURES = ["recency_days", "orders_lifetime", "tenure_days", "views_30d"]


def headers(who: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[who]}


def api_keys(**rates: float) -> list[ApiKeySpec]:
    return [
        ApiKeySpec(name=who, sha256=hash_key(secret), scopes=frozenset(SCOPES[who]), rate_per_second=rates.get(who))
        for who, secret in KEYS.items()
    ]


def register_churn(
    uri: str,
    frame: pd.DataFrame,
    features: Sequence[str],
    seed: int = 0,
    name: str = "churn",
    population: dict[str, object] | None = None,
) -> registry.Registration:
    """Fit a small LightGBM on ``frame`` (label: recent buyers) and register it as ``name`` through the
    same bundle writer as ``training/propensity.py`` (:func:`bundles.propensity.log_model`)."""
    label = (frame["recency_days"].fillna(9999) > frame["recency_days"].median()).astype(int)
    x = frame[list(features)].astype(np.float32)
    model = LightGBMClassifier(seed=seed, n_estimators=20, n_jobs=1).fit(x, label)
    calibrator = ProbabilityCalibrator(method="platt", seed=seed).fit(model.predict_proba(x), label)
    meta = PropensityMeta(
        features=tuple(features),
        manifest={"definition_hash": "test"},
        target=name,
        description=f"test {name}",
        horizon_days=90,
        calibrator=calibrator.to_dict(),
        bands=(0.3, 0.6),
        base_rate=float(label.mean()),
        population=Population.from_dict(population) if population else None,
    )
    registry.ensure_experiment("serving-tests", uri)
    with registry.job_run(uri, "serving-tests", name) as job:
        mlflow.log_metrics({"holdout_roc_auc": 0.7 + seed / 100})
        info = log_model(model, meta, x.head(5))
        reg = registry.register_in_run(
            job, info.model_uri, name, metric_name="holdout_roc_auc", metric_value=0.0, extra_tags=meta.checksum_tags()
        )
    return reg


@dataclass(frozen=True)
class World:
    home: Path
    uri: str
    root: Path
    ids: list[str]  # source customer ids of the snapshot
    items: list[str]

    def settings(self, **overrides: object) -> Settings:
        base: dict[str, object] = {
            "data_home": self.home,
            "tracking_uri": self.uri,
            "model_cache_dir": self.root / "cache",
            "api_keys": api_keys(),
            # the tests read metrics and readiness' detail as the operator does; tests/serving/test_scopes.py
            # checks the production default (behind a key)
            "open_endpoints": frozenset(OpenEndpoint),
            "log_json": False,
            # only what the world registers (each absent model costs a registry call at start-up)
            "purchase_model": None,
            "engagement_models": [],
            "clv_model": None,
            "value_model": None,
            "sendtime_model": None,
            "offers_model": None,
        }
        return Settings(**(base | overrides))  # type: ignore[arg-type]

    def client(self, **overrides: object) -> TestClient:
        return TestClient(create_app(self.settings(**overrides)))

    @contextmanager
    def server(self, **overrides: object) -> Iterator[tuple[str, FastAPI]]:
        """A real uvicorn server on 127.0.0.1 (a free port) in a thread: its base URL and the app."""
        app = create_app(self.settings(**overrides))
        with live_server(app) as url:
            yield url, app


@contextmanager
def live_server(app: FastAPI, timeout_s: float = 120.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn over real HTTP on 127.0.0.1 until the block ends (lifespan included)."""
    port = closed_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="kairos-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def world(synth_home: SynthHome, tmp_path_factory: pytest.TempPathFactory) -> World:
    """churn v1 @champion (4 features), recs v1 @champion, on the synthetic home."""
    from training.recs import train_recs

    root = tmp_path_factory.mktemp("served")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    frame = latest_snapshot(synth_home.home).read()
    register_churn(uri, frame, FEATURES, seed=0)
    train_recs(synth_home.home, uri, test_days=60)
    ids = pd.read_parquet(synth_home.home / "ingested" / "identity_map.parquet")
    known = set(frame["customer_key"].astype(str))
    ids = ids[ids["customer_key"].astype(str).isin(known)]
    items = pd.read_parquet(synth_home.home / "ingested" / "items.parquet")["item_id"].astype(str).tolist()
    return World(synth_home.home, uri, root, ids["customer_id"].astype(str).tolist(), items)


def closed_port() -> int:
    """A local port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PURCHASE_FEATURES = ["orders_lifetime", "recency_days", "views_30d"]


def register_clv(uri: str, frame: pd.DataFrame, folder: Path) -> None:
    """A ``clv`` bundle written by its own writer, as ``training/value.py`` writes it (its values here are
    plain functions of the features: the test is about serving them, not about the BG/NBD fit)."""
    orders = frame["orders_lifetime"].fillna(0).to_numpy(np.float64)
    table = pd.DataFrame(
        {
            "customer_key": frame["customer_key"].astype(str),
            "p_alive": 1.0 / (1.0 + frame["recency_days"].fillna(999).to_numpy(np.float64) / 100.0),
            "expected_orders": orders / 2.0,
            "p_purchase": np.clip(orders / 10.0, 0, 1),
            "expected_order_value": np.full(len(frame), 40.0),
            "expected_spend": orders * 20.0,
            "next_order_days": np.where(orders > 0, 30.0, np.nan),
        }
    )
    ClvBundle.write(folder, {"r": 1.0}, table)
    with registry.job_run(uri, "serving-tests", "clv") as job:
        registry.log_and_register(job, folder, "clv", metadata={}, register=True, metric_name="none", metric_value=0.0)


@pytest.fixture(scope="session")
def decided(world: World) -> World:
    """The world plus purchase, clv, sendtime and offers registered (the real send-time and offers jobs)."""
    from training.offers import train_offers
    from training.sendtime import train_sendtime

    frame = latest_snapshot(world.home).read()
    register_churn(world.uri, frame, PURCHASE_FEATURES, seed=1, name="purchase")
    register_clv(world.uri, frame, world.root / "clv-bundle")
    train_sendtime(world.home, world.uri, test_days=60)
    train_offers(world.home, world.uri, compare_learners=False, caution=0.0, step_days=60)
    return world


ALL = {"purchase_model": "purchase", "clv_model": "clv", "sendtime_model": "sendtime", "offers_model": "offers"}
