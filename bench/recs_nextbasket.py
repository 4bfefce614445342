"""Benchmark: protocol (b), the last basket held out, for the learned next-basket model (RepeatRanker)
against the next-basket baselines (G/P/GP-TopFreq, TIFU-KNN, UP-CF@r) and Kairos repeat + personal;
with ``--task completion``, protocol (c) on the same held-out baskets (one item hidden, the rest as the
cart), with the customer known and anonymous, for Kairos cart blend (CartBlend) and Kairos bought
together against G/P/GP-TopFreq and the co-occurrence count.

    .venv/bin/python bench/recs_nextbasket.py --dataset synth|online_retail_ii|complete_journey
        [--task next|completion] [--seeds 3] [--test-users 0.2] [--customers N] [--work var/bench]

The homes are those of ``bench/recs_models.py`` (ingested through the built-in mappings; the synthetic
world has 2,000 persons, seed 7). ``--customers N`` keeps a seeded random N of the customers (every
interaction of the others is left out, guests too) to keep a run modest; say so when quoting figures.
Prints the summary over seeds with recall@10 differences to the best baseline and paired bootstrap
95 % intervals over the test users of every seed. Figures only, no assertion.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]


def main() -> int:
    import numpy as np
    import pandas as pd

    from models.recs.base import IX
    from models.recs.blend import RepeatThenPersonal
    from models.recs.cart_blend import CartBlend
    from models.recs.cooccurrence import BoughtTogether
    from models.recs.repeat_ranker import RepeatRanker
    from training.recs_eval import (
        BASKET_COMPLETION,
        baseline_models,
        baseline_tasks,
        evaluate_last_basket,
        load_home,
        next_basket_models,
    )

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="synth", choices=["synth", "online_retail_ii", "complete_journey"])
    parser.add_argument("--task", default="next", choices=["next", "completion"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--test-users", type=float, default=0.2)
    parser.add_argument("--customers", type=int, default=0, help="keep a random N customers (0: all)")
    parser.add_argument("--no-repeat-personal", action="store_true", help="leave Kairos repeat + personal out")
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    home = args.work.resolve() / args.dataset / "home"
    if not (home / "ingested" / "order_lines.parquet").is_file():
        raise SystemExit(f"{home} is not ingested: run bench/recs_models.py --dataset {args.dataset} first")
    interactions, items = load_home(home)
    if args.customers:
        keys = np.sort(interactions[IX.CUSTOMER].dropna().astype(str).unique())
        kept = set(np.random.default_rng(0).choice(keys, size=min(args.customers, len(keys)), replace=False))
        interactions = interactions[interactions[IX.CUSTOMER].astype(str).isin(kept).to_numpy()]
        interactions = interactions.reset_index(drop=True)
    if args.task == "completion":
        tasks = baseline_tasks()
        baselines = {n: m for n, m in baseline_models().items() if BASKET_COMPLETION in tasks[n]}
        models = {**baselines, "Kairos bought together": BoughtTogether(), "Kairos cart blend": CartBlend()}
        modes = [("customer known", False), ("anonymous", True)]
    else:
        baselines = next_basket_models()
        models = dict(baselines)
        if not args.no_repeat_personal:
            models["Kairos repeat + personal"] = RepeatThenPersonal()
        models["Kairos repeat ranker"] = RepeatRanker()
        modes = [("next basket", False)]
    n_customers = interactions[IX.CUSTOMER].nunique()
    for label, anonymous in modes:
        began = time.perf_counter()
        result = evaluate_last_basket(
            models, interactions, items, 10, test_share=args.test_users, seeds=tuple(range(args.seeds)),
            task=BASKET_COMPLETION if args.task == "completion" else "next_basket", anonymous=anonymous,
        )  # fmt: skip
        summary = result.summary(baselines=list(baselines))
        with pd.option_context("display.width", 250, "display.max_columns", 30):
            print(f"{args.dataset} ({label}): {n_customers} customers, {time.perf_counter() - began:.0f} s")
            print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
            print(result.table.drop_duplicates("seed")["note"].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
