"""The marketer's policy: one validated file (YAML or TOML) that sets what used to be constants in code.

Every key is optional; what the file leaves out keeps the documented default (``docs/decisioning.md``,
"The policy file"), and an unknown key or a bad value is refused naming where it is::

    name: spring-2026                # echoed, with the file's checksum, in every decision
    contact:                         # models.decisioning.policy.PolicyConfig
      channel_caps:
        email: [{max_messages: 1, per_hours: 16}]
        sms:   [{max_messages: 1, per_hours: 72}]
        push:  [{max_messages: 1, per_hours: 24}]
      total_caps: [{max_messages: 4, per_hours: 168}]
      quiet_hours: [22, 8]           # local time; null: none
      offer_cooldown_hours: 72
    control: {share: 0.05, salt: kairos-control-v1}
    resend: {enabled: true, days: 3}  # the second-best slot: on one of the next 3 local days
    bands:                           # per model; "default" for the others
      default: {thresholds: [0.3, 0.6]}
      churn:   {quantiles: [0.5, 0.9]}   # low: the lower half, high: the top 10 % of the scored base

Band cuts are thresholds on the probability, or quantiles of the model's scores over the scored base
(resolved by :func:`resolve_cuts` against the scores of the population they cut).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.errors import KairosError
from models.decisioning.control import ControlGroup
from models.decisioning.policy import PolicyConfig
from models.reasons import DEFAULT_CUTS

__all__ = ["BandCuts", "MarketingPolicy", "PolicyFileError", "ResendRule", "load_policy", "parse_policy"]

DEFAULT = "default"  # the band cuts of every model the file does not name


class PolicyFileError(KairosError):
    """The policy file is missing, unreadable or invalid (the message names the key and why)."""


class BandCuts(BaseModel):
    """Where low / medium / high split: two increasing ``thresholds`` in (0, 1), or two increasing
    ``quantiles`` of the model's scores (0.5 and 0.9: the lower half is low, the top tenth high)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    thresholds: tuple[float, float] | None = None
    quantiles: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> BandCuts:
        given = [x for x in (self.thresholds, self.quantiles) if x is not None]
        if len(given) != 1:
            raise ValueError("give either thresholds or quantiles (two increasing numbers strictly inside 0..1)")
        low, high = given[0]
        if not 0.0 < low < high < 1.0:
            raise ValueError(f"cuts must be two increasing numbers strictly inside 0..1, got {list(given[0])}")
        return self

    def label(self) -> str:
        if self.thresholds is not None:
            return f"thresholds {self.thresholds[0]:g}/{self.thresholds[1]:g}"
        assert self.quantiles is not None
        return f"quantiles {self.quantiles[0]:g}/{self.quantiles[1]:g}"


class ResendRule(BaseModel):
    """Re-sending to a customer who did not open: ``POST /v1/send-time`` gives a second-best slot on one of
    the ``days`` local days after the best one; ``enabled: false`` gives none (no re-sends)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    days: int = Field(default=3, ge=1, le=14)


class MarketingPolicy(BaseModel):
    """The whole policy; every part has its documented default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="kairos-default", min_length=1, max_length=64)
    contact: PolicyConfig = Field(default_factory=PolicyConfig)
    control: ControlGroup = Field(default_factory=ControlGroup)
    resend: ResendRule = Field(default_factory=ResendRule)
    bands: dict[str, BandCuts] = Field(
        default_factory=dict,
        description="Band cuts per model name (``default``: every model not named); a model in neither keeps the "
        "cuts it was trained with (0.3 / 0.6 unless trained with others).",
    )

    def cuts(self, model: str) -> BandCuts | None:
        """The band cuts the file sets for ``model`` (its own entry, else ``default``); None: the model's own."""
        return self.bands.get(model) or self.bands.get(DEFAULT)

    def version(self) -> str:
        """A short checksum of the settings in force (the same file gives the same version)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def describe(self) -> dict[str, Any]:
        """What every decision echoes: the policy's name, version and the rules in force, in words."""
        c = self.contact
        caps = [f"{ch} {cap.label()}" for ch, caps in c.channel_caps.items() for cap in caps]
        caps += [f"all channels {cap.label()}" for cap in c.total_caps]
        quiet = "none" if c.quiet_hours is None else f"{c.quiet_hours[0]:02d}:00-{c.quiet_hours[1]:02d}:00 local"
        days = self.resend.days
        resend = f"second-best slot within {days} days after the best" if self.resend.enabled else "off"
        bands = ", ".join(f"{m} {c.label()}" for m, c in sorted(self.bands.items())) or "each model's own"
        return {
            "name": self.name,
            "version": self.version(),
            "rules": [
                f"band cuts: {bands}",
                f"caps: {', '.join(caps) or 'none'}",
                f"quiet hours: {quiet}",
                f"offer cooldown: {c.offer_cooldown_hours:g} h",
                f"control group: {self.control.share:.1%} (salt {self.control.salt})",
                f"re-send to non-openers: {resend}",
            ],
        }


def parse_policy(text: str, kind: str) -> MarketingPolicy:
    """A policy from the text of a ``yaml`` or ``toml`` file.

    Raises:
        PolicyFileError: not parseable, or not a valid policy (every problem, each with its key).
    """
    try:
        raw = tomllib.loads(text) if kind == "toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise PolicyFileError(f"the policy is not valid {kind.upper()}: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PolicyFileError("the policy must be a mapping of keys (name, contact, control, resend, bands)")
    try:
        return MarketingPolicy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg']}" for e in exc.errors())
        raise PolicyFileError(f"invalid policy: {problems}") from exc


def load_policy(path: Path | None) -> MarketingPolicy:
    """The policy in ``path`` (``.yaml`` / ``.yml`` / ``.toml``); None: every default.

    Raises:
        PolicyFileError: missing, unreadable, of another kind, or invalid.
    """
    if path is None:
        return MarketingPolicy()
    kind = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}.get(path.suffix.lower())
    if kind is None:
        raise PolicyFileError(f"{path.name}: a policy file is .yaml, .yml or .toml")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyFileError(f"the policy file {path} cannot be read: {exc.strerror}") from exc
    return parse_policy(text, kind)


def resolve_cuts(cuts: BandCuts, scores: np.ndarray) -> tuple[float, float]:
    """Thresholds as they are; quantiles as the scores' quantiles (NaN left out), kept strictly inside
    (0, 1) and increasing. With no score at all, quantile cuts fall back to 0.3 / 0.6.
    """
    if cuts.thresholds is not None:
        return cuts.thresholds
    assert cuts.quantiles is not None
    finite = scores[np.isfinite(scores)]
    if not len(finite):
        return DEFAULT_CUTS
    low, high = (float(v) for v in np.quantile(finite, cuts.quantiles))
    eps = 1e-6
    low = min(max(low, eps), 1 - 2 * eps)
    high = min(max(high, low + eps), 1 - eps)
    return low, high
