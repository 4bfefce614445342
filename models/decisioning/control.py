"""The global control group: a fixed, deterministic share of customers who never receive an offer.

Membership is a hash of ``salt:customer_key`` (BLAKE2b, 8 bytes, read as a number in [0, 1)), below the
share means control. It depends on nothing but the key, the salt and the share: the same customer is in
or out on every call, process and machine, and raising the share only adds members. Changing the salt
draws a new group (do it rarely: the group's point is to stay out for a long time, so incrementality can
be read against it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CONTROL_GROUP", "ControlGroup", "control_report", "in_control"]

CONTROL_GROUP = "control_group"  # status and reason of a customer held out
_SCALE = float(2**64)


class ControlGroup(BaseModel):
    """Who is held out: ``share`` of customers (default 5%) chosen by hash with ``salt``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    share: float = Field(default=0.05, ge=0.0, lt=1.0, description="Share of customers held out.")
    salt: str = Field(default="kairos-control-v1", min_length=1, description="Changing it draws a new group.")

    def position(self, keys: Iterable[str]) -> np.ndarray:
        """Each key's fixed position in [0, 1): members are those below ``share``."""
        out = []
        for key in keys:
            if key is None or not isinstance(key, str) or not key:
                raise ValueError(f"customer_key must be a non-empty string, got {key!r}")
            digest = hashlib.blake2b(f"{self.salt}:{key}".encode(), digest_size=8).digest()
            out.append(int.from_bytes(digest, "big") / _SCALE)
        return np.asarray(out, dtype=np.float64)

    def contains(self, keys: Iterable[str]) -> np.ndarray:
        """True for each key in the control group."""
        return self.position(keys) < self.share


def in_control(keys: Iterable[str], share: float = 0.05, salt: str = "kairos-control-v1") -> np.ndarray:
    """Boolean array: which ``keys`` belong to the control group of ``share`` with ``salt``."""
    return ControlGroup(share=share, salt=salt).contains(keys)


def control_report(frame: pd.DataFrame, control: ControlGroup, columns: Iterable[str]) -> pd.DataFrame:
    """How the control group compares with everyone else on ``columns`` (a balance check).

    Incrementality is read as the difference between the customers a campaign could reach and the
    control group, so the group must look like everyone else before the campaign. Per column: the mean
    of each group, and the standardised difference ``(mean_control - mean_rest) / pooled sd`` (below
    0.1 in absolute value is the usual "balanced"); a first row counts the customers.

    Args:
        frame: one row per customer with ``customer_key`` and the numeric ``columns``.
        control: the control group.
        columns: numeric columns to compare (missing values are left out of each mean).

    Raises:
        ValueError: no customer_key column, a column is absent or not numeric.
    """
    if "customer_key" not in frame.columns:
        raise ValueError("the frame needs a customer_key column")
    held = control.contains(frame["customer_key"].astype(str))
    rows = [{"column": "customers", "control": float(held.sum()), "rest": float((~held).sum()), "std_diff": np.nan}]
    for column in columns:
        if column not in frame.columns:
            raise ValueError(f"column {column!r} is not in the frame")
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise ValueError(f"column {column!r} is not numeric")
        values = frame[column].to_numpy(dtype=np.float64)
        a, b = values[held], values[~held]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        sd = np.sqrt((np.var(a) + np.var(b)) / 2) if len(a) and len(b) else np.nan
        diff = (a.mean() - b.mean()) / sd if len(a) and len(b) and sd > 0 else np.nan
        rows.append(
            {
                "column": column,
                "control": float(np.mean(a)) if len(a) else np.nan,
                "rest": float(np.mean(b)) if len(b) else np.nan,
                "std_diff": float(diff),
            }
        )
    return pd.DataFrame(rows)
