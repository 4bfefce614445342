"""Benchmark: what the gate serves for churn and purchase on the full Online Retail II (or another export).

    .venv/bin/python bench/gate.py [--work var/bench-gate] [--data ../shared/data/online_retail_ii]
                                   [--mapping online_retail_ii] [--tasks churn,purchase]

Ingests the export into ``--work`` (once), trains each task into a fresh registry there, through the gate
(training/gate.py), and prints per task: Kairos's and each baseline's holdout ROC-AUC and ECE (every baseline
scored as it would be served: from the feature row, with its Platt calibrator), the interval of Kairos minus
the best baseline, and the job's closing line (which model is served, and why). Then trains the same task
again on the same data and prints that line too: an identical retrain must not replace the champion.
Figures only; needs the data (skips without it).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench-gate")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "online_retail_ii")
    parser.add_argument("--mapping", default="online_retail_ii")
    parser.add_argument("--tasks", default="churn,purchase")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipped: no data at {args.data}")
        return
    warnings.filterwarnings("ignore")
    from features.ingest import ingest
    from features.mapping import load_mapping
    from training.propensity import Context, task_by_name, train_task

    home = args.work / args.mapping
    if not (home / "ingested").is_dir():
        ingest(args.data, load_mapping(args.mapping), home, now=datetime(2026, 1, 1, tzinfo=UTC))
    registry_dir = args.work / "registry"
    shutil.rmtree(registry_dir, ignore_errors=True)
    uri = f"sqlite:///{registry_dir / 'mlflow.db'}"
    ctx = Context.open(home)
    for name in args.tasks.split(","):
        started = time.perf_counter()
        run = train_task(task_by_name(name), home, uri, context=ctx)
        seconds = time.perf_counter() - started
        print(f"\n{name}: holdout {run.plan.holdout.date()}, {run.sizes['holdout_rows']:,} customers ({seconds:.0f} s)")
        print("| model | ROC-AUC | ECE |")
        print("|---|---|---|")
        for model, row in run.table.iterrows():
            print(f"| {model} | {row['roc_auc']:.4f} | {row['ece']:.4f} |")
        print(run.versus_line)
        print(f"first run: {run.decision}")
        again = train_task(task_by_name(name), home, uri, context=ctx)
        print(f"identical retrain: {again.decision}")


if __name__ == "__main__":
    main()
