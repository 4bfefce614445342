"""The next-basket gate: Kairos next basket is chosen only with its interval to the best baseline above
zero, on protocol (b) when it ran, else on the temporal split."""

from __future__ import annotations

import pandas as pd

from training.recs import KAIROS_NEXT, next_basket_choice


def _frame(best: str) -> pd.DataFrame:
    return pd.DataFrame({"model": [best, KAIROS_NEXT], "best_baseline": [best, best]})


def _figures(prefix: str, diff: float, low: float, high: float) -> dict[str, float]:
    return {f"{prefix}_diff": diff, f"{prefix}_diff_low": low, f"{prefix}_diff_high": high}


def test_kairos_only_when_the_interval_is_above_zero() -> None:
    won = _figures("last_basket_recall_at_10", 0.011, 0.003, 0.018)
    choice = next_basket_choice(won, _frame("UP-CF@r"), _frame("TIFU-KNN"))
    assert choice["chosen"] == KAIROS_NEXT and choice["evidence"] == "last basket held out"
    assert "+0.0110 [+0.0030, +0.0180] vs TIFU-KNN" in choice["why"]
    tie = _figures("last_basket_recall_at_10", 0.004, -0.002, 0.010)
    assert next_basket_choice(tie, _frame("UP-CF@r"), _frame("TIFU-KNN"))["chosen"] == "TIFU-KNN"


def test_temporal_evidence_without_protocol_b_and_nothing_without_next_basket() -> None:
    metrics = _figures("next_basket_recall_at_10", -0.01, -0.02, -0.001)
    choice = next_basket_choice(metrics, _frame("GP-TopFreq"), None)
    assert choice["chosen"] == "GP-TopFreq" and choice["evidence"] == "temporal split"
    # protocol (b) figures win over temporal ones when both are there
    both = metrics | _figures("last_basket_recall_at_10", 0.02, 0.01, 0.03)
    assert next_basket_choice(both, _frame("GP-TopFreq"), _frame("TIFU-KNN"))["chosen"] == KAIROS_NEXT
    assert next_basket_choice({}, _frame("GP-TopFreq"), None) == {}
