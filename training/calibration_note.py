"""Why a propensity model's holdout calibration misses ECE < 0.05, in one line for the job's output and card.

The calibrator is fitted on the most recent matured windows (the validation cutoff, and the same season a
year before the holdout where the grid holds one unseen by the model) and checked on the holdout, the next
window. When it misses, the usual cause is a shift of the base rate between those windows (a season, a
trend) that the features do not carry; otherwise the spread of the scores differs (over- or
under-confident). The line names which, with the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from models.evaluation import expected_calibration_error

ECE_BAR = 0.05


def calibration_note(
    y_holdout: np.ndarray,
    p_holdout: np.ndarray,
    y_calibration: np.ndarray,
    calibration_cutoffs: Sequence[datetime],
    holdout_cutoff: datetime,
) -> str:
    """ "" when the holdout ECE is below :data:`ECE_BAR`, else why not (base-rate shift or score spread)."""
    ece = expected_calibration_error(y_holdout, p_holdout)
    if ece < ECE_BAR:
        return ""
    observed, predicted, before = float(np.mean(y_holdout)), float(np.mean(p_holdout)), float(np.mean(y_calibration))
    windows = ", ".join(c.date().isoformat() for c in calibration_cutoffs)
    head = f"holdout ECE {ece:.3f} >= {ECE_BAR}: "
    if abs(predicted - observed) >= ece / 2:
        return (
            head + f"the base rate moved: {before:.3f} in the calibration windows (cutoffs {windows}), "
            f"{observed:.3f} after {holdout_cutoff.date().isoformat()}, where the model predicts {predicted:.3f} "
            "on average (a season or a trend the features do not carry; the next retrain calibrates on it)"
        )
    return (
        head + f"the average is right ({predicted:.3f} predicted, {observed:.3f} observed) but the scores' spread "
        "differs from the calibration windows' (over- or under-confident in the tails)"
    )
