"""Batch churn scores."""

from __future__ import annotations

import numpy as np
import orjson
from fastapi import APIRouter, Response

from serving.deps import ReadyDep, RequestIdDep
from serving.schemas import ItemStatus, ScoreRequest, ScoreResponse

router = APIRouter(prefix="/v1", tags=["scores"])


@router.post("/scores", response_model=ScoreResponse, responses={503: {"description": "no model loaded"}})
def scores(body: ScoreRequest, services: ReadyDep, rid: RequestIdDep) -> Response:
    """Churn probability per customer, in input order, with a per-item status.

    Runs in the threadpool (a plain ``def``): prediction is CPU-bound and must not block the loop.
    """
    store, bundle = services.store, services.churn
    assert store is not None and bundle is not None  # guaranteed by ReadyDep
    found = store.lookup(body.customer_ids)
    ok = found.found
    probs = np.full(len(body.customer_ids), np.nan)
    if ok.any():
        # The store may hold more features than this model uses: take the model's, in its order.
        probs[ok] = bundle.model.predict_proba(found.values[np.ix_(ok, bundle.columns)])
    items = [
        {"customer_id": cid, "status": ItemStatus.OK, "customer_key": key, "churn_probability": float(p)}
        if key is not None
        else {
            "customer_id": cid,
            "status": ItemStatus.UNKNOWN_CUSTOMER,
            "customer_key": None,
            "churn_probability": None,
        }
        for cid, key, p in zip(body.customer_ids, found.keys, probs.tolist(), strict=True)
    ]
    payload = {
        "request_id": rid,
        "model": {"name": bundle.name, "version": bundle.version, "alias": bundle.alias},
        "degraded": False,
        "source": "model",
        "items": items,
    }
    return Response(orjson.dumps(payload), media_type="application/json", headers={"x-request-id": rid})
