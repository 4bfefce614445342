"""The image and the compose file. No Docker engine runs here, so they are read closely and run where
they can be: the image's start command and health check from the installed package, and the compose
file's MLflow server command on a real PostgreSQL, serving the API its model."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from features.store import latest_snapshot
from serving.settings import Settings
from tests.serving.conftest import FEATURES, World, api_keys, closed_port, headers, register_churn

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG = "postgresql://postgres@127.0.0.1:5432"


def _instructions(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, (KEYWORD, arguments) with continuations joined, one list per stage."""
    lines: list[str] = []
    pending = ""
    for raw in dockerfile.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    stages: list[list[tuple[str, str]]] = [[]]
    for line in lines:
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), args.strip()))
    return stages


def _one(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [a for k, a in stage if k == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            for pair in args.split():
                name, _, value = pair.partition("=")
                out[name] = value
    return out


@pytest.fixture(scope="module")
def image() -> dict[str, Any]:
    prelude, *stages = _instructions(ROOT / "Dockerfile")
    runtime = stages[-1]
    return {
        "args": dict(a.split("=", 1) for k, a in prelude if k == "ARG"),
        "stages": stages,
        "runtime": runtime,
        "cmd": json.loads(_one(runtime, "CMD")),
        "env": _env(runtime),
        "health": json.loads(_one(runtime, "HEALTHCHECK").split(" CMD ", 1)[1]),
    }


def test_the_image_is_multi_stage_slim_non_root_with_serving_dependencies_only(image: dict[str, Any]) -> None:
    builder, runtime = image["stages"][0], image["runtime"]
    # Debian's own slim base (make image-test bootstraps exactly it where no registry is reachable)
    assert len(image["stages"]) >= 2 and image["args"]["BASE_IMAGE"] == "debian:bookworm-slim"
    assert _one(runtime, "FROM").startswith("${BASE_IMAGE}")
    user = _one(runtime, "USER")
    assert user.split(":")[0] not in ("0", "root")
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in runtime  # no source tree, no compiler
    assert not any(k == "COPY" and "--from" not in a for k, a in runtime)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = {a.split()[0] for k, a in builder if k == "COPY"}
    assert set(packages) <= copied, "every package of the distribution goes into the image"
    installs = " ".join(a for k, a in builder if k == "RUN" and "pip install" in a)
    assert "-c constraints.txt" in installs and "[dev" not in installs and "[spark" not in installs
    assert _one(runtime, "EXPOSE") == "8000" and "--port" in image["cmd"]
    assert image["cmd"][image["cmd"].index("--port") + 1] == "8000"
    assert "http://127.0.0.1:8000/health/live" in " ".join(image["health"])


@contextmanager
def _process(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args!r} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} not up in {seconds:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAIROS_", "MLFLOW_")) and k != "PYTHONPATH"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_image_start_command_serves_the_installed_app(image: dict[str, Any], world: World, tmp_path: Path) -> None:
    """CMD and HEALTHCHECK as written, from a directory outside the source tree, with the image's ENV
    (its paths pointed at this test's data): live at once, not ready while no model is loaded."""
    port = str(closed_port())
    cmd = [port if a == "8000" else a for a in image["cmd"]]
    assert shutil.which(cmd[0], path=str(BIN)), f"{cmd[0]} is not an installed entry point"
    env = _clean_env() | {
        k: v for k, v in image["env"].items() if k not in ("PATH", "VIRTUAL_ENV") and not k.startswith("KAIROS_")
    }
    assert set(k for k in image["env"] if k.startswith("KAIROS_")) <= {
        f"KAIROS_{f.upper()}" for f in Settings.model_fields
    }
    env |= {
        "KAIROS_DATA_HOME": str(world.home),
        "KAIROS_TRACKING_URI": f"sqlite:///{tmp_path / 'empty-registry.db'}",
        "KAIROS_MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "KAIROS_API_KEYS": _keys_json(),  # the image serves in production: keys required
    }
    log = tmp_path / "serve.log"
    with _process(cmd, env, tmp_path, log) as proc:
        _wait(f"http://127.0.0.1:{port}/health/live", proc, log)
        check = [sys.executable if a.endswith("/python") else a for a in image["health"]]
        check = [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in check]
        assert subprocess.run(check, env=env, cwd=tmp_path, timeout=30).returncode == 0
        ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5)
        assert ready.status_code == 503  # no model registered: live, not ready
    assert proc.returncode is not None


def _keys_json() -> str:
    return json.dumps([k.model_dump(mode="json") for k in api_keys()])


def test_the_image_refuses_to_start_without_keys(image: dict[str, Any], world: World, tmp_path: Path) -> None:
    """The image's command is production: with no KAIROS_API_KEYS it stops at once, saying what to set, and
    a KAIROS_ENVIRONMENT=development left in the environment does not open it to the demo key."""
    # this checkout's code (the installed package may be another checkout's)
    env = _clean_env() | {"KAIROS_DATA_HOME": str(world.home), "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    for extra in ({}, {"KAIROS_ENVIRONMENT": "development"}):
        done = subprocess.run(image["cmd"], env=env | extra, cwd=tmp_path, capture_output=True, timeout=120)
        out = (done.stdout + done.stderr).decode(errors="replace")
        assert done.returncode == 2, out
        assert ("KAIROS_API_KEYS" in out) if not extra else ("--dev" in out)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return loaded


def test_compose_runs_the_api_with_redis_and_mlflow_on_postgresql(
    compose: dict[str, Any], image: dict[str, Any]
) -> None:
    services = compose["services"]
    assert {"api", "redis", "mlflow", "postgres"} <= set(services)
    mlflow = services["mlflow"]
    args = dict(a.split("=", 1) for a in mlflow["command"] if a.startswith("--") and "=" in a)
    assert mlflow["command"][:2] == ["mlflow", "server"] and "--serve-artifacts" in mlflow["command"]
    assert args["--backend-store-uri"].startswith("postgresql://") and "@postgres:5432/" in args["--backend-store-uri"]
    assert "mlflow:5000" in args["--allowed-hosts"].split(",")  # the API calls it by its service name
    mounts = {v.split(":")[1]: v.split(":")[0] for v in mlflow["volumes"]}
    assert mounts[args["--artifacts-destination"]] in compose["volumes"]  # artifacts on a named volume
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["redis"]
    api = services["api"]
    env = api["environment"]
    known = {f"KAIROS_{f.upper()}" for f in Settings.model_fields}
    assert {k for k in env if k.startswith("KAIROS_")} <= known  # the API refuses unknown KAIROS_* settings
    assert env["KAIROS_TRACKING_URI"] == "http://mlflow:5000" and env["KAIROS_ONLINE_STORE"] == "redis"
    redis_url = urlsplit(_fill(env["KAIROS_REDIS_URL"], {"REDIS_PASSWORD": "pw"}))
    assert (redis_url.scheme, redis_url.hostname, redis_url.port) == ("redis", "redis", 6379)
    assert {s: c["condition"] for s, c in api["depends_on"].items()} == {
        "redis": "service_healthy",
        "mlflow": "service_healthy",
    }
    api_mounts = {v.split(":")[1]: v.split(":")[0] for v in api["volumes"]}
    assert api_mounts[env["KAIROS_DATA_HOME"]] in compose["volumes"]
    assert api_mounts[image["env"]["KAIROS_MODEL_CACHE_DIR"]] in compose["volumes"]
    assert all(p.endswith(":8000") for p in api["ports"]) and api["image"] == mlflow["image"]


# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}: compose's interpolation
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<rest>[^}]*)\}")
_SECRET = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEYS|AUTH", re.IGNORECASE)


def _strings(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string in the compose file (keys of mappings too), with where it is."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{where}.{k}", str(k)
            yield from _strings(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{where}[{i}]")
    elif node is not None:
        yield where, str(node)


def _fill(text: str, values: dict[str, str]) -> str:
    """``text`` with its variables replaced as compose does (``KeyError`` where compose refuses to run)."""

    def one(m: re.Match[str]) -> str:
        name, op, rest = m["name"], m["op"] or "", m["rest"]
        value = values.get(name)
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise KeyError(name)
        if op in (":-", "-") and (value is None or (op == ":-" and not value)):
            return str(rest)
        return value or ""

    return _VARIABLE.sub(one, text)


def test_compose_runs_in_production_with_every_secret_required(compose: dict[str, Any]) -> None:
    """No service in development; every secret (keys, passwords) comes from a variable that compose
    requires (``${NAME:?...}``: it refuses to run without it), never from a default or a literal; Redis and
    PostgreSQL have passwords and the API's URLs use them; MLflow, without a login, publishes no port."""
    services = compose["services"]
    texts = list(_strings(compose))
    assert not [w for w, t in texts if "development" in t.lower()], "a service in development mode"
    secrets = {m["name"] for _, t in texts for m in _VARIABLE.finditer(t) if _SECRET.search(m["name"])}
    assert {"KAIROS_API_KEYS", "REDIS_PASSWORD", "MLFLOW_DB_PASSWORD", "KAIROS_PSEUDONYM_SECRET"} <= secrets
    given = {name: f"given-{name.lower()}" for name in secrets}
    for where, text in texts:
        for name in {m["name"] for m in _VARIABLE.finditer(text)} & secrets:
            with pytest.raises(KeyError):  # compose refuses to run without it, or with it empty
                _fill(text, {k: v for k, v in given.items() if k != name} | {name: ""})
            assert given[name] in _fill(text, given), f"{where}: ${{{name}}} has a default"
        # a password in a URL is a variable's value, never a literal
        for url in re.findall(r"[a-z]+://\S+", _fill(text, given)):
            password = urlsplit(url).password
            assert password is None or password in given.values(), f"{where}: a literal password in a URL"
    api = services["api"]["environment"]
    assert api["KAIROS_ENVIRONMENT"] == "production"
    assert _fill(api["KAIROS_API_KEYS"], given) == given["KAIROS_API_KEYS"]
    redis = services["redis"]["command"]
    password = _fill(redis[redis.index("--requirepass") + 1], given)
    assert password == given["REDIS_PASSWORD"] == urlsplit(_fill(api["KAIROS_REDIS_URL"], given)).password
    store = next(a for a in services["mlflow"]["command"] if a.startswith("--backend-store-uri="))
    db_password = _fill(services["postgres"]["environment"]["POSTGRES_PASSWORD"], given)
    assert db_password == given["MLFLOW_DB_PASSWORD"] == urlsplit(_fill(store.split("=", 1)[1], given)).password
    assert not {"ports"} & (set(services["mlflow"]) | set(services["redis"]) | set(services["postgres"]))


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """A database of this test's own on the local PostgreSQL (dropped afterwards)."""
    import psycopg

    name = f"kairos_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(f"{PG}/postgres", connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        message = f"no PostgreSQL at 127.0.0.1:5432 ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(message + ": CI must run the PostgreSQL tests")
        pytest.skip(message)
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def test_the_composed_mlflow_server_on_postgresql_serves_the_api(
    compose: dict[str, Any], world: World, postgres_db: str, tmp_path: Path
) -> None:
    """The compose file's MLflow command, run as written but for where its store and artifacts live; a
    model registered through it is what the API serves."""
    port = str(closed_port())
    swaps = {
        "--host": "127.0.0.1",
        "--port": port,
        "--backend-store-uri": postgres_db,
        "--artifacts-destination": str(tmp_path / "artifacts"),
    }
    cmd = []
    for a in compose["services"]["mlflow"]["command"]:
        name = a.split("=", 1)[0]
        cmd.append(f"{name}={swaps[name]}" if name in swaps else a.replace(":5000", f":{port}"))
    uri = f"http://127.0.0.1:{port}"
    log = tmp_path / "mlflow.log"
    with _process(cmd, _clean_env(), tmp_path, log) as proc:
        _wait(f"{uri}/health", proc, log)
        frame = latest_snapshot(world.home).read()
        register_churn(uri, frame, FEATURES, seed=1)
        settings = {
            "tracking_uri": uri,
            "recs_model": None,
            "required_models": ["churn"],
            "model_cache_dir": tmp_path / "cache",
        }
        with world.client(**settings) as client:
            assert client.get("/health/ready").status_code == 200
            body = client.post("/v1/scores", json={"customer_ids": world.ids[:5]}, headers=headers("campaign")).json()
    churn = next(m for m in body["models"] if m["name"] == "churn")
    assert churn["version"] == "1" and churn["source"] == "model"
    assert all(i["status"] == "ok" and i["probabilities"]["churn"] is not None for i in body["items"])
    assert any((tmp_path / "artifacts").rglob("model.lgb")) or any((tmp_path / "artifacts").rglob("*.txt"))
