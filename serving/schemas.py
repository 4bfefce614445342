"""Request and response bodies. Strict: unknown fields and oversized batches are 422 naming the field."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

CustomerId = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]


class ItemStatus(StrEnum):
    OK = "ok"
    UNKNOWN_CUSTOMER = "unknown_customer"


class ScoreRequest(BaseModel):
    """Customers to score, by the retailer's customer id or by Kairos's customer_key."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"customer_ids": ["R000001", "R000002", "nobody"]}]},
    )

    customer_ids: list[CustomerId] = Field(min_length=1, max_length=10_000)


class ModelRef(BaseModel):
    name: str
    version: str
    alias: str


class ScoreItem(BaseModel):
    customer_id: str
    status: ItemStatus
    customer_key: str | None = None
    churn_probability: float | None = None


class ScoreResponse(BaseModel):
    request_id: str
    model: ModelRef
    degraded: bool = False
    source: str = "model"
    items: list[ScoreItem]


class Health(BaseModel):
    status: str
    detail: dict[str, object] = Field(default_factory=dict)
