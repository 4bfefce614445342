"""Print the send-time evaluation figures for a data home.

Usage::

    python bench/sendtime_eval.py --data HOME [--truth RAW/truth] [--test-days 60]

Fits on everything before ``as_of - test_days`` and judges what followed: the next engagement hour
against the population (always) and, with a synthetic world's ``truth/``, the planted-preference
share against the best single hour for everyone. Nothing is logged to MLflow.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path and bench/features.py would shadow the package.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    from synth.checks import SendTimeTruth
    from training.sendtime import evaluate, load_inputs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, required=True, help="data home (ingested tables)")
    parser.add_argument("--truth", type=Path, default=None, help="a synthetic world's truth/ folder")
    parser.add_argument("--test-days", type=int, default=60, help="evaluation period before the data end")
    parser.add_argument("--as-of", type=str, default=None, help="data end (ISO 8601); default the latest event")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    inputs = load_inputs(args.data)
    end = datetime.fromisoformat(args.as_of) if args.as_of else inputs.latest()
    inputs = inputs.cut(end)
    check = SendTimeTruth(args.truth, args.data) if args.truth is not None else None
    _, next_hour, planted = evaluate(inputs, end, args.test_days, check)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
        print(f"data end {end.isoformat()}, split {args.test_days} days before")
        print("\nNext engagement hour (hit = most likely hour within +-1 h; log-lik of the hour of day):")
        print(next_hour.to_string(index=False))
        if planted is not None:
            print("\nRecommended slot within +-1 h of the planted preferred local hour:")
            print(planted.to_string(index=False))
    print(f"\n{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
