"""Benchmark: a campaign plan for a whole synthetic base (``kairos campaign plan``'s path), customers per
second and peak memory.

    .venv/bin/python bench/campaign_plan.py [--customers 100000] [--work var/bench-lookalike]

Generates (once) a synthetic world of ``--customers`` persons, ingests it and builds its snapshot, then
times :func:`batch.campaign.plan_from_home` for the whole base with the example catalogue, e-mail and SMS
allowed, a week from 2026-01-10 and a budget of 5,000, in rules mode (no tracking URI). Peak memory is
the process's resident high-water mark (``ru_maxrss``) measured in a fresh child process that only
plans, so world building does not count.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]


def build(customers: int, work: Path) -> Path:
    from features.ingest import ingest
    from features.mapping import load_mapping
    from features.store import build_snapshot
    from synth import generate_world

    root = work / f"synth{customers // 1000}k"
    if not (root / "raw" / "truth" / "world.json").is_file():
        generate_world(customers, 11, root / "raw")
    if not (root / "home" / "snapshots").is_dir():
        ingest(root / "raw", load_mapping("synthetic"), root / "home", now=datetime(2026, 1, 1, tzinfo=UTC))
        build_snapshot(root / "home")
    return root / "home"


def plan_only(home: Path) -> dict[str, object]:
    from batch.campaign import plan_from_home
    from models.decisioning.offers import EXAMPLE_CATALOGUE, load_catalogue
    from models.decisioning.plan import CampaignSpec, check_plan

    spec = CampaignSpec(
        channels=("email", "sms"),
        starts_at=datetime(2026, 1, 10, 9, tzinfo=UTC),
        ends_at=datetime(2026, 1, 17, 9, tzinfo=UTC),
        budget=5000.0,
    )
    began = time.perf_counter()
    plan, _ = plan_from_home(home, load_catalogue(EXAMPLE_CATALOGUE), spec)
    seconds = time.perf_counter() - began
    return {
        "customers": plan.totals["customers"],
        "seconds": round(seconds, 1),
        "customers_per_second": round(plan.totals["customers"] / seconds),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "planned_sends": plan.totals["planned_sends"],
        "sends_by_channel": plan.totals["sends_by_channel"],
        "control_size": plan.totals["control_size"],
        "problems": check_plan(plan),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench-lookalike")
    parser.add_argument("--plan-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plan_only is not None:
        print(json.dumps(plan_only(args.plan_only)))
        return
    home = build(args.customers, args.work)
    out = subprocess.run(
        [sys.executable, __file__, "--plan-only", str(home)], check=True, capture_output=True, text=True
    ).stdout
    print(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
