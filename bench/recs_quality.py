"""Benchmark: every recommender and baseline on every retailer under the three evaluation protocols, each
Kairos model against the best baseline of its task with a paired bootstrap 95 % interval.

    .venv/bin/python bench/recs_quality.py [--datasets online_retail_ii,complete_journey,synthetic]
        [--seeds 3] [--test-users 0.2] [--test-days 60] [--customers N] [--write-docs] [--work var/bench-recs-quality]
    .venv/bin/python bench/recs_quality.py --quick      # the samples under tests/data, one seed, the
                                                        # served candidates only: what CI runs

The protocols (training/recs_eval.py):

- **(a) temporal**: fit before the last ``--test-days`` days, judge after: next basket (every returning
  customer's purchases in the window), basket completion (one item of each test basket hidden, the rest
  the cart) with the customer known and anonymous (the same carts without the key);
- **(b) last basket held out**: the last basket of a random ``--test-users`` share of the customers with
  two or more baskets, ``--seeds`` splits; recall@10, NDCG@10, and recall over the items new to the
  customer (explore);
- **(c) completion on the held-out baskets**: the baskets of (b), one item hidden, with the customer known
  and anonymous.

Models: G/P/GP-TopFreq, TIFU-KNN, UP-CF@r and Kairos next basket (the re-purchase ranker) and Kairos
repeat + personal on next basket; G/P/GP-TopFreq (P and GP only with the customer known), the plain
co-occurrence count, Kairos cart blend and Kairos bought together (cosine) on completion, and under (a) the
other item-item models the cart blend chooses among (lift, PMI, EASE). Each non-baseline row has its recall@10
difference to the best baseline of that task (by recall@10) with the paired interval and the verdict: ``win``
(interval above zero), ``tie`` (straddles zero), ``loss`` (below zero). ``--write-docs`` replaces the table in
``docs/model-quality.md``. ``--customers N`` keeps a seeded random N customers of each data set (their lines
only; say so when quoting). Needs ../shared/data for the full run (``--quick`` needs only the repo).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path and bench/features.py would shadow the package.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]
SHARED = ROOT.parent / "shared" / "data"
SAMPLES = ROOT / "tests" / "data"
DOCS = ROOT / "docs" / "model-quality.md"
START, END = "<!-- recs-quality-bench:start -->", "<!-- recs-quality-bench:end -->"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
K = 10
DATASETS = ("online_retail_ii", "complete_journey", "synthetic")
PROTOCOL_A, PROTOCOL_B, PROTOCOL_C = "(a) temporal", "(b) last basket", "(c) last basket"


@dataclass
class Row:
    """One model on one task of one protocol of one data set."""

    dataset: str
    protocol: str
    task: str
    model: str
    n: int  # queries (a, c) or test users over the seeds (b)
    recall: float
    ndcg: float
    explore: float  # (b): recall over items new to the customer; NaN elsewhere
    best_baseline: str = ""
    diff: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.low != self.low:
            return "baseline" if not self.best_baseline and not self.note else ""
        return "win" if self.low > 0 else ("loss" if self.high < 0 else "tie")

    def cells(self) -> list[str]:
        def f(v: float) -> str:
            return "" if v != v else f"{v:.4f}"

        versus = (
            ""
            if self.diff != self.diff
            else f"{self.diff:+.4f} [{self.low:+.4f}, {self.high:+.4f}] vs {self.best_baseline}"
        )
        return [self.dataset, self.protocol, self.task, self.model, str(self.n), f(self.recall), f(self.ndcg),
                f(self.explore), versus, self.verdict or self.note]  # fmt: skip


def _sources(quick: bool, work: Path) -> dict[str, tuple[Callable[[], Path], str]]:
    def synthetic() -> Path:
        from synth import generate_world

        raw = work / "synthetic-raw"
        if not (raw / "customers.csv").is_file():
            generate_world(300 if quick else 2000, 7, raw, start=date(2024, 1, 1), end=date(2025, 12, 31))
        return raw

    def shared(name: str) -> Callable[[], Path]:
        return lambda: (SAMPLES / name) if quick else (SHARED / name)

    return {
        "online_retail_ii": (shared("online_retail_ii"), "online_retail_ii"),
        "complete_journey": (shared("complete_journey"), "complete_journey"),
        "synthetic": (synthetic, "synthetic"),
    }


def _home(name: str, work: Path, quick: bool) -> Path:
    from features.ingest import ingest
    from features.mapping import load_mapping

    home = work / name
    if not (home / "ingested" / "order_lines.parquet").is_file():
        source, mapping = _sources(quick, work)[name]
        ingest(source(), load_mapping(mapping), home, now=NOW)
    return home


#: ``--quick`` leaves out the models that only add figures, not the served choice: Kairos repeat + personal
#: (the factor model) and the item-item models the cart blend chooses among (lift, PMI, EASE).
LIGHT: list[bool] = [False]


def next_basket_models() -> tuple[dict[str, Any], dict[str, Any]]:
    """(baselines, Kairos models) judged on next basket (unfitted)."""
    from models.recs.blend import RepeatThenPersonal
    from models.recs.repeat_ranker import RepeatRanker
    from training.recs_eval import next_basket_models as baselines

    kairos: dict[str, Any] = {"Kairos next basket": RepeatRanker()}
    if not LIGHT[0]:
        kairos["Kairos repeat + personal"] = RepeatThenPersonal()
    return baselines(), kairos


def completion_models(anonymous: bool, item_models: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(baselines, Kairos models) judged on basket completion (unfitted); P/GP-TopFreq only with the customer
    known (anonymous, they are G-TopFreq); ``item_models`` adds lift, PMI and EASE."""
    from models.recs.cart_blend import CartBlend
    from models.recs.cooccurrence import BoughtTogether
    from models.recs.ease import EASE
    from training.recs_eval import BASKET_COMPLETION, PERSONAL_BASELINES, baseline_models, baseline_tasks

    tasks = baseline_tasks()
    baselines = {
        n: m
        for n, m in baseline_models().items()
        if BASKET_COMPLETION in tasks[n] and (not anonymous or n not in PERSONAL_BASELINES)
    }
    kairos: dict[str, Any] = {"Kairos cart blend": CartBlend(), "Kairos bought together": BoughtTogether()}
    if item_models:
        kairos |= {
            "Kairos lift": BoughtTogether(measure="lift"),
            "Kairos PMI": BoughtTogether(measure="pmi"),
            "Kairos EASE": EASE(rows="basket"),
        }
    return baselines, kairos


def protocol_a(name: str, interactions: Any, items: Any, test_days: int) -> list[Row]:
    """Protocol (a): one fit per model, judged on next basket, completion known and anonymous."""
    import pandas as pd

    from training.recs_eval import (
        BASKET_COMPLETION,
        BASKET_COMPLETION_ANONYMOUS,
        NEXT_BASKET,
        PERSONAL_BASELINES,
        evaluate,
        with_intervals,
    )

    nb_base, nb_kairos = next_basket_models()
    c_base, c_kairos = completion_models(anonymous=False, item_models=not LIGHT[0])
    anonymous_base = set(completion_models(anonymous=True, item_models=False)[0])
    models = {**nb_base, **c_base, **nb_kairos, **c_kairos}
    tasks: dict[str, tuple[str, ...]] = {}
    for model in models:
        wanted: list[str] = []
        if model in nb_base or model in nb_kairos:
            wanted.append(NEXT_BASKET)
        if model in c_base or model in c_kairos:
            wanted.append(BASKET_COMPLETION)
            if model in anonymous_base or model in c_kairos:
                wanted.append(BASKET_COMPLETION_ANONYMOUS)
        tasks[model] = tuple(wanted)
    end = pd.Timestamp(interactions["ts"].max())
    split = (end - timedelta(days=test_days)).floor("D").to_pydatetime()
    per_query: dict[tuple[str, str], Any] = {}
    table = evaluate(
        models, interactions, items, split, test_days, K, tasks=tasks,
        personal=PERSONAL_BASELINES | set(nb_kairos), per_query=per_query,
    )  # fmt: skip
    table = with_intervals(table, per_query, [*nb_base, *c_base], K)
    labels = {
        NEXT_BASKET: "next basket",
        BASKET_COMPLETION: "completion, known",
        BASKET_COMPLETION_ANONYMOUS: "completion, anonymous",
    }
    rows = []
    for r in table.to_dict(orient="records"):
        rows.append(
            Row(
                name, PROTOCOL_A, labels[r["task"]], r["model"], int(r["queries"]), r[f"recall@{K}"], r[f"ndcg@{K}"],
                float("nan"), r["best_baseline"] or "", r[f"recall@{K}_diff"], r[f"recall@{K}_diff_low"],
                r[f"recall@{K}_diff_high"], "" if r["evaluated"] else str(r["note"])[:60],
            )
        )  # fmt: skip
    return rows


def _summary_rows(name: str, protocol: str, task: str, summary: Any) -> list[Row]:
    rows = []
    for r in summary.to_dict(orient="records"):
        diff = r.get(f"recall@{K}_diff", float("nan"))
        rows.append(
            Row(
                name, protocol, task, r["model"], int(r["users"]), r[f"recall@{K}"], r[f"ndcg@{K}"],
                r[f"explore_recall@{K}"] if task == "next basket" else float("nan"),
                r.get("best_baseline", "") if diff == diff else "", diff,
                r.get(f"recall@{K}_diff_low", float("nan")), r.get(f"recall@{K}_diff_high", float("nan")),
            )
        )  # fmt: skip
    return rows


def protocols_b_c(name: str, interactions: Any, items: Any, seeds: int, test_users: float) -> list[Row]:
    """Protocol (b) on next basket and (c) on completion (known, anonymous), the same held-out baskets."""
    from training.recs_eval import BASKET_COMPLETION, NEXT_BASKET, evaluate_last_basket

    nb_base, nb_kairos = next_basket_models()
    result = evaluate_last_basket(
        {**nb_base, **nb_kairos}, interactions, items, K, test_share=test_users, seeds=tuple(range(seeds)),
        task=NEXT_BASKET,
    )  # fmt: skip
    rows = _summary_rows(name, PROTOCOL_B, "next basket", result.summary(baselines=list(nb_base)))
    for mode, anonymous in (("completion, known", False), ("completion, anonymous", True)):
        base, kairos = completion_models(anonymous=anonymous, item_models=False)
        result = evaluate_last_basket(
            {**base, **kairos}, interactions, items, K, test_share=test_users, seeds=tuple(range(seeds)),
            task=BASKET_COMPLETION, anonymous=anonymous,
        )  # fmt: skip
        rows += _summary_rows(name, PROTOCOL_C, mode, result.summary(baselines=list(base)))
    return rows


def _keep_customers(interactions: Any, n: int) -> Any:
    import numpy as np

    keys = np.sort(interactions["customer_key"].dropna().astype(str).unique())
    kept = set(np.random.default_rng(0).choice(keys, size=min(n, len(keys)), replace=False))
    return interactions[interactions["customer_key"].astype(str).isin(kept).to_numpy()].reset_index(drop=True)


def run_dataset(
    name: str, work: Path, *, quick: bool, seeds: int, test_users: float, test_days: int, customers: int
) -> list[Row]:
    from training.recs_eval import load_home

    interactions, items = load_home(_home(name, work, quick))
    if customers:
        interactions = _keep_customers(interactions, customers)
    rows = protocol_a(name, interactions, items, test_days)
    try:
        rows += protocols_b_c(name, interactions, items, seeds, test_users)
    except ValueError as exc:  # no customer with two baskets: the protocol cannot be posed, and the row says so
        rows.append(
            Row(name, PROTOCOL_B, "next basket", "-", 0, float("nan"), float("nan"), float("nan"), note=str(exc)[:80])
        )
    return rows


HEADER = ["data set", "protocol", "task", "model", "n", "recall@10", "NDCG@10", "explore recall@10",
          "recall@10 vs best baseline (95% CI)", "verdict"]  # fmt: skip


def table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join([*lines, *("| " + " | ".join(r.cells()) + " |" for r in rows)])


def summary(rows: Sequence[Row]) -> str:
    """Kairos's served candidates against the best baseline: wins, ties, losses per task, and the explore check."""
    served = {"next basket": "Kairos next basket", "completion, known": "Kairos cart blend"}
    out = []
    for task, model in (
        *served.items(),
        ("completion, anonymous", "Kairos bought together"),
        ("completion, anonymous", "Kairos cart blend"),
    ):
        mine = [r for r in rows if r.task == task and r.model == model and r.verdict in ("win", "tie", "loss")]
        counts = {v: sum(r.verdict == v for r in mine) for v in ("win", "tie", "loss")}
        out.append(
            f"- {model}, {task}: {counts['win']} wins, {counts['tie']} ties, {counts['loss']} losses of {len(mine)}"
        )
    explore = []
    for r in rows:
        if r.protocol == PROTOCOL_B and r.model == "Kairos next basket":
            pop = next(
                (p for p in rows if p.dataset == r.dataset and p.protocol == PROTOCOL_B and p.model == "G-TopFreq"),
                None,
            )
            if pop is not None:
                verdict = "beats" if r.explore > pop.explore else "does not beat"
                explore.append(f"{r.dataset}: {r.explore:.4f} {verdict} G-TopFreq {pop.explore:.4f}")
    if explore:
        out.append("- explore recall@10 (protocol (b)), Kairos next basket vs global popularity: " + "; ".join(explore))
    return "\n".join(out)


def write_docs(text: str, path: Path = DOCS) -> None:
    doc = path.read_text(encoding="utf-8")
    if START not in doc:
        doc = doc.rstrip() + f"\n\n{START}\n{END}\n"
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--test-users", type=float, default=0.2)
    parser.add_argument("--test-days", type=int, default=60)
    parser.add_argument("--customers", type=int, default=0, help="keep a seeded random N customers (0: all)")
    parser.add_argument("--quick", action="store_true", help="the samples under tests/data, one seed (CI)")
    parser.add_argument("--write-docs", action="store_true", help=f"replace the table in {DOCS.name}")
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench-recs-quality")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; known: {', '.join(DATASETS)}")
    if not args.quick and not (SHARED / "online_retail_ii").is_dir():
        if os.environ.get("CI") == "true":
            print(f"the shared data is not in {SHARED}", file=sys.stderr)
            return 1
        print(f"skipped: the shared data is not in {SHARED} (--quick runs on the samples)")
        return 0
    seeds = 1 if args.quick else args.seeds
    LIGHT[0] = args.quick
    test_days = 30 if args.quick else args.test_days
    work = args.work.resolve() / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    began = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        mine = run_dataset(name, work, quick=args.quick, seeds=seeds, test_users=args.test_users,
                           test_days=test_days, customers=args.customers)  # fmt: skip
        rows += mine
        print(f"{name}: {time.perf_counter() - t0:.0f} s\n{table(mine)}\n", flush=True)  # each data set as soon as done
    seconds = time.perf_counter() - began
    command = (
        f"`python bench/recs_quality.py{' --quick' if args.quick else ''} --datasets {','.join(names)} "
        f"--seeds {seeds} --test-users {args.test_users} --test-days {test_days}"
        f"{f' --customers {args.customers}' if args.customers else ''}`"
    )
    text = (
        f"{'Samples' if args.quick else 'Full exports'}"
        f"{f', {args.customers} customers of each' if args.customers else ''}; k = {K}; {seeds} seed(s) of "
        f"{args.test_users:.0%} test users for (b) and (c), the last {test_days} days for (a); {seconds / 60:.0f} min "
        f"on this machine. Reproduce: {command}\n\n{summary(rows)}\n\n{table(rows)}"
    )
    print(text)
    if args.write_docs:
        write_docs(text)
        print(f"\nwritten into {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
