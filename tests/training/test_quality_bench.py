"""bench/quality.py: the cross-retailer quality table (the reduced version CI runs on a sample)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from models.intervals import MAE, ROC_AUC, Interval

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "quality.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quality_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _interval(diff: float, low: float, high: float, higher_is_better: bool = True) -> Interval:
    return Interval("m", 0.0, 0.0, diff, low, high, 0.95, 100, higher_is_better)


def test_verdicts_follow_the_interval_of_the_improvement(bench: ModuleType) -> None:
    assert bench._verdict(_interval(0.02, 0.01, 0.03)) == "win"
    assert bench._verdict(_interval(0.01, -0.01, 0.03)) == "tie"
    assert bench._verdict(_interval(-0.02, -0.03, -0.01)) == "loss"
    # lower is better (MAE): a negative difference entirely below zero is a win
    assert bench._verdict(_interval(-5.0, -8.0, -1.0, higher_is_better=False)) == "win"
    assert bench._verdict(_interval(5.0, 1.0, 8.0, higher_is_better=False)) == "loss"
    assert ROC_AUC.higher_is_better and not MAE.higher_is_better


def test_summary_counts_and_docs_section_is_replaced_in_place(bench: ModuleType, tmp_path: Path) -> None:
    def row(verdict: str, served: str, ece: float | None = 0.01, note: str = "") -> object:
        return bench.Row("d", "churn", "end", "2011-01-01", 10, "ROC-AUC", 0.8, "bgnbd", 0.7, 0.1, 0.05, 0.15,
                         verdict, served, ece, note=note)  # fmt: skip

    rows = [row("win", "kairos"), row("tie", "bgnbd", 0.08), row("loss", "bgnbd"), row("", "", None, "not trained")]
    text = bench.summary(rows)
    assert text.startswith("3 comparisons (1 tasks the data could not support)")
    assert "better on 1, tied on 1, significantly worse on 1" in text
    assert "worse than the best baseline on 0" in text and "ECE >= 0.05 on 1 of 3" in text
    # a served Kairos that did not win is counted against the gate
    assert "worse than the best baseline on 1" in bench.summary([row("tie", "kairos")])

    doc = tmp_path / "q.md"
    doc.write_text("# Q\n\nbefore\n", encoding="utf-8")
    bench.write_docs("table one", doc)
    bench.write_docs("table two", doc)
    text = doc.read_text(encoding="utf-8")
    assert text.count(bench.START) == 1 and "table two" in text and "table one" not in text
    assert text.startswith("# Q\n\nbefore\n")


def test_quick_run_on_the_cdnow_sample_prints_one_row_per_task_and_origin(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--quick", "--datasets", "cdnow", "--origins", "2", "--step-days", "60", "--work", str(tmp_path)]
    code = bench.main(argv)
    assert code == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| cdnow |")]
    # churn, purchase and value (MAE and Spearman) at two origins: trained or saying why not
    assert len(lines) == 2 * 4, out
    assert sum("| end |" in line for line in lines) == 4
    for line in lines:
        assert "not trained" in line or any(f"| {v} |" in line or f"**{v}**" in line for v in ("win", "tie", "loss"))
    assert "comparisons" in out and "budget 40 min" in out
