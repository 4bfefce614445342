"""``kairos doctor`` on a short history: the flags it proposes are computed, and they do what it says."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import SynthHome, small_data_rules
from tests.training.test_as_of import _truncate
from training.doctor import Verdict, diagnose
from training.propensity import (
    Context,
    InsufficientDataError,
    PropensityConfig,
    Sufficiency,
    build_data,
    churn_task,
    plan_cutoffs,
    plan_for,
)

SHORT = datetime(2024, 10, 1, tzinfo=UTC)  # nine months of the synthetic world


@pytest.fixture(scope="module")
def short_home(synth_home: SynthHome, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _truncate(synth_home.home, tmp_path_factory.mktemp("short"), SHORT)


def _flag(verdict: Verdict, flag: str) -> tuple[str, str]:
    """The value a suggestion gives ``flag``, and its verdict ('passes' or what is still missing)."""
    for text in verdict.suggestions:
        found = re.match(rf"{flag} (\S+)[^:]*: (.*)", text)
        if found:
            return found.group(1), found.group(2)
    raise AssertionError(f"no {flag} in {verdict.suggestions}")


def test_doctor_computes_the_history_and_horizon_that_fit(short_home: Path) -> None:
    rules = small_data_rules()
    verdicts = {v.model: v for v in diagnose(short_home, rules)}
    churn = verdicts["churn"]
    assert not churn.ok and "a 90-day target needs at least 450" in churn.problems[0]
    ctx = Context.open(short_home)
    # --min-history-days: the largest that plans (one more does not)
    days, _ = _flag(churn, "--min-history-days")
    plan_cutoffs(ctx.start, ctx.end, 90, int(days), lookback_days=365)
    with pytest.raises(InsufficientDataError):
        plan_cutoffs(ctx.start, ctx.end, 90, int(days) + 1, lookback_days=365)
    # --horizon-days: the longest that plans with the asked history (the next 30-day step does not)
    horizon, verdict = _flag(churn, "--horizon-days")
    task = churn_task(horizon_days=int(horizon))
    plan_for(task, ctx, rules)
    with pytest.raises(InsufficientDataError):
        plan_for(churn_task(horizon_days=int(horizon) + 30), ctx, rules)
    # "passes" means the training run would go ahead: its sets are built without a refusal
    assert verdict == "passes"
    data = build_data(PropensityConfig(task, "unused", sufficiency=rules), ctx, lambda step, frac: None)
    assert data.train["label"].nunique() == 2 and len(data.holdout) > 0
    # with production rules, the same horizon plans but the doctor says what is still missing
    strict = {v.model: v for v in diagnose(short_home, Sufficiency(min_positives=100_000))}
    _, missing = _flag(strict["churn"], "--horizon-days")
    assert missing.startswith("plans, but") and "need at least 100000" in missing
    # a model with no horizon flag gets only the history suggestion; models that fit get none
    engagement = verdicts["engagement_open_email"]
    assert not engagement.ok and not any(s.startswith("--horizon-days") for s in engagement.suggestions)
    assert all(not v.suggestions for v in verdicts.values() if v.ok)


def test_doctor_as_of_names_the_earliest_date_that_fits(synth_home: SynthHome) -> None:
    rules = small_data_rules()
    churn = next(v for v in diagnose(synth_home.home, rules, as_of=SHORT) if v.model == "churn")
    assert not churn.ok
    date, verdict = _flag(churn, "--as-of")
    at = datetime.fromisoformat(date).replace(tzinfo=UTC)
    assert at > SHORT and verdict == "passes"
    plan_for(churn_task(), Context.open(synth_home.home, at), rules)
    with pytest.raises(InsufficientDataError):
        plan_for(churn_task(), Context.open(synth_home.home, at - timedelta(days=1)), rules)
