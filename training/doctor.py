"""``kairos doctor``: per model, does the data suffice for an honest training run, and if not, what is missing.

It plans each model's cutoffs and counts labels only (no features), so it answers in seconds. When the
history is too short for a model's cutoffs, it works out which ``--horizon-days``, ``--min-history-days``
(and, when the data is read as of a date, which ``--as-of``) would let the cutoffs fit, by running the same
planner on each candidate, and counts the labels of each one found: a suggestion says whether it passes
outright or what would still be missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import ibis
import pandas as pd

from features.contract import Col
from features.datasets import LABEL, ValueTarget
from features.store import NO_PRICES, data_has_prices
from training.propensity import (
    STEP_DAYS,
    Context,
    CutoffPlan,
    InsufficientDataError,
    Sufficiency,
    Task,
    all_tasks,
    plan_counts,
    plan_cutoffs,
    plan_for,
    steps_for,
    sufficiency_problems,
    task_by_name,
)

# the smallest horizon each command accepts (``kairos train churn --horizon-days`` has min=7, value min=30)
MIN_HORIZON_DAYS = {"churn": 7, "purchase": 7, "value": 30}


@dataclass(frozen=True)
class Verdict:
    model: str
    ok: bool
    history_days: int
    train_positives: int
    train_negatives: int
    problems: tuple[str, ...]
    # when the history is too short: flags that would make the cutoffs fit, each checked (see module doc)
    suggestions: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Model:
    """What the doctor varies for one model: its label window as a function of the horizon."""

    name: str
    horizon_days: int | None  # None: the model has no horizon flag (engagement)
    overlap: bool  # value targets let the last training labels run into the validation window
    lookback_days: int
    label_days: Callable[[int | None], int]
    # problems of a plan with given rules (label counts in the database), for a horizon
    problems: Callable[[Context, CutoffPlan, Sufficiency, int | None], list[str]]


def _plan(ctx: Context, m: _Model, horizon: int | None, min_history_days: int) -> CutoffPlan | None:
    try:
        return plan_cutoffs(
            ctx.start,
            ctx.end,
            m.label_days(horizon),
            min_history_days,
            overlap_train_valid=m.overlap,
            lookback_days=m.lookback_days,
        )
    except InsufficientDataError:
        return None


def _check(ctx: Context, m: _Model, horizon: int | None, rules: Sufficiency) -> str:
    """'passes', or what would still be missing with these flags."""
    plan = _plan(ctx, m, horizon, rules.min_history_days)
    if plan is None:  # pragma: no cover - callers only check plans that fit
        return "still too short"
    problems = m.problems(ctx, plan, rules, horizon)
    return "passes" if not problems else "plans, but " + "; ".join(problems)


def _suggest(ctx: Context, m: _Model, rules: Sufficiency, full: Context | None) -> tuple[str, ...]:
    """Flags with which the cutoffs of ``m`` fit the data, each checked with the planner and the label counts."""
    out = []
    # 1. the longest history requirement that still fits, at the asked horizon
    for days in range(rules.min_history_days - 1, -1, -1):
        if _plan(ctx, m, m.horizon_days, days) is not None:
            relaxed = Sufficiency(rules.min_positives, rules.min_negatives, days, rules.min_holdout_per_class)
            out.append(f"--min-history-days {days}: {_check(ctx, m, m.horizon_days, relaxed)}")
            break
    else:
        out.append("no --min-history-days fits at this horizon")
    # 2. the longest horizon that fits with the asked history requirement (label windows are whole 30-day steps)
    if m.horizon_days is not None:
        floor = MIN_HORIZON_DAYS.get(m.name.split(" ")[0], STEP_DAYS)
        span = steps_for(m.label_days(m.horizon_days)) - STEP_DAYS
        while span >= max(floor, STEP_DAYS) and _plan(ctx, m, span, rules.min_history_days) is None:
            span -= STEP_DAYS
        if span >= max(floor, STEP_DAYS):
            where = " (kairos train all: --value-horizon-days)" if m.overlap else ""
            out.append(f"--horizon-days {span}{where}: {_check(ctx, m, span, rules)}")
        else:
            out.append(f"no --horizon-days (>= {floor}) fits with --min-history-days {rules.min_history_days}")
    # 3. reading the data as of a date: the earliest --as-of whose history is long enough
    if full is not None:
        out.append(_earliest_as_of(full, m, rules))
    return tuple(out)


def _earliest_as_of(full: Context, m: _Model, rules: Sufficiency) -> str:
    """The first date D such that the data as of D holds the history the asked flags need (checked on it)."""
    span = steps_for(m.label_days(m.horizon_days))
    gap = STEP_DAYS if m.overlap else span
    need = full.start + timedelta(days=rules.min_history_days + gap + 2 * span)
    # the plan counts from midnight of the latest order's day: that midnight must be >= ``need``
    first_day = datetime(need.year, need.month, need.day, tzinfo=need.tzinfo)
    if first_day < need:
        first_day += timedelta(days=1)
    orders = full.tables["orders"]
    found = orders.filter(orders[Col.ORDERED_AT] >= ibis.timestamp(first_day))[Col.ORDERED_AT].min().execute()
    if found is None or pd.isna(found):
        return f"no --as-of fits: the data ends {full.end.date()}, the flags need orders on or after {first_day.date()}"
    first = pd.Timestamp(found).tz_convert("UTC").to_pydatetime()
    as_of = datetime(first.year, first.month, first.day, tzinfo=first_day.tzinfo) + timedelta(days=1)
    ctx = Context.open(full.data_home, as_of)
    return f"--as-of {as_of.date().isoformat()} (the earliest that fits): {_check(ctx, m, m.horizon_days, rules)}"


def _binary_model(task: Task) -> _Model:
    horizon = task.horizon_days if task.name in ("churn", "purchase") else None

    def label_days(h: int | None) -> int:
        return task.target.label_days if h is None else task_by_name(task.name, horizon_days=h).target.label_days

    def problems(ctx: Context, plan: CutoffPlan, rules: Sufficiency, h: int | None) -> list[str]:
        target = task.target if h is None else task_by_name(task.name, horizon_days=h).target
        counts = plan_counts(target, ctx.tables, plan)
        return sufficiency_problems(counts, (ctx.end - ctx.start).days, rules)

    return _Model(task.name, horizon, False, task.target.lookback_days, label_days, problems)


def _value_counts(ctx: Context, plan: CutoffPlan, horizon: int) -> dict[str, tuple[int, int]]:
    """(customers who spent, who did not) in the horizon after each set's cutoffs, counted in the database."""
    target = ValueTarget(horizon)

    def spenders(cutoff: datetime) -> tuple[int, int]:
        labels = target.labels(ctx.tables, cutoff)
        row = labels.aggregate(pos=(labels[LABEL] > 0).cast("int64").sum(), n=labels[Col.CUSTOMER_KEY].count())
        got = row.execute().iloc[0]
        return int(got["pos"] or 0), int(got["n"] or 0) - int(got["pos"] or 0)

    train = [spenders(c) for c in plan.train]
    return {
        "training": (sum(p for p, _ in train), sum(n for _, n in train)),
        "validation": spenders(plan.valid),
        "holdout": spenders(plan.holdout),
    }


def _value_problems_of(counts: dict[str, tuple[int, int]], rules: Sufficiency) -> list[str]:
    pos = counts["training"][0]
    problems = []
    if pos < rules.min_positives:
        problems.append(f"training has {pos} customers who spent in the horizon, need at least {rules.min_positives}")
    for name in ("validation", "holdout"):
        p = counts[name][0]
        if p < rules.min_holdout_per_class:
            problems.append(f"{name} has {p} customers who spent, need at least {rules.min_holdout_per_class}")
    return problems


def _value_problems(ctx: Context, plan: CutoffPlan, rules: Sufficiency, horizon: int | None) -> list[str]:
    assert horizon is not None
    return _value_problems_of(_value_counts(ctx, plan, horizon), rules)


def _value_model(horizon_days: int) -> _Model:
    def label_days(h: int | None) -> int:
        return horizon_days if h is None else h

    return _Model(f"value ({horizon_days} d)", horizon_days, True, 0, label_days, _value_problems)


def _binary(task: Task, ctx: Context, rules: Sufficiency, full: Context | None) -> Verdict:
    history = (ctx.end - ctx.start).days
    if task.family == "engagement" and "messages" not in ctx.tables:
        return Verdict(task.name, False, history, 0, 0, ("the data has no message history (no messages table)",))
    try:
        plan = plan_for(task, ctx, rules)
    except InsufficientDataError as exc:
        return Verdict(task.name, False, history, 0, 0, (str(exc),), _suggest(ctx, _binary_model(task), rules, full))
    counts = plan_counts(task.target, ctx.tables, plan)
    problems = sufficiency_problems(counts, history, rules)
    return Verdict(task.name, not problems, history, *counts["training"], tuple(problems))


def _value(horizon_days: int, ctx: Context, rules: Sufficiency, full: Context | None) -> Verdict:
    history = (ctx.end - ctx.start).days
    model = _value_model(horizon_days)
    if not data_has_prices(ctx.data_home):  # no flag makes amounts appear: nothing to suggest
        return Verdict(model.name, False, history, 0, 0, (NO_PRICES,))
    try:
        plan = plan_cutoffs(ctx.start, ctx.end, horizon_days, rules.min_history_days, overlap_train_valid=True)
    except InsufficientDataError as exc:
        return Verdict(model.name, False, history, 0, 0, (str(exc),), _suggest(ctx, model, rules, full))
    counts = _value_counts(ctx, plan, horizon_days)
    problems = _value_problems_of(counts, rules)
    return Verdict(model.name, not problems, history, *counts["training"], tuple(problems))


def diagnose(
    data_home: Path,
    rules: Sufficiency | None = None,
    value_horizons: tuple[int, ...] = (365, 180),
    as_of: datetime | None = None,
) -> list[Verdict]:
    """One verdict per model Kairos trains (propensity models, then value at each horizon), on the data as
    of ``as_of`` when given (:meth:`Context.open`)."""
    rules = rules or Sufficiency()
    ctx = Context.open(data_home, as_of)
    # the earliest --as-of that would do is looked for in all the data
    full = Context.open(data_home) if as_of is not None else None
    out = [_binary(task, ctx, rules, full) for task in all_tasks()]
    out += [_value(h, ctx, rules, full) for h in value_horizons]
    return out
