"""Benchmark: every propensity and value task on every retailer, at several holdout cutoffs, against
every baseline computed in the same run.

    .venv/bin/python bench/quality.py [--datasets online_retail_ii,complete_journey,cdnow,synthetic]
                                      [--origins 3] [--step-days 91] [--write-docs] [--work var/bench-quality]
    .venv/bin/python bench/quality.py --quick       # the samples under tests/data: what CI runs

Rolling origin: origin 0 is the whole export, origin i the export as it stood ``i * --step-days`` days
before its end (``--as-of``, so the holdout cutoff, the training cutoffs and the labels all move back
together; nothing after the origin is read). Quarterly steps put the holdouts in different seasons.

Each (data set, origin) trains churn, purchase, the engagement models where the data has messages, and
value (spend over ``--value-horizon`` days) exactly as ``kairos train`` does (``register=False``: the
runs are logged in a scratch MLflow under ``--work``, nothing is promoted), with the job's own
baselines: RFM score, logistic RFM, BG/NBD (propensity) or the customer's own past rate (engagement);
last period, BG/NBD x Gamma-Gamma and MBG/NBD x Gamma-Gamma (value). Every row carries the paired
bootstrap 95 % interval of (Kairos - the best baseline on that holdout) and the verdict:

- ``win``: the interval is above zero (lower error for MAE);
- ``tie``: it straddles zero;
- ``loss``: it is below zero.

``served`` is what the gate serves on that evidence: Kairos on a win, the best baseline otherwise.
A task the data cannot support (too few positives, too little history at that origin) is a row that
says so, never a silent gap. ``--write-docs`` replaces the table in ``docs/model-quality.md``.
Needs ../shared/data for the full run (fails under CI=true without it; ``--quick`` needs only the repo).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path and bench/features.py would shadow the package.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]
SHARED = ROOT.parent / "shared" / "data"
SAMPLES = ROOT / "tests" / "data"
DOCS = ROOT / "docs" / "model-quality.md"
START, END = "<!-- quality-bench:start -->", "<!-- quality-bench:end -->"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Dataset:
    """One retailer's export, how to ingest it, and the job settings its history supports."""

    name: str
    mapping: str
    source: Callable[[bool], Path]  # quick -> the folder to ingest
    min_history_days: int = 180
    min_positives: int = 500
    min_negatives: int = 500
    min_holdout_per_class: int = 20
    churn: dict[str, int] = field(default_factory=dict)  # ChurnTarget settings
    note: str = ""


def _shared(folder: str, sample: str) -> Callable[[bool], Path]:
    return lambda quick: (SAMPLES / sample) if quick else (SHARED / folder)


def _synthetic(quick: bool) -> Path:
    from synth import generate_world

    raw = _WORK[0] / "synthetic-raw"
    if not (raw / "customers.csv").is_file() and not any(raw.glob("*")):
        generate_world(600 if quick else 6000, 11, raw, start=date(2024, 1, 1), end=date(2025, 12, 31))
    return raw


_WORK: list[Path] = [ROOT / "var" / "bench-quality"]

DATASETS: dict[str, Dataset] = {
    "online_retail_ii": Dataset(
        "online_retail_ii", "online_retail_ii", _shared("online_retail_ii", "online_retail_ii")
    ),
    # one year of loyalty-card history before the first training cutoff is more than the chain's two
    # years allow at three origins: shorter history and fewer positives (households, not web shoppers)
    "complete_journey": Dataset(
        "complete_journey",
        "complete_journey",
        _shared("complete_journey", "complete_journey"),
        min_history_days=94,
        min_positives=90,
        min_negatives=90,
    ),
    # a cohort that first bought in Q1 1997, followed to June 1998: P(alive) = not churned, repeat purchase
    "cdnow": Dataset(
        "cdnow",
        "cdnow",
        _shared("cdnow", "cdnow_master"),
        min_history_days=90,
        min_positives=200,
        min_negatives=200,
    ),
    "synthetic": Dataset("synthetic", "synthetic", _synthetic, min_positives=100, min_negatives=100),
}
QUICK = {"min_history_days": 60, "min_positives": 5, "min_negatives": 5, "min_holdout_per_class": 2}


@dataclass
class Row:
    dataset: str
    task: str
    origin: str
    holdout: str
    rows: int
    metric: str
    kairos: float
    best_baseline: str
    baseline: float
    diff: float
    low: float
    high: float
    verdict: str
    served: str
    ece: float | None
    note: str = ""
    seconds: float = 0.0

    def cells(self) -> list[str]:
        if self.note:
            return [self.dataset, self.task, self.origin, "–", "–", "–", "–", "–", "–", "–", "–", self.note]
        ece = "–" if self.ece is None else f"{self.ece:.3f}"
        return [
            self.dataset,
            self.task,
            self.origin,
            self.holdout,
            f"{self.rows:,}",
            self.metric,
            f"{self.kairos:.4f}",
            f"{self.best_baseline} {self.baseline:.4f}",
            f"{self.diff:+.4f} [{self.low:+.4f}, {self.high:+.4f}]",
            f"**{self.verdict}**" if self.verdict == "win" else self.verdict,
            self.served,
            ece,
        ]


HEADER = [
    "data set",
    "task",
    "origin",
    "holdout",
    "customers",
    "metric",
    "Kairos",
    "best baseline",
    "Kairos − best (95 %)",
    "verdict",
    "served",
    "ECE",
]


def _home(ds: Dataset, work: Path, quick: bool) -> Path:
    from features.ingest import ingest
    from features.mapping import load_mapping

    home = work / ("quick" if quick else "full") / ds.name
    if not (home / "ingested" / "order_lines.parquet").is_file():
        shutil.rmtree(home, ignore_errors=True)
        ingest(ds.source(quick), load_mapping(ds.mapping), home, now=NOW)
    return home


def _verdict(iv: Any) -> str:
    """win / tie / loss of Kairos against the best baseline, from the interval of the improvement."""
    return "win" if iv.better() else "loss" if iv.worse() else "tie"


def _propensity_rows(ds: Dataset, name: str, origin: str, run: Any, seconds: float) -> Row:
    iv = run.versus
    verdict = _verdict(iv)
    table = run.table
    return Row(
        ds.name,
        name,
        origin,
        run.plan.holdout.date().isoformat(),
        int(run.sizes["holdout_rows"]),
        "ROC-AUC",
        float(table.loc["kairos", "roc_auc"]),
        run.best_baseline,
        float(table.loc[run.best_baseline, "roc_auc"]),
        iv.diff,
        iv.low,
        iv.high,
        verdict,
        "kairos" if verdict == "win" else run.best_baseline,
        float(table.loc["kairos", "ece"]),
        seconds=seconds,
    )


def _value_rows(ds: Dataset, origin: str, run: Any, seconds: float) -> list[Row]:
    rows = []
    for metric, (best, iv) in run.versus.items():
        lower = not iv.higher_is_better
        verdict = _verdict(iv)
        rows.append(
            Row(
                ds.name,
                f"value ({run.horizon_days} d spend)",
                origin,
                run.plan.holdout.date().isoformat(),
                int(run.sizes.get("holdout_rows", 0)),
                "MAE" if lower else "Spearman",
                float(run.spend.loc["kairos", metric.lower()]),
                best,
                float(run.spend.loc[best, metric.lower()]),
                iv.diff,
                iv.low,
                iv.high,
                verdict,
                "kairos" if verdict == "win" else best,
                None,
                seconds=seconds,
            )
        )
    return rows


def _skipped(ds: Dataset, task: str, origin: str, why: str) -> Row:
    return Row(ds.name, task, origin, "", 0, "", 0.0, "", 0.0, 0.0, 0.0, 0.0, "", "", None, note=why)


def run_dataset(
    ds: Dataset, work: Path, *, quick: bool, origins: int, step_days: int, value_horizon: int, uri: str
) -> list[Row]:
    """Every task of ``ds`` at ``origins`` rolling origins ``step_days`` apart."""
    from features.store import data_has_prices
    from training.propensity import (
        Context,
        InsufficientDataError,
        Sufficiency,
        churn_task,
        engagement_task,
        purchase_task,
        train_task,
    )
    from training.value import train_value

    home = _home(ds, work, quick)
    limits = QUICK if quick else {}
    rules = Sufficiency(
        min_positives=limits.get("min_positives", ds.min_positives),
        min_negatives=limits.get("min_negatives", ds.min_negatives),
        min_history_days=limits.get("min_history_days", ds.min_history_days),
        min_holdout_per_class=limits.get("min_holdout_per_class", ds.min_holdout_per_class),
    )
    end = Context.open(home).end
    rows: list[Row] = []
    for i in range(origins):
        as_of = None if i == 0 else datetime(end.year, end.month, end.day, tzinfo=UTC) - timedelta(days=i * step_days)
        origin = "end" if as_of is None else f"as of {as_of.date()}"
        ctx = Context.open(home, as_of)
        tasks = [churn_task(**ds.churn), purchase_task()]
        if "messages" in ctx.tables:
            tasks += [engagement_task(ch, a) for ch in ("email", "sms", "push") for a in ("open", "click")]
        for task in tasks:
            started = time.perf_counter()
            try:
                run = train_task(task, home, uri, register=False, sufficiency=rules, context=ctx)
            except InsufficientDataError as exc:
                rows.append(_skipped(ds, task.name, origin, f"not trained: {_short(exc)}"))
                continue
            rows.append(_propensity_rows(ds, task.name, origin, run, time.perf_counter() - started))
            print(_line(rows[-1]), flush=True)
        started = time.perf_counter()
        if not data_has_prices(home):
            rows.append(_skipped(ds, "value", origin, "not trained: the export has no prices"))
            continue
        try:
            value = train_value(home, uri, horizon_days=value_horizon, register=False, sufficiency=rules, context=ctx)
        except InsufficientDataError as exc:
            rows.append(_skipped(ds, "value", origin, f"not trained: {_short(exc)}"))
            continue
        for row in _value_rows(ds, origin, value, time.perf_counter() - started):
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _short(exc: Exception) -> str:
    text = str(exc).replace("|", "/")
    return text if len(text) < 160 else text[:157] + "..."


def _line(row: Row) -> str:
    return " | ".join(row.cells()) + f"  ({row.seconds:.0f} s)"


def table(rows: Sequence[Row]) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(out)


def summary(rows: Sequence[Row]) -> str:
    scored = [r for r in rows if not r.note]
    wins = sum(r.verdict == "win" for r in scored)
    ties = sum(r.verdict == "tie" for r in scored)
    losses = sum(r.verdict == "loss" for r in scored)
    served_worse = sum(r.served == "kairos" and r.verdict != "win" for r in scored)
    miscal = [r for r in scored if r.ece is not None and r.ece >= 0.05]
    return (
        f"{len(scored)} comparisons ({len(rows) - len(scored)} tasks the data could not support): Kairos "
        f"significantly better on {wins}, tied on {ties}, significantly worse on {losses}; the served model is "
        f"significantly worse than the best baseline on {served_worse}; ECE >= 0.05 on {len(miscal)} of "
        f"{sum(r.ece is not None for r in scored)} calibrated models"
        + (": " + ", ".join(f"{r.dataset} {r.task} {r.origin} {r.ece:.3f}" for r in miscal) if miscal else "")
        + "."
    )


def write_docs(text: str, path: Path = DOCS) -> None:
    doc = path.read_text(encoding="utf-8")
    if START not in doc:
        doc = doc.rstrip() + f"\n\n{START}\n{END}\n"
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--origins", type=int, default=3, help="holdout cutoffs per data set (rolling origin)")
    parser.add_argument("--step-days", type=int, default=91, help="days between origins")
    parser.add_argument("--value-horizon", type=int, default=90, help="days of spend the value model predicts")
    parser.add_argument("--quick", action="store_true", help="the samples under tests/data (CI)")
    parser.add_argument("--write-docs", action="store_true", help=f"replace the table in {DOCS.name}")
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench-quality")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; known: {', '.join(DATASETS)}")
    if not args.quick and not (SHARED / "online_retail_ii").is_dir():
        if os.environ.get("CI") == "true":
            print(f"error: the shared data is not in {SHARED}", file=sys.stderr)
            return 1
        print(f"skipped: the shared data is not in {SHARED} (--quick runs on the samples)")
        return 0
    warnings.simplefilter("ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    args.work.mkdir(parents=True, exist_ok=True)
    _WORK[0] = args.work
    db = args.work / "mlflow.db"
    db.unlink(missing_ok=True)
    shutil.rmtree(args.work / "mlruns", ignore_errors=True)
    uri = f"sqlite:///{db}"
    started = time.perf_counter()
    rows: list[Row] = []
    for name in names:
        t0 = time.perf_counter()
        rows += run_dataset(
            DATASETS[name],
            args.work,
            quick=args.quick,
            origins=args.origins,
            step_days=args.step_days,
            value_horizon=args.value_horizon,
            uri=uri,
        )
        print(f"-- {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    seconds = time.perf_counter() - started
    text = (
        f"{'Samples' if args.quick else 'Full exports'}, {args.origins} origins {args.step_days} days apart, "
        f"value horizon {args.value_horizon} days; {seconds / 60:.1f} min on this machine "
        f"(budget 40 min: {seconds / 2400:.2f}x). `bench/quality.py"
        f"{' --quick' if args.quick else ''} --origins {args.origins} --step-days {args.step_days}`\n\n"
        f"{table(rows)}\n\n{summary(rows)}"
    )
    print("\n" + text)
    if args.write_docs:
        write_docs(text)
        print(f"\nwritten into {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
