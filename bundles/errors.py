"""Errors of the model registry and its bundles. The CLI and the API map them to exit codes and statuses."""

from __future__ import annotations

from features.errors import KairosError


class ModelNotFoundError(KairosError):
    """No registered model version under the requested name or alias."""


class ModelIntegrityError(KairosError):
    """A model artifact failed verification (checksum, format, feature signature)."""
