"""The preferred channel: per customer, the consented channels ranked by smoothed engagement."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Response

from bundles.sendtime import SendTime
from features.contract import Channel
from features.online import OnlineStoreUnavailable
from serving.contact import consent_columns, state_of
from serving.deps import Campaign, RequestIdDep, ServicesDep, model_of
from serving.routers.common import ERRORS, decision_time, json_response
from serving.schemas import AnswerSource, ChannelRequest, ChannelResponse, ItemStatus

router = APIRouter(prefix="/v1", tags=["decisions"])
log = logging.getLogger("kairos.serving.channels")
ORDER = [c.value for c in Channel]


@router.post("/channels", response_model=ChannelResponse, responses=ERRORS)
def channels(body: ChannelRequest, services: ServicesDep, rid: RequestIdDep, _: Campaign) -> Response:
    """Per customer, in input order: the channels with consent in force at ``now`` (from the online store:
    an unsubscribe counts from the next answer), ranked by the send-time bundle's channel preference
    (``ok`` channels first, each by smoothed open probability); ``preferred_channel`` is the first, null
    when none is consented. A channel without consent is never listed. Needs the ``sendtime`` bundle (503).
    The store down: 200, ``degraded``, no channel for anyone (never a channel without a consent read)."""
    bundle = model_of(services, "sendtime")
    sendtime: SendTime = bundle.payload
    prefs = sendtime.channels
    now = decision_time(body.now, clock=services.settings.clock)
    models = [bundle.ref() | {"source": AnswerSource.MODEL}]
    try:
        found, names = services.store.lookup(body.customer_ids)
        book = services.contacts.view([k for k in found.keys if k is not None])
    except OnlineStoreUnavailable as exc:
        services.metrics.fallbacks.labels("channels", "store_unavailable").inc(len(body.customer_ids))
        log.warning("online store unavailable; no channel", extra={"error": str(exc)[:200]})
        items: list[dict[str, Any]] = [
            {"customer_id": c, "status": ItemStatus.OK, "preferred_channel": None, "channels": []}
            for c in body.customer_ids
        ]
        return json_response(
            {"request_id": rid, "models": models, "degraded": True, "source": AnswerSource.FALLBACK, "items": items}
        )
    columns = consent_columns(names)
    out: list[dict[str, Any]] = []
    for n, cid in enumerate(body.customer_ids):
        key = found.keys[n]
        if key is None:
            out.append(
                {"customer_id": cid, "status": ItemStatus.UNKNOWN_CUSTOMER, "preferred_channel": None, "channels": []}
            )
            continue
        state = state_of(key, found.values[n], columns, book)
        consented = sorted(state.consented(now), key=ORDER.index)
        ranked = [s.__dict__ for s in prefs.scores(key, consented)] if consented else []
        out.append(
            {
                "customer_id": cid,
                "status": ItemStatus.OK,
                "customer_key": key,
                "preferred_channel": ranked[0]["channel"] if ranked else None,
                "channels": ranked,
            }
        )
    payload = {"request_id": rid, "models": models, "degraded": False, "source": AnswerSource.MODEL}
    return json_response(payload | {"now": now.isoformat(), "items": out}, numpy=True)
