"""How long `kairos monitor` takes: feature drift alone, and with the realised-performance backtest.

    python bench/monitor.py --home HOME --tracking-uri URI          # a built home with a churn champion
    python bench/monitor.py --customers 1500                         # build one: synth, ingest, features, train churn

Prints the seconds of each pass and the figures it measured. No assertion: figures only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def build(root: Path, customers: int, seed: int) -> tuple[Path, str]:
    from features.ingest import ingest
    from features.mapping import load_mapping
    from features.store import build_snapshot
    from synth import generate_world
    from training.propensity import Sufficiency, churn_task, train_task

    generate_world(customers, seed, root / "raw")
    ingest(root / "raw", load_mapping("synthetic"), root / "home", now=datetime(2026, 1, 1, tzinfo=UTC))
    build_snapshot(root / "home")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    rules = Sufficiency(min_positives=20, min_negatives=20, min_holdout_per_class=5)
    train_task(churn_task(), root / "home", uri, sufficiency=rules)
    return root / "home", uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path)
    parser.add_argument("--tracking-uri")
    parser.add_argument("--customers", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    from ops.monitor import run_monitor

    with tempfile.TemporaryDirectory() as tmp:
        if args.home is None:
            home, uri = build(Path(tmp), args.customers, args.seed)
        else:
            home, uri = args.home, args.tracking_uri
        for realised in (False, True):
            began = time.perf_counter()
            report = run_monitor(home, uri, Path(tmp) / f"out_{realised}", models=["churn"], realised=realised)
            seconds = time.perf_counter() - began
            churn = report.summary["models"].get("churn", {})
            drift = churn.get("drift") or {}
            perf = (churn.get("performance") or {}).get("roc_auc") or {}
            print(
                f"monitor churn, realised={realised}: {seconds:.1f} s wall "
                f"(customers monitored {drift.get('rows_current', 0):,}; "
                f"PSI max {drift.get('psi_max', float('nan')):.3f}; "
                f"features major {drift.get('features_major')}, moderate {drift.get('features_moderate')}; "
                f"realised ROC-AUC {perf})"
            )


if __name__ == "__main__":
    main()
