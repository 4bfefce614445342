"""Whom a model's question is about: the rows its probability means something for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Population:
    """Whom a model's question is about, as a rule on one feature: ``feature <= at_most``.

    Churn asks about customers who bought in the last year; for anyone else (a lead, a lapsed
    customer) its probability means nothing, so scoring leaves it out rather than guessing. A missing
    value (never bought) is outside.
    """

    feature: str
    at_most: float

    def contains(self, values: np.ndarray) -> np.ndarray:
        """True where a value of ``feature`` is inside (NaN is not)."""
        return np.asarray(values, dtype=np.float64) <= self.at_most

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "at_most": self.at_most}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Population:
        return cls(str(data["feature"]), float(data["at_most"]))
