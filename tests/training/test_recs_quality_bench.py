"""bench/recs_quality.py: every recommender and baseline under protocols (a)-(c), the reduced version CI runs
on the samples (issue 20, item 7)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "recs_quality.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("recs_quality_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _row(bench: ModuleType, model: str, low: float, high: float, **kw: object) -> object:
    return bench.Row("d", "(a) temporal", kw.pop("task", "next basket"), model, 10, 0.3, 0.2, float("nan"),
                     "TIFU-KNN", (low + high) / 2, low, high, **kw)  # fmt: skip


def test_verdicts_follow_the_interval_and_the_docs_section_is_replaced_in_place(
    bench: ModuleType, tmp_path: Path
) -> None:
    assert _row(bench, "Kairos next basket", 0.01, 0.03).verdict == "win"
    assert _row(bench, "Kairos next basket", -0.01, 0.03).verdict == "tie"
    assert _row(bench, "Kairos next basket", -0.03, -0.01).verdict == "loss"
    plain = bench.Row("d", "(a) temporal", "next basket", "TIFU-KNN", 10, 0.3, 0.2, float("nan"))
    assert plain.verdict == "baseline"
    rows = [_row(bench, "Kairos next basket", 0.01, 0.03), _row(bench, "Kairos next basket", -0.03, -0.01)]
    assert "- Kairos next basket, next basket: 1 wins, 0 ties, 1 losses of 2" in bench.summary(rows)
    doc = tmp_path / "quality.md"
    doc.write_text(f"# Quality\n\nbefore\n\n{bench.START}\nold table\n{bench.END}\n\nafter\n", encoding="utf-8")
    bench.write_docs("new table", doc)
    text = doc.read_text(encoding="utf-8")
    assert "new table" in text and "old table" not in text and text.startswith("# Quality") and "after" in text


@pytest.mark.slow
def test_quick_run_judges_every_protocol_on_the_samples(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--quick", "--datasets", "online_retail_ii,synthetic", "--work", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for dataset in ("online_retail_ii", "synthetic"):
        for protocol, task in (
            ("(a) temporal", "next basket"),
            ("(a) temporal", "completion, known"),
            ("(a) temporal", "completion, anonymous"),
            ("(b) last basket", "next basket"),
            ("(c) last basket", "completion, known"),
            ("(c) last basket", "completion, anonymous"),
        ):
            rows = [line for line in out.splitlines() if line.startswith(f"| {dataset} | {protocol} | {task} |")]
            kairos = [line for line in rows if "| Kairos " in line]
            assert kairos, f"no Kairos row for {dataset} {protocol} {task}"
            assert all(line.rstrip(" |").rsplit("| ", 1)[1] in ("win", "tie", "loss") for line in kairos), kairos
            assert any("| baseline |" in line for line in rows)
    assert "explore recall@10 (protocol (b)), Kairos next basket vs global popularity" in out
