"""The gate: a job's candidate is served only when it beats the current champion and the best baseline.

Every comparison is a paired bootstrap 95 % interval of a difference of the selection metric (ROC-AUC) on
the job's own holdout rows (:func:`models.intervals.paired_bootstrap`); "beats" means its lower end is
above zero (above ``margin`` against the champion). The decision, by case:

* the candidate beats the best baseline and (there is no champion, or it beats the champion, or the
  champion cannot be scored on this holdout) -> the candidate is ``@champion``;
* otherwise the candidate is ``@challenger`` (kept for inspection), and what is served is settled between
  the champion and the best baseline:

  - no champion, or one that cannot be scored on this holdout -> the baseline becomes champion;
  - a Kairos champion keeps its place only if it beats the baseline on this holdout, else the baseline
    takes it;
  - a baseline champion keeps its place unless the new baseline beats it (a refit of the same baseline
    is not a reason to change what is served).

There is no "no champion yet" exception: a first candidate that does not beat its baseline is not served.
A ``guard`` adds a second metric on which the candidate must not be significantly worse than a baseline
(the value job: Spearman of spend selects, MAE of spend guards; see :func:`decide`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.intervals import ROC_AUC, Interval, Metric, paired_bootstrap

CANDIDATE = "candidate"
BASELINE = "baseline"
INCUMBENT = "incumbent"


@dataclass(frozen=True)
class Incumbent:
    """The current champion as scored on the candidate's holdout rows (``scores`` None: it could not be,
    and ``problem`` says why)."""

    version: str
    baseline: str | None  # its baseline name when the champion serves a baseline, else None (Kairos's model)
    scores: np.ndarray | None
    problem: str = ""

    @property
    def label(self) -> str:
        what = f"the {self.baseline} baseline" if self.baseline else "kairos"
        return f"champion v{self.version} ({what})"


@dataclass(frozen=True)
class Verdict:
    """What to register and what is served.

    Attributes:
        served: ``"candidate"``, ``"baseline"`` (the best baseline of this run becomes champion) or
            ``"incumbent"`` (the champion keeps its place).
        candidate_alias: ``champion`` or ``challenger``.
        candidate_reason: the decision recorded on the candidate's version.
        line: the job's closing line: which model is served and why, with the intervals.
        versus_champion: candidate - champion, when the champion was scored.
    """

    served: str
    candidate_alias: str
    candidate_reason: str
    line: str
    versus_champion: Interval | None = None

    @property
    def registers_baseline(self) -> bool:
        return self.served == BASELINE


def _signed(iv: Interval) -> str:
    return f"{iv.diff:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]"


def decide(
    y: np.ndarray,
    candidate: np.ndarray,
    baseline: str,
    baseline_scores: np.ndarray,
    versus_baseline: Interval,
    incumbent: Incumbent | None,
    *,
    margin: float = 0.0,
    seed: int = 0,
    metric: Metric = ROC_AUC,
    metric_name: str = "roc_auc",
    guard: tuple[str, Interval] | None = None,
) -> Verdict:
    """The gate's decision for a candidate scored ``candidate`` on holdout labels ``y``, beside the best
    baseline of the run (``baseline``, its holdout scores, and the interval of candidate - baseline) and the
    current champion (None: there is none).

    ``guard``: (a baseline, the interval of candidate - it on a second metric); a candidate significantly
    worse than it there (the whole interval on the wrong side of zero) does not beat the baselines, however
    it ranks (value: spend MAE beside the selection metric, Spearman)."""
    beats_baseline = versus_baseline.better()
    vs_baseline = f"{metric_name} {_signed(versus_baseline)}"
    if guard is not None and guard[1].worse():
        beats_baseline = False
        vs_baseline += (
            f", and is significantly worse than the {guard[0]} baseline on {guard[1].metric}, {_signed(guard[1])}"
        )
    versus_champion = None
    if incumbent is not None and incumbent.scores is not None:
        versus_champion = paired_bootstrap(metric, y, candidate, incumbent.scores, seed=seed)

    if beats_baseline:
        if incumbent is None:
            why = f"kairos beats the {baseline} baseline, {vs_baseline}; no champion yet"
            return Verdict(CANDIDATE, "champion", why, f"serving kairos: {why}")
        if versus_champion is None:
            why = (
                f"kairos beats the {baseline} baseline, {vs_baseline}; {incumbent.label} could not be scored on "
                f"this holdout ({incumbent.problem[:200]})"
            )
            return Verdict(CANDIDATE, "champion", why, f"serving kairos: {why}")
        if versus_champion.better(margin):
            why = (
                f"kairos beats the {baseline} baseline, {vs_baseline}, and {incumbent.label}, "
                f"{_signed(versus_champion)} (promotion needs the lower end above {margin})"
            )
            return Verdict(CANDIDATE, "champion", why, f"serving kairos: {why}", versus_champion)
        lost = (
            f"kairos beats the {baseline} baseline, {vs_baseline}, but not {incumbent.label}, "
            f"{_signed(versus_champion)} (promotion needs the lower end above {margin})"
        )
        it = lost
    else:
        lost = f"kairos does not beat the {baseline} baseline, {vs_baseline}"
        it = f"kairos does not beat it, {vs_baseline}"

    if incumbent is None:
        line = f"serving the {baseline} baseline: {it}; no champion yet"
        return Verdict(BASELINE, "challenger", lost, line, versus_champion)
    if incumbent.scores is None:
        line = f"serving the {baseline} baseline: {it}; {incumbent.label} could not be scored on this holdout"
        return Verdict(BASELINE, "challenger", lost, f"{line} ({incumbent.problem[:200]})", versus_champion)
    if incumbent.baseline is None:
        kept = paired_bootstrap(metric, y, incumbent.scores, baseline_scores, seed=seed)
        if kept.better():
            line = f"serving {incumbent.label}: {lost}; the champion beats the {baseline} baseline, {_signed(kept)}"
            return Verdict(INCUMBENT, "challenger", lost, line, versus_champion)
        line = f"serving the {baseline} baseline: {it}; {incumbent.label} does not beat it either, {_signed(kept)}"
        return Verdict(BASELINE, "challenger", lost, line, versus_champion)
    fresh = paired_bootstrap(metric, y, baseline_scores, incumbent.scores, seed=seed)
    if fresh.better():
        line = f"serving the {baseline} baseline: {it}; it beats {incumbent.label}, {_signed(fresh)}"
        return Verdict(BASELINE, "challenger", lost, line, versus_champion)
    line = f"serving {incumbent.label}: {lost}; the {baseline} baseline refitted does not beat it, {_signed(fresh)}"
    return Verdict(INCUMBENT, "challenger", lost, line, versus_champion)
