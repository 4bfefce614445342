"""Typed service settings: documented defaults, overridden by ``KAIROS_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()  # type: ignore[call-arg]  # fields come from defaults and the environment
