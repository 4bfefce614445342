"""Decisions: contact permission and send time, per customer of a batch, in input order.

Consent is read from the online store at decision time (an ``unsubscribe`` event changes the very next
answer); send history and time zones from :class:`serving.contact.ContactBook`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Response

from bundles.sendtime import SendTime
from features.errors import KairosError
from features.online import OnlineStoreUnavailable
from serving.contact import consent_columns, state_of
from serving.deps import Campaign, RequestIdDep, ServicesDep, model_of
from serving.routers.common import ERRORS, decision_time, iso, json_response
from serving.schemas import (
    AnswerSource,
    ItemStatus,
    PermissionRequest,
    PermissionResponse,
    SendTimeRequest,
    SendTimeResponse,
)
from serving.security import ApiError

router = APIRouter(prefix="/v1", tags=["decisions"])
log = logging.getLogger("kairos.serving.decisions")


@router.post("/permissions", response_model=PermissionResponse, responses=ERRORS)
def permissions(body: PermissionRequest, services: ServicesDep, rid: RequestIdDep, _: Campaign) -> Response:
    """May I contact this customer on this channel now; if not, when? One answer per item, in order.

    Rules (``models.decisioning.policy``): consent (from the online store: a hard filter, an opt-out or
    no record means never: ``next_allowed_at`` null), frequency caps per channel and across channels,
    quiet hours in the customer's zone, and the offer cooldown when ``with_offer``. Status per item:
    ``ok`` (see ``allowed``), ``unknown_customer``. The store down: 200, ``degraded``, every item
    ``allowed: false`` with the reason (never a message without a consent read).
    """
    now = decision_time(body.now, clock=services.settings.clock)
    ids = [i.customer_id for i in body.items]
    try:
        found, names = services.store.lookup(ids, now=now)
        book = services.contacts.view([k for k in found.keys if k is not None])  # every replica's sends
    except OnlineStoreUnavailable as exc:
        services.metrics.fallbacks.labels("permissions", "store_unavailable").inc(len(ids))
        log.warning("online store unavailable; no contact allowed", extra={"error": str(exc)[:200]})
        items = [
            {
                "customer_id": i.customer_id,
                "channel": i.channel,
                "status": ItemStatus.OK,
                "allowed": False,
                "reasons": ["consent: unknown (the online store is unavailable); ask again"],
                "next_allowed_at": None,
            }
            for i in body.items
        ]
        payload = {"request_id": rid, "models": [], "degraded": True, "source": AnswerSource.FALLBACK, "items": items}
        return json_response(payload)
    columns = consent_columns(names)
    out: list[dict[str, Any]] = []
    for n, item in enumerate(body.items):
        key = found.keys[n]
        if key is None:
            out.append(
                {"customer_id": item.customer_id, "channel": item.channel, "status": ItemStatus.UNKNOWN_CUSTOMER}
            )
            continue
        state = state_of(key, found.values[n], columns, book)
        p = services.policy.may_contact(state, item.channel.value, now, with_offer=item.with_offer)
        out.append(
            {
                "customer_id": item.customer_id,
                "channel": item.channel,
                "status": ItemStatus.OK,
                "customer_key": key,
                "allowed": p.allowed,
                "reasons": p.reasons,
                "next_allowed_at": iso(p.next_allowed_at),
                "timezone": p.timezone,
                "timezone_source": p.timezone_source,
            }
        )
    payload = {"request_id": rid, "models": [], "degraded": False, "source": AnswerSource.MODEL, "now": now.isoformat()}
    payload["policy"] = services.policies.policy.describe()  # the rules every answer was judged by
    payload["items"] = out
    return json_response(payload)


@router.post("/send-time", response_model=SendTimeResponse, responses=ERRORS)
def send_time(body: SendTimeRequest, services: ServicesDep, rid: RequestIdDep, _: Campaign) -> Response:
    """The best send slot per customer for one channel within a window (default the next 24 h), outside
    quiet hours in the customer's zone, and a second-best slot on another day (for re-sends).

    ``source`` per item: ``customer`` (own history), ``segment`` or ``population`` (cold start). An unknown
    customer gets the population's slot, ``status: unknown_customer``. Needs the ``sendtime`` bundle
    (503 while it is not loaded).
    """
    bundle = model_of(services, "sendtime")
    sendtime: SendTime = bundle.payload
    now = decision_time(body.now, clock=services.settings.clock)
    quiet = None if body.quiet_hours is None else (body.quiet_hours[0], body.quiet_hours[1])
    policy = services.policies.policy
    if "quiet_hours" not in body.model_fields_set:  # not asked for: the policy file's quiet hours
        quiet = policy.contact.quiet_hours
    degraded = False
    try:
        keys = services.store.resolve(body.customer_ids)
    except OnlineStoreUnavailable:
        services.metrics.fallbacks.labels("send_time", "store_unavailable").inc(len(body.customer_ids))
        keys, degraded = [None] * len(body.customer_ids), True
    lookup_keys = [k if k is not None else f"unknown:{i}" for i, k in enumerate(keys)]
    zones = [services.contacts.zones.get(k) if k is not None else None for k in keys]
    segments = [(services.segments.headline(k) or {}).get("lifecycle") if k is not None else None for k in keys]
    try:
        frame = sendtime.model.best_slots_batch(
            lookup_keys,
            body.channel.value,
            now,
            timedelta(hours=body.window_hours),
            quiet,
            timezones=zones,
            segments=segments,
            resend_days=policy.resend.days,
        )
    except KairosError as exc:  # the model refused the request's window or quiet hours
        raise ApiError(422, "invalid_request", f"body: {exc}") from exc
    items = []
    if not policy.resend.enabled:  # the policy allows no re-sends: no second slot
        frame["second_at"] = None
        frame["second_local"] = None
    for cid, key, row in zip(body.customer_ids, keys, frame.to_dict("records"), strict=True):
        items.append(
            {
                "customer_id": cid,
                "status": ItemStatus.OK if key is not None or degraded else ItemStatus.UNKNOWN_CUSTOMER,
                "customer_key": key,
                "best_at": iso(row["best_at"]),
                "best_local": iso(row["best_local"]),
                "score": float(row["score"]),
                "second_at": iso(row["second_at"]),
                "second_local": iso(row["second_local"]),
                "source": row["source"],
                "timezone": row["timezone"],
                "timezone_source": row["timezone_source"],
                "scale": row["scale"],
            }
        )
    payload = {
        "request_id": rid,
        "models": [bundle.ref() | {"source": AnswerSource.MODEL}],
        "degraded": degraded,
        "source": AnswerSource.MODEL,
        "channel": body.channel,
        "policy": policy.describe(),
        "items": items,
    }
    return json_response(payload)
