"""One customer's 360 profile: features, text attributes and segments; personal data only for the pii scope."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from features.online import OnlineStoreUnavailable
from serving.deps import Campaign, RequestIdDep, ServicesDep
from serving.keys import Scope
from serving.routers.common import ERRORS, decision_time, json_response
from serving.schemas import AnswerSource, CustomerId, DecisionTime, Profile
from serving.security import ApiError

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.get("/{customer_id}/profile", response_model=Profile, responses={**ERRORS, 404: {"description": "unknown"}})
def profile(
    customer_id: Annotated[CustomerId, Path(description="The retailer's customer id or Kairos's customer_key.")],
    services: ServicesDep,
    rid: RequestIdDep,
    principal: Campaign,
    now: Annotated[
        DecisionTime | None,
        Query(description="The instant the features are for, with a timezone (default: the server's clock)."),
    ] = None,
) -> Response:
    """Features as of ``now`` (real-time events before it applied, docs/features.md: one clock), text
    attributes and segments.

    Personal data (e-mail, phone, names, birth date) is included only for a key with the ``pii`` scope
    (``admin`` does not imply it). When the online store is down: 200, ``degraded``, no features.
    """
    try:
        found, names = services.store.lookup(
            [customer_id], strings=True, now=decision_time(now, "query.now", services.settings.clock), field="query.now"
        )
    except OnlineStoreUnavailable:
        services.metrics.fallbacks.labels("profile", "store_unavailable").inc()
        body = {
            "request_id": rid,
            "models": [],
            "degraded": True,
            "source": AnswerSource.FALLBACK,
            "customer_id": customer_id,
            "customer_key": "",
            "features": {},
        }
        return json_response(body)
    key = found.keys[0]
    if key is None:
        raise ApiError(404, "unknown_customer", "no customer with this id")
    row = found.values[0]
    values = {n: (None if math.isnan(v) else v) for n, v in zip(names, row.tolist(), strict=True)}
    body = {
        "request_id": rid,
        "models": [],
        "degraded": bool(found.stale[0]),
        "source": AnswerSource.MODEL,
        "customer_id": customer_id,
        "customer_key": key,
        "as_of": found.now.isoformat() if found.now is not None else None,
        "age_days": None if math.isnan(found.age_days[0]) else float(found.age_days[0]),
        "features": values,
        "attributes": {n: v[0] for n, v in found.strings.items()},
        "segments": services.segments.of(key),
        "personal": services.personal.of(key) if principal.allows(Scope.PII) else None,
    }
    return json_response(body)
