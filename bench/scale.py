"""Benchmark: the pipeline's stages on synthetic worlds of growing size; per stage wall and CPU seconds,
peak RSS, rows per second, and how each grows with size (the exponent b of cost ~ size**b).

    .venv/bin/python bench/scale.py [--sizes 30000 100000] [--work var/scale-bench] [--stages ...]
        [--reference-tree DIR] [--force]

Stages (each in its own child process; its peak is that process's maximum resident set size, from
wait4, so DuckDB's threads are counted and nothing else is):

  synth      generate_world(N, seed 42)                                  rows: rows written
  ingest     ingest(raw, synthetic mapping): validation, quarantine,     rows: input rows
             identity, publication (chunked: features.ingest.DEFAULT_CHUNK_ROWS)
  identity   identity resolution alone on the raw customer records,      rows: customer records
             connected components on DuckDB (features.identity_sets)
  features   build_snapshot(home): every feature family                  rows: ingested rows read
  score      score_all(home): the full-base export with every champion   rows: customers scored
             (compiled) of a registry trained once on a 3,000-customer world (an input, not measured)

--reference-tree DIR also runs the ingest stage with the code of another checkout (e.g. a worktree of
main: "today's ingestion"), for a before/after on the same machine and world.

Each stage's figures are cached in WORK/world-N/<stage>.json (--force measures again). On a shared
machine wall seconds depend on the load; CPU seconds (user + system of the child) much less so.
Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path and bench/features.py would shadow the package.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

STAGES = ("synth", "ingest", "identity", "features", "score")
NOW = "datetime(2026, 6, 1, tzinfo=UTC)"
MODEL_WORLD = 3_000

_CODE = {
    "synth": (
        "from synth import generate_world; s = generate_world({n}, 42, Path({raw!r})); "
        "rows = sum(v for k, v in s.rows.items() if (Path({raw!r}) / (k + '.csv')).is_file())"
    ),
    "ingest": (
        "from features.ingest import ingest; from features.mapping import load_mapping; "
        "r = ingest(Path({raw!r}), load_mapping('synthetic'), Path({home!r}), now={now}); "
        "rows = r.report['totals']['input_rows']"
    ),
    "identity": (
        "import pandas as pd; from features.identity import Pseudonymizer; "
        "from features.identity_sets import resolve_identities_sets; "
        "c = pd.read_csv(Path({raw!r}) / 'customers.csv', dtype=str, keep_default_na=True); "
        "r = resolve_identities_sets(c, strong_ids=('loyalty_id',), pseudonymizer=Pseudonymizer.for_development()); "
        "rows = len(c)"
    ),
    "features": (
        "from features.store import build_snapshot; import pyarrow.parquet as pq; "
        "build_snapshot(Path({home!r})); "
        "rows = sum(pq.read_metadata(p).num_rows for p in (Path({home!r}) / 'ingested').glob('*.parquet') "
        "if p.stem not in ('quarantine', 'reclassified', 'identity_map', 'identity_review'))"
    ),
    "score": (
        "from batch.score import score_all; "
        "e = score_all(Path({home!r}), {uri!r}, Path({home!r}) / 'scores.parquet'); rows = e.customers; "
        "print('SCORE', json.dumps({{'models': e.models, 'engines': e.engines, 'seconds': e.seconds, "
        "'compile_seconds': e.compile_seconds}}))"
    ),
}


def _run(code: str, cwd: Path, pythonpath: Path) -> dict[str, float]:
    """Run one stage in a child process; its wall and CPU seconds, peak RSS (MB) and rows."""
    script = (
        "import json; from pathlib import Path; from datetime import datetime, UTC; "
        + code
        + "; print('ROWS', json.dumps(int(rows)))"
    )
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=cwd, stdout=subprocess.PIPE, text=True, env=env)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out = proc.stdout.read() if proc.stdout else ""
    if status != 0:
        raise SystemExit(f"stage failed (status {status}): {code[:120]}")
    rows = next(int(line.split()[1]) for line in out.splitlines() if line.startswith("ROWS "))
    for line in out.splitlines():
        if line.startswith("SCORE "):  # the export's own split: scoring seconds and compile seconds
            print(f"    score export: {line[6:]}", flush=True)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_mb": round(usage.ru_maxrss / 1024, 1),
        "rows": rows,
    }


def _model_registry(work: Path) -> str:
    """A registry with a churn champion trained on a small world: the score stage's models (an input)."""
    root = work / f"model-world-{MODEL_WORLD}"
    uri = f"sqlite:///{root / 'mlflow.db'}"
    if (root / "done").is_file():
        return uri
    code = (
        "from synth import generate_world; from features.ingest import ingest; "
        "from features.mapping import load_mapping; from features.store import build_snapshot; "
        "from training.propensity import churn_task, train_task, Sufficiency; "
        f"generate_world({MODEL_WORLD}, 7, Path({str(root / 'raw')!r})); "
        f"ingest(Path({str(root / 'raw')!r}), load_mapping('synthetic'), Path({str(root / 'home')!r}), now={NOW}); "
        f"build_snapshot(Path({str(root / 'home')!r})); "
        f"r = train_task(churn_task(), Path({str(root / 'home')!r}), {uri!r}, "
        "sufficiency=Sufficiency(min_positives=20, min_negatives=20, min_holdout_per_class=5)); rows = 1"
    )
    _run(code, ROOT, ROOT)
    (root / "done").write_text("ok", encoding="utf-8")
    return uri


def _measure(stage: str, n: int, work: Path, force: bool, tree: Path | None = None) -> dict[str, float]:
    world = work / f"world-{n}"
    raw, home = world / "raw", world / ("home" if tree is None else "home-reference")
    name = stage if tree is None else f"{stage}-reference"
    cache = world / f"{name}.json"
    if cache.is_file() and not force:
        return dict(json.loads(cache.read_text(encoding="utf-8")))
    world.mkdir(parents=True, exist_ok=True)
    uri = _model_registry(work) if stage == "score" else ""
    code = _CODE[stage].format(n=n, raw=str(raw), home=str(home), now=NOW, uri=uri)
    print(f"  measuring {name} at {n:,} customers ...", flush=True)
    found = _run(code, ROOT if tree is None else tree, ROOT if tree is None else tree)
    cache.write_text(json.dumps(found), encoding="utf-8")
    return found


def _exponent(a: float, b: float, n_a: int, n_b: int) -> float:
    return math.log(b / a) / math.log(n_b / n_a) if a > 0 and b > 0 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[30_000, 100_000])
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "scale-bench")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--reference-tree", type=Path, default=None)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    work = args.work.resolve()
    sizes = sorted(args.sizes)
    results: dict[tuple[str, int], dict[str, float]] = {}
    for n in sizes:
        for stage in ("synth", *(s for s in args.stages if s != "synth")):
            results[(stage, n)] = _measure(stage, n, work, args.force)
        if args.reference_tree is not None:
            results[("ingest-reference", n)] = _measure("ingest", n, work, args.force, args.reference_tree.resolve())

    print("\n| stage | customers | rows | wall s | CPU s | rows/s (CPU) | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (stage, n), r in sorted(results.items(), key=lambda kv: (kv[0][0] not in STAGES, kv[0][0], kv[0][1])):
        rate = r["rows"] / r["cpu_s"] if r["cpu_s"] else float("nan")
        print(
            f"| {stage} | {n:,} | {r['rows']:,} | {r['wall_s']:,.1f} | {r['cpu_s']:,.1f} | {rate:,.0f} "
            f"| {r['peak_mb']:,.0f} |"
        )
    if len(sizes) > 1:
        print("\nGrowth exponent b (cost ~ customers**b) between consecutive sizes:\n")
        print("| stage | sizes | b (CPU s) | b (wall s) | b (peak RSS) |")
        print("|---|---|---:|---:|---:|")
        for stage in sorted({s for s, _ in results}):
            for n_a, n_b in itertools.pairwise(sizes):
                if (stage, n_a) in results and (stage, n_b) in results:
                    a, b = results[(stage, n_a)], results[(stage, n_b)]
                    print(
                        f"| {stage} | {n_a:,} -> {n_b:,} | {_exponent(a['cpu_s'], b['cpu_s'], n_a, n_b):.2f} "
                        f"| {_exponent(a['wall_s'], b['wall_s'], n_a, n_b):.2f} "
                        f"| {_exponent(a['peak_mb'], b['peak_mb'], n_a, n_b):.2f} |"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
