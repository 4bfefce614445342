"""Batch scores: every propensity model, P(alive) and CLV, bands, segments and reasons, in input order."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from bundles.kinds import is_propensity
from serving.deps import Campaign, RequestIdDep, ServicesDep, model_of
from serving.routers.common import ERRORS, decision_time, json_response
from serving.schemas import ScoreRequest, ScoreResponse
from serving.scoring import score_batch
from serving.security import ApiError

router = APIRouter(prefix="/v1", tags=["scores"])
log = logging.getLogger("kairos.serving.scores")


@router.post("/scores", response_model=ScoreResponse, responses=ERRORS)
def scores(body: ScoreRequest, services: ServicesDep, rid: RequestIdDep, _: Campaign) -> Response:
    """Every configured propensity model's calibrated probability and band (churn, purchase, engagement
    per channel), P(alive), expected orders and CLV over 365 days, next order in days, segments, and on
    request (``reasons: true``, batches up to ``max_reasons_batch``) the top-3 reasons per model.

    In input order, never dropping an item; status ``ok`` or ``unknown_customer`` (the cold-start answer:
    each model's population prior, ``source: fallback``). The store down: still 200, ``degraded: true``,
    priors for everyone. A model that is optional and not loaded answers its configured prior (or null)
    and is named in ``fallback_models``. Probabilities equal ``kairos score --all --now T``'s for the same instant.
    Computed as of ``now`` (default: the server's clock; echoed in the answer): features as of that instant,
    events after it ignored (docs/features.md, one clock).
    A plain ``def``: scoring runs in the threadpool, vectorised (one store gather, one LightGBM call and
    one calibration per model for the whole batch).
    """
    ids = body.customer_ids
    settings = services.settings
    if len(ids) > settings.max_batch:
        raise ApiError(422, "invalid_request", f"body.customer_ids: at most {settings.max_batch} ids")
    if body.reasons and len(ids) > settings.max_reasons_batch:
        raise ApiError(
            422,
            "invalid_request",
            f"body.reasons: reasons are computed for at most {settings.max_reasons_batch} ids per request",
        )
    for kind in services.slots:  # a required model not loaded yet: 503 (readiness says so too)
        if is_propensity(kind) and services.required(kind):
            model_of(services, kind)
    now = decision_time(body.now, clock=services.settings.clock)
    payload = {"request_id": rid, "now": now.isoformat()} | score_batch(services, ids, body.reasons, now)
    return json_response(payload)
