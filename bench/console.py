"""Benchmark: the console's server time per page on a built home (``make demo-build``'s), p50 and p95.

    .venv/bin/python bench/console.py [--data var/demo/data] [--tracking-uri sqlite:///var/demo/mlflow.db]
                                      [--repeat 30] [--customers 10]

The app is built in process as ``kairos serve --dev`` builds it (every model the demo registers loaded
first), signed in with the demo key, and each page is asked for ``--repeat`` times (customer pages: each
of ``--customers`` customers in turn) after one warm-up request. A request's time is the app's own,
measured around the ASGI call by Starlette's test client: no network and no browser (vega renders charts
in the browser afterwards). The figures go to docs/performance.md as printed. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path and bench/features.py would shadow the package.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

KEY = "kairos-demo-key"  # development, no keys configured: the documented demo key


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "var/demo/data")
    parser.add_argument("--tracking-uri", default=f"sqlite:///{ROOT / 'var/demo/mlflow.db'}")
    parser.add_argument("--cache", type=Path, default=ROOT / "var/bench/console-cache")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--customers", type=int, default=10)
    args = parser.parse_args()

    import pandas as pd
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.settings import Settings

    settings = Settings(  # type: ignore[call-arg]
        environment="development",
        data_home=args.data,
        tracking_uri=args.tracking_uri,
        model_cache_dir=args.cache,
        log_json=False,
    )
    ids = pd.read_parquet(args.data / "ingested" / "identity_map.parquet")["customer_id"].astype(str)
    customers = ids.drop_duplicates().head(args.customers).tolist()
    with TestClient(create_app(settings)) as client:
        page = client.get("/console/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        client.post("/console/sign-in", data={"csrf_token": token.group(1), "api_key": KEY})
        pages: dict[str, list[str]] = {
            "overview /console": ["/console"],
            "segments /console/segments": ["/console/segments"],
            "customer search /console/customers": ["/console/customers"],
            "one customer /console/customers/{id}": [f"/console/customers/{c}" for c in customers],
            "contact fragment /console/customers/{id}/contact": [f"/console/customers/{c}/contact" for c in customers],
            "models /console/models": ["/console/models"],
            "one model /console/models/churn": ["/console/models/churn"],
        }
        print(f"data {args.data}, {len(ids):,} source ids; {args.repeat} requests a page after one warm-up")
        print(f"{'page':52s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}")
        for name, paths in pages.items():
            for path in paths:
                assert client.get(path).status_code == 200, path  # warm-up, and the page works
            times = []
            for i in range(args.repeat):
                path = paths[i % len(paths)]
                t = time.perf_counter()
                r = client.get(path)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, path
            print(f"{name:52s} {_quantile(times, 0.5):8.1f} {_quantile(times, 0.95):8.1f} {max(times):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
