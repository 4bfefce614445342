"""Prove the container image: build it, check what it promises, run it the way compose runs it, call it.

``make image-test`` runs this script. It needs buildah (and podman, debootstrap for the base when no
registry is reachable) or a Docker daemon for the build, and runs the built image with
``buildah run --isolation chroot`` on the host network (``podman run`` needs cgroups that sandboxes often
refuse). The steps, each timed and printed:

1. build the image (image/build.sh: ``docker build`` or ``buildah bud``);
2. inspect it: runs as uid 10001, a health check, the production command; in its files no compiler,
   no test files, no ``.git``, no source tree; its size;
3. the embedded default: in the image, as uid 10001 against a fresh /data, run the jobs of the demo
   (synth, ingest, features build, train churn, train recs), then start the image's own command in
   production with a real hashed key and the pseudonym secret, wait for readiness (the start-up time),
   run the image's health-check command, call /v1/scores and /v1/recommendations/cart from outside;
   stop it;
4. the composed deployment piece by piece: the image's MLflow server (compose's ``mlflow`` service
   command) on this machine's PostgreSQL, the jobs registering into it over HTTP, the snapshot
   published to this machine's Redis, and the API (compose's ``api`` environment) reading both; the
   same calls; everything stopped and the test database and Redis keys removed.

Exit status 0 only if every check holds; the first failure stops the run with what was expected.
It runs on the host with the project's venv (PyYAML reads docker-compose.yml); the image is only run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
UID = "10001:10001"
OUR_PACKAGES = ("features", "models", "bundles", "training", "batch", "serving", "cli", "synth")
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "x86_64-linux-gnu-gcc-12", "aarch64-linux-gnu-gcc-12")
PG_DSN_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = ("127.0.0.1", 6379)


class CheckFailed(Exception):
    """A promise of the image that does not hold."""


FIGURES: list[tuple[str, str]] = []


def figure(name: str, value: str) -> None:
    FIGURES.append((name, value))
    print(f"  {name}: {value}", flush=True)


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def run(cmd: Sequence[str], *, timeout: float = 1800, check: bool = True, quiet: bool = False) -> str:
    """Run a command; its output is returned (and shown unless quiet); a failure names the command."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if not quiet and out.strip():
        print("    " + "\n    ".join(out.strip().splitlines()[-15:]), flush=True)
    if check and proc.returncode != 0:
        if quiet:
            print("    " + "\n    ".join(out.strip().splitlines()[-30:]), flush=True)
        raise CheckFailed(f"{' '.join(cmd[:6])} ... exited {proc.returncode}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---------------------------------------------------------------------------------------------------
# the image


def build(tag: str) -> None:
    step(f"build {tag}")
    started = time.monotonic()
    subprocess.run([str(ROOT / "image" / "build.sh"), tag], check=True, cwd=ROOT)
    figure("build time", f"{time.monotonic() - started:.0f} s")


def image_config(tag: str) -> dict:
    info = json.loads(run(["buildah", "inspect", "--type", "image", tag], quiet=True))
    docker = info.get("Docker") or {}
    config = docker.get("config") or docker.get("Config") or {}
    expect(bool(config), f"{tag}: no Docker-format config (build with --format docker, or HEALTHCHECK is lost)")
    return config


@contextmanager
def container(tag: str) -> Iterator[str]:
    name = f"kairos-check-{os.getpid()}-{secrets.token_hex(3)}"
    run(["buildah", "from", "--pull=never", "--name", name, tag], quiet=True)
    # buildah run gives an image VOLUME a private copy that hides a bind mount at the same place; docker and
    # compose mount over it. This working container drops the declaration (the image is not changed).
    run(["buildah", "config", "--volume", "/data-", name], quiet=True)
    try:
        yield name
    finally:
        run(["buildah", "rm", name], check=False, quiet=True)


def inspect(tag: str) -> dict:
    step("what the image promises")
    config = image_config(tag)
    user = config.get("User", "")
    expect(user == UID, f"the image runs as {user!r}, not the non-root {UID}")
    figure("user", user)
    health = (config.get("Healthcheck") or {}).get("Test") or []
    expect(len(health) > 1 and health[0] in ("CMD", "CMD-SHELL"), f"no health check command (found {health!r})")
    figure("health check", " ".join(health[1:])[:80] + "...")
    cmd = config.get("Cmd") or []
    expect(cmd[:2] == ["kairos", "serve"], f"the image's command is {cmd!r}, not kairos serve")
    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    expect("--dev" not in cmd, "the image's command serves in development (--dev)")
    expect("KAIROS_API_KEYS" not in env, "the image carries API keys in its environment")
    size = int(run(["podman", "image", "inspect", "--format", "{{.Size}}", tag], quiet=True).strip() or 0)
    figure("image size", f"{size / 1e6:.0f} MB")

    with container(tag) as ctr:
        root = Path(run(["buildah", "mount", ctr], quiet=True).strip())
        try:
            found = [
                str(p.relative_to(root))
                for d in ("usr/bin", "usr/local/bin")
                for c in COMPILERS
                if (p := root / d / c).exists()
            ]
            expect(not found, f"compilers in the image: {found}")
            site = next((root / "opt" / "venv" / "lib").glob("python3*/site-packages"))
            tests = [str(p.relative_to(root)) for p in site.rglob("tests") if p.is_dir()]
            tests += [
                str(p.relative_to(root))
                for pkg in OUR_PACKAGES
                for p in (site / pkg).rglob("*.py")
                if p.name == "conftest.py" or p.name.startswith("test_")
            ]
            expect(not tests, f"test files in the image: {tests[:5]} ({len(tests)} in all)")
            missing = [pkg for pkg in OUR_PACKAGES if not (site / pkg / "__init__.py").is_file()]
            expect(not missing, f"packages missing from the image: {missing}")
            gits = [str(p.relative_to(root)) for p in root.rglob(".git") if "proc" not in p.parts]
            expect(not gits, f".git inside the image: {gits[:5]}")
            expect(not (root / "src").exists(), "the builder's source tree /src is in the runtime image")
            print("    no compiler, no test files, no .git, no source tree; every package installed")
        finally:
            run(["buildah", "umount", ctr], check=False, quiet=True)
    return config


# ---------------------------------------------------------------------------------------------------
# running it


class Running:
    """The image's command started with buildah run (host network), stopped with its process group."""

    def __init__(self, ctr: str, argv: Sequence[str], env: dict[str, str], mounts: dict[Path, str], log: Path):
        cmd = ["buildah", "run", "--isolation", "chroot", "--user", UID]
        for host, inside in mounts.items():
            cmd += ["-v", f"{host}:{inside}"]
        for key, value in env.items():
            cmd += ["--env", f"{key}={value}"]
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [*cmd, ctr, "--", *argv], stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_http(self, url: str, timeout: float, ok: Sequence[int] = (200,)) -> float:
        started = time.monotonic()
        last = "no answer"
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise CheckFailed(f"exited {self.proc.returncode} before {url} answered:\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=3) as resp:
                    if resp.status in ok:
                        return time.monotonic() - started
                    last = str(resp.status)
            except urllib.error.HTTPError as exc:
                last = f"{exc.code} {exc.read()[:300]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise CheckFailed(f"{url} not ready within {timeout:.0f} s (last: {last}):\n{self.tail()}")

    def tail(self, lines: int = 25) -> str:
        self._out.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._out.close()


def in_image(ctr: str, argv: Sequence[str], env: dict[str, str], mounts: dict[Path, str], timeout: float = 1200) -> str:
    cmd = ["buildah", "run", "--isolation", "chroot", "--user", UID]
    for host, inside in mounts.items():
        cmd += ["-v", f"{host}:{inside}"]
    for key, value in env.items():
        cmd += ["--env", f"{key}={value}"]
    started = time.monotonic()
    out = run([*cmd, ctr, "--", *argv], timeout=timeout, quiet=True)
    print(f"    {' '.join(argv[:3])}: {time.monotonic() - started:.0f} s", flush=True)
    return out


def call(port: int, path: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method="GET" if body is None else "POST",
        headers={"X-API-Key": key, "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {"error": exc.read()[:500].decode(errors="replace")}


def new_key(ctr: str) -> tuple[str, str]:
    """A real key made by the image's own tool: (secret, KAIROS_API_KEYS JSON)."""
    out = in_image(ctr, ["python", "-m", "serving.keys", "new", "--name", "image-check", "--scope", "admin"], {}, {})
    secret = entry = ""
    for line in out.splitlines():
        if line.startswith("key "):
            secret = line.rsplit(": ", 1)[1].strip()
        elif line.startswith("KAIROS_API_KEYS entry: "):
            entry = line.split(": ", 1)[1].strip()
    expect(bool(secret and entry), "python -m serving.keys new printed no key")
    return secret, json.dumps([json.loads(entry)])


def sample_ids(data: Path) -> tuple[list[str], list[str]]:
    """Customer ids and items the synthetic world wrote (read from its raw CSV files, as a client knows them)."""
    import csv

    raw = data / "raw"
    with (raw / "customers.csv").open(newline="") as f:
        ids = [row["customer_id"] for _, row in zip(range(3), csv.DictReader(f), strict=False)]
    items: list[str] = []
    lines = next(p for p in sorted(raw.iterdir()) if p.name.startswith("order_lines"))
    with lines.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("item_id") and row["item_id"] not in items:
                items.append(row["item_id"])
            if len(items) == 2:
                break
    expect(len(ids) == 3 and len(items) == 2, f"no customers or items in {raw}")
    return ids, items


def serve_and_call(
    ctr: str,
    config: dict,
    env: dict[str, str],
    mounts: dict[Path, str],
    key: str,
    data: Path,
    log: Path,
    label: str,
    store: str,
) -> None:
    cmd = list(config["Cmd"])
    port = 8000
    if port_open(port):  # the image's port is taken on this host (host network): serve on another one
        port = free_port()
        cmd[cmd.index("--port") + 1] = str(port)
        print(f"    port 8000 is taken on this host; serving on {port}")
    server = Running(ctr, cmd, env, mounts, log)
    try:
        ready = server.wait_http(f"http://127.0.0.1:{port}/health/ready", timeout=240)
        figure(f"{label}: start-up to ready", f"{ready:.1f} s")
        health = (config.get("Healthcheck") or {}).get("Test") or []
        probe = [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in health[1:]]
        if health[0] == "CMD-SHELL":
            probe = ["sh", "-c", probe[0]]
        in_image(ctr, probe, {}, {})
        print("    the image's health check passes")
        status, body = call(port, "/health/ready", key)
        detail = body.get("detail") or {}
        expect(
            detail.get("store") == store, f"readiness reports the online store {detail.get('store')!r}, not {store!r}"
        )
        expect(int(detail.get("store_customers") or 0) > 0, f"the online store holds no customer: {detail}")
        models = detail.get("models") or {}
        loaded = sorted(k for k, v in models.items() if v)
        expect({"churn", "recs"} <= set(loaded), f"churn and recs are not both loaded: {models}")
        print(f"    ready: {store} store with {detail['store_customers']:,} customers; models {', '.join(loaded)}")
        ids, items = sample_ids(data)
        status, body = call(port, "/v1/scores", key, {"customer_ids": ids, "reasons": True})
        expect(status == 200, f"/v1/scores answered {status}: {body}")
        scores = body.get("items") or []
        expect(len(scores) == len(ids), f"/v1/scores returned {len(scores)} answers for {len(ids)} ids: {body}")
        scored = [s for s in scores if s.get("source") == "model"]
        expect(len(scored) > 0, f"/v1/scores answered no customer from the model: {body}")
        print(f"    /v1/scores: 200, {len(scores)} customers, {len(scored)} scored by the model")
        status, body = call(port, "/v1/recommendations/cart", key, {"cart": items, "customer_id": ids[0], "k": 5})
        expect(status == 200, f"/v1/recommendations/cart answered {status}: {body}")
        recs = body.get("items") or []
        expect(len(recs) > 0, f"/v1/recommendations/cart recommended nothing: {body}")
        print(f"    /v1/recommendations/cart: 200, {len(recs)} items")
        status, _ = call(port, "/v1/scores", "not-a-key", {"customer_ids": ids})
        expect(status == 401, f"a wrong key got {status}, not 401: production mode is not on")
        print("    a wrong key is refused (401): production mode")
    except CheckFailed:
        print(server.tail(40))
        raise
    finally:
        server.stop()
    expect(not port_open(port), f"the API still listens on {port} after being stopped")


def embedded(tag: str, config: dict, work: Path, customers: int) -> tuple[Path, dict[str, str], str, str]:
    step("the embedded default: jobs and API in the image, sqlite MLflow store in /data")
    data = work / "data"
    data.mkdir()
    os.chown(data, 10001, 10001)
    pseudonym = secrets.token_hex(32)
    with container(tag) as ctr:
        secret, keys = new_key(ctr)
        env = {"KAIROS_PSEUDONYM_SECRET": pseudonym}
        mounts = {data: "/data"}
        started = time.monotonic()
        jobs: list[list[str]] = [
            ["kairos", "synth", "--customers", str(customers), "--seed", "7", "--out", "/data/raw"],
            ["kairos", "ingest", "--input", "/data/raw", "--mapping", "synthetic", "--out", "/data"],
            ["kairos", "features", "build", "--data", "/data"],
            ["kairos", "train", "churn", "--data", "/data"],
            ["kairos", "train", "recs", "--data", "/data"],
        ]
        for job in jobs:
            in_image(ctr, job, env, mounts)
        figure("embedded: jobs (synth .. train recs)", f"{time.monotonic() - started:.0f} s")
        expect((data / "mlflow.db").is_file(), "the jobs wrote no MLflow store at /data/mlflow.db")
        serve_env = {"KAIROS_ENVIRONMENT": "production", "KAIROS_API_KEYS": keys, **env}
        serve_and_call(ctr, config, serve_env, mounts, secret, data, work / "api-embedded.log", "embedded", "memory")
    return data, env, secret, keys


@contextmanager
def postgres_database(password: str) -> Iterator[tuple[str, str]]:
    """A role and a database of their own on this machine's PostgreSQL: (role, database); both dropped after."""
    name = f"kairos_image_check_{os.getpid()}"
    psql = shutil.which("psql")
    expect(psql is not None, "psql is missing (PostgreSQL client) for the composed check")
    assert psql is not None
    run([psql, PG_DSN_ADMIN, "-qc", f"CREATE ROLE {name} LOGIN PASSWORD '{password}'"], quiet=True)
    try:
        run([psql, PG_DSN_ADMIN, "-qc", f"CREATE DATABASE {name} OWNER {name}"], quiet=True)
        yield name, name
    finally:
        run([psql, PG_DSN_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False, quiet=True)
        run([psql, PG_DSN_ADMIN, "-qc", f"DROP ROLE IF EXISTS {name}"], check=False, quiet=True)


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?+][^}]*)?\}")


def compose_services(values: dict[str, str]) -> dict[str, Any]:
    """docker-compose.yml's services, with ${VAR} (and ${VAR:?message}) replaced by ``values``, as compose does."""
    import yaml

    def substitute(node: Any) -> Any:
        if isinstance(node, str):

            def one(match: re.Match[str]) -> str:
                name = match.group(1)
                expect(name in values, f"docker-compose.yml needs ${{{name}}}, which the check does not set")
                return values[name]

            return _VARIABLE.sub(one, node)
        if isinstance(node, list):
            return [substitute(item) for item in node]
        if isinstance(node, dict):
            return {key: substitute(value) for key, value in node.items()}
        return node

    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return substitute(raw["services"])


def as_env(spec: Any) -> dict[str, str]:
    if isinstance(spec, list):
        return dict(item.split("=", 1) for item in spec)
    return {str(k): str(v) for k, v in (spec or {}).items()}


def volume_mounts(spec: list[str], hosts: dict[str, Path]) -> dict[Path, str]:
    """Compose's ``name:/path`` volumes, each given a host folder of the check's (named volumes are the host's)."""
    mounts: dict[Path, str] = {}
    for item in spec:
        name, inside = item.split(":", 2)[:2]
        expect(name in hosts, f"docker-compose.yml mounts volume {name!r}, which the check has no folder for")
        mounts[hosts[name]] = inside
    return mounts


def _resp_read(f: Any) -> Any:
    """One RESP reply (simple string, error, integer, bulk string or array) from a socket file."""
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind in (b"+", b":"):
        return rest.decode()
    if kind == b"-":
        raise CheckFailed(f"Redis: {rest.decode()}")
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else f.read(size + 2)[:-2].decode()
    if kind == b"*":
        return [_resp_read(f) for _ in range(max(int(rest), 0))]
    raise CheckFailed(f"Redis: unexpected reply {line[:40]!r}")


def redis_command(*args: str) -> Any:
    """One command to the local Redis (no client library: this script runs on the standard library)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)
    with socket.create_connection(REDIS, timeout=10) as s, s.makefile("rb") as f:
        s.sendall(payload)
        return _resp_read(f)


def redis_cleanup(prefix: str) -> int:
    """Delete every key under the check's prefix; returns how many."""
    cursor, deleted = "0", 0
    while True:
        cursor, keys = redis_command("SCAN", cursor, "MATCH", f"{prefix}*", "COUNT", "1000")
        if keys:
            deleted += int(redis_command("DEL", *keys))
        if cursor == "0":
            return deleted


def composed(tag: str, config: dict, work: Path, data: Path, pseudonym: dict[str, str], secret: str, keys: str) -> None:
    """docker-compose.yml's mlflow and api services, run as it declares them, on this machine's PostgreSQL and Redis.

    The compose network's names become this host: postgres -> a role and database of the check's on
    127.0.0.1:5432, mlflow:5000 -> the image's MLflow server on a free local port, redis -> 127.0.0.1:6379
    (which has no password here: the URL's password is dropped) under a prefix of the check's own. Named
    volumes become folders of the check's. Everything else (commands, flags, environment, user) is the file's.
    """
    step("the composed deployment, piece by piece: docker-compose.yml's mlflow (PostgreSQL) and api (Redis)")
    try:
        expect(redis_command("PING") == "PONG", "Redis at 127.0.0.1:6379 does not answer PING")
    except OSError as exc:
        raise CheckFailed(f"Redis at 127.0.0.1:6379: {exc}") from None
    folders = {name: work / name for name in ("mlflow-artifacts", "model-cache")} | {"data": data}
    for folder in folders.values():
        folder.mkdir(exist_ok=True)
        os.chown(folder, 10001, 10001)
    db_password = secrets.token_hex(16)
    services = compose_services(
        {
            "KAIROS_API_KEYS": keys,
            "REDIS_PASSWORD": secrets.token_hex(16),
            "MLFLOW_DB_PASSWORD": db_password,
            **pseudonym,  # the secret the data home was keyed with (tombstones, pseudonyms)
        }
    )
    mlflow_spec, api_spec = services["mlflow"], services["api"]
    expect(mlflow_spec.get("image") == api_spec.get("image"), "compose's mlflow and api run different images")
    expect(api_spec.get("environment", {}).get("KAIROS_ENVIRONMENT") == "production", "compose's api is not production")
    prefix = f"kairos-image-check-{os.getpid()}"
    mport = free_port()
    tracking = f"http://127.0.0.1:{mport}"
    with postgres_database(db_password) as (role, database), container(tag) as ctr:
        command = []
        for arg in mlflow_spec["command"]:
            if arg.startswith("--host="):
                arg = "--host=127.0.0.1"
            elif arg.startswith("--port="):
                arg = f"--port={mport}"
            elif arg.startswith("--backend-store-uri="):
                url = urllib.parse.urlsplit(arg.split("=", 1)[1])
                expect(
                    url.hostname == "postgres", f"compose's MLflow store is not the postgres service: {url.hostname}"
                )
                netloc = f"{role}:{url.password}@127.0.0.1:{url.port or 5432}"
                arg = "--backend-store-uri=" + urllib.parse.urlunsplit(url._replace(netloc=netloc, path=f"/{database}"))
            elif arg.startswith("--allowed-hosts="):
                arg += f",127.0.0.1:{mport},localhost:{mport}"
            command.append(arg)
        expect(mlflow_spec.get("user", UID) == UID, f"compose's mlflow runs as {mlflow_spec.get('user')}, not {UID}")
        mlflow = Running(
            ctr,
            command,
            as_env(mlflow_spec.get("environment")),
            volume_mounts(mlflow_spec.get("volumes", []), folders),
            work / "mlflow.log",
        )
        try:
            up = mlflow.wait_http(f"{tracking}/health", timeout=180)
            figure("composed: MLflow server (PostgreSQL store) up", f"{up:.1f} s")
            env = {}
            for name, value in as_env(api_spec.get("environment")).items():
                if value.startswith("http://mlflow:"):
                    value = tracking
                elif name == "KAIROS_REDIS_URL":
                    url = urllib.parse.urlsplit(value)
                    expect(
                        url.hostname == "redis", f"compose's api uses Redis at {url.hostname}, not the redis service"
                    )
                    value = urllib.parse.urlunsplit(url._replace(netloc=f"{REDIS[0]}:{REDIS[1]}"))
                elif name == "KAIROS_REDIS_PREFIX":
                    value = prefix
                env[name] = value
            expect(env.get("KAIROS_ONLINE_STORE") == "redis", "compose's api does not use the Redis online store")
            mounts = volume_mounts(api_spec.get("volumes", []), folders)
            # `docker compose run --rm api kairos ...`: the jobs run in the api service, with its environment
            started = time.monotonic()
            for job in (["train", "churn"], ["train", "recs"], ["features", "publish"]):
                in_image(ctr, ["kairos", *job, "--data", "/data"], env, mounts)
            figure("composed: train churn + recs over HTTP, publish to Redis", f"{time.monotonic() - started:.0f} s")
            stored = [p for p in folders["mlflow-artifacts"].rglob("*") if p.is_file()]
            expect(len(stored) > 0, "the MLflow server stored no model file under its artifact volume")
            print(f"    {len(stored)} files on the MLflow server's artifact volume")
            serve_and_call(ctr, config, env, mounts, secret, data, work / "api-composed.log", "composed", "redis")
        except CheckFailed:
            print(mlflow.tail(30))
            raise
        finally:
            mlflow.stop()
            print(f"    removed {redis_cleanup(prefix):,} Redis keys under {prefix!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default="kairos:latest")
    parser.add_argument("--no-build", action="store_true", help="check an image already built under --tag")
    parser.add_argument("--customers", type=int, default=1500, help="size of the synthetic world the jobs build")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (data home, logs)")
    args = parser.parse_args(argv)
    for tool in ("buildah", "podman"):
        if shutil.which(tool) is None:
            print(f"image check: {tool} is missing (apt-get install buildah podman debootstrap)", file=sys.stderr)
            return 2
    if os.geteuid() != 0:
        print("image check: buildah --isolation chroot needs root here", file=sys.stderr)
        return 2
    # a stopped check (Ctrl-C, CI's timeout) still stops what it started and removes its database and keys
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(f"image check: stopped by signal {signum}"))
    work = Path(tempfile.mkdtemp(prefix="kairos-image-check."))
    os.chmod(work, 0o755)
    started = time.monotonic()
    try:
        if not args.no_build:
            build(args.tag)
        config = inspect(args.tag)
        data, pseudonym, secret, keys = embedded(args.tag, config, work, args.customers)
        composed(args.tag, config, work, data, pseudonym, secret, keys)
    except CheckFailed as exc:
        print(f"\nimage check FAILED: {exc}", file=sys.stderr)
        print(f"(logs and data home kept in {work})", file=sys.stderr)
        return 1
    figure("whole check", f"{time.monotonic() - started:.0f} s")
    print("\nimage check passed:")
    for name, value in FIGURES:
        print(f"  {name:<58} {value}")
    if args.keep:
        print(f"(work folder kept: {work})")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
