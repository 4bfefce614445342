"""The drift scenario of docs/monitoring.md, printed: a churn champion trained as of a date, then the same world
carried on unchanged and a copy whose customers buy less after that date (synth.shift); the monitor's PSI of
the purchase features in both and what `retrain --if-needed` decides (a dry run: nothing is trained).

    python bench/drift_scenario.py --customers 1500 --seed 7
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

WATCHED = ["recency_days", "orders_30d", "orders_90d", "orders_180d", "monetary_30d", "monetary_90d", "monetary_180d"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shift", type=date.fromisoformat, default=date(2025, 7, 1))
    parser.add_argument("--keep-orders", type=float, default=0.4)
    parser.add_argument("--price-factor", type=float, default=1.5)
    args = parser.parse_args()
    from features.ingest import ingest
    from features.mapping import load_mapping
    from features.store import build_snapshot
    from ops.retrain import RetrainPolicy, retrain_if_needed
    from synth import generate_world
    from synth.shift import shift_export
    from training.propensity import Sufficiency, churn_task, train_task

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_world(args.customers, args.seed, root / "raw")
        shift_export(
            root / "raw", root / "raw_shifted", args.shift, keep_orders=args.keep_orders, price_factor=args.price_factor
        )
        for name, raw in (("unchanged", root / "raw"), ("shifted", root / "raw_shifted")):
            ingest(raw, load_mapping("synthetic"), root / name, now=datetime(2026, 1, 1, tzinfo=UTC))
            build_snapshot(root / name)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        rules = Sufficiency(min_positives=20, min_negatives=20, min_holdout_per_class=5)
        when = datetime(args.shift.year, args.shift.month, args.shift.day, tzinfo=UTC)
        train_task(churn_task(), root / "unchanged", uri, sufficiency=rules, as_of=when)
        policy = RetrainPolicy.model_validate(
            {"models": ["churn"], "drift": {"max_features_major": 0, "features": WATCHED}}
        )
        for name in ("unchanged", "shifted"):
            report = retrain_if_needed(root / name, uri, policy, realised=False, dry_run=True)
            summary = json.loads(report.monitor_json.read_text(encoding="utf-8"))
            drift = summary["models"]["churn"]["drift"]
            psis = {f["feature"]: f["psi"] for f in drift["features"]}
            print(f"{name}: {drift['rows_current']:,} customers in churn's population")
            print("  PSI of the watched features: " + ", ".join(f"{f} {psis[f]:.3f}" for f in WATCHED))
            others = [f for f in drift["features"] if f["feature"] not in WATCHED][:4]
            print("  largest PSI elsewhere: " + ", ".join(f"{f['feature']} {f['psi']:.2f}" for f in others))
            print(f"  features >= 0.25: {drift['features_major']} of {len(drift['features'])}")
            heavy = sorted(drift["features"], key=lambda f: -f["importance"])[:5]
            print(
                f"  PSI weighted by the model's gain: {drift['psi_weighted']:.3f}; the five heaviest features: "
                + ", ".join(f"{f['feature']} ({f['importance']:.0%}) {f['psi']:.2f}" for f in heavy)
            )
            for decision in report.decisions:
                print("  " + decision.line())


if __name__ == "__main__":
    main()
