"""Operations on personal data that only a ``pii`` key may call: erasing a customer (GDPR art. 17,
152-FZ art. 21). See ``docs/erasure.md``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from serving.deps import KeyCheck, RequestIdDep, ServicesDep
from serving.erasure import erase_customer
from serving.keys import Principal, Scope
from serving.routers.common import ERRORS, json_response

router = APIRouter(prefix="/v1/admin", tags=["admin"])

Pii = Annotated[Principal, Depends(KeyCheck(Scope.PII))]


class ErasureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    customer_id: StrictStr = Field(
        min_length=1, max_length=256, pattern=r"\S", description="The source customer id to erase."
    )


class ErasureReceipt(BaseModel):
    """What was removed where; no personal data (no id, no key, no contact detail)."""

    request_id: str
    erasure_id: str
    erased_at: str
    complete: bool = Field(description="False when something still holds the customer; run the erasure again.")
    source_ids: int = Field(description="Source records erased (identity resolution may join several).")
    customer_keys: int
    tombstones_added: int
    data_home: list[dict[str, Any]] = Field(description="Files of the data home rewritten: path and rows removed.")
    registry: list[dict[str, Any]] = Field(description="Model versions rewritten and re-signed, per file rows removed.")
    model_cache: dict[str, list[str]]
    online_store: dict[str, Any]
    send_log: dict[str, int] | None
    in_memory: dict[str, int]
    models_reloaded: list[dict[str, Any]]
    residue: dict[str, list[str]] = Field(description="Files that still hold the customer (empty when complete).")
    errors: list[str]


@router.post("/erasures", response_model=ErasureReceipt, responses=ERRORS)
def erase(body: ErasureRequest, services: ServicesDep, rid: RequestIdDep, _: Pii) -> Response:
    """Erase one customer everywhere: ingested tables, audit files, snapshots, the online store (in process
    and Redis), the send log, every registered model version holding per-customer rows (rewritten and
    re-signed) and the model cache; a tombstone keeps them out of later ingests and unknown to every
    replica. Answers the receipt (also written to the data home). Needs the ``pii`` scope."""
    receipt = erase_customer(services, body.customer_id)
    return json_response({"request_id": rid, **receipt})
