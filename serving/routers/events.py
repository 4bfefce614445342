"""Real-time events: each one updates the customer's online profile at once (an unsubscribe included).

Who may post what (:data:`EVENT_SCOPES`): a storefront posts behaviour only; a consent change needs the
consent scope, a send the campaign scope. A batch is checked whole before any event is applied: one event
the key may not post (403), one stamped outside [2000, the service's clock + ``event_max_future_skew_s``]
(422), one opt-in without its ``source`` (422), and nothing in the batch is applied.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from features.contract import ConsentStatus
from features.online import OnlineStoreUnavailable
from features.realtime import Event, EventKind, InvalidEventError
from serving.deps import KeyCheck, RequestIdDep, ServicesDep
from serving.keys import Principal, Scope
from serving.routers.common import ERRORS, json_response
from serving.schemas import EventBatch, EventIn, EventResponse
from serving.security import ApiError
from serving.state import Services

router = APIRouter(prefix="/v1", tags=["events"])
log = logging.getLogger("kairos.serving.events")

MESSAGE_SENT = "message_sent"
# The scopes that may post each event type (any one of them).
EVENT_SCOPES: dict[str, tuple[Scope, ...]] = {
    **{k.value: (Scope.STOREFRONT, Scope.CAMPAIGN) for k in EventKind},  # behaviour: web, order, open, click
    EventKind.CONSENT.value: (Scope.CONSENT,),  # re-opens or closes a channel
    EventKind.UNSUBSCRIBE.value: (Scope.CONSENT,),
    MESSAGE_SENT: (Scope.CAMPAIGN,),  # uses up the customer's frequency caps
}
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)  # no event of a live customer is older; year 1 is a bug

# Any key that may post some event type reaches the endpoint; each event is then checked on its own type.
EventsKey = Annotated[Principal, Depends(KeyCheck(Scope.STOREFRONT, Scope.CAMPAIGN, Scope.CONSENT))]


def check_batch(body: EventBatch, principal: Principal, now: datetime, max_skew_s: float) -> None:
    """Refuse the whole batch when one event may not be applied: 403 for a type the key may not post, 422 for
    a time outside [:data:`EARLIEST_EVENT`, ``now + max_skew_s``] or an opt-in without its source. Each
    answer names the event (``events.N``) and what it needs; no value from the body is echoed."""
    for i, e in enumerate(body.events):
        wanted = EVENT_SCOPES[str(e.type)]
        if not any(principal.allows(s) for s in wanted):
            needs = " or ".join(s.value for s in wanted)
            raise ApiError(403, "forbidden", f"events.{i}: a {e.type} event needs the {needs} scope; nothing applied")
    latest = now + timedelta(seconds=max_skew_s)
    for i, e in enumerate(body.events):
        try:
            at = e.timestamp.astimezone(UTC)
        except (OverflowError, ValueError):  # e.g. year 1 with a positive offset
            at = None
        if at is None or at < EARLIEST_EVENT:
            raise ApiError(422, "invalid_request", f"events.{i}.timestamp: before 2000-01-01; nothing applied")
        if at > latest:
            raise ApiError(
                422,
                "invalid_request",
                f"events.{i}.timestamp: more than {max_skew_s:g} s after the service's clock; nothing applied",
            )
        if e.source is not None and e.type != EventKind.CONSENT:
            raise ApiError(422, "invalid_request", f"events.{i}.source: only for consent events; nothing applied")
        if e.type == EventKind.CONSENT and e.status == ConsentStatus.OPT_IN and e.source is None:
            raise ApiError(
                422,
                "invalid_request",
                f"events.{i}.source: an opt_in needs its source (where and how it was captured, e.g. "
                "web_form:newsletter); nothing applied",
            )


@router.post("/events", response_model=EventResponse, responses=ERRORS)
def events(body: EventBatch, services: ServicesDep, rid: RequestIdDep, principal: EventsKey) -> Response:
    """Apply events in order; one result per event, in input order.

    Scopes per type: web events, ``order``, ``open`` and ``click`` need storefront or campaign;
    ``consent`` and ``unsubscribe`` need consent; ``message_sent`` needs campaign. The batch is checked
    whole first and nothing is applied when one event fails: 403 naming ``events.N`` and the scope it
    needs; 422 naming ``events.N.timestamp`` (before 2000, or more than ``event_max_future_skew_s`` after
    the service's clock) or ``events.N.source`` (an ``opt_in`` without where and how it was captured).

    ``applied`` / ``created`` (a customer first seen now) change the features the very next read sees
    (consents included: an ``unsubscribe`` or opt-out takes effect at once, whatever its timestamp; an
    opt-in only when later than every opt-out by event time and by receipt, see docs/consent.md).
    ``duplicate`` (same ``event_id``, or same content when none is given; for ``message_sent``: same
    customer, channel, time and offer) and ``before_snapshot`` change nothing, so a retried batch is safe
    to send again. ``invalid`` names what is wrong. When the store is down the answer is still 200,
    ``degraded``, and the events not applied are ``unavailable``: send them again.
    """
    received = datetime.now(UTC)  # the service's clock: bounds the timestamps, stamps the consent history
    check_batch(body, principal, received, services.settings.event_max_future_skew_s)
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
                source=e.source,
                received_at=received,
                order_id=e.order_id,
                amount=e.amount,
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
