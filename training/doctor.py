"""``kairos doctor``: per model, does the data suffice for an honest training run, and if not, what is missing.

It plans each model's cutoffs and counts labels only (no features), so it answers in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from features.contract import Col
from features.datasets import LABEL, ValueTarget
from training.propensity import (
    Context,
    InsufficientDataError,
    Sufficiency,
    Task,
    all_tasks,
    plan_counts,
    plan_cutoffs,
    plan_for,
    sufficiency_problems,
)


@dataclass(frozen=True)
class Verdict:
    model: str
    ok: bool
    history_days: int
    train_positives: int
    train_negatives: int
    problems: tuple[str, ...]


def _binary(task: Task, ctx: Context, rules: Sufficiency) -> Verdict:
    history = (ctx.end - ctx.start).days
    if task.family == "engagement" and "messages" not in ctx.tables:
        return Verdict(task.name, False, history, 0, 0, ("the data has no message history (no messages table)",))
    try:
        plan = plan_for(task, ctx, rules)
    except InsufficientDataError as exc:
        return Verdict(task.name, False, history, 0, 0, (str(exc),))
    counts = plan_counts(task.target, ctx.tables, plan)
    problems = sufficiency_problems(counts, history, rules)
    return Verdict(task.name, not problems, history, *counts["training"], tuple(problems))


def _value(horizon_days: int, ctx: Context, rules: Sufficiency) -> Verdict:
    history = (ctx.end - ctx.start).days
    try:
        plan = plan_cutoffs(ctx.start, ctx.end, horizon_days, rules.min_history_days, overlap_train_valid=True)
    except InsufficientDataError as exc:
        return Verdict(f"value ({horizon_days} d)", False, history, 0, 0, (str(exc),))
    target = ValueTarget(horizon_days)

    def spenders(cutoff: object) -> tuple[int, int]:
        labels = target.labels(ctx.tables, cutoff)  # type: ignore[arg-type]
        row = labels.aggregate(pos=(labels[LABEL] > 0).cast("int64").sum(), n=labels[Col.CUSTOMER_KEY].count())
        got = row.execute().iloc[0]
        return int(got["pos"] or 0), int(got["n"] or 0) - int(got["pos"] or 0)

    train = [spenders(c) for c in plan.train]
    pos, neg = sum(p for p, _ in train), sum(n for _, n in train)
    problems = []
    if pos < rules.min_positives:
        problems.append(f"training has {pos} customers who spent in the horizon, need at least {rules.min_positives}")
    for name, cutoff in (("validation", plan.valid), ("holdout", plan.holdout)):
        p, _ = spenders(cutoff)
        if p < rules.min_holdout_per_class:
            problems.append(f"{name} has {p} customers who spent, need at least {rules.min_holdout_per_class}")
    return Verdict(f"value ({horizon_days} d)", not problems, history, pos, neg, tuple(problems))


def diagnose(
    data_home: Path, rules: Sufficiency | None = None, value_horizons: tuple[int, ...] = (365, 180)
) -> list[Verdict]:
    """One verdict per model Kairos trains (propensity models, then value at each horizon)."""
    rules = rules or Sufficiency()
    ctx = Context.open(data_home)
    out = [_binary(task, ctx, rules) for task in all_tasks()]
    out += [_value(h, ctx, rules) for h in value_horizons]
    return out
