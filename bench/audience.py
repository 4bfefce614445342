"""Audience throughput and peak memory: customers per second and the process's peak RSS, through the export's
path (``kairos audience export``) and through the API (``POST /v1/audiences/export``, streamed CSV).

The base is a synthetic world (``--base`` customers, seed 7: generated, ingested, one snapshot) with a churn
model registered by the propensity bundle's own writer (a small LightGBM, as the serving tests register it).
It is then **tiled** to ``--customers``: the snapshot's rows, the segments, the identity map, the customers
and the consents are repeated with suffixed keys and ids (``~t1``, ``~t2``, ...). Each tiled customer costs
what a real one costs (same features, same scoring, same consent query), but the rows repeat; generating a
100,000-customer world takes far longer than the measurement itself.

Each measurement runs in its own process (the peak RSS is that process's): at the base size, a quarter of
``--customers`` and ``--customers``, so the growth of memory with the base can be read.

    python bench/audience.py --customers 100000 --base 1500 --work var/bench-audience
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONDITION = "churn > 0.6 and consent_email and lifecycle in ['at_risk', 'lapsed']"


def _rss_mb() -> float:
    """The process's peak resident memory so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _now_mb() -> float:
    """The process's resident memory now (MB), from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _Sampler:
    """The highest resident memory seen while a block runs (sampled every 10 ms in a thread)."""

    def __enter__(self) -> _Sampler:
        self.peak = _now_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _now_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _now_mb())


def build_base(work: Path, customers: int) -> tuple[Path, str]:
    """A synthetic world, ingested and featurised, with churn registered (reused when already built)."""
    from features.ingest import ingest
    from features.mapping import load_mapping
    from features.store import build_snapshot, latest_snapshot
    from synth import generate_world
    from tests.serving.conftest import FEATURES, register_churn

    home, uri = work / "base" / "home", f"sqlite:///{work / 'base' / 'mlflow.db'}"
    if (work / "base" / "done").is_file():
        return home, uri
    shutil.rmtree(work / "base", ignore_errors=True)
    generate_world(customers, 7, work / "base" / "raw")
    ingest(work / "base" / "raw", load_mapping("synthetic"), home, now=datetime(2026, 1, 1, tzinfo=UTC))
    build_snapshot(home)
    register_churn(uri, latest_snapshot(home).read(), FEATURES, seed=0)
    (work / "base" / "done").write_text("ok")
    return home, uri


def tile(base: Path, out: Path, customers: int) -> Path:
    """``base`` with its customers repeated (suffixed keys and ids) up to ``customers`` rows."""
    from features.store import latest_snapshot

    if (out / "done").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(base, out)
    snap = latest_snapshot(out)
    features = pd.read_parquet(snap.path / "features.parquet")
    copies = -(-customers // len(features))

    def repeat(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
        parts = []
        for i in range(copies):
            part = frame.copy()
            if i:
                for c in columns:
                    part[c] = part[c].astype(str) + f"~t{i}"
            parts.append(part)
        return pd.concat(parts, ignore_index=True)

    tiled = repeat(features, ["customer_key"]).head(customers)
    tiled.to_parquet(snap.path / "features.parquet")
    keep = set(tiled["customer_key"])
    segments = repeat(pd.read_parquet(snap.path / "segments.parquet"), ["customer_key"])
    segments[segments["customer_key"].isin(keep)].to_parquet(snap.path / "segments.parquet")
    manifest = json.loads((snap.path / "manifest.json").read_text())
    manifest["rows"] = len(tiled)
    (snap.path / "manifest.json").write_text(json.dumps(manifest))
    ingested = out / "ingested"
    for name, columns in (
        ("identity_map", ["customer_key", "customer_id"]),
        ("customers", ["customer_key", "customer_id"]),
        ("consents", ["customer_key", "customer_id"]),
    ):
        frame = pd.read_parquet(ingested / f"{name}.parquet")
        repeat(frame, [c for c in columns if c in frame.columns]).to_parquet(ingested / f"{name}.parquet")
    (out / "done").write_text("ok")
    return out


def measure_batch(home: Path, uri: str, out: Path) -> dict[str, float]:
    from batch.audience import AudienceScan

    scan = AudienceScan(home, uri, CONDITION, compiled=False)
    ready = _now_mb()
    with _Sampler() as sampled:
        start = time.perf_counter()
        answer = scan.run(out=out, fmt="parquet", sample_size=10)
        seconds = time.perf_counter() - start
    return {
        "customers": answer.scanned,
        "members": answer.members,
        "seconds": seconds,
        "rss_ready_mb": ready,
        "rss_scan_peak_mb": sampled.peak,
        "rss_process_peak_mb": _rss_mb(),
    }


def measure_api(home: Path, uri: str) -> dict[str, float]:
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.settings import Settings

    settings = Settings(
        data_home=home,
        tracking_uri=uri,
        model_cache_dir=home.parent / "cache",
        environment="development",
        log_json=False,
        recs_model=None,
        purchase_model=None,
        engagement_models=[],
        clv_model=None,
        value_model=None,
        sendtime_model=None,
        offers_model=None,
        required_models=["churn"],
    )
    with TestClient(create_app(settings), headers={"X-API-Key": "kairos-demo-key"}) as client:
        client.post("/v1/audiences/count", json={"condition": "churn > 2", "sample_size": 0})  # read the universe
        universe = len(client.app.state.services.audiences.universe())  # type: ignore[attr-defined]
        ready = _now_mb()
        with _Sampler() as sampled:
            start = time.perf_counter()
            lines = 0
            with client.stream("POST", "/v1/audiences/export", json={"condition": CONDITION}) as r:
                assert r.status_code == 200, r.read()
                for chunk in r.iter_bytes():
                    lines += chunk.count(b"\n")
            seconds = time.perf_counter() - start
    return {
        "customers": float(universe),
        "members": lines - 1,
        "seconds": seconds,
        "rss_ready_mb": ready,
        "rss_scan_peak_mb": sampled.peak,
        "rss_process_peak_mb": _rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--base", type=int, default=1_500)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench-audience")
    parser.add_argument("--measure", choices=["batch", "api"], help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure == "batch":
        print(json.dumps(measure_batch(args.home, args.uri, args.home.parent / "audience.parquet")))
        return
    if args.measure == "api":
        print(json.dumps(measure_api(args.home, args.uri)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    base, uri = build_base(args.work, args.base)
    sizes = sorted({args.base, args.customers // 4, args.customers})
    print(f"condition: {CONDITION}")
    print(
        f"{'path':<6} {'customers':>10} {'members':>8} {'seconds':>8} {'cust/s':>8} {'RSS ready MB':>13} "
        f"{'RSS scan peak MB':>17} {'process peak MB':>16}"
    )
    for n in sizes:
        home = base if n == args.base else tile(base, args.work / f"tiled-{n}" / "home", n)
        for mode in ("batch", "api"):
            cmd = [sys.executable, __file__, "--measure", mode, "--home", str(home), "--uri", uri]
            got = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            customers = got["customers"] or n
            print(
                f"{mode:<6} {customers:>10,.0f} {got['members']:>8,.0f} {got['seconds']:>8.2f} "
                f"{customers / got['seconds']:>8,.0f} {got['rss_ready_mb']:>13,.0f} {got['rss_scan_peak_mb']:>17,.0f} "
                f"{got['rss_process_peak_mb']:>16,.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
