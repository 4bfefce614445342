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
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CONTROL_GROUP", "ControlGroup", "in_control"]

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
