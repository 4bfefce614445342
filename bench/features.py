"""Benchmark: the full feature build (all families) on a 100,000-customer synthetic world and on
Online Retail II, then online lookups of 1, 100 and 10,000 customers in both backends against their
floors (bench/online.py); prints seconds and peak RSS per step.

    .venv/bin/python bench/features.py [--customers 100000] [--work var/bench] [--skip-orii]

Each measured step runs in its own child process, so its peak RSS is its own. The synthetic world and
its ingestion are cached under --work (they are inputs, not what is measured). Aims (issue 3): the
100,000-customer build under 60 s and 4 GB peak RSS on 2 cores. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path and bench/features.py would shadow the package.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]
ORII = ROOT.parent / "shared" / "data" / "online_retail_ii"

_STEPS = {
    "synth": "from synth import generate_world; generate_world({n}, 42, Path({raw!r}))",
    "ingest": (
        "from features.ingest import ingest; from features.mapping import load_mapping; "
        "ingest(Path({raw!r}), load_mapping({mapping!r}), Path({home!r}), now=datetime(2026, 6, 1, tzinfo=UTC))"
    ),
    "build": (
        "from features.store import build_snapshot; print(json.dumps(build_snapshot(Path({home!r})).manifest['rows']))"
    ),
}


def _run(step: str, **kw: object) -> tuple[float, float, str]:
    code = "import json; from pathlib import Path; from datetime import datetime, UTC; " + _STEPS[step].format(**kw)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    out = proc.stdout.read() if proc.stdout else ""
    if status != 0:
        raise SystemExit(f"step {step} failed (status {status})")
    return elapsed, usage.ru_maxrss / 1024, out.strip().splitlines()[-1] if out.strip() else ""


def _events(home: Path) -> int:
    import pyarrow.parquet as pq

    folder = home / "ingested"
    return sum(
        pq.read_metadata(p).num_rows for p in folder.glob("*.parquet") if p.stem not in ("quarantine", "reclassified")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--skip-orii", action="store_true")
    parser.add_argument("--skip-online", action="store_true", help="skip the lookup benchmark")
    args = parser.parse_args()
    work = args.work.resolve()
    raw, home = work / f"world-{args.customers}" / "raw", work / f"world-{args.customers}" / "home"
    if not (raw / "customers.csv").is_file():
        secs, rss, _ = _run("synth", n=args.customers, raw=str(raw))
        print(f"(input) synth {args.customers:,} customers: {secs:.1f} s, {rss:,.0f} MB")
    if not (home / "ingested" / "ingest_report.json").is_file():
        secs, rss, _ = _run("ingest", raw=str(raw), mapping="synthetic", home=str(home))
        print(f"(input) ingest: {secs:.1f} s, {rss:,.0f} MB")
    secs, rss, rows = _run("build", home=str(home))
    print(f"synthetic {args.customers:,} customers, {_events(home):,} ingested rows")
    print(f"  feature build      {secs:6.1f} s   (aim < 60 s: {secs / 60:.2f}x of budget)")
    print(f"  peak RSS           {rss:6,.0f} MB  (aim < 4,096 MB)")
    print(f"  customers built    {int(rows):,}")

    if not args.skip_orii:
        status = _orii(work)
        if status:
            return status
    if not args.skip_online:
        print("online lookups (bench/online.py):", flush=True)
        return subprocess.call([sys.executable, str(ROOT / "bench" / "online.py")], cwd=ROOT)
    return 0


def _orii(work: Path) -> int:
    if not (ORII / "year_2009_2010.parquet").is_file():
        if os.environ.get("CI") == "true":
            print(f"error: Online Retail II not found in {ORII}", file=sys.stderr)
            return 1
        print(f"skipped Online Retail II: not found in {ORII}")
        return 0
    orii_home = work / "orii" / "home"
    if not (orii_home / "ingested" / "ingest_report.json").is_file():
        _run("ingest", raw=str(ORII), mapping="online_retail_ii", home=str(orii_home))
    secs, rss, rows = _run("build", home=str(orii_home))
    print(f"Online Retail II, {_events(orii_home):,} ingested rows")
    print(f"  feature build      {secs:6.1f} s")
    print(f"  peak RSS           {rss:6,.0f} MB")
    print(f"  customers built    {json.loads(rows):,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
