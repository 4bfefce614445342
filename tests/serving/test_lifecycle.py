"""Model lifecycle: bad candidates never replace the serving bundle, the disk cache covers a registry
outage, readiness tells the truth, and moving @champion under load fails no request."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from bundles import registry
from features.io import sha256_file
from features.store import latest_snapshot
from tests.figures import SecurityFigures
from tests.serving.conftest import FEATURES, World, closed_port, headers, register_churn


@dataclass(frozen=True)
class Lab:
    uri: str
    cache: Path


@pytest.fixture()
def lab(world: World, tmp_path: Path) -> Lab:
    """A registry of our own (a copy of the world's), so aliases can move without touching other tests."""
    shutil.copy(world.root / "mlflow.db", tmp_path / "mlflow.db")
    return Lab(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "cache")


def _model_file(uri: str, version: str) -> Path:
    source = MlflowClient(tracking_uri=uri).get_model_version_download_uri("churn", version)
    return Path(source.removeprefix("file://")) / registry.MODEL_FILE


def _champion(uri: str, version: str) -> None:
    MlflowClient(tracking_uri=uri).set_registered_model_alias("churn", "champion", version)


def _scored_by(client: object, ids: list[str]) -> str:
    r = client.post("/v1/scores", json={"customer_ids": ids}, headers=headers("campaign"))  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    return str(r.json()["models"][0]["version"])


def test_bad_candidates_never_replace_the_serving_bundle(world: World, lab: Lab) -> None:
    frame = latest_snapshot(world.home).read()
    frame["no_such_feature"] = 1.0
    checksum = register_churn(lab.uri, frame, FEATURES, seed=1).version
    _model_file(lab.uri, checksum).write_bytes(_model_file(lab.uri, checksum).read_bytes().replace(b"tree", b"tres", 1))
    truncated = register_churn(lab.uri, frame, FEATURES, seed=2).version
    path = _model_file(lab.uri, truncated)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    MlflowClient(tracking_uri=lab.uri).set_model_version_tag(
        "churn", truncated, registry.TAG_SHA256, sha256_file(path)
    )  # a file truncated before registration: its checksum matches, it still must not load
    missing = register_churn(lab.uri, frame, [*FEATURES, "no_such_feature"], seed=3).version
    _champion(lab.uri, "1")
    with world.client(tracking_uri=lab.uri, model_cache_dir=lab.cache) as client:
        assert _scored_by(client, world.ids[:3]) == "1"
        for bad, why in ((checksum, "checksum mismatch"), (truncated, "does not load"), (missing, "no_such_feature")):
            _champion(lab.uri, bad)
            r = client.post("/v1/models/reload", json={"models": ["churn"]}, headers=headers("admin")).json()
            outcome = r["outcomes"][0]
            assert outcome["outcome"] == "failed" and why in outcome["detail"], outcome
            assert outcome["version"] == "1" and _scored_by(client, world.ids[:3]) == "1"
            assert client.get("/health/ready").status_code == 200
            assert r["models"]["churn"]["last_error"]
        metrics = client.get("/metrics").text
    assert 'kairos_model_reload_total{model="churn",outcome="failed"} 3.0' in metrics


def test_the_disk_cache_covers_a_registry_outage_and_is_verified(world: World, lab: Lab) -> None:
    with world.client(tracking_uri=lab.uri, model_cache_dir=lab.cache) as client:
        assert client.get("/health/ready").status_code == 200
    down = f"http://127.0.0.1:{closed_port()}"
    with world.client(tracking_uri=down, model_cache_dir=lab.cache) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["detail"]["models"]["churn"]["source"] == "disk_cache"
        assert _scored_by(client, world.ids[:3]) == "1"
        assert (
            client.post(
                "/v1/recommendations/cart", json={"cart": [world.items[0]]}, headers=headers("admin")
            ).status_code
            == 200
        )
        # the registry is still down: a reload keeps what serves and says why
        out = client.post("/v1/models/reload", json={}, headers=headers("admin")).json()["outcomes"]
        assert {o["outcome"] for o in out} == {"failed"} and all("registry unavailable" in o["detail"] for o in out)
    cached = lab.cache / "churn" / "champion" / "last-good" / registry.MODEL_FILE
    cached.write_bytes(cached.read_bytes() + b"\n# tampered\n")
    with world.client(tracking_uri=down, model_cache_dir=lab.cache) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and "checksum mismatch" in ready.json()["detail"]["last_error"]


def test_not_ready_while_no_model_is_loaded(world: World, lab: Lab) -> None:
    with world.client(tracking_uri=lab.uri, model_cache_dir=lab.cache, churn_model="no-such-model") as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and "no-such-model" in ready.json()["detail"]["last_error"]
        assert client.get("/health/live").status_code == 200
        r = client.post("/v1/scores", json={"customer_ids": ["x"]}, headers=headers("campaign"))
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable"
        # the other model still serves
        assert (
            client.post("/v1/recommendations/cart", json={"cart": ["x"]}, headers=headers("storefront")).status_code
            == 200
        )


@pytest.mark.security
def test_champion_moved_under_load_with_broken_candidates_fails_no_request(
    world: World, lab: Lab, security_figures: SecurityFigures
) -> None:
    """A real uvicorn server over HTTP: steady load from three clients while @champion moves 10 times, between
    two good versions and two broken ones (a model file altered in storage; no metadata checksum). A broken
    candidate is refused and the serving version stays; no request fails and none is answered by a broken one."""
    frame = latest_snapshot(world.home).read()
    second = register_churn(lab.uri, frame, FEATURES, seed=4).version
    altered = register_churn(lab.uri, frame, FEATURES, seed=7).version
    path = _model_file(lab.uri, altered)
    path.write_bytes(path.read_bytes().replace(b"tree", b"tres", 1))
    untagged = register_churn(lab.uri, frame, FEATURES, seed=8).version
    MlflowClient(tracking_uri=lab.uri).delete_model_version_tag("churn", untagged, registry.TAG_META_SHA256)
    _champion(lab.uri, "1")
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()
    good = {"1", second}
    targets = [second, altered, "1", untagged, second, "1", altered, second, untagged, "1"]
    with world.server(tracking_uri=lab.uri, model_cache_dir=lab.cache) as (url, _app):

        def hammer() -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                while not stop.is_set():
                    r = http.post("/v1/scores", json={"customer_ids": world.ids[:50]}, headers=headers("campaign"))
                    seen.append((r.status_code, r.json()["models"][0]["version"] if r.status_code == 200 else None))

        workers = [threading.Thread(target=hammer) for _ in range(3)]
        for w in workers:
            w.start()
        outcomes = []
        with httpx.Client(base_url=url, timeout=60) as admin:
            for target in targets:
                _champion(lab.uri, target)
                before = len(seen)
                out = admin.post("/v1/models/reload", json={"models": ["churn"]}, headers=headers("admin")).json()
                outcomes.append((out["outcomes"][0]["outcome"], out["outcomes"][0]["version"]))
                while len(seen) < before + 3:  # the load goes on across every swap
                    time.sleep(0.01)
        stop.set()
        for w in workers:
            w.join()
    failed = sum(code != 200 for code, _ in seen)
    from_broken = sum(v not in good for code, v in seen if code == 200)
    security_figures.record(
        "10 hot swaps under load, broken candidates mixed in",
        cases=len(seen),
        failed_requests=failed,
        wrong_answers=from_broken,
    )
    serving = "1"
    expected = []
    for target in targets:
        if target in good:
            serving = target
            expected.append(("loaded", target))
        else:
            expected.append(("failed", serving))
    assert outcomes == expected
    assert seen and failed == 0 and from_broken == 0, {c for c, _ in seen}
    assert {v for _, v in seen} == good


def test_promote_and_rollback_refuse_a_version_that_does_not_verify(world: World, lab: Lab) -> None:
    """Issue 17.6: an alias moves only to a version whose files and metadata verify and that loads."""
    from typer.testing import CliRunner

    from cli.main import app

    frame = latest_snapshot(world.home).read()
    tampered = register_churn(lab.uri, frame, FEATURES, seed=1).version
    path = _model_file(lab.uri, tampered)
    path.write_bytes(path.read_bytes().replace(b"tree", b"tres", 1))
    untagged = register_churn(lab.uri, frame, FEATURES, seed=2).version  # no metadata checksum: fails closed
    MlflowClient(tracking_uri=lab.uri).delete_model_version_tag("churn", untagged, registry.TAG_META_SHA256)
    good = register_churn(lab.uri, frame, FEATURES, seed=3).version
    base = register_churn(lab.uri, frame, FEATURES, seed=6).version
    registry.promote(lab.uri, "churn", base)
    runner = CliRunner()
    for bad, why in ((tampered, "checksum mismatch"), (untagged, "no metadata checksum")):
        result = runner.invoke(app, ["promote", "churn", bad, "--tracking-uri", lab.uri])
        assert result.exit_code == 2 and why in " ".join(result.output.split()), result.output
        assert str(MlflowClient(tracking_uri=lab.uri).get_model_version_by_alias("churn", "champion").version) == base
    assert runner.invoke(app, ["promote", "churn", good, "--tracking-uri", lab.uri]).exit_code == 0
    # the version to roll back to is checked too (only files this test registered are altered: the
    # artifacts are shared with the other tests' registries)
    _model_file(lab.uri, base).write_bytes(_model_file(lab.uri, base).read_bytes() + b"\n# altered\n")
    result = runner.invoke(app, ["rollback", "churn", "--tracking-uri", lab.uri])
    assert result.exit_code == 2 and f"not rolling churn back to v{base}" in " ".join(result.output.split())
    assert str(MlflowClient(tracking_uri=lab.uri).get_model_version_by_alias("churn", "champion").version) == good


def test_a_replica_starting_on_a_broken_champion_serves_the_last_verified_version(world: World, lab: Lab) -> None:
    """Issue 17.6: a champion that stopped verifying (altered in storage, or moved by hand in MLflow) does
    not make a starting replica answer 503: it serves the last verified copy on disk, else the version
    that held the alias before, says so in readiness and never serves the unverified one."""
    frame = latest_snapshot(world.home).read()
    with world.client(tracking_uri=lab.uri, model_cache_dir=lab.cache) as client:  # caches v1
        assert _scored_by(client, world.ids[:3]) == "1"
    second = register_churn(lab.uri, frame, FEATURES, seed=5).version
    registry.promote(lab.uri, "churn", second)  # records v1 as the champion it replaced
    path = _model_file(lab.uri, second)
    path.write_bytes(path.read_bytes().replace(b"tree", b"tres", 1))
    for cache, source in ((lab.cache, "disk_cache"), (lab.cache.parent / "fresh-cache", "previous_version")):
        with world.client(tracking_uri=lab.uri, model_cache_dir=cache) as client:
            ready = client.get("/health/ready")
            assert ready.status_code == 200, ready.text
            churn = ready.json()["detail"]["models"]["churn"]
            assert churn["version"] == "1" and churn["source"] == source
            error = ready.json()["detail"]["last_error"]
            assert f"v{second} refused" in error and "checksum mismatch" in error
            assert _scored_by(client, world.ids[:3]) == "1"
            metrics = client.get("/metrics").text
            assert f'kairos_model_loaded{{alias="champion",model="churn",source="{source}",version="1"}} 1.0' in metrics
    # nothing verified to fall back on: not ready, never the unverified version
    shutil.rmtree(lab.cache.parent / "fresh-cache")
    MlflowClient(tracking_uri=lab.uri).delete_model_version_tag("churn", second, registry.TAG_PREVIOUS)
    with world.client(tracking_uri=lab.uri, model_cache_dir=lab.cache.parent / "fresh-cache") as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and "no earlier verified version" in ready.json()["detail"]["last_error"]
