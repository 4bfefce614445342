"""Benchmark: ingest a full shipped export with its built-in mapping; print rows/s and peak RSS.

    .venv/bin/python bench/ingest.py [--export online_retail_ii|complete_journey|cdnow] [--data DIR] [--repeat 3]

One export per run: the peak RSS is the process's, so run each export in its own process.
Needs ../shared/data (skips cleanly without it, except under CI=true where its absence is an error).
Aim (issue 2): >= 200k rows/s and < 2 GB peak RSS on 2 cores. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path and bench/features.py would shadow the package.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]
SHARED = ROOT.parent / "shared" / "data"
# export -> a file that must be there (the export's largest)
EXPORTS = {
    "online_retail_ii": "year_2009_2010.parquet",
    "complete_journey": "transactions.parquet",
    "cdnow": "CDNOW_master.txt",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", choices=sorted(EXPORTS), default="online_retail_ii")
    parser.add_argument("--data", type=Path, default=None, help="Default: ../shared/data/EXPORT.")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    args.data = args.data or SHARED / args.export
    if not (args.data / EXPORTS[args.export]).is_file():
        message = f"{args.export} not found in {args.data}"
        if os.environ.get("CI") == "true":
            print(f"error: {message}", file=sys.stderr)
            return 1
        print(f"skipped: {message}")
        return 0

    from features.ingest import ingest
    from features.mapping import load_mapping

    mapping = load_mapping(args.export)
    timings = []
    report = {}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            report = ingest(args.data, mapping, Path(tmp), now=datetime(2026, 1, 1, tzinfo=UTC)).report
            timings.append(time.perf_counter() - started)
    rows = report["totals"]["input_rows"]
    print(f"export              {args.export}")
    print(f"published           {report['published']}")
    best, median = min(timings), sorted(timings)[len(timings) // 2]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows                {rows:,}")
    print(
        f"accepted / reclassified / quarantined  {report['totals']['accepted']:,} / "
        f"{report['totals']['reclassified']:,} / {report['totals']['quarantined']:,}"
    )
    print(f"seconds (best, median of {len(timings)})  {best:.2f}, {median:.2f}")
    print(f"rows/s (best)       {rows / best:,.0f}   (aim >= 200,000: {rows / best / 200_000:.2f}x)")
    print(f"rows/s (median)     {rows / median:,.0f}")
    print(f"peak RSS            {peak_mb:,.0f} MB   (aim < 2,048 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
