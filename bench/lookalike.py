"""Benchmark: lookalike audiences against random and RFM-nearest customers, on a synthetic world's hidden
segment and on two real exports.

    .venv/bin/python bench/lookalike.py [--customers 6000] [--work var/bench-lookalike] [--skip-real]

- **Synthetic**: the world's hidden segment (``synth.truth.hidden_segment``: buyers whose favourite
  category is Pet, at least 40 % of their basket; no column of the export names it). Half of its members
  (drawn with a fixed seed) are the seed; precision and recall at N (N = the other half's size, and 100)
  of each ranking against the other half, the seed excluded from every ranking.
- **Real** (Online Retail II and Complete Journey, ingested from ../shared/data): the seed is every customer
  who bought the category before the date; the features (and the category mix) are as of the date; the
  figure is how many of the top N (seed excluded) buy the category in the 90 days after it. Online Retail
  II has no categories: its "category" is every item whose name contains a keyword (``LUNCH BAG``).

Rankings: ``pu`` (bagged positive-unlabelled logistic regression), ``embedding`` (nearest seed
customers in a PCA embedding), ``rfm-nearest`` (distance to the seed's centre in log recency, orders and
spend) and ``random`` (the expected share: members or buyers among all the ranked customers).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]
SHARED = ROOT.parent / "shared" / "data"
NOW = datetime(2026, 6, 1, tzinfo=UTC)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from features.contract import Col  # noqa: E402
from models.lookalike import Lookalike, category_mix, precision_recall_at, rfm_nearest_scores  # noqa: E402


def _rankings(base: pd.DataFrame, seed: list[str]) -> dict[str, tuple[list[str], float]]:
    """Every method's ranking of the base without the seed, and its fit + rank seconds."""
    out: dict[str, tuple[list[str], float]] = {}
    for method in ("pu", "embedding"):
        began = time.perf_counter()
        ranked = Lookalike(method=method).fit(base, seed).rank(base, reasons=0)
        out[method] = (ranked[Col.CUSTOMER_KEY].tolist(), time.perf_counter() - began)
    keys = base[Col.CUSTOMER_KEY].astype(str).to_numpy()
    began = time.perf_counter()
    scores = rfm_nearest_scores(base, seed)
    keep = ~np.isin(keys, seed)
    order = np.lexsort((keys[keep], -scores[keep]))
    out["rfm-nearest"] = (keys[keep][order].tolist(), time.perf_counter() - began)
    return out


def _base(home: Path, as_of: datetime) -> pd.DataFrame:
    from features.store import build_snapshot, snapshot_as_of

    try:
        snap = snapshot_as_of(home, as_of)
    except Exception:
        snap = build_snapshot(home, as_of=as_of)
    features = snap.read()
    lines, items = _lines(home)
    mix = category_mix(lines[lines[Col.ORDERED_AT] < pd.Timestamp(as_of)], items)
    return features.merge(mix, on=Col.CUSTOMER_KEY, how="left")


def _lines(home: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    ingested = home / "ingested"
    lines = pd.read_parquet(ingested / "order_lines.parquet", columns=[Col.CUSTOMER_KEY, Col.ITEM_ID, Col.ORDERED_AT])
    lines = lines[lines[Col.CUSTOMER_KEY].notna()]
    lines[Col.ORDERED_AT] = pd.to_datetime(lines[Col.ORDERED_AT], utc=True)
    return lines, pd.read_parquet(ingested / "items.parquet")


def synthetic(work: Path, customers: int) -> list[dict[str, object]]:
    from features.ingest import ingest
    from features.mapping import load_mapping
    from features.store import build_snapshot, latest_snapshot
    from synth import generate_world
    from synth.truth import hidden_segment

    root = work / f"synth{customers // 1000}k"
    if not (root / "raw" / "truth" / "world.json").is_file():
        generate_world(customers, 11, root / "raw")
    if not (root / "home" / "snapshots").is_dir():
        ingest(root / "raw", load_mapping("synthetic"), root / "home", now=datetime(2026, 1, 1, tzinfo=UTC))
        build_snapshot(root / "home")
    as_of = latest_snapshot(root / "home").as_of
    base = _base(root / "home", as_of)
    hidden = hidden_segment(
        root / "raw" / "truth", pd.read_parquet(root / "home" / "ingested" / "identity_map.parquet")
    )
    members = sorted(set(hidden.loc[hidden["member"], Col.CUSTOMER_KEY]) & set(base[Col.CUSTOMER_KEY]))
    rng = np.random.default_rng(0)
    seed = sorted(rng.choice(members, len(members) // 2, replace=False).tolist())
    rest = set(members) - set(seed)
    ranked = len(base) - len(seed)
    rows: list[dict[str, object]] = []
    for n in (len(rest), 100):
        rows.append(
            {
                "data": f"synthetic {customers:,}",
                "method": "random",
                "N": n,
                "precision": len(rest) / ranked,
                "recall": n / ranked,
                "seconds": 0.0,
                "seed": len(seed),
                "targets": len(rest),
            }
        )
    for method, (order, seconds) in _rankings(base, seed).items():
        for n in (len(rest), 100):
            p, r = precision_recall_at(order, rest, n)
            rows.append(
                {
                    "data": f"synthetic {customers:,}",
                    "method": method,
                    "N": n,
                    "precision": p,
                    "recall": r,
                    "seconds": seconds,
                    "seed": len(seed),
                    "targets": len(rest),
                }
            )
    return rows


def real(name: str, work: Path, as_of: datetime, pick: str, by_name: bool) -> list[dict[str, object]]:
    from features.ingest import ingest
    from features.mapping import load_mapping

    home = work / name
    if not (home / "ingested" / "order_lines.parquet").is_file():
        ingest(SHARED / name, load_mapping(name), home, now=NOW)
    base = _base(home, as_of)
    lines, items = _lines(home)
    if by_name:
        chosen = set(items.loc[items[Col.NAME].fillna("").str.contains(pick, regex=False), Col.ITEM_ID])
    else:
        chosen = set(items.loc[items[Col.CATEGORY] == pick, Col.ITEM_ID])
    if not chosen:
        raise SystemExit(f"{name}: no item matches {pick!r}")
    hit = lines[lines[Col.ITEM_ID].isin(chosen)]
    before = set(hit.loc[hit[Col.ORDERED_AT] < pd.Timestamp(as_of), Col.CUSTOMER_KEY])
    window = (hit[Col.ORDERED_AT] >= pd.Timestamp(as_of)) & (
        hit[Col.ORDERED_AT] < pd.Timestamp(as_of + timedelta(days=90))
    )
    after = set(hit.loc[window, Col.CUSTOMER_KEY]) - before
    seed = sorted(before & set(base[Col.CUSTOMER_KEY]))
    ranked = len(base) - len(seed)
    label = f"{name} ({pick}, {as_of.date()})"
    rows: list[dict[str, object]] = []
    for n in (100, 500):
        rows.append(
            {
                "data": label,
                "method": "random",
                "N": n,
                "precision": len(after) / ranked,
                "recall": n / ranked,
                "seconds": 0.0,
                "seed": len(seed),
                "targets": len(after),
            }
        )
    for method, (order, seconds) in _rankings(base, seed).items():
        for n in (100, 500):
            p, r = precision_recall_at(order, after, n)
            rows.append(
                {
                    "data": label,
                    "method": method,
                    "N": n,
                    "precision": p,
                    "recall": r,
                    "seconds": seconds,
                    "seed": len(seed),
                    "targets": len(after),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=6000)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench-lookalike")
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = synthetic(args.work, args.customers)
    if not args.skip_real:
        rows += real("complete_journey", args.work, datetime(2017, 7, 1, tzinfo=UTC), "BABY FOODS", by_name=False)
        rows += real("online_retail_ii", args.work, datetime(2011, 6, 1, tzinfo=UTC), "LUNCH BAG", by_name=True)
    table = pd.DataFrame(rows)
    print("| data | seed | targets | method | N | precision@N | recall@N | fit + rank s |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for r in table.itertuples(index=False):
        print(
            f"| {r.data} | {r.seed:,} | {r.targets:,} | {r.method} | {r.N:,} | {r.precision:.3f} | {r.recall:.3f} | "
            f"{r.seconds:.2f} |"
        )


if __name__ == "__main__":
    main()
