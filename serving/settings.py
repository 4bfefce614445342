"""Typed service settings: documented defaults, overridden by ``KAIROS_*`` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the API needs to start. Unknown ``KAIROS_*`` variables are an error."""

    model_config = SettingsConfigDict(env_prefix="KAIROS_", extra="forbid", frozen=True)

    data_home: Path = Field(Path("var/demo/data"), description="Data home: ingested tables and feature snapshots.")
    tracking_uri: str = Field("sqlite:///var/demo/mlflow.db", description="MLflow tracking / registry URI.")
    churn_model: str = Field("churn", description="Registered model name of the churn model.")
    model_alias: str = Field("champion", description="Registry alias the service serves.")
    model_cache_dir: Path = Field(Path("var/model-cache"), description="Where verified model files are kept.")
    max_batch: int = Field(10_000, ge=1, le=100_000, description="Most customer ids in one scoring request.")

    @model_validator(mode="after")
    def _no_unknown_environment(self) -> Settings:
        """A misspelt ``KAIROS_*`` variable is an error, not silently ignored."""
        known = {f"KAIROS_{name.upper()}" for name in type(self).model_fields}
        unknown = sorted(k for k in os.environ if k.upper().startswith("KAIROS_") and k.upper() not in known)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()  # type: ignore[call-arg]  # fields come from defaults and the environment
