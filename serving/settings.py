"""Typed service settings: documented defaults, overridden by ``KAIROS_*`` environment variables.

API keys are configured hashed (``KAIROS_API_KEYS``, a JSON list of ``{"name", "sha256", "scopes"}``;
make one with ``python -m serving.keys new --name shop --scope storefront``). The default environment is
``production``: a missing key list, or one that contains the demo key, stops start-up. Only an explicit
``development`` (``kairos serve --dev``, ``make demo``) accepts the documented demo key
(:data:`serving.keys.DEMO_KEY`) with every scope when no keys are configured.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from serving.keys import DEMO_KEY, Scope, hash_key

ENGAGEMENT_MODELS = tuple(f"engagement_{a}_{c}" for a in ("open", "click") for c in ("email", "sms", "push"))


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class OpenEndpoint(StrEnum):
    """Operational endpoints that may answer without a key (``KAIROS_OPEN_ENDPOINTS``)."""

    METRICS = "metrics"  # GET /metrics (otherwise: admin)
    DOCS = "docs"  # GET /docs, /redoc, /openapi.json (otherwise: any valid key)
    READINESS = "readiness"  # GET /health/ready's detail (otherwise: admin; the status is always open)


class StoreBackend(StrEnum):
    MEMORY = "memory"
    REDIS = "redis"


class ApiKeySpec(BaseModel):
    """One configured key: a name (logged), the sha256 of the secret (never the secret), its scopes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: frozenset[Scope] = Field(min_length=1)
    rate_per_second: float | None = Field(None, gt=0, description="Overrides the default rate for this key.")


class Settings(BaseSettings):
    """Everything the API needs to start. Unknown ``KAIROS_*`` variables are an error."""

    model_config = SettingsConfigDict(env_prefix="KAIROS_", extra="forbid", frozen=True)

    environment: Environment = Field(
        Environment.PRODUCTION,
        description="production (the default: keys required, the demo key refused) or development.",
    )
    data_home: Path = Field(Path("var/demo/data"), description="Data home: ingested tables and feature snapshots.")
    tracking_uri: str = Field("sqlite:///var/demo/mlflow.db", description="MLflow tracking / registry URI.")
    churn_model: str | None = Field("churn", description="Registered name of the churn model; empty: not served.")
    purchase_model: str | None = Field("purchase", description="Registered name of the purchase model.")
    engagement_models: list[str] = Field(
        default_factory=lambda: list(ENGAGEMENT_MODELS),
        description="Registered names of the engagement models (engagement_{open,click}_{email,sms,push}).",
    )
    clv_model: str | None = Field("clv", description="Registered name of the P(alive) / CLV bundle.")
    value_model: str | None = Field(
        "value",
        description="Registered name of the value model (spend and orders over its horizon: Kairos's, or the "
        "baseline served in its place); empty: not served.",
    )
    recs_model: str | None = Field(
        "recs", description="Registered model name of the recommendations bundle; empty: not served."
    )
    sendtime_model: str | None = Field("sendtime", description="Registered name of the send-time bundle.")
    offers_model: str | None = Field("offers", description="Registered name of the next-best-offer bundle.")
    required_models: list[str] = Field(
        default_factory=lambda: ["churn", "recs"],
        description="Model kinds that must be loaded for readiness; every other configured model is optional "
        "(missing: an explicit, labelled fallback).",
    )
    model_priors: dict[str, float] = Field(
        default_factory=dict,
        description="Population prior per propensity model kind, served (labelled fallback) while an optional "
        "model has never loaded. A loaded model's own base rate is its fallback otherwise.",
    )
    offer_window_hours: float = Field(
        24.0, gt=0, le=24 * 14, description="An offer's message must be sendable within this window (hours)."
    )
    policy_file: Path | None = Field(
        None,
        description="The marketer's policy (YAML or TOML: contact caps, quiet hours, control share, re-send rule, "
        "band cuts per model; docs/decisioning.md). Re-read when it changes; an invalid file leaves the policy in "
        "force. None: the documented defaults.",
    )
    max_reasons_batch: int = Field(1_000, ge=1, description="Most customers in one scoring request with reasons.")
    model_alias: str = Field("champion", description="Registry alias the service serves.")
    model_cache_dir: Path = Field(
        Path("var/model-cache"), description="Verified model files; the last good bundle per model is kept here."
    )
    compiled_dir: Path | None = Field(
        None,
        description="lleaves builds of the propensity models (`kairos compile`; default DATA_HOME/compiled). The API "
        "never compiles; a build it finds is used once it reproduces LightGBM, else LightGBM serves.",
    )
    registry_timeout_s: float = Field(10.0, gt=0, description="Timeout of one MLflow registry HTTP call.")
    poll_interval_s: float = Field(0.0, ge=0, description="Poll the registry for moved aliases every N s (0: off).")
    max_batch: int = Field(10_000, ge=1, le=100_000, description="Most customer ids in one scoring request.")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body accepted (413 above).")
    event_max_future_skew_s: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description="POST /v1/events refuses (422, the whole batch) an event stamped more than this many seconds "
        "after the service's clock: a client's clock skew, never a way to date a consent ahead.",
    )

    online_store: StoreBackend = Field(StoreBackend.MEMORY, description="memory (from data_home) or redis.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL of the online store.")
    redis_prefix: str = Field("kairos", description="Key prefix of the online store in Redis.")
    store_timeout_s: float = Field(0.25, gt=0, le=10, description="Timeout of one online-store call.")
    max_feature_age_days: float | None = Field(None, gt=0, description="Older feature rows count as missing.")
    clock: AwareDatetime | None = Field(
        None,
        description="The instant every answer is computed at when its request gives no `now` (one clock, "
        "docs/features.md): a replay, a test, a demo of past data. Default: the server's clock; never the latest "
        "event seen.",
    )

    api_keys: list[ApiKeySpec] = Field(default_factory=list, description="Hashed API keys with scopes (JSON).")
    open_endpoints: frozenset[OpenEndpoint] | None = Field(
        None,
        description="Operational endpoints open without a key (JSON list of metrics, docs, readiness); default: "
        "all of them in development, none in production. What they show (key names in metrics, model versions, "
        "checksums and customer counts in readiness) is for the operator.",
    )
    rate_per_second: float = Field(200.0, gt=0, description="Sustained requests per second per key.")
    rate_burst: int = Field(400, ge=1, description="Requests a key may make at once before being limited.")
    shared_rate_limits: bool = Field(
        True,
        description="With Redis as the online store, count each key's rate in Redis across every replica "
        "(one round trip a request); false: each replica limits on its own.",
    )
    log_json: bool = Field(True, description="Structured JSON logs on stderr (set up by the app factory).")
    pseudonym_secret: SecretStr | None = Field(
        None,
        description="The customer-key secret `kairos ingest` reads (docs/security-pseudonyms.md). The API keys "
        "erasure tombstones with it (every process must hold the same one); without it, in production, it warns "
        "and uses the development key.",
    )
    console: bool = Field(
        True,
        description="The marketer's console (HTML pages under /console, docs/console.md); false: not mounted.",
    )
    console_secret: SecretStr | None = Field(
        None,
        description="Signs the console's session cookies; every replica behind one address must hold the same. "
        "Unset: a random secret per process (sessions end when it restarts; with several replicas a signed-in "
        "browser is refused by the others).",
    )
    console_session_hours: float = Field(
        8.0, gt=0, le=24 * 7, description="How long a console sign-in lasts before the key is asked for again."
    )
    otel: bool = Field(
        False,
        description="FastAPI's native OpenTelemetry (spans, metrics and logs to the OpenTelemetry providers the "
        "process configures); off: the API's metrics are Prometheus' (GET /metrics), and the per-request "
        "check for configured providers costs about 5 us.",
    )

    @model_validator(mode="after")
    def _no_unknown_environment(self) -> Settings:
        """A misspelt ``KAIROS_*`` variable is an error, not silently ignored."""
        known = {f"KAIROS_{name.upper()}" for name in type(self).model_fields}
        unknown = sorted(k for k in os.environ if k.upper().startswith("KAIROS_") and k.upper() not in known)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return self

    @model_validator(mode="after")
    def _priors_are_probabilities(self) -> Settings:
        bad = sorted(k for k, v in self.model_priors.items() if not 0.0 <= v <= 1.0)
        if bad:
            raise ValueError(f"model_priors: {bad} must be probabilities in [0, 1]")
        return self

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> Settings:
        """Outside development: keys must be configured, and the documented demo key is refused."""
        if self.environment is Environment.DEVELOPMENT:
            return self
        if not self.api_keys:
            raise ValueError(
                f"api_keys: no API keys configured in {self.environment}; set KAIROS_API_KEYS (make one with "
                "`python -m serving.keys new --name NAME --scope SCOPE`), or run `kairos serve --dev` for a local trial"
            )
        demo = hash_key(DEMO_KEY)
        placeholders = [k.name for k in self.api_keys if k.sha256 == demo]
        if placeholders:
            raise ValueError(f"api_keys: key(s) {placeholders} use the public demo key; refused in {self.environment}")
        return self

    def is_open(self, endpoint: OpenEndpoint) -> bool:
        """Whether ``endpoint`` answers without a key."""
        if self.open_endpoints is None:
            return self.environment is Environment.DEVELOPMENT
        return endpoint in self.open_endpoints

    @property
    def model_names(self) -> dict[str, str]:
        """Model kind -> registered name, for every configured model (propensity kinds are their names)."""
        names: dict[str, str] = {}
        for kind, name in (("churn", self.churn_model), ("purchase", self.purchase_model)):
            if name:
                names[kind] = name
        for name in self.engagement_models:
            names[name] = name
        for kind, name in (
            ("clv", self.clv_model),
            ("value", self.value_model),
            ("recs", self.recs_model),
            ("sendtime", self.sendtime_model),
            ("offers", self.offers_model),
        ):
            if name:
                names[kind] = name
        return names

    def required(self, kind: str) -> bool:
        """Whether ``kind`` must be loaded for readiness (else an explicit fallback is enough)."""
        return kind in self.required_models


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()  # type: ignore[call-arg]  # fields come from defaults and the environment
