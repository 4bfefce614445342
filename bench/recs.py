"""Benchmark: fit every recommender on the full Online Retail II, then answer cart queries.

    .venv/bin/python bench/recs.py [--work var/bench] [--queries 2000]

Prints each fit's seconds (aim: all of them under 2 minutes on 2 cores), including every model the
training job's gate may serve (the re-purchase ranker, the cart blend, TIFU-KNN, UP-CF@r, GP-TopFreq, the
co-occurrence count), and the in-process latency of the answers the API gives
(:class:`bundles.recs.RecsModel`, k = 10, business rules on, topped up from popular) with each servable model
in its slot, each next to its floor measured in the same run, a bare lookup of a precomputed top-10 table
(a dict of key -> list), and as a ratio to it:

- a cart answer (3 items, a known customer; aim < 1 ms), served by bought together, the cart blend or the
  co-occurrence count;
- a next-basket answer (``for_customer``; aim < 5 ms), served by repeat + personal, the re-purchase ranker,
  TIFU-KNN, UP-CF@r or GP-TopFreq, without today's events and with them folded in (a view, an add-to-cart
  and an order since the snapshot, read into a ``RecentActivity`` per query as the API does).

Needs ../shared/data (skips without it, fails under CI=true). Figures only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path and bench/features.py would shadow the package.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]
ORII = ROOT.parent / "shared" / "data" / "online_retail_ii"


def _timed(fn):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def _latency(name: str, aim_us: float, queries, answer, floor_of) -> None:  # type: ignore[no-untyped-def]
    """Median and p99 of ``answer(q)`` and of the floor lookup ``floor_of(q)``, alternated per query."""
    import numpy as np

    for q in queries[:50]:  # warm caches
        answer(q)
        floor_of(q)
    lat, floor = [], []
    for q in queries:  # alternate, so both see the same machine state
        t0 = time.perf_counter()
        out = answer(q)
        t1 = time.perf_counter()
        floor_of(q)
        t2 = time.perf_counter()
        lat.append((t1 - t0) * 1e6)
        floor.append((t2 - t1) * 1e6)
        assert len(out.items) == 10
    med, p99 = statistics.median(lat), float(np.percentile(lat, 99))
    fmed = statistics.median(floor)
    print(f"{name}, {len(queries):,} queries:")
    print(f"  median {med:8.1f} µs   p99 {p99:8.1f} µs   (aim < {aim_us:,.0f} µs: {med / aim_us:.2f}x of it)")
    print(f"  floor: precomputed table lookup, median {fmed:6.2f} µs   ratio {med / fmed:,.0f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    if not (ORII / "year_2009_2010.parquet").is_file():
        if os.environ.get("CI") == "true":
            print(f"error: Online Retail II not found in {ORII}", file=sys.stderr)
            return 1
        print(f"skipped: Online Retail II not found in {ORII}")
        return 0

    import numpy as np

    from bundles.recs import CART_KNOWN_SLOT, NEXT_BASKET_SLOT, Filters, RecsModel
    from features.ingest import ingest
    from features.mapping import load_mapping
    from features.realtime import Event
    from models.recs.base import Query
    from models.recs.baselines import GlobalPersonalTopFreq
    from models.recs.blend import RepeatThenPersonal
    from models.recs.buy_again import BuyAgain
    from models.recs.cart_blend import CartBlend
    from models.recs.cooccurrence import BoughtTogether
    from models.recs.cooccurrence_count import CooccurrenceCount
    from models.recs.personal import ImplicitRecommender, RecentActivity
    from models.recs.popular import Popular
    from models.recs.repeat_ranker import RepeatRanker
    from models.recs.rules import CustomerHistory, ItemCatalogue
    from models.recs.similar import SimilarItems
    from models.recs.tifuknn import TIFUKNN
    from models.recs.upcf import UPCF
    from training.recs_eval import UPCF_NEIGHBOURS, load_home

    home = args.work.resolve() / "orii" / "home"
    if not (home / "ingested" / "ingest_report.json").is_file():
        ingest(ORII, load_mapping("online_retail_ii"), home, now=datetime(2026, 6, 1, tzinfo=UTC))
    interactions, items = load_home(home)
    print(f"Online Retail II: {len(interactions):,} purchase lines, {len(items):,} items")

    fits: dict[str, float] = {}
    together, fits["bought together"] = _timed(lambda: BoughtTogether().fit(interactions, items))
    personal, fits["implicit ALS"] = _timed(lambda: ImplicitRecommender().fit(interactions, items))
    repeat, fits["repeat + personal (own items)"] = _timed(
        lambda: RepeatThenPersonal(personal=personal).fit(interactions, items)
    )
    similar, fits["similar items"] = _timed(lambda: SimilarItems(base=personal).fit(interactions, items))
    buy_again, fits["buy again"] = _timed(lambda: BuyAgain().fit(interactions, items))
    popular, fits["popular"] = _timed(lambda: Popular().fit(interactions, items))
    catalogue = ItemCatalogue.from_items(items)
    history, fits["catalogue + purchase history"] = _timed(lambda: CustomerHistory().fit(interactions, catalogue))
    # the models the training job's gate may serve (bundles/recs.py SERVABLE), each fitted once here
    candidates: dict[str, Any] = {}
    for label, make in (
        ("kairos:repeat_ranker", RepeatRanker),
        ("kairos:cart_blend", CartBlend),
        ("baseline:tifuknn", TIFUKNN),
        ("baseline:upcf", lambda: UPCF(n_neighbours=UPCF_NEIGHBOURS)),
        ("baseline:gp_topfreq", GlobalPersonalTopFreq),
        ("baseline:cooccurrence_count", CooccurrenceCount),
    ):
        candidates[label], fits[f"{label} (servable)"] = _timed(lambda make=make: make().fit(interactions, items))
    for name, secs in fits.items():
        print(f"  fit {name:40s} {secs:7.2f} s")
    served_fits = sum(v for k, v in fits.items() if "servable" not in k)
    print(f"  fit the bundle's own parts                {served_fits:7.2f} s")
    for label in ("kairos:repeat_ranker", "kairos:cart_blend"):
        total = served_fits + fits[f"{label} (servable)"]
        print(f"  ... + {label:34s} {total:7.2f} s   (aim < 120 s: {total / 120:.2f}x of budget)")
    total = sum(fits.values())
    print(f"  fit all, every servable model included    {total:7.2f} s   (aim < 120 s: {total / 120:.2f}x of budget)")

    rng = np.random.default_rng(0)
    baskets = interactions.groupby("order_id")["item_id"].apply(lambda s: list(dict.fromkeys(s)))
    baskets = baskets[baskets.map(len) >= 3]
    picks = rng.choice(len(baskets), size=args.queries, replace=True)
    carts = [tuple(baskets.iloc[i][:3]) for i in picks]
    customers = interactions["customer_key"].dropna().unique()
    who = [str(c) for c in rng.choice(customers, size=args.queries)]
    legacy = RecsModel(together, repeat, similar, buy_again, popular, catalogue, history, {})
    none = Filters()
    cart_table = {item: together.recommend(Query(cart=(item,)), 10) for item in {c[0] for c in carts}}
    print()
    for label in ("kairos:bought_together", "kairos:cart_blend", "baseline:cooccurrence_count"):
        served = {
            CART_KNOWN_SLOT: (
                label,
                legacy.served[CART_KNOWN_SLOT][1] if label not in candidates else candidates[label],
            )
        }
        model = RecsModel(together, repeat, similar, buy_again, popular, catalogue, history, {}, served)
        _latency(
            f"cart answer served by {label} (3 items, known customer, k=10, rules on)",
            1_000,
            list(zip(carts, who, strict=True)),
            lambda q, model=model: model.cart(q[0], q[1], 10, none),
            lambda q: cart_table[q[0][0]],
        )
    next_table = {c: legacy.for_customer(c, 10, none).items for c in set(who)}
    nexts = {"kairos:repeat_personal": repeat} | {
        label: candidates[label]
        for label in ("kairos:repeat_ranker", "baseline:tifuknn", "baseline:upcf", "baseline:gp_topfreq")
    }
    for label, part in nexts.items():
        model = RecsModel(
            together, repeat, similar, buy_again, popular, catalogue, history, {}, {NEXT_BASKET_SLOT: (label, part)}
        )
        _latency(
            f"next-basket answer served by {label} (known customer, k=10, rules on), no events since the snapshot",
            5_000,
            who,
            lambda c, model=model: model.for_customer(c, 10, none),
            lambda c: next_table[c],
        )
    # Today's events: a view, an add-to-cart and an order of three catalogue items, an hour after the data's end.
    end = interactions["ts"].max().to_pydatetime()
    items_all = catalogue.item_ids
    todays = {}
    for c in set(who):
        a, b, o = (str(items_all[i]) for i in rng.choice(len(items_all), size=3, replace=False))
        todays[c] = [
            Event(type=kind, timestamp=end + timedelta(hours=1, minutes=m), customer_key=c, item_id=item)
            for m, (kind, item) in enumerate((("view", a), ("add_to_cart", b), ("order", o)))
        ]
    clock = end + timedelta(hours=2)
    for label, part in nexts.items():
        model = RecsModel(
            together, repeat, similar, buy_again, popular, catalogue, history, {}, {NEXT_BASKET_SLOT: (label, part)}
        )
        _latency(
            f"next-basket answer served by {label} with today's events folded in (1 view, 1 add-to-cart, 1 order)",
            5_000,
            who,
            lambda c, model=model: model.for_customer(c, 10, none, RecentActivity.from_events(c, todays[c], clock)),
            lambda c: next_table[c],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
