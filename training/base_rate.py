"""A seasonal base-rate correction of the calibrator, used only where it forecasts the validation window's
base rate better than "the same as the window before" does.

The calibrator learns the level of the most recent matured windows; the next window (the holdout's, then
production's) may sit in another season. Last year's labels, all matured, say how the base rate moved
from the calibration window's season to the next window's: the forecast of the next window's rate is
``rate(valid) * rate(holdout - 1 year) / rate(valid - 1 year)``, and the calibrator's odds are moved to it
(:meth:`models.calibration.ProbabilityCalibrator.shifted`).

Whether to use it is decided on the validation window: the same forecast made for the validation window
(from the window before it and last year's pair) is compared with the persistence forecast (the window
before it); the correction is used only when it was closer. The labels read are those of the validation
window (which the calibrator is fitted on anyway) and earlier ones: none after the holdout cutoff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

YEAR = timedelta(days=360)  # twelve 30-day grid steps


@dataclass(frozen=True)
class BaseRateShift:
    """The decision and its figures, as one line for the run's parameters and model card."""

    used: bool
    target_rate: float | None
    reason: str


def needed_cutoffs(valid: datetime, holdout: datetime, span: timedelta) -> dict[str, datetime]:
    """The grid cutoffs whose (matured) base rates the decision reads."""
    return {
        "before_valid": valid - span,
        "valid": valid,
        "valid_last_year": valid - YEAR,
        "before_valid_last_year": valid - span - YEAR,
        "holdout_last_year": holdout - YEAR,
    }


def decide(
    rate_at: Callable[[datetime], float | None], valid: datetime, holdout: datetime, span: timedelta
) -> BaseRateShift:
    """Whether (and to what rate) to move the calibrator for the next window; ``rate_at(c)`` is the base
    rate of the labels of cutoff ``c`` (None where the data cannot say: too early)."""
    cuts = needed_cutoffs(valid, holdout, span)
    late = [k for k, c in cuts.items() if c + span > holdout]
    if late:  # a label window that reaches into the holdout's is never read
        return BaseRateShift(False, None, f"no seasonal correction: the labels of {late} reach the holdout window")
    rates = {k: rate_at(c) for k, c in cuts.items()}
    missing = [k for k, r in rates.items() if r is None or not 0.0 < r < 1.0]
    if missing:
        return BaseRateShift(False, None, "no seasonal correction: no year-earlier windows in the data")
    r = {k: float(v) for k, v in rates.items() if v is not None}
    seasonal = r["before_valid"] * r["valid_last_year"] / r["before_valid_last_year"]
    persistence = r["before_valid"]
    err_s, err_p = abs(seasonal - r["valid"]), abs(persistence - r["valid"])
    target = r["valid"] * r["holdout_last_year"] / r["valid_last_year"]
    figures = (
        f"on validation the seasonal forecast {seasonal:.3f} vs persistence {persistence:.3f}, actual {r['valid']:.3f}"
    )
    if err_s + 1e-9 < err_p and 0.0 < target < 1.0:  # a tie keeps persistence
        return BaseRateShift(True, target, f"seasonal correction to {target:.3f} ({figures})")
    return BaseRateShift(False, None, f"no seasonal correction ({figures})")
