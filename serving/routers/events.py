"""Real-time events: each one updates the customer's online profile at once (an unsubscribe included)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from features.online import OnlineStoreUnavailable
from features.realtime import Event, InvalidEventError
from serving.deps import Events, RequestIdDep, ServicesDep
from serving.routers.common import ERRORS, json_response
from serving.schemas import EventBatch, EventIn, EventResponse
from serving.state import Services

router = APIRouter(prefix="/v1", tags=["events"])
log = logging.getLogger("kairos.serving.events")


@router.post("/events", response_model=EventResponse, responses=ERRORS)
def events(body: EventBatch, services: ServicesDep, rid: RequestIdDep, _: Events) -> Response:
    """Apply events in order; one result per event, in input order.

    ``applied`` / ``created`` (a customer first seen now) change the features the very next read sees
    (consents included: an ``unsubscribe`` opts the channel out at once). ``duplicate`` (same
    ``event_id``, or same content when none is given; for ``message_sent``: same customer, channel,
    time and offer) and ``before_snapshot`` change nothing, so a retried batch is safe to send again.
    ``invalid`` names what is wrong. When the store is down the answer is still 200, ``degraded``,
    and the events not applied are ``unavailable``: send them again.
    """
    results: list[dict[str, object]] = []
    down: str | None = None
    for i, e in enumerate(body.events):
        if down is not None:
            results.append({"index": i, "status": "unavailable", "detail": down})
            continue
        if e.type == "message_sent":
            results.append(_message_sent(services, i, e))
            if results[-1]["status"] == "unavailable":
                down = "online store unavailable; send again"
            continue
        try:
            event = Event(
                type=e.type,
                timestamp=e.timestamp,
                customer_key=e.customer_key,
                customer_id=e.customer_id,
                channel=e.channel,
                status=e.status,
                session_id=e.session_id,
                item_id=e.item_id,
                event_id=e.event_id,
            )
            outcome = services.store.apply_event(event)
        except InvalidEventError as exc:
            results.append({"index": i, "status": "invalid", "detail": f"events.{i}: {exc}"})
            continue
        except OnlineStoreUnavailable as exc:
            down = "online store unavailable; send again"
            log.warning("online store unavailable; events not applied", extra={"error": str(exc)[:200]})
            results.append({"index": i, "status": "unavailable", "detail": down})
            continue
        results.append({"index": i, "status": outcome.value})
    if down is not None:
        services.metrics.fallbacks.labels("events", "store_unavailable").inc()
    payload = {"request_id": rid, "degraded": down is not None, "results": results}
    return json_response(payload)


def _message_sent(services: Services, i: int, e: EventIn) -> dict[str, object]:
    """Record a send in the contact book (frequency caps, offer cooldown); the customer must be known."""
    if e.channel is None:
        return {"index": i, "status": "invalid", "detail": f"events.{i}.channel: required for message_sent"}
    if e.timestamp.tzinfo is None:
        return {"index": i, "status": "invalid", "detail": f"events.{i}.timestamp: give a timezone"}
    ref = e.customer_key or e.customer_id
    if ref is None:
        return {"index": i, "status": "invalid", "detail": f"events.{i}: customer_id or customer_key is required"}
    try:
        key = services.store.resolve([ref])[0]
    except OnlineStoreUnavailable:
        return {"index": i, "status": "unavailable", "detail": "online store unavailable; send again"}
    if key is None:
        return {"index": i, "status": "unknown_customer"}
    try:
        recorded = services.contacts.record(key, e.channel.value, e.timestamp, e.with_offer, e.offer_id, e.event_id)
    except OnlineStoreUnavailable:  # the shared send log (Redis) did not take it: nothing is lost silently
        return {"index": i, "status": "unavailable", "detail": "send log unavailable; send again"}
    return {"index": i, "status": "applied" if recorded else "duplicate"}
