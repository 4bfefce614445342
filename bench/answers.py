"""Record what the API answers on a built home, to compare two builds or two versions of the code.

    python bench/answers.py --data var/demo/data --tracking-uri sqlite:///var/demo/mlflow.db --out a.json
    python bench/answers.py --compare a.json b.json

The app runs in process (FastAPI's TestClient, the demo key) with a fixed decision time, and asks every
answering endpoint about a fixed sample of customers and items: scores with reasons, the four kinds of
recommendations, permissions, send times, next-best offers and a campaign. What changes from call to
call by design (request ids, load times, the registry's run ids and timestamps) is left out; everything
else is written as JSON, sorted, so that ``--compare`` names the first difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path and bench/features.py would shadow the package.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

NOW = "2026-01-02T10:00:00Z"
VOLATILE = {"request_id", "loaded_at", "trained_at", "run_id", "generated_at", "took_ms", "elapsed_ms"}


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def record(data: Path, tracking_uri: str, customers: int = 40) -> dict[str, Any]:
    """Every endpoint's answer about the first ``customers`` customers of the snapshot and their items."""
    import pandas as pd
    from fastapi.testclient import TestClient

    from features.store import latest_snapshot
    from serving.app import create_app
    from serving.settings import Settings

    snapshot = latest_snapshot(data)
    keys = pd.read_parquet(snapshot.path / "features.parquet", columns=["customer_key"])["customer_key"]
    ids_map = pd.read_parquet(data / "ingested" / "identity_map.parquet")
    id_col = "customer_id" if "customer_id" in ids_map.columns else ids_map.columns[0]
    key_col = "customer_key"
    known = ids_map[ids_map[key_col].isin(set(keys.head(customers * 3)))]
    ids = [*sorted({str(v) for v in known[id_col]})[:customers], "no-such-customer"]
    lines = pd.read_parquet(data / "ingested" / "order_lines.parquet", columns=["item_id"])
    items = [str(v) for v in lines["item_id"].value_counts().index[:12]]
    with tempfile.TemporaryDirectory() as cache:
        settings = Settings(  # development: the demo key
            environment="development",
            data_home=data,
            tracking_uri=tracking_uri,
            model_cache_dir=Path(cache),
            log_json=False,
        )
        with TestClient(create_app(settings)) as client:
            head = {"X-API-Key": "kairos-demo-key"}
            out: dict[str, Any] = {}

            def ask(name: str, path: str, body: dict[str, Any] | None = None) -> None:
                answer = (
                    client.post(path, json=body, headers=head) if body is not None else client.get(path, headers=head)
                )
                out[name] = {"status": answer.status_code, "body": _clean(answer.json())}

            ask("models", "/v1/models")
            ask("scores", "/v1/scores", {"customer_ids": ids, "reasons": True})
            for i, item in enumerate(items[:6]):
                cart = items[i : i + 3]
                ask(f"cart_{i}", "/v1/recommendations/cart", {"cart": cart, "k": 10})
                ask(f"cart_known_{i}", "/v1/recommendations/cart", {"cart": cart, "customer_id": ids[i], "k": 10})
                ask(f"similar_{i}", "/v1/recommendations/similar", {"item_id": item, "k": 10})
            for i, cid in enumerate(ids[:10]):
                ask(f"customer_{i}", "/v1/recommendations/customer", {"customer_id": cid, "k": 10})
                ask(f"buy_again_{i}", "/v1/recommendations/buy-again", {"customer_id": cid, "k": 10})
                ask(f"next_best_{i}", "/v1/offers/next-best", {"customer_id": cid, "now": NOW})
            permissions = [{"customer_id": c, "channel": ch} for c in ids for ch in ("email", "sms", "push")]
            ask("permissions", "/v1/permissions", {"items": permissions, "now": NOW})
            for channel in ("email", "sms", "push"):
                ask(f"send_time_{channel}", "/v1/send-time", {"customer_ids": ids, "channel": channel, "now": NOW})
            ask("campaign", "/v1/offers/campaign", {"customer_ids": ids, "budget": 200.0, "now": NOW})
    return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The names of the answers that differ (with the first differing path of each)."""

    def first(x: Any, y: Any, path: str) -> str | None:
        if type(x) is not type(y):
            return path
        if isinstance(x, dict):
            for k in sorted(set(x) | set(y)):
                if k not in x or k not in y:
                    return f"{path}.{k}"
                found = first(x[k], y[k], f"{path}.{k}")
                if found:
                    return found
            return None
        if isinstance(x, list):
            if len(x) != len(y):
                return f"{path}[len {len(x)} vs {len(y)}]"
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                found = first(u, v, f"{path}[{i}]")
                if found:
                    return found
            return None
        return None if x == y else f"{path}: {x!r} vs {y!r}"

    return [d for name in sorted(set(a) | set(b)) if (d := first(a.get(name), b.get(name), name))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--tracking-uri")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = parser.parse_args(argv)
    if args.compare:
        a, b = (json.loads(p.read_text(encoding="utf-8")) for p in args.compare)
        diffs = compare(a, b)
        answers = sum(len(v["body"].get("items") or [None]) if isinstance(v["body"], dict) else 1 for v in a.values())
        print(f"{len(a)} requests ({answers} answers) compared; {len(diffs)} differ")
        for d in diffs[:20]:
            print("  ", d[:300])
        return 1 if diffs else 0
    if not (args.data and args.tracking_uri and args.out):
        parser.error("--data, --tracking-uri and --out (or --compare A B)")
    answers = record(args.data, args.tracking_uri)
    args.out.write_text(json.dumps(answers, indent=1, sort_keys=True), encoding="utf-8")
    statuses: dict[int, int] = {}
    for v in answers.values():
        statuses[v["status"]] = statuses.get(v["status"], 0) + 1
    print(f"{len(answers)} requests recorded to {args.out}; statuses {statuses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
