"""Parity check on the full shipped exports: this tree's ingestion (large tables in chunks, identity as
connected components on DuckDB) publishes the same tables as another checkout's ("today's ingestion").

    .venv/bin/python bench/ingest_parity.py --reference-tree ../main [--exports online_retail_ii ...]
        [--chunk-rows 1000] [--work var/ingest-parity]

Each export is ingested twice, each run in its own child process with its own tree on PYTHONPATH; every
Parquet file of both ``ingested/`` folders is compared (pandas equality: rows, order, values, dtypes) and
so is the report (all but its run time and clock). ``--chunk-rows`` is small by default so that the
streamed tables of the exports that have them (Complete Journey's exposures and redemptions) are cut in
several chunks. Prints one line per file and the CPU seconds and peak RSS of each run. Needs
../shared/data (skips cleanly without it, except under CI=true where its absence is an error).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]
SHARED = ROOT.parent / "shared" / "data"
EXPORTS = {
    "online_retail_ii": "year_2009_2010.parquet",
    "complete_journey": "transactions.parquet",
    "cdnow": "CDNOW_master.txt",
}
_VARIES = ("run_at", "elapsed_s")


def _ingest(tree: Path, data: Path, export: str, home: Path, chunk_rows: int | None) -> tuple[float, float]:
    extra = "" if chunk_rows is None else f", chunk_rows={chunk_rows}"
    code = (
        "from pathlib import Path; from datetime import datetime, UTC; from features.ingest import ingest; "
        "from features.mapping import load_mapping; "
        f"ingest(Path({str(data)!r}), load_mapping({export!r}), Path({str(home)!r}), "
        f"now=datetime(2026, 1, 1, tzinfo=UTC){extra})"
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tree, env=env)
    _pid, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{export}: ingestion failed in {tree} (status {status})")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _compare(a: Path, b: Path) -> list[str]:
    import pandas as pd
    import pyarrow.parquet as pq

    problems = []
    names_a = sorted(p.name for p in (a / "ingested").glob("*.parquet"))
    names_b = sorted(p.name for p in (b / "ingested").glob("*.parquet"))
    if names_a != names_b:
        problems.append(f"files differ: {names_a} vs {names_b}")
    for name in sorted(set(names_a) & set(names_b)):
        x, y = pd.read_parquet(a / "ingested" / name), pd.read_parquet(b / "ingested" / name)
        try:
            pd.testing.assert_frame_equal(x, y)
            same_types = (
                pq.read_schema(a / "ingested" / name).remove_metadata()
                == pq.read_schema(b / "ingested" / name).remove_metadata()
            )
            assert same_types, "Arrow types differ"
            print(f"    same       {name} ({len(x):,} rows)")
        except AssertionError as exc:
            problems.append(f"{name}: {str(exc).splitlines()[0]}")
            print(f"    DIFFERENT  {name}")
    ra = json.loads((a / "ingested" / "ingest_report.json").read_text(encoding="utf-8"))
    rb = json.loads((b / "ingested" / "ingest_report.json").read_text(encoding="utf-8"))
    for key in sorted((set(ra) | set(rb)) - set(_VARIES)):
        if ra.get(key) != rb.get(key):
            problems.append(f"report field {key!r} differs")
    print(f"    {'same' if not problems else 'DIFFERENT':10} ingest_report.json (all but {', '.join(_VARIES)})")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-tree", type=Path, required=True)
    parser.add_argument("--exports", nargs="+", choices=sorted(EXPORTS), default=sorted(EXPORTS))
    parser.add_argument("--chunk-rows", type=int, default=1_000)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "ingest-parity")
    args = parser.parse_args()
    failures = 0
    for export in args.exports:
        data = SHARED / export
        if not (data / EXPORTS[export]).is_file():
            if os.environ.get("CI") == "true":
                print(f"error: {export} not found in {data}", file=sys.stderr)
                return 1
            print(f"skipped: {export} not found in {data}")
            continue
        work = args.work.resolve() / export
        ref_cpu, ref_mb = _ingest(args.reference_tree.resolve(), data, export, work / "reference", None)
        new_cpu, new_mb = _ingest(ROOT, data, export, work / "this", args.chunk_rows)
        print(
            f"{export}: reference {ref_cpu:.1f} CPU s, {ref_mb:,.0f} MB peak; this tree {new_cpu:.1f} CPU s, "
            f"{new_mb:,.0f} MB peak"
        )
        problems = _compare(work / "reference", work / "this")
        failures += bool(problems)
        for problem in problems:
            print(f"    {problem}")
    print("parity: " + ("every published table and report equal" if not failures else f"{failures} export(s) differ"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
