"""Benchmark: the basket models (TIFU-KNN, UP-CF@r, EASE, the co-occurrence count) against the
frequency baselines on a temporal split, with default parameters (nothing tuned).

    .venv/bin/python bench/recs_models.py [--dataset synth|online_retail_ii|complete_journey]
        [--customers 2000] [--test-days 60] [--k 10] [--seed 0] [--work var/bench]

The data set is ingested through its built-in mapping into ``--work`` (the synthetic world is
generated first, ``--customers`` persons). Split: purchases before ``T = last day - test days`` train
every model; the test customers are those with a training basket and a basket in the test window.

- next basket: each test customer's first test basket is the target; recall@k and NDCG@k averaged
  over customers (:mod:`models.recs.metrics`).
- basket completion (customer not passed): every test basket of 2+ training-known items, one item
  held out at random (``--seed``), the rest as the cart; hit rate@k (= recall@k, one relevant item).

Prints fit seconds and the figures. Figures only, no assertion; the real data sets need ../shared/data.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path and bench/features.py would shadow the package.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]
SHARED = ROOT.parent / "shared" / "data"


def _home(dataset: str, work: Path, customers: int) -> Path:
    from features.ingest import ingest
    from features.mapping import load_mapping

    home = work / dataset / "home"
    if (home / "ingested" / "order_lines.parquet").is_file():
        return home
    if dataset == "synth":
        from synth import generate_world

        raw = work / dataset / "raw"
        generate_world(customers, 7, raw)
        ingest(raw, load_mapping("synthetic"), home, now=datetime(2026, 6, 1, tzinfo=UTC))
    else:
        ingest(SHARED / dataset, load_mapping(dataset), home, now=datetime(2026, 6, 1, tzinfo=UTC))
    return home


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="synth", choices=["synth", "online_retail_ii", "complete_journey"])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--test-days", type=int, default=60)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()

    import numpy as np
    import pandas as pd

    from models.recs.base import IX, InteractionKind, Query, interactions_from_tables
    from models.recs.baselines import GlobalPersonalTopFreq, GlobalTopFreq, PersonalTopFreq
    from models.recs.cooccurrence import BoughtTogether
    from models.recs.cooccurrence_count import CooccurrenceCount
    from models.recs.ease import EASE
    from models.recs.metrics import ndcg_at_k, recall_at_k
    from models.recs.tifuknn import TIFUKNN
    from models.recs.upcf import UPCF

    home = _home(args.dataset, args.work.resolve(), args.customers)
    folder = home / "ingested"
    interactions = interactions_from_tables(pd.read_parquet(folder / "order_lines.parquet"))
    items = pd.read_parquet(folder / "items.parquet")
    buys = interactions[interactions[IX.EVENT] == InteractionKind.PURCHASE.value]
    buys = buys[buys[IX.ITEM].notna() & buys[IX.BASKET].notna() & buys[IX.TS].notna()]
    split = buys[IX.TS].max().normalize() - pd.Timedelta(days=args.test_days)
    train, test = buys[buys[IX.TS] < split], buys[buys[IX.TS] >= split]
    test = test[test[IX.CUSTOMER].notna()]
    known_customers = set(train[IX.CUSTOMER].dropna().astype(str))
    known_items = set(train[IX.ITEM].astype(str))
    print(
        f"{args.dataset}: {len(train):,} training lines ({train[IX.BASKET].nunique():,} baskets, "
        f"{len(known_items):,} items, {len(known_customers):,} customers); split at {split.date()}"
    )

    first_ts = test.groupby(IX.CUSTOMER)[IX.TS].transform("min")
    first = test[test[IX.TS] == first_ts]
    first_basket = first.groupby(IX.CUSTOMER)[IX.BASKET].transform("first")
    first = first[first[IX.BASKET] == first_basket]
    targets = {str(c): set(g[IX.ITEM].astype(str)) for c, g in first.groupby(IX.CUSTOMER) if str(c) in known_customers}
    rng = np.random.default_rng(args.seed)
    carts: list[tuple[tuple[str, ...], str]] = []
    for _, g in test.groupby(IX.BASKET, sort=True):
        basket = sorted(set(g[IX.ITEM].astype(str)) & known_items)
        if len(basket) >= 2:
            held = basket[int(rng.integers(len(basket)))]
            carts.append((tuple(i for i in basket if i != held), held))
    print(f"next basket: {len(targets):,} test customers; completion: {len(carts):,} test carts")

    def timed(model):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        model.fit(train, items)
        return model, time.perf_counter() - started

    k = args.k
    rows = []
    next_models = {
        "G-TopFreq": GlobalTopFreq(),
        "P-TopFreq": PersonalTopFreq(),
        "GP-TopFreq": GlobalPersonalTopFreq(),
        "TIFU-KNN (m=7, rb=.9, rg=.7, k=300, a=.7)": TIFUKNN(),
        "UP-CF@r (r=5, a=.25, q=5, k=300)": UPCF(),
        "EASE (customer rows, l2=500)": EASE(),
    }
    customers = sorted(targets)
    for name, model in next_models.items():
        fitted, secs = timed(model)
        started = time.perf_counter()
        answers = fitted.recommend_batch([Query(customer_key=c) for c in customers], k)
        per_query = (time.perf_counter() - started) / max(len(customers), 1) * 1000
        recs = [[r.item_id for r in a] for a in answers]
        recall = np.mean([recall_at_k(r, targets[c], k) for r, c in zip(recs, customers, strict=True)])
        ndcg = np.mean([ndcg_at_k(r, targets[c], k) for r, c in zip(recs, customers, strict=True)])
        rows.append(("next basket", name, recall, ndcg, secs, per_query))
    completion_models = {
        "item popularity (G-TopFreq)": GlobalTopFreq(),
        "co-occurrence count": CooccurrenceCount(),
        "bought together (cosine)": BoughtTogether(),
        "EASE (basket rows, l2=500)": EASE(rows="basket"),
    }
    for name, model in completion_models.items():
        fitted, secs = timed(model)
        started = time.perf_counter()
        answers = fitted.recommend_batch([Query(cart=cart) for cart, _ in carts], k)
        per_query = (time.perf_counter() - started) / max(len(carts), 1) * 1000
        hits = [held in {r.item_id for r in a} for a, (_, held) in zip(answers, carts, strict=True)]
        rows.append(("completion", name, float(np.mean(hits)), float("nan"), secs, per_query))
    table = pd.DataFrame(rows, columns=["task", "model", f"recall@{k}", f"ndcg@{k}", "fit s", "ms/query"])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
