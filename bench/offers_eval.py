"""Print the offers job's figures: held-out Qini and uplift at 30%, off-policy value, and (synthetic
worlds) the true profit of Kairos's policy against the oracle and the baselines.

    python bench/offers_eval.py --data HOME --truth RAW/truth [--catalogue PATH] [--step-days 30]
        [--learner cells|x|t] [--caution Z] [--baseline clean|clean_hl180|clean_hl90|all] [--sends PARQUET]

The caution (standard deviations below the estimated profit that decisions use) is chosen on a
validation split of the training sends unless ``--caution`` is given.

Trains and logs a run like ``train_offers`` (into ``--tracking-uri``, default a SQLite file in a
temporary folder), without registering it unless ``--register`` is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path and bench/features.py would shadow the package.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    from synth.checks import OffersTruth
    from training.offers import BASELINES, train_offers

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="ingested data home with a snapshot")
    parser.add_argument("--truth", type=Path, default=None, help="the synthetic world's truth folder")
    parser.add_argument("--catalogue", type=Path, default=None, help="offer catalogue YAML (default: example)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: a temporary SQLite)")
    parser.add_argument("--step-days", type=int, default=30, help="days between feature cutoffs")
    parser.add_argument("--holdout-days", type=int, default=120, help="last days of sends held out")
    parser.add_argument("--learner", choices=("cells", "x", "t"), default="cells")
    parser.add_argument("--caution", type=float, default=None, help="fixed caution (default: chosen on validation)")
    parser.add_argument(
        "--baseline", choices=BASELINES, default=None, help="control sends of the base model (default: chosen)"
    )
    parser.add_argument(
        "--sends",
        type=Path,
        default=None,
        help="parquet of the send dataset: built and saved there when absent, else read (same --step-days)",
    )
    parser.add_argument("--no-compare", action="store_true", help="do not fit the comparison learner")
    parser.add_argument("--register", action="store_true", help="register the bundle as 'offers'")
    args = parser.parse_args(argv)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    pd.set_option("display.float_format", lambda x: f"{x:.4f}")
    began = time.perf_counter()
    sends = None
    if args.sends is not None:  # the send dataset, built once and saved there, then read back
        if not args.sends.exists():
            from features.store import open_tables
            from training.offers import build_send_dataset

            build_send_dataset(open_tables(args.data), step_days=args.step_days).to_parquet(args.sends)
        sends = pd.read_parquet(args.sends)
    with tempfile.TemporaryDirectory() as tmp:
        uri = args.tracking_uri or f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        run = train_offers(
            args.data,
            uri,
            args.catalogue,
            policy_check=OffersTruth(args.truth, args.data) if args.truth is not None else None,
            learner=args.learner,
            caution=args.caution,
            baseline=args.baseline,
            compare_learners=not args.no_compare,
            step_days=args.step_days,
            holdout_days=args.holdout_days,
            register=args.register,
            sends=sends,
            progress=lambda step, frac: print(f"[{time.perf_counter() - began:6.1f}s] {step}", flush=True),
        )
    print("\nsends:", run.sizes)
    if run.baseline is not None:
        print("\nbase purchase model chosen on validation sends (log loss on clean control sends)")
        print(run.baseline.to_string(index=False))
    if run.caution is not None:
        print("\ncaution chosen on validation sends (DR incremental profit per send)")
        print(run.caution.to_string(index=False))
    print("\nheld-out sends, per offer (Qini AUC: 0 = random ranking)\n", run.qini.to_string(index=False))
    print("\nlearners on the holdout\n", run.learners.to_string(index=False))
    print("\noff-policy value on held-out sends (profit per send)\n", run.off_policy.to_string(index=False))
    if run.truth is not None:
        print("\ntrue expected profit on the final snapshot (planted uplift)\n", run.truth.to_string(index=False))
    print(f"\n{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
